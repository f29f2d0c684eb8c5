//! edge-inference: the Stable Diffusion worker. A candle pipeline behind a
//! bounded queue that tells its node's agent how much work is waiting.
//!
//! - [`model`]: loading a diffusers-layout checkout, generating and editing images.
//! - [`imageio`]: decoding uploads and encoding results (PNG, JPEG, WebP).
//! - [`queue`]: admission and ordering (permits, no unbounded channel).
//! - [`http`]: the API, probes and `/metrics`; [`engine`] runs jobs, [`batch`] batches
//!   same-shape ones that wait together.
//! - [`report`]: queue reports to the node agent.
//! - [`tiny`]: writing small random models of each architecture in the diffusers layout.
//! - [`random_model`]: full-size random models (real shapes, f16) for benchmarks.
//! - [`proxy`]: the same queue and reports in front of any other SD server.
//! - [`daemon`]: listener, reports and drain, shared by `serve` and `proxy`.

pub mod batch;
pub mod bench;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod http;
pub mod imageio;
pub mod metrics;
pub mod model;
pub mod proxy;
pub mod queue;
pub mod random_model;
pub mod report;
pub mod request_error;
pub mod serve;
pub mod threads;
pub mod tiny;
pub mod validation;
