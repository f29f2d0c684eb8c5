use super::*;
use edge_telemetry::proto::{Gpu, MigInstance, NeuronCore, NeuronInstance};

fn devices(resource: &str, ids: &[&str]) -> v1::ContainerDevices {
    v1::ContainerDevices {
        resource_name: resource.to_owned(),
        device_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
        topology: None,
    }
}

fn pod(ns: &str, name: &str, container: &str, devs: Vec<v1::ContainerDevices>) -> v1::PodResources {
    v1::PodResources {
        name: name.to_owned(),
        namespace: ns.to_owned(),
        containers: vec![v1::ContainerResources { name: container.to_owned(), devices: devs, ..Default::default() }],
    }
}

fn holder(ns: &str, pod: &str, container: &str) -> PodRef {
    PodRef { namespace: ns.into(), pod: pod.into(), container: container.into() }
}

#[test]
fn device_ids_map_to_gpus_mig_devices_and_neuroncores() {
    let list = v1::ListPodResourcesResponse {
        pod_resources: vec![
            pod("ml", "a", "w", vec![devices("nvidia.com/gpu", &["GPU-1"])]),
            pod("ml", "b", "w", vec![devices("nvidia.com/mig-1g.5gb", &["MIG-7"])]),
            pod("ml", "c", "w", vec![devices("nvidia.com/gpu", &["GPU-2::0"])]),
            pod("ml", "d", "w", vec![devices("nvidia.com/gpu", &["GPU-2::1"])]),
            pod("nx", "e", "w", vec![devices("aws.amazon.com/neuroncore", &["0", "1"])]),
            pod("nx", "f", "w", vec![devices("aws.amazon.com/neurondevice", &["1"])]),
            pod("nx", "g", "w", vec![devices("aws.amazon.com/neuron", &["x"]), devices("cpu.example/thing", &["1"])]),
        ],
    };
    let alloc = v1::AllocatableResourcesResponse {
        devices: vec![devices("nvidia.com/gpu", &["GPU-1", "GPU-2::0", "GPU-2::1", "GPU-3"])],
        ..Default::default()
    };
    let (a, skipped) = Attribution::from_kubelet(&list, &alloc);
    assert_eq!(skipped, [r#"aws.amazon.com/neuron "x""#]);
    assert_eq!(a.nvidia["GPU-1"], [holder("ml", "a", "w")]);
    assert_eq!(a.nvidia["MIG-7"], [holder("ml", "b", "w")]);
    assert_eq!(a.nvidia["GPU-2"], [holder("ml", "c", "w"), holder("ml", "d", "w")], "time-sliced replicas");
    assert_eq!(a.neuron_cores.keys().copied().collect::<Vec<_>>(), [0, 1]);
    assert_eq!(a.neuron_devices[&1], [holder("nx", "f", "w")]);
    let gpu = a.allocatable.iter().find(|r| r.resource_name == "nvidia.com/gpu").unwrap();
    assert_eq!((gpu.devices, gpu.assigned), (4, 3));

    let mut snap = NodeSnapshot {
        gpus: vec![
            Gpu { uuid: "GPU-1".into(), ..Default::default() },
            Gpu {
                uuid: "GPU-9".into(),
                mig_instances: vec![MigInstance { uuid: "MIG-7".into(), ..Default::default() }],
                ..Default::default()
            },
        ],
        neuron_cores: (0..4).map(|index| NeuronCore { index, ..Default::default() }).collect(),
        neuron_instance: Some(NeuronInstance { neuroncores_per_device: Some(2), ..Default::default() }),
        ..Default::default()
    };
    a.apply(&mut snap);
    assert_eq!(snap.gpus[0].pods, [holder("ml", "a", "w")]);
    assert!(snap.gpus[1].pods.is_empty());
    assert_eq!(snap.gpus[1].mig_instances[0].pods, [holder("ml", "b", "w")]);
    let pods = |i: usize| snap.neuron_cores[i].pods.iter().map(|p| p.pod.as_str()).collect::<Vec<_>>();
    assert_eq!((pods(0), pods(1), pods(2), pods(3)), (vec!["e"], vec!["e"], vec!["f"], vec!["f"]));

    // The next answer replaces what the last one wrote.
    Attribution::default().apply(&mut snap);
    assert!(snap.gpus[0].pods.is_empty() && snap.neuron_cores[2].pods.is_empty() && snap.allocatable.is_empty());
}

#[test]
fn neuron_devices_without_a_core_count_attribute_no_cores() {
    let list = v1::ListPodResourcesResponse {
        pod_resources: vec![pod("nx", "f", "w", vec![devices("aws.amazon.com/neuron", &["0"])])],
    };
    let (a, _) = Attribution::from_kubelet(&list, &Default::default());
    let mut snap = NodeSnapshot { neuron_cores: vec![NeuronCore::default()], ..Default::default() };
    a.apply(&mut snap);
    assert!(snap.neuron_cores[0].pods.is_empty());
}

#[tokio::test]
async fn disabled_is_absent() {
    let off = PodResourcesCollector::spawn(
        PodResourcesSettings { socket: None, period: Duration::from_secs(1), timeout: Duration::from_secs(1) },
        watch::channel(false).1,
    );
    let r = off.latest();
    assert_eq!((r.health.state, r.health.message.as_str()), (CollectorState::Absent as i32, "disabled"));
}
