//! The child processes `up` and `bench-activation` start: each in its own
//! process group (so a terminal's Ctrl-C reaches only us and we stop them in
//! order), logging to a file, stopped with SIGTERM and waited for.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running child.
pub struct Child {
    name: &'static str,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Child {
    /// Starts `bin args…` with stdout and stderr appended to `log_dir/NAME.log`.
    pub fn spawn(
        name: &'static str,
        bin: &Path,
        args: &[String],
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let err_file = file.try_clone().with_context(|| format!("cannot reopen {}", log.display()))?;
        let child = tokio::process::Command::new(bin)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            // Plain log lines: we quote the last one in error messages.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err_file)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Self { name, child, log })
    }

    /// The child's name (its binary).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Waits until `GET path` on `addr` answers 200, failing with the child's
    /// last log line if it exits first or `timeout` passes.
    pub async fn wait_ready(&mut self, addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited ({status}) before it was ready: {}", self.name, self.last_log_line());
            }
            if matches!(crate::http::get(addr, path, Duration::from_secs(2)).await, Ok(r) if r.status == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} not ready after {timeout:?} (log: {})", self.name, self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The exit status, if the child has exited.
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Resolves when the child exits on its own.
    pub async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// SIGTERM, then up to `grace` for it to exit, then SIGKILL.
    pub async fn stop(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Ok(status);
        }
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) with a pid we own and a valid signal number.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                self.child.kill().await?;
                bail!("{} did not stop within {grace:?} after SIGTERM; killed it", self.name)
            }
        }
    }

    /// The last non-empty line of the child's log, without terminal colours.
    pub fn last_log_line(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        match text.lines().rev().map(strip_ansi).find(|l| !l.trim().is_empty()) {
            Some(line) => format!("{} (log: {})", line.trim(), self.log.display()),
            None => format!("nothing logged (log: {})", self.log.display()),
        }
    }
}

/// Removes `ESC [ … letter` sequences.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Stops `children` in order (the last started first is the caller's choice),
/// reporting the first failure after trying them all.
pub async fn stop_all(children: &mut [Child], grace: Duration) -> anyhow::Result<()> {
    let mut first_error = None;
    for child in children.iter_mut() {
        if let Err(e) = child.stop(grace).await {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::strip_ansi;

    #[test]
    fn colours_are_removed_from_quoted_log_lines() {
        assert_eq!(strip_ansi("\x1b[2m2026\x1b[0m \x1b[31mERROR\x1b[0m bad"), "2026 ERROR bad");
        assert_eq!(strip_ansi("plain"), "plain");
    }
}
