//! etcd's v3 auth across real `stet` processes, driven by the real `etcdctl` 3.4 (and the
//! `etcd-client` crate) as an operator and an application would drive etcd:
//!
//! - a three-member cluster with TLS on its client and peer URLs (`--client-cert-auth`, one CA):
//!   auth set up and enabled through one member holds on every member, for `--user` logins and
//!   for client certificates whose common name is the user;
//! - auth state that reaches a member only through a snapshot install (it was down while the
//!   users were made and auth enabled, and the leader compacted its log) is enforced there, for
//!   linearizable and serializable reads alike;
//! - `etcdctl snapshot save` and `stetutl snapshot restore` keep users, roles and the enabled flag;
//! - `etcd-client` over TLS with a user is confined to its permissions.
//!
//! Expected behaviour is etcd 3.4's (probed with etcd 3.4.23 and etcdctl 3.4.23): an operation
//! outside a user's permissions fails with `etcdserver: permission denied`, an anonymous one with
//! `etcdserver: user name is empty`. etcdctl is required: a missing one fails the tests. Every
//! wait is bounded; every child is killed when its test ends.

mod procs;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use procs::certs::{path_str, write, Ca, CertFiles};
use procs::*;

/// The administrator etcd requires before `auth enable`.
const ROOT: (&str, &str) = ("root", "root-secret");
/// The limited user: read and write under [`PREFIX`] only, through role [`ROLE`].
const ALICE: (&str, &str) = ("alice", "alice-secret");
const ROLE: &str = "alice-rw";
const PREFIX: &str = "/alice/";
/// A key outside [`PREFIX`].
const OUTSIDE: &str = "/outside";

const DENIED: &str = "etcdserver: permission denied";
const ANONYMOUS: &str = "etcdserver: user name is empty";

/// Bounds every wait for the cluster to get somewhere (a hang fails; nothing asserts speed).
const PATIENCE: Duration = Duration::from_secs(30);

fn etcdctl_path() -> PathBuf {
    etcdctl().expect("etcdctl is not installed: apt-get install -y etcd-client")
}

/// etcdctl against one endpoint with fixed global flags (TLS files, `--user`).
#[derive(Clone)]
struct Ctl {
    etcdctl: PathBuf,
    endpoint: String,
    flags: Vec<String>,
}

impl Ctl {
    fn new(endpoint: &str) -> Ctl {
        Ctl {
            etcdctl: etcdctl_path(),
            endpoint: endpoint.to_string(),
            flags: Vec::new(),
        }
    }

    fn with_flag(&self, flag: String) -> Ctl {
        let mut ctl = self.clone();
        ctl.flags.push(flag);
        ctl
    }

    /// Logs in as `user` (`--user name:password`) for every command.
    fn user(&self, (name, password): (&str, &str)) -> Ctl {
        self.with_flag(format!("--user={name}:{password}"))
    }

    /// Trusts `ca` and shows the client certificate `identity`.
    fn tls(&self, ca: &Path, identity: &CertFiles) -> Ctl {
        self.with_flag(format!("--cacert={}", ca.display()))
            .with_flag(format!("--cert={}", identity.cert.display()))
            .with_flag(format!("--key={}", identity.key.display()))
    }

    fn run(&self, args: &[&str]) -> Output {
        let all: Vec<&str> = self
            .flags
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied())
            .collect();
        run_to_end_etcdctl(&self.etcdctl, &self.endpoint, &all)
    }

    /// Runs `args`, which must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "etcdctl {:?} {args:?} against {} failed: {}",
            self.flags,
            self.endpoint,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `args`, which must fail with `error` (etcdctl prints `Error: <error>`).
    fn fails_with(&self, args: &[&str], error: &str) {
        let output = self.run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(&format!("Error: {error}")),
            "etcdctl {:?} {args:?} against {}: expected {error:?}, got exit {} with stdout {:?}, \
             stderr {stderr}",
            self.flags,
            self.endpoint,
            output.status,
            String::from_utf8_lossy(&output.stdout),
        );
    }

    fn denied(&self, args: &[&str]) {
        self.fails_with(args, DENIED);
    }
}

