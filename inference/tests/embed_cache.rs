//! The text-embedding cache: a repeated (prompt, negative) pair hits it and gives the
//! same bytes as a fresh encoding.

use std::ops::ControlFlow;

use edge_inference::model::pipeline::Params;
use edge_inference::model::{LoadOptions, Model};

fn params(prompt: &str, seed: u64) -> Params {
    Params {
        prompt: prompt.into(),
        negative_prompt: "blurry".into(),
        width: 64,
        height: 64,
        steps: 2,
        guidance_scale: 7.5,
        seed,
    }
}

#[test]
fn a_cached_embedding_gives_the_same_bytes_as_an_encoded_one() {
    let dir = tempfile::tempdir().unwrap();
    edge_inference::tiny::write(dir.path()).unwrap();
    let model = Model::load(dir.path(), &LoadOptions::default()).unwrap();
    let run = |m: &Model, p: &Params| m.generate(p, |_| ControlFlow::Continue(())).unwrap().to_png();

    let encoded = run(&model, &params("a rusty robot", 7));
    assert_eq!(model.embed_cache.stats(), (0, 1));
    let cached = run(&model, &params("a rusty robot", 7));
    assert_eq!(model.embed_cache.stats(), (1, 1));
    assert_eq!(encoded, cached, "the cache changed the bytes");

    // Another prompt is a miss; the first is still cached.
    let other = run(&model, &params("a candle", 7));
    assert_ne!(other, encoded);
    run(&model, &params("a rusty robot", 8));
    assert_eq!(model.embed_cache.stats(), (2, 2));
}
