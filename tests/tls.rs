//! TLS on the client port of a real member, with certificates made here (rcgen): HTTPS and gRPC
//! (etcdctl 3.4) on the same https port; `--client-cert-auth` refusing clients without a
//! certificate or with one from another CA; plain HTTP refused on the https port; a rotated
//! certificate served without a restart; `--auto-tls`; a bad certificate file refused at start
//! with the flag named.

mod procs;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use procs::certs::{path_str, write, Ca};
use procs::*;
use rustls::pki_types::{CertificateDer, ServerName};

/// A TLS client configuration trusting `ca`, with an optional client certificate.
fn client_config(ca_pem: &str, client: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("client cert");
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes())
                .expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
    };
    // Every request is a full handshake: a resumed session shows no certificate anew.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

use rustls::pki_types::pem::PemObject;

/// `GET path` over HTTPS/1.1: the status and body, and the certificate the server showed; an
/// error if the handshake or the request fails.
fn https_get(
    port: u16,
    path: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let connection = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        Ok(_) => {}
        // Servers may close without TLS's close_notify after the response; what came is kept.
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {
        }
        Err(error) => return Err(error),
    }
    let served = tls
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.to_vec())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP response: {text:?}")))?;
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Ok((status, body, served))
}

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("PEM")
        .to_vec()
}

fn start(dir: &Path, port: u16, tls_args: &[&str]) -> KilledOnDrop {
    let url = format!("https://127.0.0.1:{port}");
    let peer = format!("http://127.0.0.1:{}", free_port());
    KilledOnDrop(
        member_command()
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(url_flags(&url, &peer))
            .args(["--initial-cluster", &format!("default={peer}")])
            .args(["--log-level", "warn"])
            .args(tls_args)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn stet"),
    )
}