/// Polls `check` until it holds, for at most [`PATIENCE`].
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One `stet` member: its URLs, its own flags (certificates) and its process while it runs.
struct Member {
    name: String,
    client_url: String,
    peer_url: String,
    flags: Vec<String>,
    log: PathBuf,
    process: Option<KilledOnDrop>,
}

/// Members sharing a temporary directory (data directories and logs) and an initial cluster.
struct Cluster {
    dir: TempDir,
    token: String,
    members: Vec<Member>,
    /// Flags every member gets.
    flags: Vec<String>,
}

impl Cluster {
    /// `n` members m0, m1, ... with `scheme` (http or https) client and peer URLs; not started.
    fn new(tag: &str, n: usize, scheme: &str, flags: &[&str]) -> Cluster {
        let dir = TempDir::new(tag);
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_url: format!("{scheme}://127.0.0.1:{}", free_port()),
                peer_url: format!("{scheme}://127.0.0.1:{}", free_port()),
                flags: Vec::new(),
                log: dir.0.join(format!("m{i}.log")),
                process: None,
            })
            .collect();
        Cluster {
            dir,
            token: format!("token-{tag}"),
            members,
            flags: ["--bcrypt-cost", "4"]
                .iter()
                .chain(flags)
                .map(|f| f.to_string())
                .collect(),
        }
    }

    fn initial_cluster(&self) -> String {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect();
        members.join(",")
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.0.join(&self.members[i].name)
    }

    /// Starts member `i` (`--initial-cluster-state new`, as a first start and every restart
    /// take it), appending its log to `m<i>.log`.
    fn launch(&mut self, i: usize) {
        let initial_cluster = self.initial_cluster();
        let data_dir = self.data_dir(i);
        let member = &self.members[i];
        let mut command = member_command();
        command
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(url_flags(&member.client_url, &member.peer_url))
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(&self.flags)
            .args(&member.flags)
            .stderr(append_log(&member.log));
        self.members[i].process = Some(KilledOnDrop(command.spawn().expect("spawn stet")));
    }

    fn launch_all(&mut self) {
        for i in 0..self.members.len() {
            self.launch(i);
        }
    }

    /// Kills member `i` (SIGKILL) and waits for it.
    fn stop(&mut self, i: usize) {
        self.members[i].process = None;
    }

    fn log_text(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }

    /// Waits until `etcdctl endpoint health` through `ctl` (member `i`'s endpoint) succeeds.
    fn wait_healthy(&mut self, i: usize, ctl: &Ctl) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let process = self.members[i].process.as_mut().expect("a running member");
            if let Some(status) = process.0.try_wait().expect("try_wait") {
                panic!(
                    "{} exited: {status}\n{}",
                    self.members[i].name,
                    self.log_text(i)
                );
            }
            if ctl.run(&["endpoint", "health"]).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} was not healthy within {PATIENCE:?}\n{}",
                self.members[i].name,
                self.log_text(i)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The index of the member the others follow, asked through `etcdctl endpoint status`.
    fn leader(&self) -> usize {
        let endpoints: Vec<&str> = self.members.iter().map(|m| m.client_url.as_str()).collect();
        let ctl = Ctl::new(&endpoints.join(","));
        let mut leader = None;
        eventually("a leader", || {
            let output = ctl.run(&["endpoint", "status", "-w", "json"]);
            let Ok(statuses) = serde_json::from_slice::<serde_json::Value>(&output.stdout) else {
                return false;
            };
            leader = statuses.as_array().into_iter().flatten().position(|s| {
                let status = &s["Status"];
                status["leader"].as_u64().is_some_and(|l| l != 0)
                    && status["leader"] == status["header"]["member_id"]
            });
            leader.is_some()
        });
        leader.expect("a leader")
    }
}

