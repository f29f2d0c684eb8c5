//! Property tests of the scaler's parsers of untrusted input: trigger
//! metadata (any ScaledObject's author), label selectors, the inventory's
//! query (any device) and a peer's sync (anything that reaches the HTTP
//! port). Seeded from `testdata/triggers` (metadata as the chart and the
//! README write it) and mutated; the property is that nothing panics, and
//! every refusal names a key, parameter or field of the input. Bounded here
//! (`PROPTEST_CASES`, 256 by default); `scripts/fuzz` runs them long.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use edge_scaler::agents::AgentTable;
use edge_scaler::demand::Demand;
use edge_scaler::inventory::Query;
use edge_scaler::metrics::ScalerMetrics;
use edge_scaler::peers::{Peers, SyncRequest};
use edge_scaler::selector::LabelSelector;
use edge_scaler::trigger::{KEDA_KEYS, KEYS, Trigger};
use edge_telemetry::inventory::PARAMS;
use proptest::prelude::*;

fn seeds() -> Vec<HashMap<String, String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/triggers");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let seeds: Vec<HashMap<String, String>> = paths
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect();
    assert!(seeds.len() >= 3, "the corpus is testdata/triggers/*.json");
    seeds
}

/// Values that reach the interesting branches: the seeds' own, numbers at
/// the edges, durations, selectors, and anything at all.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            "0",
            "-1",
            "1e309",
            "NaN",
            "inf",
            "0.0000001",
            "4",
            "true",
            "false",
            "TRUE",
            "nvidia",
            "neuron",
            "cpu",
            "tpu",
            "queueDepth",
            "inFlight",
            "backlog",
            "utilization",
            "memoryUtilization",
            "10s",
            "0s",
            "25h",
            "a=b",
            "a in (b,c)",
            "!a",
            "a,b!=c",
            "zone-a",
            "auto",
            "ns",
            "x/y",
        ])
        .prop_map(str::to_owned),
        ".{0,64}",
        "[a-z0-9=!,() .-]{0,40}",
    ]
}

/// A seed with some keys replaced, dropped or added.
fn metadata() -> impl Strategy<Value = HashMap<String, String>> {
    let keys: Vec<String> = KEYS.iter().chain(KEDA_KEYS.iter()).map(|k| (*k).to_owned()).collect();
    let key = prop_oneof![prop::sample::select(keys), "[a-zA-Z]{1,16}"];
    (0usize..3, prop::collection::vec((key, prop::option::of(value())), 0..6)).prop_map(|(seed, edits)| {
        let seeds = seeds();
        let mut m = seeds[seed % seeds.len()].clone();
        for (k, v) in edits {
            match v {
                Some(v) => m.insert(k, v),
                None => m.remove(&k),
            };
        }
        m
    })
}

proptest! {
    #[test]
    fn trigger_metadata_is_parsed_or_refused_by_key(m in metadata()) {
        match Trigger::parse("inference", &m) {
            Ok(t) => {
                // A parsed trigger answers without panicking.
                let _ = t.metric_name();
                let _ = t.is_active(f64::MAX);
            }
            Err(e) => {
                prop_assert!(m.contains_key(&e.key) || KEYS.contains(&e.key.as_str()), "{e:?} for {m:?}");
                prop_assert!(!e.reason.is_empty());
            }
        }
    }

    #[test]
    fn label_selectors_never_panic(s in prop_oneof![".{0,400}", "[a-z0-9=!,() ./-]{0,80}"]) {
        if let Ok(sel) = LabelSelector::parse(&s) {
            // What parses prints back to a selector that parses to the same.
            prop_assert_eq!(LabelSelector::parse(&sel.to_string()), Ok(sel));
        }
    }

    #[test]
    fn inventory_queries_are_parsed_or_refused_by_parameter(
        params in prop::collection::hash_map(
            prop_oneof![prop::sample::select(PARAMS.to_vec()).prop_map(str::to_owned), "[a-z]{1,10}"],
            value(),
            0..5,
        ),
    ) {
        if let Err(e) = Query::parse(&params) {
            prop_assert!(params.contains_key(&e.param), "{e:?} for {params:?}");
        }
    }

    #[test]
    fn a_peers_sync_of_any_shape_is_taken_or_refused(body in sync_body()) {
        let table = AgentTable::with_demand(Duration::from_secs(6), Demand::new(Duration::from_secs(60), 100));
        let peers = Peers::new(std::sync::Arc::clone(table.demand()), std::sync::Arc::new(ScalerMetrics::new()));
        if let Ok(request) = serde_json::from_slice::<SyncRequest>(&body) {
            let _ = peers.receive(&table, request);
            prop_assert!(table.demand().requesters() <= 100 * 12, "bounded per class");
        }
    }
}

/// Sync bodies: well-formed ones with arbitrary records, and byte noise.
fn sync_body() -> impl Strategy<Value = Vec<u8>> {
    let record = (prop::sample::select(vec!["nvidia", "neuron", "cpu", "gpu"]), prop::option::of(value()), value())
        .prop_map(|(a, z, r)| serde_json::json!({"accelerator": a, "zone": z, "requester": r}));
    let listener = (prop::sample::select(vec!["nvidia", "cpu"]), prop::option::of(value()), value(), value())
        .prop_map(|(a, z, n, d)| serde_json::json!({"accelerator": a, "zone": z, "namespace": n, "deployment": d}));
    prop_oneof![
        (any::<u64>(), prop::collection::vec(listener, 0..4), prop::collection::vec(record, 0..20)).prop_map(
            |(origin, listeners, demand)| {
                serde_json::to_vec(&serde_json::json!({"origin": origin, "listeners": listeners, "demand": demand}))
                    .unwrap()
            }
        ),
        prop::collection::vec(any::<u8>(), 0..200),
    ]
}

#[test]
fn every_seed_is_a_valid_trigger() {
    for m in seeds() {
        Trigger::parse("inference", &m).unwrap_or_else(|e| panic!("{e:?}: {m:?}"));
    }
}
