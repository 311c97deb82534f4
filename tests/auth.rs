//! etcd's v3 auth on a real single `stet` member (`--bcrypt-cost 4`, so logins are fast):
//!
//! - an operator drives it with etcdctl 3.4: users, a role with a key prefix, `auth enable`, then
//!   every kind of request checked as etcd 3.4.23 checks it, with etcd's error texts;
//! - login tokens over raw gRPC (the `token` metadata key): valid, garbage, ended by a password
//!   change and by disabling auth, kept across an auth change (simple tokens);
//! - `--auth-token-ttl`: a token in use lives on, an idle one expires;
//! - auth survives a crash and restart (SIGKILL, same data directory);
//! - `--auth-token jwt` with an ES256 key: JWTs, stale after an auth change; a missing key file
//!   refused at start.
//!
//! The expected texts were observed from etcd 3.4.23. etcdctl is required: without it the tests
//! fail rather than skip.

mod procs;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use procs::*;
use stet::proto::authpb;
use stet::proto::etcdserverpb::{self as pb, auth_client::AuthClient, kv_client::KvClient};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const DENIED: &str = "etcdserver: permission denied";
const USER_EMPTY: &str = "etcdserver: user name is empty";
const INVALID_TOKEN: &str = "etcdserver: invalid auth token";
const AUTH_FAILED: &str = "etcdserver: authentication failed, invalid user ID or password";
const OLD_REVISION: &str = "etcdserver: revision of auth store is old";

/// etcdctl's `--user` values: root (role root), u (role r: readwrite on prefix `a`), n (no role).
const ROOT: Option<&str> = Some("root:root-pw");
const U: Option<&str> = Some("u:u-pw");
const N: Option<&str> = Some("n:n-pw");
const NOBODY: Option<&str> = None;

// ---- A member -------------------------------------------------------------------------------

/// A single `stet` member (killed when dropped) and how to start it again on the same data.
struct Member {
    dir: PathBuf,
    url: String,
    port: u16,
    peer_port: u16,
    flags: Vec<String>,
    process: KilledOnDrop,
}

impl Member {
    /// Starts a new single-member cluster in `dir` with `flags` and waits until it is healthy.
    fn start(dir: &Path, flags: &[&str]) -> Member {
        let (port, peer_port) = (free_port(), free_port());
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let process = KilledOnDrop(
            command(dir, port, peer_port, &flags)
                .spawn()
                .expect("spawn stet"),
        );
        let mut member = Member {
            dir: dir.to_path_buf(),
            url: format!("http://127.0.0.1:{port}"),
            port,
            peer_port,
            flags,
            process,
        };
        member.wait_healthy();
        member
    }

    /// Kills the member with SIGKILL, as a crash does, and starts it again on its data.
    fn crash_and_restart(&mut self) {
        self.process.0.kill().expect("SIGKILL");
        self.process.0.wait().expect("wait");
        let mut command = command(&self.dir, self.port, self.peer_port, &self.flags);
        self.process = KilledOnDrop(command.spawn().expect("spawn stet again"));
        self.wait_healthy();
    }

    fn wait_healthy(&mut self) {
        let log = self.dir.join("stet.log");
        wait_healthy(&mut self.process.0, self.port, "/health", Some(&log));
    }
}

