//! Benchmark: what `edge-inference proxy` adds to a request. The same client
//! calls the third-party-shaped test upstream (`testkit/sd-upstream`, Python,
//! answering at once) directly and through the proxy, alternating request by
//! request on two kept-alive connections, so both paths see the same machine
//! state. Prints p50/p99 of each, the added latency and the ratio, for a
//! generation (queued, counted, reported) and a pass-through path; exits 1 if
//! the added p50 of a generation is 1 ms or more.
//!
//! `cargo bench -p edge-inference --bench proxy` (release profile).
//! `PROXY_BENCH_REQUESTS` (default 2000 per path).

// A benchmark's output is its result.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use edge_testkit::http::KeepAlive;
use edge_testkit::{AgentBuilder, SdUpstreamBuilder, WorkerBuilder, eventually, http};

const BIN: &str = env!("CARGO_BIN_EXE_edge-inference");

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
}

fn us(s: f64) -> String {
    format!("{:.0} µs", s * 1e6)
}

/// Alternates `send` on the direct and the proxied connection; per-request seconds of each.
fn measure(
    n: usize,
    mut send: impl FnMut(&mut KeepAlive) -> u16,
    direct: &mut KeepAlive,
    proxied: &mut KeepAlive,
) -> (Vec<f64>, Vec<f64>) {
    let (mut d, mut p) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        // Which goes first alternates too, so neither always follows the other's wake-up.
        let order: [(&mut KeepAlive, &mut Vec<f64>); 2] = if i % 2 == 0 {
            [(&mut *direct, &mut d), (&mut *proxied, &mut p)]
        } else {
            [(&mut *proxied, &mut p), (&mut *direct, &mut d)]
        };
        for (conn, out) in order {
            let t = Instant::now();
            let status = send(conn);
            out.push(t.elapsed().as_secs_f64());
            assert_eq!(status, 200);
        }
    }
    (d, p)
}

fn report(what: &str, mut direct: Vec<f64>, mut proxied: Vec<f64>) -> f64 {
    let (d50, d99) = (quantile(&mut direct, 0.5), quantile(&mut direct, 0.99));
    let (p50, p99) = (quantile(&mut proxied, 0.5), quantile(&mut proxied, 0.99));
    println!(
        "{what}: direct p50 {} p99 {} | through the proxy p50 {} p99 {} | added p50 {} p99 {} | ratio p50 {:.2}x p99 {:.2}x",
        us(d50),
        us(d99),
        us(p50),
        us(p99),
        us(p50 - d50),
        us(p99 - d99),
        p50 / d50,
        p99 / d99
    );
    p50 - d50
}

fn main() {
    let n: usize = std::env::var("PROXY_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    // The proxy reports to a real agent, as in a pod: every request changes the queue twice.
    let agent = AgentBuilder::new(edge_testkit::artifact("edge-agent")).start();
    let builder = SdUpstreamBuilder::new();
    let upstream = builder.start();
    let proxy = WorkerBuilder::proxy(BIN, &builder.url())
        .flag("accelerator", "neuron")
        .flag("upstream-health", "/internal/ping")
        .flag("agent", agent.report_addr.expect("report port").to_string())
        .flag("queue-capacity", "16")
        .env("EDGE_INFERENCE_LOG", "warn")
        .start();
    eventually(Duration::from_secs(30), "the proxy ready", || {
        (http::get(proxy.addr, "/readyz").ok()?.0 == 200).then_some(())
    });
    let mut direct = KeepAlive::connect(upstream.addr).expect("connect upstream");
    let mut proxied = KeepAlive::connect(proxy.addr).expect("connect proxy");
    let body = r#"{"prompt": "a lighthouse at dusk", "steps": 1, "seed": 7}"#;
    let txt2img = |c: &mut KeepAlive| c.post_json("/sdapi/v1/txt2img", body).expect("POST txt2img").0;
    let models = |c: &mut KeepAlive| c.get("/sdapi/v1/sd-models", &[]).expect("GET sd-models").0;
    // Warm-up: connections, the pool, the caches.
    let _ = measure(200, txt2img, &mut direct, &mut proxied);
    println!(
        "== {n} requests per path, alternating, one client, kept-alive connections; upstream: Python stdlib (1 KiB image)"
    );
    let (d, p) = measure(n, txt2img, &mut direct, &mut proxied);
    let added = report("generation POST /sdapi/v1/txt2img (queued, reported)", d, p);
    let (d, p) = measure(n, models, &mut direct, &mut proxied);
    report("pass-through GET /sdapi/v1/sd-models", d, p);
    drop(agent);
    if added >= 1e-3 {
        println!("FAIL: the proxy adds {} at p50 to a generation (target < 1 ms)", us(added));
        std::process::exit(1);
    }
}
