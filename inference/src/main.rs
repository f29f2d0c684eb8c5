//! edge-inference: the Stable Diffusion worker. Not built yet (issue 4); this
//! binary only says so, so that nobody mistakes it for a working worker.

fn main() -> std::process::ExitCode {
    eprintln!("edge-inference is not implemented yet; see the project's issue tracker");
    std::process::ExitCode::from(2)
}
