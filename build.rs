//! Compiles the protobuf files under `proto/` with the pure-Rust `protox` (no system `protoc`),
//! then generates Rust types for them and gRPC servers and clients for etcd's services with
//! `madsim-tonic-build`: tonic's code for a normal build, and under `OUT_DIR/sim/` the same
//! services for madsim's simulated transport (`src/proto.rs` picks one by `cfg(madsim)`).

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo::rustc-check-cfg=cfg(madsim)");
    let files = [
        "proto/kv.proto",
        "proto/auth.proto",
        "proto/rpc.proto",
        "proto/stet.proto",
        "proto/peer.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("descriptors.bin");
    std::fs::write(&descriptor_path, descriptors.encode_to_vec())?;
    // gRPC servers for etcd's services, and clients for them (the server's tests and the
    // simulator's clients use them), only when the server is built.
    let server = std::env::var_os("CARGO_FEATURE_SERVER").is_some();
    tonic_build::configure()
        .build_client(server)
        .build_server(server)
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .emit_rerun_if_changed(false)
        .compile_protos(&files, &["proto"])?;
    Ok(())
}
