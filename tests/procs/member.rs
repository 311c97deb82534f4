//! Launching the real `stet` binary as a member: the command (without the test runner's
//! `ETCD_*` variables), the flags for a member's URLs, its log, and the bounded wait until it is
//! healthy, which fails at once with the member's log if the process exits instead.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{http_get, STARTUP_TIMEOUT};

/// The `stet` binary as a command with stdin and stdout null and none of the test runner's
/// `ETCD_*` variables (they would conflict with the flags).
pub fn member_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stet"));
    command.stdin(Stdio::null()).stdout(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ETCD_") {
            command.env_remove(name);
        }
    }
    command
}

/// The flags that make a member listen on and advertise `client_url` and `peer_url`.
pub fn url_flags<'a>(client_url: &'a str, peer_url: &'a str) -> [&'a str; 8] {
    [
        "--listen-client-urls",
        client_url,
        "--advertise-client-urls",
        client_url,
        "--listen-peer-urls",
        peer_url,
        "--initial-advertise-peer-urls",
        peer_url,
    ]
}

/// `path` opened for appending: a member's restarts add to its log.
pub fn append_log(path: &Path) -> File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|error| panic!("open the log {}: {error}", path.display()))
}

/// Waits (at most `STARTUP_TIMEOUT`) until the member listening for clients on `port` answers
/// GET `path` (`/health`, perhaps with a query) with 200, which `/health` answers only when
/// healthy; fails with the text of `log` if `child` exits first.
pub fn wait_healthy(child: &mut Child, port: u16, path: &str, log: Option<&Path>) {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let log_text = || log.map(|log| std::fs::read_to_string(log).unwrap_or_default());
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!(
                "stet exited during startup: {status}\n{}",
                log_text().unwrap_or_default()
            );
        }
        if let Ok((200, _)) = http_get(port, path) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "stet on port {port} was not healthy within {STARTUP_TIMEOUT:?}\n{}",
            log_text().unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