/// The command that runs member `m` of a one-member cluster in `dir/data` with `flags`,
/// logging to `dir/stet.log`.
fn command(dir: &Path, port: u16, peer_port: u16, flags: &[String]) -> Command {
    let url = format!("http://127.0.0.1:{port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let mut command = member_command();
    command
        .current_dir(dir)
        .args(["--name", "m", "--data-dir", "data", "--log-level", "warn"])
        .args(url_flags(&url, &peer_url))
        .args(["--initial-cluster", &format!("m={peer_url}")])
        .args(flags)
        .stderr(append_log(&dir.join("stet.log")));
    command
}

// ---- etcdctl --------------------------------------------------------------------------------

/// etcdctl 3.4 against one member, as a user (`name:password`) or as nobody.
struct Ctl {
    etcdctl: PathBuf,
    endpoint: String,
}

impl Ctl {
    fn new(member: &Member) -> Ctl {
        Ctl {
            etcdctl: etcdctl()
                .expect("etcdctl 3.4 is required (.ci/run installs /usr/bin/etcdctl)"),
            endpoint: member.url.clone(),
        }
    }

    fn run(&self, user: Option<&str>, args: &[&str]) -> Output {
        let user_flag = user.map(|user| format!("--user={user}"));
        let all: Vec<&str> = user_flag
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied())
            .collect();
        run_to_end_etcdctl(&self.etcdctl, &self.endpoint, &all)
    }

    /// Runs `args` as `user`, which must succeed; what it printed.
    #[track_caller]
    fn ok(&self, user: Option<&str>, args: &[&str]) -> String {
        let output = self.run(user, args);
        assert!(
            output.status.success(),
            "etcdctl {args:?} as {user:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `args` as `user`, which must fail printing `error` (on stdout or stderr).
    #[track_caller]
    fn denied(&self, user: Option<&str>, args: &[&str], error: &str) {
        let output = self.run(user, args);
        let printed = printed(&output);
        assert!(
            !output.status.success() && printed.contains(error),
            "etcdctl {args:?} as {user:?}: expected a failure with {error:?}, got {}: {printed}",
            output.status
        );
    }

    /// `etcdctl txn` as `user`, reading its compares and operations from `input`.
    fn txn(&self, user: Option<&str>, input: &str, scratch: &Path) -> Output {
        let file = scratch.join("txn.txt");
        std::fs::write(&file, input).expect("write the txn input");
        let mut command = Command::new(&self.etcdctl);
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint))
            .arg("--command-timeout=5s")
            .args(user.map(|user| format!("--user={user}")))
            .arg("txn")
            .stdin(std::fs::File::open(&file).expect("txn input"));
        run_to_end(command)
    }
}

fn printed(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    format!("{stdout}{stderr}")
}

/// The operator's steps: root, role r (readwrite on prefix `a`) granted to u, n without a role,
/// then `auth enable`.
fn operator_sets_up_auth(ctl: &Ctl) {
    let steps: [&[&str]; 8] = [
        &["user", "add", "root:root-pw"],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "r"],
        &[
            "role",
            "grant-permission",
            "--prefix",
            "r",
            "readwrite",
            "a",
        ],
        &["user", "add", "u:u-pw"],
        &["user", "grant-role", "u", "r"],
        &["user", "add", "n:n-pw"],
        &["auth", "enable"],
    ];
    for step in steps {
        ctl.ok(NOBODY, step);
    }
}

// ---- Test 1: etcdctl ------------------------------------------------------------------------

#[test]
fn an_operator_enables_auth_with_etcdctl_and_every_request_is_checked() {
    let dir = TempDir::new("auth-etcdctl");
    let member = Member::start(&dir.0, &["--bcrypt-cost", "4"]);
    let ctl = Ctl::new(&member);
    operator_sets_up_auth(&ctl);
    users_are_held_to_their_keys(&ctl, &dir.0);
    administration_needs_root(&ctl, &dir.0);
    a_role_holder_reads_only_its_own_user_and_roles(&ctl);
    some_requests_need_no_permission(&ctl, &member);

    // Disabled again by root, nobody needs a user.
    ctl.denied(U, &["auth", "disable"], DENIED);
    assert_eq!(
        ctl.ok(ROOT, &["auth", "disable"]),
        "Authentication Disabled\n"
    );
    assert_eq!(ctl.ok(NOBODY, &["put", "b1", "free"]), "OK\n");
    assert_eq!(
        ctl.ok(NOBODY, &["get", "b1", "--print-value-only"]),
        "free\n"
    );
}

