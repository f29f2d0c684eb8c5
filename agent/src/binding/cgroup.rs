//! Which pod a process runs in, from its cgroup path.
//!
//! The kubelet puts every container of a pod under a cgroup named for the
//! pod's UID, with either cgroup driver and either cgroup version:
//!
//! - systemd: `…/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope`
//!   (Guaranteed pods: `kubepods-pod<uid>.slice` directly under `kubepods.slice`)
//! - cgroupfs: `…/kubepods/burstable/pod<uid>/<container id>`
//!
//! Read from a private cgroup namespace (containerd's default on cgroup v2)
//! another pod's path starts with `/..` segments, but still names its pod.
//! A process's cgroup is set by the kubelet and the runtime, not by the
//! process, so it identifies the pod a report comes from.

/// The pod UID named in the contents of a `/proc/<pid>/cgroup` file, or why none is.
pub fn pod_uid(cgroup_file: &str) -> Result<String, CgroupError> {
    let mut found: Option<String> = None;
    for line in cgroup_file.lines() {
        // hierarchy-ID:controller-list:cgroup-path; the path may contain ':'.
        let Some(path) = line.splitn(3, ':').nth(2) else { continue };
        let Some(uid) = path.split('/').filter_map(uid_of_segment).next_back() else { continue };
        match &found {
            Some(seen) if *seen != uid => return Err(CgroupError::Ambiguous(seen.clone(), uid)),
            _ => found = Some(uid),
        }
    }
    found.ok_or(CgroupError::NotInPod)
}

/// The UID in one path segment named for a pod, normalised to the API's
/// dashed form.
fn uid_of_segment(segment: &str) -> Option<String> {
    let name = segment.strip_suffix(".slice").unwrap_or(segment);
    // systemd: the UID follows the last "-pod" of the slice name; cgroupfs: "pod" starts the segment.
    let raw = if name.starts_with("kubepods") {
        &name[name.rfind("-pod")? + "-pod".len()..]
    } else {
        name.strip_prefix("pod")?
    };
    let uid = raw.replace('_', "-");
    is_pod_uid(&uid).then_some(uid)
}

/// An API-server UID (8-4-4-4-12 hex) or a static pod's UID (a 32-hex hash).
fn is_pod_uid(s: &str) -> bool {
    let hex = |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = s.split('-').collect();
    match parts.as_slice() {
        [a, b, c, d, e] => hex(a, 8) && hex(b, 4) && hex(c, 4) && hex(d, 4) && hex(e, 12),
        [whole] => hex(whole, 32),
        _ => false,
    }
}

/// Why a cgroup file names no single pod.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CgroupError {
    /// No segment of any hierarchy is a pod's.
    #[error("its cgroup names no Kubernetes pod")]
    NotInPod,
    /// Two hierarchies name different pods.
    #[error("its cgroups name two pods ({0} and {1})")]
    Ambiguous(String, String),
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0d5e5c2c-1e1f-4b9b-8a0a-3f1c2b0d9e11";
    const CID: &str = "4f1e9b8c7d6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e";

    #[test]
    fn systemd_driver_on_cgroup_v2() {
        let burstable = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CID}.scope\n",
            UID.replace('-', "_")
        );
        assert_eq!(pod_uid(&burstable).unwrap(), UID);
        let guaranteed =
            format!("0::/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{CID}.scope\n", UID.replace('-', "_"));
        assert_eq!(pod_uid(&guaranteed).unwrap(), UID);
    }

    #[test]
    fn cgroupfs_driver_on_cgroup_v1_with_every_hierarchy() {
        let file = format!(
            "12:memory:/kubepods/besteffort/pod{UID}/{CID}\n11:cpu,cpuacct:/kubepods/besteffort/pod{UID}/{CID}\n\
             1:name=systemd:/kubepods/besteffort/pod{UID}/{CID}\n0::/\n"
        );
        assert_eq!(pod_uid(&file).unwrap(), UID);
    }

    #[test]
    fn seen_from_a_private_cgroup_namespace() {
        let file =
            format!("0::/../../kubepods-besteffort-pod{}.slice/cri-containerd-{CID}.scope\n", UID.replace('-', "_"));
        assert_eq!(pod_uid(&file).unwrap(), UID);
    }

    #[test]
    fn a_static_pod_has_a_hash_for_uid() {
        let hash = "6e9b6f1a2b3c4d5e6f708192a3b4c5d6";
        assert_eq!(pod_uid(&format!("0::/kubepods/burstable/pod{hash}/{CID}\n")).unwrap(), hash);
    }

    #[test]
    fn a_process_outside_kubernetes_is_in_no_pod() {
        for file in [
            "0::/user.slice/user-1000.slice/session-2.scope\n",
            "0::/system.slice/containerd.service\n",
            "0::/\n",
            "",
            "garbage without colons\n",
            // Look-alikes: not a UID, or a pod segment outside a kubepods slice name.
            "0::/kubepods/burstable/podnot-a-uid/x\n",
            "0::/system.slice/my-pod0d5e5c2c_1e1f_4b9b_8a0a_3f1c2b0d9e11.slice\n",
        ] {
            assert_eq!(pod_uid(file), Err(CgroupError::NotInPod), "{file:?}");
        }
    }

    #[test]
    fn two_pods_in_one_file_is_refused() {
        let other = "11111111-2222-3333-4444-555555555555";
        let file = format!("12:memory:/kubepods/pod{UID}/{CID}\n11:cpu:/kubepods/pod{other}/{CID}\n");
        assert_eq!(pod_uid(&file), Err(CgroupError::Ambiguous(UID.to_owned(), other.to_owned())));
    }
}
