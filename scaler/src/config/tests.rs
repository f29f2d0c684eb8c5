use super::*;

fn parse(args: &[&str]) -> Result<Settings, String> {
    let cfg = Config::try_parse_from(std::iter::once("edge-scaler").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    cfg.validate().map_err(|e| e.to_string())
}

#[test]
fn static_list_is_split_and_deduplicated() {
    let s = parse(&["--agents", "10.0.0.1:9400, node-b:9400,10.0.0.1:9400,[::1]:9400"]).unwrap();
    assert_eq!(s.discovery, Discovery::Static(vec!["10.0.0.1:9400".into(), "node-b:9400".into(), "[::1]:9400".into()]));
    assert_eq!(s.stale_after, Duration::from_secs(6));
    assert_eq!(s.metrics_listen, Some("0.0.0.0:9501".parse().unwrap()));
    assert!(s.tls.is_none());
}

#[test]
fn kubernetes_discovery_reads_port_selector() {
    let s = parse(&["--agent-service", "edge-agent", "--agent-namespace", "edge", "--agent-port", "http"]).unwrap();
    assert_eq!(
        s.discovery,
        Discovery::Kubernetes(KubeDiscovery {
            service: "edge-agent".into(),
            namespace: Some("edge".into()),
            port: PortSelector::Named("http".into()),
        })
    );
    let s = parse(&["--agent-service", "edge-agent", "--agent-port", "9400"]).unwrap();
    assert!(matches!(s.discovery, Discovery::Kubernetes(KubeDiscovery { port: PortSelector::Number(9400), .. })));
}

#[test]
fn bad_values_name_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "--agents"),
        (&["--agents", "a:1", "--agent-service", "s"], "--agents"),
        (&["--agents", "a"], "--agents"),
        (&["--agents", "a:0"], "--agents"),
        (&["--agents", "a:1,,b:2"], "--agents"),
        (&["--agents", "::1:9400"], "--agents"),
        (&["--agents", "a:1", "--agent-port", "http"], "--agent-namespace"),
        (&["--agent-service", "Edge_Agent"], "--agent-service"),
        (&["--agent-service", "a", "--agent-port", "70000"], "--agent-port"),
        (&["--agents", "a:1", "--stale-after", "10ms"], "--stale-after"),
        (&["--agents", "a:1", "--stale-after", "soon"], "--stale-after"),
        (&["--agents", "a:1", "--reconnect-max", "1h"], "--reconnect-max"),
        (&["--agents", "a:1", "--metrics-listen", "9501"], "--metrics-listen"),
        (&["--agents", "a:1", "--listen", "nowhere"], "--listen"),
        (&["--agents", "a:1", "--tls-cert", "/x"], "--tls-key"),
        (&["--agents", "a:1", "--tls-client-ca", "/x"], "--tls-client-ca"),
        (&["--agents", "a:1", "--tls-cert", "/nonexistent", "--tls-key", "/nonexistent"], "--tls-cert"),
        (&["--agents", "a:1", "--node-addresses", "true"], "--node-addresses"),
        (&["--agents", "a:1", "--advertise-host", "lax"], "--advertise-host"),
        (&["--agents", "a:1", "--advertise-host", "lax=http://sd.example.com"], "--advertise-host"),
        (&["--agents", "a:1", "--advertise-host", "lax=a.example.com,lax=b.example.com"], "--advertise-host"),
        (&["--agents", "a:1", "--peers", "b"], "--peers"),
        (&["--agents", "a:1", "--ready-timeout", "1h"], "--ready-timeout"),
        (&["--agents", "a:1", "--inventory-rate", "1000000"], "--inventory-rate"),
    ];
    for (args, flag) in cases {
        let err = parse(args).unwrap_err();
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn advertise_hosts_are_read_per_zone() {
    let s =
        parse(&["--agents", "a:1", "--advertise-host", "us-west-2-lax-1a=sd-lax.example.com, z2=[fd00::1]"]).unwrap();
    assert_eq!(s.advertise_host.get("us-west-2-lax-1a").map(String::as_str), Some("sd-lax.example.com"));
    assert_eq!(s.advertise_host.get("z2").map(String::as_str), Some("[fd00::1]"));
}

#[test]
fn tls_files_must_be_pem() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\n").unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let err = parse(&["--agents", "a:1", "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()])
        .unwrap_err();
    assert!(err.contains("--tls-key") && err.contains("not PEM"), "{err}");
}
