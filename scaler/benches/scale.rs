//! The scaler at cluster scale: 1,000 simulated agents and 100 ScaledObjects.
//!
//! Run: `cargo bench -p edge-scaler --bench scale` (release build). Options:
//! `-- --agents N --objects M --rounds R --wakes W --pin on|off --replicas 1|2`.
//!
//! - 1,000 in-process `SnapshotFeed` servers (the agent's real wire protocol,
//!   a full snapshot first, then every change, a 2 s heartbeat), each a node
//!   with 8 GPUs and 4 Deployments' workers; 200 snapshot changes per second
//!   of background churn.
//! - The real `edge-scaler` binary (release) follows all of them (`--agents`).
//! - A KEDA client drives 100 ScaledObjects: `GetMetricSpec` + `GetMetrics` +
//!   `IsActive` per object per round, and one open `StreamIsActive` each.
//!
//! Prints `GetMetrics` p50/p99 against `GetMetricSpec` (same path without
//! any state read: the gRPC floor), and with device demand pending against
//! the same triggers with `activateOnDemand: "false"` (no demand lookup,
//! interleaved in the same rounds); the queue-wake → `StreamIsActive` latency
//! p50/p99 against the agent → subscriber hop alone (a direct Watch on the
//! same simulated agent, measured in the same trial); the device pull at zero
//! → `StreamIsActive` latency beside it; and the scaler's RSS.
//!
//! `--replicas 2` (the default, as the chart runs) starts a second scaler
//! replica, its peer (`--peers`), on the other CPUs, following the same
//! agents; the pulls at zero then alternate between the replica KEDA holds
//! its stream on and its peer, which must forward the demand: both are
//! printed, with their ratio.
//!
//! `--pin on` (the default on a machine with 2+ CPUs) runs the scaler on CPU 0
//! and everything else (the 1,000 simulated agents, the churn, the KEDA
//! client) on the other CPUs, with `taskset`. In a cluster the agents and KEDA
//! run on other machines; without pinning, on a 2-core box, the scaler's tail
//! latency is mostly the simulated cluster's scheduling, not the scaler.

#![allow(clippy::print_stdout)] // a benchmark's report is its output

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_scaler::keda::external_scaler_client::ExternalScalerClient;
use edge_scaler::keda::{GetMetricsRequest, ScaledObjectRef};
use edge_telemetry::proto::snapshot_feed_client::SnapshotFeedClient;
use edge_telemetry::proto::snapshot_feed_server::{SnapshotFeed, SnapshotFeedServer};
use edge_telemetry::proto::{Gpu, Host, Node, NodeSnapshot, WatchRequest, Worker};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

const ACCELERATORS: [&str; 3] = ["nvidia", "neuron", "cpu"];
const DEPLOYMENTS_PER_NODE: usize = 4;
const WORKERS_PER_DEPLOYMENT: usize = 2;

struct Options {
    agents: usize,
    objects: usize,
    rounds: usize,
    wakes: usize,
    pin: bool,
    replicas: usize,
}

fn options() -> Options {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut o = Options { agents: 1000, objects: 100, rounds: 30, wakes: 200, pin: cpus >= 2, replicas: 2 };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        let value = || pair[1].parse().unwrap_or_else(|_| panic!("{} needs a number, not {:?}", pair[0], pair[1]));
        match pair[0].as_str() {
            "--agents" => o.agents = value(),
            "--objects" => o.objects = value(),
            "--rounds" => o.rounds = value(),
            "--wakes" => o.wakes = value(),
            "--replicas" => {
                o.replicas = value();
                assert!((1..=2).contains(&o.replicas), "--replicas takes 1 or 2, not {}", o.replicas);
            }
            "--pin" => {
                o.pin = match pair[1].as_str() {
                    "on" => true,
                    "off" => false,
                    other => panic!("--pin takes on or off, not {other:?}"),
                }
            }
            _ => {}
        }
    }
    o
}

/// One simulated agent: the latest snapshot, changed by the benchmark.
#[derive(Clone)]
struct SimAgent {
    node: usize,
    objects: usize,
    tx: Arc<watch::Sender<Arc<NodeSnapshot>>>,
    queues: Arc<std::sync::Mutex<HashMap<usize, u32>>>,
    /// Whether this node's first worker of each Deployment advertises an endpoint.
    advertise: Arc<std::sync::atomic::AtomicBool>,
}

