//! The JSON file that says which GPUs the fake has and what each query
//! answers.
//!
//! ```json
//! { "driver_version": "550.54.15",
//!   "gpus": [ { "uuid": "GPU-0", "name": "NVIDIA A10G", "pci_bus_id": "00000000:00:1E.0",
//!               "minor_number": 0, "utilization": {"gpu": 87, "memory": 40},
//!               "encoder_utilization": 0, "decoder_utilization": null,
//!               "memory": {"total": 24, "used": 4, "free": 20, "reserved": 0},
//!               "power_usage_mw": 201500, "temperature_gpu_c": 55, "sm_clock_mhz": 1710,
//!               "memory_clock_mhz": 6251, "total_energy_mj": 123456789,
//!               "pcie_replay_counter": {"error": "NO_PERMISSION"}, "lost": false } ] }
//! ```
//! A value answers the query; `null` or a missing key answers
//! `NVML_ERROR_NOT_SUPPORTED` (as a GPU without that sensor does);
//! `{"error": NAME}` answers `NVML_ERROR_<NAME>`; `"lost": true` makes every
//! query on that GPU answer `NVML_ERROR_GPU_IS_LOST`.
//!
//! A GPU with `"mig": [...]` is in MIG mode and has those MIG devices
//! (`nvmlDeviceGetMigDeviceHandleByIndex` 0, 1, …; up to [`MAX_MIG_DEVICES`]
//! slots, the rest answer `NOT_FOUND`, as on an A100 with free slices):
//! ```json
//! "mig": [ { "uuid": "MIG-…", "name": "NVIDIA A100-SXM4-40GB MIG 1g.5gb",
//!            "gpu_instance_id": 7, "compute_instance_id": 0,
//!            "memory": {"total": 5, "used": 1, "free": 4}, "graphics_util": 42.5 } ]
//! ```
//! `graphics_util` (percent) is what GPM's `GRAPHICS_UTIL` metric answers
//! between two samples of that GPU instance (`nvmlGpmMigSampleGet`). A GPU
//! without `mig` answers `nvmlDeviceGetMigMode` with `NOT_SUPPORTED`.

use serde::{Deserialize, Serialize};

use crate::code::{self, Return};

/// The whole fake machine.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What `nvmlSystemGetDriverVersion` answers.
    #[serde(default = "default_driver_version")]
    pub driver_version: String,
    /// The GPUs, in NVML index order.
    pub gpus: Vec<GpuConfig>,
}

/// What the driver version is when a config names none.
pub fn default_driver_version() -> String {
    "550.54.15".to_owned()
}

/// One GPU's answers.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GpuConfig {
    /// Fell off the bus: every query answers `GPU_IS_LOST`.
    #[serde(default)]
    pub lost: bool,
    /// `nvmlDeviceGetUUID`.
    #[serde(default)]
    pub uuid: Field<String>,
    /// `nvmlDeviceGetName`.
    #[serde(default)]
    pub name: Field<String>,
    /// `nvmlDeviceGetPciInfo_v3`, as `domain:bus:device.function` in hex.
    #[serde(default)]
    pub pci_bus_id: Field<String>,
    /// `nvmlDeviceGetMinorNumber`.
    #[serde(default)]
    pub minor_number: Field<u32>,
    /// `nvmlDeviceGetUtilizationRates`, percent.
    #[serde(default)]
    pub utilization: Field<Utilization>,
    /// `nvmlDeviceGetEncoderUtilization`, percent.
    #[serde(default)]
    pub encoder_utilization: Field<u32>,
    /// `nvmlDeviceGetDecoderUtilization`, percent.
    #[serde(default)]
    pub decoder_utilization: Field<u32>,
    /// `nvmlDeviceGetMemoryInfo_v2`, bytes.
    #[serde(default)]
    pub memory: Field<Memory>,
    /// `nvmlDeviceGetPowerUsage`, milliwatts.
    #[serde(default)]
    pub power_usage_mw: Field<u32>,
    /// `nvmlDeviceGetTemperature(NVML_TEMPERATURE_GPU)`, °C.
    #[serde(default)]
    pub temperature_gpu_c: Field<u32>,
    /// `nvmlDeviceGetClockInfo(NVML_CLOCK_SM)`, MHz.
    #[serde(default)]
    pub sm_clock_mhz: Field<u32>,
    /// `nvmlDeviceGetClockInfo(NVML_CLOCK_MEM)`, MHz.
    #[serde(default)]
    pub memory_clock_mhz: Field<u32>,
    /// `nvmlDeviceGetTotalEnergyConsumption`, millijoules.
    #[serde(default)]
    pub total_energy_mj: Field<u64>,
    /// `nvmlDeviceGetPcieReplayCounter`.
    #[serde(default)]
    pub pcie_replay_counter: Field<u32>,
    /// MIG mode on, with these MIG devices; None: a GPU without MIG support.
    #[serde(default)]
    pub mig: Option<Vec<MigConfig>>,
}

