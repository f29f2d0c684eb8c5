//! The real `edge-inference serve` process on the tiny model: the API, its
//! validation, the bounded queue, disconnects and draining on SIGTERM.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{decode_png, tiny_model, worker};
use edge_testkit::eventually;
use edge_testkit::http;
use edge_testkit::http::ResponseExt;
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);

#[test]
fn serves_pngs_that_a_seed_reproduces_and_answers_probes() {
    let model = tiny_model();
    let w = worker(model.path()).start();
    assert_eq!(http::get_response(w.addr, "/healthz").unwrap().status, 200);
    assert_eq!(http::get_response(w.addr, "/readyz").unwrap().status, 200);

    let body = json!({"prompt": "a red robot", "seed": 7, "steps": 2, "size": "64x64"});
    let a = w.post("/generate", &body);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("image/png"));
    assert_eq!(a.header("x-seed"), Some("7"));
    let timing = |name: &str| a.server_timing(name).unwrap_or_else(|| panic!("no {name} in {:?}", a.headers));
    assert!(timing("model") > 0.0);
    assert!(timing("total") >= timing("queue") + timing("model"), "total covers queue and model");
    let (width, height, _) = decode_png(&a.body);
    assert_eq!((width, height), (64, 64));
    let b = w.post("/generate", &body);
    assert_eq!(a.body, b.body, "same seed, different image");

    let r = w.post(
        "/v1/images/generations",
        &json!({"prompt": "a red robot", "n": 2, "size": "128x64", "seed": 7, "steps": 2,
                "response_format": "b64_json", "model": "tiny"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!((data[0]["seed"].as_u64(), data[1]["seed"].as_u64()), (Some(7), Some(8)));
    for item in data {
        let png = base64::engine::general_purpose::STANDARD.decode(item["b64_json"].as_str().unwrap()).unwrap();
        let (pw, ph, _) = decode_png(&png);
        assert_eq!((pw, ph), (128, 64));
    }
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    let metrics = w.metrics();
    assert_eq!(edge_testkit::sample(&metrics, r#"edge_inference_images_generated_total{kind="generate"}"#), Some(4.0));
    assert_eq!(edge_testkit::sample(&metrics, "edge_inference_requests_total{status=\"200\""), Some(3.0));
    assert!(edge_testkit::sample(&metrics, "edge_inference_step_duration_seconds_count").unwrap() >= 8.0);
}

#[test]
fn every_invalid_field_is_a_400_naming_it_and_its_range() {
    let model = tiny_model();
    let w = worker(model.path()).flag("max-steps", "30").flag("max-side", "256").start();
    let cases: &[(&str, serde_json::Value, &str, &str)] = &[
        ("/generate", json!({"prompt": ""}), "prompt", "non-empty"),
        ("/generate", json!({"steps": 2}), "prompt", "non-empty"),
        ("/generate", json!({"prompt": "x", "steps": 31}), "steps", "1..=30"),
        ("/generate", json!({"prompt": "x", "steps": "many"}), "steps", "from 1 to 30"),
        ("/generate", json!({"prompt": "x", "size": "260x64"}), "size", "from 64 to 256"),
        ("/generate", json!({"prompt": "x", "size": "68x64"}), "size", "multiple of 8"),
        ("/generate", json!({"prompt": "x", "guidance_scale": 31}), "guidance_scale", "0..=30"),
        ("/generate", json!({"prompt": "x", "seed": -3}), "seed", "18446744073709551615"),
        ("/generate", json!({"prompt": "x", "negative_prompt": 5}), "negative_prompt", "a string"),
        ("/generate", json!({"prompt": "x", "n": 2}), "n", "unknown field"),
        ("/v1/images/generations", json!({"prompt": "x", "n": 9}), "n", "1..=4"),
        ("/v1/images/generations", json!({"prompt": "x", "response_format": "url"}), "response_format", "b64_json"),
        ("/v1/images/generations", json!({"prompt": "x", "style": "vivid"}), "style", "allowed:"),
        ("/v1/images/generations", json!(["x"]), "body", "JSON object"),
    ];
    for (path, body, field, needle) in cases {
        let r = w.post(path, body);
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["param"], *field, "{path} {body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle) && msg.starts_with(field), "{path} {body}: {msg}");
    }
    let r = http::post_response(w.addr, "/generate", "{not json", LONG).unwrap();
    assert_eq!((r.status, r.json()["error"]["param"].as_str()), (400, Some("body")));
    assert_eq!(w.metric("edge_inference_requests_total{status=\"400\""), Some(cases.len() as f64 + 1.0));
}

/// A request long enough to still be running while the test looks at the queue.
fn slow() -> String {
    json!({"prompt": "a slow one", "steps": 800, "size": "64x64", "seed": 1}).to_string()
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let model = tiny_model();
    let w = worker(model.path()).flag("queue-capacity", "2").flag("max-steps", "1000").start();
    let _held: Vec<_> = (0..2).map(|_| http::send_json(w.addr, "/generate", &slow()).unwrap()).collect();
    eventually(LONG, "one running and one queued", || {
        let m = w.metrics();
        (edge_testkit::sample(&m, "edge_inference_in_flight") == Some(1.0)
            && edge_testkit::sample(&m, "edge_inference_queue_depth") == Some(1.0))
        .then_some(())
    });
    let r = w.post("/generate", &json!({"prompt": "one too many", "steps": 1}));
    assert_eq!(r.status, 429, "{}", r.text());
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!(retry >= 1);
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert_eq!(w.metric("edge_inference_rejected_total{reason=\"full\""), Some(1.0));
}

#[test]
fn a_client_that_goes_away_frees_its_slot() {
    let model = tiny_model();
    let w = worker(model.path()).flag("queue-capacity", "2").flag("max-steps", "1000").start();
    let running = http::send_json(w.addr, "/generate", &slow()).unwrap();
    let queued = http::send_json(w.addr, "/generate", &slow()).unwrap();
    eventually(LONG, "the queue to fill", || (w.metric("edge_inference_queue_depth") == Some(1.0)).then_some(()));
    assert_eq!(w.post("/generate", &json!({"prompt": "x", "steps": 1})).status, 429);

    // The queued client hangs up: its slot is free for the next request.
    drop(queued);
    eventually(LONG, "the abandoned request to leave the queue", || {
        (w.metric("edge_inference_queue_depth") == Some(0.0)).then_some(())
    });
    let third = http::send_json(w.addr, "/generate", &json!({"prompt": "x", "steps": 1}).to_string()).unwrap();
    eventually(LONG, "the new request to be queued", || {
        (w.metric("edge_inference_queue_depth") == Some(1.0)).then_some(())
    });

    // The running client hangs up too: its generation stops at the next step
    // (no image counted), and the queued request runs and succeeds.
    drop(running);
    let r = http::receive(third).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        w.metric(r#"edge_inference_images_generated_total{kind="generate"}"#),
        Some(1.0),
        "a cancelled request made an image"
    );
}

#[test]
fn sigterm_under_load_loses_no_accepted_request() {
    let model = tiny_model();
    let mut w = worker(model.path())
        .flag("queue-capacity", "5")
        .flag("max-steps", "1000")
        .flag("drain-timeout", "120s")
        .start();
    let bodies: Vec<String> =
        (0..5).map(|i| json!({"prompt": "drain me", "steps": 60, "size": "64x64", "seed": i}).to_string()).collect();
    let clients: Vec<_> = bodies.iter().map(|b| http::send_json(w.addr, "/generate", b).unwrap()).collect();
    eventually(LONG, "all five accepted", || {
        let m = w.metrics();
        let total = edge_testkit::sample(&m, "edge_inference_queue_depth")?
            + edge_testkit::sample(&m, "edge_inference_in_flight")?;
        (total == 5.0).then_some(())
    });
    w.sigterm();
    // Intake stops: a new request is refused (connection closed or 503), never queued.
    eventually(LONG, "intake to stop", || match http::post_response(w.addr, "/generate", &bodies[0], LONG) {
        Ok(r) if r.status == 503 => Some(()),
        Err(_) => Some(()),
        // Sent before the signal was handled: accepted and served, which is fine.
        Ok(_) => None,
    });
    let handles: Vec<_> = clients.into_iter().map(|c| std::thread::spawn(move || http::receive(c))).collect();
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.join().unwrap().unwrap_or_else(|e| panic!("request {i} lost: {e}"));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(decode_png(&r.body).0, 64);
    }
    let status = w.wait();
    assert!(status.success(), "exit {status}; log:\n{}", w.log());
    assert!(w.log().contains("drained"), "{}", w.log());
}

#[test]
fn a_broken_model_dir_fails_at_start_naming_the_path() {
    let model = tiny_model();
    std::fs::remove_file(model.path().join("unet/diffusion_pytorch_model.safetensors")).unwrap();
    let mut w = worker(model.path()).spawn();
    let status = w.wait();
    assert!(!status.success());
    let log = w.log();
    assert!(log.contains(&model.path().join("unet").display().to_string()) && log.contains("no weights file"), "{log}");
}

#[test]
fn metrics_speak_the_format_their_content_type_names() {
    let model = tiny_model();
    let w = worker(model.path()).start();
    let plain = http::get_response(w.addr, "/metrics").unwrap();
    assert_eq!(plain.header("content-type"), Some(edge_telemetry::exposition::TEXT_CONTENT_TYPE));
    let text = plain.text();
    assert!(!text.contains("# EOF") && text.contains("# TYPE edge_inference_images_generated_total counter"), "{text}");
    let problems = edge_testkit::promtool::problems(&text);
    assert!(problems.is_empty(), "promtool found problems:\n{}\n\nin:\n{text}", problems.join("\n"));
}

#[test]
fn a_body_over_the_limit_gets_413_in_the_error_shape_and_is_counted() {
    let model = tiny_model();
    let w = worker(model.path()).start();
    // /v1/images/generations carries no images, so it keeps the 64 KiB limit.
    let prompt = "x".repeat(70 * 1024);
    let r = w.post("/v1/images/generations", &json!({"prompt": prompt}));
    assert_eq!(r.status, 413, "{}", r.text());
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()));
    assert_eq!(body["error"]["param"], "body", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("65536 bytes"), "{body}");
    let m = w.metrics();
    assert_eq!(edge_testkit::sample(&m, r#"edge_inference_rejected_total{reason="too_large"}"#), Some(1.0), "{m}");
    assert_eq!(edge_testkit::sample(&m, r#"edge_inference_requests_total{status="413"}"#), Some(1.0), "{m}");
}
