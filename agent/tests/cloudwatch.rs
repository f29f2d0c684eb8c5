//! The agent publishing to a CloudWatch-compatible server: moto's CloudWatch
//! behind `testkit/cloudwatch-front` (Smithy RPC v2 CBOR, as the SDK speaks
//! it). Read back with `GetMetricData` through the same SDK; the dashboard is
//! checked against what the agent publishes.
#![cfg(feature = "cloudwatch")]

#[path = "cloudwatch/front.rs"]
mod front;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use edge_agent::exporter::cloudwatch::series::{NodeDimensions, sample};
use edge_telemetry::catalogue::cloudwatch::{self as cw, CloudWatchMetric};
use edge_telemetry::proto::{Gpu, Host, NeuronCore, NeuronCoreMemory, Node, NodeSnapshot, Worker};
use edge_testkit::{Agent, AgentBuilder, eventually, fake_nvml, sample as metric};
use front::Front;

const CLUSTER: &str = "edge-test";
const ZONE: &str = "us-west-2-lax-1a";
const INSTANCE_TYPE: &str = "c7g.large";
/// Never in a log line: the agent must not print credentials.
const SECRET: &str = "wJalrXUtnFEMI-edge-test-SECRET-do-not-log";

fn agent(front: &Front, namespace: &str, flush: &str, buffer: u64) -> AgentBuilder {
    AgentBuilder::new(env!("CARGO_BIN_EXE_edge-agent"))
        .flag("cloudwatch-namespace", namespace)
        .flag("cloudwatch-flush-interval", flush)
        .flag("cloudwatch-buffer-samples", buffer.to_string())
        .flag("cluster-name", CLUSTER)
        .flag("instance-type", INSTANCE_TYPE)
        .flag("zone", ZONE)
        .flag("worker-expiry", "2s")
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", front.url())
        .env("AWS_ACCESS_KEY_ID", "AKIDEDGETEST")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", front::REGION)
        // Nothing from this machine's AWS set-up, no instance metadata.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/edge-test/config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/edge-test/credentials")
}

fn report(agent: &Agent, worker: &str, deployment: &str, queue: u32) {
    let body = serde_json::json!({
        "worker_id": worker, "pod": worker, "namespace": "inference", "deployment": deployment,
        "accelerator": "cpu", "queue_depth": queue, "in_flight": 1, "capacity": 8, "latency_p99_seconds": 1.25
    });
    let (status, text) = agent.report(&body.to_string());
    assert_eq!(status, 204, "{text}");
}

/// The exporter's counters from the line it logs when it stops.
#[derive(Debug, Default)]
struct Totals {
    sampled: u64,
    published: u64,
    dropped: u64,
    buffered: u64,
}

