//! Property tests of the worker's parser of untrusted input, a generation
//! request's JSON body, seeded from `testdata/requests` and mutated byte by
//! byte: it never panics, and every refusal names the body, a field the
//! request has, or the required `prompt`. What it accepts stays inside the
//! limits. Bounded here (`PROPTEST_CASES`, 256 by default); `scripts/fuzz`
//! runs it long.

use std::path::Path;

use edge_inference::validation::{Endpoint, Limits, parse};
use edge_testkit::fuzz::{corpus, mutate};
use proptest::prelude::*;

fn seeds() -> Vec<Vec<u8>> {
    let seeds = corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/requests"));
    assert!(seeds.len() >= 3, "the corpus is testdata/requests/*.json");
    seeds
}

proptest! {
    #[test]
    fn mutated_requests_are_parsed_within_limits_or_refused_by_name(
        seed in 0usize..3,
        openai in any::<bool>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..10),
    ) {
        let seeds = seeds();
        let body = mutate(&seeds[seed % seeds.len()], &edits);
        let endpoint = if openai { Endpoint::OpenAi } else { Endpoint::Png };
        let limits = Limits::default();
        match parse(&body, endpoint, &limits, || 42) {
            Ok(job) => {
                prop_assert!(job.n >= 1 && job.n <= limits.max_n);
                prop_assert!(job.params.steps >= 1 && job.params.steps <= limits.max_steps);
                prop_assert!((limits.min_side..=limits.max_side).contains(&job.params.width));
                prop_assert!((limits.min_side..=limits.max_side).contains(&job.params.height));
            }
            Err(e) => {
                let keys: Vec<String> = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
                    .unwrap_or_default();
                prop_assert!(
                    e.field == "body" || e.field == "prompt" || keys.contains(&e.field),
                    "{e:?} for {}", String::from_utf8_lossy(&body)
                );
                prop_assert!(!e.message.is_empty());
            }
        }
    }
}

#[test]
fn every_seed_is_a_valid_request() {
    for seed in seeds() {
        parse(&seed, Endpoint::OpenAi, &Limits::default(), || 1)
            .unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(&seed)));
    }
}
