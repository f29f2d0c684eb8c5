//! Kubernetes label syntax, shared by the worker report (`labels`) and the
//! scaler's `labelSelector`, so a label a worker may report is exactly a label
//! a trigger may select on.

/// Most labels one worker report may carry. A pod's selector labels plus a few
/// of its own fit well below it; the bound keeps a report (and the scaler's
/// per-label-set state) small.
pub const MAX_LABELS: usize = 16;

/// Longest label name (the part after an optional `prefix/`) and value.
pub const MAX_NAME_LEN: usize = 63;

/// Longest label key prefix (a DNS subdomain).
pub const MAX_PREFIX_LEN: usize = 253;

/// What a label key may be, for error messages.
pub const KEY_SYNTAX: &str = "an optional DNS subdomain prefix and '/', then a name of at most 63 ASCII letters, \
     digits, '-', '_', '.' starting and ending with a letter or digit (e.g. app.kubernetes.io/name)";

/// What a label value may be, for error messages.
pub const VALUE_SYNTAX: &str =
    "empty, or at most 63 ASCII letters, digits, '-', '_', '.' starting and ending with a letter or digit";

/// Checks a label key (`[prefix/]name`); the error says what is wrong.
pub fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns_subdomain(prefix)
    {
        return Err(format!("key {key:?}: prefix {prefix:?} is not a DNS subdomain; allowed: {KEY_SYNTAX}"));
    }
    if name.is_empty() || name.len() > MAX_NAME_LEN || !is_name(name) {
        return Err(format!("key {key:?} is not a label key; allowed: {KEY_SYNTAX}"));
    }
    Ok(())
}

/// Checks a label value; the error says what is wrong.
pub fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() || (value.len() <= MAX_NAME_LEN && is_name(value)) {
        Ok(())
    } else {
        Err(format!("value {value:?} is not a label value; allowed: {VALUE_SYNTAX}"))
    }
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`
fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Lowercase RFC 1123 labels joined by dots, at most 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_PREFIX_LEN
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_kubernetes() {
        for ok in ["app", "app.kubernetes.io/name", "edge-diffusion.io/workload", "A_b.c-9", "x"] {
            assert_eq!(check_key(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in ["", "-app", "app-", "a b", "Edge.IO/app", "/app", "a/", "a/b/c", "ns/", long.as_str()] {
            let err = check_key(bad).unwrap_err();
            assert!(err.contains("allowed:"), "{bad}: {err}");
        }
    }

    #[test]
    fn values_follow_kubernetes() {
        for ok in ["", "sd", "sd-nvidia.v1_2", "0"] {
            assert_eq!(check_value(ok), Ok(()), "{ok}");
        }
        let long = "v".repeat(64);
        for bad in ["-x", "x-", "a=b", "a,b", "a/b", "ä", long.as_str()] {
            let err = check_value(bad).unwrap_err();
            assert!(err.contains("allowed:"), "{bad}: {err}");
        }
    }
}
