use super::*;

fn valid() -> serde_json::Value {
    serde_json::json!({
        "worker_id": "sd-nvidia-7c9f-abcde",
        "pod": "sd-nvidia-7c9f-abcde",
        "namespace": "inference",
        "deployment": "sd-nvidia",
        "accelerator": "nvidia",
        "queue_depth": 3,
        "in_flight": 1,
        "capacity": 8,
        "latency_p50_seconds": 0.8,
        "latency_p99_seconds": 1.9,
        "labels": {"app.kubernetes.io/name": "edge-diffusion", "tier": "gold", "canary": ""},
        "endpoint": "http://10.0.3.7:30080"
    })
}

fn parse(v: &serde_json::Value) -> Result<WorkerReport, ReportError> {
    WorkerReport::from_json(v.to_string().as_bytes())
}

#[test]
fn accepts_a_full_report_and_round_trips() {
    let r = parse(&valid()).unwrap();
    assert_eq!(r.accelerator, AcceleratorType::Nvidia);
    assert_eq!((r.queue_depth, r.in_flight, r.capacity), (3, 1, 8));
    assert_eq!(r.labels.get("tier").map(String::as_str), Some("gold"));
    assert_eq!(r.labels.len(), 3);
    let again = WorkerReport::from_json(&serde_json::to_vec(&r).unwrap()).unwrap();
    assert_eq!(again, r);
}

#[test]
fn optional_fields_may_be_left_out() {
    let mut v = valid();
    for k in ["pod", "namespace", "latency_p50_seconds", "latency_p99_seconds", "labels", "endpoint"] {
        v.as_object_mut().unwrap().remove(k);
    }
    let r = parse(&v).unwrap();
    assert_eq!(r.pod, "");
    assert_eq!(r.latency_p99_seconds, None);
    assert!(r.labels.is_empty());
    assert_eq!(r.endpoint, None);
    // Without labels or endpoint the report serialises as before: older agents accept it.
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains("labels") && !json.contains("endpoint"), "{json}");
}

#[test]
fn endpoints_are_http_urls_with_host_and_port() {
    for ok in [
        "http://10.0.3.7:30080",
        "https://sd.example.com:443",
        "http://[fd00::7]:30080",
        "http://node-a.internal:30080/v1",
    ] {
        assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
    }
    let cases: &[(&str, &str)] = &[
        ("10.0.3.7:30080", "not an http"),
        ("ftp://10.0.3.7:21", "not an http"),
        ("http://10.0.3.7", "no port"),
        ("http://10.0.3.7:", "no port"),
        ("http://10.0.3.7:0", "not a number"),
        ("http://10.0.3.7:70000", "not a number"),
        ("http://10.0.3.7:+80", "not a number"),
        ("http://:30080", "no valid host"),
        ("http://fd00::7:30080", "no valid host"),
        ("http://[fd00::zz]:30080", "IPv6"),
        ("http://user:pw@10.0.3.7:30080", "user information"),
        ("http://10.0.3.7:30080/?a=b", "in its path"),
        ("http://10.0.3.7:30080/a b", "in its path"),
    ];
    for (url, needle) in cases {
        let err = check_endpoint(url).unwrap_err();
        assert!(err.contains(needle) && err.contains("expected an http"), "{url}: {err}");
    }
    let mut v = valid();
    v["endpoint"] = serde_json::json!("10.0.3.7:30080");
    assert_eq!(parse(&v).unwrap_err().field, "endpoint");
    v["endpoint"] = serde_json::json!(30080);
    assert_eq!(parse(&v).unwrap_err().field, "endpoint");
}

#[test]
fn each_bad_label_is_named_by_its_key() {
    let cases: &[(serde_json::Value, &str, &str)] = &[
        (serde_json::json!({"tier": "a b"}), "labels.tier", "not a label value"),
        (serde_json::json!({"tier": "x".repeat(64)}), "labels.tier", "at most 63"),
        (serde_json::json!({"-tier": "a"}), "labels.-tier", "not a label key"),
        (serde_json::json!({"Edge.IO/tier": "a"}), "labels.Edge.IO/tier", "DNS subdomain"),
        (serde_json::json!({"tier": 3}), "labels.tier", "expected a string"),
        (serde_json::json!(["tier=a"]), "labels", "expected an object"),
    ];
    for (labels, field, needle) in cases {
        let mut v = valid();
        v["labels"] = labels.clone();
        let err = parse(&v).unwrap_err();
        assert_eq!(err.field, *field, "{err}");
        assert!(err.to_string().contains(needle), "{field}: {err}");
    }
    let mut v = valid();
    v["labels"] = (0..=MAX_LABELS).map(|i| (format!("k{i}"), serde_json::json!("v"))).collect();
    let err = parse(&v).unwrap_err();
    assert_eq!(err.field, "labels");
    assert!(err.reason.contains("at most 16"), "{err}");
    // validate() checks a report built in code the same way.
    let mut r = parse(&valid()).unwrap();
    r.labels.insert("bad key".into(), "v".into());
    assert_eq!(r.validate().unwrap_err().field, "labels.bad key");
}

#[test]
fn each_bad_field_is_named() {
    let cases: &[(&str, serde_json::Value, &str)] = &[
        ("accelerator", serde_json::json!("tpu"), "nvidia, neuron, cpu"),
        ("queue_depth", serde_json::json!(-1), "integer"),
        ("capacity", serde_json::json!(MAX_COUNT + 1), "maximum"),
        ("deployment", serde_json::json!(""), "must not be empty"),
        ("worker_id", serde_json::json!("a b"), "not allowed"),
        ("latency_p99_seconds", serde_json::json!(-0.5), "finite number"),
    ];
    for (field, value, needle) in cases {
        let mut v = valid();
        v[*field] = value.clone();
        let err = parse(&v).unwrap_err();
        assert_eq!(err.field, *field, "{err}");
        assert!(err.to_string().contains(needle), "{field}: {err}");
    }
}

#[test]
fn missing_and_unknown_fields_are_named() {
    let mut v = valid();
    v.as_object_mut().unwrap().remove("deployment");
    assert_eq!(parse(&v).unwrap_err().field, "deployment");

    let mut v = valid();
    v["queue"] = serde_json::json!(1);
    assert_eq!(parse(&v).unwrap_err().field, "queue");
}

#[test]
fn oversized_and_garbage_bodies_are_refused() {
    let big = vec![b' '; MAX_REPORT_BYTES + 1];
    assert_eq!(WorkerReport::from_json(&big).unwrap_err().field, "body");
    assert_eq!(WorkerReport::from_json(b"{not json").unwrap_err().field, "body");
}
