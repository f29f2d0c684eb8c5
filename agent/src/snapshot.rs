//! The one `NodeSnapshot` every exporter reads.
//!
//! Collectors and the worker intake change it through [`SnapshotStore::update`];
//! a change bumps the sequence and is published at once to every reader
//! through a `watch` channel. An update that changes nothing publishes nothing,
//! so a worker's heartbeat with the same numbers costs no stream message.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use edge_telemetry::proto::{CollectorHealth, Node, NodeSnapshot};
use edge_telemetry::view::CollectorName;
use tokio::sync::watch;

/// The collectors, in the order they appear in a snapshot.
pub const COLLECTORS: [CollectorName; 5] = CollectorName::ALL;

/// Shared, cloneable handle to the node's snapshot.
#[derive(Clone)]
pub struct SnapshotStore {
    // The mutex serialises writers (tick and reports); readers use the watch
    // channel and never block a writer for longer than an Arc clone.
    current: Arc<Mutex<NodeSnapshot>>,
    tx: Arc<watch::Sender<Arc<NodeSnapshot>>>,
}

impl SnapshotStore {
    /// A store for this node with every collector listed and nothing collected.
    pub fn new(node: Node) -> Self {
        let snapshot = NodeSnapshot {
            node: Some(node),
            updated_at_unix_ms: unix_ms(),
            collectors: COLLECTORS
                .iter()
                .map(|c| CollectorHealth { collector: c.as_str().to_owned(), ..Default::default() })
                .collect(),
            ..Default::default()
        };
        let (tx, _) = watch::channel(Arc::new(snapshot.clone()));
        Self { current: Arc::new(Mutex::new(snapshot)), tx: Arc::new(tx) }
    }

    /// Applies `change`; if the snapshot differs afterwards, bumps the
    /// sequence, stamps the time and publishes it. Returns whether it changed.
    pub fn update(&self, change: impl FnOnce(&mut NodeSnapshot)) -> bool {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = current.clone();
        change(&mut next);
        // Compare without the fields the store itself owns.
        next.sequence = current.sequence;
        next.updated_at_unix_ms = current.updated_at_unix_ms;
        if next == *current {
            return false;
        }
        next.sequence = current.sequence + 1;
        next.updated_at_unix_ms = unix_ms();
        *current = next;
        self.tx.send_replace(Arc::new(current.clone()));
        true
    }

    /// The latest snapshot.
    pub fn latest(&self) -> Arc<NodeSnapshot> {
        self.tx.borrow().clone()
    }

    /// A receiver that wakes on every published change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<NodeSnapshot>> {
        self.tx.subscribe()
    }
}

/// The health entry of `collector` in `snapshot`, created if missing.
pub fn collector_health<'a>(snapshot: &'a mut NodeSnapshot, collector: &str) -> &'a mut CollectorHealth {
    let pos = match snapshot.collectors.iter().position(|c| c.collector == collector) {
        Some(pos) => pos,
        None => {
            snapshot.collectors.push(CollectorHealth { collector: collector.to_owned(), ..Default::default() });
            snapshot.collectors.len() - 1
        }
    };
    &mut snapshot.collectors[pos]
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_telemetry::proto::Worker;

    fn store() -> SnapshotStore {
        SnapshotStore::new(Node { name: "n1".into(), ..Default::default() })
    }

    #[test]
    fn a_change_bumps_the_sequence_and_wakes_readers() {
        let store = store();
        let mut rx = store.subscribe();
        rx.mark_unchanged();
        assert!(store.update(|s| s.workers.push(Worker {
            worker_id: "w".into(),
            queue_depth: 1,
            ..Default::default()
        })));
        assert!(rx.has_changed().unwrap());
        let snap = rx.borrow_and_update().clone();
        assert_eq!(snap.sequence, 1);
        assert_eq!(snap.workers[0].queue_depth, 1);
        assert_eq!(store.latest().sequence, 1);
    }

    #[test]
    fn an_update_that_changes_nothing_publishes_nothing() {
        let store = store();
        store.update(|s| s.workers.push(Worker { worker_id: "w".into(), ..Default::default() }));
        let mut rx = store.subscribe();
        rx.mark_unchanged();
        assert!(!store.update(|s| s.workers[0].queue_depth = 0));
        assert!(!rx.has_changed().unwrap());
        assert_eq!(store.latest().sequence, 1);
    }

    #[test]
    fn every_collector_is_listed_from_the_start() {
        let snap = store().latest();
        let names: Vec<_> = snap.collectors.iter().map(|c| c.collector.as_str()).collect();
        assert_eq!(names, COLLECTORS.map(CollectorName::as_str));
    }
}
