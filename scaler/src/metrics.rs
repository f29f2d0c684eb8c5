//! The scaler's own series: counters and histograms updated where things
//! happen, and the agent gauges read from the agent table at scrape time, so
//! they are never out of date. [`crate::http`] serves them on `/metrics`.

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use edge_telemetry::catalogue::scaler as cat;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as PromRegistry;

use crate::agents::Stats;
use crate::cold_start::Sample;

type Labels = Vec<(&'static str, &'static str)>;
type OwnedLabels = Vec<(&'static str, String)>;

fn cold_start_histogram() -> Histogram {
    Histogram::new(cat::COLD_START_SECONDS.buckets.iter().copied())
}

fn duration_histogram() -> Histogram {
    Histogram::new(cat::GRPC_REQUEST_DURATION_SECONDS.buckets.iter().copied())
}

/// The KEDA calls, as labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `IsActive`.
    IsActive,
    /// `StreamIsActive`.
    StreamIsActive,
    /// `GetMetricSpec`.
    GetMetricSpec,
    /// `GetMetrics`.
    GetMetrics,
    /// `StreamMetricSpec`.
    StreamMetricSpec,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Self::IsActive => "IsActive",
            Self::StreamIsActive => "StreamIsActive",
            Self::GetMetricSpec => "GetMetricSpec",
            Self::GetMetrics => "GetMetrics",
            Self::StreamMetricSpec => "StreamMetricSpec",
        }
    }
}

/// Every series the scaler exposes.
pub struct ScalerMetrics {
    registry: PromRegistry,
    agents: Gauge,
    connected: Gauge,
    stale: Gauge,
    groups: Gauge,
    /// Snapshot messages received.
    pub snapshots: Counter,
    /// Agent streams that failed or ended.
    pub disconnects: Counter,
    /// `true`s pushed on StreamIsActive.
    pub activations: Counter,
    /// StreamIsActive streams open now.
    pub active_streams: Gauge,
    demand_requesters: Gauge,
    agent_ages: Family<OwnedLabels, Gauge<f64, AtomicU64>>,
    /// Inventory pulls that woke a class.
    pub demand_wakes: Counter,
    inventory_refused: Family<Labels, Counter>,
    peers: Gauge,
    peer_syncs: Family<Labels, Counter>,
    /// Demand records a full peer buffer could not take.
    pub peer_demand_dropped: Counter,
    requests: Family<Labels, Counter>,
    durations: Family<Labels, Histogram, fn() -> Histogram>,
    cold_starts: Family<OwnedLabels, Histogram, fn() -> Histogram>,
}

