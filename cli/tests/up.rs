//! `edge-diffusion up` as a user runs it: the real binary starting the real
//! agent, scaler and worker next to it (scripts/test builds the workspace
//! first), a prompt sent to the URL it prints, `load` against it, Ctrl-C; and
//! what it printed on the way, in the shape README.md's sample shows.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use edge_testkit::{artifact, free_port, http};

const BIN: &str = env!("CARGO_BIN_EXE_edge-diffusion");

/// Generous: the first run writes the tiny model, on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(180);

fn loopback() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// `up` with every port free and its own cache directory.
fn up_command(cache: &std::path::Path) -> Command {
    up_command_with(cache, "", "")
}

/// `up` with `--flag=value` in place of that flag's free port.
fn up_command_with(cache: &std::path::Path, port_flag: &str, value: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("up");
    for flag in ["api", "agent", "report", "scaler", "scaler-metrics"] {
        let addr = if flag == port_flag { value.to_owned() } else { loopback() };
        cmd.arg(format!("--{flag}={addr}"));
    }
    cmd.env("XDG_CACHE_HOME", cache).env("RAYON_NUM_THREADS", "1");
    cmd
}

/// Stdout lines as they come.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads lines until one satisfies `done`; all lines read so far.
fn read_until(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, what: &str, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let finished = done(&line);
                seen.push(line);
                if finished {
                    return;
                }
            }
            Err(e) => panic!("no {what} ({e}); output so far:\n{}", seen.join("\n")),
        }
    }
}

/// The single address-and-path token `http://HOST:PORT/...` on a line.
fn url_on(line: &str) -> (SocketAddr, String) {
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).expect("a URL on the line");
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').expect("a path");
    (host.parse().expect("HOST:PORT"), format!("/{path}"))
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// The README, whose sample of `up`'s output ("One machine, in detail") must stay
/// what `up` prints.
const README: &str = include_str!("../../README.md");

/// The README's sample of `up`'s output: the fenced block with the `edge-diffusion is up:` line.
fn readme_sample() -> Vec<&'static str> {
    // Between the first ``` and the next, the second and the third…: the blocks' bodies.
    let block = README
        .split("```")
        .skip(1)
        .step_by(2)
        .find(|body| body.lines().any(|l| l.starts_with("edge-diffusion is up:")))
        .expect("README.md has a sample of `up`'s output");
    // Its first line is the info string (empty here).
    block.lines().skip(1).collect()
}

