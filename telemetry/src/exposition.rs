//! The two text formats a `/metrics` can serve, and which one a scrape gets.
//!
//! `prometheus-client` writes OpenMetrics. A scraper that does not ask for
//! it (curl, promtool, a Prometheus configured for the classic format)
//! must get text format 0.0.4 under that content type: Prometheus picks its
//! parser by the header, and an OpenMetrics body read as 0.0.4 leaves every
//! counter's `_total` series without its type. Every `/metrics` of the
//! project (agent, scaler, worker) answers through [`negotiate`].

/// OpenMetrics content type.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Classic Prometheus text format content type.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a scrape's `Accept` header asks for OpenMetrics (Prometheus
/// lists it first by default).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|v| v.contains("application/openmetrics-text"))
}

/// The content type and body to answer a scrape with, from the OpenMetrics
/// text `prometheus-client` rendered.
pub fn negotiate(accept: Option<&str>, openmetrics: String) -> (&'static str, String) {
    if wants_openmetrics(accept) {
        (OPENMETRICS_CONTENT_TYPE, openmetrics)
    } else {
        (TEXT_CONTENT_TYPE, to_text_format(&openmetrics))
    }
}

/// Converts `prometheus-client`'s OpenMetrics output to text format 0.0.4:
/// counters' `# HELP`/`# TYPE` lines take the `_total` sample name, `unknown`
/// becomes `untyped`, and `# UNIT` and `# EOF` go.
pub fn to_text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            let tail = if tail == "unknown" { "untyped" } else { tail };
            let name = if counters.contains(name) { format!("{name}_total") } else { name.to_owned() };
            Some(format!("{prefix}{name} {tail}"))
        });
        match rewritten {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OM: &str = "# HELP reqs Requests.\n# TYPE reqs counter\nreqs_total{code=\"200\"} 3\n\
                      # HELP temp Temperature.\n# TYPE temp gauge\n# UNIT temp celsius\ntemp 21.5\n\
                      # TYPE odd unknown\nodd 1\n# EOF\n";

    #[test]
    fn text_format_names_counters_by_their_samples_and_drops_openmetrics_only_lines() {
        assert_eq!(
            to_text_format(OM),
            "# HELP reqs_total Requests.\n# TYPE reqs_total counter\nreqs_total{code=\"200\"} 3\n\
             # HELP temp Temperature.\n# TYPE temp gauge\ntemp 21.5\n# TYPE odd untyped\nodd 1\n"
        );
    }

    #[test]
    fn a_scrape_gets_openmetrics_only_when_it_asks() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prometheus), OM.to_owned()), (OPENMETRICS_CONTENT_TYPE, OM.to_owned()));
        for accept in [None, Some("*/*"), Some("text/plain")] {
            let (content_type, body) = negotiate(accept, OM.to_owned());
            assert_eq!(content_type, TEXT_CONTENT_TYPE, "{accept:?}");
            assert!(!body.contains("# EOF"), "{accept:?}");
        }
    }
}
