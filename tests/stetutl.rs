//! `stetutl` against the data directory of a real `stet` process: `wal verify` and `dump-logs`
//! read what the member wrote, report a torn tail without repairing it, name the file and offset
//! of a damaged record, and never change the files they read.

mod procs;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use procs::*;

/// Starts a one-member stet in `dir/data`, runs `etcdctl` commands against it, then kills it
/// (kill -9, as a crash would); what each command printed.
fn write_with_etcdctl(dir: &Path, commands: &[&[&str]]) -> Vec<String> {
    let etcdctl = etcdctl().expect("etcdctl is not installed: apt-get install -y etcd-client");
    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let cluster = format!("default={peer_url}");
    let (mut child, url) = start_member(dir, "default", "data", &peer_url, &cluster);
    let printed = commands
        .iter()
        .map(|args| etcdctl_run(&etcdctl, &url, args))
        .collect();
    child.0.kill().expect("kill stet");
    child.0.wait().expect("wait for stet");
    printed
}

fn stetutl(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stetutl"));
    command.args(args);
    run_to_end(command)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn wal_segments(data: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(data.join("member/wal"))
        .expect("the wal directory")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    segments
}

#[test]
fn wal_verify_and_dump_logs_read_what_a_member_wrote() {
    let dir = TempDir::new("stetutl-read");
    write_with_etcdctl(
        &dir.0,
        &[&["put", "/k", "v1"], &["put", "/k", "v22"], &["del", "/k"]],
    );
    let data = dir.0.join("data");
    let data_arg = data.to_str().expect("a UTF-8 path");
    let before: Vec<Vec<u8>> = wal_segments(&data)
        .iter()
        .map(|p| std::fs::read(p).expect("a segment"))
        .collect();

    let verify = stetutl(&["wal", "verify", data_arg]);
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    let report = text(&verify.stdout);
    assert!(
        report.contains("segment ") && report.contains("OK: "),
        "{report}"
    );
    assert!(!report.contains("torn tail"), "{report}");

    let json = stetutl(&["wal", "verify", "-w", "json", data_arg]);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(parsed["ok"], true);
    assert!(parsed["last_index"].as_u64().unwrap_or(0) >= 5, "{parsed}");

    let dump = stetutl(&["dump-logs", data_arg]);
    assert!(dump.status.success(), "{}", text(&dump.stderr));
    let lines = text(&dump.stdout);
    for expected in [
        "conf change add member",
        "put key=\"/k\" value_size=2 lease=0",
        "put key=\"/k\" value_size=3 lease=0",
        "delete_range key=\"/k\"",
    ] {
        assert!(lines.contains(expected), "missing {expected:?} in\n{lines}");
    }
    let puts = stetutl(&["dump-logs", data_arg, "--entry-type", "IRRPut"]);
    let puts = text(&puts.stdout);
    assert!(puts.contains("Entry types (IRRPut) count is : 2"), "{puts}");
    assert!(!puts.contains("delete_range"), "{puts}");
    let bad = stetutl(&["dump-logs", data_arg, "--entry-type", "IRRBogus"]);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("unknown entry type"));

    let after: Vec<Vec<u8>> = wal_segments(&data)
        .iter()
        .map(|p| std::fs::read(p).expect("a segment"))
        .collect();
    assert!(before == after, "stetutl changed the WAL");
}

#[test]
fn wal_verify_reports_a_torn_tail_and_names_a_damaged_record() {
    let dir = TempDir::new("stetutl-damage");
    write_with_etcdctl(&dir.0, &[&["put", "/a", "1"], &["put", "/b", "2"]]);
    let data = dir.0.join("data");
    let data_arg = data.to_str().expect("a UTF-8 path");
    let segments = wal_segments(&data);
    let last = segments.last().expect("a segment").clone();

    // Bytes after the last record of the last segment: a write that did not finish.
    let json = stetutl(&["wal", "verify", "-w", "json", data_arg]);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let segments_json = parsed["segments"].as_array().expect("segments");
    let end = segments_json.last().expect("a segment")["record_bytes"]
        .as_u64()
        .expect("record_bytes");
    let mut bytes = std::fs::read(&last).expect("the last segment");
    let junk_at = end as usize + 100;
    if bytes.len() < junk_at + 4 {
        bytes.resize(junk_at + 4, 0);
    }
    bytes[junk_at..junk_at + 4].copy_from_slice(b"junk");
    std::fs::write(&last, &bytes).expect("write the segment");
    let torn = stetutl(&["wal", "verify", data_arg]);
    assert!(torn.status.success(), "{}", text(&torn.stderr));
    let report = text(&torn.stdout);
    assert!(
        report.contains(&format!(
            "torn tail: {} bytes at offset {end}",
            bytes.len() as u64 - end
        )),
        "{report}"
    );
    assert_eq!(
        std::fs::read(&last).expect("the segment"),
        bytes,
        "verify repaired the file"
    );

    // A flipped byte inside the first record of the first segment: corruption, named.
    let first = &segments[0];
    let mut bytes = std::fs::read(first).expect("the first segment");
    bytes[14] ^= 0x40;
    std::fs::write(first, &bytes).expect("write the segment");
    let corrupt = stetutl(&["wal", "verify", data_arg]);
    assert_eq!(corrupt.status.code(), Some(1));
    let error = text(&corrupt.stderr);
    assert!(
        error.contains(&first.display().to_string()) && error.contains("at offset 0"),
        "{error}"
    );
}

