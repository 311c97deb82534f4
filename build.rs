//! Compiles the protobuf files under `proto/` with the pure-Rust `protox` (no system `protoc`),
//! then generates Rust types for them with `prost-build`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/kv.proto", "proto/rpc.proto", "proto/stet.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
