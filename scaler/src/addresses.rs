//! Which address a device can use for an endpoint.
//!
//! A worker advertises `http://<node's primary address>:<NodePort>` (the
//! downward API's `status.hostIP`): inside the VPC, a private address even
//! in a public subnet. The inventory answers with the first of:
//!
//! 1. the node's `ExternalIP`, when it has one (a node in a public subnet or
//!    a Local Zone with public IPs). The scaler reads Nodes through the API
//!    (`--node-addresses`: get, list and watch, nothing else), rather than the
//!    agent asking instance metadata: pods are kept from IMDS (hop limit 1
//!    on Karpenter's and EKS's defaults) and opening it to them hands out
//!    the node role's credentials;
//! 2. the zone's `--advertise-host` (a load balancer or DNS name in front of
//!    that zone's nodes);
//! 3. the address as advertised, marked `reachability: "vpc"` when it is
//!    private, so a device can tell it needs the VPC (VPN, Direct Connect).
//!
//! The path stays as advertised, and so does the port, but for one case: a
//! worker whose Service's NodePort Kubernetes picks cannot know it, so the
//! chart has it advertise the Service's `port` instead; the scaler reads the
//! workers' Services (labelled `edge-diffusion.io/workload`, in its own
//! namespace: list and watch, nothing else) and lists the endpoint at the
//! NodePort behind that port. Each endpoint names the rule that chose its
//! host (`address`).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::RwLock;

use edge_telemetry::inventory::{AddressRule, Endpoint, Reachability, split_host};
use k8s_openapi::api::core::v1::{Node, Service};
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

/// The nodes' external addresses and the zones' advertised hosts.
#[derive(Default)]
pub struct Addresses {
    /// Node name → its `ExternalIP` (nodes without one are absent).
    external: RwLock<HashMap<String, IpAddr>>,
    /// Zone → the host devices reach that zone's nodes by.
    advertise_host: BTreeMap<String, String>,
    /// (namespace, workload) → its Service's (port, nodePort) pairs.
    node_ports: RwLock<HashMap<(String, String), Vec<PortPair>>>,
}

/// A Service port and the NodePort Kubernetes gave it.
pub type PortPair = (u16, u16);

/// The label naming the workload (the Deployment) a worker Service fronts.
pub const WORKLOAD_LABEL: &str = "edge-diffusion.io/workload";

impl Addresses {
    /// No node known yet; `advertise_host` per zone.
    pub fn new(advertise_host: BTreeMap<String, String>) -> Self {
        Self { external: RwLock::default(), advertise_host, node_ports: RwLock::default() }
    }

    /// Records a node's `ExternalIP` (`None`: it has none, or it is gone).
    pub fn set_node(&self, node: &str, external: Option<IpAddr>) {
        let mut map = self.external.write().unwrap_or_else(|e| e.into_inner());
        match external {
            Some(ip) => map.insert(node.to_owned(), ip),
            None => map.remove(node),
        };
    }

    /// Records a workload Service's ports (`None`: it is gone).
    pub fn set_service(&self, namespace: &str, workload: &str, ports: Option<Vec<PortPair>>) {
        let mut map = self.node_ports.write().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_owned(), workload.to_owned());
        match ports {
            Some(p) => map.insert(key, p),
            None => map.remove(&key),
        };
    }

    /// Nodes with an `ExternalIP` known now.
    pub fn external_nodes(&self) -> usize {
        self.external.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Rewrites `e`'s host by the first rule that applies and says which.
    pub fn apply(&self, e: &mut Endpoint) {
        let Some((scheme, host, rest)) = split_host(&e.url) else { return };
        let external = self.external.read().unwrap_or_else(|e| e.into_inner()).get(&e.node).copied();
        let (new_host, rule) = match (external, self.advertise_host.get(&e.zone)) {
            (Some(IpAddr::V4(ip)), _) => (ip.to_string(), AddressRule::ExternalIp),
            (Some(IpAddr::V6(ip)), _) => (format!("[{ip}]"), AddressRule::ExternalIp),
            (None, Some(advertised)) => (advertised.clone(), AddressRule::AdvertiseHost),
            (None, None) => (host.to_owned(), AddressRule::Advertised),
        };
        let rest = self.node_port(e, rest).unwrap_or_else(|| rest.to_owned());
        e.url = format!("{scheme}{new_host}{rest}");
        e.address = rule;
        e.reachability = Reachability::of_host(&new_host);
    }
}

