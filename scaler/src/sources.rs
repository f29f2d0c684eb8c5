//! One change-stream subscription per agent (`edge.agent.v1.SnapshotFeed/Watch`),
//! reconnecting with back-off, feeding the [`AgentTable`].
//!
//! [`Sources`] is what discovery drives: given the set of agent addresses it
//! wants followed, it starts the missing subscriptions and stops the extra ones.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use edge_telemetry::proto::WatchRequest;
use edge_telemetry::proto::snapshot_feed_client::SnapshotFeedClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Endpoint;

use crate::agents::{AgentId, AgentTable};
use crate::metrics::ScalerMetrics;

/// First wait before reconnecting; doubles up to the configured maximum.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Bound on a TCP connect to an agent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why one subscription ended.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The address does not form a valid URI.
    #[error("invalid agent address {addr:?}: {source}")]
    Address {
        /// The address.
        addr: String,
        /// The parse error.
        #[source]
        source: tonic::transport::Error,
    },
    /// TCP/HTTP2 connection failed.
    #[error("cannot connect: {0}")]
    Connect(#[source] tonic::transport::Error),
    /// The Watch call or the stream failed.
    #[error("stream failed: {0}")]
    Stream(#[source] tonic::Status),
}

/// Doubling wait with ±20 % jitter, so a thousand agents coming back do not
/// reconnect in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    seed: u64,
}

impl Backoff {
    /// Starts at 100ms, never above `max`; `seed` varies the jitter per agent.
    pub fn new(max: Duration, seed: u64) -> Self {
        Self { next: BACKOFF_START.min(max), max, seed: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1 }
    }

    /// After a successful message: start over.
    pub fn reset(&mut self) {
        self.next = BACKOFF_START.min(self.max);
    }

    /// The next wait.
    pub fn next_wait(&mut self) -> Duration {
        // xorshift64: cheap, deterministic per seed, good enough for jitter.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let factor = 0.8 + 0.4 * (self.seed % 1000) as f64 / 1000.0;
        let wait = self.next.mul_f64(factor).min(self.max);
        self.next = (self.next * 2).min(self.max);
        wait
    }
}

/// Follows one agent until `stop` turns true (or the task is aborted).
async fn follow(
    id: AgentId,
    addr: String,
    table: Arc<AgentTable>,
    metrics: Arc<ScalerMetrics>,
    reconnect_max: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(reconnect_max, id);
    loop {
        let result = tokio::select! {
            r = subscribe(id, &addr, &table, &metrics, &mut backoff) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        table.set_connected(id, false);
        metrics.disconnects.inc();
        match result {
            Ok(()) => tracing::info!(agent = %addr, "agent ended its stream; reconnecting"),
            Err(e) => tracing::warn!(agent = %addr, error = %e, "agent stream lost; reconnecting"),
        }
        let wait = backoff.next_wait();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn subscribe(
    id: AgentId,
    addr: &str,
    table: &AgentTable,
    metrics: &ScalerMetrics,
    backoff: &mut Backoff,
) -> Result<(), SourceError> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|source| SourceError::Address { addr: addr.to_owned(), source })?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        // A dead peer without a FIN is caught by staleness first; this frees the socket.
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10));
    let channel = endpoint.connect().await.map_err(SourceError::Connect)?;
    let mut stream =
        SnapshotFeedClient::new(channel).watch(WatchRequest {}).await.map_err(SourceError::Stream)?.into_inner();
    table.set_connected(id, true);
    tracing::debug!(agent = %addr, "agent stream open");
    let mut first = true;
    while let Some(snapshot) = stream.message().await.map_err(SourceError::Stream)? {
        let samples = if std::mem::take(&mut first) { table.apply(id, &snapshot) } else { table.ingest(id, &snapshot) };
        metrics.observe_cold_starts(&samples);
        metrics.snapshots.inc();
        backoff.reset();
    }
    Ok(())
}

/// The running subscriptions, keyed by agent address.
pub struct Sources {
    table: Arc<AgentTable>,
    metrics: Arc<ScalerMetrics>,
    reconnect_max: Duration,
    stop: watch::Receiver<bool>,
    running: HashMap<String, (AgentId, JoinHandle<()>)>,
}

impl Sources {
    /// No subscriptions yet.
    pub fn new(
        table: Arc<AgentTable>,
        metrics: Arc<ScalerMetrics>,
        reconnect_max: Duration,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self { table, metrics, reconnect_max, stop, running: HashMap::new() }
    }

    /// Discovery's listing is complete (also when it changed nothing).
    pub fn listed(&self) {
        self.table.mark_listed();
    }

    /// Follows exactly `desired`: starts new agents, drops gone ones (their
    /// data counts until it is stale).
    pub fn reconcile(&mut self, desired: &BTreeSet<String>) {
        let gone: Vec<String> = self.running.keys().filter(|a| !desired.contains(*a)).cloned().collect();
        for addr in gone {
            if let Some((id, task)) = self.running.remove(&addr) {
                task.abort();
                self.table.remove_agent(id);
                tracing::info!(agent = %addr, "agent dropped");
            }
        }
        for addr in desired {
            if self.running.contains_key(addr) {
                continue;
            }
            let id = self.table.add_agent(addr);
            let task = tokio::spawn(follow(
                id,
                addr.clone(),
                Arc::clone(&self.table),
                Arc::clone(&self.metrics),
                self.reconnect_max,
                self.stop.clone(),
            ));
            tracing::info!(agent = %addr, "following agent");
            self.running.insert(addr.clone(), (id, task));
        }
    }

    /// Waits for every subscription to end (after `stop`).
    pub async fn join(self) {
        for (_, (_, task)) in self.running {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_max_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), 7);
        let waits: Vec<Duration> = (0..8).map(|_| b.next_wait()).collect();
        for (i, w) in waits.iter().enumerate() {
            let nominal = (BACKOFF_START * 2u32.pow(i as u32)).min(Duration::from_secs(1));
            assert!(*w >= nominal.mul_f64(0.8) && *w <= nominal.mul_f64(1.2).min(Duration::from_secs(1)), "{i}: {w:?}");
        }
        b.reset();
        assert!(b.next_wait() <= BACKOFF_START.mul_f64(1.2));
        // Different agents wait differently.
        let mut other = Backoff::new(Duration::from_secs(1), 8);
        assert_ne!(other.next_wait(), Backoff::new(Duration::from_secs(1), 7).next_wait());
    }
}
