//! KEDA's side of the scaler for the end-to-end tests: the client generated
//! from the project's `externalscaler.proto` (through `edge-scaler`), driven
//! from a blocking test thread.

use std::sync::{Arc, Mutex};

use edge_scaler::keda::external_scaler_client::ExternalScalerClient;
use edge_scaler::keda::{GetMetricsRequest, ScaledObjectRef};
use tokio::runtime::Runtime;
use tonic::transport::Channel;

/// The ScaledObject KEDA would send for `accelerator`'s Deployment `sd-<accelerator>`
/// of workers in `namespace`: `queueDepth`, target 2, activation 0.
pub fn trigger(namespace: &str, accelerator: &str) -> ScaledObjectRef {
    let metadata = [
        ("scalerAddress", "edge-scaler.edge-diffusion.svc:9500".to_owned()),
        ("acceleratorType", accelerator.to_owned()),
        ("deployment", format!("sd-{accelerator}")),
        ("metric", "queueDepth".to_owned()),
        ("targetValue", "2".to_owned()),
        ("activationValue", "0".to_owned()),
    ];
    ScaledObjectRef {
        name: format!("sd-{accelerator}"),
        namespace: namespace.to_owned(),
        scaler_metadata: metadata.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

/// KEDA's side of the scaler, driven from the (blocking) test thread.
pub struct Keda {
    rt: Runtime,
    client: ExternalScalerClient<Channel>,
}

/// What one open StreamIsActive received, and how it ended.
#[derive(Clone, Default)]
pub struct Pushes {
    received: Arc<Mutex<Vec<bool>>>,
    /// How the stream ended, once it has.
    pub ended: Arc<Mutex<Option<Result<(), tonic::Status>>>>,
}

impl Pushes {
    /// Whether `other` records the same stream as this.
    pub fn same_stream(&self, other: &Pushes) -> bool {
        Arc::ptr_eq(&self.received, &other.received)
    }

    /// Every message so far.
    pub fn received(&self) -> Vec<bool> {
        self.received.lock().unwrap().clone()
    }
}

impl Keda {
    /// Connects to the scaler's gRPC address.
    pub fn connect(addr: std::net::SocketAddr) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let client =
            rt.block_on(ExternalScalerClient::connect(format!("http://{addr}"))).expect("connect to the scaler");
        Self { rt, client }
    }

    /// GetMetricSpec, then GetMetrics with the spec's name, as the HPA path does.
    pub fn metric(&self, object: &ScaledObjectRef) -> Result<f64, tonic::Status> {
        let mut client = self.client.clone();
        self.rt.block_on(async {
            let spec = client.get_metric_spec(object.clone()).await?.into_inner();
            let name = spec.metric_specs[0].metric_name.clone();
            let reply = client
                .get_metrics(GetMetricsRequest { scaled_object_ref: Some(object.clone()), metric_name: name })
                .await?
                .into_inner();
            assert_eq!(reply.metric_values.len(), 1, "{reply:?}");
            Ok(reply.metric_values[0].metric_value_float)
        })
    }

    /// IsActive.
    pub fn is_active(&self, object: &ScaledObjectRef) -> Result<bool, tonic::Status> {
        let mut client = self.client.clone();
        self.rt.block_on(async { Ok(client.is_active(object.clone()).await?.into_inner().result) })
    }

    /// Opens StreamIsActive and records every message until the stream ends.
    pub fn stream_is_active(&self, object: &ScaledObjectRef) -> Pushes {
        self.try_stream_is_active(object).expect("StreamIsActive")
    }

    /// [`Keda::stream_is_active`], or `None` while the scaler does not answer.
    pub fn try_stream_is_active(&self, object: &ScaledObjectRef) -> Option<Pushes> {
        let mut client = self.client.clone();
        let mut stream = self.rt.block_on(client.stream_is_active(object.clone())).ok()?.into_inner();
        let pushes = Pushes::default();
        let record = pushes.clone();
        self.rt.spawn(async move {
            let end = loop {
                match stream.message().await {
                    Ok(Some(msg)) => record.received.lock().unwrap().push(msg.result),
                    Ok(None) => break Ok(()),
                    Err(status) => break Err(status),
                }
            };
            *record.ended.lock().unwrap() = Some(end);
        });
        Some(pushes)
    }
}
