//! Sizing candle's CPU thread pool from the container's CPU limit.
//!
//! candle (and rayon under it) size their pools from the host's cores; a pod
//! limited to 2 CPUs on a 64-core node would run 64 threads and spend its
//! quota on contention. cgroup v2 `cpu.max` (or v1 `cpu.cfs_quota_us`)
//! holds the limit.

use std::path::Path;

/// CPUs allowed by the cgroup rooted at `root` (usually `/sys/fs/cgroup`),
/// rounded up; `None` when unlimited or unknown.
pub fn cgroup_cpu_limit(root: &Path) -> Option<usize> {
    if let Ok(text) = std::fs::read_to_string(root.join("cpu.max")) {
        let mut parts = text.split_whitespace();
        let (quota, period) = (parts.next()?, parts.next().unwrap_or("100000"));
        return ratio(quota.parse().ok()?, period.parse().ok()?);
    }
    let quota: i64 = std::fs::read_to_string(root.join("cpu/cpu.cfs_quota_us")).ok()?.trim().parse().ok()?;
    let period: i64 = std::fs::read_to_string(root.join("cpu/cpu.cfs_period_us")).ok()?.trim().parse().ok()?;
    if quota <= 0 { None } else { ratio(quota as u64, period as u64) }
}

fn ratio(quota: u64, period: u64) -> Option<usize> {
    (period > 0).then(|| quota.div_ceil(period).max(1) as usize)
}

/// The thread count to use: the cgroup limit, capped by the CPUs this process
/// may run on.
pub fn threads_for(root: &Path) -> usize {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    cgroup_cpu_limit(root).map_or(available, |limit| limit.min(available))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cgroup_v2_and_v1_limits() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cpu.max"), "250000 100000\n").unwrap();
        assert_eq!(cgroup_cpu_limit(dir.path()), Some(3));
        std::fs::write(dir.path().join("cpu.max"), "max 100000\n").unwrap();
        assert_eq!(cgroup_cpu_limit(dir.path()), None);

        let v1 = tempfile::tempdir().unwrap();
        std::fs::create_dir(v1.path().join("cpu")).unwrap();
        std::fs::write(v1.path().join("cpu/cpu.cfs_quota_us"), "50000\n").unwrap();
        std::fs::write(v1.path().join("cpu/cpu.cfs_period_us"), "100000\n").unwrap();
        assert_eq!(cgroup_cpu_limit(v1.path()), Some(1));
        std::fs::write(v1.path().join("cpu/cpu.cfs_quota_us"), "-1\n").unwrap();
        assert_eq!(cgroup_cpu_limit(v1.path()), None);
        assert!(threads_for(v1.path()) >= 1);
    }
}