impl Default for ScalerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalerMetrics {
    /// Registers every series from the catalogue.
    pub fn new() -> Self {
        let mut registry = PromRegistry::default();
        let gauge = |registry: &mut PromRegistry, m: edge_telemetry::catalogue::Metric| {
            let g = Gauge::default();
            registry.register(m.name, m.help, g.clone());
            g
        };
        let counter = |registry: &mut PromRegistry, m: edge_telemetry::catalogue::Metric| {
            let c = Counter::default();
            registry.register(m.name, m.help, c.clone());
            c
        };
        let agents = gauge(&mut registry, cat::AGENTS);
        let connected = gauge(&mut registry, cat::AGENTS_CONNECTED);
        let stale = gauge(&mut registry, cat::AGENTS_STALE);
        let groups = gauge(&mut registry, cat::WORKER_GROUPS);
        let active_streams = gauge(&mut registry, cat::ACTIVE_STREAMS);
        let snapshots = counter(&mut registry, cat::SNAPSHOTS);
        let disconnects = counter(&mut registry, cat::AGENT_DISCONNECTS);
        let activations = counter(&mut registry, cat::ACTIVATIONS);
        let demand_requesters = gauge(&mut registry, cat::DEMAND_REQUESTERS);
        let demand_wakes = counter(&mut registry, cat::DEMAND_WAKES);
        let agent_ages = Family::<OwnedLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(cat::AGENT_AGE_SECONDS.name, cat::AGENT_AGE_SECONDS.help, agent_ages.clone());
        let inventory_refused = Family::<Labels, Counter>::default();
        registry.register(cat::INVENTORY_REFUSED.name, cat::INVENTORY_REFUSED.help, inventory_refused.clone());
        let peers = gauge(&mut registry, cat::PEERS);
        let peer_syncs = Family::<Labels, Counter>::default();
        registry.register(cat::PEER_SYNCS.name, cat::PEER_SYNCS.help, peer_syncs.clone());
        let peer_demand_dropped = counter(&mut registry, cat::PEER_DEMAND_DROPPED);
        let requests = Family::<Labels, Counter>::default();
        registry.register(cat::GRPC_REQUESTS.name, cat::GRPC_REQUESTS.help, requests.clone());
        let durations = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram);
        let h = cat::GRPC_REQUEST_DURATION_SECONDS;
        registry.register(h.name, h.help, durations.clone());
        let cold_starts =
            Family::<OwnedLabels, Histogram, fn() -> Histogram>::new_with_constructor(cold_start_histogram);
        let h = cat::COLD_START_SECONDS;
        registry.register(h.name, h.help, cold_starts.clone());
        Self {
            registry,
            agents,
            connected,
            stale,
            groups,
            snapshots,
            disconnects,
            activations,
            active_streams,
            demand_requesters,
            demand_wakes,
            agent_ages,
            inventory_refused,
            peers,
            peer_syncs,
            peer_demand_dropped,
            requests,
            durations,
            cold_starts,
        }
    }

    /// Records finished cold-start phases.
    pub fn observe_cold_starts(&self, samples: &[Sample]) {
        for s in samples {
            tracing::info!(accelerator = %s.accelerator, zone = %s.zone, phase = s.phase.as_str(), seconds = s.seconds, "cold start");
            self.cold_starts
                .get_or_create(&vec![
                    (cat::LABEL_ACCELERATOR, s.accelerator.as_str().to_owned()),
                    (cat::LABEL_ZONE, s.zone.clone()),
                    (cat::LABEL_PHASE, s.phase.as_str().to_owned()),
                ])
                .observe(s.seconds);
        }
    }

    /// Counts one refused inventory pull (`bad_request` or `rate_limited`).
    pub fn inventory_refused(&self, reason: &'static str) {
        self.inventory_refused.get_or_create(&vec![(cat::LABEL_REASON, reason)]).inc();
    }

    /// Counts one sync sent to a peer.
    pub fn peer_sync(&self, ok: bool) {
        self.peer_syncs.get_or_create(&vec![(cat::LABEL_OUTCOME, if ok { "ok" } else { "failed" })]).inc();
    }

    /// Counts one answered call and its duration.
    pub fn observe(&self, method: Method, started: Instant, code: tonic::Code) {
        let code = code_name(code);
        self.requests.get_or_create(&vec![(cat::LABEL_METHOD, method.as_str()), (cat::LABEL_CODE, code)]).inc();
        self.durations
            .get_or_create(&vec![(cat::LABEL_METHOD, method.as_str())])
            .observe(started.elapsed().as_secs_f64());
    }

    /// The OpenMetrics exposition, with the agent gauges from `stats` and each
    /// followed agent's age (address, seconds).
    pub fn render(&self, stats: Stats, ages: &[(String, f64)]) -> String {
        // Agents come and go: only the followed ones have a series.
        self.agent_ages.clear();
        for (agent, age) in ages {
            self.agent_ages.get_or_create(&vec![(cat::LABEL_AGENT, agent.clone())]).set(*age);
        }
        self.agents.set(stats.agents as i64);
        self.connected.set(stats.connected as i64);
        self.stale.set(stats.stale as i64);
        self.groups.set(stats.groups as i64);
        self.demand_requesters.set(stats.demand_requesters as i64);
        self.peers.set(stats.peers as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "Ok",
        Cancelled => "Cancelled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_catalogue_series() {
        let m = ScalerMetrics::new();
        m.observe(Method::GetMetrics, Instant::now(), tonic::Code::Ok);
        m.observe(Method::GetMetrics, Instant::now(), tonic::Code::InvalidArgument);
        m.peer_sync(false);
        m.inventory_refused("rate_limited");
        m.observe_cold_starts(&[Sample {
            accelerator: edge_telemetry::AcceleratorType::Nvidia,
            zone: "lax".into(),
            phase: crate::cold_start::Phase::Report,
            seconds: 42.0,
        }]);
        let stats = Stats { agents: 3, connected: 2, stale: 1, groups: 4, demand_requesters: 5, peers: 1 };
        let text = m.render(stats, &[("10.0.0.5:9400".to_owned(), 1.5)]);
        for h in cat::HISTOGRAMS {
            assert!(text.contains(&format!("# TYPE {} histogram", h.name)), "{} missing:\n{text}", h.name);
        }
        assert!(text.contains("edge_scaler_demand_requesters 5\n"), "{text}");
        assert!(
            text.contains(r#"edge_scaler_cold_start_seconds_count{accelerator="nvidia",zone="lax",phase="report"} 1"#),
            "{text}"
        );
        for metric in cat::ALL {
            assert!(text.contains(&format!("# TYPE {} ", metric.name)), "{} missing:\n{text}", metric.name);
        }
        assert!(text.contains("edge_scaler_agents_stale 1\n"), "{text}");
        assert!(text.contains("edge_scaler_peers 1\n"), "{text}");
        assert!(text.contains(r#"edge_scaler_agent_age_seconds{agent="10.0.0.5:9400"} 1.5"#), "{text}");
        assert!(text.contains(r#"edge_scaler_peer_syncs_total{outcome="failed"} 1"#), "{text}");
        assert!(
            text.contains(r#"edge_scaler_grpc_requests_total{method="GetMetrics",code="InvalidArgument"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"edge_scaler_grpc_request_duration_seconds_count{method="GetMetrics"} 2"#), "{text}");
    }
}
