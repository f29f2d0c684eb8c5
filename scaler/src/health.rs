//! `grpc.health.v1.Health` on the KEDA port, for gRPC probes and
//! `grpc-health-probe`:
//!
//! - `""` (the server): `SERVING` once the replica is Ready (see
//!   [`crate::readiness`]), as `/readyz` says;
//! - `externalscaler.ExternalScaler`: `SERVING` while Ready and at least one
//!   agent is fresh, `NOT_SERVING` while every agent is silent (the answers
//!   are then errors, KEDA's fallback). Probes must not use this one: a
//!   cluster whose accelerator nodes are all scaled away has no agent, and
//!   its scaler must still take KEDA's calls to wake them.
//!
//! The statuses are recomputed every [`EVERY`] (cheap: two counts).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::agents::AgentTable;
use crate::keda::external_scaler_server::ExternalScalerServer;
use crate::readiness::Readiness;
use crate::service::KedaService;

/// How often the statuses follow the table.
pub const EVERY: Duration = Duration::from_millis(500);

/// The KEDA service's name as health checks ask for it.
pub const KEDA_SERVICE: &str = <ExternalScalerServer<KedaService> as NamedService>::NAME;

/// The server's status and the KEDA service's, from readiness and freshness.
pub fn statuses(ready: bool, any_fresh_agent: bool) -> (ServingStatus, ServingStatus) {
    let status = |up: bool| if up { ServingStatus::Serving } else { ServingStatus::NotServing };
    (status(ready), status(ready && any_fresh_agent))
}

/// Keeps `reporter` up to date until `stop`.
pub async fn run(
    reporter: HealthReporter,
    table: Arc<AgentTable>,
    readiness: Arc<Readiness>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = None;
    loop {
        let ready = readiness.check(&table).ready;
        let stats = table.stats();
        let now = statuses(ready, stats.agents > stats.stale);
        if last != Some(now) {
            tracing::debug!(server = ?now.0, keda = ?now.1, "gRPC health");
            reporter.set_service_status("", now.0).await;
            reporter.set_service_status(KEDA_SERVICE, now.1).await;
            last = Some(now);
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keda_service_needs_a_fresh_agent_the_server_only_readiness() {
        use ServingStatus::{NotServing, Serving};
        assert_eq!(statuses(false, true), (NotServing, NotServing));
        assert_eq!(statuses(true, false), (Serving, NotServing));
        assert_eq!(statuses(true, true), (Serving, Serving));
        assert_eq!(KEDA_SERVICE, "externalscaler.ExternalScaler");
    }
}
