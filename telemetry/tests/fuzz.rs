//! Property tests of the parsers that take untrusted bytes: a worker's report
//! (what any process on the node can send to its agent) and label syntax.
//! Seeded from `testdata/reports` and mutated byte by byte and field by
//! field; the property is that parsing never panics and every refusal names
//! the field at fault. Bounded here (`PROPTEST_CASES`, 256 by default);
//! `scripts/fuzz` runs them long.

use std::path::Path;

use edge_telemetry::WorkerReport;
use edge_telemetry::labels::{check_key, check_value};
use edge_testkit::fuzz::{corpus, mutate};
use proptest::prelude::*;

fn seeds() -> Vec<Vec<u8>> {
    let seeds = corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/reports"));
    assert!(seeds.len() >= 3, "the corpus is testdata/reports/*.json");
    seeds
}

/// What a refusal may name: the document, a field, or one of the labels.
fn names_a_field(field: &str) -> bool {
    field == "body" || WorkerReport::FIELDS.contains(&field) || field.starts_with("labels.")
}

/// JSON values of every type, small.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)),
        ".{0,80}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_./]{1,12}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn byte_mutations_of_a_report_never_panic(
        seed in 0usize..3,
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..12),
    ) {
        let seeds = seeds();
        let body = mutate(&seeds[seed % seeds.len()], &edits);
        // Unknown fields are named by their own (mutated) name.
        if let Err(e) = WorkerReport::from_json(&body) {
            let known = names_a_field(&e.field) || e.reason.starts_with("unknown field");
            prop_assert!(known, "{e:?}");
            prop_assert!(!e.reason.is_empty());
        }
    }

    #[test]
    fn any_value_in_any_field_is_parsed_or_refused_by_name(
        seed in 0usize..3,
        field in prop::sample::select(WorkerReport::FIELDS.to_vec()),
        value in json_value(),
    ) {
        let seeds = seeds();
        let mut doc: serde_json::Value = serde_json::from_slice(&seeds[seed % seeds.len()]).unwrap();
        doc[field] = value;
        let body = serde_json::to_vec(&doc).unwrap();
        match WorkerReport::from_json(&body) {
            // What parses passes its own validation and survives a round trip.
            Ok(report) => {
                prop_assert!(report.validate().is_ok());
                let again = WorkerReport::from_json(&serde_json::to_vec(&report).unwrap());
                prop_assert!(again.is_ok(), "{again:?}");
            }
            Err(e) => prop_assert!(
                e.field == field || (field == "labels" && e.field.starts_with("labels.")) || e.field == "body",
                "{field}: {e:?}"
            ),
        }
    }

    #[test]
    fn label_syntax_checks_never_panic(s in ".{0,300}") {
        let _ = check_key(&s);
        let _ = check_value(&s);
    }
}

#[test]
fn every_seed_is_a_valid_report() {
    for seed in seeds() {
        WorkerReport::from_json(&seed).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&seed)));
    }
}
