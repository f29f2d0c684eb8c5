//! The endpoint inventory: the inference endpoints the scaler knows, for user
//! devices to pick the closest, least-loaded one.
//!
//! Wire format: `GET /v1/endpoints[?accelerator=…&zone=…&limit=…&device=…]` on
//! the scaler's HTTP port, answered with [`Inventory`] as JSON, or `400` with
//! [`InventoryError`], or `429` with it and `Retry-After` when one address
//! pulls faster than the scaler's `--inventory-rate`. Devices may
//! deserialise these types directly.
//!
//! A pull that names an accelerator with no ready endpoint (in its zone) is
//! demand: the answer then lists the best endpoints there are (other zones
//! and accelerators), names under `waking` what the scaler is waking, and
//! carries a `Retry-After` header (seconds).

use serde::{Deserialize, Serialize};

use crate::AcceleratorType;

/// The path the scaler serves the inventory on.
pub const INVENTORY_PATH: &str = "/v1/endpoints";

/// Endpoints per answer when the request names no `limit`.
pub const DEFAULT_LIMIT: usize = 100;

/// Most endpoints one answer holds (`limit` above it is refused).
pub const MAX_LIMIT: usize = 1000;

/// Query parameter: only endpoints of this accelerator type.
pub const PARAM_ACCELERATOR: &str = "accelerator";
/// Query parameter: only endpoints whose node is in this zone.
pub const PARAM_ZONE: &str = "zone";
/// Query parameter: at most this many endpoints (1..=[`MAX_LIMIT`]).
pub const PARAM_LIMIT: &str = "limit";
/// Query parameter: an opaque, stable id of the device asking (at most
/// [`MAX_DEVICE_LEN`] of `[A-Za-z0-9._:-]`); demand counts distinct devices.
/// Without it the pull's peer address stands for the device.
pub const PARAM_DEVICE: &str = "device";
/// Every query parameter.
pub const PARAMS: [&str; 4] = [PARAM_ACCELERATOR, PARAM_ZONE, PARAM_LIMIT, PARAM_DEVICE];
/// Longest `device` id.
pub const MAX_DEVICE_LEN: usize = 128;
/// Longest query string (bytes) a pull may carry; a longer one is refused
/// with `param: "query"`.
pub const MAX_QUERY_LEN: usize = 1024;

/// The answer: ready endpoints of fresh agents, least loaded first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// Ordered by [`Endpoint::load`], then median latency. When the class
    /// asked for has none, the best others: same accelerator in other zones,
    /// then other accelerators, each least loaded first.
    pub endpoints: Vec<Endpoint>,
    /// What this pull is waking (empty when the class asked for is ready, or
    /// no trigger selects it).
    #[serde(default)]
    pub waking: Vec<Waking>,
}

/// A Deployment the scaler is waking because a device asked for its class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waking {
    /// Its accelerator type.
    pub accelerator: AcceleratorType,
    /// Its trigger's zone; `null` for a regional one.
    pub zone: Option<String>,
    /// Its namespace.
    pub namespace: String,
    /// Its Deployment (or, for a label-selector trigger, its ScaledObject).
    pub deployment: String,
}

/// One worker a device can send requests to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Where to send requests (the worker's advertised `endpoint`).
    pub url: String,
    /// The device the worker runs on.
    pub accelerator: AcceleratorType,
    /// The node's zone (empty when its agent was given none).
    pub zone: String,
    /// The node's name.
    pub node: String,
    /// The worker's namespace.
    pub namespace: String,
    /// The worker's Deployment.
    pub deployment: String,
    /// The worker's pod.
    pub pod: String,
    /// Requests waiting.
    pub queue_depth: u32,
    /// Requests running.
    pub in_flight: u32,
    /// Requests the worker accepts in total.
    pub capacity: u32,
    /// Recent median latency; `null` when the worker reported none.
    pub latency_p50_seconds: Option<f64>,
    /// Recent 99th percentile latency; `null` when the worker reported none.
    pub latency_p99_seconds: Option<f64>,
    /// Which rule chose the URL's host (see [`AddressRule`]).
    #[serde(default)]
    pub address: AddressRule,
    /// Who can reach the URL: `public` (anyone the security groups let in) or
    /// `vpc` (a private address: devices need a VPN, Direct Connect or the VPC).
    #[serde(default)]
    pub reachability: Reachability,
}

/// Where an endpoint's host comes from, in the order the scaler tries them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressRule {
    /// The node's `ExternalIP` (a node in a public subnet).
    ExternalIp,
    /// The zone's advertised host (the scaler's `--advertise-host`: a load balancer or DNS name).
    AdvertiseHost,
    /// As the worker advertised it (the node's primary, usually private, address).
    #[default]
    Advertised,
}

