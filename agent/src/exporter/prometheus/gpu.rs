//! GPU series under dcgm-exporter's names and labels.

use clap::ValueEnum;
use edge_telemetry::catalogue::{dcgm, edge};
use edge_telemetry::proto::{Gpu, NodeSnapshot, PodRef};

use super::{Labels, Samples};

const MIB: u64 = 1024 * 1024;

/// How the dcgm-exporter host label is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HostnameLabel {
    /// `Hostname`, as current dcgm-exporter releases write it.
    #[value(name = "Hostname")]
    Hostname,
    /// `hostname`, as older releases and some dashboards expect.
    #[value(name = "hostname")]
    Lowercase,
}

impl HostnameLabel {
    /// The label name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hostname => "Hostname",
            Self::Lowercase => "hostname",
        }
    }
}

/// Adds every GPU of `snapshot`, and every MIG device of a GPU in MIG mode.
///
/// A GPU or MIG device a container holds (kubelet PodResources) carries
/// dcgm-exporter's `container`, `namespace` and `pod` labels; one held by
/// several (time-slicing) is one series per holder, as dcgm-exporter does.
pub fn add(samples: &mut Samples, snapshot: &NodeSnapshot, hostname_label: HostnameLabel) {
    let host = snapshot.node.as_ref().map(|n| n.name.clone()).unwrap_or_default();
    for g in &snapshot.gpus {
        let device: Labels = vec![
            (dcgm::LABEL_GPU, g.index.to_string()),
            (dcgm::LABEL_UUID, g.uuid.clone()),
            (dcgm::LABEL_PCI_BUS_ID, g.pci_bus_id.clone()),
            (dcgm::LABEL_DEVICE, g.minor_number.map(|m| format!("nvidia{m}")).unwrap_or_default()),
            (dcgm::LABEL_MODEL_NAME, g.name.clone()),
        ];
        samples.add(
            edge::GPU_HEALTHY,
            vec![(dcgm::LABEL_GPU, g.index.to_string()), (dcgm::LABEL_UUID, g.uuid.clone())],
            if g.healthy { 1.0 } else { 0.0 },
        );
        let mut gpu = device.clone();
        gpu.push((hostname_label.as_str(), host.clone()));
        for labels in held_by(&gpu, &g.pods) {
            add_gpu(samples, &labels, g);
        }
        for m in &g.mig_instances {
            let mut mig = device.clone();
            mig.push((dcgm::LABEL_GPU_I_PROFILE, m.profile.clone()));
            mig.push((dcgm::LABEL_GPU_I_ID, m.gpu_instance_id.to_string()));
            mig.push((hostname_label.as_str(), host.clone()));
            for labels in held_by(&mig, &m.pods) {
                samples.add_opt(dcgm::PROF_GR_ENGINE_ACTIVE, &labels, m.graphics_engine_active_ratio);
                samples.add_opt(dcgm::FB_USED, &labels, mib(m.framebuffer_used_bytes));
                samples.add_opt(dcgm::FB_FREE, &labels, mib(m.framebuffer_free_bytes));
                samples.add_opt(dcgm::FB_TOTAL, &labels, mib(m.framebuffer_total_bytes));
            }
        }
    }
}

/// `base` once per holder with its pod labels, or `base` alone when no
/// container holds the device.
fn held_by(base: &Labels, pods: &[PodRef]) -> Vec<Labels> {
    if pods.is_empty() {
        return vec![base.clone()];
    }
    pods.iter()
        .map(|p| {
            let mut l = base.clone();
            l.push((dcgm::LABEL_CONTAINER, p.container.clone()));
            l.push((dcgm::LABEL_NAMESPACE, p.namespace.clone()));
            l.push((dcgm::LABEL_POD, p.pod.clone()));
            l
        })
        .collect()
}

/// dcgm-exporter reports framebuffer sizes in whole MiB.
fn mib(v: Option<u64>) -> Option<f64> {
    v.map(|b| (b / MIB) as f64)
}

