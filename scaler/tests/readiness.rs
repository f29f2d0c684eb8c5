//! `/readyz` of a real `edge-scaler`: a new replica stays out of the Service
//! until it has heard from every agent discovery lists, or its
//! `--ready-timeout` passes; a silent agent counts as stale meanwhile.

mod common;

use common::*;
use edge_testkit::{free_port, http, sample};

fn readyz(scaler: &Scaler) -> (u16, String) {
    http::get(scaler.metrics_addr, "/readyz").expect("GET /readyz")
}

#[test]
fn a_new_replica_is_ready_only_once_it_has_heard_from_every_agent() {
    // The agent's address is known, but nothing answers there yet.
    let agent_addr = loopback(free_port());
    let scaler = Scaler::start(&[("agents", agent_addr.to_string()), ("ready-timeout", "10m".into())], &[]);
    let (status, body) = readyz(&scaler);
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("waiting for 1 of 1 agents' first snapshot; ready anyway in"), "{body}");
    let m = scaler.metrics();
    assert_eq!(sample(&m, "edge_scaler_agents_stale"), Some(1.0), "discovered but silent is stale:\n{m}");
    let age = format!(r#"edge_scaler_agent_age_seconds{{agent="{agent_addr}"}}"#);
    assert!(sample(&m, &age).is_some(), "{m}");

    let _agent = agent_builder("zone-a").flag("listen", agent_addr.to_string()).start();
    let body = edge_testkit::eventually(PATIENCE, "the replica Ready after the agent's first snapshot", || {
        let (status, body) = readyz(&scaler);
        (status == 200).then_some(body)
    });
    assert_eq!(body, "ready: every agent (1) sent its first snapshot\n");
    let m = scaler.metrics();
    assert_eq!(sample(&m, "edge_scaler_agents_stale"), Some(0.0), "{m}");
    assert!(sample(&m, &age).is_some_and(|s| s < 5.0), "{m}");
}

#[test]
fn a_silent_agent_counts_as_stale_and_the_replica_is_ready_after_its_timeout() {
    let agent = start_agent("zone-a");
    let silent = loopback(free_port());
    let flags = [("agents", format!("{},{silent}", agent.addr)), ("ready-timeout", "5s".into())];
    let scaler = Scaler::start(&flags, &[]);
    let (status, body) = readyz(&scaler);
    assert_eq!(status, 503, "not ready within its first 5 s while an agent is silent: {body}");
    let body = edge_testkit::eventually(PATIENCE, "the replica Ready after --ready-timeout", || {
        let (status, body) = readyz(&scaler);
        (status == 200).then_some(body)
    });
    assert_eq!(body, "ready after --ready-timeout 5s; 1 of 2 agents not heard from (stale)\n");
    let m = scaler.metrics();
    assert_eq!(sample(&m, "edge_scaler_agents"), Some(2.0), "{m}");
    assert_eq!(sample(&m, "edge_scaler_agents_stale"), Some(1.0), "{m}");
    let age = sample(&m, &format!(r#"edge_scaler_agent_age_seconds{{agent="{silent}"}}"#));
    assert!(age.is_some_and(|s| s >= 5.0), "silent since discovery: {age:?}\n{m}");
    let heard = sample(&m, &format!(r#"edge_scaler_agent_age_seconds{{agent="{}"}}"#, agent.addr));
    assert!(heard.is_some_and(|s| s < 5.0), "{heard:?}\n{m}");
}
