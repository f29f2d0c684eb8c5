use std::collections::BTreeMap;

use edge_telemetry::proto::{Gpu, Host, MigInstance, NeuronCore, Node, Worker};

use super::*;

#[test]
fn wake_signals_add_to_sums_and_activate_any_metric() {
    let queue = trigger("nvidia", "queueDepth", None);
    let util = trigger("nvidia", "utilization", None);
    let none = Wake::default();
    let demand = Wake { demand: 3, spill: 0.0 };
    let spill = Wake { demand: 0, spill: 2.5 };
    let no_agents = || Err(EvalError::NoFreshAgents { zone: None, stale_after: Duration::from_secs(6) });
    assert_eq!(with_wake(&queue, Ok(0.0), none), Ok(Reading { value: 0.0, active: false }));
    assert_eq!(with_wake(&queue, Ok(2.0), none), Ok(Reading { value: 2.0, active: true }));
    assert_eq!(with_wake(&queue, Ok(0.0), demand), Ok(Reading { value: 3.0, active: true }));
    assert_eq!(with_wake(&queue, Ok(1.0), spill), Ok(Reading { value: 3.5, active: true }));
    assert_eq!(with_wake(&queue, no_agents(), demand), Ok(Reading { value: 3.0, active: true }));
    assert!(with_wake(&queue, no_agents(), none).is_err(), "no signal: the error stays");
    assert_eq!(with_wake(&util, Ok(40.0), demand), Ok(Reading { value: 40.0, active: true }));
    assert_eq!(with_wake(&util, no_agents(), demand), Ok(Reading { value: 1.0, active: true }), "its target");
    // activationValue does not hold back a wake.
    let mut high = queue.clone();
    high.activation = 10.0;
    assert!(with_wake(&high, Ok(0.0), demand).unwrap().active);
    assert!(!with_wake(&high, Ok(5.0), none).unwrap().active);
}

fn worker(deployment: &str, accelerator: &str, queue: u32, in_flight: u32) -> Worker {
    Worker {
        worker_id: format!("{deployment}-{queue}-{in_flight}"),
        namespace: "ns".into(),
        deployment: deployment.into(),
        accelerator: accelerator.into(),
        queue_depth: queue,
        in_flight,
        capacity: 8,
        ..Default::default()
    }
}

fn gpu(util: Option<u32>, used: u64, healthy: bool) -> Gpu {
    Gpu {
        healthy,
        gpu_utilization_percent: util,
        framebuffer_used_bytes: Some(used),
        framebuffer_total_bytes: Some(1000),
        ..Default::default()
    }
}

