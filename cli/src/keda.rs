//! Talking to the scaler the way KEDA does: the client generated from the
//! project's `externalscaler.proto`, and triggers as a ScaledObject declares them.

use std::collections::HashMap;

use tonic::transport::Channel;

/// KEDA's external scaler contract, generated once in the telemetry crate.
pub use edge_telemetry::keda as proto;

pub use proto::external_scaler_client::ExternalScalerClient;
use proto::{GetMetricsRequest, ScaledObjectRef};

/// A KEDA client.
pub type Client = ExternalScalerClient<Channel>;

/// Connects to the scaler's gRPC address.
pub async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Client> {
    let channel = Channel::from_shared(format!("http://{addr}"))?.connect_lazy();
    Ok(ExternalScalerClient::new(channel))
}

/// A trigger on `metric` of `deployment`'s workers of one accelerator type,
/// as a ScaledObject in `namespace` would declare it.
pub fn trigger(namespace: &str, deployment: &str, accelerator: &str, metric: &str) -> ScaledObjectRef {
    let metadata: HashMap<String, String> = [
        ("acceleratorType", accelerator),
        ("deployment", deployment),
        ("metric", metric),
        ("targetValue", "1"),
        ("activationValue", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    ScaledObjectRef { name: deployment.to_owned(), namespace: namespace.to_owned(), scaler_metadata: metadata }
}

/// `GetMetricSpec` then `GetMetrics`, as the HPA path does; the float value.
pub async fn metric(client: &mut Client, object: &ScaledObjectRef) -> Result<f64, tonic::Status> {
    let spec = client.get_metric_spec(object.clone()).await?.into_inner();
    let name = spec.metric_specs.first().map(|s| s.metric_name.clone()).unwrap_or_default();
    let reply = client
        .get_metrics(GetMetricsRequest { scaled_object_ref: Some(object.clone()), metric_name: name })
        .await?
        .into_inner();
    Ok(reply.metric_values.first().map_or(0.0, |v| v.metric_value_float))
}

/// `IsActive`.
pub async fn is_active(client: &mut Client, object: &ScaledObjectRef) -> Result<bool, tonic::Status> {
    Ok(client.is_active(object.clone()).await?.into_inner().result)
}
