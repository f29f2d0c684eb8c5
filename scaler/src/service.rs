//! KEDA's `externalscaler.ExternalScaler` service.
//!
//! Every call parses the trigger metadata KEDA sends along and reads the
//! shared [`AgentTable`]; nothing here waits on the network. A trigger's
//! reading is its workers' value with the wake signals folded in
//! ([`aggregate::with_wake`]: device demand, spill-over). `StreamIsActive`
//! sleeps on the channels of its workers, its spill-over sibling and its
//! accelerator's demand, and pushes `true` only on an inactive→active
//! transition. `StreamMetricSpec` sends the spec `GetMetricSpec` answers.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::agents::AgentTable;
use crate::aggregate::{self, EvalError, Reading};
use crate::demand::ListenGuard;
use crate::keda::external_scaler_server::{ExternalScaler, ExternalScalerServer};
use crate::keda::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec, MetricValue,
    ScaledObjectRef,
};
use crate::metrics::{Method, ScalerMetrics};
use crate::trigger::{Trigger, TriggerError, WorkerSelector};

/// The one mapping from the scaler's errors to gRPC statuses.
fn trigger_status(e: TriggerError) -> Status {
    Status::invalid_argument(e.to_string())
}

fn eval_status(e: EvalError) -> Status {
    // KEDA counts any error towards the ScaledObject's `fallback`.
    Status::unavailable(e.to_string())
}

/// The gRPC service.
#[derive(Clone)]
pub struct KedaService {
    table: Arc<AgentTable>,
    metrics: Arc<ScalerMetrics>,
    shutdown: watch::Receiver<bool>,
}

impl KedaService {
    /// A service over `table`; open streams end with OK once `shutdown` is true.
    pub fn new(table: Arc<AgentTable>, metrics: Arc<ScalerMetrics>, shutdown: watch::Receiver<bool>) -> Self {
        Self { table, metrics, shutdown }
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> ExternalScalerServer<Self> {
        ExternalScalerServer::new(self)
    }

    fn timed<T>(&self, method: Method, f: impl FnOnce() -> Result<T, Status>) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let result = f();
        let code = result.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
        self.metrics.observe(method, started, code);
        if let Err(status) = &result {
            tracing::debug!(method = ?method, code = ?status.code(), message = status.message(), "call refused");
        }
        result.map(Response::new)
    }
}

fn parse(r: &ScaledObjectRef) -> Result<Trigger, Status> {
    Trigger::parse(&r.namespace, &r.scaler_metadata).map_err(trigger_status)
}

/// A trigger's reading: its workers' value with the wake signals folded in.
fn read(table: &AgentTable, trigger: &Trigger) -> Result<Reading, EvalError> {
    aggregate::with_wake(trigger, table.evaluate(trigger), table.wake(trigger))
}

/// The one spec of a trigger, for `GetMetricSpec` and `StreamMetricSpec` alike.
fn metric_spec(trigger: &Trigger) -> GetMetricSpecResponse {
    GetMetricSpecResponse {
        metric_specs: vec![MetricSpec {
            metric_name: trigger.metric_name(),
            // Older KEDA reads the integer; an HPA target of 0 is invalid.
            target_size: (trigger.target.round() as i64).max(1),
            target_size_float: trigger.target,
        }],
    }
}

