//! Node CPU and memory, and the agent's own CPU time and RSS, from /proc.
//!
//! The root is configurable (`--procfs`) so tests run the real parsing code on
//! a checked-in fixture tree, node_exporter style.

use std::path::PathBuf;

use edge_telemetry::proto::{CollectorState, Host};
use procfs::{FromRead, FromReadSI};

use super::{Reading, health};

const NAME: &str = edge_telemetry::view::CollectorName::Procfs.as_str();

/// Reads /proc once per tick.
pub struct ProcCollector {
    root: PathBuf,
    /// (busy, total) jiffies at the previous tick, for a utilisation ratio.
    previous_cpu: Option<(u64, u64)>,
    errors: u64,
}

impl ProcCollector {
    /// A collector reading `root` (normally `/proc`).
    pub fn new(root: PathBuf) -> Self {
        Self { root, previous_cpu: None, errors: 0 }
    }

    /// One pass. A file that cannot be read leaves its values out and counts an error.
    pub fn collect(&mut self) -> Reading<Host> {
        let mut host = Host::default();
        let mut problems = Vec::new();

        match procfs::KernelStats::from_file(self.root.join("stat"), procfs::current_system_info()) {
            Ok(stats) => {
                let t = &stats.total;
                let idle = t.idle + t.iowait.unwrap_or(0);
                let busy =
                    t.user + t.nice + t.system + t.irq.unwrap_or(0) + t.softirq.unwrap_or(0) + t.steal.unwrap_or(0);
                let total = busy + idle;
                if let Some((prev_busy, prev_total)) = self.previous_cpu
                    && total > prev_total
                {
                    host.cpu_utilization_ratio =
                        Some(busy.saturating_sub(prev_busy) as f64 / (total - prev_total) as f64);
                }
                self.previous_cpu = Some((busy, total));
            }
            Err(e) => problems.push(format!("stat: {e}")),
        }

        match procfs::Meminfo::from_file(self.root.join("meminfo")) {
            Ok(m) => {
                host.memory_total_bytes = Some(m.mem_total);
                host.memory_available_bytes = m.mem_available;
            }
            Err(e) => problems.push(format!("meminfo: {e}")),
        }

        match procfs::process::Process::new_with_root(self.root.join("self")).and_then(|p| p.stat()) {
            Ok(stat) => {
                let ticks = procfs::ticks_per_second() as f64;
                host.agent_cpu_seconds = Some((stat.utime + stat.stime) as f64 / ticks);
                host.agent_resident_bytes = Some(stat.rss * procfs::page_size());
            }
            Err(e) => problems.push(format!("self/stat: {e}")),
        }

        let state = if problems.is_empty() {
            CollectorState::Ok
        } else {
            self.errors += 1;
            CollectorState::Failing
        };
        Reading { value: host, health: health(NAME, state, problems.join("; "), self.errors) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/proc")
    }

    #[test]
    fn reads_the_fixture_tree() {
        let mut c = ProcCollector::new(fixture());
        let first = c.collect();
        assert_eq!(first.health.state, CollectorState::Ok as i32, "{}", first.health.message);
        let h = first.value;
        assert_eq!(h.memory_total_bytes, Some(16_222_445_568));
        assert_eq!(h.memory_available_bytes, Some(8_111_222_784));
        // utime 150 + stime 50 ticks at 100 Hz.
        assert_eq!(h.agent_cpu_seconds, Some(2.0));
        assert_eq!(h.agent_resident_bytes, Some(1_000 * procfs::page_size()));
        // A ratio needs two readings.
        assert_eq!(h.cpu_utilization_ratio, None);
    }

    #[test]
    fn cpu_ratio_comes_from_the_difference_of_two_readings() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("4242")).unwrap();
        std::os::unix::fs::symlink("4242", root.join("self")).unwrap();
        for f in ["meminfo", "4242/stat"] {
            std::fs::copy(fixture().join(f), root.join(f)).unwrap();
        }
        let stat = |user: u64, idle: u64| {
            format!(
                "cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 {user} 0 0 {idle} 0 0 0 0 0 0\nintr 0\nctxt 0\nbtime 0\nprocesses 1\nprocs_running 1\nprocs_blocked 0\n"
            )
        };
        std::fs::write(root.join("stat"), stat(100, 900)).unwrap();
        let mut c = ProcCollector::new(root.to_owned());
        c.collect();
        std::fs::write(root.join("stat"), stat(130, 970)).unwrap();
        let ratio = c.collect().value.cpu_utilization_ratio.unwrap();
        assert!((ratio - 0.3).abs() < 1e-9, "{ratio}");
    }

    #[test]
    fn a_missing_root_is_failing_not_a_panic() {
        let mut c = ProcCollector::new(PathBuf::from("/nonexistent/proc"));
        let r = c.collect();
        assert_eq!(r.health.state, CollectorState::Failing as i32);
        assert!(r.health.message.contains("meminfo"), "{}", r.health.message);
        assert_eq!(r.health.errors, 1);
        assert_eq!(r.value, Host::default());
    }
}
