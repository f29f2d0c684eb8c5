//! The bounded queue: admission is a permit, no unbounded channel anywhere.
//!
//! A request first takes one of `capacity` *slots* (none left → 429 with a
//! Retry-After estimate), then waits, in arrival order, for one of
//! `concurrency` *runners*. Both permits travel with the request and are
//! released when it is dropped — also when the client goes away while it
//! waits, which frees its slot. Every change is published on a watch channel
//! for the agent reporter.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// Recent latencies kept for quantiles and Retry-After.
const WINDOW: usize = 256;

/// What the queue holds now.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Counts {
    /// Requests waiting for a runner.
    pub queued: u32,
    /// Requests running.
    pub in_flight: u32,
    /// Slots in total.
    pub capacity: u32,
    /// Median whole-request latency over the recent window, seconds.
    pub p50: Option<f64>,
    /// 99th percentile whole-request latency, seconds.
    pub p99: Option<f64>,
    /// Intake stopped ([`Queue::close`]): what is accepted drains, nothing new is taken.
    pub draining: bool,
    /// What serves the queue cannot take work now ([`Queue::set_available`]:
    /// the proxy's upstream is down): nothing new is taken until it can.
    pub unavailable: bool,
}

/// Why a request was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Every slot is taken; try again after this long.
    Full {
        /// Estimated time until a slot frees up.
        retry_after: Duration,
    },
    /// The worker is shutting down and takes no new work.
    Draining,
    /// What serves the queue is down ([`Queue::set_available`]).
    Unavailable,
}

/// The queue's bookkeeping: plain data, updated under one lock.
#[derive(Debug, Default)]
pub struct State {
    queued: u32,
    in_flight: u32,
    closed: bool,
    unavailable: bool,
    /// Whole-request latencies (admission to finish).
    totals: VecDeque<f64>,
    /// Running times only (what one runner spends per request).
    service: VecDeque<f64>,
}

impl State {
    fn record(&mut self, total: f64, service: f64) {
        for (buf, v) in [(&mut self.totals, total), (&mut self.service, service)] {
            if buf.len() == WINDOW {
                buf.pop_front();
            }
            buf.push_back(v);
        }
    }

    /// How long until a slot frees: the work ahead spread over the runners,
    /// at the recent median running time; at least one second.
    pub fn retry_after(&self, concurrency: u32) -> Duration {
        let per_request = quantile(&self.service, 0.5).unwrap_or(1.0);
        let ahead = f64::from(self.queued + self.in_flight) / f64::from(concurrency.max(1));
        Duration::from_secs_f64((per_request * ahead).ceil().clamp(1.0, 3600.0))
    }
}

fn quantile(values: &VecDeque<f64>, q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = values.iter().copied().collect();
    v.sort_by(f64::total_cmp);
    let idx = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[idx])
}

struct Inner {
    slots: Arc<Semaphore>,
    runners: Arc<Semaphore>,
    capacity: u32,
    concurrency: u32,
    state: Mutex<State>,
    changes: watch::Sender<Counts>,
}

/// A cloneable handle to the worker's queue.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

impl Queue {
    /// A queue holding at most `capacity` requests, `concurrency` of them running.
    pub fn new(capacity: u32, concurrency: u32) -> Self {
        let concurrency = concurrency.clamp(1, capacity.max(1));
        let (changes, _) = watch::channel(Counts { capacity, ..Counts::default() });
        Self {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(capacity as usize)),
                runners: Arc::new(Semaphore::new(concurrency as usize)),
                capacity,
                concurrency,
                state: Mutex::new(State::default()),
                changes,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain counters; keep going.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the state and publishes the new counts.
    fn update(&self, f: impl FnOnce(&mut State)) {
        let counts = {
            let mut s = self.state();
            f(&mut s);
            self.counts_of(&s)
        };
        self.inner.changes.send_replace(counts);
    }

    fn counts_of(&self, s: &State) -> Counts {
        Counts {
            queued: s.queued,
            in_flight: s.in_flight,
            capacity: self.inner.capacity,
            p50: quantile(&s.totals, 0.5),
            p99: quantile(&s.totals, 0.99),
            draining: s.closed,
            unavailable: s.unavailable,
        }
    }

    /// The counts now.
    pub fn counts(&self) -> Counts {
        let s = self.state();
        self.counts_of(&s)
    }

    /// Runners (requests that generate at the same time).
    pub fn concurrency(&self) -> u32 {
        self.inner.concurrency
    }

    /// Every change of the counts.
    pub fn subscribe(&self) -> watch::Receiver<Counts> {
        self.inner.changes.subscribe()
    }

    /// Takes a slot, or says why not.
    pub fn admit(&self) -> Result<Ticket, Rejected> {
        {
            let s = self.state();
            if s.closed {
                return Err(Rejected::Draining);
            }
            if s.unavailable {
                return Err(Rejected::Unavailable);
            }
        }
        match self.inner.slots.clone().try_acquire_owned() {
            Ok(slot) => {
                self.update(|s| s.queued += 1);
                Ok(Ticket { slot: Some(slot), queue: self.clone(), admitted: Instant::now() })
            }
            Err(_) => Err(Rejected::Full { retry_after: self.state().retry_after(self.inner.concurrency) }),
        }
    }

    /// Stops admitting; what is queued and running carries on. Published, so
    /// the reporter withdraws the worker's endpoint at once.
    pub fn close(&self) {
        self.update(|s| s.closed = true);
    }

    /// Says whether what serves the queue can take work. While it cannot,
    /// admission refuses ([`Rejected::Unavailable`]) and reports leave the
    /// endpoint out; what is already queued or running carries on. Published
    /// only when it changes.
    pub fn set_available(&self, available: bool) {
        if self.state().unavailable == available {
            self.update(|s| s.unavailable = !available);
        }
    }

    /// Whether [`Queue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// Waits for a runner, in arrival order.
    pub async fn runner(&self) -> Runner {
        // The semaphore is never closed, so acquiring only waits.
        Runner { _permit: self.inner.runners.clone().acquire_owned().await.ok() }
    }
}

/// One of the queue's `concurrency` runners: what a request (or a batch of
/// them) generates on. Dropping it hands it to the next in line.
pub struct Runner {
    _permit: Option<OwnedSemaphorePermit>,
}

/// An admitted request waiting for a runner. Dropping it frees the slot.
pub struct Ticket {
    slot: Option<OwnedSemaphorePermit>,
    queue: Queue,
    admitted: Instant,
}

impl Ticket {
    /// Waits for a runner (first come, first served) and starts on it.
    pub async fn start(self) -> Running {
        let runner = self.queue.runner().await;
        self.start_on(Some(runner))
    }

