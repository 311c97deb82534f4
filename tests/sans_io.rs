//! Keeps the core sans-IO: fails if any source file outside the adapter (`src/server`, `src/bin`,
//! `src/main.rs`) names tokio, sockets, files, the wall or monotonic clock, or the global RNG.
//! And keeps the code the simulator runs (`src/server`) free of scheduling a seed does not decide:
//! waits on a `tokio::sync::watch` (each picks one of eight notifiers with tokio's thread-local
//! generator, seeded from a process-wide counter, so the order waiters wake in depends on what the
//! process ran before) and unbiased `select!`s (their polling order is drawn from the same
//! generator). See `server/stop.rs` and `DriverHandle`.

use std::fs;
use std::path::{Path, PathBuf};

const FORBIDDEN: &[&str] = &[
    "tokio",
    "std::net",
    "std::fs",
    "Instant::now",
    "SystemTime::now",
    "thread_rng",
    "std::thread",
];

fn is_adapter(path: &Path, src: &Path) -> bool {
    let rel = path.strip_prefix(src).unwrap_or(path);
    rel.starts_with("server") || rel.starts_with("bin") || rel == Path::new("main.rs")
}

fn core_sources(dir: &Path, src: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).expect("src is readable");
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            if !is_adapter(&path, src) {
                core_sources(&path, src, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") && !is_adapter(&path, src) {
            out.push(path);
        }
    }
}

#[test]
fn core_sources_do_no_io_read_no_clock_and_use_no_global_rng() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    core_sources(&src, &src, &mut files);
    assert!(files.len() >= 3, "found too few core sources: {files:?}");
    let hits = scan(&files, violations);
    assert!(
        hits.is_empty(),
        "the core must stay sans-IO:\n{}",
        hits.join("\n")
    );
}

/// `file:line: what` for every hit of `check` in `files`.
fn scan(files: &[PathBuf], check: fn(&str) -> Vec<(usize, &'static str)>) -> Vec<String> {
    let mut hits = Vec::new();
    for file in files {
        let text = fs::read_to_string(file).expect("source is readable");
        for (line, what) in check(&text) {
            hits.push(format!("{}:{line}: {what}", file.display()));
        }
    }
    hits
}

fn all_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("the directory is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            all_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_server_neither_waits_on_watch_channels_nor_selects_at_random() {
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
    let mut files = Vec::new();
    all_sources(&server, &mut files);
    assert!(files.len() >= 10, "found too few server sources: {files:?}");
    let hits = scan(&files, scheduling_violations);
    assert!(
        hits.is_empty(),
        "scheduling a seed does not decide:\n{}",
        hits.join("\n")
    );
}

/// The (1-based line, what) of every watch wait and unbiased `select!` in a source text,
/// skipping comment lines.
fn scheduling_violations(text: &str) -> Vec<(usize, &'static str)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut hits = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        if code.contains(".changed()") || code.contains(".wait_for(") {
            hits.push((at + 1, "a wait on a watch channel"));
        }
        if code.contains("select! {") {
            let next = lines[at + 1..]
                .iter()
                .map(|l| l.trim())
                .find(|l| !l.is_empty());
            if next != Some("biased;") {
                hits.push((at + 1, "a select! that is not biased"));
            }
        }
    }
    hits
}

#[test]
fn the_scheduling_scan_sees_what_it_forbids() {
    let waits = "let _ = stopped.changed().await;\nstatus.wait_for(|s| s.ok).await;\n";
    assert_eq!(scheduling_violations(waits).len(), 2);
    let unbiased = "tokio::select! {\n    _ = a => {}\n}\n";
    assert_eq!(
        scheduling_violations(unbiased),
        vec![(1, "a select! that is not biased")]
    );
    let biased = "tokio::select! {\n\n    biased;\n    _ = a => {}\n}\n// x.changed()\n";
    assert!(scheduling_violations(biased).is_empty());
}

/// The (1-based line, forbidden word) pairs in a source text, skipping comment lines.
fn violations(text: &str) -> Vec<(usize, &'static str)> {
    let mut hits = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for word in FORBIDDEN {
            if line.contains(word) {
                hits.push((number + 1, *word));
            }
        }
    }
    hits
}

#[test]
fn the_scan_flags_clock_reads_and_sockets_but_not_comments() {
    let text = "// Instant::now is fine in a comment\nlet t = std::time::Instant::now();\nuse std::net::TcpStream;\n";
    assert_eq!(violations(text), vec![(2, "Instant::now"), (3, "std::net")]);
}
