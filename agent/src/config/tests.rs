use super::*;

fn parse(args: &[&str]) -> Result<Settings, String> {
    let cfg =
        Config::try_parse_from(std::iter::once("edge-agent").chain(args.iter().copied())).map_err(|e| e.to_string())?;
    cfg.validate().map_err(|e| e.to_string())
}

#[test]
fn defaults_are_valid() {
    let s = parse(&[]).unwrap();
    assert_eq!(s.interval, Duration::from_secs(1));
    assert_eq!(s.report_listen, Some("127.0.0.1:9401".parse().unwrap()));
    assert_eq!(s.neuron_monitor, Some(vec!["neuron-monitor".to_owned()]));
    assert!(!s.node.name.is_empty());
    assert_eq!(
        s.pod_resources.socket.as_deref(),
        Some(std::path::Path::new("/var/lib/kubelet/pod-resources/kubelet.sock"))
    );
}

#[test]
fn empty_values_disable_sources() {
    let s = parse(&["--nvml-library", "", "--neuron-monitor", "", "--report-listen", "", "--pod-resources-socket", ""])
        .unwrap();
    assert!(s.nvml_library.is_none() && s.neuron_monitor.is_none() && s.pod_resources.socket.is_none());
    assert!(s.report_socket.is_none() && s.report_listen.is_none());
}

#[cfg(feature = "cloudwatch")]
#[test]
fn cloudwatch_is_off_unless_a_namespace_is_given() {
    assert_eq!(parse(&["--cluster-name", "edge"]).unwrap().cloudwatch, None);
    let s = parse(&["--cloudwatch-namespace", "EdgeDiffusion", "--cluster-name", "edge"]).unwrap();
    let cw = s.cloudwatch.expect("on");
    assert_eq!((cw.namespace.as_str(), cw.cluster_name.as_str()), ("EdgeDiffusion", "edge"));
    assert_eq!(cw.flush_interval, Duration::from_secs(60));
    assert!(!cw.pod_dimensions, "pod dimensions cost: off unless asked for");
    let s = parse(&["--cloudwatch-namespace", "E", "--cluster-name", "c", "--cloudwatch-pod-dimensions"]).unwrap();
    assert!(s.cloudwatch.expect("on").pod_dimensions);
}

#[test]
fn bad_values_name_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--report-listen", "0.0.0.0:9401"], "--report-listen"),
        (&["--report-listen", "nope"], "--report-listen"),
        (&["--interval", "10ms"], "--interval"),
        (&["--interval", "soon"], "--interval"),
        (&["--worker-expiry", "1s"], "--worker-expiry"),
        (&["--pod-resources-timeout", "0s"], "--pod-resources-timeout"),
        (&["--pod-resources-timeout", "1m"], "--pod-resources-timeout"),
        (&["--hostname-label", "HOST"], "--hostname-label"),
        (&["--listen", "9400"], "--listen"),
        (&["--cloudwatch-namespace", "AWS/EC2", "--cluster-name", "c"], "--cloudwatch-namespace"),
        (&["--cloudwatch-namespace", "Edge"], "--cluster-name"),
        (
            &["--cloudwatch-namespace", "Edge", "--cluster-name", "c", "--cloudwatch-flush-interval", "500ms"],
            "--cloudwatch-flush-interval",
        ),
        (
            &["--cloudwatch-namespace", "Edge", "--cluster-name", "c", "--cloudwatch-buffer-samples", "5"],
            "--cloudwatch-buffer-samples",
        ),
    ];
    for (args, flag) in cases {
        let err = parse(args).unwrap_err();
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}
