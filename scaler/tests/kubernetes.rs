//! Kubernetes discovery against a fake API server at the HTTP boundary: a
//! local HTTP server speaking the list/watch protocol for EndpointSlices and
//! Nodes, so the scaler's real `kube` client, watcher and reflector run
//! unchanged. The slices point at real `edge-agent` processes.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::*;
use edge_testkit::sample;
use serde_json::{Value, json};
use tokio::sync::watch;

/// The API server's state: current slices, and every event with its
/// resourceVersion so a watch from version N replays what came after.
#[derive(Default)]
struct Cluster {
    version: u64,
    items: HashMap<String, Value>,
    events: Vec<(u64, Value)>,
    selectors: Vec<String>,
}

#[derive(Clone)]
struct FakeApi {
    cluster: Arc<Mutex<Cluster>>,
    changed: watch::Sender<u64>,
}

impl FakeApi {
    fn apply(&self, kind: &str, name: &str, mut slice: Value) {
        let mut c = self.cluster.lock().unwrap();
        c.version += 1;
        let v = c.version;
        slice["metadata"]["resourceVersion"] = json!(v.to_string());
        if kind == "DELETED" {
            c.items.remove(name);
        } else {
            c.items.insert(name.to_owned(), slice.clone());
        }
        c.events.push((v, json!({"type": kind, "object": slice})));
        drop(c);
        self.changed.send_replace(v);
    }

    fn selectors(&self) -> Vec<String> {
        self.cluster.lock().unwrap().selectors.clone()
    }
}

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

async fn endpointslices(
    State(apis): State<Apis>,
    Path(namespace): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if namespace != "edge" {
        return (StatusCode::NOT_FOUND, "wrong namespace").into_response();
    }
    list_or_watch(&apis.slices, "discovery.k8s.io/v1", "EndpointSliceList", query)
}

async fn nodes(State(apis): State<Apis>, Query(query): Query<HashMap<String, String>>) -> Response {
    list_or_watch(&apis.nodes, "v1", "NodeList", query)
}

/// A collection's list, or its watch from `resourceVersion` on.
fn list_or_watch(api: &FakeApi, api_version: &str, list_kind: &str, query: HashMap<String, String>) -> Response {
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    api.cluster.lock().unwrap().selectors.push(selector);
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let from: u64 = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
        let state = (api.clone(), from, api.changed.subscribe());
        // One JSON event per line, as the API server streams a watch.
        let stream = futures::stream::unfold(state, |(api, mut sent, mut rx)| async move {
            loop {
                let next: Vec<(u64, Value)> = {
                    let c = api.cluster.lock().unwrap();
                    c.events.iter().filter(|(v, _)| *v > sent).cloned().collect()
                };
                if !next.is_empty() {
                    sent = next.last().unwrap().0;
                    let mut body = String::new();
                    for (_, e) in next {
                        body.push_str(&e.to_string());
                        body.push('\n');
                    }
                    return Some((Ok::<_, Infallible>(Bytes::from(body)), (api, sent, rx)));
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        });
        return ([(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream)).into_response();
    }
    let c = api.cluster.lock().unwrap();
    let list = json!({
        "apiVersion": api_version,
        "kind": list_kind,
        "metadata": {"resourceVersion": c.version.to_string()},
        "items": c.items.values().cloned().collect::<Vec<_>>(),
    });
    ([(header::CONTENT_TYPE, "application/json")], list.to_string()).into_response()
}

/// The collections the fake API server serves.
#[derive(Clone)]
struct Apis {
    slices: FakeApi,
    nodes: FakeApi,
}

async fn start_fake_api() -> (FakeApi, SocketAddr) {
    let (apis, addr) = start_fake_apis().await;
    (apis.slices, addr)
}

async fn start_fake_apis() -> (Apis, SocketAddr) {
    let fake = || FakeApi { cluster: Arc::default(), changed: watch::Sender::new(0) };
    let apis = Apis { slices: fake(), nodes: fake() };
    let app = Router::new()
        .route("/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices", get(endpointslices))
        .route("/api/v1/nodes", get(nodes))
        .with_state(apis.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (apis, addr)
}

fn kubeconfig(dir: &std::path::Path, api: SocketAddr) -> String {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{api}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: edge\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

const CPU: &[(&str, &str)] = &[("acceleratorType", "cpu"), ("deployment", "sd-cpu"), ("targetValue", "2")];

async fn wait_for(scaler: &Scaler, want: Option<f64>, what: &str) -> Result<f64, tonic::Status> {
    let keda = scaler.client().await;
    eventually(PATIENCE, what, || {
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
    let scaler = Scaler::start(
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
    eventually(PATIENCE, "one agent followed", || async {
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
    let (apis, api_addr) = start_fake_apis().await;
    for (i, (name, agent)) in agents.iter().enumerate() {
        let ready = [("127.0.0.1", true)];
        apis.slices.apply("ADDED", name, slice(name, agent.addr.port(), &ready));
        let external = (i == 0).then_some("54.1.2.3");
        apis.nodes.apply("ADDED", name, node(name, ips[i], external));
    }
    let dir = tempfile::tempdir().unwrap();
    let scaler = Scaler::start(
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
        by_node(&body).contains(&row("node-private", "http://54.9.9.9:30080", "external-ip", "public")).then_some(())
    });
    assert!(
        apis.nodes.selectors().iter().all(String::is_empty),
        "every Node, no selector: {:?}",
        apis.nodes.selectors()
    );
}