/// Through `admin` (before auth is on): `root` with the root role, role [`ROLE`] granted
/// readwrite on [`PREFIX`] as a prefix, user `alice` with that role; then `auth enable`.
fn set_up_and_enable_auth(admin: &Ctl) {
    let (root, root_password) = ROOT;
    let (alice, alice_password) = ALICE;
    let root_password = format!("--new-user-password={root_password}");
    let alice_password = format!("--new-user-password={alice_password}");
    let steps: [(&[&str], String); 7] = [
        (
            &["user", "add", root, &root_password, "--interactive=false"],
            "User root created\n".into(),
        ),
        (
            &["user", "grant-role", root, "root"],
            "Role root is granted to user root\n".into(),
        ),
        (&["role", "add", ROLE], format!("Role {ROLE} created\n")),
        (
            &[
                "role",
                "grant-permission",
                ROLE,
                "--prefix=true",
                "readwrite",
                PREFIX,
            ],
            format!("Role {ROLE} updated\n"),
        ),
        (
            &["user", "add", alice, &alice_password, "--interactive=false"],
            "User alice created\n".into(),
        ),
        (
            &["user", "grant-role", alice, ROLE],
            format!("Role {ROLE} is granted to user alice\n"),
        ),
        (&["auth", "enable"], "Authentication Enabled\n".into()),
    ];
    for (args, said) in steps {
        assert_eq!(admin.ok(args), said, "etcdctl {args:?}");
    }
}

/// `ctl` acts as alice: it reads and writes `PREFIX<key>`, and is denied [`OUTSIDE`] for
/// puts, linearizable gets and deletes.
fn assert_acts_as_alice(ctl: &Ctl, key: &str) {
    let inside = format!("{PREFIX}{key}");
    assert_eq!(ctl.ok(&["put", &inside, key]), "OK\n");
    assert_eq!(
        ctl.ok(&["get", &inside, "--print-value-only"]),
        format!("{key}\n")
    );
    ctl.denied(&["put", OUTSIDE, key]);
    ctl.denied(&["get", OUTSIDE]);
    ctl.denied(&["del", OUTSIDE]);
}

/// `root` sees both users, and the role's permission is the prefix granted.
fn assert_users_and_roles_kept(root: &Ctl) {
    assert_eq!(root.ok(&["user", "list"]), "alice\nroot\n");
    assert_eq!(
        root.ok(&["role", "get", ROLE]),
        format!(
            "Role {ROLE}\nKV Read:\n\t[/alice/, /alice0) (prefix /alice/)\n\
             KV Write:\n\t[/alice/, /alice0) (prefix /alice/)\n"
        )
    );
    assert_eq!(
        root.ok(&["user", "get", ALICE.0]),
        format!("User: alice\nRoles: {ROLE}\n")
    );
}

/// A cluster whose members use certificates of `ca` on their client URLs (`--client-cert-auth`)
/// and their peer URLs (`--peer-client-cert-auth`); not started.
fn tls_cluster(tag: &str, n: usize, ca: &Ca) -> (Cluster, PathBuf) {
    let mut cluster = Cluster::new(tag, n, "https", &["--client-cert-auth"]);
    let dir = cluster.dir.0.clone();
    let ca_file = write(&dir, "ca.pem", &ca.pem);
    for member in &mut cluster.members {
        let server = ca.sign_to(
            &dir,
            &member.name,
            "stet server",
            &["127.0.0.1", "localhost"],
        );
        let peer = ca.sign_to(
            &dir,
            &format!("{}-peer", member.name),
            "stet-peer",
            &["127.0.0.1"],
        );
        member.flags = [
            ("--cert-file", &server.cert),
            ("--key-file", &server.key),
            ("--trusted-ca-file", &ca_file),
            ("--peer-cert-file", &peer.cert),
            ("--peer-key-file", &peer.key),
            ("--peer-trusted-ca-file", &ca_file),
        ]
        .iter()
        .flat_map(|(flag, path)| [flag.to_string(), path_str(path).to_string()])
        .chain(["--peer-client-cert-auth".to_string()])
        .collect();
    }
    (cluster, ca_file)
}