#[test]
fn snapshot_status_checks_a_backup_and_reports_the_clusters_hash_and_revision() {
    let dir = TempDir::new("stetutl-snapshot");
    let file = dir.0.join("backup.db");
    let file_arg = file.to_str().expect("a UTF-8 path");
    let printed = write_with_etcdctl(
        &dir.0,
        &[
            &["put", "/a", "1"],
            &["put", "/b", "2"],
            &["put", "/a", "3"],
            &["del", "/b"],
            &["snapshot", "save", file_arg],
            &["endpoint", "hashkv", "-w", "json"],
        ],
    );
    let hashkv: serde_json::Value = serde_json::from_str(&printed[5]).expect("hashkv JSON");
    let status = stetutl(&["snapshot", "status", file_arg, "-w", "json"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(
        status["hash"], hashkv[0]["HashKV"]["hash"],
        "{status} vs {hashkv}"
    );
    assert_eq!(
        status["revision"],
        hashkv[0]["HashKV"]["header"]["revision"]
    );
    assert_eq!(
        status["totalKey"], 4,
        "four revisions: three puts and a delete"
    );
    let size = std::fs::metadata(&file).expect("the backup").len();
    assert_eq!(status["totalSize"], size);
    let table = stetutl(&["snapshot", "status", file_arg, "-w", "table"]);
    assert!(
        text(&table.stdout).contains("| REVISION |"),
        "{}",
        text(&table.stdout)
    );

    // One flipped byte: the SHA-256 at the end no longer matches.
    let mut bytes = std::fs::read(&file).expect("the backup");
    bytes[40] ^= 1;
    std::fs::write(&file, &bytes).expect("write the backup");
    let damaged = stetutl(&["snapshot", "status", file_arg]);
    assert_eq!(damaged.status.code(), Some(1));
    assert!(
        text(&damaged.stderr).contains(file_arg),
        "{}",
        text(&damaged.stderr)
    );
}

#[test]
fn a_restored_backup_starts_a_new_cluster_with_the_data_and_revision() {
    let etcdctl = etcdctl().expect("etcdctl is not installed: apt-get install -y etcd-client");
    let dir = TempDir::new("stetutl-restore");
    let file = dir.0.join("backup.db");
    let file_arg = file.to_str().expect("a UTF-8 path");
    write_with_etcdctl(
        &dir.0,
        &[
            &["put", "/a", "1"],
            &["put", "/b", "2"],
            &["put", "/a", "3"],
            &["snapshot", "save", file_arg],
        ],
    );
    let status = stetutl(&["snapshot", "status", file_arg, "-w", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");

    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let cluster = format!("m1={peer_url}");
    let restored = dir.0.join("restored");
    let restored_arg = restored.to_str().expect("a UTF-8 path");
    let restore_args = [
        "snapshot",
        "restore",
        file_arg,
        "--name",
        "m1",
        "--initial-cluster",
        &cluster,
        "--initial-advertise-peer-urls",
        &peer_url,
        "--data-dir",
        restored_arg,
    ];
    let restore = stetutl(&restore_args);
    assert!(restore.status.success(), "{}", text(&restore.stderr));
    let again = stetutl(&restore_args);
    assert!(
        !again.status.success(),
        "restored over an existing data dir"
    );
    assert!(
        text(&again.stderr).contains("exists"),
        "{}",
        text(&again.stderr)
    );

    let (_member, url) = start_member(&dir.0, "m1", restored_arg, &peer_url, &cluster);
    let values = etcdctl_run(&etcdctl, &url, &["get", "--prefix", "/"]);
    assert_eq!(values, "/a\n3\n/b\n2\n");
    let revision = status["revision"].as_i64().expect("a revision");
    let hashkv = etcdctl_run(
        &etcdctl,
        &url,
        &[
            "endpoint",
            "hashkv",
            "--rev",
            &revision.to_string(),
            "-w",
            "json",
        ],
    );
    let hashkv: serde_json::Value = serde_json::from_str(&hashkv).expect("hashkv JSON");
    assert_eq!(hashkv[0]["HashKV"]["hash"], status["hash"], "{hashkv}");
    let members = etcdctl_run(&etcdctl, &url, &["member", "list"]);
    assert_eq!(members.lines().count(), 1, "{members}");
    assert!(
        members.contains("m1") && members.contains(&peer_url),
        "{members}"
    );
    let put = etcdctl_run(&etcdctl, &url, &["put", "/c", "4", "-w", "json"]);
    let put: serde_json::Value = serde_json::from_str(&put).expect("put JSON");
    assert_eq!(put["header"]["revision"].as_i64(), Some(revision + 1));
}
