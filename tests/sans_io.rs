//! Keeps the core sans-IO: fails if any source file outside the adapter (`src/server`, `src/bin`,
//! `src/main.rs`) names tokio, sockets, files, the wall or monotonic clock, or the global RNG.

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
    let mut hits = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("source is readable");
        for (line, word) in violations(&text) {
            hits.push(format!("{}:{line}: {word}", file.display()));
        }
    }
    assert!(
        hits.is_empty(),
        "the core must stay sans-IO:\n{}",
        hits.join("\n")
    );
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
