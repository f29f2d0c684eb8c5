//! Generations sent to the workers and how each ended.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_testkit::http;

/// Generations sent and how each ended.
#[derive(Clone, Default)]
pub(crate) struct Counts {
    pub(crate) sent: Arc<AtomicU32>,
    pub(crate) answered: Arc<AtomicU32>,
    pub(crate) refused: Arc<AtomicU32>,
    pub(crate) failed: Arc<Mutex<Vec<String>>>,
}

#[derive(Debug, Clone)]
pub(crate) struct CountsSnapshot {
    pub(crate) sent: u32,
    pub(crate) answered: u32,
    pub(crate) refused: u32,
    pub(crate) failed: Vec<String>,
}

impl CountsSnapshot {
    /// Sent and not refused at the door (429: queue full, or 503 while draining).
    pub(crate) fn accepted(&self) -> u32 {
        self.sent - self.refused
    }
}

impl Counts {
    pub(crate) fn generate(&self, addr: SocketAddr, seed: u32) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let body = format!(r#"{{"prompt": "a soak test", "steps": 20, "seed": {seed}}}"#);
        match http::post_json_timeout(addr, "/generate", &body, Duration::from_secs(120)) {
            Ok((200, _)) => self.answered.fetch_add(1, Ordering::Relaxed),
            Ok((429 | 503, _)) => self.refused.fetch_add(1, Ordering::Relaxed),
            Ok((status, body)) => {
                self.failed.lock().unwrap().push(format!("{addr}: {status} {body}"));
                0
            }
            Err(e) => {
                self.failed.lock().unwrap().push(format!("{addr}: {e}"));
                0
            }
        };
    }

    pub(crate) fn snapshot(&self) -> CountsSnapshot {
        CountsSnapshot {
            sent: self.sent.load(Ordering::Relaxed),
            answered: self.answered.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            failed: self.failed.lock().unwrap().clone(),
        }
    }
}