impl Addresses {
    /// `rest` (`:port/path`) with the port replaced by the NodePort its
    /// workload's Service maps it to, if the Service has that `port`.
    fn node_port(&self, e: &Endpoint, rest: &str) -> Option<String> {
        let tail = rest.strip_prefix(':')?;
        let (port, path) = tail.find('/').map_or((tail, ""), |i| tail.split_at(i));
        let port: u16 = port.parse().ok()?;
        let map = self.node_ports.read().unwrap_or_else(|e| e.into_inner());
        let ports = map.get(&(e.namespace.clone(), e.deployment.clone()))?;
        let node_port = ports.iter().find(|(p, _)| *p == port)?.1;
        Some(format!(":{node_port}{path}"))
    }
}

/// A Service's (port, nodePort) pairs, for the ports that have a NodePort.
pub fn node_ports(service: &Service) -> Vec<PortPair> {
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_ref());
    ports
        .into_iter()
        .flatten()
        .filter_map(|p| Some((u16::try_from(p.port).ok()?, u16::try_from(p.node_port?).ok()?)))
        .collect()
}

/// Follows the workers' Services in the client's namespace until `stop`.
pub async fn watch_services(client: kube::Client, addresses: std::sync::Arc<Addresses>, stop: watch::Receiver<bool>) {
    let api: Api<Service> = Api::default_namespaced(client);
    tracing::info!("watching the workers' Services for the NodePorts Kubernetes picked");
    let config = watcher::Config::default().labels(WORKLOAD_LABEL);
    let events = watcher(api, config).default_backoff();
    let key = |s: &Service| {
        let workload = s.metadata.labels.as_ref()?.get(WORKLOAD_LABEL)?.clone();
        Some((s.metadata.namespace.clone().unwrap_or_default(), workload))
    };
    crate::discovery::watch_until_stopped(events, "Service", stop, |event| match event {
        watcher::Event::Apply(s) | watcher::Event::InitApply(s) => {
            if let Some((ns, workload)) = key(&s) {
                addresses.set_service(&ns, &workload, Some(node_ports(&s)));
            }
        }
        watcher::Event::Delete(s) => {
            if let Some((ns, workload)) = key(&s) {
                addresses.set_service(&ns, &workload, None);
            }
        }
        watcher::Event::Init | watcher::Event::InitDone => {}
    })
    .await;
}

/// The `ExternalIP` of a Node object, if it lists one.
pub fn external_ip(node: &Node) -> Option<IpAddr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|a| a.type_ == "ExternalIP")
        .find_map(|a| a.address.parse().ok())
}

