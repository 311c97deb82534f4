//! Compiles the protobuf files under `proto/` with the pure-Rust `protox` (no system `protoc`),
//! then generates Rust types for them and gRPC servers and clients for etcd's services with
//! `tonic-prost-build`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/kv.proto",
        "proto/rpc.proto",
        "proto/stet.proto",
        "proto/peer.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    // gRPC servers for etcd's services, and clients for them (the server's tests use them), only
    // when the tokio server is built.
    let server = std::env::var_os("CARGO_FEATURE_SERVER").is_some();
    tonic_prost_build::configure()
        .build_client(server)
        .build_server(server)
        .compile_fds(descriptors)?;
    Ok(())
}
