//! `grpc.health.v1` on the agent's port, as gRPC probes and
//! `grpc-health-probe` ask it: SERVING for the server and the snapshot feed
//! once the first collection is done (what `/readyz` says).

use edge_testkit::AgentBuilder;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_and_the_feed_serve_once_ready() {
    // `start` returns once /readyz answers 200.
    let agent = AgentBuilder::new(env!("CARGO_BIN_EXE_edge-agent")).start();
    let channel = Channel::from_shared(format!("http://{}", agent.addr)).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "edge.agent.v1.SnapshotFeed"] {
        let answer = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(ServingStatus::try_from(answer.status), Ok(ServingStatus::Serving), "{service:?}");
    }
    let unknown = health.check(HealthCheckRequest { service: "no.such.Service".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}