type ActiveStream = Pin<Box<dyn Stream<Item = Result<IsActiveResponse, Status>> + Send>>;
type SpecStream = Pin<Box<dyn Stream<Item = Result<GetMetricSpecResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for KedaService {
    type StreamIsActiveStream = ActiveStream;
    type StreamMetricSpecStream = SpecStream;

    async fn is_active(&self, request: Request<ScaledObjectRef>) -> Result<Response<IsActiveResponse>, Status> {
        self.timed(Method::IsActive, || {
            let trigger = parse(request.get_ref())?;
            let reading = read(&self.table, &trigger).map_err(eval_status)?;
            Ok(IsActiveResponse { result: reading.active })
        })
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        self.timed(Method::GetMetricSpec, || Ok(metric_spec(&parse(request.get_ref())?)))
    }

    /// The spec depends on the trigger's metadata alone, which KEDA sends
    /// when it opens the stream: one message, then the stream stays open
    /// (a later metadata change makes KEDA open a new one) until shutdown.
    async fn stream_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamMetricSpecStream>, Status> {
        let started = Instant::now();
        let spec = parse(request.get_ref()).map(|t| metric_spec(&t));
        self.metrics.observe(
            Method::StreamMetricSpec,
            started,
            spec.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok),
        );
        let spec = spec?;
        let (tx, rx) = mpsc::channel(1);
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            if tx.send(Ok(spec)).await.is_err() {
                return;
            }
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => {}
                _ = tx.closed() => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_metrics(&self, request: Request<GetMetricsRequest>) -> Result<Response<GetMetricsResponse>, Status> {
        self.timed(Method::GetMetrics, || {
            let req = request.get_ref();
            let object = req
                .scaled_object_ref
                .as_ref()
                .ok_or_else(|| Status::invalid_argument("scaledObjectRef: missing; KEDA always sends it"))?;
            let trigger = parse(object)?;
            let name = trigger.metric_name();
            if !req.metric_name.is_empty() && req.metric_name != name {
                return Err(Status::invalid_argument(format!(
                    "metricName: {:?} is not this trigger's metric; GetMetricSpec answers {name:?}",
                    req.metric_name
                )));
            }
            let value = read(&self.table, &trigger).map_err(eval_status)?.value;
            Ok(GetMetricsResponse {
                metric_values: vec![MetricValue {
                    metric_name: name,
                    metric_value: value.round() as i64,
                    metric_value_float: value,
                }],
            })
        })
    }

    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let started = Instant::now();
        let trigger = match parse(request.get_ref()) {
            Ok(t) => t,
            Err(status) => {
                self.metrics.observe(Method::StreamIsActive, started, status.code());
                return Err(status);
            }
        };
        let (tx, rx) = mpsc::channel(4);
        let demand = self.table.demand();
        let listening = trigger.activate_on_demand.then(|| {
            // KEDA names the ScaledObject; a Deployment selector names the Deployment itself.
            let deployment = match &trigger.key.selector {
                WorkerSelector::Deployment(d) => d.as_str(),
                _ => request.get_ref().name.as_str(),
            };
            demand.listen(trigger.key.accelerator, trigger.zone.as_deref(), &trigger.key.namespace, deployment)
        });
        let watcher = ActivationWatch {
            changes: self.table.subscribe(&trigger.key),
            sibling: trigger.spill.as_ref().map(|s| self.table.subscribe(&s.key)),
            demand: demand.subscribe(trigger.key.accelerator),
            _listening: listening,
            recheck: (trigger.stale_after.unwrap_or(self.table.stale_after()) / 2).max(Duration::from_millis(100)),
            trigger,
            table: Arc::clone(&self.table),
            metrics: Arc::clone(&self.metrics),
            shutdown: self.shutdown.clone(),
            tx,
        };
        tokio::spawn(watcher.run());
        self.metrics.observe(Method::StreamIsActive, started, tonic::Code::Ok);
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// One open StreamIsActive.
struct ActivationWatch {
    trigger: Trigger,
    changes: watch::Receiver<u64>,
    /// The spill-over sibling's channel, if the trigger has one.
    sibling: Option<watch::Receiver<u64>>,
    /// Demand for the trigger's accelerator starting or clearing.
    demand: watch::Receiver<u64>,
    /// Names this trigger in the inventory's `waking` while the stream is open.
    _listening: Option<ListenGuard>,
    /// Staleness changes with time alone, so the state is also re-read on a timer.
    recheck: Duration,
    table: Arc<AgentTable>,
    metrics: Arc<ScalerMetrics>,
    shutdown: watch::Receiver<bool>,
    tx: mpsc::Sender<Result<IsActiveResponse, Status>>,
}

impl ActivationWatch {
    fn active(&self) -> bool {
        // No trustworthy value counts as inactive: a later real activation is then pushed.
        read(&self.table, &self.trigger).is_ok_and(|r| r.active)
    }

    /// Resolves when the spill-over sibling's data changes; never without one.
    async fn sibling_changed(sibling: &mut Option<watch::Receiver<u64>>) -> Result<(), watch::error::RecvError> {
        match sibling {
            Some(rx) => rx.changed().await,
            None => std::future::pending().await,
        }
    }

    async fn run(mut self) {
        self.metrics.active_streams.inc();
        let name = self.trigger.metric_name();
        tracing::debug!(metric = %name, "activation stream opened");
        // The state at open is the baseline, and an active one is pushed at once:
        // a stream (re)opened while a queue is already up (KEDA reconnecting
        // after a scaler restart, mid-burst) would otherwise wait for KEDA's next
        // IsActive poll, up to its pollingInterval, to learn of the wake.
        self.changes.mark_unchanged();
        self.demand.mark_unchanged();
        if let Some(rx) = &mut self.sibling {
            rx.mark_unchanged();
        }
        let mut was_active = self.active();
        if was_active {
            if self.tx.send(Ok(IsActiveResponse { result: true })).await.is_err() {
                self.metrics.active_streams.dec();
                return;
            }
            self.metrics.activations.inc();
            tracing::debug!(metric = %name, "active at open; pushed");
        }
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.wait_for(|s| *s) => break,
                _ = self.tx.closed() => break,
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        // The group was dropped and made anew: follow the new one.
                        self.changes = self.table.subscribe(&self.trigger.key);
                    }
                }
                changed = Self::sibling_changed(&mut self.sibling) => {
                    if changed.is_err() && let Some(spill) = &self.trigger.spill {
                        self.sibling = Some(self.table.subscribe(&spill.key));
                    }
                }
                _ = self.demand.changed() => {}
                _ = tokio::time::sleep(self.recheck) => {}
            }
            let active = self.active();
            if active && !was_active {
                // Woken with no worker to serve it: a cold start begins.
                if !self.table.has_fresh_workers(&self.trigger.key, self.trigger.zone.as_deref()) {
                    let zone = self.trigger.zone.as_deref().unwrap_or("");
                    self.table.cold_starts().activated(&self.trigger.key, zone);
                }
                if self.tx.send(Ok(IsActiveResponse { result: true })).await.is_err() {
                    break;
                }
                self.metrics.activations.inc();
                tracing::debug!(metric = %name, "activation pushed");
            }
            was_active = active;
        }
        tracing::debug!(metric = %name, "activation stream closed");
        self.metrics.active_streams.dec();
    }
}