fn add_gpu(samples: &mut Samples, labels: &Labels, g: &Gpu) {
    let f = |v: Option<u32>| v.map(f64::from);
    samples.add_opt(dcgm::GPU_UTIL, labels, f(g.gpu_utilization_percent));
    samples.add_opt(dcgm::MEM_COPY_UTIL, labels, f(g.memory_copy_utilization_percent));
    samples.add_opt(dcgm::ENC_UTIL, labels, f(g.encoder_utilization_percent));
    samples.add_opt(dcgm::DEC_UTIL, labels, f(g.decoder_utilization_percent));
    samples.add_opt(dcgm::FB_USED, labels, mib(g.framebuffer_used_bytes));
    samples.add_opt(dcgm::FB_FREE, labels, mib(g.framebuffer_free_bytes));
    samples.add_opt(dcgm::FB_TOTAL, labels, mib(g.framebuffer_total_bytes));
    samples.add_opt(dcgm::POWER_USAGE, labels, g.power_usage_watts);
    samples.add_opt(dcgm::GPU_TEMP, labels, f(g.temperature_celsius));
    samples.add_opt(dcgm::SM_CLOCK, labels, f(g.sm_clock_mhz));
    samples.add_opt(dcgm::MEM_CLOCK, labels, f(g.memory_clock_mhz));
    samples.add_opt(dcgm::TOTAL_ENERGY_CONSUMPTION, labels, g.total_energy_millijoules.map(|v| v as f64));
    samples.add_opt(dcgm::PCIE_REPLAY_COUNTER, labels, g.pcie_replay_count.map(|v| v as f64));
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_telemetry::proto::{MigInstance, Node};

    fn snapshot() -> NodeSnapshot {
        NodeSnapshot {
            node: Some(Node { name: "ip-10-0-0-1".into(), ..Default::default() }),
            gpus: vec![
                Gpu {
                    index: 0,
                    uuid: "GPU-aaaa".into(),
                    name: "NVIDIA A10G".into(),
                    pci_bus_id: "00000000:00:1E.0".into(),
                    minor_number: Some(0),
                    healthy: true,
                    gpu_utilization_percent: Some(87),
                    framebuffer_used_bytes: Some(3 * MIB + 5),
                    power_usage_watts: Some(201.5),
                    ..Default::default()
                },
                Gpu {
                    index: 1,
                    uuid: "GPU-bbbb".into(),
                    healthy: false,
                    error: "GPU is lost".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    fn rendered(label: HostnameLabel) -> String {
        let mut s = Samples::default();
        add(&mut s, &snapshot(), label);
        s.encode()
    }

    #[test]
    fn uses_dcgm_exporter_names_and_labels() {
        let out = rendered(HostnameLabel::Hostname);
        let labels = r#"gpu="0",UUID="GPU-aaaa",pci_bus_id="00000000:00:1E.0",device="nvidia0",modelName="NVIDIA A10G",Hostname="ip-10-0-0-1""#;
        assert!(out.contains(&format!("DCGM_FI_DEV_GPU_UTIL{{{labels}}} 87")), "{out}");
        assert!(out.contains(&format!("DCGM_FI_DEV_FB_USED{{{labels}}} 3")), "{out}");
        assert!(out.contains(&format!("DCGM_FI_DEV_POWER_USAGE{{{labels}}} 201.5")), "{out}");
        assert!(rendered(HostnameLabel::Lowercase).contains(r#"hostname="ip-10-0-0-1""#));
    }

    #[test]
    fn unsupported_and_lost_values_are_left_out_not_zero() {
        let out = rendered(HostnameLabel::Hostname);
        assert!(!out.contains("DCGM_FI_DEV_ENC_UTIL"), "{out}");
        assert!(!out.contains(r#"DCGM_FI_DEV_GPU_UTIL{gpu="1""#), "{out}");
        assert!(out.contains(r#"edge_gpu_healthy{gpu="1",UUID="GPU-bbbb"} 0"#), "{out}");
        assert!(out.contains(r#"edge_gpu_healthy{gpu="0",UUID="GPU-aaaa"} 1"#), "{out}");
    }

    #[test]
    fn held_devices_carry_pod_labels_one_series_per_holder() {
        let mut snap = snapshot();
        let holder = |pod: &str| PodRef { namespace: "ml".into(), pod: pod.into(), container: "worker".into() };
        snap.gpus[0].pods = vec![holder("sd-0"), holder("sd-1")];
        let mut s = Samples::default();
        add(&mut s, &snap, HostnameLabel::Hostname);
        let out = s.encode();
        let labels = r#"gpu="0",UUID="GPU-aaaa",pci_bus_id="00000000:00:1E.0",device="nvidia0",modelName="NVIDIA A10G",Hostname="ip-10-0-0-1""#;
        for pod in ["sd-0", "sd-1"] {
            let line = format!(r#"DCGM_FI_DEV_GPU_UTIL{{{labels},container="worker",namespace="ml",pod="{pod}"}} 87"#);
            assert!(out.contains(&line), "missing {line}\n{out}");
        }
        assert!(!out.contains(&format!("DCGM_FI_DEV_GPU_UTIL{{{labels}}}")), "an unlabelled copy as well:\n{out}");
    }

    #[test]
    fn mig_devices_are_series_of_their_own() {
        let mut snap = snapshot();
        snap.gpus[0].gpu_utilization_percent = None;
        snap.gpus[0].mig_instances = vec![
            MigInstance {
                gpu_instance_id: 7,
                uuid: "MIG-1".into(),
                profile: "1g.5gb".into(),
                graphics_engine_active_ratio: Some(0.25),
                framebuffer_used_bytes: Some(2 * MIB),
                pods: vec![PodRef { namespace: "ml".into(), pod: "sd-0".into(), container: "w".into() }],
                ..Default::default()
            },
            MigInstance { gpu_instance_id: 8, uuid: "MIG-2".into(), profile: "2g.10gb".into(), ..Default::default() },
        ];
        let mut s = Samples::default();
        add(&mut s, &snap, HostnameLabel::Hostname);
        let out = s.encode();
        let base = r#"gpu="0",UUID="GPU-aaaa",pci_bus_id="00000000:00:1E.0",device="nvidia0",modelName="NVIDIA A10G""#;
        let line = format!(
            r#"DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{base},GPU_I_PROFILE="1g.5gb",GPU_I_ID="7",Hostname="ip-10-0-0-1",container="w",namespace="ml",pod="sd-0"}} 0.25"#
        );
        assert!(out.contains(&line), "missing {line}\n{out}");
        assert!(
            out.contains(r#"GPU_I_ID="7",Hostname="ip-10-0-0-1",container="w",namespace="ml",pod="sd-0"} 2"#),
            "{out}"
        );
        assert!(!out.contains(r#"GPU_I_ID="8""#), "an instance without values has no series:\n{out}");
        assert!(!out.contains("DCGM_FI_DEV_GPU_UTIL"), "{out}");
    }
}
