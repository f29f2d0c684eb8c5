//! Compiles the agent's snapshot feed, the kubelet's PodResources API
//! (vendored unchanged, see `proto/k8s.io/kubelet/PROVENANCE.md`) and KEDA's
//! external scaler contract, once, client and server, for the scaler, the CLI
//! and the tests. protoc comes from the `protoc-bin-vendored` crate so a fresh
//! machine needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Ordered maps: equal label sets compare and hash equal and encode the same.
        // Not for KEDA's contract, whose maps keep the std HashMap its users expect.
        .btree_map(".edge.agent.v1")
        .btree_map(".v1")
        .compile_protos(
            &[
                "proto/edge/agent/v1/snapshot.proto",
                "proto/k8s.io/kubelet/pkg/apis/podresources/v1/api.proto",
                "proto/keda/externalscaler.proto",
            ],
            &["proto"],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