/// u reads and writes its prefix only; n nothing; nobody and a wrong password nothing.
fn users_are_held_to_their_keys(ctl: &Ctl, scratch: &Path) {
    assert_eq!(ctl.ok(U, &["put", "a1", "x"]), "OK\n");
    assert_eq!(ctl.ok(U, &["get", "a1"]), "a1\nx\n");
    assert_eq!(ctl.ok(U, &["del", "a1"]), "1\n");
    assert_eq!(ctl.ok(U, &["put", "a1", "y"]), "OK\n");
    ctl.denied(U, &["put", "b1", "x"], DENIED);
    ctl.denied(U, &["get", "b1"], DENIED);
    ctl.denied(U, &["get", "a", "c"], DENIED);

    // Both branches of a txn are checked: its failure branch writes outside the prefix.
    let txn = "value(\"a1\") = \"nope\"\n\nput a2 y\n\nput b2 z\n\n";
    let output = ctl.txn(U, txn, scratch);
    assert!(
        !output.status.success() && printed(&output).contains(DENIED),
        "a txn writing outside u's prefix in its failure branch: {}",
        printed(&output)
    );
    assert_eq!(ctl.ok(U, &["get", "a2"]), "", "the refused txn wrote");

    for args in [&["put", "a1", "n"][..], &["get", "a1"], &["get", "b1"]] {
        ctl.denied(N, args, DENIED);
    }
    ctl.denied(NOBODY, &["get", "a1"], USER_EMPTY);
    ctl.denied(NOBODY, &["put", "a1", "z"], USER_EMPTY);
    ctl.denied(Some("u:wrong"), &["get", "a1"], AUTH_FAILED);
    ctl.denied(Some("nobody:pw"), &["get", "a1"], AUTH_FAILED);
    assert_eq!(ctl.ok(ROOT, &["get", "a1", "--print-value-only"]), "y\n");
}