    /// The queue it waits in.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Starts now: on `runner`, or with `None` on the runner of the batch it
    /// joins (the batch's first request holds it for all of them).
    pub fn start_on(mut self, runner: Option<Runner>) -> Running {
        let slot = self.slot.take();
        self.queue.update(|s| {
            s.queued -= 1;
            s.in_flight += 1;
        });
        Running {
            _slot: slot,
            _runner: runner,
            queue: self.queue.clone(),
            admitted: self.admitted,
            started: Instant::now(),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Still holding the slot means it never started: it leaves the queue.
        if self.slot.take().is_some() {
            self.queue.update(|s| s.queued -= 1);
        }
    }
}

/// A running request. Dropping it frees the runner and the slot and records
/// its latency.
pub struct Running {
    _slot: Option<OwnedSemaphorePermit>,
    _runner: Option<Runner>,
    queue: Queue,
    admitted: Instant,
    started: Instant,
}

impl Running {
    /// When the request was admitted.
    pub fn admitted(&self) -> Instant {
        self.admitted
    }

    /// How long the request waited for its runner.
    pub fn waited(&self) -> Duration {
        self.started - self.admitted
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let (total, service) = (self.admitted.elapsed().as_secs_f64(), self.started.elapsed().as_secs_f64());
        self.queue.update(|s| {
            s.in_flight -= 1;
            s.record(total, service);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn admits_up_to_capacity_then_rejects_with_retry_after() {
        let q = Queue::new(2, 1);
        let a = q.admit().unwrap();
        let _b = q.admit().unwrap();
        assert_eq!((q.counts().queued, q.counts().in_flight), (2, 0));
        assert!(matches!(q.admit(), Err(Rejected::Full { retry_after }) if retry_after >= Duration::from_secs(1)));
        let running = a.start().await;
        assert_eq!((q.counts().queued, q.counts().in_flight), (1, 1));
        drop(running);
        assert_eq!((q.counts().queued, q.counts().in_flight), (1, 0));
        assert!(q.counts().p50.is_some());
        assert!(q.admit().is_ok(), "a finished request frees its slot");
    }

    #[tokio::test]
    async fn a_dropped_waiter_frees_its_slot_and_runners_are_fifo() {
        let q = Queue::new(3, 1);
        let first = q.admit().unwrap().start().await;
        let waiting = q.admit().unwrap();
        let waiter = tokio::spawn(waiting.start());
        tokio::task::yield_now().await;
        assert_eq!(q.counts().queued, 1);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(q.counts().queued, 0, "an abandoned waiter left the queue");
        let mut rx = q.subscribe();
        drop(first);
        rx.changed().await.unwrap();
        assert_eq!(rx.borrow().in_flight, 0);
    }

    #[tokio::test]
    async fn closing_refuses_new_work_but_keeps_what_is_queued() {
        let q = Queue::new(2, 1);
        let t = q.admit().unwrap();
        q.close();
        assert_eq!(q.admit().err(), Some(Rejected::Draining));
        let r = t.start().await;
        assert_eq!(q.counts().in_flight, 1);
        drop(r);
    }

    #[tokio::test]
    async fn an_unavailable_backend_refuses_new_work_until_it_is_back() {
        let q = Queue::new(2, 1);
        let t = q.admit().unwrap();
        let mut rx = q.subscribe();
        rx.mark_unchanged();
        q.set_available(false);
        assert!(rx.has_changed().unwrap() && rx.borrow_and_update().unavailable, "published");
        assert_eq!(q.admit().err(), Some(Rejected::Unavailable));
        q.set_available(false);
        assert!(!rx.has_changed().unwrap(), "no change, nothing published");
        drop(t.start().await);
        q.set_available(true);
        assert!(!q.counts().unavailable);
        assert!(q.admit().is_ok());
    }

    #[test]
    fn retry_after_spreads_the_work_ahead_over_the_runners() {
        let mut s = State { queued: 6, in_flight: 2, ..State::default() };
        for _ in 0..10 {
            s.record(3.0, 1.5);
        }
        assert_eq!(s.retry_after(2), Duration::from_secs(6)); // 8 requests * 1.5 s / 2 runners
        assert_eq!(State::default().retry_after(1), Duration::from_secs(1));
    }
}
