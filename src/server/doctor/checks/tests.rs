//! Each diagnosis from the facts of a broken (or healthy) setup.

use super::*;

const ME: Metadata = Metadata {
    member_id: 0xa1,
    cluster_id: 0xc1,
};

fn flags() -> Flags {
    Flags {
        name: "m1".into(),
        data_dir: "m1.stet".into(),
        identity: ME,
        new_cluster: true,
        force_new_cluster: false,
        advertise_peer_urls: vec!["http://10.0.0.1:2380".into()],
    }
}

fn member(id: u64, name: &str, peer: &str) -> StoredMember {
    StoredMember {
        id,
        name: name.into(),
        peer_urls: vec![peer.into()],
        client_urls: vec![format!("http://{name}:2379")],
        is_learner: false,
    }
}

/// A healthy member's data: itself and two started peers.
fn data() -> Data {
    Data {
        wal: Ok((ME, 40)),
        torn_tail: None,
        marker: None,
        forced_identity: None,
        membership: Ok((
            vec![
                member(0xa1, "m1", "http://10.0.0.1:2380"),
                member(0xa2, "m2", "http://10.0.0.2:2380"),
                member(0xa3, "m3", "http://10.0.0.3:2380"),
            ],
            Vec::new(),
        )),
    }
}

fn problems(findings: &[Finding]) -> Vec<&str> {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Problem)
        .map(|f| f.what.as_str())
        .collect()
}

fn one_problem(findings: &[Finding]) -> &Finding {
    let found: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.severity == Severity::Problem)
        .collect();
    assert_eq!(found.len(), 1, "{findings:#?}");
    found[0]
}

#[test]
fn a_healthy_member_has_no_problem_and_the_ignored_flags_are_noted() {
    let findings = diagnose(&flags(), Some(&data()), &[]);
    assert!(problems(&findings).is_empty(), "{findings:#?}");
    assert!(findings
        .iter()
        .any(|f| f.what.contains("--initial-cluster")));
    let fresh = diagnose(&flags(), None, &[]);
    assert!(problems(&fresh).is_empty());
    assert!(fresh[0].what.contains("bootstrap a new cluster"));
}

#[test]
fn a_data_dir_from_another_cluster_is_named_with_its_fix() {
    let mut other = flags();
    other.identity = Metadata {
        member_id: 0xb1,
        cluster_id: 0xc2,
    };
    let finding = one_problem(&diagnose(&other, Some(&data()), &[])).clone();
    assert!(finding.what.contains("from another cluster"), "{finding:?}");
    assert!(
        finding.fix.contains("--initial-cluster-token"),
        "{finding:?}"
    );
    // The identity a forced start recorded is this member's.
    let mut forced = data();
    forced.forced_identity = Some(other.identity);
    assert!(problems(&diagnose(&other, Some(&forced), &[])).is_empty());
}

#[test]
fn a_removed_members_data_is_refused_with_how_to_come_back() {
    let mut removed = data();
    removed.membership = Ok((vec![member(0xa2, "m2", "http://10.0.0.2:2380")], vec![0xa1]));
    let finding = one_problem(&diagnose(&flags(), Some(&removed), &[])).clone();
    assert!(finding.what.contains("was removed"), "{finding:?}");
    assert!(finding.fix.contains("etcdctl member add"), "{finding:?}");
}

#[test]
fn a_peer_url_the_cluster_does_not_know_needs_a_member_update() {
    let mut moved = flags();
    moved.advertise_peer_urls = vec!["http://10.0.0.9:2380".into()];
    let finding = one_problem(&diagnose(&moved, Some(&data()), &[])).clone();
    assert!(finding
        .fix
        .contains("etcdctl member update a1 --peer-urls=http://10.0.0.9:2380"));
    // Forcing a new cluster from a copy: the update comes after the start.
    moved.force_new_cluster = true;
    assert!(problems(&diagnose(&moved, Some(&data()), &[])).is_empty());
}

#[test]
fn a_cluster_grown_past_its_started_members_has_no_quorum() {
    let mut grown = data();
    grown.membership = Ok((
        vec![
            member(0xa1, "m1", "http://10.0.0.1:2380"),
            member(0xa2, "", "http://10.0.0.2:2380"),
        ],
        Vec::new(),
    ));
    let finding = one_problem(&diagnose(&flags(), Some(&grown), &[])).clone();
    assert!(finding.what.contains("quorum of 2"), "{finding:?}");
    assert!(finding.fix.contains("--force-new-cluster"), "{finding:?}");
    // Three voters with one unstarted still commit: a note.
    let mut three = data();
    if let Ok((members, _)) = &mut three.membership {
        members[2].name.clear();
    }
    let findings = diagnose(&flags(), Some(&three), &[]);
    assert!(problems(&findings).is_empty());
    assert!(findings.iter().any(|f| f.what.contains("never started")));
}

#[test]
fn a_damaged_wal_a_backup_and_a_force_without_data_are_problems() {
    let mut damaged = data();
    damaged.wal = Err("record at offset 4096 of 0.wal: crc mismatch".into());
    let finding = one_problem(&diagnose(&flags(), Some(&damaged), &[])).clone();
    assert!(finding.what.contains("offset 4096"), "{finding:?}");
    let mut backup = data();
    backup.marker = Some(Marker {
        member_id: 0xa1,
        cluster_id: 0xc1,
        commit_index: 40,
    });
    let finding = one_problem(&diagnose(&flags(), Some(&backup), &[])).clone();
    assert!(finding.fix.contains("--force-new-cluster"), "{finding:?}");
    let mut force = flags();
    force.force_new_cluster = true;
    assert!(problems(&diagnose(&force, Some(&backup), &[])).is_empty());
    let finding = one_problem(&diagnose(&force, None, &[])).clone();
    assert!(finding.what.contains("no data"), "{finding:?}");
}

#[test]
fn live_members_show_clock_skew_and_another_cluster() {
    let probes = [
        Probe {
            url: "http://m2:2379".into(),
            answer: Ok((Some(0xc1), 1_500_000)),
        },
        Probe {
            url: "http://m3:2379".into(),
            answer: Ok((Some(0xc9), -200_000)),
        },
        Probe {
            url: "http://m4:2379".into(),
            answer: Err("connection refused".into()),
        },
        Probe {
            url: "http://m5:2379".into(),
            answer: Ok((Some(0xc1), 999_999)),
        },
    ];
    let findings = diagnose(&flags(), Some(&data()), &probes);
    let found = problems(&findings);
    assert_eq!(found.len(), 2, "{findings:#?}");
    assert!(
        found[0].contains("m2:2379") && found[0].contains("+1.500 s"),
        "{found:?}"
    );
    assert!(found[1].contains("cluster c9"), "{found:?}");
    assert!(findings.iter().any(|f| f.what.contains("does not answer")));
}
