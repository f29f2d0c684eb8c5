//! Contracts shared by the edge-diffusion agent, scaler and inference worker.
//!
//! - [`proto`]: the agent's snapshot and its change feed (gRPC), the one
//!   in-memory and on-wire shape of a node.
//! - [`podresources`]: the kubelet's PodResources API, which pod holds which device.
//! - [`keda`]: KEDA's external scaler contract, served by the scaler, called by KEDA and the CLI.
//! - [`report`]: what an inference worker tells its node's agent.
//! - [`inventory`]: the scaler's endpoint inventory, what user devices read.
//! - [`accelerator`]: the accelerator types we scale on.
//! - [`labels`]: Kubernetes label syntax, for reports and selectors alike.
//! - [`catalogue`]: every metric name the project exposes, in one place.
//! - [`http1`]: the one HTTP/1.1 client (its processes' calls, the CLI, the tests).
//! - [`loopback`]: free loopback ports for the child processes a caller starts.
//! - [`prometheus_server`]: a real Prometheus beside them (the benchmark, the tests).
//! - [`exposition`]: which text format a `/metrics` scrape gets.
//! - [`view`]: what exporters and the scaler read from a snapshot, computed once.

pub mod accelerator;
pub mod catalogue;
pub mod daemon;
pub mod exposition;
pub mod http1;
pub mod inventory;
pub mod labels;
pub mod loopback;
pub mod prometheus_server;
pub mod report;
pub mod view;

/// Generated from `proto/edge/agent/v1/snapshot.proto`.
pub mod proto {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("edge.agent.v1");
}

/// The kubelet's PodResources v1 API (`k8s.io/kubelet`
/// `pkg/apis/podresources/v1/api.proto`, vendored unchanged): the agent's
/// `pod_resources` collector is a client, the fake kubelet a server.
pub mod podresources {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("v1");
}

/// KEDA's external scaler contract (`externalscaler.ExternalScaler`), generated
/// once from our copy of KEDA's `externalscaler.proto` (identical on the wire):
/// the scaler serves it; the CLI, the benchmarks and the tests call it as KEDA does.
pub mod keda {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("externalscaler");
}

pub use accelerator::AcceleratorType;
pub use report::{ReportError, WorkerReport};
