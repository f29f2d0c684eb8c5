//! `edge-scaler`: parse flags, set up logging, run until SIGTERM or Ctrl-C.

use clap::Parser;
use edge_scaler::config::{Config, LogFormat};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    init_tracing(config.log_format);
    // kube's HTTPS client asks rustls for the process default provider; with both ring
    // and aws-lc-rs compiled into the workspace rustls cannot pick one, so pick ring
    // (what tonic's TLS uses here) before anything builds a TLS config.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = match config.validate() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("edge-scaler: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match edge_scaler::run(settings, shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let e = anyhow::Error::from(e);
            tracing::error!("{e:#}");
            eprintln!("edge-scaler: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGE_SCALER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
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
