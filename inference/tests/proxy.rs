//! The real `edge-inference proxy` in front of the third-party-shaped test
//! upstream (`testkit/sd-upstream/upstream.py`, Python stdlib): bodies pass
//! unchanged both ways (large and chunked ones too), other paths pass
//! straight through uncounted, `--concurrency` bounds what reaches the
//! upstream (also when clients hang up), SIGTERM drains, and bad flags stop it
//! naming the flag. The
//! end-to-end test with the agent and scaler is `tests/tests/proxy.rs`.

mod common;

use std::time::Duration;

use edge_testkit::{SdUpstreamBuilder, WorkerBuilder, eventually, http, sample};

const BIN: &str = env!("CARGO_BIN_EXE_edge-inference");
const LONG: Duration = Duration::from_secs(60);

fn proxy(upstream: &SdUpstreamBuilder) -> WorkerBuilder {
    WorkerBuilder::proxy(BIN, &upstream.url())
        .flag("accelerator", "neuron")
        .flag("upstream-health", "/internal/ping")
        .flag("health-interval", "100ms")
}

fn ready(p: &edge_testkit::Proxy) {
    eventually(LONG, "the proxy ready (upstream healthy)", || {
        (http::get(p.addr, "/readyz").ok()?.0 == 200).then_some(())
    });
}