impl SimAgent {
    fn new(node: usize, objects: usize) -> Self {
        let queues = HashMap::new();
        let tx = Arc::new(watch::Sender::new(Arc::new(snapshot(node, objects, 1, &queues, false))));
        Self {
            node,
            objects,
            tx,
            queues: Arc::new(std::sync::Mutex::new(queues)),
            advertise: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// Changes this node's queue of deployment `d`, as a worker report would.
    fn set_queue(&self, d: usize, q: u32) {
        let mut queues = self.queues.lock().unwrap();
        queues.insert(d, q);
        self.publish(&queues);
    }

    /// Starts or stops advertising endpoints (a woken worker ready, then gone).
    fn set_advertise(&self, on: bool) {
        self.advertise.store(on, std::sync::atomic::Ordering::Relaxed);
        self.publish(&self.queues.lock().unwrap());
    }

    fn publish(&self, queues: &HashMap<usize, u32>) {
        let seq = self.tx.borrow().sequence + 1;
        let advertise = self.advertise.load(std::sync::atomic::Ordering::Relaxed);
        self.tx.send_replace(Arc::new(snapshot(self.node, self.objects, seq, queues, advertise)));
    }
}

#[tonic::async_trait]
impl SnapshotFeed for SimAgent {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<NodeSnapshot, Status>> + Send>>;

    async fn watch(&self, _: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        // The agent's own feed logic: current, then every change, heartbeat after 2 s.
        let mut rx = self.tx.subscribe();
        let (out, stream) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut current = rx.borrow_and_update().clone();
            loop {
                if out.send(Ok(NodeSnapshot::clone(&current))).await.is_err() {
                    break;
                }
                tokio::select! {
                    c = rx.changed() => { if c.is_err() { break; } current = rx.borrow_and_update().clone(); }
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
    }
}

fn deployments_of(node: usize, objects: usize) -> Vec<usize> {
    (0..DEPLOYMENTS_PER_NODE).map(|j| (node + j * objects / DEPLOYMENTS_PER_NODE) % objects).collect()
}

fn snapshot(node: usize, objects: usize, seq: u64, queues: &HashMap<usize, u32>, advertise: bool) -> NodeSnapshot {
    let mut workers = Vec::new();
    for d in deployments_of(node, objects) {
        for w in 0..WORKERS_PER_DEPLOYMENT {
            workers.push(Worker {
                worker_id: format!("sd-{d}-{node}-{w}"),
                pod: format!("sd-{d}-{node}-{w}"),
                namespace: "inference".into(),
                deployment: format!("sd-{d}"),
                accelerator: ACCELERATORS[d % 3].into(),
                queue_depth: if w == 0 { queues.get(&d).copied().unwrap_or(0) } else { 0 },
                in_flight: 1,
                capacity: 8,
                latency_p50_seconds: Some(1.5),
                latency_p99_seconds: Some(3.0),
                endpoint: if advertise && w == 0 {
                    format!("http://10.1.{}.{}:30080", node / 250, node % 250)
                } else {
                    String::new()
                },
                ..Default::default()
            });
        }
    }
    NodeSnapshot {
        node: Some(Node {
            name: format!("node-{node}"),
            instance_type: "g6.48xlarge".into(),
            zone: format!("zone-{}", node % 4),
        }),
        sequence: seq,
        updated_at_unix_ms: 0,
        gpus: (0..8)
            .map(|i| Gpu {
                index: i,
                uuid: format!("GPU-{node}-{i}"),
                name: "NVIDIA L4".into(),
                healthy: true,
                gpu_utilization_percent: Some(((node + i as usize) % 100) as u32),
                framebuffer_used_bytes: Some(1 << 30),
                framebuffer_total_bytes: Some(24 << 30),
                ..Default::default()
            })
            .collect(),
        host: Some(Host {
            cpu_utilization_ratio: Some(0.3),
            memory_total_bytes: Some(64 << 30),
            memory_available_bytes: Some(32 << 30),
            ..Default::default()
        }),
        workers,
        ..Default::default()
    }
}

fn object(d: usize, metric: &str) -> ScaledObjectRef {
    let pairs = [
        ("scalerAddress", "edge-scaler:9500".to_owned()),
        ("acceleratorType", ACCELERATORS[d % 3].to_owned()),
        ("deployment", format!("sd-{d}")),
        ("metric", metric.to_owned()),
        ("targetValue", "4".to_owned()),
    ];
    ScaledObjectRef {
        name: format!("sd-{d}"),
        namespace: "inference".into(),
        scaler_metadata: pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

/// [`object`] that ignores device demand: the `GetMetrics` path without the demand lookup.
fn object_without_demand(d: usize, metric: &str) -> ScaledObjectRef {
    let mut o = object(d, metric);
    o.scaler_metadata.insert("activateOnDemand".into(), "false".into());
    o
}

/// A Deployment with no workers anywhere, in `zone`: what a device pull wakes.
fn object_at_zero(zone: &str) -> ScaledObjectRef {
    let pairs = [
        ("scalerAddress", "edge-scaler:9500"),
        ("acceleratorType", "cpu"),
        ("deployment", "sd-zero"),
        ("zone", zone),
        ("targetValue", "1"),
    ];
    ScaledObjectRef {
        name: "sd-zero".into(),
        namespace: "inference".into(),
        scaler_metadata: pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
    }
}

/// One inventory pull on a kept-alive connection, off the async runtime.
async fn pull(conn: &Arc<std::sync::Mutex<edge_testkit::http::KeepAlive>>, path: String) -> (u16, String) {
    let conn = Arc::clone(conn);
    tokio::task::spawn_blocking(move || conn.lock().unwrap().get(&path, &[]).expect("inventory pull"))
        .await
        .expect("pull task")
}

/// Every 10th object scales on GPU utilisation (nvidia) or NeuronCore/CPU
/// utilisation; the rest on queue depth.
fn metric_of(d: usize) -> &'static str {
    if d % 10 == 9 && d % 3 != 1 { "utilization" } else { "queueDepth" }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // utime and stime are fields 14 and 15 of stat; after "pid (comm) state" they are at 10 and 11.
    (f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0)) as f64 / 100.0
}

#[tokio::main]
async fn main() {
    let o = options();
    println!("edge-scaler benchmark: {} agents, {} ScaledObjects", o.agents, o.objects);

    // 1. The simulated agents.
    let mut agents = Vec::new();
    let mut addrs = Vec::new();
    for node in 0..o.agents {
        let agent = SimAgent::new(node, o.objects);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a simulated agent");
        addrs.push(listener.local_addr().unwrap());
        let server = SnapshotFeedServer::new(agent.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(server)
                // As the real agent does: no Nagle on the snapshot stream.
                .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
                .await;
        });
        agents.push(agent);
    }

    // 2. The real scaler.
    let port = |l: std::net::TcpListener| l.local_addr().unwrap();
    let grpc: SocketAddr = port(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let http: SocketAddr = port(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let list = addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",");
    let mut command = if o.pin {
        pin_self_to_all_but_cpu0();
        let mut c = Command::new("taskset");
        c.args(["--cpu-list", "0", env!("CARGO_BIN_EXE_edge-scaler")]);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_edge-scaler"))
    };
    // The peer replica's ports, known before either starts.
    let peer_grpc: SocketAddr = port(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let peer_http: SocketAddr = port(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let peers_of = |other: SocketAddr| if o.replicas == 2 { other.to_string() } else { String::new() };
    let child = command
        .env("EDGE_SCALER_AGENTS", &list)
        .env("EDGE_SCALER_LISTEN", grpc.to_string())
        .env("EDGE_SCALER_METRICS_LISTEN", http.to_string())
        .env("EDGE_SCALER_PEERS", peers_of(peer_http))
        .env("EDGE_SCALER_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start edge-scaler");
    // Killed on drop, also when an assertion below fails.
    let child = KillOnDrop(child);
    let pid = child.0.id();
    // The peer inherits this process's CPUs: with --pin, all but the scaler's.
    let peer = (o.replicas == 2).then(|| {
        let peer = Command::new(env!("CARGO_BIN_EXE_edge-scaler"))
            .env("EDGE_SCALER_AGENTS", &list)
            .env("EDGE_SCALER_LISTEN", peer_grpc.to_string())
            .env("EDGE_SCALER_METRICS_LISTEN", peer_http.to_string())
            .env("EDGE_SCALER_PEERS", http.to_string())
            .env("EDGE_SCALER_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start the peer edge-scaler");
        KillOnDrop(peer)
    });
    let started = Instant::now();
    let replicas = if peer.is_some() { vec![http, peer_http] } else { vec![http] };
    for at in &replicas {
        loop {
            let body = edge_testkit::http::get(*at, "/metrics").ok().map(|(_, body)| body).unwrap_or_default();
            let connected = edge_testkit::sample(&body, "edge_scaler_agents_connected");
            let peers = edge_testkit::sample(&body, "edge_scaler_peers").unwrap_or(0.0);
            if connected == Some(o.agents as f64) && peers == (replicas.len() - 1) as f64 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "scaler at {at} did not connect to every agent and peer: {connected:?}, {peers}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    println!(
        "{} scaler replica(s) followed {} agents after {:.2?}{}",
        replicas.len(),
        o.agents,
        started.elapsed(),
        if peer.is_some() { " and synced with each other" } else { "" }
    );
    println!(
        "{}",
        if o.pin {
            "scaler pinned to CPU 0, simulated cluster and KEDA client to the others (--pin off to share)"
        } else {
            "scaler shares every CPU with the simulated cluster and the KEDA client (--pin on to separate)"
        }
    );

    let channel = Channel::from_shared(format!("http://{grpc}")).unwrap().tcp_nodelay(true).connect().await.unwrap();
    let mut keda = ExternalScalerClient::new(channel.clone());

    // 3. Background churn: 200 snapshot changes per second on nodes that do not
    // take part in the wake trials (deployments 0..objects/2 stay busy).
    let churn_agents = agents.clone();
    let objects = o.objects;
    let churn = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        let mut n = 0usize;
        loop {
            tick.tick().await;
            n += 1;
            let node = (n * 7919) % churn_agents.len();
            let Some(&d) = deployments_of(node, objects).iter().find(|d| **d < objects / 2) else { continue };
            let q = (n % 5) as u32 + 1;
            churn_agents[node].set_queue(d, q);
        }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Device demand pending on every accelerator in zones 1-3 (1,000 devices),
    // as at a cluster where some tiers sit at zero: no simulated worker
    // advertises an endpoint, so each pull is demand.
    let inventory = Arc::new(std::sync::Mutex::new(edge_testkit::http::KeepAlive::connect(http).unwrap()));
    for i in 0..1000 {
        let path = format!("/v1/endpoints?accelerator={}&zone=zone-{}&device=dev-{i}", ACCELERATORS[i % 3], 1 + i % 3);
        let (status, body) = pull(&inventory, path).await;
        assert_eq!(status, 200, "{body}");
    }

    // 4. KEDA's polling pattern for every ScaledObject; each object twice per
    // round, with demand on (the default) and off, interleaved in alternating order.
    let cpu_before = (cpu_seconds(pid), Instant::now());
    let (mut spec_lat, mut metrics_lat, mut off_lat, mut errors) = (Vec::new(), Vec::new(), Vec::new(), 0usize);
    for round in 0..o.rounds {
        // Which of the pair goes first alternates, so neither side always
        // follows the other's IsActive.
        let order = if round % 2 == 0 { [true, false] } else { [false, true] };
        for d in 0..o.objects {
            for with_demand in order {
                let obj = if with_demand { object(d, metric_of(d)) } else { object_without_demand(d, metric_of(d)) };
                let t = Instant::now();
                let spec = keda.get_metric_spec(obj.clone()).await.expect("GetMetricSpec").into_inner();
                spec_lat.push(t.elapsed());
                let name = spec.metric_specs[0].metric_name.clone();
                let t = Instant::now();
                let r = keda
                    .get_metrics(GetMetricsRequest { scaled_object_ref: Some(obj.clone()), metric_name: name })
                    .await;
                if with_demand { &mut metrics_lat } else { &mut off_lat }.push(t.elapsed());
                errors += usize::from(r.is_err());
                let _ = keda.is_active(obj).await;
            }
        }
    }
    let (s50, s99) = summary(spec_lat);
    let (m50, m99) = summary(metrics_lat.clone());
    let (f50, f99) = summary(off_lat);
    println!();
    println!("GetMetrics     ({} calls, {} errors): p50 {:>9.1?}  p99 {:>9.1?}", metrics_lat.len(), errors, m50, m99);
    println!("GetMetrics, activateOnDemand=false (no demand lookup): p50 {:>9.1?}  p99 {:>9.1?}", f50, f99);
    println!(
        "  ratio demand on / off:                   p50 {:>6.2}x   p99 {:>6.2}x",
        m50.as_secs_f64() / f50.as_secs_f64(),
        m99.as_secs_f64() / f99.as_secs_f64()
    );
    println!("GetMetricSpec  (baseline, no state read): p50 {:>9.1?}  p99 {:>9.1?}", s50, s99);
    println!(
        "  ratio GetMetrics / GetMetricSpec:        p50 {:>6.2}x   p99 {:>6.2}x",
        m50.as_secs_f64() / s50.as_secs_f64(),
        m99.as_secs_f64() / s99.as_secs_f64()
    );

    // 5. Queue wakes: one StreamIsActive per ScaledObject; each trial wakes an
    // idle Deployment's queue on one node and times the push.
    let mut streams = Vec::new();
    for d in 0..o.objects {
        let mut client = ExternalScalerClient::new(channel.clone());
        // The demand pending since step 4 keeps every zone-less trigger awake;
        // a queue wake is timed on triggers that ignore it.
        let obj = object_without_demand(d, "queueDepth");
        streams.push(client.stream_is_active(obj).await.expect("StreamIsActive").into_inner());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle: Vec<usize> = (o.objects / 2..o.objects).collect();
    let (mut wake_lat, mut hop_lat) = (Vec::new(), Vec::new());
    for trial in 0..o.wakes {
        let d = idle[trial % idle.len()];
        let hosts: Vec<usize> = (0..o.agents).filter(|n| deployments_of(*n, o.objects).contains(&d)).collect();
        let node = hosts[(trial / idle.len()) % hosts.len()];
        let mut direct = SnapshotFeedClient::connect(format!("http://{}", addrs[node])).await.unwrap();
        let mut hop = direct.watch(WatchRequest {}).await.unwrap().into_inner();
        hop.message().await.unwrap(); // the current snapshot
        let t = Instant::now();
        agents[node].set_queue(d, 1);
        let (pushed, seen) = tokio::join!(
            async {
                let m = tokio::time::timeout(Duration::from_secs(10), streams[d].message()).await;
                assert!(matches!(m, Ok(Ok(Some(ref r))) if r.result), "no activation for sd-{d}: {m:?}");
                t.elapsed()
            },
            async {
                hop.message().await.unwrap();
                t.elapsed()
            }
        );
        wake_lat.push(pushed);
        hop_lat.push(seen);
        // Back to idle, and wait until the scaler agrees before the next trial.
        agents[node].set_queue(d, 0);
        let obj = object_without_demand(d, "queueDepth");
        while keda.is_active(obj.clone()).await.map(|r| r.into_inner().result).unwrap_or(true) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let (w50, w99) = summary(wake_lat);
    let (h50, h99) = summary(hop_lat);
    println!();
    println!("queue wake -> StreamIsActive ({} wakes): p50 {:>9.1?}  p99 {:>9.1?}", o.wakes, w50, w99);
    println!("agent -> direct Watch (baseline hop):     p50 {:>9.1?}  p99 {:>9.1?}", h50, h99);
    println!(
        "  ratio wake / hop:                        p50 {:>6.2}x   p99 {:>6.2}x",
        w50.as_secs_f64() / h50.as_secs_f64(),
        w99.as_secs_f64() / h99.as_secs_f64()
    );

    // 6. Device pull at zero: a Deployment with no workers in zone-0; each
    // trial pulls the inventory for its class (no endpoint there) and times
    // the push. Then a node of zone-0 advertises (the woken worker ready), the
    // demand clears, and the endpoint goes again before the next trial.
    let host = (0..o.agents).find(|n| n % 4 == 0).expect("a node in zone-0");
    let mut zero_stream = ExternalScalerClient::new(channel.clone())
        .stream_is_active(object_at_zero("zone-0"))
        .await
        .expect("StreamIsActive at zero")
        .into_inner();
    let at_peer = peer
        .as_ref()
        .map(|_| Arc::new(std::sync::Mutex::new(edge_testkit::http::KeepAlive::connect(peer_http).unwrap())));
    let (mut pull_lat, mut peer_lat) = (Vec::new(), Vec::new());
    for trial in 0..o.wakes {
        // With a peer, every other pull reaches it instead of the replica KEDA holds.
        let via_peer = at_peer.as_ref().filter(|_| trial % 2 == 1);
        let conn = via_peer.unwrap_or(&inventory);
        let path = format!("/v1/endpoints?accelerator=cpu&zone=zone-0&device=zero-{trial}");
        let t = Instant::now();
        let (pulled, pushed) = tokio::join!(pull(conn, path), async {
            let m = tokio::time::timeout(Duration::from_secs(10), zero_stream.message()).await;
            assert!(matches!(m, Ok(Ok(Some(ref r))) if r.result), "no activation for the pull at zero: {m:?}");
            t.elapsed()
        });
        assert_eq!(pulled.0, 200, "{}", pulled.1);
        if via_peer.is_some() { &mut peer_lat } else { &mut pull_lat }.push(pushed);
        agents[host].set_advertise(true);
        while keda.is_active(object_at_zero("zone-0")).await.map(|r| r.into_inner().result).unwrap_or(true) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        agents[host].set_advertise(false);
        // Until the endpoint has left every replica (a pull without an accelerator is no demand).
        for conn in std::iter::once(&inventory).chain(at_peer.as_ref()) {
            while pull(conn, "/v1/endpoints?zone=zone-0".to_owned()).await.1.contains("\"url\"") {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    let pulls = pull_lat.len();
    let (p50, p99) = summary(pull_lat);
    println!("device pull at zero -> StreamIsActive ({pulls} pulls): p50 {:>9.1?}  p99 {:>9.1?}", p50, p99);
    println!(
        "  ratio pull / queue wake:                 p50 {:>6.2}x   p99 {:>6.2}x",
        p50.as_secs_f64() / w50.as_secs_f64(),
        p99.as_secs_f64() / w99.as_secs_f64()
    );
    if !peer_lat.is_empty() {
        let pulls = peer_lat.len();
        let (q50, q99) = summary(peer_lat);
        println!("  the same pull at the peer replica ({pulls} pulls): p50 {:>9.1?}  p99 {:>9.1?}", q50, q99);
        println!(
            "  ratio at peer / at KEDA's replica:       p50 {:>6.2}x   p99 {:>6.2}x",
            q50.as_secs_f64() / p50.as_secs_f64(),
            q99.as_secs_f64() / p99.as_secs_f64()
        );
    }

    let cpu = (cpu_seconds(pid) - cpu_before.0) / cpu_before.1.elapsed().as_secs_f64();
    println!();
    println!(
        "scaler RSS {:.1} MiB (peak {:.1} MiB); CPU {:.1} % of one core during the run (incl. churn of 200 changes/s)",
        proc_status(pid, "VmRSS:") as f64 / 1024.0,
        proc_status(pid, "VmHWM:") as f64 / 1024.0,
        cpu * 100.0
    );
    churn.abort();
    drop(peer);
    drop(child);
}

/// Moves every thread of this process (the simulated cluster, the churn and
/// the KEDA client) off CPU 0, which the scaler gets to itself.
fn pin_self_to_all_but_cpu0() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let others = format!("1-{}", cpus - 1);
    let status = Command::new("taskset")
        .args(["--all-tasks", "--cpu-list", "--pid", &others, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("run taskset (util-linux); or pass --pin off");
    assert!(status.success(), "taskset could not pin the benchmark to CPUs {others}; pass --pin off");
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