#[test]
fn auth_over_tls_holds_on_every_member_for_logins_and_certificate_names() {
    etcdctl_path();
    let ca = Ca::new("stet auth CA");
    let (mut cluster, ca_file) = tls_cluster("auth-tls", 3, &ca);
    let dir = cluster.dir.0.clone();
    // The operator's certificate names nobody: only its --user login says who it is.
    let operator = ca.sign_to(&dir, "operator", "operator", &[]);
    let alice_cert = ca.sign_to(&dir, "alice-client", ALICE.0, &[]);
    let root_cert = ca.sign_to(&dir, "root-client", ROOT.0, &[]);
    let urls: Vec<String> = cluster
        .members
        .iter()
        .map(|m| m.client_url.clone())
        .collect();
    let ctl = |i: usize, identity: &CertFiles| Ctl::new(&urls[i]).tls(&ca_file, identity);
    let operators: Vec<Ctl> = (0..3).map(|i| ctl(i, &operator)).collect();
    let alice_by_name: Vec<Ctl> = (0..3).map(|i| ctl(i, &alice_cert)).collect();
    let root_by_name: Vec<Ctl> = (0..3).map(|i| ctl(i, &root_cert)).collect();
    cluster.launch_all();
    for (i, operator) in operators.iter().enumerate() {
        cluster.wait_healthy(i, operator);
    }

    set_up_and_enable_auth(&operators[0]);
    let root = operators[0].user(ROOT);
    assert_eq!(root.ok(&["put", OUTSIDE, "root's"]), "OK\n");

    for (i, operator) in operators.iter().enumerate() {
        let alice = operator.user(ALICE);
        // Once this member has applied the users and `auth enable`, alice logs in through it.
        eventually("alice logs in and writes through every member", || {
            alice
                .run(&["put", &format!("{PREFIX}ready-{i}"), "x"])
                .status
                .success()
        });
        assert_acts_as_alice(&alice, &format!("login-m{i}"));
        // Without a login the certificate's name is the user; "operator" is nobody, and is denied.
        operator.denied(&["put", OUTSIDE, "operator's"]);
        assert_eq!(
            operator
                .user(ROOT)
                .ok(&["get", OUTSIDE, "--print-value-only"]),
            "root's\n"
        );
    }

    // A write through the second member is read (linearizably) through the third.
    let alice = |i: usize| operators[i].user(ALICE);
    let shared = format!("{PREFIX}shared");
    assert_eq!(alice(1).ok(&["put", &shared, "from m1"]), "OK\n");
    assert_eq!(
        alice(2).ok(&["get", &shared, "--print-value-only"]),
        "from m1\n"
    );

    // With --client-cert-auth, a certificate's common name is the user when no login is made.
    for i in 0..3 {
        assert_acts_as_alice(&alice_by_name[i], &format!("cn-m{i}"));
        assert_eq!(root_by_name[i].ok(&["user", "list"]), "alice\nroot\n");
        assert_eq!(
            root_by_name[i].ok(&["get", OUTSIDE, "--print-value-only"]),
            "root's\n"
        );
    }
    assert_users_and_roles_kept(&root_by_name[2]);
    // A login wins over the certificate's name, as in etcd: alice with root's certificate is alice.
    root_by_name[1]
        .user(ALICE)
        .denied(&["put", OUTSIDE, "alice"]);
}

