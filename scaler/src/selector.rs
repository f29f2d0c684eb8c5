//! A trigger's `labelSelector`: Kubernetes' equality-based label selector
//! syntax, matched against the labels workers report.
//!
//! Parsed on every KEDA call (the metadata comes with each), so it is a plain
//! split, no regex. The parsed form is normalised (sorted, duplicates
//! dropped): two spellings of the same selector select the same workers and
//! get the same metric name.

use std::collections::BTreeMap;
use std::fmt;

use edge_telemetry::labels;

/// Most requirements one selector may hold (a report carries at most 16 labels).
pub const MAX_REQUIREMENTS: usize = 16;

/// Longest selector accepted, in bytes.
pub const MAX_LEN: usize = 4096;

/// The accepted syntax, for error messages.
pub const SYNTAX: &str = "comma-separated requirements key=value (or key==value), key!=value, key (label present), \
     !key (label absent), e.g. app=sd,tier!=batch";

/// One requirement on a worker's labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Requirement {
    /// `key=value`: the label is present with this value.
    Equals(String, String),
    /// `key!=value`: the label is absent or has another value (as in Kubernetes).
    NotEquals(String, String),
    /// `key`: the label is present, any value.
    Exists(String),
    /// `!key`: the label is absent.
    NotExists(String),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::Equals(k, v) => labels.get(k) == Some(v),
            Self::NotEquals(k, v) => labels.get(k) != Some(v),
            Self::Exists(k) => labels.contains_key(k),
            Self::NotExists(k) => !labels.contains_key(k),
        }
    }

    fn parse(item: &str) -> Result<Self, String> {
        let pair = |sep: &str| -> Option<Result<(String, String), String>> {
            let (k, v) = item.split_once(sep)?;
            let (k, v) = (k.trim(), v.trim());
            Some(labels::check_key(k).and_then(|()| labels::check_value(v)).map(|()| (k.to_owned(), v.to_owned())))
        };
        if let Some(key) = item.strip_prefix('!') {
            let key = key.trim();
            labels::check_key(key)?;
            return Ok(Self::NotExists(key.to_owned()));
        }
        // `!=` and `==` before `=`: each contains it.
        if let Some(kv) = pair("!=") {
            return kv.map(|(k, v)| Self::NotEquals(k, v));
        }
        if let Some(kv) = pair("==").or_else(|| pair("=")) {
            return kv.map(|(k, v)| Self::Equals(k, v));
        }
        if item.contains(['(', ')', ' ']) {
            return Err(format!("{item:?}: set-based requirements (in, notin) are not supported"));
        }
        labels::check_key(item)?;
        Ok(Self::Exists(item.to_owned()))
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Equals(k, v) => write!(f, "{k}={v}"),
            Self::NotEquals(k, v) => write!(f, "{k}!={v}"),
            Self::Exists(k) => write!(f, "{k}"),
            Self::NotExists(k) => write!(f, "!{k}"),
        }
    }
}

/// A checked, normalised label selector; every requirement must hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses `app=sd,tier!=batch,gpu,!spot`. The error says what is wrong
    /// and what is allowed.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err(format!("empty; allowed: {SYNTAX}"));
        }
        if s.len() > MAX_LEN {
            return Err(format!("longer than {MAX_LEN} bytes"));
        }
        let mut requirements = Vec::new();
        for item in s.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(format!("{s:?} has an empty requirement; allowed: {SYNTAX}"));
            }
            requirements.push(Requirement::parse(item).map_err(|e| format!("{e}; allowed: {SYNTAX}"))?);
        }
        requirements.sort();
        requirements.dedup();
        if requirements.len() > MAX_REQUIREMENTS {
            return Err(format!("{} requirements; at most {MAX_REQUIREMENTS} allowed", requirements.len()));
        }
        Ok(Self { requirements })
    }

    /// Whether a worker with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Ten hex digits of a 64-bit FNV-1a hash of the normalised selector: a
    /// metric name part that is stable across replicas, restarts and
    /// versions (std's hasher is seeded per process), and made only of
    /// characters KEDA and the HPA accept.
    pub fn fingerprint(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.to_string().bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{:010x}", hash >> 24)
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_requirement_kind_matches_as_in_kubernetes() {
        let gold = labels(&[("app", "sd"), ("tier", "gold"), ("gpu", "")]);
        let batch = labels(&[("app", "sd"), ("tier", "batch")]);
        let bare = labels(&[("app", "sd")]);
        let cases: &[(&str, [bool; 3])] = &[
            ("app=sd", [true, true, true]),
            ("app==sd", [true, true, true]),
            ("tier=gold", [true, false, false]),
            // `!=` also selects workers without the label, as Kubernetes does.
            ("tier!=batch", [true, false, true]),
            ("app=sd,tier!=batch", [true, false, true]),
            ("gpu", [true, false, false]),
            ("!tier", [false, false, true]),
            ("app = sd , !gpu", [false, true, true]),
            ("app.kubernetes.io/name=sd", [false, false, false]),
        ];
        for (s, expect) in cases {
            let sel = LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            let got = [sel.matches(&gold), sel.matches(&batch), sel.matches(&bare)];
            assert_eq!(got, *expect, "{s}");
        }
    }

    #[test]
    fn spellings_of_one_selector_normalise_to_one_form_and_fingerprint() {
        let a = LabelSelector::parse("tier!=batch,app=sd").unwrap();
        let b = LabelSelector::parse(" app==sd , tier!=batch,app=sd").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "app=sd,tier!=batch");
        assert_eq!(a.fingerprint(), b.fingerprint());
        let fp = a.fingerprint();
        assert_eq!(fp.len(), 10);
        assert!(fp.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)), "{fp}");
        // Stable across processes and versions: the metric name KEDA registered must not move.
        assert_eq!(fp, LabelSelector::parse("app=sd,tier!=batch").unwrap().fingerprint());
        for other in ["app=sd", "app=sd,tier=batch", "app!=sd,tier!=batch", "app=sd,!tier"] {
            assert_ne!(LabelSelector::parse(other).unwrap().fingerprint(), fp, "{other}");
        }
    }

    #[test]
    fn bad_selectors_say_what_is_allowed() {
        let too_many = (0..=MAX_REQUIREMENTS).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",");
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("app=sd,,tier=gold", "empty requirement"),
            ("app=s d", "not a label value"),
            ("-app=sd", "not a label key"),
            ("tier in (gold,silver)", "not supported"),
            ("!", "not a label key"),
            ("app=sd=x", "not a label value"),
            (&too_many, "at most 16"),
        ];
        for (s, needle) in cases {
            let err = LabelSelector::parse(s).unwrap_err();
            assert!(err.contains(needle), "{s:?}: {err}");
        }
        assert!(LabelSelector::parse("a b").unwrap_err().contains("key=value"), "lists the syntax");
    }
}