/// Users, membership, snapshots and defragmentation are root's.
fn administration_needs_root(ctl: &Ctl, scratch: &Path) {
    ctl.denied(U, &["user", "list"], DENIED);
    assert_eq!(ctl.ok(ROOT, &["user", "list"]), "n\nroot\nu\n");

    let peer = format!("--peer-urls=http://127.0.0.1:{}", free_port());
    let add = ["member", "add", "learner", "--learner", peer.as_str()];
    ctl.denied(U, &add, DENIED);
    let added = ctl.ok(ROOT, &add);
    let id = added
        .strip_prefix("Member ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("member add printed {added:?}"));
    ctl.ok(ROOT, &["member", "remove", id]);

    // etcd 3.4.23 refuses the maintenance requests with code Unknown, "auth: permission denied"
    // (its maintenance server does not translate the error); either text says it.
    let denied_db = scratch.join("u.db");
    ctl.denied(
        U,
        &["snapshot", "save", denied_db.to_str().unwrap()],
        "permission denied",
    );
    assert!(!denied_db.exists(), "a refused snapshot left a file");
    let db = scratch.join("root.db");
    let saved = ctl.ok(ROOT, &["snapshot", "save", db.to_str().unwrap()]);
    assert!(saved.contains("Snapshot saved at"), "{saved}");
    assert!(db.exists());

    ctl.denied(U, &["defrag"], "permission denied");
    let defrag = ctl.ok(ROOT, &["defrag"]);
    assert!(defrag.contains("Finished defragmenting"), "{defrag}");
}

/// u may read itself and its role, not others; a watch outside its keys is canceled.
fn a_role_holder_reads_only_its_own_user_and_roles(ctl: &Ctl) {
    assert_eq!(ctl.ok(U, &["user", "get", "u"]), "User: u\nRoles: r\n");
    let role = ctl.ok(U, &["role", "get", "r"]);
    assert!(role.contains("[a, b) (prefix a)"), "{role}");
    ctl.denied(U, &["user", "get", "n"], DENIED);
    ctl.denied(U, &["role", "get", "root"], DENIED);
    ctl.denied(
        U,
        &["watch", "b1", "-w", "json"],
        "watch was canceled (rpc error: code = PermissionDenied desc = etcdserver: permission denied)",
    );
}

/// Compaction, leases, member list, status and /health need no permission (etcd checks none).
fn some_requests_need_no_permission(ctl: &Ctl, member: &Member) {
    assert_eq!(ctl.ok(N, &["compact", "2"]), "compacted revision 2\n");
    let lease = ctl.ok(N, &["lease", "grant", "10"]);
    assert!(lease.contains("granted with TTL(10s)"), "{lease}");
    let members = ctl.ok(N, &["member", "list"]);
    assert!(members.contains(&member.url), "{members}");
    let status = ctl.ok(N, &["endpoint", "status"]);
    assert!(status.contains(&member.url), "{status}");
    let health = http_get(member.port, "/health").expect("GET /health");
    assert_eq!(health, (200, r#"{"health":"true"}"#.to_string()));
}

// ---- gRPC -----------------------------------------------------------------------------------

/// The Auth and KV clients of one connection.
struct Grpc {
    auth: AuthClient<Channel>,
    kv: KvClient<Channel>,
}

async fn grpc(url: &str) -> Grpc {
    let channel = bounded("connect", async {
        let endpoint = Channel::from_shared(url.to_string()).expect("endpoint");
        endpoint.connect().await.expect("connect")
    })
    .await;
    Grpc {
        auth: AuthClient::new(channel.clone()),
        kv: KvClient::new(channel),
    }
}

/// `message` with `token` in the gRPC metadata, as etcd's clients send it.
fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        let value = token.parse().expect("a token is ASCII");
        request.metadata_mut().insert("token", value);
    }
    request
}

/// `result` must be refused with `code` and etcd's `message`.
#[track_caller]
fn expect_refused<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, message: &str) {
    match result {
        Err(status) if status.code() == code && status.message() == message => {}
        other => panic!("expected {code:?} {message:?}, got {other:?}"),
    }
}

impl Grpc {
    async fn login(&mut self, name: &str, password: &str) -> Result<String, Status> {
        let request = pb::AuthenticateRequest {
            name: name.into(),
            password: password.into(),
        };
        let response = bounded("authenticate", self.auth.authenticate(request)).await?;
        Ok(response.into_inner().token)
    }

    async fn put(&mut self, token: Option<&str>, key: &str) -> Result<(), Status> {
        let put = pb::PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        bounded("put", self.kv.put(with_token(put, token))).await?;
        Ok(())
    }

    async fn get(&mut self, token: Option<&str>, key: &str) -> Result<usize, Status> {
        let range = pb::RangeRequest {
            key: key.into(),
            ..Default::default()
        };
        let response = bounded("range", self.kv.range(with_token(range, token))).await?;
        Ok(response.into_inner().kvs.len())
    }

    async fn status(&mut self) -> pb::AuthStatusResponse {
        let status = self.auth.auth_status(pb::AuthStatusRequest {});
        bounded("auth status", status)
            .await
            .expect("auth status")
            .into_inner()
    }
}

/// Administration over gRPC; each call must succeed.
impl Grpc {
    async fn user_add(&mut self, name: &str, password: &str) {
        let add = pb::AuthUserAddRequest {
            name: name.into(),
            password: password.into(),
            ..Default::default()
        };
        bounded("user add", self.auth.user_add(add))
            .await
            .expect("user add");
    }

    async fn role_add(&mut self, token: Option<&str>, role: &str) {
        let add = with_token(pb::AuthRoleAddRequest { name: role.into() }, token);
        bounded("role add", self.auth.role_add(add))
            .await
            .expect("role add");
    }

