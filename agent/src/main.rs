//! `edge-agent`: parse flags, set up logging, run until SIGTERM or Ctrl-C.

use clap::Parser;
use edge_agent::config::{Config, LogFormat};

fn main() -> std::process::ExitCode {
    one_malloc_arena();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edge-agent: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(agent())
}

/// glibc gives threads that allocate at the same time arenas of their own,
/// and each keeps what it freed: scripts/bench-agent measured 0.57 MiB of
/// the loaded agent's RSS in them (10.38 → 9.81 MiB), against a DESIGN.md
/// budget of 10 MiB. One arena is enough; the agent's threads rarely
/// allocate at the same time. Called before any thread exists.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

async fn agent() -> std::process::ExitCode {
    let config = Config::parse();
    init_tracing(config.log_format);
    let settings = match config.validate() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("edge-agent: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match edge_agent::run(settings, shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let e = anyhow::Error::from(e);
            tracing::error!("{e:#}");
            eprintln!("edge-agent: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGE_AGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; Ctrl-C only");
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