/// The most MIG devices one GPU has slots for (A100/H100: 7).
pub const MAX_MIG_DEVICES: u32 = 7;

/// One MIG device's answers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MigConfig {
    /// `nvmlDeviceGetUUID` on the MIG handle.
    #[serde(default)]
    pub uuid: Field<String>,
    /// `nvmlDeviceGetName` on the MIG handle (`… MIG <profile>`).
    #[serde(default)]
    pub name: Field<String>,
    /// `nvmlDeviceGetGpuInstanceId`.
    pub gpu_instance_id: u32,
    /// `nvmlDeviceGetComputeInstanceId`.
    #[serde(default)]
    pub compute_instance_id: u32,
    /// `nvmlDeviceGetMemoryInfo_v2` on the MIG handle.
    #[serde(default)]
    pub memory: Field<Memory>,
    /// GPM `GRAPHICS_UTIL` of its GPU instance, percent.
    #[serde(default)]
    pub graphics_util: Field<f64>,
}

/// `nvmlUtilization_t`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Utilization {
    /// Percent of time a kernel ran.
    pub gpu: u32,
    /// Percent of time memory was read or written.
    pub memory: u32,
}

/// `nvmlMemory_v2_t` without its version.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    /// Framebuffer size.
    pub total: u64,
    /// Reserved by the driver.
    #[serde(default)]
    pub reserved: u64,
    /// Free.
    pub free: u64,
    /// Used.
    pub used: u64,
}

/// What one query answers.
#[derive(Debug, Default, Clone, PartialEq)]
pub enum Field<T> {
    /// `NVML_SUCCESS` with this value.
    Value(T),
    /// `NVML_ERROR_NOT_SUPPORTED` (`null` or a missing key).
    #[default]
    NotSupported,
    /// `NVML_ERROR_<name>`.
    Error(String),
}

#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum RawField<T> {
    Value(T),
    Error { error: String },
}

impl<T: Serialize> Serialize for Field<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Value(v) => Some(RawField::Value(v)),
            Field::NotSupported => None,
            Field::Error(error) => Some(RawField::Error { error: error.clone() }),
        }
        .serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<RawField<T>>::deserialize(d)? {
            None => Field::NotSupported,
            Some(RawField::Value(v)) => Field::Value(v),
            Some(RawField::Error { error }) => Field::Error(error),
        })
    }
}

