//! Worker reports through the real agent process: over loopback TCP and the
//! Unix socket, into /metrics and the gRPC change feed, and the refusals.

use std::time::Duration;

use edge_testkit::{Agent, AgentBuilder, eventually, http, sample};

fn agent() -> AgentBuilder {
    AgentBuilder::new(env!("CARGO_BIN_EXE_edge-agent"))
}

fn report(worker: &str, deployment: &str, accelerator: &str, queue: u32) -> String {
    serde_json::json!({
        "worker_id": worker,
        "pod": worker,
        "namespace": "inference",
        "deployment": deployment,
        "accelerator": accelerator,
        "queue_depth": queue,
        "in_flight": 1,
        "capacity": 8,
        "latency_p99_seconds": 1.25
    })
    .to_string()
}

fn queue_depth(agent: &Agent, deployment: &str) -> Option<f64> {
    sample(
        &agent.metrics(),
        &format!(r#"edge_worker_queue_depth{{accelerator="nvidia",namespace="inference",deployment="{deployment}""#),
    )
}

#[test]
fn a_report_reaches_metrics_summed_per_deployment() {
    let agent = agent().start();
    assert_eq!(agent.report(&report("w-1", "sd-nvidia", "nvidia", 3)).0, 204);
    // Labels are accepted but never become metric labels: the two workers share one series.
    let mut labelled = serde_json::from_str::<serde_json::Value>(&report("w-2", "sd-nvidia", "nvidia", 4)).unwrap();
    labelled["labels"] = serde_json::json!({"app.kubernetes.io/name": "sd", "tier": "gold"});
    assert_eq!(agent.report(&labelled.to_string()).0, 204);
    // A report changes the snapshot before the 204 goes out: no tick to wait for.
    assert_eq!(queue_depth(&agent, "sd-nvidia"), Some(7.0));
    let metrics = agent.metrics();
    assert_eq!(
        sample(&metrics, r#"edge_workers{accelerator="nvidia",namespace="inference",deployment="sd-nvidia""#),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"edge_worker_latency_p99_seconds{accelerator="nvidia",namespace="inference",deployment="sd-nvidia""#
        ),
        Some(1.25)
    );
    assert!(!metrics.contains("tier") && !metrics.contains("gold"), "{metrics}");
}

#[test]
fn node_identity_comes_from_flags_or_environment() {
    let agent = agent().env("EDGE_AGENT_INSTANCE_TYPE", "g5.xlarge").flag("zone", "us-west-2-lax-1a").start();
    assert_eq!(
        sample(
            &agent.metrics(),
            r#"edge_node_info{node="test-node",instance_type="g5.xlarge",zone="us-west-2-lax-1a"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn reports_over_the_unix_socket_count_too() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let agent = agent().flag("report-socket", socket.to_str().unwrap()).start();
    // Workers in the agent's group can connect, whatever user the agent runs as; others cannot.
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o660, "{mode:o}");
    let (status, body) =
        http::post_json_unix(&socket, "/v1/reports", &report("w-unix", "sd-unix", "nvidia", 5)).unwrap();
    assert_eq!(status, 204, "{body}");
    assert_eq!(queue_depth(&agent, "sd-unix"), Some(5.0));
}

#[test]
fn bad_reports_are_refused_with_the_field_and_change_nothing() {
    let agent = agent().start();
    assert_eq!(agent.report(&report("w-1", "sd-nvidia", "nvidia", 2)).0, 204);

    let mut wrong = serde_json::from_str::<serde_json::Value>(&report("w-1", "sd-nvidia", "nvidia", 9)).unwrap();
    wrong["accelerator"] = "tpu".into();
    let (status, body) = agent.report(&wrong.to_string());
    assert_eq!(status, 400, "{body}");
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["field"], "accelerator");
    assert!(err["error"].as_str().unwrap().contains("nvidia, neuron, cpu"), "{body}");

    let mut bad_label = serde_json::from_str::<serde_json::Value>(&report("w-1", "sd-nvidia", "nvidia", 9)).unwrap();
    bad_label["labels"] = serde_json::json!({"tier": "not a value"});
    let (status, body) = agent.report(&bad_label.to_string());
    assert_eq!(status, 400, "{body}");
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["field"], "labels.tier", "{body}");
    assert!(err["error"].as_str().unwrap().contains("allowed:"), "{body}");

    let (status, body) = agent.report("{not json");
    assert_eq!(
        (status, serde_json::from_str::<serde_json::Value>(&body).unwrap()["field"].clone()),
        (400, "body".into())
    );

    let huge = format!(r#"{{"worker_id":"{}"}}"#, "x".repeat(64 * 1024));
    let (status, body) = agent.report(&huge);
    assert_eq!(status, 413, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["field"], "body");

    assert_eq!(queue_depth(&agent, "sd-nvidia"), Some(2.0), "refused reports must not change the queue");
    assert_eq!(sample(&agent.metrics(), r#"edge_collector_errors_total{collector="workers""#), Some(4.0));
}

#[test]
fn silent_workers_expire() {
    let agent = agent().flag("worker-expiry", "2s").start();
    assert_eq!(agent.report(&report("w-gone", "sd-expiring", "nvidia", 1)).0, 204);
    assert_eq!(queue_depth(&agent, "sd-expiring"), Some(1.0));
    eventually(Duration::from_secs(10), "the silent worker to expire", || {
        queue_depth(&agent, "sd-expiring").is_none().then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_sends_the_snapshot_then_each_change_then_heartbeats() {
    let agent =
        tokio::task::spawn_blocking(|| agent().flag("interval", "10s").flag("stream-heartbeat", "300ms").start())
            .await
            .unwrap();
    let mut feed = agent.watch().await;
    let first = feed.message().await.unwrap().expect("a first snapshot");
    assert_eq!(first.node.as_ref().unwrap().name, "test-node");

    let report_addr = agent.report_addr.unwrap();
    let mut body = serde_json::from_str::<serde_json::Value>(&report("w-feed", "sd-feed", "neuron", 6)).unwrap();
    body["labels"] = serde_json::json!({"tier": "gold"});
    body["endpoint"] = serde_json::json!("http://10.0.3.7:30080");
    let body = body.to_string();
    tokio::task::spawn_blocking(move || http::post_json(report_addr, "/v1/reports", &body).unwrap()).await.unwrap();

    // Collector ticks also change the snapshot; read until the worker shows up.
    let with_worker = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let snap = feed.message().await.unwrap().expect("stream open");
            if let Some(w) = snap.workers.iter().find(|w| w.worker_id == "w-feed") {
                return (snap.sequence, w.clone());
            }
        }
    })
    .await
    .expect("the report reaches the feed");
    assert!(with_worker.0 > first.sequence);
    assert_eq!((with_worker.1.queue_depth, with_worker.1.accelerator.as_str()), (6, "neuron"));
    assert_eq!(with_worker.1.labels, [("tier".to_owned(), "gold".to_owned())].into(), "labels reach the scaler's feed");
    assert_eq!(with_worker.1.endpoint, "http://10.0.3.7:30080", "so does the endpoint");

    // Sequences never go back; a heartbeat repeats the latest sequence.
    let mut last = with_worker.0;
    let mut repeated = false;
    for _ in 0..40 {
        let snap = tokio::time::timeout(Duration::from_secs(5), feed.message()).await.unwrap().unwrap().unwrap();
        assert!(snap.sequence >= last);
        repeated |= snap.sequence == last;
        last = snap.sequence;
        if repeated {
            break;
        }
    }
    assert!(repeated, "no heartbeat repeated the latest snapshot");
}

#[test]
fn sigterm_stops_the_agent_cleanly() {
    let agent = agent().start();
    let status = agent.terminate();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn bad_flags_fail_at_start_naming_the_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["--report-listen", "0.0.0.0:9401"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--report-listen") && stderr.contains("loopback"), "{stderr}");
}

/// `--user`: started as root, the agent makes the socket (0660, its user and the workers'
/// group), then runs as that user with no capabilities and can never become root again.
/// Run as non-root (where a test cannot start anything as root), the agent refuses `--user`
/// with a line naming it.
#[test]
fn the_agent_makes_its_socket_then_runs_as_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let builder = agent()
        .flag("report-socket", socket.to_str().unwrap())
        .flag("report-socket-group", "12345")
        .flag("user", "65534:65534");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .args([format!("--report-socket={}", socket.display()), "--user=65534:65534".into()])
            .args(["--report-listen=", "--pod-resources-socket=", "--listen=127.0.0.1:0"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("--user"), "{out:?}");
        return;
    }
    let agent = builder.start();
    let meta = std::fs::metadata(&socket).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o777), (65534, 12345, 0o660));
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.split_whitespace().collect::<Vec<_>>()).unwrap()
    };
    assert_eq!(field("Uid:"), ["65534"; 4], "real, effective, saved, fs");
    assert_eq!(field("Gid:"), ["65534"; 4]);
    assert_eq!(field("Groups:"), ["65534"]);
    assert_eq!(field("CapEff:"), ["0000000000000000"]);
    assert_eq!(field("CapPrm:"), ["0000000000000000"]);
    // And it still takes reports on the socket it made.
    let (status, body) =
        http::post_json_unix(&socket, "/v1/reports", &report("w-user", "sd-user", "nvidia", 2)).unwrap();
    assert_eq!(status, 204, "{body}");
    assert_eq!(queue_depth(&agent, "sd-user"), Some(2.0));
}

#[test]
fn user_and_socket_group_refuse_what_they_cannot_mean() {
    for (flags, named) in [
        (&["--user=nobody"][..], "--user"),
        (&["--user=0:0"][..], "--user"),
        (&["--user=65534:65534", "--pod-resources-socket=/var/lib/kubelet/pod-resources/kubelet.sock"][..], "--user"),
        (&["--report-socket-group=workers"][..], "--report-socket-group"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .args(["--listen=127.0.0.1:0", "--report-listen="])
            .args(flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(named), "{flags:?}: {stderr}");
    }
}