/// Who can reach an endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reachability {
    /// A public address or a name.
    #[default]
    Public,
    /// A private address (RFC 1918, shared 100.64/10, loopback, link-local, IPv6 ULA).
    Vpc,
}

/// Splits `scheme://host[:port][/path]` into `scheme://`, the host (with an
/// IPv6 address's brackets) and the rest; `None` when there is no `://`.
pub fn split_host(url: &str) -> Option<(&str, &str, &str)> {
    let start = url.find("://")? + 3;
    let after = &url[start..];
    let end = if after.starts_with('[') {
        after.find(']').map_or(after.len(), |i| i + 1)
    } else {
        after.find([':', '/']).unwrap_or(after.len())
    };
    Some((&url[..start], &after[..end], &after[end..]))
}

impl Reachability {
    /// What a URL host is: a private IP address is `vpc`, anything else `public`.
    pub fn of_host(host: &str) -> Self {
        let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>();
        let private = match ip {
            Ok(std::net::IpAddr::V4(v4)) => {
                let [a, b, ..] = v4.octets();
                v4.is_private() || v4.is_loopback() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
            }
            Ok(std::net::IpAddr::V6(v6)) => {
                let first = v6.segments()[0];
                v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
            }
            Err(_) => false,
        };
        if private { Self::Vpc } else { Self::Public }
    }
}

impl Endpoint {
    /// (queued + running) / capacity; a worker without capacity counts as
    /// infinitely loaded (it accepts nothing).
    pub fn load(&self) -> f64 {
        if self.capacity == 0 {
            return f64::INFINITY;
        }
        f64::from(self.queue_depth.saturating_add(self.in_flight)) / f64::from(self.capacity)
    }
}

/// A refused request: the parameter at fault and what is allowed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{param}: {error}")]
pub struct InventoryError {
    /// What is wrong and what is allowed.
    pub error: String,
    /// The query parameter at fault: `query` for the query string as a
    /// whole, empty when none is (`429`: too many pulls from one address).
    pub param: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_around_their_host() {
        assert_eq!(split_host("http://10.0.3.7:30080"), Some(("http://", "10.0.3.7", ":30080")));
        assert_eq!(split_host("https://[fd00::1]:443/v1"), Some(("https://", "[fd00::1]", ":443/v1")));
        assert_eq!(split_host("http://sd.example.com/x"), Some(("http://", "sd.example.com", "/x")));
        assert_eq!(split_host("sd.example.com"), None);
    }

    #[test]
    fn private_addresses_are_vpc_and_the_rest_public() {
        for host in ["10.0.3.7", "172.16.0.1", "192.168.1.1", "100.64.0.9", "127.0.0.1", "[fd00::1]", "[fe80::1]"] {
            assert_eq!(Reachability::of_host(host), Reachability::Vpc, "{host}");
        }
        for host in ["54.12.0.7", "100.128.0.1", "[2600:1f14::1]", "sd-lax.example.com"] {
            assert_eq!(Reachability::of_host(host), Reachability::Public, "{host}");
        }
    }

    fn endpoint(queue: u32, in_flight: u32, capacity: u32) -> Endpoint {
        Endpoint {
            url: "http://10.0.0.1:30080".into(),
            accelerator: AcceleratorType::Cpu,
            zone: String::new(),
            node: "n".into(),
            namespace: "ns".into(),
            deployment: "sd".into(),
            pod: "sd-0".into(),
            queue_depth: queue,
            in_flight,
            capacity,
            latency_p50_seconds: None,
            latency_p99_seconds: Some(2.0),
            address: AddressRule::Advertised,
            reachability: Reachability::Vpc,
        }
    }

    #[test]
    fn load_is_the_share_of_capacity_in_use() {
        assert_eq!(endpoint(3, 1, 8).load(), 0.5);
        assert_eq!(endpoint(0, 0, 8).load(), 0.0);
        assert_eq!(endpoint(0, 0, 0).load(), f64::INFINITY);
    }

    #[test]
    fn the_json_shape_is_the_documented_one() {
        let json = serde_json::to_value(Inventory { endpoints: vec![endpoint(3, 1, 8)], waking: vec![] }).unwrap();
        assert_eq!(json["waking"], serde_json::json!([]));
        let keys: Vec<&str> = json["endpoints"][0].as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = [
            "url",
            "accelerator",
            "zone",
            "node",
            "namespace",
            "deployment",
            "pod",
            "queue_depth",
            "in_flight",
            "capacity",
            "latency_p50_seconds",
            "latency_p99_seconds",
            "address",
            "reachability",
        ];
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(json["endpoints"][0]["accelerator"], "cpu");
        assert!(json["endpoints"][0]["latency_p50_seconds"].is_null(), "absent, not 0");
        assert_eq!(
            (&json["endpoints"][0]["address"], &json["endpoints"][0]["reachability"]),
            (&"advertised".into(), &"vpc".into())
        );
    }
}