/// Follows the Nodes until `stop`, keeping `addresses` current. The watcher
/// retries with back-off on its own; an API outage keeps the last addresses.
pub async fn watch_nodes(client: kube::Client, addresses: std::sync::Arc<Addresses>, stop: watch::Receiver<bool>) {
    let api: Api<Node> = Api::all(client);
    tracing::info!("watching Nodes for their external addresses");
    let events = watcher(api, watcher::Config::default()).default_backoff();
    crate::discovery::watch_until_stopped(events, "Node", stop, |event| match event {
        watcher::Event::Apply(node) | watcher::Event::InitApply(node) => {
            if let Some(name) = node.metadata.name.as_deref() {
                addresses.set_node(name, external_ip(&node));
            }
        }
        watcher::Event::Delete(node) => {
            if let Some(name) = node.metadata.name.as_deref() {
                addresses.set_node(name, None);
            }
        }
        watcher::Event::Init | watcher::Event::InitDone => {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use edge_telemetry::AcceleratorType;

    use super::*;

    fn endpoint(url: &str, node: &str, zone: &str) -> Endpoint {
        Endpoint {
            url: url.into(),
            accelerator: AcceleratorType::Cpu,
            zone: zone.into(),
            node: node.into(),
            namespace: "ns".into(),
            deployment: "sd".into(),
            pod: "sd-0".into(),
            queue_depth: 0,
            in_flight: 0,
            capacity: 4,
            latency_p50_seconds: None,
            latency_p99_seconds: None,
            address: AddressRule::Advertised,
            reachability: Reachability::Vpc,
        }
    }

    fn answer(a: &Addresses, url: &str, node: &str, zone: &str) -> (String, AddressRule, Reachability) {
        let mut e = endpoint(url, node, zone);
        a.apply(&mut e);
        (e.url, e.address, e.reachability)
    }

    #[test]
    fn external_ip_then_the_zones_host_then_as_advertised() {
        let a = Addresses::new(BTreeMap::from([("lax".to_owned(), "sd-lax.example.com".to_owned())]));
        a.set_node("public-node", Some("54.1.2.3".parse().unwrap()));
        a.set_node("v6-node", Some("2600:1f14::7".parse().unwrap()));
        let url = "http://10.0.3.7:30080";
        assert_eq!(
            answer(&a, url, "public-node", "lax"),
            ("http://54.1.2.3:30080".into(), AddressRule::ExternalIp, Reachability::Public)
        );
        assert_eq!(
            answer(&a, url, "v6-node", "us-west-2a"),
            ("http://[2600:1f14::7]:30080".into(), AddressRule::ExternalIp, Reachability::Public)
        );
        assert_eq!(
            answer(&a, url, "private-node", "lax"),
            ("http://sd-lax.example.com:30080".into(), AddressRule::AdvertiseHost, Reachability::Public)
        );
        assert_eq!(
            answer(&a, url, "private-node", "us-west-2a"),
            (url.into(), AddressRule::Advertised, Reachability::Vpc)
        );
        a.set_node("public-node", None);
        assert_eq!(a.external_nodes(), 1);
    }

    #[test]
    fn the_external_ip_is_read_from_the_node_status() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "ip-10-0-3-7"},
            "status": {"addresses": [
                {"type": "InternalIP", "address": "10.0.3.7"},
                {"type": "ExternalIP", "address": "54.1.2.3"},
                {"type": "Hostname", "address": "ip-10-0-3-7.ec2.internal"},
            ]},
        }))
        .unwrap();
        assert_eq!(external_ip(&node), Some("54.1.2.3".parse().unwrap()));
        let private: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"}, "status": {"addresses": [{"type": "InternalIP", "address": "10.0.3.8"}]},
        }))
        .unwrap();
        assert_eq!(external_ip(&private), None);
    }

    #[test]
    fn a_service_port_is_listed_at_the_node_port_kubernetes_picked() {
        let a = Addresses::new(BTreeMap::new());
        let mut e = endpoint("http://10.0.1.7:80/v1", "n1", "us-west-2a");
        e.namespace = "edge".into();
        e.deployment = "sd-gpu".into();
        a.apply(&mut e);
        assert_eq!(e.url, "http://10.0.1.7:80/v1", "no Service known: as advertised");
        a.set_service("edge", "sd-gpu", Some(vec![(80, 31234)]));
        let mut picked = e.clone();
        a.apply(&mut picked);
        assert_eq!(picked.url, "http://10.0.1.7:31234/v1");
        // An explicit NodePort is advertised as is; another workload's Service changes nothing.
        let mut explicit = endpoint("http://10.0.1.7:30080", "n1", "us-west-2a");
        explicit.namespace = "edge".into();
        explicit.deployment = "sd-gpu".into();
        a.apply(&mut explicit);
        assert_eq!(explicit.url, "http://10.0.1.7:30080");
        let mut other = e.clone();
        other.deployment = "sd-cpu".into();
        a.apply(&mut other);
        assert_eq!(other.url, "http://10.0.1.7:80/v1");
        a.set_service("edge", "sd-gpu", None);
        let mut gone = e.clone();
        a.apply(&mut gone);
        assert_eq!(gone.url, "http://10.0.1.7:80/v1");
    }

    #[test]
    fn node_ports_are_read_from_the_service_spec() {
        let s: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "sd-gpu"},
            "spec": {"type": "NodePort", "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "nodePort": 31234},
                {"name": "other", "port": 9000}]}
        }))
        .unwrap();
        assert_eq!(node_ports(&s), [(80, 31234)]);
    }
}
