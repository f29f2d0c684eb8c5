//! The endpoint inventory (`GET /v1/endpoints`): the workers that advertise
//! an endpoint, on agents heard from within `--stale-after`, least loaded
//! first, so a device picks the closest (`zone=`), least-loaded one.
//!
//! Types and parameter names are the shared contract in
//! `edge_telemetry::inventory`; this module checks a request's parameters and
//! orders the answer.

use std::cmp::Ordering;
use std::collections::HashMap;

use edge_telemetry::AcceleratorType;
use edge_telemetry::inventory::{
    DEFAULT_LIMIT, Endpoint, InventoryError, MAX_DEVICE_LEN, MAX_LIMIT, PARAM_ACCELERATOR, PARAM_DEVICE, PARAM_LIMIT,
    PARAM_ZONE, PARAMS,
};

/// A checked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Only this accelerator type.
    pub accelerator: Option<AcceleratorType>,
    /// Only nodes in this zone.
    pub zone: Option<String>,
    /// At most this many endpoints.
    pub limit: usize,
    /// The device's own id, if it sent one (demand counts distinct devices).
    pub device: Option<String>,
}

impl Default for Query {
    fn default() -> Self {
        Self { accelerator: None, zone: None, limit: DEFAULT_LIMIT, device: None }
    }
}

/// Checks a device id (the `device` parameter, or a requester a peer sends).
pub fn check_device(v: &str) -> Result<String, InventoryError> {
    let ok = !v.is_empty()
        && v.len() <= MAX_DEVICE_LEN
        && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    if ok {
        Ok(v.to_owned())
    } else {
        Err(refuse(
            PARAM_DEVICE,
            format!("not a device id: at most {MAX_DEVICE_LEN} of letters, digits, '.', '_', ':', '-'"),
        ))
    }
}

fn refuse(param: &str, error: impl Into<String>) -> InventoryError {
    InventoryError { error: error.into(), param: param.to_owned() }
}

impl Query {
    /// Checks the query parameters; an unknown or malformed one is named with
    /// what is allowed. Empty values count as absent.
    pub fn parse(params: &HashMap<String, String>) -> Result<Self, InventoryError> {
        if let Some(unknown) = params.keys().find(|k| !PARAMS.contains(&k.as_str())) {
            return Err(refuse(unknown, format!("unknown parameter; allowed: {}", PARAMS.join(", "))));
        }
        let get = |k: &str| params.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let accelerator = get(PARAM_ACCELERATOR)
            .map(|v| {
                v.parse::<AcceleratorType>().map_err(|_| {
                    refuse(
                        PARAM_ACCELERATOR,
                        format!("unknown accelerator {v:?}; allowed: {}", AcceleratorType::ALLOWED),
                    )
                })
            })
            .transpose()?;
        let limit = match get(PARAM_LIMIT) {
            None => DEFAULT_LIMIT,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(refuse(PARAM_LIMIT, format!("{v:?} is not a number in 1..={MAX_LIMIT}"))),
            },
        };
        let device = get(PARAM_DEVICE).map(check_device).transpose()?;
        let zone = get(PARAM_ZONE)
            .map(|v| {
                if crate::values::is_name(v) {
                    Ok(v.to_owned())
                } else {
                    Err(refuse(PARAM_ZONE, "not a zone name (letters, digits, '-', '.', '_'; at most 253)"))
                }
            })
            .transpose()?;
        Ok(Self { accelerator, zone, limit, device })
    }

    /// Whether an endpoint passes the filters.
    pub fn admits(&self, e: &Endpoint) -> bool {
        self.accelerator.is_none_or(|a| a == e.accelerator) && self.zone.as_deref().is_none_or(|z| z == e.zone)
    }
}

/// Least loaded first; among equals the lower median latency (one that
/// reported none after those that did), then by URL so every scaler replica
/// answers in the same order.
fn order(a: &Endpoint, b: &Endpoint) -> Ordering {
    let latency = |e: &Endpoint| e.latency_p50_seconds.unwrap_or(f64::INFINITY);
    a.load()
        .total_cmp(&b.load())
        .then_with(|| latency(a).total_cmp(&latency(b)))
        .then_with(|| a.url.cmp(&b.url))
        .then_with(|| a.pod.cmp(&b.pod))
}

/// Orders `endpoints` and keeps the first `limit`; only those are sorted in
/// full, so a large cluster costs O(n) plus the page.
pub fn rank(endpoints: &mut Vec<Endpoint>, limit: usize) {
    rank_by(endpoints, limit, order);
}

fn rank_by(endpoints: &mut Vec<Endpoint>, limit: usize, order: impl Fn(&Endpoint, &Endpoint) -> Ordering) {
    if endpoints.len() > limit && limit > 0 {
        endpoints.select_nth_unstable_by(limit - 1, &order);
    }
    endpoints.truncate(limit);
    endpoints.sort_unstable_by(&order);
}

