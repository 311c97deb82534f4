//! Migration from etcd, end to end: a real etcd 3.4 (Debian's `etcd-server`) is written to —
//! puts, overwrites, deletions, multi-put txns, leases, values larger than a bbolt page, a
//! compaction — and backed up with `etcdctl snapshot save`; `stetutl snapshot restore` makes a
//! stet data directory of the file, and the stet member started on it must answer every read
//! as the etcd did: every key at every revision since the compaction, the compaction itself,
//! the leases and their keys, and the next write's revision.

mod procs;

use procs::*;
use stet::proto::etcdserverpb as pb;

const KEYS: usize = 300;
const LEASE_TTL_SECONDS: i64 = 3600;

/// Writes a history to `clients`: the lease IDs granted and the revision compacted at.
async fn write_history(clients: &mut Clients) -> (Vec<i64>, i64) {
    let mut leases = Vec::new();
    for _ in 0..3 {
        let grant = pb::LeaseGrantRequest {
            ttl: LEASE_TTL_SECONDS,
            id: 0,
        };
        leases.push(
            clients
                .lease
                .lease_grant(grant)
                .await
                .expect("grant")
                .into_inner()
                .id,
        );
    }
    let mut compact_at = 0;
    for round in 0..6usize {
        for i in 0..KEYS {
            if (i + round) % 5 == 0 {
                continue;
            }
            let key = format!("/registry/pods/ns-{}/pod-{i:04}", i % 7);
            // Every 50th value spans several bbolt pages.
            let size = if i % 50 == 7 {
                9000
            } else {
                20 + (i * 13 + round) % 300
            };
            let value = format!("{round}-{}", "v".repeat(size));
            let lease = if i % 11 == 0 {
                leases[i % leases.len()]
            } else {
                0
            };
            clients.put(&key, &value, lease).await;
        }
        // A txn of several puts and a delete: one revision, several sub-revisions.
        let ops = (0..5)
            .map(|j| pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                    key: format!("/txn/{round}/{j}").into_bytes(),
                    value: b"t".to_vec(),
                    ..Default::default()
                })),
            })
            .chain(std::iter::once(pb::RequestOp {
                request: Some(pb::request_op::Request::RequestDeleteRange(
                    pb::DeleteRangeRequest {
                        key: format!("/txn/{}/0", round as i64 - 1).into_bytes(),
                        ..Default::default()
                    },
                )),
            }))
            .collect();
        let txn = pb::TxnRequest {
            success: ops,
            ..Default::default()
        };
        clients.kv.txn(txn).await.expect("txn");
        let deletes = pb::DeleteRangeRequest {
            key: format!("/registry/pods/ns-{round}/").into_bytes(),
            range_end: format!("/registry/pods/ns-{round}0").into_bytes(),
            ..Default::default()
        };
        clients.kv.delete_range(deletes).await.expect("delete");
        if round == 3 {
            let status = clients.get("/", b"").await.expect("get");
            compact_at = status.header.expect("header").revision - 100;
            let compact = pb::CompactionRequest {
                revision: compact_at,
                physical: true,
            };
            clients.kv.compact(compact).await.expect("compact");
        }
    }
    let revoke = pb::LeaseRevokeRequest { id: leases[2] };
    clients.lease.lease_revoke(revoke).await.expect("revoke");
    (leases, compact_at)
}

/// Every key at `revision` (all of them: `\0` to `\0`), or the error's message.
async fn everything_at(
    clients: &mut Clients,
    revision: i64,
) -> Result<(i64, Vec<stet::proto::mvccpb::KeyValue>), String> {
    let request = pb::RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision,
        ..Default::default()
    };
    match bounded("range", clients.kv.range(request)).await {
        Ok(response) => {
            let response = response.into_inner();
            assert_eq!(response.count as usize, response.kvs.len());
            Ok((response.count, response.kvs))
        }
        Err(status) => Err(status.message().to_string()),
    }
}

/// The leases and the keys attached to each.
async fn leases_of(clients: &mut Clients) -> Vec<(i64, i64, Vec<Vec<u8>>)> {
    let list = clients
        .lease
        .lease_leases(pb::LeaseLeasesRequest {})
        .await
        .expect("leases")
        .into_inner();
    let mut leases = Vec::new();
    for lease in list.leases {
        let request = pb::LeaseTimeToLiveRequest {
            id: lease.id,
            keys: true,
        };
        let ttl = clients
            .lease
            .lease_time_to_live(request)
            .await
            .expect("ttl")
            .into_inner();
        let mut keys = ttl.keys;
        keys.sort();
        leases.push((lease.id, ttl.granted_ttl, keys));
    }
    leases.sort();
    leases
}

#[test]
fn an_etcd_backup_restored_into_stet_answers_as_etcd_did() {
    let etcdctl = etcdctl().expect("etcdctl is not installed: apt-get install -y etcd-client");
    let dir = TempDir::new("migrate-etcd");
    let runtime = runtime();
    let (etcd, etcd_url) = start_etcd(&dir.0);
    let mut on_etcd = runtime.block_on(connect(etcd_url.clone()));
    let (leases, compact_at) = runtime.block_on(write_history(&mut on_etcd));
    let backup = dir.0.join("etcd-backup.db");
    let backup_arg = backup.to_str().expect("a UTF-8 path");
    etcdctl_run(&etcdctl, &etcd_url, &["snapshot", "save", backup_arg]);

    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let cluster = format!("moved={peer_url}");
    let restore = run_to_end({
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_stetutl"));
        command.current_dir(&dir.0).args([
            "snapshot",
            "restore",
            backup_arg,
            "--name",
            "moved",
            "--data-dir",
            "moved.stet",
            "--initial-cluster",
            &cluster,
            "--initial-advertise-peer-urls",
            &peer_url,
        ]);
        command
    });
    let printed = String::from_utf8_lossy(&restore.stdout);
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    assert!(
        printed.contains("restored the etcd backup at revision"),
        "{printed}"
    );
    let (_stet, stet_url) = start_member(&dir.0, "moved", "moved.stet", &peer_url, &cluster);
    let mut on_stet = runtime.block_on(connect(stet_url));

    runtime.block_on(async {
        let (_, now) = everything_at(&mut on_etcd, 0).await.expect("etcd's keys");
        let current = on_etcd
            .get("/", b"")
            .await
            .expect("get")
            .header
            .expect("header")
            .revision;
        assert!(now.len() > 200, "{} keys", now.len());
        for revision in (compact_at - 3..=current).chain([0]) {
            let from_etcd = everything_at(&mut on_etcd, revision).await;
            let from_stet = everything_at(&mut on_stet, revision).await;
            if revision < compact_at && revision > 0 {
                assert!(from_etcd.as_ref().is_err_and(|e| e.contains("compacted")));
            }
            assert_eq!(from_stet, from_etcd, "every key at revision {revision}");
        }
        let etcd_leases = leases_of(&mut on_etcd).await;
        assert_eq!(etcd_leases.len(), 2, "{etcd_leases:?}");
        assert!(etcd_leases.iter().all(|(_, _, keys)| !keys.is_empty()));
        assert_eq!(leases_of(&mut on_stet).await, etcd_leases);
        assert!(!etcd_leases.iter().any(|(id, _, _)| *id == leases[2]));
        // The next write continues etcd's revisions.
        let put = on_stet.put("/after", "move", 0).await;
        assert_eq!(put.header.expect("header").revision, current + 1);
    });
    drop(etcd);
}