#[test]
fn bodies_pass_unchanged_both_ways_and_concurrency_bounds_the_upstream() {
    // 3 MB images, sent chunked in pieces: the proxy streams them.
    let builder = SdUpstreamBuilder::new().sleep(0.3).arg("--image-bytes=3000000").arg("--chunked");
    let upstream = builder.start();
    let p = proxy(&builder).flag("concurrency", "2").flag("queue-capacity", "8").start();
    ready(&p);

    // img2img with a 2 MB init image: the upstream receives every byte.
    let init = "A".repeat(2_000_000);
    let body = format!(r#"{{"prompt": "repaint", "seed": 5, "init_images": ["{init}"]}}"#);
    let through = http::post_response(p.addr, "/sdapi/v1/img2img", &body, LONG).unwrap();
    let direct = http::post_response(upstream.addr, "/sdapi/v1/img2img", &body, LONG).unwrap();
    assert_eq!(through.status, 200, "{}", String::from_utf8_lossy(&through.body[..through.body.len().min(300)]));
    assert!(through.body.len() > 4_000_000, "the image came back whole: {} bytes", through.body.len());
    assert!(through.body == direct.body, "the proxied answer differs from the upstream's own");
    let info: serde_json::Value = serde_json::from_slice(&through.body).unwrap();
    let info: serde_json::Value = serde_json::from_str(info["info"].as_str().unwrap()).unwrap();
    assert_eq!(info["received_bytes"].as_u64(), Some(body.len() as u64));

    // Six at once, two may run: the upstream never sees a third.
    let before = upstream.stats()["max_active"].as_u64().unwrap();
    assert_eq!(before, 1, "so far one at a time");
    let burst: Vec<_> = (0..6)
        .map(|seed| {
            let addr = p.addr;
            std::thread::spawn(move || {
                let body = format!(r#"{{"prompt": "x", "seed": {seed}}}"#);
                http::post_response(addr, "/sdapi/v1/txt2img", &body, LONG).unwrap().status
            })
        })
        .collect();
    for h in burst {
        assert_eq!(h.join().unwrap(), 200);
    }
    assert_eq!(upstream.stats()["max_active"], 2, "--concurrency 2: {}", upstream.stats());

    // Not a generation: straight through, not counted; the upstream's own 404 too.
    let (status, models) = http::get(p.addr, "/sdapi/v1/sd-models").unwrap();
    assert_eq!((status, models.contains("sd21-neuron")), (200, true), "{models}");
    assert_eq!(http::get(p.addr, "/no/such/page").unwrap().0, 404);
    let m = p.metrics();
    assert_eq!(sample(&m, "edge_inference_requests_total{status=\"200\""), Some(7.0), "{m}");
    assert_eq!(sample(&m, "edge_inference_request_duration_seconds_count"), Some(7.0), "{m}");
    assert_eq!(sample(&m, "edge_inference_capacity"), Some(8.0));
    assert_eq!(sample(&m, "edge_inference_ready"), Some(1.0));
    assert!(!m.contains("edge_inference_images_generated"), "only the upstream knows its images:\n{m}");
}

/// A client that hangs up while queued frees its slot; one that hangs up
/// while the upstream computes does not free the runner: the upstream is
/// still busy, and the next request must wait for it.
#[test]
fn a_client_that_hangs_up_frees_its_slot_but_not_the_busy_upstream() {
    let builder = SdUpstreamBuilder::new().sleep(1.0);
    let upstream = builder.start();
    let p = proxy(&builder).flag("queue-capacity", "2").start();
    ready(&p);
    let body = r#"{"prompt": "x"}"#;
    let running = http::send_json(p.addr, "/sdapi/v1/txt2img", body).unwrap();
    eventually(LONG, "the first at the upstream", || (upstream.stats()["active"] == 1).then_some(()));
    let queued = http::send_json(p.addr, "/sdapi/v1/txt2img", body).unwrap();
    eventually(LONG, "the second queued", || {
        (sample(&p.metrics(), "edge_inference_queue_depth")? == 1.0).then_some(())
    });
    assert_eq!(http::post_response(p.addr, "/sdapi/v1/txt2img", body, LONG).unwrap().status, 429);
    drop(queued);
    eventually(LONG, "the abandoned request out of the queue", || {
        (sample(&p.metrics(), "edge_inference_queue_depth")? == 0.0).then_some(())
    });
    // The running client leaves; the next request still waits for the upstream.
    drop(running);
    let next = http::post_response(p.addr, "/sdapi/v1/txt2img", body, LONG).unwrap();
    assert_eq!(next.status, 200, "{}", next.text());
    let stats = upstream.stats();
    assert_eq!((stats["max_active"].as_u64(), stats["served"].as_u64()), (Some(1), Some(2)), "{stats}");
}

#[test]
fn an_upstream_that_does_not_answer_in_time_gets_502_and_is_marked_down() {
    let builder = SdUpstreamBuilder::new().sleep(3.0);
    let _upstream = builder.start();
    let p = proxy(&builder).flag("upstream-timeout", "300ms").flag("health-interval", "1h").start();
    ready(&p);
    let r = http::post_response(p.addr, "/v1/images/generations", r#"{"prompt": "slow"}"#, LONG).unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("--upstream-timeout 300ms"), "{}", r.text());
    // Marked down (the next health check is an hour away): refused at once, not queued.
    assert_eq!(http::get(p.addr, "/readyz").unwrap().0, 503);
    let again = http::post_response(p.addr, "/v1/images/generations", r#"{"prompt": "x"}"#, LONG).unwrap();
    assert!(again.status == 502 && again.text().contains("is down"), "{}", again.text());
}

#[test]
fn sigterm_drains_every_accepted_request() {
    let builder = SdUpstreamBuilder::new().sleep(0.8);
    let upstream = builder.start();
    let mut p = proxy(&builder).flag("queue-capacity", "3").flag("drain-timeout", "30s").start();
    ready(&p);
    let clients: Vec<_> = (0..3)
        .map(|seed| {
            let addr = p.addr;
            let h = std::thread::spawn(move || {
                let body = format!(r#"{{"prompt": "drain me", "seed": {seed}}}"#);
                http::post_response(addr, "/v1/images/generations", &body, LONG)
            });
            std::thread::sleep(Duration::from_millis(30));
            h
        })
        .collect();
    eventually(LONG, "all three accepted", || {
        let m = p.metrics();
        (sample(&m, "edge_inference_queue_depth")? + sample(&m, "edge_inference_in_flight")? == 3.0).then_some(())
    });
    p.sigterm();
    eventually(LONG, "intake to stop", || match http::post_response(p.addr, "/v1/images/generations", "{}", LONG) {
        Ok(r) if r.status == 503 => Some(()),
        Err(_) => Some(()),
        Ok(_) => None,
    });
    for (i, c) in clients.into_iter().enumerate() {
        let r = c.join().unwrap().unwrap_or_else(|e| panic!("request {i} lost: {e}"));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    assert!(p.wait().success(), "{}", p.log());
    assert!(p.log().contains("drained"), "{}", p.log());
    assert_eq!(upstream.stats()["served"], 3);
}

#[test]
fn bad_flags_stop_the_proxy_naming_the_flag() {
    let up = SdUpstreamBuilder::new();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("upstream", "https://127.0.0.1:7860")], "--upstream"),
        (&[("upstream", "127.0.0.1:7860")], "expected http://HOST:PORT"),
        (&[("route", "/ok,sdapi/v1/txt2img")], "--route \"sdapi/v1/txt2img\""),
        (&[("upstream-health", "ping")], "--upstream-health"),
        (&[("concurrency", "0")], "--concurrency"),
        (&[("health-interval", "0s")], "--health-interval"),
    ];
    for (flags, needle) in cases {
        let mut b = proxy(&up);
        for (k, v) in *flags {
            b = b.flag(k, *v);
        }
        let (status, log) = b.run_to_exit();
        assert!(!status.success(), "{flags:?} started");
        assert!(log.contains(needle), "{flags:?}: {log}");
    }
    // No --accelerator: the scaler selects on it, so there is no guess.
    let (status, log) = WorkerBuilder::proxy(BIN, &up.url()).run_to_exit();
    assert!(!status.success());
    assert!(log.contains("--accelerator") && log.contains("nvidia, neuron, cpu"), "{log}");
}
