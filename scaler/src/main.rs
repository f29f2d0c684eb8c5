//! edge-scaler: the KEDA external scaler. Not built yet (issue 3); this binary
//! only says so, so that nobody mistakes it for a working scaler.

fn main() -> std::process::ExitCode {
    eprintln!("edge-scaler is not implemented yet; see the project's issue tracker");
    std::process::ExitCode::from(2)
}
