//! Real `edge-agent` processes fed by worker reports, a real `edge-scaler`
//! following them (static discovery), and the KEDA client generated from the
//! project's proto driving every RPC.

mod common;

use common::*;
use edge_scaler::keda::{GetMetricsRequest, IsActiveResponse};
use edge_testkit::sample;
use tonic::Code;

fn agents_flag(agents: &[&edge_testkit::Agent]) -> (&'static str, String) {
    ("agents", agents.iter().map(|a| a.addr.to_string()).collect::<Vec<_>>().join(","))
}

const CPU_QUEUE: &[(&str, &str)] =
    &[("acceleratorType", "cpu"), ("deployment", "sd-cpu"), ("metric", "queueDepth"), ("targetValue", "4")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_from_the_agents_reports() {
    let (a, b) = (start_agent("zone-a"), start_agent("zone-b"));
    // Two workers of one Deployment, told apart by their labels only.
    report_with(&a, "w1", "sd-cpu", "cpu", 2, 1, serde_json::json!({"labels": {"app": "sd", "tier": "gold"}}));
    report_with(&b, "w2", "sd-cpu", "cpu", 3, 0, serde_json::json!({"labels": {"app": "sd", "tier": "batch"}}));
    report(&b, "w3", "sd-nvidia", "nvidia", 7, 1);
    let scaler = start_scaler(&[agents_flag(&[&a, &b])], &[]);
    let mut keda = scaler.client().await;

    let spec = keda.get_metric_spec(object(CPU_QUEUE)).await.unwrap().into_inner();
    assert_eq!(spec.metric_specs.len(), 1);
    assert_eq!(spec.metric_specs[0].metric_name, "edge-cpu-queuedepth-sd-cpu");
    assert_eq!((spec.metric_specs[0].target_size, spec.metric_specs[0].target_size_float), (4, 4.0));

    // Totals across both nodes, per accelerator type.
    edge_testkit::eventually_async(PATIENCE, "the queue total of both agents", || {
        let mut k = keda.clone();
        async move { (get_metric(&mut k, CPU_QUEUE).await.ok() == Some(5.0)).then_some(()) }
    })
    .await;
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut pairs = CPU_QUEUE.to_vec();
        for (k, v) in extra {
            pairs.retain(|(pk, _)| pk != k);
            pairs.push((k, v));
        }
        pairs
    };
    assert_eq!(get_metric(&mut keda, &with(&[("zone", "zone-a")])).await.unwrap(), 2.0);
    assert_eq!(get_metric(&mut keda, &with(&[("metric", "inFlight")])).await.unwrap(), 1.0);
    assert_eq!(get_metric(&mut keda, &with(&[("metric", "backlog")])).await.unwrap(), 6.0);
    let nvidia = [("acceleratorType", "nvidia"), ("deployment", "sd-nvidia"), ("targetValue", "1")];
    assert_eq!(get_metric(&mut keda, &nvidia).await.unwrap(), 7.0);
    // A Deployment with no workers anywhere, while agents are fresh: a true 0.
    assert_eq!(get_metric(&mut keda, &with(&[("deployment", "sd-none")])).await.unwrap(), 0.0);

    // Selecting by labels instead of the Deployment: only the matching worker's queue counts.
    let by_labels = |selector: &'static str| {
        let mut pairs = with(&[("labelSelector", selector)]);
        pairs.retain(|(k, _)| *k != "deployment");
        pairs
    };
    let not_batch = by_labels("app=sd,tier!=batch");
    assert_eq!(get_metric(&mut keda, &not_batch).await.unwrap(), 2.0, "w1 only");
    assert_eq!(get_metric(&mut keda, &by_labels("tier=batch")).await.unwrap(), 3.0, "w2 only");
    assert_eq!(get_metric(&mut keda, &by_labels("app=sd")).await.unwrap(), 5.0, "both");
    assert_eq!(get_metric(&mut keda, &by_labels("tier=none")).await.unwrap(), 0.0);
    let name = keda.get_metric_spec(object(&not_batch)).await.unwrap().into_inner().metric_specs[0].metric_name.clone();
    assert!(name.starts_with("edge-cpu-queuedepth-labels-"), "{name}");
    assert!(keda.is_active(object(&not_batch)).await.unwrap().into_inner().result);

    // CPU utilisation and memory come from the agents' real /proc readings.
    let util = edge_testkit::eventually_async(PATIENCE, "node CPU utilisation", || {
        let mut k = keda.clone();
        let pairs = with(&[("metric", "utilization")]);
        async move { get_metric(&mut k, &pairs).await.ok() }
    })
    .await;
    assert!((0.0..=100.0).contains(&util), "{util}");
    let mem = get_metric(&mut keda, &with(&[("metric", "memoryUtilization")])).await.unwrap();
    assert!(mem > 0.0 && mem < 100.0, "{mem}");

    assert!(keda.is_active(object(CPU_QUEUE)).await.unwrap().into_inner().result);
    let high = with(&[("activationValue", "5")]);
    assert!(!keda.is_active(object(&high)).await.unwrap().into_inner().result, "5 is not above 5");

    // GetMetrics with a name that is not this trigger's.
    let err = keda
        .get_metrics(GetMetricsRequest { scaled_object_ref: Some(object(CPU_QUEUE)), metric_name: "s0-other".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("metricName:"), "{err:?}");

    // The scaler's own metrics.
    let m = scaler.metrics();
    assert_eq!(sample(&m, "edge_scaler_agents"), Some(2.0), "{m}");
    assert_eq!(sample(&m, "edge_scaler_agents_connected"), Some(2.0), "{m}");
    assert_eq!(sample(&m, "edge_scaler_agents_stale"), Some(0.0), "{m}");
    assert!(sample(&m, "edge_scaler_snapshots_total").unwrap() >= 2.0, "{m}");
    assert!(sample(&m, r#"edge_scaler_grpc_requests_total{method="GetMetrics",code="Ok""#).unwrap() >= 7.0, "{m}");
    assert_eq!(sample(&m, r#"edge_scaler_grpc_requests_total{method="GetMetrics",code="InvalidArgument""#), Some(1.0));
    assert!(sample(&m, r#"edge_scaler_grpc_request_duration_seconds_count{method="IsActive""#).unwrap() >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waking_queue_pushes_exactly_one_true_and_shutdown_ends_the_stream_ok() {
    let agent = start_agent("zone-a");
    report(&agent, "w1", "sd-cpu", "cpu", 0, 0);
    let mut scaler = start_scaler(&[agents_flag(&[&agent])], &[]);
    let mut keda = scaler.client().await;
    let poller = keda.clone();
    let value = move |q: f64| {
        let keda = poller.clone();
        async move {
            edge_testkit::eventually_async(PATIENCE, &format!("queue {q} at the scaler"), || {
                let mut k = keda.clone();
                async move { (get_metric(&mut k, CPU_QUEUE).await.ok() == Some(q)).then_some(()) }
            })
            .await
        }
    };
    value(0.0).await;

    let mut stream = keda.stream_is_active(object(CPU_QUEUE)).await.unwrap().into_inner();
    // 0 -> 1: one push.
    report(&agent, "w1", "sd-cpu", "cpu", 1, 0);
    let first = tokio::time::timeout(PATIENCE, stream.message()).await.expect("no activation pushed");
    assert_eq!(first.unwrap(), Some(IsActiveResponse { result: true }));
    // Still active: more work, heartbeats and reports change nothing on the stream.
    for q in [2, 3, 1] {
        report(&agent, "w1", "sd-cpu", "cpu", q, 1);
        value(f64::from(q)).await;
    }
    // Back to idle (no push for false), then awake again: a second push.
    report(&agent, "w1", "sd-cpu", "cpu", 0, 0);
    value(0.0).await;
    report(&agent, "w1", "sd-cpu", "cpu", 1, 0);
    let second = tokio::time::timeout(PATIENCE, stream.message()).await.expect("no second activation");
    assert_eq!(second.unwrap(), Some(IsActiveResponse { result: true }));
    let m = scaler.metrics();
    assert_eq!(sample(&m, "edge_scaler_activations_total"), Some(2.0), "{m}");
    assert_eq!(sample(&m, "edge_scaler_active_streams"), Some(1.0), "{m}");

    // SIGTERM ends the stream with OK and nothing else was ever pushed.
    let status = scaler.terminate();
    let rest = tokio::time::timeout(PATIENCE, stream.message()).await.expect("stream not ended on shutdown");
    assert_eq!(rest.map_err(|s| s.code()), Ok(None), "stream must end with OK after exactly two pushes");
    assert!(status.success(), "{status}; log:\n{}", scaler.log());
}

/// A stream opened while the queue is already up (KEDA reconnecting to a restarted scaler
/// mid-burst) is told at once, not at KEDA's next IsActive poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opened_while_active_is_pushed_true_at_once() {
    let agent = start_agent("zone-a");
    report(&agent, "w1", "sd-cpu", "cpu", 3, 1);
    let scaler = start_scaler(&[agents_flag(&[&agent])], &[]);
    let keda = scaler.client().await;
    edge_testkit::eventually_async(PATIENCE, "the queue at the scaler", || {
        let mut k = keda.clone();
        async move { (get_metric(&mut k, CPU_QUEUE).await.ok() == Some(3.0)).then_some(()) }
    })
    .await;
    let mut stream = keda.clone().stream_is_active(object(CPU_QUEUE)).await.unwrap().into_inner();
    let first =
        tokio::time::timeout(std::time::Duration::from_secs(5), stream.message()).await.expect("no push at open");
    assert_eq!(first.unwrap(), Some(IsActiveResponse { result: true }));
    // Nothing more while it stays active.
    report(&agent, "w1", "sd-cpu", "cpu", 4, 1);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(500), stream.message()).await.is_err(),
        "a second push"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_goes_stale_then_errors_and_recovers_when_back() {
    let agent = start_agent("zone-a");
    let agent_addr = agent.addr;
    report(&agent, "w1", "sd-cpu", "cpu", 2, 0);
    let scaler =
        start_scaler(&[agents_flag(&[&agent]), ("stale-after", "1s".into()), ("reconnect-max", "300ms".into())], &[]);
    let mut keda = scaler.client().await;
    edge_testkit::eventually_async(PATIENCE, "the agent's queue", || {
        let mut k = keda.clone();
        async move { (get_metric(&mut k, CPU_QUEUE).await.ok() == Some(2.0)).then_some(()) }
    })
    .await;

    drop(agent); // SIGKILL: no goodbye, just silence.
    let err = edge_testkit::eventually_async(PATIENCE, "an error once the agent is stale", || {
        let mut k = keda.clone();
        async move { get_metric(&mut k, CPU_QUEUE).await.err() }
    })
    .await;
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("stale") && err.message().contains("inference/sd-cpu"), "{err:?}");
    let active = keda.is_active(object(CPU_QUEUE)).await.unwrap_err();
    assert_eq!(active.code(), Code::Unavailable, "never a silent false/0: {active:?}");
    let m = scaler.metrics();
    assert_eq!(sample(&m, "edge_scaler_agents_stale"), Some(1.0), "{m}");
    assert_eq!(sample(&m, "edge_scaler_agents_connected"), Some(0.0), "{m}");
    assert!(sample(&m, "edge_scaler_agent_disconnects_total").unwrap() >= 1.0, "{m}");

    // The agent comes back at the same address: the scaler reconnects on its own.
    let agent = agent_builder("zone-a").flag("listen", agent_addr.to_string()).start();
    report(&agent, "w1", "sd-cpu", "cpu", 4, 0);
    edge_testkit::eventually_async(PATIENCE, "the restarted agent's queue", || {
        let mut k = keda.clone();
        async move { (get_metric(&mut k, CPU_QUEUE).await.ok() == Some(4.0)).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_metric_spec_sends_what_get_metric_spec_answers_and_ends_ok_on_shutdown() {
    let agent = start_agent("zone-a");
    let mut scaler = start_scaler(&[agents_flag(&[&agent])], &[]);
    let mut keda = scaler.client().await;
    let pairs = [CPU_QUEUE, &[("targetValue", "2.5")]].concat();
    let mut stream = keda.stream_metric_spec(object(&pairs)).await.unwrap().into_inner();
    let first = tokio::time::timeout(PATIENCE, stream.message()).await.expect("no spec on open").unwrap();
    let spec = keda.get_metric_spec(object(&pairs)).await.unwrap().into_inner();
    assert_eq!(first, Some(spec.clone()));
    assert_eq!((spec.metric_specs[0].target_size_float, spec.metric_specs[0].target_size), (2.5, 3));
    // Nothing else while the metadata stays the same.
    assert!(tokio::time::timeout(std::time::Duration::from_millis(300), stream.message()).await.is_err());
    let bad = [CPU_QUEUE, &[("targetValue", "0")]].concat();
    let err = keda.stream_metric_spec(object(&bad)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("scalerMetadata.targetValue:"), "{err:?}");
    let status = scaler.terminate();
    let rest = tokio::time::timeout(PATIENCE, stream.message()).await.expect("stream not ended on shutdown");
    assert_eq!(rest.map_err(|s| s.code()), Ok(None));
    assert!(status.success(), "{status}");
}

/// Metadata, the key the error must name, a word the message must contain.
type Case = (&'static [(&'static str, &'static str)], &'static str, &'static str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_metadata_is_invalid_argument_naming_the_key_on_every_rpc() {
    let agent = start_agent("zone-a");
    let scaler = start_scaler(&[agents_flag(&[&agent])], &[]);
    let mut keda = scaler.client().await;
    let cases: &[Case] = &[
        (
            &[("acceleratorType", "gpu"), ("deployment", "d"), ("targetValue", "1")],
            "acceleratorType",
            "nvidia, neuron, cpu",
        ),
        (
            &[("acceleratorType", "cpu"), ("deployment", "d"), ("targetValue", "1"), ("metric", "qps")],
            "metric",
            "queueDepth",
        ),
        (&[("acceleratorType", "cpu"), ("deployment", "d"), ("targetValue", "lots")], "targetValue", "not a number"),
        (
            &[("acceleratorType", "cpu"), ("deployment", "d"), ("targetValue", "1"), ("activationValue", "-2")],
            "activationValue",
            "negative",
        ),
        (
            &[("acceleratorType", "cpu"), ("deployment", "d"), ("targetValue", "1"), ("queue", "x")],
            "queue",
            "allowed: acceleratorType",
        ),
        (&[("acceleratorType", "cpu"), ("targetValue", "1")], "deployment", "labelSelector"),
        (
            &[("acceleratorType", "cpu"), ("deployment", "d"), ("labelSelector", "app=sd"), ("targetValue", "1")],
            "deployment",
            "exclude each other",
        ),
        (
            &[("acceleratorType", "cpu"), ("labelSelector", "tier in (a,b)"), ("targetValue", "1")],
            "labelSelector",
            "key!=value",
        ),
    ];
    for (pairs, key, needle) in cases {
        let expect = |status: tonic::Status| {
            assert_eq!(status.code(), Code::InvalidArgument, "{pairs:?}: {status:?}");
            let msg = status.message();
            assert!(msg.starts_with(&format!("scalerMetadata.{key}:")) && msg.contains(needle), "{pairs:?}: {msg}");
        };
        expect(keda.is_active(object(pairs)).await.unwrap_err());
        expect(keda.get_metric_spec(object(pairs)).await.unwrap_err());
        expect(
            keda.get_metrics(GetMetricsRequest { scaled_object_ref: Some(object(pairs)), metric_name: String::new() })
                .await
                .unwrap_err(),
        );
        expect(keda.stream_is_active(object(pairs)).await.unwrap_err());
    }
    let missing = keda.get_metrics(GetMetricsRequest::default()).await.unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(missing.message().starts_with("scaledObjectRef:"), "{missing:?}");
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "--agents"),
        (&["--agents", "127.0.0.1"], "--agents"),
        (&["--agents", "127.0.0.1:1", "--agent-service", "edge-agent"], "--agents"),
        (&["--agents", "127.0.0.1:1", "--stale-after", "1ms"], "--stale-after"),
        (&["--agents", "127.0.0.1:1", "--tls-cert", "/nonexistent.pem"], "--tls-key"),
        (&["--agents", "127.0.0.1:1", "--demand-ttl", "2d"], "--demand-ttl"),
        (&["--agents", "127.0.0.1:1", "--demand-max-requesters", "0"], "--demand-max-requesters"),
    ];
    for (args, flag) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-scaler"))
            .args(*args)
            .env_remove("EDGE_SCALER_AGENTS")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
    // Environment variables are the flags' other spelling.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-scaler"))
        .env("EDGE_SCALER_AGENTS", "127.0.0.1:1")
        .env("EDGE_SCALER_STALE_AFTER", "forever")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--stale-after"), "{stderr}");
}