/// For a pull whose class has no ready endpoint: the best others, the
/// accelerator asked for (in other zones) first, then the zone asked for (on
/// other accelerators), then the rest, each tier least loaded first.
pub fn rank_fallback(endpoints: &mut Vec<Endpoint>, query: &Query) {
    let tier = |e: &Endpoint| {
        let same_accelerator = query.accelerator.is_none_or(|a| a == e.accelerator);
        let same_zone = query.zone.as_deref().is_none_or(|z| z == e.zone);
        (!same_accelerator, !same_zone)
    };
    rank_by(endpoints, query.limit, |a, b| tier(a).cmp(&tier(b)).then_with(|| order(a, b)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str, accel: AcceleratorType, zone: &str, load: (u32, u32, u32), p50: Option<f64>) -> Endpoint {
        Endpoint {
            url: url.into(),
            accelerator: accel,
            zone: zone.into(),
            node: "n".into(),
            namespace: "ns".into(),
            deployment: "sd".into(),
            pod: url.into(),
            queue_depth: load.0,
            in_flight: load.1,
            capacity: load.2,
            latency_p50_seconds: p50,
            latency_p99_seconds: None,
            address: Default::default(),
            reachability: Default::default(),
        }
    }

    fn urls(v: &[Endpoint]) -> Vec<&str> {
        v.iter().map(|e| e.url.as_str()).collect()
    }

    fn fleet() -> Vec<Endpoint> {
        use AcceleratorType::*;
        vec![
            endpoint("full", Cpu, "a", (4, 4, 8), Some(0.1)),
            endpoint("idle-slow", Nvidia, "a", (0, 0, 8), Some(2.0)),
            endpoint("no-capacity", Cpu, "b", (0, 0, 0), Some(0.1)),
            endpoint("quarter", Nvidia, "b", (1, 1, 8), Some(0.5)),
            endpoint("idle-fast", Cpu, "b", (0, 0, 4), Some(0.3)),
            endpoint("idle-unmeasured", Neuron, "a", (0, 0, 4), None),
            endpoint("quarter-too", Cpu, "a", (0, 1, 4), Some(0.5)),
        ]
    }

    #[test]
    fn least_loaded_first_then_fastest() {
        let mut v = fleet();
        rank(&mut v, 100);
        assert_eq!(
            urls(&v),
            ["idle-fast", "idle-slow", "idle-unmeasured", "quarter", "quarter-too", "full", "no-capacity"]
        );
    }

    #[test]
    fn a_limit_keeps_the_best_page_in_order() {
        for limit in 1..=7 {
            let mut all = fleet();
            rank(&mut all, 100);
            let mut page = fleet();
            rank(&mut page, limit);
            assert_eq!(urls(&page), urls(&all[..limit]), "limit {limit}");
        }
    }

    #[test]
    fn a_fallback_lists_the_accelerator_elsewhere_then_the_zone_then_the_rest() {
        let q = Query::parse(&params(&[("accelerator", "neuron"), ("zone", "b")])).unwrap();
        let mut v = fleet();
        rank_fallback(&mut v, &q);
        assert_eq!(
            urls(&v),
            ["idle-unmeasured", "idle-fast", "quarter", "no-capacity", "idle-slow", "quarter-too", "full"]
        );
        let mut page = fleet();
        rank_fallback(&mut page, &Query { limit: 2, ..q });
        assert_eq!(urls(&page), ["idle-unmeasured", "idle-fast"]);
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn filters_by_accelerator_and_zone() {
        let q = Query::parse(&params(&[("accelerator", "cpu"), ("zone", "b")])).unwrap();
        let mut v: Vec<Endpoint> = fleet().into_iter().filter(|e| q.admits(e)).collect();
        rank(&mut v, q.limit);
        assert_eq!(urls(&v), ["idle-fast", "no-capacity"]);
        let q = Query::parse(&params(&[("accelerator", "nvidia")])).unwrap();
        assert_eq!(fleet().iter().filter(|e| q.admits(e)).count(), 2);
        let q = Query::parse(&params(&[("zone", ""), ("limit", "3")])).unwrap();
        assert_eq!(q, Query { accelerator: None, zone: None, limit: 3, device: None }, "empty values are absent");
        let q = Query::parse(&params(&[("device", "phone-7:ab.c_d")])).unwrap();
        assert_eq!(q.device.as_deref(), Some("phone-7:ab.c_d"));
        assert_eq!(Query::parse(&HashMap::new()).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(Query::parse(&params(&[("limit", "1000")])).unwrap().limit, MAX_LIMIT);
    }

    /// Parameters, the one the error must name, a word the message must contain.
    type Case = (&'static [(&'static str, &'static str)], &'static str, &'static str);

    #[test]
    fn bad_parameters_are_named_with_what_is_allowed() {
        let cases: &[Case] = &[
            (&[("accelerator", "gpu")], "accelerator", "nvidia, neuron, cpu"),
            (&[("limit", "0")], "limit", "1..=1000"),
            (&[("limit", "1001")], "limit", "1..=1000"),
            (&[("limit", "ten")], "limit", "1..=1000"),
            (&[("region", "us-west-2")], "region", "accelerator, zone, limit, device"),
            (&[("device", "a b")], "device", "not a device id"),
            (&[("zone", "us/west")], "zone", "not a zone name"),
        ];
        for (pairs, param, needle) in cases {
            let err = Query::parse(&params(pairs)).unwrap_err();
            assert_eq!(err.param, *param, "{pairs:?}");
            assert!(err.error.contains(needle), "{pairs:?}: {err}");
        }
    }
}
