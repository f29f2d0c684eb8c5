//! Writes the config file of the fake NVML library (`testkit/fake-nvml`,
//! whose `config` module defines the format), so a test says "two GPUs, the
//! second one lost" instead of spelling out JSON.
//!
//! ```no_run
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("nvml.json");
//! let mut nvml = edge_testkit::fake_nvml::Config::with_gpus(2);
//! nvml.gpu(1).unsupported("power_usage_mw");
//! nvml.write(&path);
//! // later, while the agent runs:
//! nvml.gpu(1).lost();
//! nvml.write(&path);
//! ```

use std::path::Path;

use serde_json::{Map, Value, json};

/// The environment variable the fake library reads its config path from.
pub const CONFIG_ENV: &str = "FAKE_NVML_CONFIG";

/// The fake machine: its GPUs in NVML index order.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The GPUs; index `i` is NVML device `i`.
    pub gpus: Vec<Gpu>,
}

/// One GPU's answers, keyed as in the fake's config format.
#[derive(Debug, Clone)]
pub struct Gpu {
    fields: Map<String, Value>,
}

impl Config {
    /// `n` healthy GPUs, each with every value set (see [`Gpu::new`]).
    pub fn with_gpus(n: u32) -> Self {
        Self { gpus: (0..n).map(Gpu::new).collect() }
    }

    /// GPU `index`, to change.
    pub fn gpu(&mut self, index: usize) -> &mut Gpu {
        &mut self.gpus[index]
    }

    /// Writes the file atomically (a new file renamed over the old one), so
    /// the library never reads half a file and sees the change at once.
    pub fn write(&self, path: &Path) {
        let gpus: Vec<Value> = self.gpus.iter().map(|g| Value::Object(g.fields.clone())).collect();
        let text = serde_json::to_string_pretty(&json!({ "gpus": gpus })).expect("serialise fake NVML config");
        let dir = path.parent().expect("config path has a parent directory");
        let tmp = tempfile::NamedTempFile::new_in(dir).expect("temp file next to the config");
        std::fs::write(tmp.path(), text).expect("write fake NVML config");
        tmp.persist(path).expect("rename fake NVML config into place");
    }
}

impl Gpu {
    /// A healthy A10G-like GPU whose values all differ from the other
    /// indexes', so a test can tell which GPU a series came from.
    pub fn new(index: u32) -> Self {
        let i = u64::from(index);
        const MIB: u64 = 1024 * 1024;
        let total = 23_028 * MIB;
        let used = (1_024 + i) * MIB;
        let reserved = 300 * MIB;
        let value = json!({
            "uuid": format!("GPU-00000000-0000-0000-0000-{index:012x}"),
            "name": "NVIDIA A10G",
            "pci_bus_id": format!("00000000:{:02X}:00.0", 0x10 + index),
            "minor_number": index,
            "utilization": { "gpu": 10 + index, "memory": 5 + index },
            "encoder_utilization": 1 + index,
            "decoder_utilization": 2 + index,
            "memory": { "total": total, "reserved": reserved, "used": used, "free": total - reserved - used },
            "power_usage_mw": 60_500 + 1_000 * index,
            "temperature_gpu_c": 40 + index,
            "sm_clock_mhz": 1_710 - index,
            "memory_clock_mhz": 6_251 - index,
            "total_energy_mj": 1_000_000 * (i + 1),
            "pcie_replay_counter": index,
        });
        let Value::Object(fields) = value else { unreachable!("json! of an object literal") };
        Self { fields }
    }

    /// The UUID this GPU reports (empty if unset).
    pub fn uuid(&self) -> &str {
        self.fields.get("uuid").and_then(Value::as_str).unwrap_or_default()
    }

    /// Sets `key` (e.g. `power_usage_mw`, `utilization`) to `value`.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    /// Makes the query behind `key` answer `NVML_ERROR_NOT_SUPPORTED`.
    pub fn unsupported(&mut self, key: &str) -> &mut Self {
        self.set(key, Value::Null)
    }

    /// Makes the query behind `key` answer `NVML_ERROR_<name>`.
    pub fn error(&mut self, key: &str, name: &str) -> &mut Self {
        self.set(key, json!({ "error": name }))
    }

    /// Puts the GPU in MIG mode with `profiles.len()` MIG devices: device
    /// `k` has profile `profiles[k]`, GPU instance id `7 + k`, UUID
    /// [`Gpu::mig_uuid`]`(k)`, 1 GiB used of 5 GiB and `graphics_util`
    /// `25 × (k + 1)` percent. Under MIG the GPU's own utilisation is not
    /// measured, so it answers `NOT_SUPPORTED`.
    pub fn mig(&mut self, profiles: &[&str]) -> &mut Self {
        const GIB: u64 = 1024 * 1024 * 1024;
        let devices: Vec<Value> = profiles
            .iter()
            .enumerate()
            .map(|(k, p)| {
                json!({
                    "uuid": self.mig_uuid(k),
                    "name": format!("NVIDIA A100-SXM4-40GB MIG {p}"),
                    "gpu_instance_id": 7 + k,
                    "compute_instance_id": 0,
                    "memory": { "total": 5 * GIB, "used": GIB, "free": 4 * GIB },
                    "graphics_util": 25.0 * (k as f64 + 1.0),
                })
            })
            .collect();
        self.set("mig", devices).unsupported("utilization")
    }

    /// The UUID of this GPU's MIG device `k` (see [`Gpu::mig`]).
    pub fn mig_uuid(&self, k: usize) -> String {
        format!("MIG-{}-{k}", self.uuid().trim_start_matches("GPU-"))
    }

    /// The GPU falls off the bus: every query answers `GPU_IS_LOST`.
    pub fn lost(&mut self) -> &mut Self {
        self.set("lost", true)
    }

    /// The GPU answers again.
    pub fn found(&mut self) -> &mut Self {
        self.set("lost", false)
    }
}
