//! Property tests of the agent's parser of neuron-monitor's output (a child
//! process's stdout, one JSON report per line), seeded from the reports in
//! `testdata/neuron-monitor/*.jsonl` and mutated byte by byte: it never
//! panics, whatever the line. Bounded here (`PROPTEST_CASES`, 256 by
//! default); `scripts/fuzz` runs it long. (Worker reports, the agent's other
//! untrusted input, are fuzzed in telemetry/tests/fuzz.rs.)

use std::path::Path;

use edge_agent::collector::neuron::report::parse;
use edge_testkit::fuzz::mutate;
use proptest::prelude::*;

fn seeds() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/neuron-monitor");
    let mut lines = Vec::new();
    for name in ["inf2.xlarge.jsonl", "inf2.48xlarge.jsonl", "faults.jsonl"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        lines.extend(text.lines().filter(|l| !l.trim().is_empty()).take(3).map(str::to_owned));
    }
    assert!(lines.len() >= 6, "the corpus is testdata/neuron-monitor/*.jsonl");
    lines
}

proptest! {
    #[test]
    fn mutated_reports_never_panic(
        seed in 0usize..9,
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..16),
    ) {
        let seeds = seeds();
        let line = mutate(seeds[seed % seeds.len()].as_bytes(), &edits);
        if let Err(e) = parse(&String::from_utf8_lossy(&line)) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn any_line_at_all_never_panics(line in ".{0,400}") {
        let _ = parse(&line);
    }
}

#[test]
fn the_first_reports_of_the_fixtures_parse() {
    let seeds = seeds();
    assert!(parse(&seeds[0]).is_ok(), "{}", seeds[0]);
}