/// The `--flag=ADDR` addresses `cmd` passes `up`, each paired with that flag's default as
/// `up --help` states it: what a user who gives no flags sees in their place.
fn defaults_for(cmd: &Command) -> Vec<(String, String)> {
    let help = Command::new(BIN).args(["up", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    cmd.get_args()
        .filter_map(|arg| arg.to_str()?.strip_prefix("--")?.split_once('='))
        .filter(|(_, value)| value.parse::<SocketAddr>().is_ok())
        .map(|(flag, addr)| (addr.to_owned(), default_of(&help, flag)))
        .collect()
}

/// `--flag`'s `[default: …]` in `up --help`.
fn default_of(help: &str, flag: &str) -> String {
    let mut lines = help.lines().skip_while(|l| !l.trim_start().starts_with(&format!("--{flag} <")));
    let first = lines.next().unwrap_or_else(|| panic!("--{flag} in `up --help`:\n{help}"));
    // The option's text runs until the next option.
    let text: Vec<&str> =
        std::iter::once(first).chain(lines.take_while(|l| !l.trim_start().starts_with('-'))).collect();
    let text = text.join(" ");
    let (_, rest) = text.split_once("[default: ").unwrap_or_else(|| panic!("a default for --{flag}: {text}"));
    rest.split_once(']').expect("]").0.to_owned()
}

/// `line` with each address `from` (not followed by another digit: `127.0.0.1:940` is
/// not in `127.0.0.1:9401`) as its `to`, all in one pass.
fn replace_addrs(line: &str, addrs: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = line;
    'scan: while let Some(c) = rest.chars().next() {
        for (from, to) in addrs {
            if let Some(after) = rest.strip_prefix(from.as_str())
                && !after.starts_with(|c: char| c.is_ascii_digit())
            {
                out.push_str(to);
                rest = after;
                continue 'scan;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A path that depends on the machine, the same on every machine: one under a cache
/// directory (`…/edge-diffusion/models/tiny`), the default log directory
/// (`…/edge-diffusion-up-PID`). Other words as they are.
fn machine_neutral(word: &str) -> String {
    if !word.starts_with('/') {
        return word.to_owned();
    }
    if let Some(i) = word.find("/edge-diffusion/") {
        return format!("CACHE{}", &word[i..]);
    }
    if let Some((_, name)) = word.rsplit_once('/')
        && let Some(pid) = name.strip_prefix("edge-diffusion-up-")
        && !pid.is_empty()
        && pid.chars().all(|c| c.is_ascii_digit())
    {
        return "TMP/edge-diffusion-up-PID".to_owned();
    }
    word.to_owned()
}

/// A status line without what changes from one to the next: `queue  cpu N STATE | nvidia N
/// STATE | neuron N STATE` (a ` +1 running` left out).
fn status_shape(line: &str) -> String {
    let mut out = Vec::new();
    let mut words = line.split(' ').peekable();
    while let Some(word) = words.next() {
        if word.starts_with('+') && words.peek() == Some(&"running") {
            words.next();
            continue;
        }
        out.push(match word {
            "ACTIVE" | "inactive" => "STATE",
            w if w.parse::<f64>().is_ok() => "N",
            w => w,
        });
    }
    out.join(" ")
}

/// `up`'s output in the shape its README sample must have: addresses as `addrs` maps them,
/// machine-dependent paths neutral, and each run of status lines one `queue  …` line (how many
/// there are depends on the run); second, the shapes of those status lines.
fn transcript_shape<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    addrs: &[(String, String)],
) -> (Vec<String>, BTreeSet<String>) {
    let mut shape: Vec<String> = Vec::new();
    let mut statuses = BTreeSet::new();
    for line in lines {
        let line = replace_addrs(line, addrs);
        let line: Vec<String> = line.split(' ').map(machine_neutral).collect();
        let line = line.join(" ");
        if line.starts_with("queue  ") {
            statuses.insert(status_shape(&line));
            if shape.last().is_some_and(|l| l == "queue  …") {
                continue;
            }
            shape.push("queue  …".to_owned());
        } else {
            shape.push(line);
        }
    }
    (shape, statuses)
}

/// README.md's sample is what `up` printed (`seen`, run with the addresses of `addrs`, each
/// mapped to its default): the same lines, with the same addresses, in the same order.
fn assert_readme_sample_matches(seen: &[String], addrs: &[(String, String)]) {
    let sample = readme_sample();
    let (want, want_statuses) = transcript_shape(sample.iter().copied(), &[]);
    let (got, got_statuses) = transcript_shape(seen.iter().map(String::as_str), addrs);
    let both = format!("README.md's sample:\n{}\n\n`up` printed:\n{}", sample.join("\n"), seen.join("\n"));
    assert_eq!(
        want, got,
        "README.md's sample of `up` is not what `up` prints; update the README (left: the README's, right: `up`'s).\n{both}"
    );
    assert!(
        want_statuses.is_subset(&got_statuses),
        "README.md's status lines {want_statuses:#?} are not the shape of `up`'s {got_statuses:#?}.\n{both}"
    );
}

#[test]
fn up_serves_the_printed_url_shows_the_scaler_and_stops_on_ctrl_c() {
    for sibling in ["edge-agent", "edge-scaler", "edge-inference"] {
        artifact(sibling);
    }
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = up_command(cache.path());
    let addrs = defaults_for(&cmd);
    let mut up = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let rx = lines(&mut up);
    let mut seen = Vec::new();
    read_until(&rx, &mut seen, "ready block", |l| l.starts_with("Ctrl-C stops everything"));
    assert!(seen.iter().any(|l| l.contains("first run only")), "the tiny model is written on first run:\n{seen:#?}");
    assert!(cache.path().join("edge-diffusion/models/tiny/unet").is_dir());

    let api_line = seen.iter().find(|l| l.contains("image API")).expect("an image API line").clone();
    let (api, path) = url_on(&api_line);
    assert_eq!(path, "/generate");
    let (status, body) =
        http::post_json_timeout(api, &path, r#"{"prompt": "a lighthouse at dusk", "steps": 2}"#, PATIENCE).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("PNG"), "an image comes back");
    let metrics_line = seen.iter().find(|l| l.contains("/metrics")).expect("a /metrics line").clone();
    let (agent, metrics_path) = url_on(&metrics_line);
    edge_testkit::eventually(PATIENCE, "the worker's queue on the agent's /metrics", || {
        let (status, metrics) = http::get(agent, &metrics_path).ok()?;
        (status == 200 && metrics.contains("edge_worker_queue_depth{")).then_some(())
    });

    // The scaler's endpoint inventory lists the worker at the printed API address.
    let scaler_metrics = seen.iter().find(|l| l.contains("(scaler)")).expect("the scaler's /metrics on a line").clone();
    let scaler_http: SocketAddr = scaler_metrics
        .split_whitespace()
        .filter(|w| w.starts_with("http://"))
        .nth(1)
        .and_then(|u| u.trim_start_matches("http://").split('/').next()?.parse().ok())
        .expect("the scaler's HTTP address");
    edge_testkit::eventually(PATIENCE, "the worker in the scaler's /v1/endpoints", || {
        let (status, body) = http::get(scaler_http, "/v1/endpoints").ok()?;
        (status == 200 && body.contains(&format!("\"url\":\"http://{api}\""))).then_some(())
    });

    // The live line: the CPU worker as the scaler (and KEDA) sees it.
    read_until(&rx, &mut seen, "a status line", |l| l.starts_with("queue  cpu 0 inactive"));

    let load = Command::new(BIN)
        .args(["load", "--url", &format!("http://{api}"), "-n", "3", "-c", "3", "--steps", "2"])
        .output()
        .unwrap();
    let load_out = String::from_utf8_lossy(&load.stdout);
    assert!(load.status.success(), "{load_out}\n{}", String::from_utf8_lossy(&load.stderr));
    assert!(load_out.contains("3/3 done: 3 ok"), "{load_out}");

    // The same loop driving inpainting edits.
    let files = tempfile::tempdir().unwrap();
    let (image, mask) = (files.path().join("in.png"), files.path().join("mask.png"));
    write_png(&image, png::ColorType::Rgb, &vec![90; 64 * 64 * 3]);
    write_png(
        &mask,
        png::ColorType::Grayscale,
        &(0..64 * 64).map(|i| if i % 64 < 32 { 0 } else { 255 }).collect::<Vec<u8>>(),
    );
    let load = Command::new(BIN)
        .args(["load", "--url", &format!("http://{api}"), "-n", "2", "--steps", "2", "--edit"])
        .arg(&image)
        .arg("--mask")
        .arg(&mask)
        .output()
        .unwrap();
    let load_out = String::from_utf8_lossy(&load.stdout);
    assert!(load.status.success(), "{load_out}\n{}", String::from_utf8_lossy(&load.stderr));
    assert!(load_out.contains("2/2 done: 2 ok"), "{load_out}");

    ctrl_c_stops(&mut up, &rx, &mut seen);
    assert_readme_sample_matches(&seen, &addrs);
    // The children are gone with it: their ports are free again.
    for addr in [api, agent] {
        assert!(TcpListener::bind(addr).is_ok(), "{addr} still held after up exited");
    }
}

#[test]
fn up_zero_wakes_a_worker_on_the_first_inventory_pull_and_stops_it_after_the_cooldown() {
    let cache = tempfile::tempdir().unwrap();
    let mut up = up_command(cache.path())
        .args(["--zero", "--cooldown=2", "--status-interval=0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines(&mut up);
    let mut seen = Vec::new();
    read_until(&rx, &mut seen, "ready block", |l| l.starts_with("Ctrl-C stops everything"));
    assert!(seen.iter().any(|l| l.contains("no worker yet")), "{seen:#?}");
    let api_line = seen.iter().find(|l| l.contains("image API")).expect("an image API line").clone();
    let (api, _) = url_on(&api_line);
    assert!(std::net::TcpStream::connect(api).is_err(), "no worker listens at {api} before the first pull");
    let inventory_line =
        seen.iter().find(|l| l.trim_start().starts_with("inventory")).expect("an inventory line").clone();
    let (scaler_http, inventory_path) = url_on(&inventory_line);

    // A device's first pull: nothing is ready, a worker is being woken.
    let first = http::get_response(scaler_http, &inventory_path).unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    let answer: serde_json::Value = serde_json::from_str(&first.text()).unwrap();
    assert_eq!(answer["endpoints"], serde_json::json!([]), "{}", first.text());
    assert_eq!(answer["waking"][0]["deployment"], "sd-cpu", "{}", first.text());
    assert!(first.header("retry-after").is_some(), "{:?}", first.headers);

    read_until(&rx, &mut seen, "the wake", |l| l.starts_with("woken:"));
    read_until(&rx, &mut seen, "the woken worker ready", |l| l.starts_with("worker ready after"));
    assert!(
        seen.iter().any(|l| l.starts_with("queue  cpu") && l.contains("waking")),
        "the live line shows waking between activation and the first ready report:\n{seen:#?}"
    );
    // The inventory now lists it, and it serves.
    edge_testkit::eventually(PATIENCE, "the woken worker in the inventory", || {
        let (status, body) = http::get(scaler_http, &inventory_path).ok()?;
        (status == 200 && body.contains(&format!("\"url\":\"http://{api}\""))).then_some(())
    });
    let (status, body) =
        http::post_json_timeout(api, "/generate", r#"{"prompt": "a lighthouse", "steps": 2}"#, PATIENCE).unwrap();
    assert_eq!(status, 200, "{body}");

    // Idle past the cooldown: back to zero.
    read_until(&rx, &mut seen, "the cooldown", |l| l.starts_with("no worker: the next pull"));
    assert!(seen.iter().any(|l| l.starts_with("idle for 2s (--cooldown)")), "{seen:#?}");
    edge_testkit::eventually(PATIENCE, "the worker's port free again", || TcpListener::bind(api).ok().map(|_| ()));

    ctrl_c_stops(&mut up, &rx, &mut seen);
}

/// SIGINT, as Ctrl-C sends it: `up` stops its children, says so and exits 0.
fn ctrl_c_stops(up: &mut Child, rx: &mpsc::Receiver<String>, seen: &mut Vec<String>) {
    let _ = Command::new("kill").arg("-INT").arg(up.id().to_string()).status();
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = up.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "up did not exit after SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    seen.extend(rx.try_iter());
    assert!(status.success(), "exit {status}; stderr: {}\nstdout:\n{}", stderr_of(up), seen.join("\n"));
    assert_eq!(seen.last().map(String::as_str), Some("stopped."), "{seen:#?}");
}

/// A failed `up`: exit status and its stderr, which must be one line.
fn one_line_failure(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
    assert!(!out.status.success(), "up should fail; stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(stderr.lines().count(), 1, "one line, not a stack trace:\n{stderr}");
    stderr
}

#[test]
fn a_port_in_use_is_one_clear_line() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = up_command_with(cache.path(), "scaler", &taken.to_string()).output().unwrap();
    let err = one_line_failure(out);
    assert!(err.contains(&format!("{taken} is already in use (--scaler)")), "{err}");
}

#[test]
fn a_missing_model_is_one_clear_line() {
    let cache = tempfile::tempdir().unwrap();
    let out = up_command(cache.path()).arg("--model-dir=/nonexistent/sd-turbo").output().unwrap();
    let err = one_line_failure(out);
    assert!(err.contains("--model-dir /nonexistent/sd-turbo: no such directory"), "{err}");

    let half = tempfile::tempdir().unwrap();
    std::fs::create_dir(half.path().join("unet")).unwrap();
    let out = up_command(cache.path()).arg(format!("--model-dir={}", half.path().display())).output().unwrap();
    let err = one_line_failure(out);
    assert!(err.contains("missing text_encoder/, vae/, tokenizer/, scheduler/"), "{err}");
}

#[test]
fn missing_binaries_name_the_build_command() {
    let dir = tempfile::tempdir().unwrap();
    let alone = dir.path().join("edge-diffusion");
    std::fs::copy(BIN, &alone).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cmd = up_command(cache.path());
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    // Another test thread may fork while our copy's write handle is open; the
    // child holds it until it execs, and exec of the copy fails with "text
    // file busy" meanwhile. That is a race of this test, not of `up`: retry.
    let deadline = Instant::now() + Duration::from_secs(10);
    let out = loop {
        match Command::new(&alone).args(&args).env("XDG_CACHE_HOME", cache.path()).output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            result => break result.unwrap(),
        }
    };
    let err = one_line_failure(out);
    assert!(err.contains("edge-agent not found") && err.contains("cargo build --workspace"), "{err}");
}

/// A 64x64 PNG for `load --edit`.
fn write_png(path: &std::path::Path, color: png::ColorType, data: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(file, 64, 64);
    enc.set_color(color);
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(data).unwrap();
    writer.finish().unwrap();
}