    async fn grant_role(&mut self, user: &str, role: &str) {
        let grant = pb::AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        };
        let granted = bounded("grant role", self.auth.user_grant_role(grant)).await;
        granted.expect("user grant-role");
    }

    /// Grants `role` readwrite on the keys starting with the letter `prefix`.
    async fn grant_prefix(&mut self, token: Option<&str>, role: &str, prefix: u8) {
        let perm = authpb::Permission {
            perm_type: authpb::permission::Type::Readwrite as i32,
            key: vec![prefix],
            range_end: vec![prefix + 1],
        };
        let grant = pb::AuthRoleGrantPermissionRequest {
            name: role.into(),
            perm: Some(perm),
        };
        let request = with_token(grant, token);
        let granted = bounded("grant permission", self.auth.role_grant_permission(request)).await;
        granted.expect("role grant-permission");
    }

    async fn change_password(&mut self, token: Option<&str>, user: &str, password: &str) {
        let change = pb::AuthUserChangePasswordRequest {
            name: user.into(),
            password: password.into(),
            ..Default::default()
        };
        let request = with_token(change, token);
        let changed = bounded("passwd", self.auth.user_change_password(request)).await;
        changed.expect("user passwd");
    }

    async fn enable(&mut self, token: Option<&str>) {
        let request = with_token(pb::AuthEnableRequest {}, token);
        bounded("auth enable", self.auth.auth_enable(request))
            .await
            .expect("auth enable");
    }

    async fn disable(&mut self, token: Option<&str>) {
        let request = with_token(pb::AuthDisableRequest {}, token);
        bounded("auth disable", self.auth.auth_disable(request))
            .await
            .expect("auth disable");
    }

    /// root (role root), u with role r (readwrite on prefix `a`), then auth enabled.
    async fn set_up(&mut self) {
        self.user_add("root", "root-pw").await;
        self.grant_role("root", "root").await;
        self.role_add(None, "r").await;
        self.grant_prefix(None, "r", b'a').await;
        self.user_add("u", "u-pw").await;
        self.grant_role("u", "r").await;
        self.enable(None).await;
    }
}

/// etcd's simple token: 16 ASCII letters, a dot, a number.
fn is_simple_token(token: &str) -> bool {
    token.split_once('.').is_some_and(|(letters, number)| {
        letters.len() == 16
            && letters.bytes().all(|b| b.is_ascii_alphabetic())
            && !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit())
    })
}

/// A JWT: three non-empty base64url parts.
fn is_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    let base64url = |part: &&str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    parts.len() == 3 && parts.iter().all(base64url)
}

// ---- Test 2: tokens -------------------------------------------------------------------------

#[test]
fn tokens_are_checked_and_ended_by_password_changes_and_auth_disable() {
    let dir = TempDir::new("auth-tokens");
    let member = Member::start(&dir.0, &["--bcrypt-cost", "4"]);
    runtime().block_on(async {
        let mut g = grpc(&member.url).await;
        g.set_up().await;
        let root = g.login("root", "root-pw").await.expect("root logs in");
        let u = g.login("u", "u-pw").await.expect("u logs in");
        assert!(is_simple_token(&u), "not etcd's simple token shape: {u:?}");
        g.put(Some(&u), "a1").await.expect("u writes its prefix");
        assert_eq!(g.get(Some(&u), "a1").await.expect("u reads its prefix"), 1);
        expect_refused(g.put(Some(&u), "b1").await, Code::PermissionDenied, DENIED);
        expect_refused(g.put(None, "a1").await, Code::InvalidArgument, USER_EMPTY);
        for garbage in ["not-a-token", "ABCDEFGHIJKLMNOP.1"] {
            expect_invalid_token(g.put(Some(garbage), "a1").await);
            expect_invalid_token(g.get(Some(garbage), "a1").await);
        }
        a_simple_token_outlives_an_auth_change(&mut g, &root, &u).await;
        let u = a_password_change_ends_the_users_tokens(&mut g, &root, &u).await;
        disabling_auth_ends_every_token(&mut g, &[&root, &u]).await;
    });
}

