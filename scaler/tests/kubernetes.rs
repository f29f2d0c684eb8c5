//! Kubernetes discovery against a fake API server at the HTTP boundary
//! (`edge_testkit::fake_kube`: the list/watch protocol for EndpointSlices and
//! Nodes), so the scaler's real `kube` client, watcher and reflector run
//! unchanged. The slices point at real `edge-agent` processes.

mod common;

use std::net::SocketAddr;

use common::*;
use edge_testkit::fake_kube::{self, Collection, Serves};
use edge_testkit::sample;
use serde_json::{Value, json};

/// An EndpointSlice of the `edge-agent` Service with one endpoint per (address, ready).
fn slice(name: &str, port: u16, endpoints: &[(&str, bool)]) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "edge",
            "labels": {"kubernetes.io/service-name": "edge-agent"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": endpoints.iter().map(|(addr, ready)| json!({
            "addresses": [addr],
            "conditions": {"ready": ready},
        })).collect::<Vec<_>>(),
    })
}

/// The collections the fake API server serves.
struct Apis {
    slices: Collection,
    nodes: Collection,
    services: Collection,
}

async fn start_fake_api() -> (Collection, SocketAddr) {
    let (apis, addr) = start_fake_apis().await;
    (apis.slices, addr)
}

async fn start_fake_apis() -> (Apis, SocketAddr) {
    let (mut c, addr) = fake_kube::start(&[
        Serves {
            path: "/apis/discovery.k8s.io/v1/namespaces/edge/endpointslices",
            api_version: "discovery.k8s.io/v1",
            list_kind: "EndpointSliceList",
        },
        Serves { path: "/api/v1/nodes", api_version: "v1", list_kind: "NodeList" },
        Serves { path: "/api/v1/namespaces/edge/services", api_version: "v1", list_kind: "ServiceList" },
    ])
    .await;
    let services = c.pop().unwrap();
    let nodes = c.pop().unwrap();
    (Apis { slices: c.pop().unwrap(), nodes, services }, addr)
}

fn kubeconfig(dir: &std::path::Path, api: SocketAddr) -> String {
    fake_kube::kubeconfig(dir, api, "edge")
}

const CPU: &[(&str, &str)] = &[("acceleratorType", "cpu"), ("deployment", "sd-cpu"), ("targetValue", "2")];

