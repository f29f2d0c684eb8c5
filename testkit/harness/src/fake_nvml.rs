//! Writes the config file of the fake NVML library with that library's own
//! types (`fake_nvml::config`, the one definition of the format), so a test
//! says "two GPUs, the second one lost" instead of spelling out JSON, and a
//! misspelt key fails where the test sets it.
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

use fake_nvml::config::{Config as Machine, Field, GpuConfig, Memory, MigConfig, Utilization};
use serde_json::Value;

/// The environment variable the fake library reads its config path from.
pub use fake_nvml::state::CONFIG_ENV;

/// The fake machine: its GPUs in NVML index order.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The GPUs; index `i` is NVML device `i`.
    pub gpus: Vec<Gpu>,
}

/// One GPU's answers.
#[derive(Debug, Clone)]
pub struct Gpu {
    config: GpuConfig,
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
        let machine = Machine {
            driver_version: fake_nvml::config::default_driver_version(),
            gpus: self.gpus.iter().map(|g| g.config.clone()).collect(),
        };
        let text = serde_json::to_string_pretty(&machine).expect("serialise fake NVML config");
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
        let config = GpuConfig {
            lost: false,
            uuid: Field::Value(format!("GPU-00000000-0000-0000-0000-{index:012x}")),
            name: Field::Value("NVIDIA A10G".to_owned()),
            pci_bus_id: Field::Value(format!("00000000:{:02X}:00.0", 0x10 + index)),
            minor_number: Field::Value(index),
            utilization: Field::Value(Utilization { gpu: 10 + index, memory: 5 + index }),
            encoder_utilization: Field::Value(1 + index),
            decoder_utilization: Field::Value(2 + index),
            memory: Field::Value(Memory { total, reserved, used, free: total - reserved - used }),
            power_usage_mw: Field::Value(60_500 + 1_000 * index),
            temperature_gpu_c: Field::Value(40 + index),
            sm_clock_mhz: Field::Value(1_710 - index),
            memory_clock_mhz: Field::Value(6_251 - index),
            total_energy_mj: Field::Value(1_000_000 * (i + 1)),
            pcie_replay_counter: Field::Value(index),
            mig: None,
        };
        Self { config }
    }

    /// The UUID this GPU reports (empty if unset).
    pub fn uuid(&self) -> &str {
        self.config.uuid.value().map_or("", String::as_str)
    }

    /// Sets `key` (e.g. `power_usage_mw`, `utilization`) to `value`, as the
    /// config file would spell it; panics naming the key when the format has
    /// no such key or the value does not fit it.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        let Value::Object(mut fields) = serde_json::to_value(&self.config).expect("serialise a GPU") else {
            unreachable!("a GPU serialises to an object")
        };
        fields.insert(key.to_owned(), value.into());
        self.config =
            serde_json::from_value(Value::Object(fields)).unwrap_or_else(|e| panic!("fake NVML GPU key {key:?}: {e}"));
        self
    }

    /// Makes the query behind `key` answer `NVML_ERROR_NOT_SUPPORTED`.
    pub fn unsupported(&mut self, key: &str) -> &mut Self {
        self.set(key, Value::Null)
    }

    /// Makes the query behind `key` answer `NVML_ERROR_<name>`.
    pub fn error(&mut self, key: &str, name: &str) -> &mut Self {
        self.set(key, serde_json::json!({ "error": name }))
    }

    /// Puts the GPU in MIG mode with `profiles.len()` MIG devices: device
    /// `k` has profile `profiles[k]`, GPU instance id `7 + k`, UUID
    /// [`Gpu::mig_uuid`]`(k)`, 1 GiB used of 5 GiB and `graphics_util`
    /// `25 × (k + 1)` percent. Under MIG the GPU's own utilisation is not
    /// measured, so it answers `NOT_SUPPORTED`.
    pub fn mig(&mut self, profiles: &[&str]) -> &mut Self {
        const GIB: u64 = 1024 * 1024 * 1024;
        let devices = profiles
            .iter()
            .enumerate()
            .map(|(k, p)| MigConfig {
                uuid: Field::Value(self.mig_uuid(k)),
                name: Field::Value(format!("NVIDIA A100-SXM4-40GB MIG {p}")),
                gpu_instance_id: 7 + k as u32,
                compute_instance_id: 0,
                memory: Field::Value(Memory { total: 5 * GIB, reserved: 0, used: GIB, free: 4 * GIB }),
                graphics_util: Field::Value(25.0 * (k as f64 + 1.0)),
            })
            .collect();
        self.config.mig = Some(devices);
        self.config.utilization = Field::NotSupported;
        self
    }

    /// The UUID of this GPU's MIG device `k` (see [`Gpu::mig`]).
    pub fn mig_uuid(&self, k: usize) -> String {
        format!("MIG-{}-{k}", self.uuid().trim_start_matches("GPU-"))
    }

    /// The GPU falls off the bus: every query answers `GPU_IS_LOST`.
    pub fn lost(&mut self) -> &mut Self {
        self.config.lost = true;
        self
    }

    /// The GPU answers again.
    pub fn found(&mut self) -> &mut Self {
        self.config.lost = false;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_harness_writes_the_library_reads() {
        let mut c = Config::with_gpus(2);
        c.gpu(0).unsupported("power_usage_mw").error("temperature_gpu_c", "GPU_IS_LOST");
        c.gpu(1).set("utilization", serde_json::json!({"gpu": 77, "memory": 33})).mig(&["1g.5gb"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nvml.json");
        c.write(&path);
        let read = Machine::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let (g0, g1) = (read.gpu(0).unwrap(), read.gpu(1).unwrap());
        assert_eq!(g0.power_usage_mw.get(), Err(fake_nvml::code::NOT_SUPPORTED));
        assert_eq!(g0.temperature_gpu_c.get(), Err(fake_nvml::code::GPU_IS_LOST));
        assert_eq!(g1.utilization, Field::NotSupported, "MIG mode turns GPU utilisation off");
        assert_eq!(g1.mig.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    #[should_panic(expected = "fake NVML GPU key \"powr_usage\"")]
    fn a_misspelt_key_fails_where_it_is_set() {
        Config::with_gpus(1).gpu(0).set("powr_usage", 1);
    }
}
