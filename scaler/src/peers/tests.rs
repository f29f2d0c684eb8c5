use super::*;

fn peers() -> (Arc<Peers>, AgentTable) {
    let table = AgentTable::with_demand(Duration::from_secs(6), Demand::new(Duration::from_secs(60), 100));
    let peers = Peers::new(Arc::clone(table.demand()), Arc::new(ScalerMetrics::new()));
    (peers, table)
}

fn record(accelerator: AcceleratorType, zone: Option<&str>, requester: &str) -> DemandRecord {
    DemandRecord { accelerator, zone: zone.map(str::to_owned), requester: requester.to_owned() }
}

#[test]
fn a_peers_demand_counts_here_and_its_listeners_name_what_wakes() {
    let (peers, table) = peers();
    let listener = Waking {
        accelerator: AcceleratorType::Nvidia,
        zone: Some("lax".into()),
        namespace: "ns".into(),
        deployment: "sd-nvidia-lax".into(),
    };
    let request = SyncRequest {
        origin: peers.origin() ^ 1,
        listeners: vec![listener.clone()],
        demand: vec![
            record(AcceleratorType::Nvidia, None, "phone-1"),
            // The peer's listener makes zone lax known here too.
            record(AcceleratorType::Nvidia, Some("lax"), "phone-2"),
            // A zone nobody knows makes no class.
            record(AcceleratorType::Nvidia, Some("atlantis"), "phone-3"),
        ],
    };
    let answer = peers.receive(&table, request).unwrap();
    assert_eq!(answer.origin, peers.origin());
    assert!(answer.listeners.is_empty(), "no stream open here");
    let demand = table.demand();
    assert_eq!(demand.pending(AcceleratorType::Nvidia, Some("lax")), 2);
    assert_eq!(demand.pending(AcceleratorType::Nvidia, Some("atlantis")), 1, "only the zone-less one");
    let class = DemandClass { accelerator: AcceleratorType::Nvidia, zone: Some("lax".into()) };
    assert_eq!(demand.waking(&class), [listener]);
    assert_eq!(demand.fresh_peers(), 1);
}

#[test]
fn a_peers_demand_for_a_class_served_here_is_ignored() {
    use edge_telemetry::proto::{Node, NodeSnapshot, Worker};
    let (peers, table) = peers();
    let agent = table.add_agent("a:1");
    let worker = Worker {
        worker_id: "c1".into(),
        deployment: "sd-cpu".into(),
        accelerator: "cpu".into(),
        endpoint: "http://10.0.0.1:30080".into(),
        ..Default::default()
    };
    let node = Node { zone: "zone-a".into(), ..Default::default() };
    table.apply(agent, &NodeSnapshot { sequence: 1, node: Some(node), workers: vec![worker], ..Default::default() });
    let demand = (0..3).map(|i| record(AcceleratorType::Cpu, Some("zone-a"), &format!("p{i}"))).collect();
    let request = SyncRequest { origin: 7, listeners: vec![], demand };
    peers.receive(&table, request).unwrap();
    assert_eq!(table.demand().pending(AcceleratorType::Cpu, Some("zone-a")), 0, "an endpoint serves it here");
    let request = SyncRequest {
        origin: 7,
        listeners: vec![],
        demand: vec![record(AcceleratorType::Nvidia, Some("zone-a"), "p9")],
    };
    peers.receive(&table, request).unwrap();
    assert_eq!(table.demand().pending(AcceleratorType::Nvidia, Some("zone-a")), 1, "nvidia is not served");
}

#[test]
fn its_own_sync_and_bad_records_are_refused() {
    let (peers, table) = peers();
    let own = SyncRequest { origin: peers.origin(), listeners: vec![], demand: vec![] };
    assert_eq!(peers.receive(&table, own), Err(Refusal::Myself));
    let bad =
        SyncRequest { origin: 7, listeners: vec![], demand: vec![record(AcceleratorType::Cpu, None, "not a device")] };
    let Err(Refusal::Invalid(why)) = peers.receive(&table, bad) else { panic!("accepted") };
    assert!(why.starts_with("demand.requester: not a device id"), "{why}");
    let flood = SyncRequest {
        origin: 7,
        listeners: vec![],
        demand: (0..=MAX_RECORDS).map(|i| record(AcceleratorType::Cpu, None, &format!("p{i}"))).collect(),
    };
    let Err(Refusal::Invalid(why)) = peers.receive(&table, flood) else { panic!("accepted") };
    assert!(why.contains("at most 1024"), "{why}");
    assert_eq!(table.demand().pending(AcceleratorType::Cpu, None), 0, "nothing of a refused sync counts");
}

#[test]
fn forwarding_is_bounded_per_peer() {
    let (peers, _registry) = peers();
    let link = Arc::new(Link { pending: Mutex::new(Vec::new()), wake: Notify::new() });
    lock(&peers.links).insert("127.0.0.1:1".parse().unwrap(), Arc::clone(&link));
    for i in 0..MAX_PENDING + 10 {
        peers.forward(record(AcceleratorType::Cpu, None, &format!("p{i}")));
    }
    assert_eq!(lock(&link.pending).len(), MAX_PENDING);
    let text = peers.metrics.render(Default::default(), &[]);
    assert!(text.contains("edge_scaler_peer_demand_dropped_total 10\n"), "{text}");
}