#[test]
fn auth_reaches_a_member_through_a_snapshot_install() {
    etcdctl_path();
    // Snapshots every 20 entries, keeping 5 behind: a member down for 60 writes can only catch
    // up from a snapshot, which must carry the users, roles and `auth enable` made meanwhile.
    let flags = [
        "--snapshot-count",
        "20",
        "--experimental-snapshot-catchup-entries",
        "5",
    ];
    let mut cluster = Cluster::new("auth-snap", 3, "http", &flags);
    cluster.launch_all();
    for i in 0..3 {
        let ctl = Ctl::new(&cluster.members[i].client_url);
        cluster.wait_healthy(i, &ctl);
    }
    let leader = cluster.leader();
    let behind = (leader + 1) % 3;
    cluster.stop(behind);

    let through_leader = Ctl::new(&cluster.members[leader].client_url);
    set_up_and_enable_auth(&through_leader);
    let root_at_leader = through_leader.user(ROOT);
    assert_eq!(root_at_leader.ok(&["put", OUTSIDE, "root's"]), "OK\n");
    let leader_url = cluster.members[leader].client_url.clone();
    runtime().block_on(async {
        let options = etcd_client::ConnectOptions::new().with_user(ROOT.0, ROOT.1);
        let mut root = bounded(
            "connect as root",
            etcd_client::Client::connect([leader_url], Some(options)),
        )
        .await
        .expect("etcd-client logs in as root");
        for i in 0..60 {
            bounded(
                "put",
                root.put(format!("/bulk/{i:02}"), "x".repeat(1024), None),
            )
            .await
            .expect("root's put");
        }
    });

    cluster.launch(behind);
    let through_behind = Ctl::new(&cluster.members[behind].client_url);
    let root = through_behind.user(ROOT);
    cluster.wait_healthy(behind, &root);
    eventually("the restarted member caught up", || {
        let output = root.run(&["get", "/bulk/59", "--consistency=s", "--print-value-only"]);
        output.status.success() && output.stdout.len() == 1025
    });
    assert!(
        cluster
            .log_text(behind)
            .contains("installing the leader's snapshot"),
        "the member should have caught up from a snapshot\n{}",
        cluster.log_text(behind)
    );

    // Everything below goes through the restarted member only.
    let alice = through_behind.user(ALICE);
    assert_acts_as_alice(&alice, "after-snapshot");
    alice.denied(&["get", OUTSIDE, "--consistency=s"]);
    alice.denied(&["get", "/bulk/", "--prefix", "--consistency=s"]);
    assert_eq!(
        alice.ok(&[
            "get",
            &format!("{PREFIX}after-snapshot"),
            "--consistency=s",
            "--print-value-only"
        ]),
        "after-snapshot\n"
    );
    through_behind.fails_with(&["put", OUTSIDE, "anonymous"], ANONYMOUS);
    through_behind.fails_with(&["get", OUTSIDE, "--consistency=s"], ANONYMOUS);
    assert_eq!(root.ok(&["get", OUTSIDE, "--print-value-only"]), "root's\n");
    assert_eq!(
        root.ok(&["get", OUTSIDE, "--consistency=s", "--print-value-only"]),
        "root's\n"
    );
    assert_users_and_roles_kept(&root);
}