fn wait_healthy(member: &mut KilledOnDrop, port: u16, config: &Arc<rustls::ClientConfig>) {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Ok((200, body, _)) = https_get(port, "/health", config.clone()) {
            assert_eq!(body, r#"{"health":"true"}"#);
            return;
        }
        assert!(
            member.0.try_wait().expect("try_wait").is_none(),
            "stet exited"
        );
        assert!(Instant::now() < deadline, "not healthy over HTTPS in time");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn client_certificates_are_required_and_checked_and_certificates_rotate() {
    let dir = TempDir::new("tls");
    let ca = Ca::new("stet test CA");
    let (server_cert, server_key) = ca.sign("stet server", &["127.0.0.1", "localhost"]);
    let (client_cert, client_key) = ca.sign("root", &[]);
    let rogue = Ca::new("another CA");
    let (rogue_cert, rogue_key) = rogue.sign("root", &[]);
    let ca_file = write(&dir.0, "ca.pem", &ca.pem);
    let cert_file = write(&dir.0, "server.pem", &server_cert);
    let key_file = write(&dir.0, "server-key.pem", &server_key);
    let client_cert_file = write(&dir.0, "client.pem", &client_cert);
    let client_key_file = write(&dir.0, "client-key.pem", &client_key);
    let port = free_port();
    let mut member = start(
        &dir.0,
        port,
        &[
            "--cert-file",
            path_str(&cert_file),
            "--key-file",
            path_str(&key_file),
            "--trusted-ca-file",
            path_str(&ca_file),
            "--client-cert-auth",
        ],
    );
    let trusted = client_config(&ca.pem, Some((&client_cert, &client_key)));
    wait_healthy(&mut member, port, &trusted);

    // Refused: no certificate, a certificate of another CA, plain HTTP on the TLS port.
    let anonymous = client_config(&ca.pem, None);
    assert!(
        https_get(port, "/health", anonymous).is_err(),
        "a client without a certificate"
    );
    let stranger = client_config(&ca.pem, Some((&rogue_cert, &rogue_key)));
    assert!(
        https_get(port, "/health", stranger).is_err(),
        "a certificate of another CA"
    );
    assert!(
        !matches!(http_get(port, "/health"), Ok((200, _))),
        "plain HTTP on the TLS port"
    );

    // gRPC over the same port: etcdctl 3.4 with its certificate, and refused without one.
    let etcdctl = etcdctl().expect("etcdctl (Debian's etcd-client; tests/run-all.sh installs it)");
    let endpoint = format!("https://127.0.0.1:{port}");
    let tls_flags = [
        format!("--cacert={}", ca_file.display()),
        format!("--cert={}", client_cert_file.display()),
        format!("--key={}", client_key_file.display()),
    ];
    let with = |args: &[&str]| -> Vec<String> {
        tls_flags
            .iter()
            .cloned()
            .chain(args.iter().map(|a| a.to_string()))
            .collect()
    };
    let put: Vec<String> = with(&["put", "secret", "kept"]);
    let put: Vec<&str> = put.iter().map(String::as_str).collect();
    assert!(etcdctl_run(&etcdctl, &endpoint, &put).contains("OK"));
    let get: Vec<String> = with(&["get", "secret", "--print-value-only"]);
    let get: Vec<&str> = get.iter().map(String::as_str).collect();
    assert_eq!(etcdctl_run(&etcdctl, &endpoint, &get).trim(), "kept");
    let ca_only = format!("--cacert={}", ca_file.display());
    let refused = run_to_end_etcdctl(&etcdctl, &endpoint, &[&ca_only, "get", "secret"]);
    assert!(
        !refused.status.success(),
        "etcdctl without a client certificate"
    );

    // Rotation: new files at the same paths are served from the next handshake.
    let (_, _, served) = https_get(port, "/health", trusted.clone()).expect("health");
    assert_eq!(served, der_of(&server_cert));
    let (new_cert, new_key) = ca.sign("stet server, rotated", &["127.0.0.1"]);
    write(&dir.0, "server-key.pem", &new_key);
    write(&dir.0, "server.pem", &new_cert);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _, served) = https_get(port, "/health", trusted.clone()).expect("health");
        assert_eq!(code, 200);
        if served == der_of(&new_cert) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(member.0.try_wait().expect("try_wait").is_none());
}

#[test]
fn auto_tls_serves_a_self_signed_certificate_kept_in_the_data_directory() {
    let dir = TempDir::new("auto-tls");
    let port = free_port();
    let mut member = start(&dir.0, port, &["--auto-tls"]);
    let etcdctl = etcdctl().expect("etcdctl (Debian's etcd-client; tests/run-all.sh installs it)");
    let endpoint = format!("https://127.0.0.1:{port}");
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let insecure = ["--insecure-skip-tls-verify", "--insecure-transport=false"];
    loop {
        let args = [insecure[0], insecure[1], "put", "k", "v"];
        if run_to_end_etcdctl(&etcdctl, &endpoint, &args)
            .status
            .success()
        {
            break;
        }
        assert!(
            member.0.try_wait().expect("try_wait").is_none(),
            "stet exited"
        );
        assert!(
            Instant::now() < deadline,
            "--auto-tls member never took a put"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let fixtures = dir.0.join("data").join("fixtures").join("client");
    let cert = std::fs::read_to_string(fixtures.join("cert.pem")).expect("the certificate is kept");
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(fixtures.join("key.pem").exists());
    // A verifying client refuses the self-signed certificate.
    let verifying = client_config(&Ca::new("unrelated").pem, None);
    assert!(https_get(port, "/health", verifying).is_err());
}

#[test]
fn a_bad_certificate_file_is_refused_at_start_naming_the_flag() {
    let dir = TempDir::new("tls-bad");
    let cert_file = write(&dir.0, "server.pem", "not a certificate\n");
    let key_file = write(&dir.0, "server-key.pem", "not a key\n");
    let port = free_port();
    let mut member = start(
        &dir.0,
        port,
        &[
            "--cert-file",
            path_str(&cert_file),
            "--key-file",
            path_str(&key_file),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = member.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "stet started with a bad certificate"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let output = Command::new(env!("CARGO_BIN_EXE_stet"))
        .arg("--data-dir")
        .arg(dir.0.join("data2"))
        .args([
            "--listen-client-urls",
            &format!("https://127.0.0.1:{}", free_port()),
        ])
        .args([
            "--cert-file",
            path_str(&cert_file),
            "--key-file",
            path_str(&key_file),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run stet");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("--cert-file") && stderr.contains("server.pem"),
        "{stderr}"
    );
}

/// A member of the peer-TLS cluster: its process, client port and log file.
struct TlsMember {
    process: KilledOnDrop,
    client_port: u16,
    log: PathBuf,
}

/// Starts member `name` with https peer URLs and the given peer certificate, CA and state.
fn start_peer_tls_member(
    dir: &Path,
    name: &str,
    peer_url: &str,
    cluster: &str,
    state: &str,
    (cert, key, ca): (&Path, &Path, &Path),
) -> TlsMember {
    let client_port = free_port();
    let client = format!("http://127.0.0.1:{client_port}");
    let log = dir.join(format!("{name}.log"));
    let log_file = std::fs::File::create(&log).expect("log file");
    let process = KilledOnDrop(
        Command::new(env!("CARGO_BIN_EXE_stet"))
            .args(["--name", name])
            .arg("--data-dir")
            .arg(dir.join(name))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                peer_url,
                "--initial-advertise-peer-urls",
                peer_url,
            ])
            .args([
                "--initial-cluster",
                cluster,
                "--initial-cluster-state",
                state,
            ])
            .args([
                "--peer-cert-file",
                path_str(cert),
                "--peer-key-file",
                path_str(key),
            ])
            .args([
                "--peer-trusted-ca-file",
                path_str(ca),
                "--peer-client-cert-auth",
            ])
            .args(["--peer-cert-allowed-cn", "stet-peer"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn stet"),
    );
    TlsMember {
        process,
        client_port,
        log,
    }
}

fn log_has(member: &TlsMember, what: &str) -> bool {
    std::fs::read_to_string(&member.log).is_ok_and(|text| text.contains(what))
}

#[test]
fn members_talk_over_tls_and_refuse_a_peer_the_ca_did_not_sign_or_name() {
    let dir = TempDir::new("peer-tls");
    let ca = Ca::new("stet peer CA");
    let ca_file = write(&dir.0, "ca.pem", &ca.pem);
    let names = ["m0", "m1", "m2"];
    let peer_urls: Vec<String> = names
        .iter()
        .map(|_| format!("https://127.0.0.1:{}", free_port()))
        .collect();
    let cluster: Vec<String> = names
        .iter()
        .zip(&peer_urls)
        .map(|(name, url)| format!("{name}={url}"))
        .collect();
    let cluster = cluster.join(",");
    let mut members: Vec<TlsMember> = Vec::new();
    for (name, url) in names.iter().zip(&peer_urls) {
        let (cert, key) = ca.sign("stet-peer", &["127.0.0.1"]);
        let cert = write(&dir.0, &format!("{name}.pem"), &cert);
        let key = write(&dir.0, &format!("{name}-key.pem"), &key);
        let files = (cert.as_path(), key.as_path(), ca_file.as_path());
        members.push(start_peer_tls_member(
            &dir.0, name, url, &cluster, "new", files,
        ));
    }
    for member in &mut members {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !matches!(http_get(member.client_port, "/health"), Ok((200, _))) {
            assert!(
                member.process.0.try_wait().expect("try_wait").is_none(),
                "a member exited"
            );
            assert!(
                Instant::now() < deadline,
                "the TLS cluster never became healthy"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let runtime = runtime();
    let endpoint = |m: &TlsMember| format!("http://127.0.0.1:{}", m.client_port);
    runtime.block_on(async {
        let mut first = connect(endpoint(&members[0])).await;
        first.put("over-tls", "replicated", 0).await;
        let mut last = connect(endpoint(&members[2])).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while last.value("over-tls").await.as_deref() != Some(b"replicated".as_slice()) {
            assert!(
                Instant::now() < deadline,
                "the write never reached the third member"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    // Two would-be members, added by an operator, whose certificates fail: one from another
    // CA, one from the right CA under another name. Neither gets in.
    let rogue_ca = Ca::new("rogue CA");
    let intruders = [
        (
            "x1",
            rogue_ca.sign("stet-peer", &["127.0.0.1"]),
            "TLS handshake failed",
        ),
        ("x2", ca.sign("intruder", &["127.0.0.1"]), "not the allowed"),
    ];
    for (name, (cert, key), refusal) in intruders {
        let url = format!("https://127.0.0.1:{}", free_port());
        runtime.block_on(async {
            let mut c = connect(endpoint(&members[0])).await;
            let add = stet::proto::etcdserverpb::MemberAddRequest {
                peer_ur_ls: vec![url.clone()],
                is_learner: true,
            };
            bounded("member add", c.cluster.member_add(add))
                .await
                .expect("member add");
        });
        let cert = write(&dir.0, &format!("{name}.pem"), &cert);
        let key = write(&dir.0, &format!("{name}-key.pem"), &key);
        let joined = format!("{cluster},{name}={url}");
        let files = (cert.as_path(), key.as_path(), ca_file.as_path());
        let mut intruder = start_peer_tls_member(&dir.0, name, &url, &joined, "existing", files);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !members.iter().any(|m| log_has(m, refusal)) {
            assert!(
                Instant::now() < deadline,
                "no member refused {name} with {refusal:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            !matches!(http_get(intruder.client_port, "/health"), Ok((200, _))),
            "{name} must not serve as a member"
        );
        let listed = runtime.block_on(async {
            let mut c = connect(endpoint(&members[0])).await;
            let request = stet::proto::etcdserverpb::MemberListRequest::default();
            bounded("member list", c.cluster.member_list(request))
                .await
                .expect("list")
                .into_inner()
        });
        let added = listed
            .members
            .iter()
            .find(|m| m.peer_ur_ls.contains(&url))
            .expect("the added member is listed");
        assert!(
            added.name.is_empty(),
            "{name} never started as a member: {added:?}"
        );
        let _ = intruder.process.0.kill();
        runtime.block_on(async {
            let mut c = connect(endpoint(&members[0])).await;
            let remove = stet::proto::etcdserverpb::MemberRemoveRequest { id: added.id };
            bounded("member remove", c.cluster.member_remove(remove))
                .await
                .expect("remove");
        });
    }
}