/// SIGTERM, then the final counters once the last flush is done.
fn stop(agent: &Agent) -> (Totals, String) {
    let status = std::process::Command::new("kill").arg("-TERM").arg(agent.pid().to_string()).status().unwrap();
    assert!(status.success());
    let line = eventually(Duration::from_secs(20), "the exporter's last line", || {
        agent.log().lines().find(|l| l.contains("CloudWatch exporter stopped")).map(str::to_owned)
    });
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
    };
    let totals = Totals {
        sampled: field("sampled"),
        published: field("published"),
        dropped: field("dropped"),
        buffered: field("buffered"),
    };
    (totals, agent.log())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Sum, sample count, minimum and maximum of one series over `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stats {
    sum: f64,
    count: f64,
    min: f64,
    max: f64,
    average: f64,
}

async fn stats(
    client: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    name: &str,
    dims: &[Dimension],
    (start, end): (i64, i64),
) -> Stats {
    let query = |id: &str, stat: &str| {
        let metric =
            Metric::builder().namespace(namespace).metric_name(name).set_dimensions(Some(dims.to_vec())).build();
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(MetricStat::builder().metric(metric).period(60).stat(stat).build())
            .build()
    };
    let out = client
        .get_metric_data()
        .start_time(DateTime::from_secs(start))
        .end_time(DateTime::from_secs(end))
        .metric_data_queries(query("sum", "Sum"))
        .metric_data_queries(query("count", "SampleCount"))
        .metric_data_queries(query("min", "Minimum"))
        .metric_data_queries(query("max", "Maximum"))
        .send()
        .await
        .expect("GetMetricData");
    let values = |id: &str| -> Vec<f64> {
        out.metric_data_results().iter().find(|r| r.id() == Some(id)).map(|r| r.values().to_vec()).unwrap_or_default()
    };
    let (sum, count) = (values("sum").iter().sum::<f64>(), values("count").iter().sum::<f64>());
    Stats {
        sum,
        count,
        min: values("min").into_iter().fold(f64::INFINITY, f64::min),
        max: values("max").into_iter().fold(f64::NEG_INFINITY, f64::max),
        average: sum / count,
    }
}

/// Every series in `namespace`, once each (moto lists a series once per datum).
async fn list_series(client: &aws_sdk_cloudwatch::Client, namespace: &str) -> Vec<(String, Vec<Dimension>)> {
    let mut out: Vec<(String, Vec<Dimension>)> = Vec::new();
    let mut token = None;
    loop {
        let page = client.list_metrics().namespace(namespace).set_next_token(token).send().await.expect("ListMetrics");
        for m in page.metrics() {
            let series = (m.metric_name().unwrap_or("").to_owned(), m.dimensions().to_vec());
            if !out.contains(&series) {
                out.push(series);
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return out;
        }
    }
}

fn dims(extra: &[(&str, &str)]) -> Vec<Dimension> {
    let node = [
        (cw::DIM_CLUSTER_NAME, CLUSTER),
        (cw::DIM_NODE_NAME, "test-node"),
        (cw::DIM_INSTANCE_TYPE, INSTANCE_TYPE),
        (cw::DIM_ACCELERATOR_TYPE, "cpu"),
        (cw::DIM_ZONE, ZONE),
    ];
    node.iter().chain(extra).map(|(n, v)| Dimension::builder().name(*n).value(*v).build()).collect()
}

/// Every accepted call kept CloudWatch's limits; returns (calls, datums, samples).
fn check_limits(front: &Front) -> (u64, u64, u64) {
    let s = front.stats();
    let datums: Vec<u64> = s["put_datums"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(datums.iter().all(|d| (1..=1000).contains(d)), "datums per call: {datums:?}");
    let bytes: Vec<u64> = s["put_body_bytes"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(bytes.iter().all(|b| *b <= 1_000_000), "body bytes per call: {bytes:?}");
    assert!(s["max_values_per_datum"].as_u64().unwrap() <= 150, "{s}");
    assert!(s["max_dimensions"].as_u64().unwrap() <= 30, "{s}");
    (s["put_calls"].as_u64().unwrap(), datums.iter().sum(), s["put_samples"].as_u64().unwrap())
}

#[test]
fn the_agent_publishes_batched_one_second_samples_that_read_back_exactly() {
    let front = Front::start();
    let namespace = "EdgeTest/ReadBack";
    let started = now_secs();
    let agent = agent(&front, namespace, "2s", 100_000).start();

    // Two Deployments: one steady at queue depth 2, one that bursts from 1 to 9.
    let feed_started = Instant::now();
    while feed_started.elapsed() < Duration::from_secs(5) {
        let burst = if feed_started.elapsed() < Duration::from_millis(2500) { 1 } else { 9 };
        report(&agent, "w-steady", "sd-steady", 2);
        report(&agent, "w-burst", "sd-burst", burst);
        // More Deployments make calls large enough for the SDK to gzip them.
        for i in 0..12 {
            report(&agent, &format!("w-extra-{i}"), &format!("sd-extra-{i}"), i);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eventually(Duration::from_secs(30), "a PutMetricData call", || {
        (front.stats()["put_calls"].as_u64().unwrap() >= 2).then_some(())
    });
    let metrics = agent.metrics();
    let (totals, log) = stop(&agent);
    let elapsed = (now_secs() - started).max(1);

    // Nothing lost: every sample taken was accepted, and arrived.
    assert!(totals.sampled > 0, "{totals:?}");
    assert_eq!((totals.published, totals.dropped, totals.buffered), (totals.sampled, 0, 0), "{totals:?}");
    let (calls, datums, samples) = check_limits(&front);
    assert_eq!(samples, totals.published, "the server got every sample the agent counted as published");
    assert!(metric(&metrics, "edge_cloudwatch_requests_total{outcome=\"ok\"").unwrap() >= 1.0, "{metrics}");
    assert!(!log.contains(SECRET), "the secret key appears in the log:\n{log}");
    assert!(front.stats()["put_gzip_calls"].as_u64().unwrap() >= 1, "no call was large enough to be gzipped");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = front::client(&front);
    let window = (started - started % 60 - 60, now_secs() + 120);
    rt.block_on(async {
        let series = list_series(&client, namespace).await;
        let mut stored = 0.0;
        for (name, d) in &series {
            let names: Vec<_> = d.iter().take(5).map(|d| d.name().unwrap_or("")).collect();
            assert_eq!(names, cw::NODE_DIMENSIONS, "{name}: node dimensions first, in order");
            stored += stats(&client, namespace, name, d, window).await.count;
        }
        assert_eq!(stored, totals.published as f64, "samples stored over {} series", series.len());

        let steady = dims(&[(cw::DIM_NAMESPACE, "inference"), (cw::DIM_DEPLOYMENT, "sd-steady")]);
        let q = stats(&client, namespace, cw::WORKER_QUEUE_DEPTH.name, &steady, window).await;
        assert_eq!((q.min, q.max, q.average), (2.0, 2.0, 2.0), "{q:?}");
        let workers = stats(&client, namespace, cw::WORKERS.name, &steady, window).await;
        assert_eq!(workers.count, q.count, "one sample per tick for every series of a Deployment");
        assert!(q.count >= 10.0, "{q:?}");
        let p99 = stats(&client, namespace, cw::WORKER_LATENCY_P99_SECONDS.name, &steady, window).await;
        assert_eq!((p99.average, p99.count), (1.25, q.count));

        let burst = dims(&[(cw::DIM_NAMESPACE, "inference"), (cw::DIM_DEPLOYMENT, "sd-burst")]);
        let b = stats(&client, namespace, cw::WORKER_QUEUE_DEPTH.name, &burst, window).await;
        assert_eq!((b.min, b.max), (1.0, 9.0), "the 1-second burst survives batching: {b:?}");
        // Sum = 1·low + 9·high with low + high = count: both phases were sampled.
        let high = (b.sum - b.count) / 8.0;
        assert!(high.fract() == 0.0 && high >= 1.0 && b.count - high >= 1.0, "{b:?}");

        let extra = dims(&[(cw::DIM_NAMESPACE, "inference"), (cw::DIM_DEPLOYMENT, "sd-extra-7")]);
        let e = stats(&client, namespace, cw::WORKER_QUEUE_DEPTH.name, &extra, window).await;
        assert_eq!((e.min, e.max, e.average), (7.0, 7.0, 7.0), "{e:?}");

        let up = stats(&client, namespace, cw::AGENT_UP.name, &dims(&[]), window).await;
        assert_eq!((up.min, up.max), (1.0, 1.0));
        let cpu = stats(&client, namespace, cw::NODE_CPU_UTILIZATION.name, &dims(&[]), window).await;
        assert!((0.0..=100.0).contains(&cpu.min) && cpu.max <= 100.0, "{cpu:?}");

        // The figures for the README: calls and datums against the naive one
        // call per metric per sample.
        eprintln!(
            "cloudwatch cost: {calls} PutMetricData calls carried {datums} datums and {samples} samples \
             from {} series in {elapsed} s ({:.1} datums/call, {:.1} samples/call); naive: {samples} calls",
            series.len(),
            datums as f64 / calls as f64,
            samples as f64 / calls as f64,
        );
    });
}

#[path = "cloudwatch/devices.rs"]
mod devices;

#[test]
fn an_outage_fills_a_bounded_buffer_drops_the_oldest_and_recovers() {
    let front = Front::start();
    let namespace = "EdgeTest/Outage";
    let capacity = 150;
    let started = now_secs();
    let agent = agent(&front, namespace, "1s", capacity).start();
    eventually(Duration::from_secs(30), "a first accepted call", || {
        (front.stats()["put_calls"].as_u64().unwrap() >= 1).then_some(())
    });

    let buffered = |m: &str| metric(m, "edge_cloudwatch_buffered_samples").expect("buffer gauge");
    let counter = |m: &str, series: &str| metric(m, series).unwrap_or(0.0);
    let mut peak = 0.0f64;
    for (mode, series) in [
        ("500", "edge_cloudwatch_requests_total{outcome=\"server_error\""),
        ("throttle", "edge_cloudwatch_requests_total{outcome=\"throttled\""),
        ("drop", "edge_cloudwatch_requests_total{outcome=\"network\""),
    ] {
        front.fault(mode);
        eventually(Duration::from_secs(60), &format!("a failed call in mode {mode}"), || {
            let m = agent.metrics();
            peak = peak.max(buffered(&m));
            assert!(buffered(&m) <= capacity as f64, "buffer beyond its bound:\n{m}");
            (counter(&m, series) >= 1.0).then_some(())
        });
    }
    // Long enough to overflow: the oldest samples go, counted.
    eventually(Duration::from_secs(60), "the full buffer to drop samples", || {
        let m = agent.metrics();
        peak = peak.max(buffered(&m));
        assert!(buffered(&m) <= capacity as f64, "buffer beyond its bound:\n{m}");
        (counter(&m, "edge_cloudwatch_samples_dropped_total{reason=\"buffer_full\"") > 0.0).then_some(())
    });
    assert!(peak >= capacity as f64 * 0.9, "the buffer filled up: peak {peak}");

    // Reports, scraping and the snapshot work throughout.
    report(&agent, "w-outage", "sd-outage", 4);
    let m = agent.metrics();
    assert_eq!(
        metric(&m, r#"edge_worker_queue_depth{accelerator="cpu",namespace="inference",deployment="sd-outage""#),
        Some(4.0)
    );

    front.fault("off");
    eventually(Duration::from_secs(60), "the buffer to drain", || {
        let m = agent.metrics();
        (buffered(&m) < capacity as f64 / 2.0 && agent.log().contains("CloudWatch publishing recovered")).then_some(())
    });
    let dropped_metric = counter(&agent.metrics(), "edge_cloudwatch_samples_dropped_total{reason=\"buffer_full\"");
    let (totals, log) = stop(&agent);

    // Nothing lost beyond the counted drops.
    assert_eq!(totals.buffered, 0, "{totals:?}");
    assert_eq!(totals.sampled, totals.published + totals.dropped, "{totals:?}");
    assert!(totals.dropped as f64 >= dropped_metric && dropped_metric > 0.0, "{totals:?}");
    let (_, _, samples) = check_limits(&front);
    assert_eq!(samples, totals.published);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = front::client(&front);
    let window = (started - started % 60 - 60, now_secs() + 120);
    let stored = rt.block_on(async {
        let mut stored = 0.0;
        for (name, d) in list_series(&client, namespace).await {
            stored += stats(&client, namespace, &name, &d, window).await.count;
        }
        stored
    });
    assert_eq!(stored, totals.published as f64);

    // One warning for the whole outage, one line when it ended, no secret.
    assert_eq!(log.matches("CloudWatch publishing failed").count(), 1, "{log}");
    assert_eq!(log.matches("CloudWatch publishing recovered").count(), 1, "{log}");
    assert!(!log.contains(SECRET), "the secret key appears in the log:\n{log}");
}

#[test]
fn without_a_namespace_no_aws_code_runs() {
    let agent = AgentBuilder::new(env!("CARGO_BIN_EXE_edge-agent"))
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", "http://127.0.0.1:9")
        .start();
    let m = agent.metrics();
    assert!(!m.contains("edge_cloudwatch_"), "{m}");
    assert!(!agent.log().contains("CloudWatch"), "{}", agent.log());
}

/// A node with every kind of device and a worker, for the dashboard check.
fn full_snapshot() -> NodeSnapshot {
    NodeSnapshot {
        node: Some(Node { name: "n".into(), instance_type: "t".into(), zone: "z".into() }),
        gpus: vec![Gpu {
            minor_number: Some(0),
            gpu_utilization_percent: Some(1),
            framebuffer_used_bytes: Some(1),
            framebuffer_total_bytes: Some(2),
            power_usage_watts: Some(1.0),
            temperature_celsius: Some(1),
            ..Default::default()
        }],
        neuron_cores: vec![NeuronCore {
            utilization_ratio: Some(0.5),
            memory: Some(NeuronCoreMemory { tensors_bytes: Some(1), ..Default::default() }),
            ..Default::default()
        }],
        host: Some(Host {
            cpu_utilization_ratio: Some(0.5),
            memory_total_bytes: Some(2),
            memory_available_bytes: Some(1),
            ..Default::default()
        }),
        workers: vec![Worker {
            worker_id: "w".into(),
            namespace: "ns".into(),
            deployment: "d".into(),
            accelerator: "cpu".into(),
            latency_p50_seconds: Some(1.0),
            latency_p99_seconds: Some(1.0),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// (metric, sorted dimension names) of every metric a dashboard widget names:
/// `metrics` arrays, `SEARCH('{Namespace,Dim,…} MetricName="…"')` and
/// Metrics Insights `SELECT F(metric) FROM SCHEMA(Namespace, Dim, …)`.
fn dashboard_metrics(body: &serde_json::Value, namespace: &str) -> BTreeSet<(String, Vec<String>)> {
    let mut out = BTreeSet::new();
    for widget in body["widgets"].as_array().expect("widgets") {
        for row in widget["properties"]["metrics"].as_array().into_iter().flatten() {
            let row = row.as_array().expect("a metrics row is an array");
            for item in row {
                let Some(expr) = item.get("expression").and_then(|e| e.as_str()) else { continue };
                out.extend(expression_metrics(expr, namespace));
            }
            let strings: Vec<&str> = row.iter().filter_map(|v| v.as_str()).collect();
            if strings.first() == Some(&namespace) {
                let mut dims: Vec<String> = strings[2..].iter().step_by(2).map(|s| s.to_string()).collect();
                dims.sort();
                out.insert((strings[1].to_owned(), dims));
            } else if strings.len() >= 2 && strings[0] != "..." && !strings[0].is_empty() {
                panic!("a metrics row outside the namespace {namespace}: {row:?}");
            }
        }
    }
    out
}

fn expression_metrics(expr: &str, namespace: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    if let Some(rest) = expr.split("SCHEMA(").nth(1) {
        let inner = rest.split(')').next().unwrap();
        let mut parts = inner.split(',').map(|s| s.trim().trim_matches('"').to_owned());
        assert_eq!(parts.next().as_deref(), Some(namespace), "{expr}");
        let mut dims: Vec<String> = parts.collect();
        dims.sort();
        let name = expr.split('(').nth(1).unwrap().split(')').next().unwrap().trim().to_owned();
        out.push((name, dims));
    }
    if let Some(rest) = expr.split("SEARCH('{").nth(1) {
        let inner = rest.split('}').next().unwrap();
        let mut parts = inner.split(',').map(|s| s.trim().trim_matches('"').to_owned());
        assert_eq!(parts.next().as_deref(), Some(namespace), "{expr}");
        let mut dims: Vec<String> = parts.collect();
        dims.sort();
        let name = rest.split("MetricName=\"").nth(1).expect("SEARCH names its metric").split('"').next().unwrap();
        out.push((name.to_owned(), dims));
    }
    out
}

#[test]
fn every_metric_the_dashboard_names_is_published_with_the_same_dimensions() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards/cloudwatch/edge-diffusion.json");
    let text = std::fs::read_to_string(path).unwrap();
    let body: serde_json::Value = serde_json::from_str(&text).expect("the dashboard body is JSON");
    let published: BTreeSet<(String, Vec<String>)> =
        sample(&full_snapshot(), &NodeDimensions { cluster: "c".into(), pods: false })
            .into_iter()
            .map(|(k, _)| {
                let mut dims: Vec<String> = k.dimensions.iter().map(|(n, _)| n.to_string()).collect();
                dims.sort();
                (k.metric.name.to_owned(), dims)
            })
            .collect();
    let named = dashboard_metrics(&body, "EdgeDiffusion");
    assert!(named.len() >= 5, "the dashboard names few metrics: {named:?}");
    for m in &named {
        assert!(published.contains(m), "the dashboard names {m:?}, which the agent does not publish");
    }
    let names: BTreeSet<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
    for needed in [
        cw::NODE_GPU_UTILIZATION.name,
        cw::NODE_NEURONCORE_UTILIZATION.name,
        cw::NODE_CPU_UTILIZATION.name,
        cw::WORKER_QUEUE_DEPTH.name,
        cw::WORKER_LATENCY_P99_SECONDS.name,
        cw::AGENT_UP.name,
    ] {
        assert!(names.contains(needed), "the dashboard shows no {needed}");
    }
}