#[track_caller]
fn expect_invalid_token<T: std::fmt::Debug>(result: Result<T, Status>) {
    expect_refused(result, Code::Unauthenticated, INVALID_TOKEN);
}

/// A permission granted applies at once, and u's token (a simple one) still works although the
/// auth revision moved.
async fn a_simple_token_outlives_an_auth_change(g: &mut Grpc, root: &str, u: &str) {
    let before = g.status().await.auth_revision;
    g.grant_prefix(Some(root), "r", b'b').await;
    let after = g.status().await.auth_revision;
    assert!(
        after > before,
        "the auth revision did not move: {before} → {after}"
    );
    let put = g.put(Some(u), "b1").await;
    put.expect("u writes the newly granted prefix with its old token");
}

/// A password change ends u's tokens and its old password; u's new token.
async fn a_password_change_ends_the_users_tokens(g: &mut Grpc, root: &str, u: &str) -> String {
    g.change_password(Some(root), "u", "u-pw2").await;
    expect_invalid_token(g.put(Some(u), "a1").await);
    expect_refused(
        g.login("u", "u-pw").await,
        Code::InvalidArgument,
        AUTH_FAILED,
    );
    let new = g
        .login("u", "u-pw2")
        .await
        .expect("u logs in with its new password");
    assert_ne!(new, u);
    g.put(Some(&new), "a1").await.expect("u's new token works");
    new
}

/// Disabling auth (and enabling it again) ends every token.
async fn disabling_auth_ends_every_token(g: &mut Grpc, tokens: &[&str]) {
    g.disable(Some(tokens[0])).await;
    g.enable(None).await;
    for old in tokens {
        expect_invalid_token(g.get(Some(old), "a1").await);
    }
    let root = g
        .login("root", "root-pw")
        .await
        .expect("root logs in again");
    g.put(Some(&root), "z").await.expect("root writes anywhere");
}

// ---- Test 3: --auth-token-ttl ---------------------------------------------------------------

#[test]
fn a_token_in_use_lives_on_and_an_idle_one_expires() {
    let dir = TempDir::new("auth-ttl");
    let flags = ["--bcrypt-cost", "4", "--auth-token-ttl", "2"];
    let member = Member::start(&dir.0, &flags);
    runtime().block_on(async {
        let mut g = grpc(&member.url).await;
        g.set_up().await;
        let busy = g.login("u", "u-pw").await.expect("u logs in");
        let idle = g.login("u", "u-pw").await.expect("u logs in again");
        for second in 1..=6 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let used = g.get(Some(&busy), "a1").await;
            used.unwrap_or_else(|e| {
                panic!("a token used every second expired after {second} s: {e}")
            });
        }
        // `idle` was last used at login, 6 s and more ago, with a 2 s TTL.
        expect_invalid_token(g.get(Some(&idle), "a1").await);
        g.get(Some(&busy), "a1")
            .await
            .expect("the token in use still works");
    });
}

// ---- Test 4: restart ------------------------------------------------------------------------

/// AuthStatus (etcd 3.5's; etcdctl 3.4 has no `auth status`), which needs no user.
fn auth_status(member: &Member) -> pb::AuthStatusResponse {
    runtime().block_on(async { grpc(&member.url).await.status().await })
}

