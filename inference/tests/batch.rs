//! Batching in the real `edge-inference serve` on the tiny model: text-to-image
//! requests of one shape that wait together run as one batch, each answered
//! with the image its seed gives alone; other shapes and edits run alone, and a
//! client that hangs up while waiting leaves the queue as without batching.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{decode_png, tiny_model, worker};
use edge_inference::imageio::OutputFormat;
use edge_inference::model::pipeline::Image;
use edge_testkit::http::{self, ResponseExt};
use edge_testkit::{Worker, eventually};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

fn body(prompt: &str, seed: u64, size: &str) -> Value {
    json!({"prompt": prompt, "seed": seed, "steps": 2, "size": size})
}

/// (batches run, images in them) from the batch-size histogram.
fn batches(w: &Worker) -> (f64, f64) {
    let m = w.metrics();
    let get = |s: &str| edge_testkit::sample(&m, s).unwrap_or_else(|| panic!("no {s} in\n{m}"));
    (get("edge_inference_batch_images_count"), get("edge_inference_batch_images_sum"))
}

fn largest_pixel_difference(a: &[u8], b: &[u8]) -> u8 {
    let (_, _, a) = decode_png(a);
    let (_, _, b) = decode_png(b);
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).map(|(x, y)| x.abs_diff(*y)).max().unwrap()
}

#[test]
fn same_shape_requests_that_wait_together_run_as_one_batch() {
    let model = tiny_model();
    let w = worker(model.path())
        .flag("max-batch", "4")
        .flag("max-images", "6")
        .flag("max-steps", "1000")
        .flag("queue-capacity", "8")
        .start();
    // Holds the only runner while the others queue behind it.
    let slow = json!({"prompt": "a slow one", "steps": 800, "size": "64x64", "seed": 1}).to_string();
    let slow = http::send_json(w.addr, "/generate", &slow).unwrap();
    eventually(LONG, "the slow request to run", || (w.metric("edge_inference_in_flight") == Some(1.0)).then_some(()));

    let asks = [
        ("a red cat", 11, "64x64"),
        ("a blue dog", 12, "64x64"),
        ("a tall tree", 13, "128x64"),
        ("a green car", 14, "64x64"),
    ];
    let waiting: Vec<_> = asks
        .iter()
        .map(|(p, seed, size)| http::send_json(w.addr, "/generate", &body(p, *seed, size).to_string()).unwrap())
        .collect();
    // One more that hangs up while it waits: it leaves the queue and no batch carries it.
    let quitter = http::send_json(w.addr, "/generate", &body("never mind", 15, "64x64").to_string()).unwrap();
    eventually(LONG, "five requests queued", || (w.metric("edge_inference_queue_depth") == Some(5.0)).then_some(()));
    drop(quitter);
    eventually(LONG, "the quitter to leave", || (w.metric("edge_inference_queue_depth") == Some(4.0)).then_some(()));

    // The slow client hangs up: its generation stops and the runner goes to the queue.
    drop(slow);
    let answers: Vec<_> = waiting.into_iter().map(|c| http::receive(c).unwrap()).collect();
    for (r, (prompt, seed, size)) in answers.iter().zip(&asks) {
        assert_eq!(r.status, 200, "{prompt}: {}", r.text());
        assert_eq!(r.header("x-seed"), Some(seed.to_string().as_str()));
        let (width, height, _) = decode_png(&r.body);
        assert_eq!(format!("{width}x{height}"), *size);
    }
    // The slow one alone, the three 64×64 together, the 128×64 alone.
    assert_eq!(batches(&w), (3.0, 5.0), "batches and their images");
    assert_eq!(
        w.metric("edge_inference_queue_wait_seconds_count"),
        Some(5.0),
        "each that started waited; not the quitter"
    );
    assert_eq!(w.metric("edge_inference_queue_depth"), Some(0.0));
    assert_eq!(w.metric("edge_inference_in_flight"), Some(0.0));

    // Alone now (nothing else waits), each image is the one it was in its batch, to rounding.
    for (r, (prompt, seed, size)) in answers.iter().zip(&asks) {
        let alone = w.post("/generate", &body(prompt, *seed, size));
        assert_eq!(alone.status, 200, "{}", alone.text());
        let worst = largest_pixel_difference(&r.body, &alone.body);
        assert!(worst <= 1, "{prompt} seed {seed}: batched and alone differ by {worst}");
    }
    assert_eq!(batches(&w), (7.0, 9.0), "four batches of one");
    assert_ne!(answers[0].body, answers[1].body, "batch-mates keep their own prompt and seed");

    // A request of more images than a batch holds runs in batches of at most --max-batch.
    let r = w.post(
        "/v1/images/generations",
        &json!({"prompt": "six", "n": 6, "size": "64x64", "steps": 1, "seed": 20, "response_format": "b64_json"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 6);
    assert_eq!(batches(&w), (9.0, 15.0), "six images in a batch of four and one of two");

    // An edit runs alone, one image a batch.
    let rgb = (0..64 * 64 * 3).map(|i| (i % 199) as u8).collect();
    let init = OutputFormat::Png.encode(&Image { width: 64, height: 64, rgb });
    let init = base64::engine::general_purpose::STANDARD.encode(init);
    let r = w.post("/generate", &json!({"prompt": "edit", "steps": 2, "strength": 0.5, "init_image": init, "seed": 3}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(batches(&w), (10.0, 16.0), "the edit alone");
}

#[test]
fn at_max_batch_1_every_request_runs_alone() {
    let model = tiny_model();
    let w = worker(model.path()).flag("max-batch", "1").flag("max-steps", "1000").flag("queue-capacity", "4").start();
    let slow = json!({"prompt": "a slow one", "steps": 800, "size": "64x64", "seed": 1}).to_string();
    let slow = http::send_json(w.addr, "/generate", &slow).unwrap();
    eventually(LONG, "the slow request to run", || (w.metric("edge_inference_in_flight") == Some(1.0)).then_some(()));
    let waiting: Vec<_> = (0..2)
        .map(|i| http::send_json(w.addr, "/generate", &body("same shape", 30 + i, "64x64").to_string()).unwrap())
        .collect();
    eventually(LONG, "two queued", || (w.metric("edge_inference_queue_depth") == Some(2.0)).then_some(()));
    drop(slow);
    for c in waiting {
        let r = http::receive(c).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(batches(&w), (3.0, 3.0), "the slow one and the two, each alone");
}
