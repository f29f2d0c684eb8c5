//! Grafana dashboards: their PromQL queries and template variables, with the
//! variables substituted as Grafana would.

use std::collections::BTreeMap;

use serde_json::Value;

/// One query of one panel.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    /// The panel's title.
    pub panel: String,
    /// The PromQL expression, variables not yet substituted.
    pub expr: String,
}

/// Every `targets[].expr` of every panel, rows' nested panels included.
pub fn panel_queries(dashboard: &Value) -> Vec<PanelQuery> {
    fn walk(panels: &Value, out: &mut Vec<PanelQuery>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push(PanelQuery { panel: p["title"].as_str().unwrap_or("").to_owned(), expr: expr.to_owned() });
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The `query`-type template variables: name → query (e.g.
/// `label_values(edge_node_info, zone)`).
pub fn variable_queries(dashboard: &Value) -> BTreeMap<String, String> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = v["query"]["query"].as_str().or(v["query"].as_str()).unwrap_or("");
            (v["name"].as_str().unwrap_or("").to_owned(), q.to_owned())
        })
        .collect()
}

/// Replaces `$name` and `${name}` with the given values; panics if a
/// dashboard variable is left (Prometheus would reject `$x`; `$1` in
/// label_replace is not a variable and stays).
pub fn substitute(expr: &str, values: &BTreeMap<&str, &str>) -> String {
    let mut out = expr.to_owned();
    // Longest names first so `$gpu` cannot eat part of `$gpus`.
    let mut names: Vec<&&str> = values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out.replace(&format!("${{{name}}}"), values[*name]).replace(&format!("${name}"), values[*name]);
    }
    let left = out
        .match_indices('$')
        .any(|(i, _)| out[i + 1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '{'));
    assert!(!left, "unsubstituted variable in {out}");
    out
}

/// `label_values(selector, label)` → (label, selector); `label_values(label)`
/// → (label, None).
pub fn parse_label_values(query: &str) -> Option<(String, Option<String>)> {
    let inner = query.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    match inner.rsplit_once(',') {
        Some((selector, label)) => Some((label.trim().to_owned(), Some(selector.trim().to_owned()))),
        None => Some((inner.trim().to_owned(), None)),
    }
}

/// Metric-like identifiers in an expression that start with one of `prefixes`.
pub fn metric_names<'a>(expr: &'a str, prefixes: &[&str]) -> Vec<&'a str> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in expr.char_indices().chain(std::iter::once((expr.len(), ' '))) {
        match (start, is_ident(c)) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                let word = &expr[s..i];
                let quoted = expr[..s].ends_with('"');
                if !quoted && prefixes.iter().any(|p| word.starts_with(p)) {
                    out.push(word);
                }
                start = None;
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_both_spellings_and_keeps_regex_groups() {
        let values = BTreeMap::from([("zone", "a|b"), ("gpu", ".*")]);
        assert_eq!(
            substitute(r#"label_replace(m{zone=~"$zone",gpu=~"${gpu}"}, "d", "$1", "h", "x-(.*)")"#, &values),
            r#"label_replace(m{zone=~"a|b",gpu=~".*"}, "d", "$1", "h", "x-(.*)")"#
        );
    }

    #[test]
    #[should_panic(expected = "unsubstituted variable")]
    fn a_left_variable_is_an_error() {
        substitute("m{x=~\"$missing\"}", &BTreeMap::new());
    }

    #[test]
    fn finds_metric_names_not_labels_or_strings() {
        let expr = r#"sum by (zone) (edge_workers{a="edge_x"} * on (instance) group_left (zone) edge_node_info)"#;
        assert_eq!(metric_names(expr, &["edge_"]), ["edge_workers", "edge_node_info"]);
        assert_eq!(
            parse_label_values("label_values(edge_node_info, zone)"),
            Some(("zone".into(), Some("edge_node_info".into())))
        );
    }
}
