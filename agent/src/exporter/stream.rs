//! The change feed for the scaler: `edge.agent.v1.SnapshotFeed/Watch`.
//!
//! Each subscriber gets the current snapshot at once, then every change, and
//! the latest snapshot again after `heartbeat` without a change. A slow
//! subscriber never holds the agent back: the `watch` channel keeps only the
//! newest snapshot, so it skips to the latest when it catches up.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use edge_telemetry::proto::snapshot_feed_server::{SnapshotFeed, SnapshotFeedServer};
use edge_telemetry::proto::{NodeSnapshot, WatchRequest};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::snapshot::SnapshotStore;

/// The gRPC service.
#[derive(Clone)]
pub struct FeedService {
    store: SnapshotStore,
    heartbeat: Duration,
    shutdown: watch::Receiver<bool>,
}

impl FeedService {
    /// A feed of `store`; streams end (with OK) when `shutdown` turns true.
    pub fn new(store: SnapshotStore, heartbeat: Duration, shutdown: watch::Receiver<bool>) -> Self {
        Self { store, heartbeat, shutdown }
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> SnapshotFeedServer<Self> {
        SnapshotFeedServer::new(self)
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<NodeSnapshot, Status>> + Send>>;

#[tonic::async_trait]
impl SnapshotFeed for FeedService {
    type WatchStream = SnapshotStream;

    async fn watch(&self, request: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let peer = request.remote_addr();
        let mut snapshots = self.store.subscribe();
        let mut shutdown = self.shutdown.clone();
        let heartbeat = self.heartbeat;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            tracing::debug!(?peer, "snapshot subscriber connected");
            let mut current: Arc<NodeSnapshot> = snapshots.borrow_and_update().clone();
            loop {
                if tx.send(Ok(NodeSnapshot::clone(&current))).await.is_err() {
                    break; // subscriber gone
                }
                tokio::select! {
                    changed = snapshots.changed() => {
                        if changed.is_err() { break; }
                        current = snapshots.borrow_and_update().clone();
                    }
                    _ = tokio::time::sleep(heartbeat) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
            }
            tracing::debug!(?peer, "snapshot subscriber done");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
