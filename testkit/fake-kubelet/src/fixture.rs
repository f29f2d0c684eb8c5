//! The JSON file that says which pods hold which devices and what the node
//! can allocate.
//!
//! ```json
//! { "pods": [ { "namespace": "inference", "name": "sd-nvidia-0",
//!               "containers": [ { "name": "worker",
//!                                 "devices": [ { "resource_name": "nvidia.com/gpu",
//!                                                "device_ids": ["GPU-…"] } ] } ] } ],
//!   "allocatable": [ { "resource_name": "nvidia.com/gpu", "device_ids": ["GPU-…", "GPU-…"] } ],
//!   "delay_ms": 0 }
//! ```
//! `delay_ms` holds every answer back that long: a kubelet that is slow to
//! answer. The file is read again for every request, so a test changes the
//! answers by rewriting it while the agent runs.

use serde::Deserialize;

use edge_telemetry::podresources as v1;

/// The whole fake node.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// What `List` answers.
    #[serde(default)]
    pub pods: Vec<Pod>,
    /// What `GetAllocatableResources` answers.
    #[serde(default)]
    pub allocatable: Vec<Devices>,
    /// Milliseconds every answer is held back.
    #[serde(default)]
    pub delay_ms: u64,
}

/// One pod's containers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// Its containers.
    #[serde(default)]
    pub containers: Vec<Container>,
}

/// One container's devices.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    /// The container's name.
    pub name: String,
    /// Its devices, per resource name.
    #[serde(default)]
    pub devices: Vec<Devices>,
}

/// Device ids under one resource name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Devices {
    /// e.g. `nvidia.com/gpu`.
    pub resource_name: String,
    /// What the device plugin named the devices (GPU/MIG UUIDs, Neuron indices).
    pub device_ids: Vec<String>,
}

impl Fixture {
    /// Parses a fixture file's text; the error names the bad field.
    pub fn parse(text: &str) -> Result<Self, String> {
        let fixture: Fixture = serde_json::from_str(text).map_err(|e| e.to_string())?;
        for (i, p) in fixture.pods.iter().enumerate() {
            if p.name.is_empty() || p.namespace.is_empty() {
                return Err(format!("pods[{i}]: name and namespace must not be empty"));
            }
        }
        Ok(fixture)
    }

    /// `List`'s answer.
    pub fn list(&self) -> v1::ListPodResourcesResponse {
        let pod_resources = self
            .pods
            .iter()
            .map(|p| v1::PodResources {
                name: p.name.clone(),
                namespace: p.namespace.clone(),
                containers: p
                    .containers
                    .iter()
                    .map(|c| v1::ContainerResources {
                        name: c.name.clone(),
                        devices: c.devices.iter().map(Devices::to_proto).collect(),
                        ..Default::default()
                    })
                    .collect(),
            })
            .collect();
        v1::ListPodResourcesResponse { pod_resources }
    }

    /// `GetAllocatableResources`' answer.
    pub fn allocatable(&self) -> v1::AllocatableResourcesResponse {
        v1::AllocatableResourcesResponse {
            devices: self.allocatable.iter().map(Devices::to_proto).collect(),
            ..Default::default()
        }
    }
}

impl Devices {
    fn to_proto(&self) -> v1::ContainerDevices {
        v1::ContainerDevices {
            resource_name: self.resource_name.clone(),
            device_ids: self.device_ids.clone(),
            topology: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixture_becomes_the_kubelets_answers() {
        let f = Fixture::parse(
            r#"{"pods":[{"namespace":"ns","name":"p","containers":[{"name":"c",
                "devices":[{"resource_name":"nvidia.com/gpu","device_ids":["GPU-1"]}]}]}],
                "allocatable":[{"resource_name":"nvidia.com/gpu","device_ids":["GPU-1","GPU-2"]}]}"#,
        )
        .unwrap();
        let list = f.list();
        assert_eq!(list.pod_resources[0].containers[0].devices[0].device_ids, ["GPU-1"]);
        assert_eq!(f.allocatable().devices[0].device_ids.len(), 2);
        assert_eq!(f.delay_ms, 0);
    }

    #[test]
    fn bad_fixtures_name_the_field() {
        for (text, needle) in [
            (r#"{"pod":[]}"#, "unknown field `pod`"),
            (r#"{"pods":[{"namespace":"","name":"p"}]}"#, "pods[0]"),
            (
                r#"{"pods":[{"namespace":"n","name":"p","containers":[{"name":"c","devices":[{"resource_name":"x"}]}]}]}"#,
                "device_ids",
            ),
        ] {
            let e = Fixture::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
