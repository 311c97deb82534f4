//! The `stet` binary. The server (etcd's flags, gRPC and HTTP APIs, peer transport) is built on top
//! of the core in later steps; today the binary reports its version and what it can do.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version") {
        println!("stet Version: {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    eprintln!(
        "stet {}: the sans-IO core is in place; the network server is not built yet (see issue 4).",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
