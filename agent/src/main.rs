//! `edge-agent`: parse flags, set up logging, run until SIGTERM or Ctrl-C.

use clap::Parser;
use edge_agent::config::Config;

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
    edge_telemetry::daemon::init_tracing("EDGE_AGENT_LOG", config.log_format);
    let settings = match config.validate() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("edge-agent: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match edge_agent::run(settings, edge_telemetry::daemon::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let e = anyhow::Error::from(e);
            tracing::error!("{e:#}");
            eprintln!("edge-agent: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