#[test]
fn a_restored_backup_keeps_users_roles_and_auth_enabled() {
    etcdctl_path();
    let mut original = Cluster::new("auth-backup", 1, "http", &[]);
    let mut restored = Cluster::new("auth-restored", 1, "http", &[]);
    original.launch(0);
    let admin = Ctl::new(&original.members[0].client_url);
    original.wait_healthy(0, &admin);
    set_up_and_enable_auth(&admin);
    let alice = admin.user(ALICE);
    assert_eq!(alice.ok(&["put", "/alice/kept", "before backup"]), "OK\n");
    let root = admin.user(ROOT);
    assert_eq!(root.ok(&["put", OUTSIDE, "root's"]), "OK\n");
    let backup = restored.dir.0.join("backup.db");
    root.ok(&["snapshot", "save", path_str(&backup)]);
    drop(original);

    // README's restore: `stetutl snapshot restore` with the new member's flags, then a start
    // with the same flags and `--initial-cluster-state new`.
    let restore = Command::new(env!("CARGO_BIN_EXE_stetutl"))
        .args(["snapshot", "restore", path_str(&backup)])
        .args(["--name", &restored.members[0].name])
        .args(["--data-dir", path_str(&restored.data_dir(0))])
        .args(["--initial-cluster", &restored.initial_cluster()])
        .args(["--initial-cluster-token", &restored.token])
        .args([
            "--initial-advertise-peer-urls",
            &restored.members[0].peer_url,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run stetutl");
    assert!(
        restore.status.success(),
        "stetutl snapshot restore: {}",
        String::from_utf8_lossy(&restore.stderr)
    );
    restored.launch(0);
    let anonymous = Ctl::new(&restored.members[0].client_url);
    let root = anonymous.user(ROOT);
    restored.wait_healthy(0, &root);

    anonymous.fails_with(&["put", OUTSIDE, "anonymous"], ANONYMOUS);
    anonymous.fails_with(&["get", "/alice/kept"], ANONYMOUS);
    let alice = anonymous.user(ALICE);
    assert_eq!(
        alice.ok(&["get", "/alice/kept", "--print-value-only"]),
        "before backup\n"
    );
    assert_acts_as_alice(&alice, "after-restore");
    assert_eq!(root.ok(&["get", OUTSIDE, "--print-value-only"]), "root's\n");
    assert_users_and_roles_kept(&root);
    // A wrong password is still refused: the password hashes came back too.
    anonymous
        .user((ALICE.0, "not-her-password"))
        .fails_with(&["get", "/alice/kept"], "etcdserver: authentication failed");
}

#[test]
fn etcd_client_over_tls_with_a_user_is_confined_to_its_prefix() {
    etcdctl_path();
    let ca = Ca::new("stet etcd-client CA");
    let (mut cluster, ca_file) = tls_cluster("auth-etcd-client", 1, &ca);
    let dir = cluster.dir.0.clone();
    // The application's certificate names nobody: its user is the one it logs in as.
    let (app_cert, app_key) = ca.sign("application", &[]);
    let operator = ca.sign_to(&dir, "operator", "operator", &[]);
    let admin = Ctl::new(&cluster.members[0].client_url).tls(&ca_file, &operator);
    cluster.launch(0);
    cluster.wait_healthy(0, &admin);
    set_up_and_enable_auth(&admin);
    assert_eq!(admin.user(ROOT).ok(&["put", OUTSIDE, "root's"]), "OK\n");

    let endpoint = cluster.members[0].client_url.clone();
    runtime().block_on(async {
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(&ca.pem))
            .identity(etcd_client::Identity::from_pem(app_cert, app_key));
        let options = etcd_client::ConnectOptions::new()
            .with_user(ALICE.0, ALICE.1)
            .with_tls(tls);
        let mut client = bounded(
            "connect over TLS as alice",
            etcd_client::Client::connect([endpoint], Some(options)),
        )
        .await
        .expect("etcd-client connects over TLS and logs in as alice");

        bounded("put inside", client.put("/alice/app", "value", None))
            .await
            .expect("alice's put in her prefix");
        let got = bounded("get inside", client.get("/alice/app", None))
            .await
            .expect("alice's get in her prefix");
        let values: Vec<&[u8]> = got.kvs().iter().map(|kv| kv.value()).collect();
        assert_eq!(values, [b"value".as_slice()]);

        let put = bounded("put outside", client.put(OUTSIDE, "alice's", None)).await;
        assert_permission_denied("put outside the prefix", put.map(|_| ()));
        let get = bounded("get outside", client.get(OUTSIDE, None)).await;
        assert_permission_denied("get outside the prefix", get.map(|_| ()));
    });
    assert_eq!(
        admin.user(ROOT).ok(&["get", OUTSIDE, "--print-value-only"]),
        "root's\n",
        "alice's refused put must not have changed the key"
    );
}

/// `result` is etcd's PermissionDenied status, `etcdserver: permission denied`.
fn assert_permission_denied(what: &str, result: Result<(), etcd_client::Error>) {
    match result {
        Err(etcd_client::Error::GRpcStatus(status)) => {
            assert_eq!(
                (status.code(), status.message()),
                (tonic::Code::PermissionDenied, DENIED),
                "{what}"
            );
        }
        other => panic!("{what}: expected PermissionDenied ({DENIED:?}), got {other:?}"),
    }
}