fn trigger(accel: &str, metric: &str, zone: Option<&str>) -> Trigger {
    let mut m: HashMap<String, String> =
        [("acceleratorType", accel), ("metric", metric), ("deployment", "sd"), ("targetValue", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    if let Some(z) = zone {
        m.insert("zone".into(), z.into());
    }
    Trigger::parse("ns", &m).unwrap()
}

fn key(accel: AcceleratorType) -> WorkerClass {
    WorkerClass { accelerator: accel, namespace: "ns".into(), deployment: "sd".into(), labels: BTreeMap::new() }
}

#[test]
fn contribution_sums_workers_per_group_and_averages_devices() {
    let snap = NodeSnapshot {
        node: Some(Node { name: "n1".into(), zone: "lax-1a".into(), ..Default::default() }),
        workers: vec![
            worker("sd", "nvidia", 2, 1),
            worker("sd", "nvidia", 3, 1),
            worker("sd", "cpu", 7, 0),
            worker("other", "nvidia", 1, 0),
            worker("sd", "tpu", 9, 9),
        ],
        gpus: vec![gpu(Some(80), 500, true), gpu(Some(40), 250, true), gpu(Some(100), 1000, false), gpu(None, 0, true)],
        neuron_cores: vec![
            NeuronCore { utilization_ratio: Some(0.5), ..Default::default() },
            NeuronCore { utilization_ratio: None, ..Default::default() },
        ],
        host: Some(Host {
            cpu_utilization_ratio: Some(0.25),
            memory_total_bytes: Some(400),
            memory_available_bytes: Some(100),
            ..Default::default()
        }),
        ..Default::default()
    };
    let c = contribution(&snap);
    assert_eq!(c.zone, "lax-1a");
    assert!(c.endpoints.is_empty(), "no worker advertises an endpoint");
    assert_eq!(c.groups.len(), 3, "{:?}", c.groups);
    assert_eq!(
        c.groups[&key(AcceleratorType::Nvidia)],
        WorkerTotals { workers: 2, queue_depth: 5, in_flight: 2, capacity: 16, ..Default::default() }
    );
    assert_eq!(c.groups[&key(AcceleratorType::Cpu)].queue_depth, 7);
    // The unhealthy GPU is left out, the one without utilisation only counts for memory.
    assert_eq!(c.usage.gpu_utilization, Mean { sum: 120.0, count: 2 });
    assert_eq!(c.usage.gpu_memory, Mean { sum: 50.0 + 25.0, count: 3 });
    assert_eq!(c.usage.neuron_utilization, Mean { sum: 50.0, count: 1 });
    assert_eq!(c.usage.cpu_utilization, Mean { sum: 25.0, count: 1 });
    assert_eq!(c.usage.cpu_memory, Mean { sum: 75.0, count: 1 });
}

#[test]
fn workers_with_other_labels_are_other_classes() {
    let labelled = |queue: u32, tier: &str| Worker {
        labels: [("app".to_owned(), "sd".to_owned()), ("tier".to_owned(), tier.to_owned())].into(),
        ..worker("sd", "cpu", queue, 0)
    };
    let snap = NodeSnapshot {
        workers: vec![labelled(1, "gold"), labelled(2, "gold"), labelled(4, "batch"), worker("sd", "cpu", 8, 0)],
        ..Default::default()
    };
    let c = contribution(&snap);
    assert_eq!(c.groups.len(), 3, "{:?}", c.groups);
    let queue_of = |selector: &str| {
        let m: HashMap<String, String> =
            [("acceleratorType", "cpu"), ("labelSelector", selector), ("targetValue", "1")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        let t = Trigger::parse("ns", &m).unwrap();
        c.groups.iter().filter(|(k, _)| t.key.selects(k)).map(|(_, t)| t.queue_depth).sum::<u64>()
    };
    assert_eq!(queue_of("tier=gold"), 3);
    assert_eq!(queue_of("app=sd,tier!=gold"), 4);
    // `!=` also picks the unlabelled worker, as a Kubernetes selector would.
    assert_eq!(queue_of("tier!=gold"), 12);
    assert_eq!(queue_of("!tier"), 8);
    // The Deployment selector still counts them all.
    assert_eq!(c.groups.iter().filter(|(k, _)| k.deployment == "sd").map(|(_, t)| t.queue_depth).sum::<u64>(), 15);
}

#[test]
fn advertised_endpoints_carry_their_node_and_queue() {
    let snap = NodeSnapshot {
        node: Some(Node { name: "n1".into(), zone: "lax-1a".into(), ..Default::default() }),
        workers: vec![
            Worker { endpoint: "http://10.0.0.1:30080".into(), pod: "sd-a".into(), ..worker("sd", "cpu", 2, 1) },
            worker("sd", "cpu", 5, 0),
            Worker { endpoint: "http://10.0.0.1:30081".into(), ..worker("sd", "tpu", 1, 0) },
        ],
        ..Default::default()
    };
    let c = contribution(&snap);
    assert_eq!(c.endpoints.len(), 1, "only the known accelerator's advertised worker: {:?}", c.endpoints);
    let e = &c.endpoints[0];
    assert_eq!(
        (e.url.as_str(), e.node.as_str(), e.zone.as_str(), e.pod.as_str()),
        ("http://10.0.0.1:30080", "n1", "lax-1a", "sd-a")
    );
    assert_eq!((e.accelerator, e.queue_depth, e.in_flight, e.capacity), (AcceleratorType::Cpu, 2, 1, 8));
}

fn usage(gpu: &[f64], neuron: &[f64]) -> NodeUsage {
    let mut u = NodeUsage::default();
    gpu.iter().for_each(|v| u.gpu_utilization.add(*v));
    neuron.iter().for_each(|v| u.neuron_utilization.add(*v));
    u
}

const STALE: Duration = Duration::from_secs(5);

#[test]
fn sums_fresh_members_and_skips_stale_ones_and_other_zones() {
    let t1 = WorkerTotals { workers: 1, queue_depth: 3, in_flight: 1, capacity: 4, ..Default::default() };
    let t2 = WorkerTotals { workers: 2, queue_depth: 4, in_flight: 2, capacity: 8, ..Default::default() };
    let u = NodeUsage::default();
    let members = || {
        vec![
            Member { zone: "a", age: Duration::from_secs(1), totals: t1, usage: &u },
            Member { zone: "b", age: Duration::from_secs(1), totals: t2, usage: &u },
            Member { zone: "a", age: Duration::from_secs(9), totals: t2, usage: &u },
        ]
    };
    let never = || panic!("not needed when members are fresh");
    assert_eq!(evaluate(&trigger("nvidia", "queueDepth", None), STALE, members(), never), Ok(7.0));
    assert_eq!(evaluate(&trigger("nvidia", "inFlight", None), STALE, members(), never), Ok(3.0));
    assert_eq!(evaluate(&trigger("nvidia", "backlog", None), STALE, members(), never), Ok(10.0));
    assert_eq!(evaluate(&trigger("nvidia", "queueDepth", Some("a")), STALE, members(), never), Ok(3.0));
    // A longer per-trigger bound counts the third agent.
    assert_eq!(evaluate(&trigger("nvidia", "queueDepth", None), Duration::from_secs(10), members(), never), Ok(11.0));
}

#[test]
fn utilization_is_a_per_device_mean_across_nodes() {
    let t = WorkerTotals::default();
    let (u1, u2) = (usage(&[90.0, 70.0], &[]), usage(&[20.0], &[30.0, 50.0]));
    let members = vec![
        Member { zone: "", age: Duration::ZERO, totals: t, usage: &u1 },
        Member { zone: "", age: Duration::ZERO, totals: t, usage: &u2 },
    ];
    assert_eq!(evaluate(&trigger("nvidia", "utilization", None), STALE, members.clone(), || true), Ok(60.0));
    assert_eq!(evaluate(&trigger("neuron", "utilization", None), STALE, members.clone(), || true), Ok(40.0));
    let err = evaluate(&trigger("cpu", "utilization", None), STALE, members, || true).unwrap_err();
    assert!(matches!(err, EvalError::NoUsage { .. }), "{err}");
}

#[test]
fn utilization_follows_the_devices_the_selected_pods_hold() {
    let pod = |p: &str| PodRef { namespace: "ns".into(), pod: p.into(), container: "worker".into() };
    let held =
        |util: u32, pods: &[&str]| Gpu { pods: pods.iter().map(|p| pod(p)).collect(), ..gpu(Some(util), 100, true) };
    let mut mig = gpu(None, 0, true);
    mig.mig_instances =
        vec![MigInstance { graphics_engine_active_ratio: Some(0.3), pods: vec![pod("sd-0")], ..Default::default() }];
    let snap = NodeSnapshot {
        workers: vec![
            Worker { pod: "sd-0".into(), ..worker("sd", "nvidia", 0, 1) },
            Worker { pod: "sd-1".into(), ..worker("sd", "nvidia", 0, 1) },
            Worker { pod: "o-0".into(), ..worker("other", "nvidia", 0, 1) },
        ],
        // sd's pods share the first GPU (time-slicing): it counts once for sd.
        gpus: vec![held(90, &["sd-0", "sd-1"]), held(10, &["o-0"]), held(50, &[]), mig],
        ..Default::default()
    };
    let c = contribution(&snap);
    let sd = c.groups[&key(AcceleratorType::Nvidia)].held;
    assert_eq!(sd.gpu_utilization, Mean { sum: 120.0, count: 2 });
    assert_eq!(c.usage.gpu_utilization, Mean { sum: 180.0, count: 4 }, "the node: every GPU and MIG device");
    let other = WorkerClass { deployment: "other".into(), ..key(AcceleratorType::Nvidia) };
    assert_eq!(c.groups[&other].held.gpu_utilization, Mean { sum: 10.0, count: 1 });

    let member = |totals| Member { zone: "", age: Duration::ZERO, totals, usage: &c.usage };
    let util = trigger("nvidia", "utilization", None);
    assert_eq!(evaluate(&util, STALE, [member(c.groups[&key(AcceleratorType::Nvidia)])], || true), Ok(60.0));
    // Workers whose pods hold nothing the agent knows of read the node's mean, as before.
    let unattributed = WorkerTotals { workers: 1, ..Default::default() };
    assert_eq!(evaluate(&util, STALE, [member(unattributed)], || true), Ok(45.0));
}

#[test]
fn all_stale_is_an_error_never_zero() {
    let t = WorkerTotals { workers: 1, queue_depth: 5, ..Default::default() };
    let u = NodeUsage::default();
    let members = vec![Member { zone: "", age: Duration::from_secs(6), totals: t, usage: &u }];
    let err = evaluate(&trigger("nvidia", "queueDepth", None), STALE, members, || true).unwrap_err();
    assert!(matches!(err, EvalError::Stale { agents: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("ns/sd"), "{err}");
}

#[test]
fn no_workers_is_zero_only_while_some_agent_is_fresh() {
    let t = trigger("cpu", "queueDepth", Some("lax"));
    assert_eq!(evaluate(&t, STALE, Vec::new(), || true), Ok(0.0));
    let err = evaluate(&t, STALE, Vec::new(), || false).unwrap_err();
    assert_eq!(err, EvalError::NoFreshAgents { zone: Some("lax".into()), stale_after: STALE });
    assert!(err.to_string().contains("in zone lax"), "{err}");
}
