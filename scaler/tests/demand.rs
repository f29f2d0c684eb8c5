//! Waking a Deployment that has no pods, through real processes: an
//! `edge-agent` with no workers of the class, a real `edge-scaler`, the KEDA
//! client generated from the project's proto, and device pulls of
//! `GET /v1/endpoints` on the scaler's HTTP port.

mod common;

use common::*;
use edge_scaler::keda::IsActiveResponse;
use edge_telemetry::inventory::{INVENTORY_PATH, Inventory, InventoryError};
use edge_testkit::{http, sample};
use serde_json::json;
use tonic::Code;

const NVIDIA_QUEUE: &[(&str, &str)] =
    &[("acceleratorType", "nvidia"), ("deployment", "sd-nvidia"), ("targetValue", "1")];
const CPU_QUEUE: &[(&str, &str)] = &[("acceleratorType", "cpu"), ("deployment", "sd-cpu"), ("targetValue", "1")];

fn pull(scaler: &Scaler, query: &str) -> http::Response {
    http::get_response(scaler.metrics_addr, &format!("{INVENTORY_PATH}{query}")).expect("GET /v1/endpoints")
}

fn inventory(r: &http::Response) -> Inventory {
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

async fn value(
    keda: &mut edge_scaler::keda::external_scaler_client::ExternalScalerClient<tonic::transport::Channel>,
    pairs: &[(&str, &str)],
) -> f64 {
    get_metric(keda, pairs).await.unwrap_or_else(|s| panic!("{pairs:?}: {s:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_pull_at_zero_wakes_its_class_once_until_a_worker_serves_it() {
    let agent = start_agent("zone-a");
    // Only a CPU worker exists; nothing of nvidia, anywhere.
    report_with(&agent, "c1", "sd-cpu", "cpu", 0, 0, json!({"endpoint": "http://10.0.1.1:30080"}));
    let mut scaler = start_scaler(&[("agents", agent.addr.to_string())], &[]);
    let mut keda = scaler.client().await;
    edge_testkit::eventually_async(PATIENCE, "the agent fresh at the scaler", || {
        let mut k = keda.clone();
        async move { (get_metric(&mut k, NVIDIA_QUEUE).await.ok() == Some(0.0)).then_some(()) }
    })
    .await;
    assert!(!keda.is_active(object(NVIDIA_QUEUE)).await.unwrap().into_inner().result);

    let mut nvidia = keda.stream_is_active(object(NVIDIA_QUEUE)).await.unwrap().into_inner();
    let mut cpu = keda.stream_is_active(object(CPU_QUEUE)).await.unwrap().into_inner();

    // The device asks for nvidia in zone-a: none is ready.
    let first = pull(&scaler, "?accelerator=nvidia&zone=zone-a&device=phone-1");
    let answer = inventory(&first);
    let urls: Vec<&str> = answer.endpoints.iter().map(|e| e.url.as_str()).collect();
    assert_eq!(urls, ["http://10.0.1.1:30080"], "the best endpoint there is: CPU in the same zone");
    assert_eq!(
        serde_json::to_value(&answer.waking).unwrap(),
        json!([{"accelerator": "nvidia", "zone": null, "namespace": NS, "deployment": "sd-nvidia"}])
    );
    assert_eq!(first.header("retry-after"), Some("30"), "{:?}", first.headers);

    let woke = tokio::time::timeout(PATIENCE, nvidia.message()).await.expect("no activation pushed");
    assert_eq!(woke.unwrap(), Some(IsActiveResponse { result: true }));
    assert!(keda.is_active(object(NVIDIA_QUEUE)).await.unwrap().into_inner().result);
    assert_eq!(value(&mut keda, NVIDIA_QUEUE).await, 1.0, "one device waiting");
    // More devices count; the same device twice counts once.
    inventory(&pull(&scaler, "?accelerator=nvidia&zone=zone-a&device=phone-2"));
    inventory(&pull(&scaler, "?accelerator=nvidia&zone=zone-a&device=phone-1"));
    assert_eq!(value(&mut keda, NVIDIA_QUEUE).await, 2.0);
    // A trigger that opts out, and another accelerator's, stay asleep.
    let opted_out = [NVIDIA_QUEUE, &[("activateOnDemand", "false")]].concat();
    assert!(!keda.is_active(object(&opted_out)).await.unwrap().into_inner().result);
    assert_eq!(value(&mut keda, &opted_out).await, 0.0);
    assert!(!keda.is_active(object(CPU_QUEUE)).await.unwrap().into_inner().result);

    // Pulls that name what nothing can serve keep their 400.
    for (query, param, needle) in [
        ("?accelerator=nvidia&zone=zone-q", "zone", "known: zone-a"),
        ("?accelerator=tpu", "accelerator", "nvidia, neuron, cpu"),
        ("?accelerator=nvidia&device=a%20b", "device", "not a device id"),
    ] {
        let r = pull(&scaler, query);
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        let err: InventoryError = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(err.param, param, "{query}");
        assert!(err.error.contains(needle), "{query}: {}", r.text());
    }

    // The woken worker starts and reports ready: the inventory lists it, the demand clears.
    let gpu = json!({"endpoint": "http://10.0.2.2:30081"});
    report_with(&agent, "g1", "sd-nvidia", "nvidia", 0, 0, gpu);
    edge_testkit::eventually_async(PATIENCE, "the demand cleared by the ready worker", || {
        let mut k = keda.clone();
        async move { (get_metric(&mut k, NVIDIA_QUEUE).await.ok() == Some(0.0)).then_some(()) }
    })
    .await;
    assert!(!keda.is_active(object(NVIDIA_QUEUE)).await.unwrap().into_inner().result, "idle once served");
    let served = inventory(&pull(&scaler, "?accelerator=nvidia&zone=zone-a&device=phone-3"));
    assert_eq!(served.endpoints.iter().map(|e| e.url.as_str()).collect::<Vec<_>>(), ["http://10.0.2.2:30081"]);
    assert!(served.waking.is_empty());
    assert_eq!(value(&mut keda, NVIDIA_QUEUE).await, 0.0, "a pull that finds an endpoint is no demand");

    // Its first image: the worker reports a latency only once it has served one.
    let gpu = json!({"endpoint": "http://10.0.2.2:30081", "latency_p50_seconds": 2.0});
    report_with(&agent, "g1", "sd-nvidia", "nvidia", 0, 0, gpu);
    let m = edge_testkit::eventually(PATIENCE, "both cold-start phases measured", || {
        let m = scaler.metrics();
        let image = r#"edge_scaler_cold_start_seconds_count{accelerator="nvidia",zone="",phase="image"}"#;
        (sample(&m, image) == Some(1.0)).then_some(m)
    });
    let report = r#"edge_scaler_cold_start_seconds_count{accelerator="nvidia",zone="",phase="report"}"#;
    assert_eq!(sample(&m, report), Some(1.0), "{m}");
    assert_eq!(sample(&m, "edge_scaler_demand_wakes_total"), Some(1.0), "{m}");
    assert_eq!(sample(&m, "edge_scaler_demand_requesters"), Some(0.0), "{m}");
    assert_eq!(sample(&m, "edge_scaler_activations_total"), Some(1.0), "{m}");

    // The worker drains (scaled back to zero): its endpoint leaves, and the
    // class stays inactive until a device asks again.
    report_with(&agent, "g1", "sd-nvidia", "nvidia", 0, 0, json!({}));
    edge_testkit::eventually(PATIENCE, "the draining worker's endpoint withdrawn", || {
        (inventory(&pull(&scaler, "")).endpoints.len() == 1).then_some(())
    });
    assert!(!keda.is_active(object(NVIDIA_QUEUE)).await.unwrap().into_inner().result);

    // Shutdown ends both streams with OK: exactly one true on nvidia, none on cpu.
    let status = scaler.terminate();
    let rest = tokio::time::timeout(PATIENCE, nvidia.message()).await.expect("nvidia stream not ended");
    assert_eq!(rest.map_err(|s| s.code()), Ok(None), "exactly one push on the woken stream");
    let rest = tokio::time::timeout(PATIENCE, cpu.message()).await.expect("cpu stream not ended");
    assert_eq!(rest.map_err(|s| s.code()), Ok(None), "nothing pushed on the cpu stream");
    assert!(status.success(), "{status}; log:\n{}", scaler.log());
}

/// The number a replica answers `GetMetrics` with for `pairs`, once it answers.
async fn value_at(scaler: &Scaler, pairs: &[(&str, &str)]) -> Option<f64> {
    get_metric(&mut scaler.client().await, pairs).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_at_one_replica_wakes_the_stream_keda_holds_on_the_other() {
    let agent = start_agent("zone-a");
    report_with(&agent, "c1", "sd-cpu", "cpu", 0, 0, json!({"endpoint": "http://10.0.1.1:30080"}));
    let (http_a, http_b) = (loopback(edge_testkit::free_port()), loopback(edge_testkit::free_port()));
    // Both list both addresses, themselves among them, as a headless Service's name resolves.
    let peers = format!("{http_a},{http_b}");
    let flags = [("agents", agent.addr.to_string()), ("peers", peers)];
    let mut a = start_scaler_at(http_a, &flags, &[]);
    let b = start_scaler_at(http_b, &flags, &[]);
    for (name, replica) in [("a", &a), ("b", &b)] {
        edge_testkit::eventually_async(PATIENCE, &format!("the agent fresh at replica {name}"), || async {
            (value_at(replica, NVIDIA_QUEUE).await == Some(0.0)).then_some(())
        })
        .await;
        edge_testkit::eventually(PATIENCE, &format!("replica {name} syncing with its one peer"), || {
            (sample(&replica.metrics(), "edge_scaler_peers") == Some(1.0)).then_some(())
        });
    }

    // KEDA's connection, and so its stream, is on replica A.
    let mut keda = a.client().await;
    let mut nvidia = keda.stream_is_active(object(NVIDIA_QUEUE)).await.unwrap().into_inner();

    // A device's pull reaches replica B: A's stream wakes, and B names what A wakes.
    let first = inventory(&pull(&b, "?accelerator=nvidia&zone=zone-a&device=phone-1"));
    assert_eq!(first.endpoints.iter().map(|e| e.url.as_str()).collect::<Vec<_>>(), ["http://10.0.1.1:30080"]);
    let woke = tokio::time::timeout(PATIENCE, nvidia.message()).await.expect("no activation pushed on replica a");
    assert_eq!(woke.unwrap(), Some(IsActiveResponse { result: true }));
    assert!(keda.is_active(object(NVIDIA_QUEUE)).await.unwrap().into_inner().result);
    let expected = json!([{"accelerator": "nvidia", "zone": null, "namespace": NS, "deployment": "sd-nvidia"}]);
    let named = edge_testkit::eventually(PATIENCE, "replica b naming the stream open on a", || {
        let r = inventory(&pull(&b, "?accelerator=nvidia&zone=zone-a&device=phone-1"));
        (!r.waking.is_empty()).then_some(r.waking)
    });
    assert_eq!(serde_json::to_value(&named).unwrap(), expected);

    // Both replicas count the same distinct devices, wherever they pulled
    // (the HPA's GetMetrics may reach either).
    inventory(&pull(&a, "?accelerator=nvidia&zone=zone-a&device=phone-2"));
    for (name, replica) in [("a", &a), ("b", &b)] {
        edge_testkit::eventually_async(PATIENCE, &format!("two devices counted at replica {name}"), || async {
            (value_at(replica, NVIDIA_QUEUE).await == Some(2.0)).then_some(())
        })
        .await;
    }

    // The woken worker reports ready: the demand clears at both.
    report_with(&agent, "g1", "sd-nvidia", "nvidia", 0, 0, json!({"endpoint": "http://10.0.2.2:30081"}));
    for (name, replica) in [("a", &a), ("b", &b)] {
        edge_testkit::eventually_async(PATIENCE, &format!("the demand cleared at replica {name}"), || async {
            (value_at(replica, NVIDIA_QUEUE).await == Some(0.0)).then_some(())
        })
        .await;
    }
    assert!(!keda.is_active(object(NVIDIA_QUEUE)).await.unwrap().into_inner().result);
    for replica in [&a, &b] {
        let log = replica.log();
        assert!(log.contains("this replica itself"), "each replica skips its own address:\n{log}");
        let m = replica.metrics();
        assert!(sample(&m, r#"edge_scaler_peer_syncs_total{outcome="ok"}"#).unwrap_or(0.0) >= 1.0, "{m}");
        assert_eq!(sample(&m, "edge_scaler_peer_demand_dropped_total"), Some(0.0), "{m}");
    }

    let status = a.terminate();
    let rest = tokio::time::timeout(PATIENCE, nvidia.message()).await.expect("stream not ended");
    assert_eq!(rest.map_err(|s| s.code()), Ok(None), "exactly one push on the woken stream");
    assert!(status.success(), "{status}; log:\n{}", a.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_sibling_spills_over_and_wakes_the_gpu_tier() {
    let agent = start_agent("zone-a");
    report(&agent, "c1", "sd-cpu", "cpu", 2, 1);
    report(&agent, "c2", "sd-cpu", "cpu", 1, 0);
    let scaler = start_scaler(&[("agents", agent.addr.to_string())], &[]);
    let mut keda = scaler.client().await;
    let spilling = [NVIDIA_QUEUE, &[("spillFrom", "cpu"), ("spillAbove", "4")]].concat();
    edge_testkit::eventually_async(PATIENCE, "the CPU backlog at the scaler", || {
        let mut k = keda.clone();
        let backlog = [CPU_QUEUE, &[("metric", "backlog")]].concat();
        async move { (get_metric(&mut k, &backlog).await.ok() == Some(4.0)).then_some(()) }
    })
    .await;
    // 4 over 2 workers: below 4 each, nothing spills.
    assert_eq!(value(&mut keda, &spilling).await, 0.0);
    assert!(!keda.is_active(object(&spilling)).await.unwrap().into_inner().result);
    let mut stream = keda.stream_is_active(object(&spilling)).await.unwrap().into_inner();

    // The CPU tier saturates: 13 over 2 workers, 5 beyond their 8.
    report(&agent, "c1", "sd-cpu", "cpu", 8, 1);
    report(&agent, "c2", "sd-cpu", "cpu", 3, 1);
    let woke = tokio::time::timeout(PATIENCE, stream.message()).await.expect("no spill-over activation");
    assert_eq!(woke.unwrap(), Some(IsActiveResponse { result: true }));
    edge_testkit::eventually_async(PATIENCE, "the spilled-over backlog", || {
        let mut k = keda.clone();
        let spilling = spilling.clone();
        async move { (get_metric(&mut k, &spilling).await.ok() == Some(5.0)).then_some(()) }
    })
    .await;
    assert!(keda.is_active(object(&spilling)).await.unwrap().into_inner().result);
    // Without spillFrom the same trigger sleeps.
    assert!(!keda.is_active(object(NVIDIA_QUEUE)).await.unwrap().into_inner().result);

    // The backlog falls: the GPU tier follows its own (empty) queue again.
    report(&agent, "c1", "sd-cpu", "cpu", 1, 1);
    edge_testkit::eventually_async(PATIENCE, "the spill-over gone", || {
        let mut k = keda.clone();
        let spilling = spilling.clone();
        async move { (get_metric(&mut k, &spilling).await.ok() == Some(0.0)).then_some(()) }
    })
    .await;
    assert!(!keda.is_active(object(&spilling)).await.unwrap().into_inner().result);

    // Bad spill-over metadata: INVALID_ARGUMENT naming the key and what is allowed.
    for (extra, key, needle) in [
        (&[("spillFrom", "nvidia"), ("spillAbove", "4")][..], "spillFrom", "own acceleratorType"),
        (&[("spillFrom", "tpu"), ("spillAbove", "4")][..], "spillFrom", "nvidia, neuron, cpu"),
        (&[("spillFrom", "cpu")][..], "spillAbove", "missing"),
        (&[("spillFrom", "cpu"), ("spillAbove", "-1")][..], "spillAbove", "negative"),
        (&[("activateOnDemand", "maybe")][..], "activateOnDemand", "true, false"),
    ] {
        let pairs = [NVIDIA_QUEUE, extra].concat();
        let err = keda.is_active(object(&pairs)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{extra:?}");
        assert!(err.message().starts_with(&format!("scalerMetadata.{key}:")), "{extra:?}: {}", err.message());
        assert!(err.message().contains(needle), "{extra:?}: {}", err.message());
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Sends `n` pulls for nvidia from distinct devices `prefix-0..n` over
/// `threads` kept-alive connections.
fn flood(scaler: &Scaler, prefix: &str, n: usize, threads: usize) {
    std::thread::scope(|s| {
        for t in 0..threads {
            let addr = scaler.metrics_addr;
            s.spawn(move || {
                let mut conn = http::KeepAlive::connect(addr).expect("connect");
                for i in (t..n).step_by(threads) {
                    let (status, body) =
                        conn.get(&format!("{INVENTORY_PATH}?accelerator=nvidia&device={prefix}-{i}"), &[]).unwrap();
                    assert_eq!(status, 200, "{body}");
                }
            });
        }
    });
}

#[test]
fn a_hundred_thousand_distinct_devices_keep_the_scaler_bounded() {
    let agent = start_agent("zone-a");
    let cap = 10_000;
    let scaler = start_scaler(
        &[("agents", agent.addr.to_string()), ("demand-max-requesters", cap.to_string())],
        &[("EDGE_SCALER_LOG", "warn".to_owned())],
    );
    edge_testkit::eventually(PATIENCE, "the agent followed", || {
        (sample(&scaler.metrics(), "edge_scaler_agents_connected") == Some(1.0)).then_some(())
    });
    // Fill the class to its bound, then measure 80,000 more distinct devices.
    flood(&scaler, "warm", 20_000, 4);
    let warm = rss_kib(scaler.pid());
    flood(&scaler, "flood", 80_000, 4);
    let after = rss_kib(scaler.pid());
    let m = scaler.metrics();
    assert_eq!(sample(&m, "edge_scaler_demand_requesters"), Some(cap as f64), "bounded per class: {m}");
    assert_eq!(sample(&m, "edge_scaler_demand_wakes_total"), Some(1.0), "one class, woken once: {m}");
    // Made-up zones are refused, never new classes.
    for i in 0..1000 {
        let (status, _) =
            http::get(scaler.metrics_addr, &format!("{INVENTORY_PATH}?accelerator=cpu&zone=z{i}")).unwrap();
        assert_eq!(status, 400);
    }
    let grown = after.saturating_sub(warm);
    eprintln!("scaler RSS {warm} KiB after 20,000 devices, {after} KiB after 100,000 (+{grown} KiB)");
    assert!(grown < 4 * 1024, "RSS grew {grown} KiB over 80,000 devices beyond the bound of {cap}");
}
