//! Compiles KEDA's external scaler contract (our own copy, identical on the
//! wire). protoc comes from `protoc-bin-vendored`, as in the telemetry crate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/externalscaler.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
