//! `/readyz` of a real `edge-scaler`: a new replica stays out of the Service
//! until it has heard from every agent discovery lists, or its
//! `--ready-timeout` passes; a silent agent counts as stale meanwhile. gRPC
//! health on the KEDA port says the same.

mod common;

use common::*;
use edge_testkit::{free_port, http, sample};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const KEDA: &str = "externalscaler.ExternalScaler";

fn readyz(scaler: &Scaler) -> (u16, String) {
    http::get(scaler.metrics_addr, "/readyz").expect("GET /readyz")
}

#[test]
fn a_new_replica_is_ready_only_once_it_has_heard_from_every_agent() {
    // The agent's address is known, but nothing answers there yet.
    let agent_addr = loopback(free_port());
    let scaler = start_scaler(&[("agents", agent_addr.to_string()), ("ready-timeout", "10m".into())], &[]);
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
    let scaler = start_scaler(&flags, &[]);
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

/// A `grpc.health.v1` client of the KEDA port.
async fn health_client(scaler: &Scaler) -> HealthClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", scaler.addr)).unwrap().connect().await.expect("connect");
    HealthClient::new(channel)
}

/// `grpc.health.v1` on the KEDA port, for `service` ("" is the server).
async fn health(scaler: &Scaler, service: &str) -> ServingStatus {
    let mut client = health_client(scaler).await;
    let answer = client.check(HealthCheckRequest { service: service.to_owned() }).await.expect("Health/Check");
    ServingStatus::try_from(answer.into_inner().status).expect("a known status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_follows_readiness_and_the_agents_freshness() {
    let agent_addr = loopback(free_port());
    let flags = [("agents", agent_addr.to_string()), ("ready-timeout", "10m".into()), ("stale-after", "1s".into())];
    let scaler = start_scaler(&flags, &[]);
    assert_eq!(health(&scaler, "").await, ServingStatus::NotServing, "not Ready before the agent's first snapshot");
    assert_eq!(health(&scaler, KEDA).await, ServingStatus::NotServing);

    let agent = agent_builder("zone-a").flag("listen", agent_addr.to_string()).start();
    edge_testkit::eventually_async(PATIENCE, "both SERVING once the agent is heard from", || async {
        (health(&scaler, "").await == ServingStatus::Serving && health(&scaler, KEDA).await == ServingStatus::Serving)
            .then_some(())
    })
    .await;

    // The only agent goes silent: the KEDA service stops serving, the server stays Ready.
    agent.terminate();
    edge_testkit::eventually_async(PATIENCE, "the KEDA service NOT_SERVING with every agent stale", || async {
        (health(&scaler, KEDA).await == ServingStatus::NotServing).then_some(())
    })
    .await;
    assert_eq!(health(&scaler, "").await, ServingStatus::Serving, "readiness is kept");
    let mut client = health_client(&scaler).await;
    let unknown = client.check(HealthCheckRequest { service: "no.such.Service".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}