impl<T> Field<T> {
    /// The value, if the query answers one.
    pub fn value(&self) -> Option<&T> {
        match self {
            Field::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The value, or the return code the query answers.
    pub fn get(&self) -> Result<&T, Return> {
        match self {
            Field::Value(v) => Ok(v),
            Field::NotSupported => Err(code::NOT_SUPPORTED),
            // Names were checked by `Config::parse`; UNKNOWN is unreachable in practice.
            Field::Error(name) => Err(code::by_name(name).unwrap_or(code::UNKNOWN)),
        }
    }

    fn check_error_name(&self, gpu: usize, key: &str) -> Result<(), String> {
        match self {
            Field::Error(name) if code::by_name(name).is_none_or(|c| c == code::SUCCESS) => {
                Err(format!("gpus[{gpu}].{key}: unknown error {name:?}; allowed: {}", code::error_names()))
            }
            _ => Ok(()),
        }
    }
}

impl Config {
    /// Parses and checks a config file's text; the error names the bad field.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(text).map_err(|e| e.to_string())?;
        for (i, g) in config.gpus.iter().enumerate() {
            g.uuid.check_error_name(i, "uuid")?;
            g.name.check_error_name(i, "name")?;
            g.pci_bus_id.check_error_name(i, "pci_bus_id")?;
            g.minor_number.check_error_name(i, "minor_number")?;
            g.utilization.check_error_name(i, "utilization")?;
            g.encoder_utilization.check_error_name(i, "encoder_utilization")?;
            g.decoder_utilization.check_error_name(i, "decoder_utilization")?;
            g.memory.check_error_name(i, "memory")?;
            g.power_usage_mw.check_error_name(i, "power_usage_mw")?;
            g.temperature_gpu_c.check_error_name(i, "temperature_gpu_c")?;
            g.sm_clock_mhz.check_error_name(i, "sm_clock_mhz")?;
            g.memory_clock_mhz.check_error_name(i, "memory_clock_mhz")?;
            g.total_energy_mj.check_error_name(i, "total_energy_mj")?;
            g.pcie_replay_counter.check_error_name(i, "pcie_replay_counter")?;
            for (key, s, max) in [("uuid", &g.uuid, 96), ("name", &g.name, 96)] {
                if let Field::Value(s) = s {
                    check_c_string(i, key, s, max)?;
                }
            }
            for (m, mig) in g.mig.iter().flatten().enumerate() {
                let key = |k: &str| format!("mig[{m}].{k}");
                mig.uuid.check_error_name(i, &key("uuid"))?;
                mig.name.check_error_name(i, &key("name"))?;
                mig.memory.check_error_name(i, &key("memory"))?;
                mig.graphics_util.check_error_name(i, &key("graphics_util"))?;
                for (k, s) in [("uuid", &mig.uuid), ("name", &mig.name)] {
                    if let Field::Value(s) = s {
                        check_c_string(i, &key(k), s, 96)?;
                    }
                }
            }
            if g.mig.as_ref().is_some_and(|m| m.len() > MAX_MIG_DEVICES as usize) {
                return Err(format!("gpus[{i}].mig: at most {MAX_MIG_DEVICES} MIG devices"));
            }
            if let Field::Value(id) = &g.pci_bus_id {
                check_c_string(i, "pci_bus_id", id, 32)?;
                parse_bus_id(id).ok_or_else(|| {
                    format!("gpus[{i}].pci_bus_id: {id:?} is not `domain:bus:device.function` in hex")
                })?;
            }
        }
        if config.driver_version.len() >= 80 || config.driver_version.contains('\0') {
            return Err("driver_version: at most 79 bytes, no NUL".to_owned());
        }
        Ok(config)
    }

    /// The GPU at `index`, or the code a device query on it answers.
    pub fn gpu(&self, index: usize) -> Result<&GpuConfig, Return> {
        let gpu = self.gpus.get(index).ok_or(code::INVALID_ARGUMENT)?;
        if gpu.lost { Err(code::GPU_IS_LOST) } else { Ok(gpu) }
    }
}

fn check_c_string(gpu: usize, key: &str, s: &str, buffer: usize) -> Result<(), String> {
    if s.len() >= buffer || s.contains('\0') {
        return Err(format!("gpus[{gpu}].{key}: at most {} bytes and no NUL", buffer - 1));
    }
    Ok(())
}

/// `(domain, bus, device)` from `domain:bus:device.function` (hex).
pub fn parse_bus_id(id: &str) -> Option<(u32, u32, u32)> {
    let (domain, rest) = id.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (device, function) = rest.split_once('.')?;
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    hex(function)?;
    Some((hex(domain)?, hex(bus)?, hex(device)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_null_missing_and_errors_map_to_nvml_answers() {
        let c = Config::parse(
            r#"{"gpus":[{"uuid":"GPU-a","power_usage_mw":null,"memory":{"total":10,"free":6,"used":4},
                "pcie_replay_counter":{"error":"NO_PERMISSION"}}]}"#,
        )
        .unwrap();
        let g = c.gpu(0).unwrap();
        assert_eq!(g.uuid.get(), Ok(&"GPU-a".to_owned()));
        assert_eq!(g.power_usage_mw.get(), Err(code::NOT_SUPPORTED));
        assert_eq!(g.temperature_gpu_c.get(), Err(code::NOT_SUPPORTED));
        assert_eq!(g.memory.get().map(|m| (m.total, m.reserved)), Ok((10, 0)));
        assert_eq!(g.pcie_replay_counter.get(), Err(4));
        assert_eq!(c.gpu(1).err(), Some(code::INVALID_ARGUMENT));
        assert_eq!(c.driver_version, "550.54.15");
    }

