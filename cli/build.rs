//! Generates a KEDA-side client from the project's own copy of KEDA's
//! `externalscaler.proto` (the file the scaler serves), so `up`'s status line
//! and the benchmark ask the scaler exactly what KEDA asks. Client only: the
//! CLI does not link the scaler (and its Kubernetes client) to talk to it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_protos(&["../scaler/proto/externalscaler.proto"], &["../scaler/proto"])?;
    println!("cargo:rerun-if-changed=../scaler/proto");
    Ok(())
}
