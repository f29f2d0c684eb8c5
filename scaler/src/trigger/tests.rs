use super::*;

fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn base() -> Vec<(&'static str, &'static str)> {
    vec![
        ("scalerAddress", "edge-scaler.edge:9500"),
        ("acceleratorType", "nvidia"),
        ("deployment", "sd-nvidia"),
        ("targetValue", "4"),
    ]
}

fn parse_with(extra: &[(&'static str, &'static str)]) -> Result<Trigger, TriggerError> {
    let mut pairs = base();
    for (k, v) in extra {
        pairs.retain(|(bk, _)| bk != k);
        pairs.push((k, v));
    }
    Trigger::parse("inference", &meta(&pairs))
}

#[test]
fn minimal_trigger_has_defaults() {
    let t = parse_with(&[]).unwrap();
    assert_eq!(
        t.key,
        GroupKey {
            accelerator: AcceleratorType::Nvidia,
            namespace: "inference".into(),
            selector: WorkerSelector::Deployment("sd-nvidia".into())
        }
    );
    assert_eq!(
        (t.metric, t.target, t.activation, t.zone.clone(), t.stale_after),
        (MetricKind::QueueDepth, 4.0, 0.0, None, None)
    );
    assert_eq!(t.metric_name(), "edge-nvidia-queuedepth-sd-nvidia");
    assert!(t.is_active(1.0) && !t.is_active(0.0));
}

#[test]
fn demand_and_spill_over_keys() {
    let t = parse_with(&[]).unwrap();
    assert!(t.activate_on_demand && t.spill.is_none());
    let t = parse_with(&[("activateOnDemand", "false"), ("spillFrom", "cpu"), ("spillAbove", "4")]).unwrap();
    assert!(!t.activate_on_demand);
    let spill = t.spill.unwrap();
    assert_eq!(spill.above, 4.0);
    assert_eq!(
        spill.key,
        GroupKey { accelerator: AcceleratorType::Cpu, namespace: "inference".into(), selector: WorkerSelector::All }
    );
    assert_eq!(parse_with(&[("spillFrom", "cpu"), ("spillAbove", "0")]).unwrap().spill.unwrap().above, 0.0);
}

#[test]
fn keda_keys_are_accepted() {
    let t = parse_with(&[("enableTLS", "true"), ("unsafeSsl", "false"), ("caCert", "x"), ("tlsClientCert", "y")]);
    assert!(t.is_ok(), "{t:?}");
}

/// Extra metadata, the key the error must name, a word the message must contain.
type Case = (&'static [(&'static str, &'static str)], &'static str, &'static str);

#[test]
fn every_error_names_its_key_and_the_allowed_values() {
    let cases: &[Case] = &[
        (&[("queue", "1")], "queue", "allowed: acceleratorType"),
        (&[("acceleratorType", "gpu")], "acceleratorType", "nvidia, neuron, cpu"),
        (&[("acceleratorType", "")], "acceleratorType", "missing"),
        (&[("metric", "latency")], "metric", "queueDepth, inFlight, backlog, utilization, memoryUtilization"),
        (&[("acceleratorType", "neuron"), ("metric", "memoryUtilization")], "metric", "allowed: queueDepth"),
        (&[("targetValue", "four")], "targetValue", "not a number"),
        (&[("targetValue", "0")], "targetValue", "not > 0"),
        (&[("targetValue", "NaN")], "targetValue", "not a number"),
        (&[("activationValue", "-1")], "activationValue", "negative"),
        (&[("activationValue", "x")], "activationValue", "not a number"),
        (&[("deployment", "a b")], "deployment", "not a name"),
        (&[("zone", "us/west")], "zone", "not a name"),
        (&[("staleAfter", "1ms")], "staleAfter", "outside"),
        (&[("staleAfter", "later")], "staleAfter", "duration"),
        (&[("labelSelector", "app=sd")], "deployment", "labelSelector exclude each other"),
        (&[("activateOnDemand", "yes")], "activateOnDemand", "allowed: true, false"),
        (&[("spillFrom", "gpu"), ("spillAbove", "4")], "spillFrom", "nvidia, neuron, cpu"),
        (&[("spillFrom", "nvidia"), ("spillAbove", "4")], "spillFrom", "own acceleratorType"),
        (&[("spillFrom", "cpu")], "spillAbove", "missing"),
        (&[("spillAbove", "4")], "spillAbove", "needs spillFrom"),
        (&[("spillFrom", "cpu"), ("spillAbove", "-1")], "spillAbove", "negative"),
        (&[("spillFrom", "cpu"), ("spillAbove", "many")], "spillAbove", "not a number"),
    ];
    for (extra, key, needle) in cases {
        let err = parse_with(extra).unwrap_err();
        assert_eq!(err.key, *key, "{extra:?}");
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("scalerMetadata.{key}:")) && msg.contains(needle), "{extra:?}: {msg}");
    }
    let mut pairs = base();
    pairs.retain(|(k, _)| *k != "deployment");
    let err = Trigger::parse("ns", &meta(&pairs)).unwrap_err();
    assert_eq!(err.key, "deployment");
    assert!(err.reason.contains("deployment") && err.reason.contains("labelSelector"), "{err}");
}