#[test]
fn auth_survives_a_crash_and_restart() {
    let dir = TempDir::new("auth-restart");
    let mut member = Member::start(&dir.0, &["--bcrypt-cost", "4"]);
    let ctl = Ctl::new(&member);
    operator_sets_up_auth(&ctl);
    assert_eq!(ctl.ok(U, &["put", "a1", "kept"]), "OK\n");
    let before = auth_status(&member);
    assert!(before.enabled, "auth status before the crash: {before:?}");

    member.crash_and_restart();
    let ctl = Ctl::new(&member);
    let after = auth_status(&member);
    assert!(
        after.enabled,
        "auth is no longer enabled after a restart: {after:?}"
    );
    assert_eq!(
        after.auth_revision, before.auth_revision,
        "the auth revision moved"
    );
    let (status, metrics) = http_get(member.port, "/metrics").expect("/metrics");
    assert_eq!(status, 200);
    let series = format!("etcd_debugging_auth_revision {}", after.auth_revision);
    assert!(
        metrics.lines().any(|line| line == series),
        "/metrics lacks {series:?}"
    );

    ctl.denied(NOBODY, &["get", "a1"], USER_EMPTY);
    assert_eq!(ctl.ok(U, &["get", "a1", "--print-value-only"]), "kept\n");
    ctl.denied(U, &["put", "b1", "x"], DENIED);
    ctl.denied(U, &["user", "list"], DENIED);
    ctl.denied(N, &["get", "a1"], DENIED);
    assert_eq!(ctl.ok(ROOT, &["user", "list"]), "n\nroot\nu\n");
    assert_eq!(ctl.ok(ROOT, &["put", "b1", "root"]), "OK\n");
}

// ---- Test 5: JWT ----------------------------------------------------------------------------

/// An ES256 (P-256) key pair written to `dir`: the `--auth-token` value using it.
fn es256_auth_token(dir: &Path) -> String {
    let key = rcgen::KeyPair::generate().expect("a P-256 key");
    let (public, private) = (dir.join("jwt.pub.pem"), dir.join("jwt.key.pem"));
    std::fs::write(&public, key.public_key_pem()).expect("write the public key");
    std::fs::write(&private, key.serialize_pem()).expect("write the private key");
    format!(
        "jwt,pub-key={},priv-key={},sign-method=ES256",
        public.display(),
        private.display()
    )
}

#[test]
fn jwt_tokens_are_signed_and_go_stale_after_an_auth_change() {
    let dir = TempDir::new("auth-jwt");
    let auth_token = es256_auth_token(&dir.0);
    let member = Member::start(&dir.0, &["--bcrypt-cost", "4", "--auth-token", &auth_token]);
    runtime().block_on(async {
        let mut g = grpc(&member.url).await;
        g.set_up().await;
        let root = g.login("root", "root-pw").await.expect("root logs in");
        assert!(is_jwt(&root), "not a JWT: {root:?}");
        g.put(Some(&root), "b1").await.expect("root's JWT works");
        let u = g.login("u", "u-pw").await.expect("u logs in");
        assert!(is_jwt(&u), "not a JWT: {u:?}");
        g.put(Some(&u), "a1")
            .await
            .expect("u's JWT works in its prefix");
        expect_refused(g.put(Some(&u), "b1").await, Code::PermissionDenied, DENIED);
        let forged = format!("{}x", &root);
        expect_invalid_token(g.put(Some(&forged), "b1").await);

        // An auth change makes every JWT issued before it stale.
        g.role_add(Some(&root), "r2").await;
        for old in [&root, &u] {
            expect_refused(
                g.put(Some(old), "a1").await,
                Code::InvalidArgument,
                OLD_REVISION,
            );
        }
        let fresh = g
            .login("root", "root-pw")
            .await
            .expect("root logs in again");
        g.put(Some(&fresh), "b1").await.expect("a fresh JWT works");
    });
}

#[test]
fn a_missing_jwt_key_file_is_refused_at_start_naming_it() {
    let dir = TempDir::new("auth-jwt-bad");
    let flags = ["--auth-token", "jwt,sign-method=ES256,pub-key=/nonexistent"].map(String::from);
    let output = run_to_end(command(&dir.0, free_port(), free_port(), &flags));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "stet started without its key file: {stderr}"
    );
    assert!(
        stderr.contains("/nonexistent"),
        "the error does not name the file: {stderr}"
    );
}