async fn wait_for(scaler: &Scaler, want: Option<f64>, what: &str) -> Result<f64, tonic::Status> {
    let keda = scaler.client().await;
    edge_testkit::eventually_async(PATIENCE, what, || {
        let mut k = keda.clone();
        async move {
            let got = get_metric(&mut k, CPU).await;
            match (want, &got) {
                (Some(w), Ok(v)) if *v == w => Some(got),
                (None, Err(_)) => Some(got),
                _ => None,
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_slices_add_and_drop_agents_without_restart() {
    let (a, b) = (start_agent("zone-a"), start_agent("zone-b"));
    report(&a, "w1", "sd-cpu", "cpu", 2, 0);
    report(&b, "w2", "sd-cpu", "cpu", 3, 0);
    let (api, api_addr) = start_fake_api().await;
    // One ready agent, and an endpoint that is not ready (never followed).
    api.apply(
        "ADDED",
        "edge-agent-a",
        slice("edge-agent-a", a.addr.port(), &[("127.0.0.1", true), ("127.0.0.2", false)]),
    );

    let dir = tempfile::tempdir().unwrap();
    let scaler = start_scaler(
        &[("agent-service", "edge-agent".into()), ("agent-port", "http".into()), ("stale-after", "1s".into())],
        &[("KUBECONFIG", kubeconfig(dir.path(), api_addr))],
    );
    wait_for(&scaler, Some(2.0), "the agent of the first slice").await.unwrap();
    assert!(
        api.selectors().iter().all(|s| s == "kubernetes.io/service-name=edge-agent"),
        "list/watch without the Service's label selector: {:?}",
        api.selectors()
    );
    let m = scaler.metrics();
    assert_eq!(sample(&m, "edge_scaler_agents"), Some(1.0), "the not-ready endpoint is not followed:\n{m}");

    // A new node: its slice appears on the watch.
    api.apply("ADDED", "edge-agent-b", slice("edge-agent-b", b.addr.port(), &[("127.0.0.1", true)]));
    wait_for(&scaler, Some(5.0), "both agents").await.unwrap();

    // The first node goes away: its agent is dropped (after its data is stale).
    api.apply("DELETED", "edge-agent-a", slice("edge-agent-a", a.addr.port(), &[]));
    wait_for(&scaler, Some(3.0), "only the second agent").await.unwrap();
    edge_testkit::eventually_async(PATIENCE, "one agent followed", || async {
        (sample(&scaler.metrics(), "edge_scaler_agents") == Some(1.0)).then_some(())
    })
    .await;

    // The last agent turns not ready: nothing left to trust, so an error (KEDA's fallback), not 0.
    api.apply("MODIFIED", "edge-agent-b", slice("edge-agent-b", b.addr.port(), &[("127.0.0.1", false)]));
    let err = wait_for(&scaler, None, "an error with no agents left").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("stale") || err.message().contains("no agent"), "{err:?}");
}

#[test]
fn no_kubeconfig_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-scaler"))
        .args(["--agent-service=edge-agent", "--listen=127.0.0.1:0", "--metrics-listen="])
        .env("KUBECONFIG", dir.path().join("missing"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Kubernetes client"), "{stderr}");
}

/// A Node with an InternalIP and, if given, an ExternalIP.
fn node(name: &str, internal: &str, external: Option<&str>) -> Value {
    let mut addresses = vec![json!({"type": "InternalIP", "address": internal})];
    if let Some(ip) = external {
        addresses.push(json!({"type": "ExternalIP", "address": ip}));
    }
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {"addresses": addresses}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_listed_at_the_address_a_device_can_reach() {
    // Three nodes' workers, all advertising their private address: one node with a
    // public IP, one in a Local Zone behind a load balancer, one private only.
    let agents = [("node-public", "zone-a"), ("node-lax", "lax"), ("node-private", "zone-a")]
        .map(|(node, zone)| (node, agent_builder(zone).flag("node-name", node).start()));
    let ips = ["10.0.1.10", "10.0.2.20", "10.0.1.30"];
    for ((node, agent), ip) in agents.iter().zip(ips) {
        report_with(agent, node, "sd-cpu", "cpu", 0, 0, json!({"endpoint": format!("http://{ip}:30080")}));
    }
    // A worker whose NodePort Kubernetes picked advertises its Service's port (80).
    let picked = json!({"endpoint": "http://10.0.1.30:80", "namespace": "edge"});
    report_with(&agents[2].1, "picked", "sd-picked", "cpu", 0, 0, picked);
    let (apis, api_addr) = start_fake_apis().await;
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "sd-picked", "namespace": "edge", "labels": {"edge-diffusion.io/workload": "sd-picked"}},
        "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 31234}]}});
    apis.services.apply("ADDED", "sd-picked", service);
    for (i, (name, agent)) in agents.iter().enumerate() {
        let ready = [("127.0.0.1", true)];
        apis.slices.apply("ADDED", name, slice(name, agent.addr.port(), &ready));
        let external = (i == 0).then_some("54.1.2.3");
        apis.nodes.apply("ADDED", name, node(name, ips[i], external));
    }
    let dir = tempfile::tempdir().unwrap();
    let scaler = start_scaler(
        &[
            ("agent-service", "edge-agent".into()),
            ("agent-port", "http".into()),
            ("node-addresses", "true".into()),
            ("advertise-host", "lax=sd-lax.example.com".into()),
        ],
        &[("KUBECONFIG", kubeconfig(dir.path(), api_addr))],
    );
    let by_node = |body: &str| -> Vec<(String, String, String, String)> {
        let v: Value = serde_json::from_str(body).unwrap();
        let mut rows: Vec<_> = v["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap().to_owned();
                (s("node"), s("url"), s("address"), s("reachability"))
            })
            .collect();
        rows.sort();
        rows
    };
    let row = |n: &str, u: &str, a: &str, r: &str| (n.to_owned(), u.to_owned(), a.to_owned(), r.to_owned());
    let expected = vec![
        row("node-lax", "http://sd-lax.example.com:30080", "advertise-host", "public"),
        row("node-private", "http://10.0.1.30:30080", "advertised", "vpc"),
        row("node-private", "http://10.0.1.30:31234", "advertised", "vpc"),
        row("node-public", "http://54.1.2.3:30080", "external-ip", "public"),
    ];
    edge_testkit::eventually(PATIENCE, "every endpoint at its reachable address", || {
        let (status, body) = edge_testkit::http::get(scaler.metrics_addr, "/v1/endpoints").ok()?;
        (status == 200 && by_node(&body) == expected).then_some(())
    });
    // The private node gets a public IP: the next answer follows the Node.
    apis.nodes.apply("MODIFIED", "node-private", node("node-private", ips[2], Some("54.9.9.9")));
    edge_testkit::eventually(PATIENCE, "the new ExternalIP used", || {
        let (_, body) = edge_testkit::http::get(scaler.metrics_addr, "/v1/endpoints").ok()?;
        let rows = by_node(&body);
        (rows.contains(&row("node-private", "http://54.9.9.9:30080", "external-ip", "public"))
            && rows.contains(&row("node-private", "http://54.9.9.9:31234", "external-ip", "public")))
        .then_some(())
    });
    assert!(
        apis.services.selectors().iter().all(|s| s == "edge-diffusion.io/workload"),
        "only the workers' Services: {:?}",
        apis.services.selectors()
    );
    assert!(
        apis.nodes.selectors().iter().all(String::is_empty),
        "every Node, no selector: {:?}",
        apis.nodes.selectors()
    );
}
