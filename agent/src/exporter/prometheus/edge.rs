//! Our own `edge_` series: worker queues per Deployment, collector health,
//! the node and the agent itself.

use edge_telemetry::catalogue::edge;
use edge_telemetry::proto::{CollectorState, NodeSnapshot};
use edge_telemetry::view::worker_totals;

use super::{Labels, Samples};

/// Adds worker, collector, host and agent series.
pub fn add(samples: &mut Samples, snapshot: &NodeSnapshot) {
    if let Some(node) = &snapshot.node {
        let labels: Labels = vec![
            (edge::LABEL_NODE, node.name.clone()),
            (edge::LABEL_INSTANCE_TYPE, node.instance_type.clone()),
            (edge::LABEL_ZONE, node.zone.clone()),
        ];
        samples.add(edge::NODE_INFO, labels, 1.0);
    }
    add_workers(samples, snapshot);
    for c in &snapshot.collectors {
        let labels: Labels = vec![(edge::LABEL_COLLECTOR, c.collector.clone())];
        let state = c.state;
        samples.add(edge::COLLECTOR_UP, labels.clone(), f64::from(u8::from(state == CollectorState::Ok as i32)));
        samples.add(
            edge::COLLECTOR_ABSENT,
            labels.clone(),
            f64::from(u8::from(state == CollectorState::Absent as i32)),
        );
        samples.add(edge::COLLECTOR_ERRORS, labels.clone(), c.errors as f64);
        samples.add(edge::COLLECTOR_DURATION_SECONDS, labels, c.last_duration_seconds);
    }
    if let Some(h) = &snapshot.host {
        samples.add_opt(edge::NODE_CPU_UTILIZATION_RATIO, &Vec::new(), h.cpu_utilization_ratio);
        samples.add_opt(edge::NODE_MEMORY_TOTAL_BYTES, &Vec::new(), h.memory_total_bytes.map(|v| v as f64));
        samples.add_opt(edge::NODE_MEMORY_AVAILABLE_BYTES, &Vec::new(), h.memory_available_bytes.map(|v| v as f64));
        samples.add_opt(edge::AGENT_CPU_SECONDS, &Vec::new(), h.agent_cpu_seconds);
        samples.add_opt(edge::AGENT_RESIDENT_MEMORY_BYTES, &Vec::new(), h.agent_resident_bytes.map(|v| v as f64));
    }
    samples.add(edge::AGENT_SNAPSHOT_SEQUENCE, Vec::new(), snapshot.sequence as f64);
    for r in &snapshot.allocatable {
        let labels: Labels = vec![(edge::LABEL_RESOURCE, r.resource_name.clone())];
        samples.add(edge::POD_RESOURCES_ALLOCATABLE_DEVICES, labels.clone(), f64::from(r.devices));
        samples.add(edge::POD_RESOURCES_ASSIGNED_DEVICES, labels, f64::from(r.assigned));
    }
}

/// Sums per (accelerator, namespace, deployment): a per-worker label would be
/// unbounded as pods come and go.
fn add_workers(samples: &mut Samples, snapshot: &NodeSnapshot) {
    let totals =
        worker_totals(snapshot, |w| Some((w.accelerator.as_str(), w.namespace.as_str(), w.deployment.as_str())));
    for ((accelerator, namespace, deployment), t) in totals {
        let labels: Labels = vec![
            (edge::LABEL_ACCELERATOR, accelerator.to_owned()),
            (edge::LABEL_NAMESPACE, namespace.to_owned()),
            (edge::LABEL_DEPLOYMENT, deployment.to_owned()),
        ];
        samples.add(edge::WORKERS, labels.clone(), f64::from(t.workers));
        samples.add(edge::WORKER_QUEUE_DEPTH, labels.clone(), t.queue_depth as f64);
        samples.add(edge::WORKER_IN_FLIGHT, labels.clone(), t.in_flight as f64);
        samples.add(edge::WORKER_CAPACITY, labels.clone(), t.capacity as f64);
        samples.add_opt(edge::WORKER_LATENCY_P50_SECONDS, &labels, t.latency_p50_seconds);
        samples.add_opt(edge::WORKER_LATENCY_P99_SECONDS, &labels, t.latency_p99_seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_telemetry::proto::Worker;

    fn worker(id: &str, deployment: &str, queue: u32, p99: Option<f64>) -> Worker {
        Worker {
            worker_id: id.into(),
            deployment: deployment.into(),
            namespace: "inference".into(),
            accelerator: "nvidia".into(),
            queue_depth: queue,
            in_flight: 1,
            capacity: 8,
            latency_p99_seconds: p99,
            ..Default::default()
        }
    }

    #[test]
    fn workers_are_summed_per_deployment_without_worker_ids() {
        let snapshot = NodeSnapshot {
            workers: vec![
                worker("a", "sd-nvidia", 2, Some(1.5)),
                worker("b", "sd-nvidia", 3, Some(2.5)),
                worker("c", "sd-other", 1, None),
            ],
            ..Default::default()
        };
        let mut s = Samples::default();
        add(&mut s, &snapshot);
        let out = s.encode();
        let l = r#"accelerator="nvidia",namespace="inference",deployment="sd-nvidia""#;
        assert!(out.contains(&format!("edge_worker_queue_depth{{{l}}} 5")), "{out}");
        assert!(out.contains(&format!("edge_worker_in_flight{{{l}}} 2")), "{out}");
        assert!(out.contains(&format!("edge_workers{{{l}}} 2")), "{out}");
        assert!(out.contains(&format!("edge_worker_latency_p99_seconds{{{l}}} 2.5")), "{out}");
        assert!(!out.contains("edge_worker_latency_p50_seconds"), "no worker reported p50: {out}");
        assert!(!out.contains("worker_id") && !out.contains("\"a\""), "{out}");
    }

    #[test]
    fn worker_labels_never_become_metric_labels() {
        let labelled = |id: &str, tier: &str| Worker {
            labels: [("tier".to_owned(), tier.to_owned()), ("app.kubernetes.io/name".to_owned(), "sd".to_owned())]
                .into(),
            ..worker(id, "sd-nvidia", 1, None)
        };
        let snapshot =
            NodeSnapshot { workers: vec![labelled("a", "gold"), labelled("b", "batch")], ..Default::default() };
        let mut s = Samples::default();
        add(&mut s, &snapshot);
        let out = s.encode();
        // Workers with different labels still sum into the one bounded series.
        let l = r#"accelerator="nvidia",namespace="inference",deployment="sd-nvidia""#;
        assert!(out.contains(&format!("edge_worker_queue_depth{{{l}}} 2")), "{out}");
        for needle in ["tier", "gold", "batch", "app_kubernetes_io_name"] {
            assert!(!out.contains(needle), "{needle} leaked into /metrics: {out}");
        }
    }
}