    #[test]
    fn a_lost_gpu_answers_gpu_is_lost() {
        let c = Config::parse(r#"{"gpus":[{"uuid":"GPU-a","lost":true}]}"#).unwrap();
        assert_eq!(c.gpu(0).err(), Some(code::GPU_IS_LOST));
    }

    #[test]
    fn bad_configs_name_the_field() {
        for (text, needle) in [
            (r#"{"gpus":[{"uuid":"GPU-a","powr":1}]}"#, "unknown field `powr`"),
            (r#"{"gpus":[{"sm_clock_mhz":{"error":"MELTED"}}]}"#, "gpus[0].sm_clock_mhz: unknown error \"MELTED\""),
            (r#"{"gpus":[{"pci_bus_id":"0:1"}]}"#, "gpus[0].pci_bus_id"),
            (r#"{"gpus":[{"minor_number":-1}]}"#, "did not match any variant"),
            (r#"{"gpu":[]}"#, "unknown field `gpu`"),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn mig_devices_are_parsed_and_checked() {
        let c = Config::parse(
            r#"{"gpus":[{"uuid":"GPU-a","mig":[{"uuid":"MIG-1","gpu_instance_id":7,"graphics_util":12.5}]}]}"#,
        )
        .unwrap();
        let mig = &c.gpu(0).unwrap().mig.as_ref().unwrap()[0];
        assert_eq!((mig.gpu_instance_id, mig.graphics_util.get()), (7, Ok(&12.5)));
        let e = Config::parse(r#"{"gpus":[{"mig":[{"gpu_instance_id":1,"memory":{"error":"NOPE"}}]}]}"#).unwrap_err();
        assert!(e.contains("gpus[0].mig[0].memory: unknown error"), "{e}");
        let e = Config::parse(r#"{"gpus":[{"mig":[{"uuid":"MIG-1"}]}]}"#).unwrap_err();
        assert!(e.contains("gpu_instance_id"), "{e}");
    }

    #[test]
    fn a_config_written_back_reads_the_same() {
        let text = r#"{"driver_version":"1","gpus":[{"uuid":"GPU-a","power_usage_mw":null,
            "pcie_replay_counter":{"error":"NO_PERMISSION"},"mig":[{"gpu_instance_id":7,"graphics_util":1.5}]}]}"#;
        let c = Config::parse(text).unwrap();
        let again = Config::parse(&serde_json::to_string(&c).unwrap()).unwrap();
        let g = again.gpu(0).unwrap();
        assert_eq!(
            (g.uuid.value(), g.power_usage_mw.get(), g.pcie_replay_counter.get()),
            (Some(&"GPU-a".to_owned()), Err(code::NOT_SUPPORTED), Err(4))
        );
        assert_eq!(g.mig.as_ref().unwrap()[0].graphics_util.value(), Some(&1.5));
    }

    #[test]
    fn bus_ids_parse_as_hex() {
        assert_eq!(parse_bus_id("00000000:00:1E.0"), Some((0, 0, 0x1e)));
        assert_eq!(parse_bus_id("00000001:AF:00.1"), Some((1, 0xaf, 0)));
        assert_eq!(parse_bus_id("00000000:00:1E"), None);
    }
}