fn labelled(selector: &str, extra: &[(&'static str, &'static str)]) -> Result<Trigger, TriggerError> {
    let mut pairs = base();
    pairs.retain(|(k, _)| *k != "deployment");
    pairs.push(("labelSelector", selector));
    pairs.extend_from_slice(extra);
    Trigger::parse("inference", &meta(&pairs))
}

#[test]
fn a_label_selector_replaces_the_deployment() {
    let t = labelled("tier!=batch, app=sd", &[]).unwrap();
    let WorkerSelector::Labels(sel) = &t.key.selector else { panic!("{:?}", t.key) };
    assert_eq!(sel.to_string(), "app=sd,tier!=batch");
    assert_eq!(t.key.to_string(), "inference/{app=sd,tier!=batch}");
    let class = |deployment: &str, namespace: &str, tier: &str| WorkerClass {
        accelerator: AcceleratorType::Nvidia,
        namespace: namespace.into(),
        deployment: deployment.into(),
        labels: [("app".to_owned(), "sd".to_owned()), ("tier".to_owned(), tier.to_owned())].into(),
    };
    // Any Deployment whose workers carry matching labels, in the trigger's namespace only.
    assert!(t.key.selects(&class("sd-a", "inference", "gold")));
    assert!(t.key.selects(&class("sd-b", "inference", "gold")));
    assert!(!t.key.selects(&class("sd-a", "inference", "batch")));
    assert!(!t.key.selects(&class("sd-a", "other", "gold")));
    let by_name = parse_with(&[]).unwrap();
    assert!(by_name.key.selects(&class("sd-nvidia", "inference", "batch")));
    assert!(!by_name.key.selects(&class("sd-a", "inference", "gold")));
}

#[test]
fn a_bad_label_selector_names_the_key_and_the_syntax() {
    for bad in ["app=s d", "tier in (a,b)", "app=sd,,x", "-x"] {
        let err = labelled(bad, &[]).unwrap_err();
        assert_eq!(err.key, "labelSelector", "{bad}");
        let msg = err.to_string();
        assert!(msg.starts_with("scalerMetadata.labelSelector:") && msg.contains("key=value"), "{bad}: {msg}");
    }
}

#[test]
fn metric_names_are_valid_and_distinct_per_configuration() {
    let configs: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("metric", "inFlight")],
        vec![("metric", "utilization")],
        vec![("acceleratorType", "neuron")],
        vec![("acceleratorType", "cpu")],
        vec![("deployment", "sd-other")],
        vec![("zone", "us-west-2-lax-1a")],
        vec![("namespace", "other")],
        vec![("zone", "us-west-2-lax-1a"), ("metric", "backlog")],
    ];
    let mut names = std::collections::HashSet::new();
    let mut triggers: Vec<Trigger> = configs.iter().map(|extra| parse_with(extra).unwrap()).collect();
    for selector in ["app=sd", "app=sd,tier!=batch", "app=sd,tier=batch", "app.kubernetes.io/name=sd", "!spot"] {
        triggers.push(labelled(selector, &[]).unwrap());
        triggers.push(labelled(selector, &[("zone", "us-west-2-lax-1a")]).unwrap());
    }
    for t in &triggers {
        let name = t.metric_name();
        assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{name}");
        assert!(names.insert(name.clone()), "duplicate {name} for {:?}", t.key);
    }
    // A selector's spelling does not change its name; its meaning does.
    assert_eq!(
        labelled("tier!=batch,app=sd", &[]).unwrap().metric_name(),
        labelled("app==sd, tier!=batch", &[]).unwrap().metric_name()
    );
    assert!(labelled("app=sd", &[]).unwrap().metric_name().starts_with("edge-nvidia-queuedepth-labels-"));
    // Pinned: a new release must not rename the metric of a running ScaledObject (scaler/README.md).
    let mut cpu = base();
    cpu.retain(|(k, _)| !matches!(*k, "deployment" | "acceleratorType"));
    cpu.extend([
        ("acceleratorType", "cpu"),
        ("metric", "backlog"),
        ("labelSelector", "edge-diffusion.io/tier=interactive,track!=canary"),
    ]);
    assert_eq!(Trigger::parse("inference", &meta(&cpu)).unwrap().metric_name(), "edge-cpu-backlog-labels-72ea97c63e");
    // Stable: the same configuration always gives the same name.
    assert_eq!(parse_with(&configs[6]).unwrap().metric_name(), "edge-nvidia-queuedepth-sd-nvidia-us-west-2-lax-1a");
    // Target and activation do not change the value, so not the name either.
    assert_eq!(parse_with(&[("targetValue", "9")]).unwrap().metric_name(), parse_with(&[]).unwrap().metric_name());
}
