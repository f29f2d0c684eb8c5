//! Per-Deployment utilisation, real processes only: an `edge-agent` with the
//! fake NVML library (three GPUs busy at 80, 20 and 50 %) and the fake
//! kubelet (pod `sd-a-0` of Deployment `sd-a` holds GPU 0, pod `sd-b-0` of
//! `sd-b` holds GPU 1, nobody holds GPU 2), two workers reporting with their
//! pod names, and an `edge-scaler` on its static agent list, asked over KEDA's
//! own RPCs (GetMetricSpec, then GetMetrics).
//!
//! A `metric: utilization` trigger with a `deployment` must follow only the
//! GPUs of its own pods (80 for `sd-a`, 20 for `sd-b`, not the node's mean of
//! 50), and follow them when they change.

use std::time::Duration;

use edge_scaler::keda::external_scaler_client::ExternalScalerClient;
use edge_scaler::keda::{GetMetricsRequest, ScaledObjectRef};
use edge_testkit::fake_kubelet::{FakeKubelet, Fixture};
use edge_testkit::fake_nvml::{CONFIG_ENV, Config};
use edge_testkit::{AgentBuilder, ScalerBuilder, artifact, eventually, fake_nvml_library};

const PATIENCE: Duration = Duration::from_secs(60);
const NS: &str = "inference";

fn utilization_trigger(deployment: &str) -> ScaledObjectRef {
    let metadata =
        [("acceleratorType", "nvidia"), ("deployment", deployment), ("metric", "utilization"), ("targetValue", "60")];
    ScaledObjectRef {
        name: deployment.to_owned(),
        namespace: NS.to_owned(),
        scaler_metadata: metadata.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
    }
}

/// What KEDA reads for `object`: its metric name from the spec, then the value.
async fn keda_value(addr: std::net::SocketAddr, object: &ScaledObjectRef) -> Result<f64, tonic::Status> {
    let mut keda = ExternalScalerClient::connect(format!("http://{addr}"))
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let spec = keda.get_metric_spec(object.clone()).await?.into_inner();
    let metric_name = spec.metric_specs.first().map(|s| s.metric_name.clone()).unwrap_or_default();
    let request = GetMetricsRequest { scaled_object_ref: Some(object.clone()), metric_name };
    let values = keda.get_metrics(request).await?.into_inner().metric_values;
    Ok(values.first().map_or(f64::NAN, |v| v.metric_value_float))
}

fn set_util(nvml: &mut Config, gpu: usize, percent: u32) {
    nvml.gpu(gpu).set("utilization", serde_json::json!({ "gpu": percent, "memory": 1 }));
}

#[test]
fn a_utilization_trigger_follows_only_its_own_pods_gpus() {
    let dir = tempfile::tempdir().unwrap();
    let nvml_path = dir.path().join("nvml.json");
    let mut nvml = Config::with_gpus(3);
    for (gpu, percent) in [(0, 80), (1, 20), (2, 50)] {
        set_util(&mut nvml, gpu, percent);
    }
    nvml.write(&nvml_path);
    let uuids: Vec<String> = nvml.gpus.iter().map(|g| g.uuid().to_owned()).collect();
    let mut node = Fixture::default();
    node.allocatable("nvidia.com/gpu", &[&uuids[0], &uuids[1], &uuids[2]]);
    node.assign(NS, "sd-a-0", "worker", "nvidia.com/gpu", &[&uuids[0]]);
    node.assign(NS, "sd-b-0", "worker", "nvidia.com/gpu", &[&uuids[1]]);
    let kubelet = FakeKubelet::start(dir.path(), &node);

    let agent = AgentBuilder::new(artifact("edge-agent"))
        .flag("nvml-library", fake_nvml_library().display().to_string())
        .env(CONFIG_ENV, nvml_path.display().to_string())
        .flag("pod-resources-socket", kubelet.socket().display().to_string())
        .flag("worker-expiry", "10m")
        .start();
    for deployment in ["sd-a", "sd-b"] {
        let report = serde_json::json!({
            "worker_id": format!("{deployment}-0"), "pod": format!("{deployment}-0"), "namespace": NS,
            "deployment": deployment, "accelerator": "nvidia", "queue_depth": 0, "in_flight": 1, "capacity": 4,
        });
        assert_eq!(agent.report(&report.to_string()).0, 204);
    }
    let scaler = ScalerBuilder::new(artifact("edge-scaler")).flag("agents", agent.addr.to_string()).start();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let value = |deployment: &str| rt.block_on(keda_value(scaler.addr, &utilization_trigger(deployment))).ok();
    let settled = |deployment: &str, want: f64| {
        eventually(PATIENCE, &format!("{deployment}'s utilization at {want}"), || {
            value(deployment).filter(|v| (v - want).abs() < 1e-9)
        })
    };
    // The node's mean is 50; each trigger sees only its own pod's GPU.
    settled("sd-a", 80.0);
    settled("sd-b", 20.0);

    // sd-b's GPU gets busy: only sd-b's value moves.
    set_util(&mut nvml, 1, 95);
    nvml.write(&nvml_path);
    settled("sd-b", 95.0);
    assert_eq!(value("sd-a"), Some(80.0), "scaler log:\n{}", scaler.log());
}
