//! Starting as root only to prepare the report socket, then running as a
//! user (`--user`).
//!
//! The kubelet creates the report socket's hostPath directory as root, 0755,
//! so only root can create the socket in it. The agent starts as uid 0 with
//! CAP_CHOWN, CAP_SETUID and CAP_SETGID, creates the socket (0660, owned by
//! that user and `--report-socket-group`), then becomes the user for good:
//! after `setuid` to a non-zero uid the kernel clears every capability, and
//! there is no way back. No init container, and no long-running root.

/// A uid and gid to run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Group id; also the only supplementary group.
    pub gid: u32,
}

impl std::str::FromStr for RunAs {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (uid, gid) =
            s.split_once(':').ok_or_else(|| format!("{s:?} is not UID:GID (numbers, e.g. 65532:65532)"))?;
        let number = |v: &str, what: &str| {
            v.parse::<u32>().map_err(|_| format!("{what} {v:?} in {s:?} is not a number (UID:GID, e.g. 65532:65532)"))
        };
        let (uid, gid) = (number(uid, "uid")?, number(gid, "gid")?);
        if uid == 0 {
            return Err("uid 0 is root; name the user to run as, e.g. 65532:65532".to_owned());
        }
        Ok(Self { uid, gid })
    }
}

/// Why the agent could not become its user.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// Not started as root (or without the capabilities to change user).
    #[error(
        "--user {uid}:{gid}: cannot change user (start the agent as uid 0 with CAP_SETUID and CAP_SETGID, or leave --user empty): {source}"
    )]
    Change {
        /// The uid asked for.
        uid: u32,
        /// The gid asked for.
        gid: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// After the change the process could still become root again.
    #[error("--user {0}: the process could regain uid 0 after the change; refusing to run")]
    Regained(u32),
}

/// Becomes `run_as` for the rest of the process (every thread: glibc and musl
/// apply set*id to all threads), or says why not.
pub fn become_user(run_as: RunAs) -> Result<(), PrivilegeError> {
    let RunAs { uid, gid } = run_as;
    let fail = |source| PrivilegeError::Change { uid, gid, source };
    let groups = [gid as libc::gid_t];
    // Groups first: after setuid the process may no longer change them.
    // SAFETY: plain syscalls on values we own; errors are checked.
    unsafe {
        if libc::setgroups(1, groups.as_ptr()) != 0 {
            return Err(fail(std::io::Error::last_os_error()));
        }
        if libc::setgid(gid) != 0 {
            return Err(fail(std::io::Error::last_os_error()));
        }
        if libc::setuid(uid) != 0 {
            return Err(fail(std::io::Error::last_os_error()));
        }
        if libc::setuid(0) == 0 {
            return Err(PrivilegeError::Regained(uid));
        }
    }
    tracing::info!(uid, gid, "report socket ready; running as the unprivileged user");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uid_and_gid_and_refuses_root_and_names() {
        assert_eq!("65532:65532".parse::<RunAs>(), Ok(RunAs { uid: 65532, gid: 65532 }));
        assert_eq!("10:20".parse::<RunAs>(), Ok(RunAs { uid: 10, gid: 20 }));
        for bad in ["65532", "nobody:nogroup", ":1", "1:", "0:0", "-1:2", "1:2:3"] {
            assert!(bad.parse::<RunAs>().is_err(), "{bad}");
        }
    }
}
