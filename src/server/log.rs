//! The server's logger: slog (the logging crate of the core and of raft-rs, whose messages it
//! also carries), writing readable text or JSON lines to stderr, filtered by `--log-level`.

use std::sync::Mutex;

use slog::Drain;

use super::config::{LogFormat, LogLevel};

/// The root logger for `level` and `format`. Writes are synchronous (a mutex around stderr), so
/// nothing logged before an exit is lost.
pub fn logger(level: LogLevel, format: LogFormat) -> slog::Logger {
    let level = match level {
        LogLevel::Debug => slog::Level::Debug,
        LogLevel::Info => slog::Level::Info,
        LogLevel::Warn => slog::Level::Warning,
        LogLevel::Error => slog::Level::Error,
    };
    match format {
        LogFormat::Text => {
            let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
            let drain = slog_term::FullFormat::new(decorator)
                .use_utc_timestamp()
                .build()
                .filter_level(level)
                .fuse();
            slog::Logger::root(drain, slog::o!())
        }
        LogFormat::Json => {
            let drain = slog_json::Json::new(std::io::stderr())
                .add_default_keys()
                .build();
            let drain = Mutex::new(drain).filter_level(level).fuse();
            slog::Logger::root(drain, slog::o!())
        }
    }
}

/// A logger that drops everything (tests).
pub fn discard() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}
