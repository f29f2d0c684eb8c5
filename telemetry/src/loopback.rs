//! Loopback ports for child processes the caller starts on one machine (the
//! CLI's activation benchmark, the tests).

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// A loopback port that was free a moment ago and that no other caller in
/// this process will be handed.
///
/// Why not just bind port 0: the kernel hands out the same ephemeral range to
/// `bind(0)` and to every outgoing connection, so a port seen free here can be
/// taken by another client socket (or another `bind(0)`) before the child
/// process we start binds it. Ports are therefore drawn below the ephemeral
/// range, from a per-process counter (no two callers in one process get the
/// same port) that starts at an offset from the pid (two processes drawing at
/// once rarely start at the same place).
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);

    let Some((low, high)) = quiet_port_range() else {
        return kernel_port();
    };
    let span = high - low;
    let start = std::process::id() % span;
    for _ in 0..span {
        let port = low + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(port).expect("port range below 65536");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    kernel_port()
}

/// Ports no kernel ephemeral allocation can take: from 10000 up to the start
/// of `ip_local_port_range` (32768 by default on Linux).
fn quiet_port_range() -> Option<(u32, u32)> {
    const LOW: u32 = 10_000;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let ephemeral_low: u32 = range.split_whitespace().next()?.parse().ok()?;
    (ephemeral_low >= LOW + 1_000).then_some((LOW, ephemeral_low))
}

fn kernel_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let unique: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(unique.len(), ports.len(), "a port handed out twice: {ports:?}");
        if let Some((low, high)) = quiet_port_range() {
            assert!(ports.iter().all(|&p| (low..high).contains(&u32::from(p))), "{ports:?} outside {low}..{high}");
        }
    }
}
