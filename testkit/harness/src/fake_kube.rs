//! A fake Kubernetes API server at the HTTP boundary: a local HTTP server
//! speaking the list/watch protocol for the collections a test names, so the
//! real `kube` client, watcher and reflector run unchanged.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::watch;

/// One collection's state: current objects, and every event with its
/// resourceVersion so a watch from version N replays what came after.
#[derive(Default)]
struct Objects {
    version: u64,
    items: HashMap<String, Value>,
    events: Vec<(u64, Value)>,
    queries: Vec<HashMap<String, String>>,
}

/// One collection the fake serves (e.g. `/api/v1/pods`).
#[derive(Clone)]
pub struct Collection {
    objects: Arc<Mutex<Objects>>,
    changed: watch::Sender<u64>,
    api_version: &'static str,
    list_kind: &'static str,
}

impl Collection {
    /// Records an `ADDED`, `MODIFIED` or `DELETED` event of object `name`.
    pub fn apply(&self, event: &str, name: &str, mut object: Value) {
        let mut c = self.objects.lock().unwrap();
        c.version += 1;
        let v = c.version;
        object["metadata"]["resourceVersion"] = json!(v.to_string());
        if event == "DELETED" {
            c.items.remove(name);
        } else {
            c.items.insert(name.to_owned(), object.clone());
        }
        c.events.push((v, json!({"type": event, "object": object})));
        drop(c);
        self.changed.send_replace(v);
    }

    /// The `labelSelector` of every list and watch so far ("" when none).
    pub fn selectors(&self) -> Vec<String> {
        self.queried("labelSelector")
    }

    /// The value of query parameter `key` of every list and watch so far ("" when absent).
    pub fn queried(&self, key: &str) -> Vec<String> {
        let c = self.objects.lock().unwrap();
        c.queries.iter().map(|q| q.get(key).cloned().unwrap_or_default()).collect()
    }

    /// The collection's list, or its watch from `resourceVersion` on.
    fn list_or_watch(&self, query: HashMap<String, String>) -> Response {
        let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
        let from: u64 = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
        self.objects.lock().unwrap().queries.push(query);
        if watching {
            let state = (self.clone(), from, self.changed.subscribe());
            // One JSON event per line, as the API server streams a watch.
            let stream = futures::stream::unfold(state, |(api, mut sent, mut rx)| async move {
                loop {
                    let next: Vec<(u64, Value)> = {
                        let c = api.objects.lock().unwrap();
                        c.events.iter().filter(|(v, _)| *v > sent).cloned().collect()
                    };
                    if let Some((last, _)) = next.last() {
                        sent = *last;
                        let body: String = next.iter().map(|(_, e)| format!("{e}\n")).collect();
                        return Some((Ok::<_, Infallible>(Bytes::from(body)), (api, sent, rx)));
                    }
                    if rx.changed().await.is_err() {
                        return None;
                    }
                }
            });
            return ([(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream)).into_response();
        }
        let c = self.objects.lock().unwrap();
        let list = json!({
            "apiVersion": self.api_version,
            "kind": self.list_kind,
            "metadata": {"resourceVersion": c.version.to_string()},
            "items": c.items.values().cloned().collect::<Vec<_>>(),
        });
        ([(header::CONTENT_TYPE, "application/json")], list.to_string()).into_response()
    }
}

/// What a collection is: its exact path, e.g. `/api/v1/pods` or
/// `/apis/discovery.k8s.io/v1/namespaces/edge/endpointslices`, its list's
/// apiVersion and kind.
pub struct Serves {
    /// The URL path (any other path, other namespaces included, is 404).
    pub path: &'static str,
    /// e.g. `v1`
    pub api_version: &'static str,
    /// e.g. `PodList`
    pub list_kind: &'static str,
}

/// Starts the fake on a loopback port; the collections come back in the order given.
pub async fn start(serves: &[Serves]) -> (Vec<Collection>, SocketAddr) {
    let mut app = Router::new();
    let mut collections = Vec::new();
    for s in serves {
        let c = Collection {
            objects: Arc::default(),
            changed: watch::Sender::new(0),
            api_version: s.api_version,
            list_kind: s.list_kind,
        };
        app =
            app.route(
                s.path,
                get(|State(c): State<Collection>, Query(q): Query<HashMap<String, String>>| async move {
                    c.list_or_watch(q)
                })
                .with_state(c.clone()),
            );
        collections.push(c);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (collections, addr)
}

/// Writes a kubeconfig for the fake at `api` into `dir`, with `namespace`
/// as the context's namespace; returns its path (for `KUBECONFIG`).
pub fn kubeconfig(dir: &Path, api: SocketAddr, namespace: &str) -> String {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{api}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}
