//! The operator's runbook as tests, on real `stet` processes driven by the real `etcdctl` 3.4:
//! the recovery and migration runbook — one member holding the data, its data directory copied
//! to a new machine and started alone with `--force-new-cluster` under a new name and peer URL,
//! its peer URL fixed with `member update`, then two members added one at a time with the
//! `ETCD_*` settings `member add` prints — ending in a healthy three-member cluster holding all
//! the data.

mod procs;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use procs::*;

/// A stet process started by a test, killed when dropped.
struct Running {
    name: String,
    client_url: String,
    peer_url: String,
    process: KilledOnDrop,
    /// How it was started, to start it again.
    flags: Vec<String>,
    env: Vec<(String, String)>,
}

/// Ports for one member.
fn urls() -> (String, String) {
    (
        format!("http://127.0.0.1:{}", free_port()),
        format!("http://127.0.0.1:{}", free_port()),
    )
}

/// The command that runs `stet` in `dir` with its listen/advertise URLs, the given flags and
/// `ETCD_*` variables (and none from the test's environment), logging to `dir/<name>.log`.
fn command(
    dir: &Path,
    name: &str,
    urls: (&str, &str),
    flags: &[&str],
    env: &[(String, String)],
) -> Command {
    command_via(&[], dir, name, urls, flags, env)
}

/// [`command`] run through `wrapper` (a program and its arguments, e.g. `faketime`).
fn command_via(
    wrapper: &[&str],
    dir: &Path,
    name: &str,
    (client_url, peer_url): (&str, &str),
    flags: &[&str],
    env: &[(String, String)],
) -> Command {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .expect("log file");
    let stet = env!("CARGO_BIN_EXE_stet");
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            use std::os::unix::process::CommandExt as _;
            let mut command = Command::new(program);
            // Its own process group, so that the member the wrapper starts dies with it
            // (`KilledOnDrop`).
            command.args(args).arg(stet).process_group(0);
            command
        }
        None => Command::new(stet),
    };
    command
        .current_dir(dir)
        .args(["--listen-client-urls", client_url])
        .args(["--advertise-client-urls", client_url])
        .args(["--listen-peer-urls", peer_url])
        .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("ETCD_") {
            command.env_remove(var);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command
}

/// Starts `stet` (see [`command`]) and waits until `/health` says it is healthy.
fn start(
    dir: &Path,
    name: &str,
    urls: (String, String),
    flags: &[&str],
    env: &[(String, String)],
) -> Running {
    start_via(&[], dir, name, urls, flags, env)
}

/// [`start`] through `wrapper` (see [`command_via`]).
fn start_via(
    wrapper: &[&str],
    dir: &Path,
    name: &str,
    (client_url, peer_url): (String, String),
    flags: &[&str],
    env: &[(String, String)],
) -> Running {
    let urls = (client_url.as_str(), peer_url.as_str());
    let mut process = command_via(wrapper, dir, name, urls, flags, env);
    let mut process = KilledOnDrop(process.spawn().expect("spawn stet"));
    let port: u16 = client_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while !matches!(http_get(port, "/health"), Ok((200, body)) if body.contains("true")) {
        if let Ok(Some(status)) = process.0.try_wait() {
            let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
            panic!("{name} exited: {status}\n{log}");
        }
        assert!(Instant::now() < deadline, "{name} was not healthy in time");
        std::thread::sleep(Duration::from_millis(50));
    }
    Running {
        name: name.to_string(),
        client_url,
        peer_url,
        process,
        flags: flags.iter().map(|f| f.to_string()).collect(),
        env: env.to_vec(),
    }
}

fn ctl(endpoints: &str, args: &[&str]) -> String {
    etcdctl_run(Path::new("etcdctl"), endpoints, args)
}

/// The ID of member `name`, as `etcdctl member list -w json` at `endpoints` gives it.
fn member_id(endpoints: &str, name: &str) -> u64 {
    let members = ctl(endpoints, &["member", "list", "-w", "json"]);
    let members: serde_json::Value = serde_json::from_str(&members).expect("JSON");
    members["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["ID"].as_u64())
        .unwrap_or_else(|| panic!("{name}'s ID in {members}"))
}

/// The `KEY="value"` lines `etcdctl member add` prints.
fn printed_settings(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| key.starts_with("ETCD_"))
        .map(|(key, value)| (key.to_string(), value.trim_matches('"').to_string()))
        .collect()
}

