//! Generates the messages, clients and servers of the management API (`management.proto`)
//! and of the cluster transport (`cluster.proto`).
//!
//! protoc comes from `protoc-bin-vendored` and is handed to prost-build directly, never
//! through the `PROTOC` environment variable: raft-proto's build reads that variable and
//! refuses a protoc whose major version is not 3 (see notes/crates.md), so exporting it
//! would break another crate of the workspace.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=management.proto");
    println!("cargo:rerun-if-changed=cluster.proto");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["management.proto", "cluster.proto"],
        &["."],
    )?;
    Ok(())
}
