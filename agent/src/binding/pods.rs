//! The pods on this node, as the API server says: UID → namespace, name,
//! Deployment and labels. Only metadata is watched (no pod specs held), and
//! only pods scheduled to this node (`spec.nodeName` field selector).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, watcher};
use tokio::sync::watch;

/// Who a pod is, as far as a worker report can claim.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodIdentity {
    /// metadata.namespace
    pub namespace: String,
    /// metadata.name
    pub name: String,
    /// The Deployment owning the pod's ReplicaSet; `None` for a pod no
    /// Deployment owns.
    pub deployment: Option<String>,
    /// metadata.labels
    pub labels: BTreeMap<String, String>,
}

impl PodIdentity {
    /// The identity in a pod's metadata, keyed by its UID.
    pub fn from_meta(meta: &kube::api::ObjectMeta) -> Option<(String, Self)> {
        let uid = meta.uid.clone()?;
        let labels: BTreeMap<String, String> = meta.labels.clone().unwrap_or_default().into_iter().collect();
        // A Deployment's ReplicaSet is named `<deployment>-<pod-template-hash>`,
        // and its pods carry that hash as a label.
        let deployment = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.kind == "ReplicaSet" && o.controller == Some(true))
            .and_then(|rs| {
                let hash = labels.get("pod-template-hash")?;
                rs.name.strip_suffix(&format!("-{hash}")).map(str::to_owned)
            });
        let identity = Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone()?,
            deployment,
            labels,
        };
        Some((uid, identity))
    }
}

/// The node's pods by UID, kept current by [`NodePods::follow`].
#[derive(Clone, Default)]
pub struct NodePods {
    by_uid: Arc<RwLock<HashMap<String, PodIdentity>>>,
    listed: Arc<AtomicBool>,
}

impl NodePods {
    /// The pod with this UID, if it is on this node.
    pub fn get(&self, uid: &str) -> Option<PodIdentity> {
        self.by_uid.read().unwrap_or_else(|p| p.into_inner()).get(uid).cloned()
    }

    /// Whether the first full list has arrived.
    pub fn listed(&self) -> bool {
        self.listed.load(Ordering::Acquire)
    }

    /// Sets the whole set at once (tests, and a watch's relist).
    pub fn replace(&self, pods: HashMap<String, PodIdentity>) {
        *self.by_uid.write().unwrap_or_else(|p| p.into_inner()) = pods;
        self.listed.store(true, Ordering::Release);
    }

    fn apply(&self, meta: &kube::api::ObjectMeta) {
        if let Some((uid, identity)) = PodIdentity::from_meta(meta) {
            self.by_uid.write().unwrap_or_else(|p| p.into_inner()).insert(uid, identity);
        }
    }

    fn delete(&self, meta: &kube::api::ObjectMeta) {
        if let Some(uid) = &meta.uid {
            self.by_uid.write().unwrap_or_else(|p| p.into_inner()).remove(uid);
        }
    }

    /// Watches the metadata of the pods on `node` until `stop`; a failed
    /// watch is retried with the watcher's backoff, keeping what is known.
    pub async fn follow(&self, client: kube::Client, node: &str, mut stop: watch::Receiver<bool>) {
        use kube::runtime::WatchStreamExt;
        // Metadata only: the API server sends no pod specs.
        let api: kube::Api<PartialObjectMeta<Pod>> = kube::Api::all(client);
        let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let events = watcher(api, config).default_backoff();
        let mut events = std::pin::pin!(events);
        let mut relist: Option<HashMap<String, PodIdentity>> = None;
        loop {
            let event = tokio::select! {
                e = events.next() => e,
                _ = stop.wait_for(|s| *s) => break,
            };
            let event: watcher::Event<PartialObjectMeta<Pod>> = match event {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, node, "watch of this node's pods failed; retrying");
                    continue;
                }
                Some(Ok(event)) => event,
            };
            match event {
                watcher::Event::Init => relist = Some(HashMap::new()),
                watcher::Event::InitApply(p) => {
                    if let Some((uid, identity)) = PodIdentity::from_meta(&p.metadata) {
                        relist.get_or_insert_default().insert(uid, identity);
                    }
                }
                watcher::Event::InitDone => {
                    let pods = relist.take().unwrap_or_default();
                    tracing::info!(node, pods = pods.len(), "listed this node's pods");
                    self.replace(pods);
                }
                watcher::Event::Apply(p) => self.apply(&p.metadata),
                watcher::Event::Delete(p) => self.delete(&p.metadata),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::ObjectMeta;

    fn meta(owner: Option<(&str, &str)>, hash: Option<&str>) -> ObjectMeta {
        let mut labels = std::collections::BTreeMap::from([("app".to_owned(), "sd".to_owned())]);
        if let Some(h) = hash {
            labels.insert("pod-template-hash".to_owned(), h.to_owned());
        }
        ObjectMeta {
            uid: Some("u1".into()),
            name: Some("sd-cpu-7d9f8b6c5d-x2x4z".into()),
            namespace: Some("edge".into()),
            labels: Some(labels),
            owner_references: owner.map(|(kind, name)| {
                vec![OwnerReference {
                    kind: kind.into(),
                    name: name.into(),
                    controller: Some(true),
                    api_version: "apps/v1".into(),
                    uid: "rs".into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_deployments_pod_names_its_deployment() {
        let (uid, id) =
            PodIdentity::from_meta(&meta(Some(("ReplicaSet", "sd-cpu-7d9f8b6c5d")), Some("7d9f8b6c5d"))).unwrap();
        assert_eq!(uid, "u1");
        assert_eq!((id.namespace.as_str(), id.name.as_str()), ("edge", "sd-cpu-7d9f8b6c5d-x2x4z"));
        assert_eq!(id.deployment.as_deref(), Some("sd-cpu"));
        assert_eq!(id.labels.get("app").map(String::as_str), Some("sd"));
    }

    #[test]
    fn other_owners_name_no_deployment() {
        for (owner, hash) in [
            (None, None),
            (Some(("StatefulSet", "sd-cpu")), None),
            // A bare ReplicaSet: no pod-template-hash label.
            (Some(("ReplicaSet", "sd-cpu")), None),
            // A hash that is not the ReplicaSet's suffix.
            (Some(("ReplicaSet", "sd-cpu-abc")), Some("xyz")),
        ] {
            let (_, id) = PodIdentity::from_meta(&meta(owner, hash)).unwrap();
            assert_eq!(id.deployment, None, "{owner:?} {hash:?}");
        }
    }
}
