//! Runs neuron-monitor as a child process and feeds its stdout, line by line,
//! into the shared state.
//!
//! The child is restarted with back-off when it exits (1 s doubling to 30 s,
//! back to 1 s after a run of at least 30 s). A program that is not installed
//! is "absent", not failing: one log line, then a quiet retry every 60 s, so
//! installing neuron-monitor later needs no agent restart. The child is killed
//! when the supervising task is dropped (`kill_on_drop`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use super::{Phase, Shared, report};

/// A longer line is dropped (and counted): a report is ~50 KiB for 20 cores,
/// so this leaves room for the largest instances while garbage without
/// newlines cannot grow the buffer without bound.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;
/// First restart delay after the child exits.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Longest restart delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run at least this long resets the back-off.
pub const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// How often to look again for a program that is not installed.
pub const ABSENT_RETRY: Duration = Duration::from_secs(60);
/// After this many logged warnings about bad lines, further ones go to debug.
const WARN_LIMIT: u64 = 10;

/// Restart delays: doubling up to a cap, reset after a healthy run.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: BACKOFF_INITIAL }
    }
}

impl Backoff {
    /// The delay before the next start, given how long the last run lasted.
    pub fn after_run(&mut self, ran: Duration) -> Duration {
        if ran >= HEALTHY_RUN {
            self.next = BACKOFF_INITIAL;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }
}

/// The config file neuron-monitor gets with `-c`: every group the agent maps,
/// all at the agent's interval, for every runtime (`tag_filter` `.*`).
pub fn config_json(period: Duration) -> serde_json::Value {
    let metrics =
        |names: &[&str]| -> Vec<serde_json::Value> { names.iter().map(|n| serde_json::json!({ "type": n })).collect() };
    serde_json::json!({
        "period": period_string(period),
        "neuron_runtimes": [{
            "tag_filter": ".*",
            "metrics": metrics(&["neuroncore_counters", "memory_used", "neuron_runtime_vcpu_usage", "execution_stats"]),
        }],
        "system_metrics": metrics(&["memory_info", "vcpu_usage", "neuron_hw_counters"]),
    })
}

/// neuron-monitor's period syntax: `"1s"`, or milliseconds for sub-second
/// and fractional periods (`"500ms"`).
pub fn period_string(period: Duration) -> String {
    let ms = period.as_millis().max(1);
    if ms % 1000 == 0 { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// End of stream.
    Eof,
    /// A line (without its newline) is in the buffer.
    Complete,
    /// The line exceeded the limit and was skipped up to its newline.
    TooLong,
}

/// Reads one line of at most `max` bytes into `buf`, never buffering more
/// than `max + 1` bytes of it.
pub async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Line> {
    buf.clear();
    let n = (&mut *r).take(max as u64 + 1).read_until(b'\n', buf).await?;
    if n == 0 {
        return Ok(Line::Eof);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Line::Complete);
    }
    if buf.len() <= max {
        return Ok(Line::Complete); // the last line, without a newline
    }
    loop {
        buf.clear();
        let n = (&mut *r).take(64 * 1024).read_until(b'\n', buf).await?;
        if n == 0 || buf.last() == Some(&b'\n') {
            break;
        }
    }
    buf.clear();
    Ok(Line::TooLong)
}

/// How to run the child.
pub struct Child {
    /// Program and arguments.
    pub command: Vec<String>,
    /// The config file to write and pass with `-c`.
    pub config_path: PathBuf,
    /// The report period to ask for.
    pub period: Duration,
}

enum Outcome {
    NotFound(String),
    Failed(String),
    Exited { message: String, ran: Duration },
}

/// Runs the child forever, restarting it; cancel by dropping the task.
pub async fn supervise(child: Child, shared: Arc<Mutex<Shared>>) {
    let mut backoff = Backoff::default();
    let mut absent_logged = false;
    loop {
        let (message, delay) = match run_once(&child, &shared).await {
            Outcome::NotFound(message) => {
                if !absent_logged {
                    tracing::warn!(
                        program = %child.command[0],
                        retry_s = ABSENT_RETRY.as_secs(),
                        "neuron-monitor not found; Neuron metrics are off until it is installed"
                    );
                    absent_logged = true;
                }
                lock(&shared).phase = Phase::Absent(message);
                tokio::time::sleep(ABSENT_RETRY).await;
                continue;
            }
            Outcome::Failed(message) => (message, backoff.after_run(Duration::ZERO)),
            Outcome::Exited { message, ran } => (message, backoff.after_run(ran)),
        };
        absent_logged = false;
        tracing::warn!(reason = %message, restart_in_s = delay.as_secs_f64(), "neuron-monitor is down; restarting");
        {
            let mut s = lock(&shared);
            s.errors += 1;
            s.phase = Phase::Down(format!("{message}; restarting in {}", humantime::format_duration(delay)));
        }
        tokio::time::sleep(delay).await;
    }
}

async fn run_once(child: &Child, shared: &Arc<Mutex<Shared>>) -> Outcome {
    if let Err(e) = write_config(&child.config_path, child.period).await {
        return Outcome::Failed(format!("cannot write neuron-monitor config {}: {e}", child.config_path.display()));
    }
    let program = &child.command[0];
    let mut cmd = Command::new(program);
    cmd.args(&child.command[1..])
        .arg("-c")
        .arg(&child.config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // neuron-monitor's own diagnostics end up in the agent's log stream.
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut process = match cmd.spawn() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Outcome::NotFound(format!("{program} not found ({e})"));
        }
        Err(e) => return Outcome::Failed(format!("cannot start {program}: {e}")),
    };
    let started = Instant::now();
    tracing::info!(program = %program, pid = ?process.id(), "neuron-monitor started");
    lock(shared).phase = Phase::Running { since: started };
    let Some(stdout) = process.stdout.take() else {
        return Outcome::Failed("neuron-monitor stdout not captured".to_owned());
    };
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    let read_error = loop {
        match read_line(&mut reader, &mut buf, MAX_LINE_BYTES).await {
            Ok(Line::Eof) => break None,
            Ok(Line::TooLong) => bad_line(shared, &format!("line longer than {MAX_LINE_BYTES} bytes")),
            Ok(Line::Complete) => handle_line(shared, &buf),
            Err(e) => break Some(e),
        }
        // One huge line must not pin megabytes for the agent's lifetime.
        if buf.capacity() > 1024 * 1024 {
            buf = Vec::new();
        }
    };
    // stdout closed: the child is exiting. Do not wait forever on one that
    // closed stdout but lingers.
    let status = match tokio::time::timeout(Duration::from_secs(5), process.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        Ok(Err(e)) => format!("unknown status ({e})"),
        Err(_) => {
            let _ = process.kill().await;
            "closed its output and was killed".to_owned()
        }
    };
    let message = match read_error {
        Some(e) => format!("reading neuron-monitor output failed ({e}); it exited: {status}"),
        None => format!("neuron-monitor exited: {status}"),
    };
    Outcome::Exited { message, ran: started.elapsed() }
}

