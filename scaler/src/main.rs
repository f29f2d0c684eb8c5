//! `edge-scaler`: parse flags, set up logging, run until SIGTERM or Ctrl-C.

use clap::Parser;
use edge_scaler::config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    edge_telemetry::daemon::init_tracing("EDGE_SCALER_LOG", config.log_format);
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
    match edge_scaler::run(settings, edge_telemetry::daemon::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let e = anyhow::Error::from(e);
            tracing::error!("{e:#}");
            eprintln!("edge-scaler: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
