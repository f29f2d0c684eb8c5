use edge_telemetry::AcceleratorType;
use edge_telemetry::proto::{Node, Worker};

use super::*;
use crate::aggregate::{EvalError, Wake};
use crate::inventory;
use crate::trigger::Trigger;

fn snapshot(seq: u64, zone: &str, queues: &[(&str, u32)]) -> NodeSnapshot {
    NodeSnapshot {
        sequence: seq,
        node: Some(Node { zone: zone.into(), ..Default::default() }),
        workers: queues
            .iter()
            .map(|(dep, q)| Worker {
                worker_id: format!("{dep}-{q}"),
                namespace: "ns".into(),
                deployment: (*dep).into(),
                accelerator: "cpu".into(),
                queue_depth: *q,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// A trigger in namespace `ns` from its metadata; a later pair overrides an earlier one.
fn parse_trigger(pairs: &[(&str, &str)]) -> Trigger {
    let m: std::collections::HashMap<String, String> =
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Trigger::parse("ns", &m).unwrap()
}

fn trigger(deployment: &str, extra: &[(&str, &str)]) -> Trigger {
    let mut pairs = vec![("acceleratorType", "cpu"), ("deployment", deployment), ("targetValue", "1")];
    pairs.extend_from_slice(extra);
    parse_trigger(&pairs)
}

#[test]
fn indexes_groups_and_notifies_only_changed_ones() {
    let reg = AgentTable::new(Duration::from_secs(5));
    let (a, b) = (reg.add_agent("a:1"), reg.add_agent("b:1"));
    let (sd, other) = (trigger("sd", &[]), trigger("other", &[]));
    // Before any snapshot nothing is fresh: an error, not 0.
    assert!(matches!(reg.evaluate(&sd), Err(EvalError::NoFreshAgents { .. })));
    let mut sd_rx = reg.subscribe(&sd.key);
    let mut other_rx = reg.subscribe(&other.key);

    reg.ingest(a, &snapshot(1, "z1", &[("sd", 2)]));
    reg.ingest(b, &snapshot(1, "z2", &[("sd", 3), ("other", 1)]));
    assert_eq!(reg.evaluate(&sd), Ok(5.0));
    assert_eq!(reg.evaluate(&trigger("sd", &[("zone", "z2")])), Ok(3.0));
    assert_eq!(reg.evaluate(&trigger("absent", &[])), Ok(0.0));
    assert!(sd_rx.has_changed().unwrap() && other_rx.has_changed().unwrap());
    sd_rx.mark_unchanged();
    other_rx.mark_unchanged();

    // A change to `sd` on agent a does not wake `other`'s watchers.
    reg.ingest(a, &snapshot(2, "z1", &[("sd", 4)]));
    assert!(sd_rx.has_changed().unwrap());
    assert!(!other_rx.has_changed().unwrap());
    assert_eq!(reg.evaluate(&sd), Ok(7.0));

    // A heartbeat (same sequence) changes nothing.
    sd_rx.mark_unchanged();
    reg.ingest(a, &snapshot(2, "z1", &[("sd", 4)]));
    assert!(!sd_rx.has_changed().unwrap());

    // A worker leaving removes it from its group.
    reg.ingest(b, &snapshot(2, "z2", &[("sd", 3)]));
    assert!(other_rx.has_changed().unwrap());
    assert_eq!(reg.evaluate(&other), Ok(0.0));
    // One class left: `sd` (same labels, none) on both agents; `other` went with its worker.
    assert_eq!(reg.stats(), Stats { agents: 2, connected: 0, stale: 0, groups: 1, demand_requesters: 0, peers: 0 });
}

/// Workers of Deployment `sd` labelled `tier=<tier>` (no label when empty).
fn tiered(seq: u64, workers: &[(&str, &str, u32)]) -> NodeSnapshot {
    NodeSnapshot {
        sequence: seq,
        workers: workers
            .iter()
            .map(|(id, tier, q)| Worker {
                worker_id: (*id).into(),
                namespace: "ns".into(),
                deployment: "sd".into(),
                accelerator: "cpu".into(),
                queue_depth: *q,
                labels: if tier.is_empty() {
                    Default::default()
                } else {
                    [("tier".to_owned(), (*tier).to_owned())].into()
                },
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn by_labels(selector: &str) -> Trigger {
    parse_trigger(&[("acceleratorType", "cpu"), ("labelSelector", selector), ("targetValue", "1")])
}

#[test]
fn a_label_selector_counts_and_wakes_on_matching_workers_only() {
    let reg = AgentTable::new(Duration::from_secs(5));
    let (a, b) = (reg.add_agent("a:1"), reg.add_agent("b:1"));
    let (gold, not_gold) = (by_labels("tier=gold"), by_labels("tier!=gold"));
    let mut gold_rx = reg.subscribe(&gold.key);
    let mut rest_rx = reg.subscribe(&not_gold.key);
    reg.ingest(a, &tiered(1, &[("a1", "gold", 2), ("a2", "batch", 5)]));
    reg.ingest(b, &tiered(1, &[("b1", "gold", 3), ("b2", "", 7)]));
    assert_eq!(reg.evaluate(&gold), Ok(5.0));
    assert_eq!(reg.evaluate(&not_gold), Ok(12.0));
    assert_eq!(reg.evaluate(&trigger("sd", &[])), Ok(17.0), "the Deployment counts every class");
    assert_eq!(reg.stats().groups, 3);
    gold_rx.mark_unchanged();
    rest_rx.mark_unchanged();

    // A batch worker changing does not wake the gold stream ...
    reg.ingest(a, &tiered(2, &[("a1", "gold", 2), ("a2", "batch", 6)]));
    assert!(!gold_rx.has_changed().unwrap());
    assert!(rest_rx.has_changed().unwrap());
    rest_rx.mark_unchanged();
    // ... a class that starts matching does, and counts at once.
    reg.ingest(b, &tiered(2, &[("b1", "gold", 3), ("b2", "gold", 7)]));
    assert!(gold_rx.has_changed().unwrap() && rest_rx.has_changed().unwrap());
    assert_eq!(reg.evaluate(&gold), Ok(12.0));
    assert_eq!(reg.evaluate(&not_gold), Ok(6.0));
    assert_eq!(reg.evaluate(&by_labels("tier=none")), Ok(0.0), "fresh agents, no such workers: a true 0");
}

#[test]
fn two_selected_classes_on_one_node_count_its_usage_once() {
    let reg = AgentTable::new(Duration::from_secs(5));
    let (a, b) = (reg.add_agent("a:1"), reg.add_agent("b:1"));
    let with_cpu = |mut snap: NodeSnapshot, ratio: f64| {
        snap.host = Some(edge_telemetry::proto::Host { cpu_utilization_ratio: Some(ratio), ..Default::default() });
        snap
    };
    reg.ingest(a, &with_cpu(tiered(1, &[("a1", "gold", 2), ("a2", "batch", 5)]), 0.5));
    reg.ingest(b, &with_cpu(tiered(1, &[("b1", "gold", 1)]), 0.8));
    let utilization = parse_trigger(&[
        ("acceleratorType", "cpu"),
        ("labelSelector", "tier"),
        ("targetValue", "1"),
        ("metric", "utilization"),
    ]);
    // (50 + 80) / 2, not (50 + 50 + 80) / 3.
    let util = reg.evaluate(&utilization).unwrap();
    assert!((util - 65.0).abs() < 1e-9, "{util}");
    assert_eq!(reg.evaluate(&by_labels("tier")), Ok(8.0));
}

#[test]
fn the_inventory_lists_advertised_workers_of_fresh_agents_only() {
    let reg = AgentTable::new(Duration::from_secs(1));
    let (a, b) = (reg.add_agent("a:1"), reg.add_agent("b:1"));
    let mut snap_a = tiered(1, &[("a1", "gold", 2), ("a2", "gold", 0)]);
    snap_a.workers[0].endpoint = "http://10.0.0.1:30080".into();
    snap_a.workers[0].capacity = 4;
    let mut snap_b = tiered(1, &[("b1", "", 0)]);
    snap_b.workers[0].endpoint = "http://10.0.0.2:30080".into();
    snap_b.workers[0].capacity = 4;
    reg.ingest(a, &snap_a);
    reg.ingest(b, &snap_b);
    let urls = |q: &inventory::Query| reg.endpoints(q).into_iter().map(|e| e.url).collect::<Vec<_>>();
    let all = inventory::Query::default();
    assert_eq!(urls(&all), ["http://10.0.0.2:30080", "http://10.0.0.1:30080"], "idle b first; a2 advertises none");
    assert_eq!(urls(&inventory::Query { limit: 1, ..Default::default() }), ["http://10.0.0.2:30080"]);
    // Only b keeps talking: a goes stale and its endpoint leaves the inventory.
    std::thread::sleep(Duration::from_millis(1200));
    snap_b.sequence = 2;
    reg.ingest(b, &snap_b);
    assert_eq!(urls(&all), ["http://10.0.0.2:30080"]);
}

#[test]
fn spill_over_is_the_siblings_backlog_beyond_its_share_per_worker() {
    let reg = AgentTable::new(Duration::from_secs(5));
    let (a, b) = (reg.add_agent("a:1"), reg.add_agent("b:1"));
    let cpu = |seq, zone: &str, queues: &[(&str, u32)]| {
        let mut s = snapshot(seq, zone, queues);
        for w in &mut s.workers {
            w.in_flight = 1;
        }
        s
    };
    // Two CPU workers in z1 (backlog 5 + 4), one in z2 (backlog 2).
    reg.ingest(a, &cpu(1, "z1", &[("sd-cpu", 4), ("sd-cpu-b", 3)]));
    reg.ingest(b, &cpu(1, "z2", &[("sd-cpu", 1)]));
    let gpu = |extra: &[(&str, &str)]| {
        let mut pairs = vec![
            ("acceleratorType", "nvidia"),
            ("deployment", "sd-nvidia"),
            ("targetValue", "1"),
            ("spillFrom", "cpu"),
        ];
        pairs.extend_from_slice(extra);
        parse_trigger(&pairs)
    };
    // 11 over 3 workers, 3 each absorbed: 2 spill over.
    assert_eq!(reg.wake(&gpu(&[("spillAbove", "3")])), Wake { demand: 0, spill: 2.0 });
    assert_eq!(reg.wake(&gpu(&[("spillAbove", "4")])).spill, 0.0);
    assert_eq!(reg.wake(&gpu(&[("spillAbove", "3"), ("zone", "z1")])).spill, 3.0, "9 over 2 workers in z1");
    assert_eq!(reg.wake(&gpu(&[("spillAbove", "0"), ("zone", "z2")])).spill, 2.0);
    // The sibling's changes wake the spilling trigger's stream.
    let spill_key = gpu(&[("spillAbove", "3")]).spill.unwrap().key;
    let mut rx = reg.subscribe(&spill_key);
    rx.mark_unchanged();
    reg.ingest(b, &cpu(2, "z2", &[("sd-cpu", 9)]));
    assert!(rx.has_changed().unwrap());
    assert_eq!(reg.wake(&gpu(&[("spillAbove", "3")])).spill, 10.0);
}

#[test]
fn demand_counts_for_its_triggers_until_an_endpoint_of_the_class_is_listed() {
    let reg = AgentTable::new(Duration::from_secs(5));
    let a = reg.add_agent("a:1");
    reg.ingest(a, &snapshot(1, "z1", &[]));
    let nvidia = |extra: &[(&str, &str)]| {
        let mut pairs = vec![("acceleratorType", "nvidia"), ("deployment", "sd-nvidia"), ("targetValue", "1")];
        pairs.extend_from_slice(extra);
        parse_trigger(&pairs)
    };
    let class = crate::demand::DemandClass { accelerator: AcceleratorType::Nvidia, zone: Some("z1".into()) };
    assert!(reg.knows_zone("z1") && !reg.knows_zone("z9"));
    assert_eq!(reg.zones(), ["z1"]);
    reg.demand().record(class.clone(), "phone-1");
    reg.demand().record(class, "phone-2");
    assert_eq!(reg.wake(&nvidia(&[])).demand, 2);
    assert_eq!(reg.wake(&nvidia(&[("activateOnDemand", "false")])).demand, 0);
    assert_eq!(reg.wake(&trigger("sd", &[])).demand, 0, "a cpu trigger");
    // A cpu endpoint does not answer nvidia demand; an nvidia one in z1 does.
    let mut snap = snapshot(2, "z1", &[("sd-nvidia", 0)]);
    snap.workers[0].endpoint = "http://10.0.0.1:30080".into();
    reg.ingest(a, &snap);
    assert_eq!(reg.wake(&nvidia(&[])).demand, 2);
    snap.sequence = 3;
    snap.workers[0].accelerator = "nvidia".into();
    reg.ingest(a, &snap);
    assert_eq!(reg.wake(&nvidia(&[])).demand, 0);
    assert!(reg.has_fresh_workers(&nvidia(&[]).key, Some("z1")));
    assert!(!reg.has_fresh_workers(&nvidia(&[]).key, Some("z2")));
}

#[test]
fn removed_agents_count_until_stale_then_are_forgotten() {
    let reg = AgentTable::new(Duration::from_millis(200));
    let a = reg.add_agent("a:1");
    reg.ingest(a, &snapshot(1, "", &[("sd", 2)]));
    reg.remove_agent(a);
    assert_eq!(reg.purge(), 0, "still fresh");
    assert_eq!(reg.evaluate(&trigger("sd", &[])), Ok(2.0));
    std::thread::sleep(Duration::from_millis(300));
    // Stale before purge: an error (the data is not trusted any more) ...
    assert!(matches!(reg.evaluate(&trigger("sd", &[])), Err(EvalError::Stale { agents: 1, .. })));
    // ... and a longer per-trigger bound still counts it.
    assert_eq!(reg.evaluate(&trigger("sd", &[("staleAfter", "1m")])), Ok(2.0));
    assert_eq!(reg.purge(), 1);
    assert!(matches!(reg.evaluate(&trigger("sd", &[])), Err(EvalError::NoFreshAgents { .. })));
    assert_eq!(reg.stats().agents, 0);
}

#[test]
fn an_agent_coming_back_from_stale_wakes_its_groups() {
    let reg = AgentTable::new(Duration::from_millis(200));
    let a = reg.add_agent("a:1");
    reg.ingest(a, &snapshot(1, "", &[("sd", 1)]));
    let t = trigger("sd", &[]);
    let rx = reg.subscribe(&t.key);
    std::thread::sleep(Duration::from_millis(300));
    assert!(reg.evaluate(&t).is_err());
    assert_eq!(reg.stats().stale, 1);
    reg.ingest(a, &snapshot(1, "", &[("sd", 1)]));
    assert!(rx.has_changed().unwrap());
    assert_eq!(reg.evaluate(&t), Ok(1.0));
}