async fn write_config(path: &Path, period: Duration) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(&config_json(period)).map_err(std::io::Error::other)?;
    text.push('\n');
    tokio::fs::write(path, text).await
}

fn handle_line(shared: &Arc<Mutex<Shared>>, line: &[u8]) {
    let Ok(text) = std::str::from_utf8(line) else {
        return bad_line(shared, "line is not UTF-8");
    };
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    match report::parse(text) {
        Ok(report) => {
            let mut s = lock(shared);
            for problem in &report.problems {
                s.warn(problem);
            }
            s.errors += report.problems.len() as u64;
            let reading = s.totals.apply(report);
            s.last = Some((Instant::now(), reading));
        }
        Err(e) => bad_line(shared, &e.to_string()),
    }
}

fn bad_line(shared: &Arc<Mutex<Shared>>, why: &str) {
    let mut s = lock(shared);
    s.errors += 1;
    s.warn(&format!("skipped a neuron-monitor line: {why}"));
}

impl Shared {
    /// Logs a problem with the output; after [`WARN_LIMIT`] warnings, at debug
    /// level only, so a child printing garbage every second cannot flood the log.
    fn warn(&mut self, what: &str) {
        self.warnings += 1;
        if self.warnings < WARN_LIMIT {
            tracing::warn!(problem = %what, "neuron-monitor output problem");
        } else if self.warnings == WARN_LIMIT {
            tracing::warn!(problem = %what, "neuron-monitor output problem; further ones are logged at debug level");
        } else {
            tracing::debug!(problem = %what, "neuron-monitor output problem");
        }
    }
}

fn lock(shared: &Arc<Mutex<Shared>>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}
