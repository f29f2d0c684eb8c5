//! Which agents to follow: a static list, or the EndpointSlices of the agent
//! DaemonSet's Service, watched through the Kubernetes API with a `kube`
//! reflector (new agents are picked up and gone ones dropped without restart).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use crate::config::{KubeDiscovery, PortSelector};
use crate::sources::Sources;

/// Label the EndpointSlice controller puts on every slice of a Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Why Kubernetes discovery could not start.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// No kubeconfig and not in a pod, or a broken kubeconfig.
    #[error("cannot configure the Kubernetes client (KUBECONFIG, ~/.kube/config or in-cluster): {0}")]
    Config(#[source] kube::Error),
}

/// Follows a fixed list of agents until `stop`.
pub async fn run_static(agents: &[String], mut sources: Sources, mut stop: watch::Receiver<bool>) {
    sources.reconcile(&agents.iter().cloned().collect());
    sources.listed();
    let _ = stop.wait_for(|s| *s).await;
    sources.join().await;
}

/// Follows the agents behind a Service's EndpointSlices until `stop`. The
/// watcher retries with back-off on its own; API outages keep the current
/// agents followed.
pub async fn run_kubernetes(
    client: kube::Client,
    cfg: KubeDiscovery,
    mut sources: Sources,
    stop: watch::Receiver<bool>,
) {
    let namespace = cfg.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
    let api: Api<EndpointSlice> = Api::namespaced(client, &namespace);
    let selector = format!("{SERVICE_NAME_LABEL}={}", cfg.service);
    tracing::info!(service = %cfg.service, namespace = %namespace, "watching agent EndpointSlices");
    let (store, writer) = reflector::store();
    let events = reflector(writer, watcher(api, watcher::Config::default().labels(&selector))).default_backoff();
    let mut current = BTreeSet::new();
    watch_until_stopped(events, "EndpointSlice", stop, |event| match event {
        // Until the initial listing is complete the store still holds the old state.
        watcher::Event::Init | watcher::Event::InitApply(_) => {}
        _ => {
            let desired = addresses(&store, &cfg.port);
            if desired != current {
                tracing::info!(agents = desired.len(), "agent set changed");
                sources.reconcile(&desired);
                current = desired;
            }
            sources.listed();
        }
    })
    .await;
    sources.join().await;
}

/// Hands every event of a watcher stream to `on_event` until `stop` turns
/// true or the stream ends. Errors are logged with `kind`; the stream's
/// back-off retries them, and what was seen before stays in effect.
pub async fn watch_until_stopped<K>(
    events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    kind: &str,
    mut stop: watch::Receiver<bool>,
    mut on_event: impl FnMut(watcher::Event<K>),
) {
    let mut events = std::pin::pin!(events);
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            _ = stop.wait_for(|s| *s) => break,
        };
        match event {
            None => break,
            Some(Err(e)) => tracing::warn!(error = %e, kind, "watch failed; retrying"),
            Some(Ok(event)) => on_event(event),
        }
    }
}

/// The Kubernetes client from KUBECONFIG, ~/.kube/config, or the pod's
/// service account.
pub async fn client() -> Result<kube::Client, DiscoveryError> {
    kube::Client::try_default().await.map_err(DiscoveryError::Config)
}

fn addresses(store: &Store<EndpointSlice>, port: &PortSelector) -> BTreeSet<String> {
    agent_addresses(&store.state(), port)
}

/// The `host:port` of every ready agent in `slices`. An endpoint counts
/// unless it says it is not ready (an unset condition means ready, as the
/// EndpointSlice API asks consumers to read it).
pub fn agent_addresses(slices: &[Arc<EndpointSlice>], selector: &PortSelector) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for slice in slices {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let from_slice = |p: Option<&k8s_openapi::api::discovery::v1::EndpointPort>| {
            p.and_then(|p| p.port).and_then(|p| u16::try_from(p).ok())
        };
        let port = match selector {
            PortSelector::Number(n) => Some(*n),
            PortSelector::First => from_slice(ports.first()),
            PortSelector::Named(name) => from_slice(ports.iter().find(|p| p.name.as_deref() == Some(name.as_str()))),
        };
        let Some(port) = port else {
            tracing::warn!(slice = ?slice.metadata.name, "EndpointSlice has no usable agent port; skipped");
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for addr in &endpoint.addresses {
                out.insert(match addr.parse::<IpAddr>() {
                    Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
                    _ => format!("{addr}:{port}"),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
    use kube::api::ObjectMeta;

    use super::*;

    fn slice(name: &str, ports: &[(&str, i32)], endpoints: &[(&str, Option<bool>)]) -> Arc<EndpointSlice> {
        Arc::new(EndpointSlice {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            address_type: "IPv4".into(),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p)| EndpointPort { name: Some((*n).into()), port: Some(*p), ..Default::default() })
                    .collect(),
            ),
            endpoints: Some(
                endpoints
                    .iter()
                    .map(|(a, ready)| Endpoint {
                        addresses: vec![(*a).into()],
                        conditions: ready.map(|r| EndpointConditions { ready: Some(r), ..Default::default() }),
                        ..Default::default()
                    })
                    .collect(),
            ),
        })
    }

    #[test]
    fn ready_endpoints_with_the_selected_port() {
        let slices = vec![
            slice(
                "a",
                &[("http", 9400), ("other", 1)],
                &[("10.0.0.1", Some(true)), ("10.0.0.2", None), ("10.0.0.3", Some(false))],
            ),
            slice("b", &[("other", 2)], &[("fd00::5", Some(true))]),
        ];
        let set = |sel| agent_addresses(&slices, &sel).into_iter().collect::<Vec<_>>();
        assert_eq!(set(PortSelector::First), ["10.0.0.1:9400", "10.0.0.2:9400", "[fd00::5]:2"]);
        assert_eq!(set(PortSelector::Named("http".into())), ["10.0.0.1:9400", "10.0.0.2:9400"]);
        assert_eq!(set(PortSelector::Number(7)), ["10.0.0.1:7", "10.0.0.2:7", "[fd00::5]:7"]);
    }
}
