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
    if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
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

/// Writes the config through a temporary file and a rename, so neuron-monitor
/// (or a second agent sharing the default path) never reads half a file.
async fn write_config(path: &Path, period: Duration) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(&config_json(period)).map_err(std::io::Error::other)?;
    text.push('\n');
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    tokio::fs::write(&tmp, text).await?;
    tokio::fs::rename(&tmp, path).await
}

fn handle_line(shared: &Arc<Mutex<Shared>>, line: &[u8]) {
    let Ok(text) = std::str::from_utf8(line) else {
        return bad_line(shared, "line is not UTF-8");
    };
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    let started = Instant::now();
    match report::parse(text) {
        Ok(report) => {
            let mut s = lock(shared);
            for problem in &report.problems {
                s.warn(problem);
            }
            s.errors += report.problems.len() as u64;
            let reading = s.totals.apply(report);
            let now = Instant::now();
            s.last = Some((now, reading));
            s.last_duration = now - started;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_healthy_run() {
        let mut b = Backoff::default();
        let short = Duration::from_millis(300);
        let delays: Vec<u64> = (0..7).map(|_| b.after_run(short).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.after_run(HEALTHY_RUN), BACKOFF_INITIAL);
        assert_eq!(b.after_run(short), Duration::from_secs(2));
    }

    #[test]
    fn the_config_asks_for_every_group_at_the_agents_period() {
        let c = config_json(Duration::from_millis(200));
        assert_eq!(c["period"], "200ms");
        let rt = &c["neuron_runtimes"][0];
        assert_eq!(rt["tag_filter"], ".*");
        let types = |v: &serde_json::Value| -> Vec<String> {
            v.as_array().unwrap().iter().map(|m| m["type"].as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(
            types(&rt["metrics"]),
            ["neuroncore_counters", "memory_used", "neuron_runtime_vcpu_usage", "execution_stats"]
        );
        assert_eq!(types(&c["system_metrics"]), ["memory_info", "vcpu_usage", "neuron_hw_counters"]);
    }

    #[test]
    fn periods_use_neuron_monitors_syntax() {
        let cases = [(1000, "1s"), (60_000, "60s"), (200, "200ms"), (1500, "1500ms"), (0, "1ms")];
        for (ms, want) in cases {
            assert_eq!(period_string(Duration::from_millis(ms)), want);
        }
    }

    #[tokio::test]
    async fn lines_are_bounded_and_overlong_ones_skipped_whole() {
        let input = format!("abc\n{}\nok\n{}", "x".repeat(25), "y".repeat(11));
        let mut r = BufReader::with_capacity(4, input.as_bytes());
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            let line = read_line(&mut r, &mut buf, 10).await.unwrap();
            let text = String::from_utf8(buf.clone()).unwrap();
            got.push((line, text));
            if got.last().unwrap().0 == Line::Eof {
                break;
            }
        }
        let want = [
            (Line::Complete, "abc"),
            (Line::TooLong, ""),
            (Line::Complete, "ok"),
            (Line::TooLong, ""),
            (Line::Eof, ""),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((line, text), (want_line, want_text)) in got.iter().zip(want) {
            assert_eq!((line, text.as_str()), (&want_line, want_text));
        }
    }

    #[tokio::test]
    async fn a_line_of_exactly_the_limit_is_kept() {
        let input = format!("{}\n{}", "a".repeat(10), "b".repeat(10));
        let mut r = BufReader::new(input.as_bytes());
        let mut buf = Vec::new();
        for want in ["a", "b"] {
            assert_eq!(read_line(&mut r, &mut buf, 10).await.unwrap(), Line::Complete);
            assert_eq!(buf, want.repeat(10).as_bytes());
        }
        assert_eq!(read_line(&mut r, &mut buf, 10).await.unwrap(), Line::Eof);
    }

    #[tokio::test]
    async fn the_config_file_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor.json");
        write_config(&path, Duration::from_secs(2)).await.unwrap();
        let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(written, config_json(Duration::from_secs(2)));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
        let missing = dir.path().join("no-such-dir").join("monitor.json");
        assert!(write_config(&missing, Duration::from_secs(1)).await.is_err());
    }
}