/// Adds a member with `etcdctl member add` through `endpoints` and starts it with the settings
/// it printed, in `dir/<name>.stet`.
fn add_member(dir: &Path, endpoints: &str, name: &str) -> Running {
    add_member_with(dir, endpoints, name, &[])
}

/// [`add_member`], the new member started with `flags` as well.
fn add_member_with(dir: &Path, endpoints: &str, name: &str, flags: &[&str]) -> Running {
    let (client_url, peer_url) = urls();
    let added = ctl(
        endpoints,
        &["member", "add", name, &format!("--peer-urls={peer_url}")],
    );
    let settings = printed_settings(&added);
    let names: Vec<&str> = settings.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "ETCD_NAME",
            "ETCD_INITIAL_CLUSTER",
            "ETCD_INITIAL_ADVERTISE_PEER_URLS",
            "ETCD_INITIAL_CLUSTER_STATE"
        ],
        "{added}"
    );
    let data_dir = format!("{name}.stet");
    let mut all = vec!["--data-dir", &data_dir];
    all.extend_from_slice(flags);
    start(dir, name, (client_url, peer_url), &all, &settings)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy a file");
        }
    }
}

#[test]
fn a_recovered_member_grows_back_into_a_healthy_three_member_cluster() {
    etcdctl().expect("etcdctl is not installed: apt-get install -y etcd-client");
    let dir = TempDir::new("runbook-grow");
    let d = &dir.0;

    // The member holding the data, on its old machine.
    let (client_url, old_peer) = urls();
    let old = start(
        d,
        "old",
        (client_url, old_peer.clone()),
        &[
            "--name",
            "old",
            "--data-dir",
            "old.stet",
            "--initial-advertise-peer-urls",
            &old_peer,
            "--initial-cluster",
            &format!("old={old_peer}"),
        ],
        &[],
    );
    for i in 0..30 {
        ctl(
            &old.client_url,
            &["put", &format!("/data/{i:02}"), &format!("value-{i}")],
        );
    }
    let before = ctl(
        &old.client_url,
        &["get", "/data/", "--prefix", "-w", "json"],
    );
    let before: serde_json::Value = serde_json::from_str(&before).expect("JSON");
    let revision = before["header"]["revision"].as_i64().expect("revision");
    let old_cluster = before["header"]["cluster_id"].as_u64().expect("cluster_id");
    drop(old); // SIGKILL: the machine is gone.

    // Its data directory, copied to a new machine, started alone under a new name and URL.
    copy_dir(&d.join("old.stet"), &d.join("n1.stet"));
    let (client_url, peer_url) = urls();
    let mut n1 = start(
        d,
        "n1",
        (client_url, peer_url.clone()),
        &[
            "--name",
            "n1",
            "--data-dir",
            "n1.stet",
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("n1={peer_url}"),
            "--force-new-cluster",
        ],
        &[],
    );
    // The forced member publishes its peer URL from its flags (etcd keeps the old one until a
    // `member update`); the runbook's `member update` is then a no-op that still works.
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        let members = ctl(&n1.client_url, &["member", "list", "-w", "json"]);
        let members: serde_json::Value = serde_json::from_str(&members).expect("JSON");
        let list = members["members"].as_array().expect("members").clone();
        assert_eq!(list.len(), 1, "{members}");
        if list[0]["peerURLs"][0] == n1.peer_url.as_str() {
            break format!("{:x}", list[0]["ID"].as_u64().expect("an ID"));
        }
        assert!(Instant::now() < deadline, "the peer URL stayed {members}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let updated = ctl(
        &n1.client_url,
        &[
            "member",
            "update",
            &id,
            &format!("--peer-urls={}", n1.peer_url),
        ],
    );
    assert!(updated.contains("updated in cluster"), "{updated}");

    // Two members added one at a time.
    let mut n2 = add_member(d, &n1.client_url, "n2");
    let mut n3 = add_member(d, &format!("{},{}", n1.client_url, n2.client_url), "n3");
    let all = [&n1, &n2, &n3].map(|m| (m.name.clone(), m.client_url.clone(), m.peer_url.clone()));
    let endpoints = all
        .iter()
        .map(|(_, client_url, _)| client_url.clone())
        .collect::<Vec<_>>()
        .join(",");

    let health = ctl(&endpoints, &["endpoint", "health", "-w", "json"]);
    assert_eq!(health.matches("\"health\":true").count(), 3, "{health}");
    let members = ctl(&endpoints, &["member", "list", "-w", "json"]);
    let members: serde_json::Value = serde_json::from_str(&members).expect("JSON");
    let mut listed: Vec<(String, String)> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["peerURLs"][0].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    listed.sort();
    // A new cluster, which every member belongs to.
    let new_cluster = members["header"]["cluster_id"]
        .as_u64()
        .expect("cluster_id");
    assert_ne!(new_cluster, old_cluster);
    let status = ctl(&endpoints, &["endpoint", "status", "-w", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    for member in status.as_array().expect("one status per endpoint") {
        assert_eq!(
            member["Status"]["header"]["cluster_id"], new_cluster,
            "{member}"
        );
    }
    let expected: Vec<(String, String)> = all
        .iter()
        .map(|(name, _, peer_url)| (name.clone(), peer_url.clone()))
        .collect();
    assert_eq!(listed, expected);

    // Every member holds all the data, at the revision it had, and takes new writes.
    for (name, client_url, _) in &all {
        let got = ctl(
            client_url,
            &[
                "get",
                "/data/",
                "--prefix",
                "--consistency=s",
                "-w",
                "json",
                &format!("--rev={revision}"),
            ],
        );
        let got: serde_json::Value = serde_json::from_str(&got).expect("JSON");
        assert_eq!(got["kvs"], before["kvs"], "{name}");
    }
    ctl(&n3.client_url, &["put", "/after", "grown"]);
    assert_eq!(
        ctl(&n1.client_url, &["get", "/after", "--print-value-only"]),
        "grown\n"
    );
    for member in [&mut n1, &mut n2] {
        let exited = member.process.0.try_wait().expect("try_wait");
        assert!(exited.is_none(), "{} exited: {exited:?}", member.name);
    }

    // A removed member exits; restarted on its old data, it refuses to start, saying why, and
    // the cluster carries on.
    let n3_id = member_id(&n3.client_url, "n3");
    ctl(&n1.client_url, &["member", "remove", &format!("{n3_id:x}")]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while n3.process.0.try_wait().expect("try_wait").is_none() {
        assert!(Instant::now() < deadline, "the removed member did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    let flags: Vec<&str> = n3.flags.iter().map(String::as_str).collect();
    let again = run_to_end(command(
        d,
        "n3",
        (&n3.client_url, &n3.peer_url),
        &flags,
        &n3.env,
    ));
    assert!(!again.status.success());
    let said = String::from_utf8_lossy(&again.stderr);
    let last = said.lines().last().unwrap_or_default();
    assert!(
        last.contains("permanently removed") && last.contains("etcdctl member add"),
        "{last}"
    );
    // The doctor says the same of the removed member's data, and names the fix.
    let (ok, said) = doctor(d, &flags, &n3.env);
    assert!(!ok);
    assert!(
        said.contains("was removed") && said.contains("etcdctl member add"),
        "{said}"
    );
    // A member started with a peer URL the cluster does not know gets the member update to run.
    let mut moved_env = n2.env.clone();
    let moved_url = format!("http://127.0.0.1:{}", free_port());
    for (key, value) in &mut moved_env {
        if key == "ETCD_INITIAL_ADVERTISE_PEER_URLS" || key == "ETCD_INITIAL_CLUSTER" {
            *value = value.replace(&n2.peer_url, &moved_url);
        }
    }
    let (ok, said) = doctor(
        d,
        &n2.flags.iter().map(String::as_str).collect::<Vec<_>>(),
        &moved_env,
    );
    assert!(!ok);
    assert!(said.contains(&format!("--peer-urls={moved_url}")), "{said}");
    let endpoints = format!("{},{}", n1.client_url, n2.client_url);
    let health = ctl(&endpoints, &["endpoint", "health", "-w", "json"]);
    assert_eq!(health.matches("\"health\":true").count(), 2, "{health}");
    ctl(&n2.client_url, &["put", "/after-removal", "ok"]);
}

fn stetutl(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stetutl"));
    command.current_dir(dir).args(args);
    run_to_end(command)
}

/// A one-member start on `data_dir` as `name`, listening on `ports`, with `extra` flags.
fn single(name: &str, data_dir: &str, peer_url: &str) -> Vec<String> {
    [
        "--name",
        name,
        "--data-dir",
        data_dir,
        "--initial-advertise-peer-urls",
        peer_url,
        "--initial-cluster",
        &format!("{name}={peer_url}"),
    ]
    .map(str::to_string)
    .to_vec()
}

#[test]
fn an_offline_backup_starts_only_as_a_new_cluster() {
    etcdctl().expect("etcdctl is not installed: apt-get install -y etcd-client");
    let dir = TempDir::new("runbook-backup");
    let d = &dir.0;
    let (client_url, peer_url) = urls();
    let flags = single("a", "a.stet", &peer_url);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let a = start(d, "a", (client_url.clone(), peer_url.clone()), &flags, &[]);
    for i in 0..10 {
        ctl(&a.client_url, &["put", &format!("/k{i}"), &format!("v{i}")]);
    }
    let before = ctl(&a.client_url, &["get", "/k", "--prefix", "-w", "json"]);
    let before: serde_json::Value = serde_json::from_str(&before).expect("JSON");

    // A running member's directory is neither copied nor opened by a second member.
    let refused = stetutl(
        d,
        &["backup", "--data-dir", "a.stet", "--backup-dir", "b.stet"],
    );
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("in use by another process"), "{said}");
    assert!(!d.join("b.stet").exists());
    let (other_client, other_peer) = urls();
    let second = run_to_end(command(
        d,
        "second",
        (&other_client, &other_peer),
        &flags,
        &[],
    ));
    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("in use by another process"), "{said}");
    drop(a);

    let backup = stetutl(
        d,
        &["backup", "--data-dir", "a.stet", "--backup-dir", "b.stet"],
    );
    let printed = String::from_utf8_lossy(&backup.stdout);
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    assert!(
        printed.contains("start it with --force-new-cluster"),
        "{printed}"
    );
    let json = stetutl(
        d,
        &[
            "backup",
            "-w",
            "json",
            "--data-dir",
            "a.stet",
            "--backup-dir",
            "c.stet",
        ],
    );
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert!(json["files"].as_u64().unwrap_or(0) >= 2, "{json}");
    assert!(json["commit_index"].as_u64().unwrap_or(0) > 10, "{json}");

    // Started as the member it was, the backup refuses, saying how to start it.
    let (b_client, b_peer) = urls();
    let as_before = single("a", "b.stet", &b_peer);
    let as_before: Vec<&str> = as_before.iter().map(String::as_str).collect();
    let plain = run_to_end(command(d, "b", (&b_client, &b_peer), &as_before, &[]));
    assert!(!plain.status.success());
    let said = String::from_utf8_lossy(&plain.stderr);
    assert!(
        said.contains("stetutl backup") && said.contains("--force-new-cluster"),
        "{said}"
    );

    // With --force-new-cluster it is a new one-member cluster holding the data; after that it
    // restarts as usual.
    let forced_flags = single("b", "b.stet", &b_peer);
    let mut forced_flags: Vec<&str> = forced_flags.iter().map(String::as_str).collect();
    forced_flags.push("--force-new-cluster");
    let b = start(
        d,
        "b",
        (b_client.clone(), b_peer.clone()),
        &forced_flags,
        &[],
    );
    let after = ctl(&b.client_url, &["get", "/k", "--prefix", "-w", "json"]);
    let after: serde_json::Value = serde_json::from_str(&after).expect("JSON");
    assert_eq!(after["kvs"], before["kvs"]);
    ctl(&b.client_url, &["put", "/k-new", "x"]);
    drop(b);
    let b = start(
        d,
        "b",
        (b_client, b_peer),
        &forced_flags[..forced_flags.len() - 1],
        &[],
    );
    assert_eq!(
        ctl(&b.client_url, &["get", "/k-new", "--print-value-only"]),
        "x\n"
    );
    assert!(!d.join("b.stet/member/stet-backup").exists());
}

/// Stops `member` as systemd's `restart` does (SIGTERM, bounded wait) or as a crash does
/// (SIGKILL); whether it exited cleanly after SIGTERM.
fn stop(member: &mut Running, crash: bool) -> bool {
    if crash {
        let _ = member.process.0.kill();
        let _ = member.process.0.wait();
        return true;
    }
    let pid = member.process.0.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -TERM failed");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = member.process.0.try_wait().expect("try_wait") {
            return status.success();
        }
        assert!(Instant::now() < deadline, "stet did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_member_restarted_again_and_again_under_load_keeps_every_write() {
    let dir = TempDir::new("runbook-restarts");
    let d = &dir.0;
    let urls: Vec<(String, String)> = (0..3).map(|_| urls()).collect();
    let cluster = (0..3)
        .map(|i| format!("m{i}={}", urls[i].1))
        .collect::<Vec<_>>()
        .join(",");
    let flags = |i: usize| -> Vec<String> {
        [
            "--name",
            &format!("m{i}"),
            "--data-dir",
            &format!("m{i}.stet"),
            "--initial-advertise-peer-urls",
            &urls[i].1,
            "--initial-cluster",
            &cluster,
        ]
        .map(str::to_string)
        .to_vec()
    };
    // Members start together (a new cluster needs a quorum before any is healthy).
    let mut children: Vec<KilledOnDrop> = (0..3)
        .map(|i| {
            let f = flags(i);
            let f: Vec<&str> = f.iter().map(String::as_str).collect();
            let (client, peer) = (&urls[i].0, &urls[i].1);
            KilledOnDrop(
                command(d, &format!("m{i}"), (client, peer), &f, &[])
                    .spawn()
                    .expect("spawn"),
            )
        })
        .collect();
    let restarted_flags = flags(2);
    let restarted_flags: Vec<&str> = restarted_flags.iter().map(String::as_str).collect();
    let mut m2 = Running {
        name: "m2".into(),
        client_url: urls[2].0.clone(),
        peer_url: urls[2].1.clone(),
        process: children.pop().expect("m2"),
        flags: Vec::new(),
        env: Vec::new(),
    };
    let runtime = runtime();
    let writer_endpoint = urls[0].0.clone();
    let stop_writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = {
        let stop_writing = stop_writing.clone();
        runtime.spawn(async move {
            let mut acknowledged = Vec::new();
            let mut clients = connect_when_up(&writer_endpoint).await;
            let mut i = 0u64;
            while !stop_writing.load(std::sync::atomic::Ordering::Relaxed) {
                let request = stet::proto::etcdserverpb::PutRequest {
                    key: format!("/load/{i:06}").into_bytes(),
                    value: vec![b'x'; 100],
                    ..Default::default()
                };
                let put = tokio::time::timeout(Duration::from_secs(5), clients.kv.put(request));
                if let Ok(Ok(_)) = put.await {
                    acknowledged.push(i);
                }
                i += 1;
            }
            acknowledged
        })
    };
    for round in 0..6 {
        std::thread::sleep(Duration::from_millis(300));
        let clean = stop(&mut m2, round % 2 == 1);
        assert!(clean, "m2 did not stop cleanly on SIGTERM in round {round}");
        m2 = start(d, "m2", urls[2].clone(), &restarted_flags, &[]);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop_writing.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = runtime.block_on(writing).expect("the writer");
    assert!(
        acknowledged.len() > 50,
        "only {} writes",
        acknowledged.len()
    );
    // Every acknowledged write is on every member, the restarted one included.
    let endpoints: Vec<String> = urls.iter().map(|(client, _)| client.clone()).collect();
    runtime.block_on(async {
        let last = format!("/load/{:06}", acknowledged.last().expect("a write"));
        for endpoint in &endpoints {
            let mut clients = connect(endpoint.clone()).await;
            let deadline = Instant::now() + Duration::from_secs(10);
            // Wait until this member has applied the last write, then read locally.
            while clients.value(&last).await.is_none() {
                assert!(Instant::now() < deadline, "{endpoint} did not catch up");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let request = stet::proto::etcdserverpb::RangeRequest {
                key: b"/load/".to_vec(),
                range_end: b"/load0".to_vec(),
                serializable: true,
                keys_only: true,
                ..Default::default()
            };
            let all = clients.kv.range(request).await.expect("range").into_inner();
            let held: std::collections::BTreeSet<Vec<u8>> =
                all.kvs.into_iter().map(|kv| kv.key).collect();
            for i in &acknowledged {
                let key = format!("/load/{i:06}").into_bytes();
                assert!(held.contains(&key), "{endpoint} lost /load/{i:06}");
            }
        }
    });
    drop(children);
}

/// Connects once the member answers (the cluster may still be electing its first leader).
async fn connect_when_up(endpoint: &str) -> Clients {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Ok(channel) = tonic::transport::Channel::from_shared(endpoint.to_string())
            .expect("endpoint")
            .connect()
            .await
        {
            return Clients::from_channel(channel);
        }
        assert!(Instant::now() < deadline, "{endpoint} never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `stetutl doctor` with a member's flags: its exit success and what it printed.
fn doctor(dir: &Path, flags: &[&str], env: &[(String, String)]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stetutl"));
    command.current_dir(dir).arg("doctor").args(flags);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("ETCD_") {
            command.env_remove(var);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    let output = run_to_end(command);
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn doctor_explains_each_broken_setup_and_passes_a_sound_one() {
    etcdctl().expect("etcdctl is not installed: apt-get install -y etcd-client");
    let dir = TempDir::new("runbook-doctor");
    let d = &dir.0;
    let (client_url, peer_url) = urls();
    let own = single("a", "a.stet", &peer_url);
    let mut own: Vec<&str> = own.iter().map(String::as_str).collect();
    let listen = [
        "--listen-client-urls",
        &client_url,
        "--advertise-client-urls",
        &client_url,
        "--listen-peer-urls",
        &peer_url,
    ];
    own.extend(listen);
    let a = start(
        d,
        "a",
        (client_url.clone(), peer_url.clone()),
        &own[..8],
        &[],
    );
    ctl(&a.client_url, &["put", "/k", "v"]);
    // The member stores what it applied within a tenth of a second (the doctor reads that).
    std::thread::sleep(Duration::from_millis(300));

    // Sound, and asked while it runs: its live answer shows the same cluster and clock.
    let (ok, said) = doctor(d, &own, &[]);
    assert!(ok, "{said}");
    assert!(said.contains("no problems found"), "{said}");
    assert!(!said.contains("does not answer"), "{said}");

    // A cluster grown to two whose new member never started: no quorum.
    let spare = format!("http://127.0.0.1:{}", free_port());
    ctl(
        &a.client_url,
        &["member", "add", "b", &format!("--peer-urls={spare}")],
    );
    // As etcd's: with the new member never started, the cluster has no quorum and says so.
    let port: u16 = a
        .client_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = http_get(port, "/health").expect("GET /health");
        if code == 503 && body.contains("\"health\":\"false\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still healthy without a quorum: {code} {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(a);
    let (ok, said) = doctor(d, &own, &[]);
    assert!(!ok, "{said}");
    assert!(said.contains("short of the quorum of 2"), "{said}");

    // The same data started with another cluster's token: a data dir from another cluster, as
    // `stet` itself explains when it refuses.
    let mut other = own.clone();
    other.extend(["--initial-cluster-token", "other-cluster"]);
    let (ok, said) = doctor(d, &other, &[]);
    assert!(!ok);
    assert!(
        said.contains("a data directory from another cluster"),
        "{said}"
    );
    let mut other_start: Vec<&str> = own[..8].to_vec();
    other_start.extend(["--initial-cluster-token", "other-cluster"]);
    let refused = run_to_end(command(d, "a", (&client_url, &peer_url), &other_start, &[]));
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("PROBLEM: the data directory belongs to cluster") && said.contains("fix: "),
        "{said}"
    );
    assert!(
        said.lines()
            .last()
            .unwrap_or_default()
            .starts_with("stet: error: "),
        "{said}"
    );

    // A damaged WAL names the file and offset.
    let wal = d.join("a.stet/member/wal");
    let segment = std::fs::read_dir(&wal)
        .expect("the WAL")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).expect("segment");
    bytes[100] ^= 0xff;
    std::fs::write(&segment, bytes).expect("write");
    let (ok, said) = doctor(d, &own, &[]);
    assert!(!ok);
    assert!(
        said.contains("is damaged") && said.contains("offset"),
        "{said}"
    );
}

/// Clock skew between real members: one runs with its wall clock 5 s ahead (`faketime`, its
/// monotonic clock untouched). The other measures it on the peer handshake's schedule, warns
/// naming both members, exports it in `/metrics`, and the doctor reports it.
#[test]
fn clock_skew_between_members_is_warned_exported_and_diagnosed() {
    etcdctl().expect("etcdctl is not installed: apt-get install -y etcd-client");
    assert!(
        Command::new("faketime")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "faketime is not installed: apt-get install -y faketime"
    );
    let dir = TempDir::new("runbook-clock-skew");
    let d = &dir.0;
    let (client_url, peer_url) = urls();
    let own = single("a", "a.stet", &peer_url);
    let own: Vec<&str> = own.iter().map(String::as_str).collect();
    let a = start(d, "a", (client_url.clone(), peer_url.clone()), &own, &[]);

    let (b_client, b_peer) = urls();
    let added = ctl(
        &a.client_url,
        &["member", "add", "b", &format!("--peer-urls={b_peer}")],
    );
    let settings = printed_settings(&added);
    let skewed = [
        "env",
        "FAKETIME_DONT_FAKE_MONOTONIC=1",
        "faketime",
        "-f",
        "+5s",
    ];
    let b = start_via(
        &skewed,
        d,
        "b",
        (b_client, b_peer),
        &["--data-dir", "b.stet"],
        &settings,
    );
    let b_id = member_id(&a.client_url, "b");

    // `a` compares clocks with `b` within seconds of meeting it.
    let port: u16 = client_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    let series = format!("stet_network_peer_clock_offset_seconds{{To=\"{b_id:x}\"}}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let offset_seconds = loop {
        let (_, metrics) = http_get(port, "/metrics").expect("GET /metrics");
        let measured = metrics
            .lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .and_then(|value| value.trim().parse::<f64>().ok());
        if let Some(offset) = measured {
            break offset;
        }
        assert!(
            Instant::now() < deadline,
            "no clock offset for b:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        (4.0..6.0).contains(&offset_seconds),
        "b's clock measured {offset_seconds} s ahead, set 5 s ahead"
    );
    let log = std::fs::read_to_string(d.join("a.log")).expect("a's log");
    let warning = log
        .lines()
        .find(|line| line.contains("clock skew between members over 1 s"))
        .unwrap_or_else(|| panic!("no warning in a's log:\n{log}"));
    assert!(warning.contains(&format!("{b_id:x}")), "{warning}");

    // The doctor, run with a's flags on this machine, finds b's clock off.
    let (ok, said) = doctor(d, &own, &[]);
    assert!(!ok, "{said}");
    assert!(
        said.contains("s off this machine's") && said.contains("synchronize the machines' clocks"),
        "{said}"
    );
    drop(b);
    drop(a);
}

/// Rewrites the value of the key-value stored at revision `main` in the engine file of a stopped
/// member: data that rotted on its disk, or a bug that applied it otherwise, with every
/// checksum in order.
fn rot_revision(data_dir: &Path, main: u64) {
    use prost::Message as _;
    use stet::engine::{Batch, Engine, Revision, Stored};
    let path = data_dir.join("member").join(stet::engine::ENGINE_FILE);
    let mut engine = Engine::open(stet::server::fs_disk::FsDisk::new, &path, 1 << 20)
        .expect("open the stopped member's engine");
    let revision = Revision { main, sub: 0 };
    let stored = engine
        .view()
        .expect("a view")
        .revision(revision)
        .expect("read")
        .expect("the revision is stored");
    let mut key_value =
        stet::proto::mvccpb::KeyValue::decode(stored.key_value.as_slice()).expect("a KeyValue");
    key_value.value = b"rotten".to_vec();
    let mut batch = Batch::new();
    let key_value = key_value.encode_to_vec();
    batch.put_revision(
        revision,
        Stored {
            tombstone: false,
            key_value,
        },
    );
    engine.commit(batch, true).expect("commit");
}

/// Waits at most `within` for `process` to exit; its status.
fn exited_within(process: &mut KilledOnDrop, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = process.0.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "still running after {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A member whose applied data differs from the others' (one value rewritten in its engine file
/// while it was stopped): started with `--experimental-initial-corrupt-check` it compares its
/// history's hash with its peers' and exits naming the inconsistency; started without it, it
/// serves, and the leader's periodic check (`--experimental-corrupt-check-time`) raises the
/// CORRUPT alarm naming it, after which the cluster refuses writes and reports unhealthy.
#[test]
fn a_member_whose_data_rotted_is_refused_at_start_and_alarmed_while_running() {
    etcdctl().expect("etcdctl is not installed: apt-get install -y etcd-client");
    let dir = TempDir::new("runbook-corruption");
    let d = &dir.0;
    let check = "--experimental-corrupt-check-time=1s";
    let (client_url, peer_url) = urls();
    let mut own = single("a", "a.stet", &peer_url);
    own.push(check.to_string());
    let own: Vec<&str> = own.iter().map(String::as_str).collect();
    let a = start(d, "a", (client_url, peer_url), &own, &[]);
    let b = add_member_with(d, &a.client_url, "b", &[check]);
    let mut c = add_member_with(d, &a.client_url, "c", &[check]);
    for i in 0..20 {
        assert_eq!(
            ctl(&a.client_url, &["put", &format!("k{i}"), "sound"]),
            "OK\n"
        );
    }
    let got = ctl(&a.client_url, &["get", "k7", "-w", "json"]);
    let got: serde_json::Value = serde_json::from_str(&got).expect("JSON");
    let rotten = got["kvs"][0]["mod_revision"]
        .as_u64()
        .expect("k7's revision");
    // c applied every put before it stops.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ctl(
        &c.client_url,
        &["get", "k19", "--consistency=s", "--print-value-only"],
    ) != "sound\n"
    {
        assert!(Instant::now() < deadline, "c never applied the puts");
        std::thread::sleep(Duration::from_millis(50));
    }
    let c_id = member_id(&a.client_url, "c");
    assert!(stop(&mut c, false), "c stopped cleanly");
    rot_revision(&d.join("c.stet"), rotten);

    let urls = (c.client_url.as_str(), c.peer_url.as_str());
    let mut flags: Vec<&str> = c.flags.iter().map(String::as_str).collect();
    flags.push("--experimental-initial-corrupt-check");
    let mut checked = KilledOnDrop(
        command(d, "c", urls, &flags, &c.env)
            .spawn()
            .expect("spawn"),
    );
    let status = exited_within(&mut checked, Duration::from_secs(60));
    let log = std::fs::read_to_string(d.join("c.log")).expect("c's log");
    assert!(!status.success(), "c started on rotten data:\n{log}");
    assert!(log.contains("found data inconsistency with peers"), "{log}");
    assert_eq!(
        ctl(&a.client_url, &["alarm", "list"]),
        "",
        "refusing to start raises no alarm"
    );

    let flags: Vec<&str> = c.flags.iter().map(String::as_str).collect();
    let _c = KilledOnDrop(
        command(d, "c", urls, &flags, &c.env)
            .spawn()
            .expect("spawn"),
    );
    let alarm = format!("memberID:{c_id} alarm:CORRUPT \n");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ctl(&a.client_url, &["alarm", "list"]) != alarm {
        assert!(Instant::now() < deadline, "no CORRUPT alarm naming c");
        std::thread::sleep(Duration::from_millis(100));
    }
    let refused = run_to_end_etcdctl(Path::new("etcdctl"), &b.client_url, &["put", "k", "v"]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("etcdserver: corrupt cluster"),
        "{said}"
    );
    let port: u16 = a
        .client_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let (code, body) = http_get(port, "/health").expect("GET /health");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("ALARM CORRUPT"), "{body}");
    let a_log = std::fs::read_to_string(d.join("a.log")).unwrap_or_default()
        + &std::fs::read_to_string(d.join("b.log")).unwrap_or_default();
    assert!(
        a_log.contains("found data inconsistency"),
        "the leader logs it"
    );
}
