use super::*;
use edge_telemetry::proto::Node;

fn intake(expiry: Duration) -> WorkerIntake {
    WorkerIntake::new(SnapshotStore::new(Node::default()), expiry, 64)
}

fn report(id: &str, queue: u32) -> Vec<u8> {
    serde_json::json!({
        "worker_id": id, "deployment": "sd-cpu", "accelerator": "cpu",
        "queue_depth": queue, "in_flight": 0, "capacity": 4
    })
    .to_string()
    .into_bytes()
}

#[test]
fn a_report_reaches_the_snapshot_at_once() {
    let intake = intake(Duration::from_secs(5));
    intake.accept(&report("b", 2)).unwrap();
    intake.accept(&report("a", 1)).unwrap();
    let snap = intake.store.latest();
    let ids: Vec<_> = snap.workers.iter().map(|w| (w.worker_id.as_str(), w.queue_depth)).collect();
    assert_eq!(ids, [("a", 1), ("b", 2)]);
    assert_eq!(snap.workers[0].accelerator, "cpu");
}

#[test]
fn a_bad_report_changes_nothing_but_the_error_count() {
    let intake = intake(Duration::from_secs(5));
    intake.accept(&report("a", 1)).unwrap();
    let err = intake
        .accept(br#"{"worker_id":"a","deployment":"d","accelerator":"gpu","queue_depth":9,"in_flight":0,"capacity":1}"#)
        .unwrap_err();
    assert_eq!(err.error().field, "accelerator");
    let snap = intake.store.latest();
    assert_eq!(snap.workers[0].queue_depth, 1);
    let health = snap.collectors.iter().find(|c| c.collector == NAME).unwrap();
    assert_eq!(health.errors, 1);
}

#[test]
fn silent_workers_expire() {
    let intake = intake(Duration::from_millis(20));
    intake.accept(&report("a", 1)).unwrap();
    intake.expire();
    assert_eq!(intake.store.latest().workers.len(), 1);
    std::thread::sleep(Duration::from_millis(40));
    intake.accept(&report("b", 1)).unwrap();
    intake.expire();
    let snap = intake.store.latest();
    assert_eq!(snap.workers.iter().map(|w| w.worker_id.as_str()).collect::<Vec<_>>(), ["b"]);
}

#[test]
fn a_full_node_refuses_new_workers_until_one_expires() {
    let intake = WorkerIntake::new(SnapshotStore::new(Node::default()), Duration::from_millis(30), 2);
    intake.accept(&report("a", 1)).unwrap();
    intake.accept(&report("b", 1)).unwrap();
    let refused = intake.accept(&report("c", 1)).unwrap_err();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.error().field, "worker_id");
    assert!(refused.error().reason.contains("--max-workers"), "{refused:?}");
    intake.accept(&report("a", 2)).expect("a known worker still reports");
    std::thread::sleep(Duration::from_millis(50));
    intake.expire();
    intake.accept(&report("c", 1)).expect("room again once the others expired");
    let health = intake.store.latest().collectors.iter().find(|c| c.collector == NAME).unwrap().errors;
    assert_eq!(health, 1, "the refusal counts as an error");
}

#[test]
fn a_full_node_of_largest_reports_stays_under_half_the_decode_limit() {
    use prost::Message;
    let intake = WorkerIntake::new(SnapshotStore::new(Node::default()), Duration::from_secs(60), MAX_WORKERS_LIMIT);
    let long = |c: char, n: usize| std::iter::repeat_n(c, n).collect::<String>();
    for i in 0..MAX_WORKERS_LIMIT {
        let labels: serde_json::Map<String, serde_json::Value> = (0..edge_telemetry::labels::MAX_LABELS)
            .map(|l| (format!("k{l:02}.example.com/{}", long('k', 40)), serde_json::Value::from(long('v', 63))))
            .collect();
        let body = serde_json::json!({
            "worker_id": format!("{i:03}{}", long('w', 200)), "pod": long('p', 253), "namespace": long('n', 63),
            "deployment": long('d', 253), "accelerator": "nvidia", "queue_depth": 1_000_000, "in_flight": 1_000_000,
            "capacity": 1_000_000, "latency_p50_seconds": 1.5, "latency_p99_seconds": 2.5,
            "endpoint": format!("http://{}:30080", long('h', 200)), "labels": labels,
        });
        let body = serde_json::to_vec(&body).unwrap();
        assert!(body.len() <= MAX_REPORT_BYTES, "{} bytes", body.len());
        intake.accept(&body).unwrap_or_else(|e| panic!("{e:?}"));
    }
    let encoded = intake.store.latest().encoded_len();
    assert!(encoded < 2 * 1024 * 1024, "{encoded} bytes for {MAX_WORKERS_LIMIT} workers");
}
