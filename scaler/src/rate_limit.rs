//! A per-client rate limit for the endpoint inventory: one token bucket per
//! client address, `rate` pulls a second with a burst of twice that.
//!
//! The inventory is open to devices, and each pull for a class with no
//! ready endpoint is recorded as demand: one client pulling in a loop must
//! not cost the scaler more than a bounded share. The table of buckets is
//! bounded too ([`MAX_CLIENTS`]): buckets that have refilled carry no state
//! worth keeping and go first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most client addresses tracked at once.
pub const MAX_CLIENTS: usize = 100_000;

/// Token buckets per client address.
pub struct RateLimit {
    rate: f64,
    burst: f64,
    epoch: Instant,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

/// The bucket an address pulls from: an IPv6 host usually holds a whole
/// /64, so its /64 is one client.
fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
    }
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: f64,
}

impl RateLimit {
    /// `rate` pulls a second per address, bursts of `2 × rate`; `rate` 0: no limit.
    pub fn new(rate: u32) -> Self {
        Self { rate: f64::from(rate), burst: 2.0 * f64::from(rate), epoch: Instant::now(), buckets: Mutex::default() }
    }

    /// Takes one pull from `client`'s bucket; `Err` holds how long until it may pull again.
    pub fn admit(&self, client: IpAddr) -> Result<(), Duration> {
        if self.rate == 0.0 {
            return Ok(());
        }
        let now = self.epoch.elapsed().as_secs_f64();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let client = key(client);
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + (now - b.at) * rate < burst);
            // Too few refilled to make room for long: start over rather than
            // scan the table again on the next new client (a flood of new
            // addresses then costs one scan per tenth of the table).
            if buckets.len() >= MAX_CLIENTS - MAX_CLIENTS / 10 {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(client).or_insert(Bucket { tokens: self.burst, at: now });
        bucket.tokens = (bucket.tokens + (now - bucket.at) * self.rate).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }

    /// Client addresses tracked now.
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn a_burst_then_the_rate_per_client() {
        let limit = RateLimit::new(5);
        for _ in 0..10 {
            assert!(limit.admit(ip(1)).is_ok(), "a burst of twice the rate");
        }
        let wait = limit.admit(ip(1)).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(200), "{wait:?}");
        assert!(limit.admit(ip(2)).is_ok(), "another client has its own bucket");
        std::thread::sleep(Duration::from_millis(250));
        assert!(limit.admit(ip(1)).is_ok(), "refilled at the rate");
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client() {
        let limit = RateLimit::new(1);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(limit.admit(a).is_ok() && limit.admit(b).is_ok());
        assert!(limit.admit(a).is_err(), "one bucket for the /64");
        assert!(limit.admit("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn zero_is_no_limit() {
        let limit = RateLimit::new(0);
        assert!((0..10_000).all(|_| limit.admit(ip(1)).is_ok()));
        assert_eq!(limit.clients(), 0);
    }

    #[test]
    fn the_table_of_clients_is_bounded() {
        let limit = RateLimit::new(1);
        for n in 0..(MAX_CLIENTS as u32 + 1000) {
            let _ = limit.admit(ip(n));
        }
        assert!(limit.clients() <= MAX_CLIENTS, "{}", limit.clients());
    }
}
