//! The `stet` binary: parses etcd's flags and `ETCD_*` variables, then runs one member until
//! SIGINT/SIGTERM (exit 0), removal or a fatal error (exit 1). Bad flags exit 2. When it
//! refuses to start, it prints the problems `stetutl doctor` would find, with their fixes.

use std::process::ExitCode;

use stet::server::config::{self, ConfigError};

/// mimalloc, tuned by `stet::server::heap`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    stet::server::heap::configure();
    let config = match config::from_process() {
        Ok(Some(config)) => config,
        Ok(None) => {
            use stet::server::version::{ETCD_API_VERSION, STET_VERSION};
            println!("stet Version: {STET_VERSION}");
            println!("etcd API Version: {ETCD_API_VERSION}");
            return ExitCode::SUCCESS;
        }
        Err(ConfigError::Usage(error)) => error.exit(),
        Err(error) => {
            eprintln!("stet: error: {error}");
            return ExitCode::from(2);
        }
    };
    let log = stet::server::log::logger(config.log_level, config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("stet: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(stet::server::run(
        config.clone(),
        log,
        stet::server::shutdown_signal(),
    ));
    // Connections still open (long-lived watch streams) are dropped with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if error.is_refusal_to_start() {
                explain(&config);
            }
            eprintln!("stet: error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The problems `stetutl doctor` finds in the WAL, the small files and the flags (without
/// copying the data directory or asking the other members), each with its fix, before the
/// error itself.
fn explain(config: &config::ServerConfig) {
    use stet::server::doctor::{self, Finding, Severity};
    let problems: Vec<Finding> = doctor::examine(config, doctor::Depth::Quick)
        .into_iter()
        .filter(|f| f.severity == Severity::Problem)
        .collect();
    if !problems.is_empty() {
        eprint!("{}", doctor::render(&problems));
    }
}
