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
//! The port and path stay as advertised. Each endpoint names the rule that
//! chose its host (`address`).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::RwLock;

use edge_telemetry::inventory::{AddressRule, Endpoint, Reachability, split_host};
use k8s_openapi::api::core::v1::Node;
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
}

impl Addresses {
    /// No node known yet; `advertise_host` per zone.
    pub fn new(advertise_host: BTreeMap<String, String>) -> Self {
        Self { external: RwLock::default(), advertise_host }
    }

    /// Records a node's `ExternalIP` (`None`: it has none, or it is gone).
    pub fn set_node(&self, node: &str, external: Option<IpAddr>) {
        let mut map = self.external.write().unwrap_or_else(|e| e.into_inner());
        match external {
            Some(ip) => map.insert(node.to_owned(), ip),
            None => map.remove(node),
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
        e.url = format!("{scheme}{new_host}{rest}");
        e.address = rule;
        e.reachability = Reachability::of_host(&new_host);
    }
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
}
