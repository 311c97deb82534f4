//! A full disk under a real member process: its data directory is on a small tmpfs, a client
//! writes, and another file fills the filesystem. The member must stop with a clear error in its
//! log rather than take writes it cannot keep, stay up (waiting for space, not exiting), lose
//! no acknowledged write, and serve again on its own once the filler is removed.
//!
//! Mounting a tmpfs needs root (CAP_SYS_ADMIN), which CI has; without it the test fails.

mod procs;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use procs::*;
use stet::proto::etcdserverpb as pb;

/// The filesystem's size: room for the first WAL segment (64 MiB, preallocated) and the engine.
const FS_MIB: u32 = 160;
const VALUE_BYTES: usize = 4096;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size_mib: u32) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("create the mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "this test mounts a {size_mib} MiB tmpfs and needs root (CAP_SYS_ADMIN) for it: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until the filesystem is full; the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = File::create(path).expect("create the filler");
    let chunk = vec![7u8; 1 << 20];
    let mut written = 0;
    loop {
        match file.write(&chunk) {
            Ok(0) => return written,
            Ok(n) => written += n as u64,
            Err(error) => {
                assert_eq!(
                    error.raw_os_error(),
                    Some(28),
                    "the filler stops on ENOSPC: {error}"
                );
                return written;
            }
        }
    }
}

fn value(i: u64) -> String {
    format!("{i:08}").repeat(VALUE_BYTES / 8)
}

/// Puts `k<i>`; whether the member acknowledged it (within 3 s).
async fn put(c: &mut Clients, i: u64) -> bool {
    let request = pb::PutRequest {
        key: format!("k{i:06}").into_bytes(),
        value: value(i).into_bytes(),
        ..Default::default()
    };
    let answer = tokio::time::timeout(Duration::from_secs(3), c.kv.put(request)).await;
    matches!(answer, Ok(Ok(_)))
}

fn log_says(log: &Path, what: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|text| text.contains(what))
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_member_on_a_full_disk_stops_loses_nothing_and_serves_again_once_there_is_space() {
    let dir = TempDir::new("disk-full");
    let fs = dir.0.join("fs");
    let _tmpfs = Tmpfs::mount(&fs, FS_MIB);
    let (port, peer_port) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let log = dir.0.join("member.log");
    let log_file = File::create(&log).expect("create the log");
    let mut member = KilledOnDrop(
        member_command()
            .arg("--data-dir")
            .arg(fs.join("data"))
            .args(url_flags(&url, &peer_url))
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn stet"),
    );
    wait_until("the member is healthy", STARTUP_TIMEOUT, || {
        matches!(http_get(port, "/health"), Ok((200, _)))
    });

    let runtime = runtime();
    let mut acknowledged = Vec::new();
    runtime.block_on(async {
        let mut c = connect(url.clone()).await;
        for i in 0..50 {
            assert!(put(&mut c, i).await, "put {i} before the disk is full");
            acknowledged.push(i);
        }
        let filled = fill(&fs.join("filler"));
        assert!(filled > 0, "the filler took the free space");
        // Writes go on until one needs space the disk no longer has.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut i = 50;
        while !log_says(&log, "disk is full") {
            assert!(
                Instant::now() < deadline,
                "the member never found the disk full"
            );
            if put(&mut c, i).await {
                acknowledged.push(i);
            }
            i += 1;
        }
    });
    assert!(
        log_says(&log, "No space left on device"),
        "the log names the cause"
    );
    assert!(
        member.0.try_wait().expect("try_wait").is_none(),
        "the member waits for space instead of exiting"
    );
    assert!(
        http_get(port, "/health").map_or(true, |(code, _)| code != 200),
        "a member stopped on a full disk does not report itself healthy"
    );

    std::fs::remove_file(fs.join("filler")).expect("free the space");
    wait_until(
        "the member serves again once there is space",
        Duration::from_secs(30),
        || matches!(http_get(port, "/health"), Ok((200, _))),
    );
    assert!(
        log_says(&log, "has space again"),
        "the log says why it started again"
    );
    runtime.block_on(async {
        let mut c = connect(url.clone()).await;
        for &i in &acknowledged {
            let key = format!("k{i:06}");
            let found = c.value(&key).await;
            assert_eq!(
                found,
                Some(value(i).into_bytes()),
                "acknowledged {key} was kept"
            );
        }
        let next = acknowledged.last().map_or(0, |i| i + 1_000);
        assert!(put(&mut c, next).await, "writes are taken again");
    });
    assert!(member.0.try_wait().expect("try_wait").is_none());
}
