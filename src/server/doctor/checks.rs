//! The doctor's diagnoses, decided from gathered facts alone (no IO), each with the fix in plain
//! words: etcd's FAQ failures — a data directory from another cluster, a member name or peer URL
//! the cluster does not know, a removed member's old data, `--initial-cluster*` flags ignored
//! because data exists, a cluster grown past what its started members can commit, clock skew
//! over a second, a damaged WAL — plus stet's own (a `stetutl backup` copy).

use crate::backup::offline::Marker;
use crate::wal::Metadata;

/// The largest clock difference between members that is not a problem, in microseconds.
pub const MAX_SKEW_MICROS: i64 = 1_000_000;

/// How serious a finding is: problems make the doctor (and the member) fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Problem,
    Note,
}

/// One diagnosis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub what: String,
    /// What to do; empty for a note that needs nothing.
    pub fix: String,
}

fn problem(what: String, fix: impl Into<String>) -> Finding {
    Finding {
        severity: Severity::Problem,
        what,
        fix: fix.into(),
    }
}

fn note(what: String, fix: impl Into<String>) -> Finding {
    Finding {
        severity: Severity::Note,
        what,
        fix: fix.into(),
    }
}

/// What the member's flags say.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub name: String,
    pub data_dir: String,
    pub identity: Metadata,
    /// `--initial-cluster-state new`.
    pub new_cluster: bool,
    pub force_new_cluster: bool,
    pub advertise_peer_urls: Vec<String>,
}

/// A member as the data directory's stored membership has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredMember {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// What the data directory holds.
#[derive(Debug, Clone)]
pub struct Data {
    /// The WAL's identity and commit index, or why it cannot be read.
    pub wal: Result<(Metadata, u64), String>,
    pub torn_tail: Option<String>,
    pub marker: Option<Marker>,
    /// The flags' identity a `--force-new-cluster` start recorded.
    pub forced_identity: Option<Metadata>,
    /// The stored membership (members, removed IDs), or why it cannot be read.
    pub membership: Result<(Vec<StoredMember>, Vec<u64>), String>,
}

/// What a live member answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub url: String,
    /// Its cluster ID and its clock minus this machine's, or why it did not answer.
    pub answer: Result<(Option<u64>, i64), String>,
}

/// Every diagnosis for a member with `flags` and `data` (`None`: no data yet), given what the
/// live members answered.
pub fn diagnose(flags: &Flags, data: Option<&Data>, probes: &[Probe]) -> Vec<Finding> {
    let mut findings = Vec::new();
    match data {
        None => no_data(flags, &mut findings),
        Some(data) => with_data(flags, data, &mut findings),
    }
    let own_cluster = data
        .and_then(|d| d.wal.as_ref().ok())
        .map_or(flags.identity.cluster_id, |(metadata, _)| {
            metadata.cluster_id
        });
    for probe in probes {
        live(probe, own_cluster, &mut findings);
    }
    findings
}

fn no_data(flags: &Flags, findings: &mut Vec<Finding>) {
    if flags.force_new_cluster {
        findings.push(problem(
            format!(
                "--force-new-cluster, but {} holds no data to recover from",
                flags.data_dir
            ),
            "point --data-dir at the surviving member's data directory (or a copy of it)",
        ));
        return;
    }
    let what = if flags.new_cluster {
        "bootstrap a new cluster"
    } else {
        "join an existing cluster"
    };
    findings.push(note(
        format!(
            "{} holds no data yet: the member will {what} from its flags",
            flags.data_dir
        ),
        "",
    ));
}

fn with_data(flags: &Flags, data: &Data, findings: &mut Vec<Finding>) {
    let (found, _) = match &data.wal {
        Ok(wal) => *wal,
        Err(why) => {
            findings.push(problem(
                format!("the WAL in {} is damaged: {why}", flags.data_dir),
                "this member's data cannot be trusted: remove it from the cluster (`etcdctl member \
                 remove ID`), move the data directory aside, add it back (`etcdctl member add`) \
                 and start it empty with the settings printed; or restore a backup",
            ));
            return;
        }
    };
    if let Some(torn) = &data.torn_tail {
        findings.push(note(
            format!("the WAL ends in an unfinished write ({torn})"),
            "nothing to do: the member cuts it off when it starts",
        ));
    }
    if let Some(marker) = &data.marker {
        if !flags.force_new_cluster {
            findings.push(problem(
                format!("{} is {marker}, made by `stetutl backup`", flags.data_dir),
                "start it with --force-new-cluster: it becomes a new one-member cluster with the \
                 data (it can never rejoin the cluster it came from)",
            ));
        }
    }
    identity(flags, found, data, findings);
    membership(flags, found, data, findings);
    findings.push(note(
        "--initial-cluster, --initial-cluster-state and --initial-cluster-token are ignored: \
         the data directory already says which cluster this member is in"
            .to_string(),
        "",
    ));
}

fn identity(flags: &Flags, found: Metadata, data: &Data, findings: &mut Vec<Finding>) {
    let accepted = found == flags.identity
        || !flags.new_cluster
        || flags.force_new_cluster
        || data.forced_identity == Some(flags.identity);
    if accepted {
        return;
    }
    let what = if found.cluster_id != flags.identity.cluster_id {
        format!(
            "the data directory belongs to cluster {:x} (as member {:x}), but the flags describe \
             cluster {:x} (member {:x}): a data directory from another cluster",
            found.cluster_id, found.member_id, flags.identity.cluster_id, flags.identity.member_id
        )
    } else {
        format!(
            "the data directory is member {:x}'s, but --name and --initial-advertise-peer-urls \
             describe member {:x}",
            found.member_id, flags.identity.member_id
        )
    };
    findings.push(problem(
        what,
        "start with the --name, --initial-advertise-peer-urls, --initial-cluster and \
         --initial-cluster-token this directory was created with, or point --data-dir at this \
         member's own directory",
    ));
}

fn membership(flags: &Flags, found: Metadata, data: &Data, findings: &mut Vec<Finding>) {
    let (members, removed) = match &data.membership {
        Ok(membership) => membership,
        Err(why) => {
            findings.push(problem(
                format!("the storage engine's file cannot be read: {why}"),
                "restore this member's data from a backup, or remove and re-add the member",
            ));
            return;
        }
    };
    let me = found.member_id;
    if removed.contains(&me) {
        findings.push(problem(
            format!("member {me:x} was removed from the cluster: this is its old data, which can never rejoin"),
            "move the data directory aside, run `etcdctl member add` and start the member with \
             the settings it prints",
        ));
        return;
    }
    let Some(stored) = members.iter().find(|m| m.id == me) else {
        if !members.is_empty() {
            findings.push(problem(
                format!("member {me:x} is not in the cluster's stored membership"),
                "add it with `etcdctl member add` and start it with the settings printed, on an \
                 empty data directory",
            ));
        }
        return;
    };
    peer_urls(flags, stored, findings);
    quorum(flags, members, findings);
}

fn peer_urls(flags: &Flags, stored: &StoredMember, findings: &mut Vec<Finding>) {
    let mut advertised = flags.advertise_peer_urls.clone();
    let mut known = stored.peer_urls.clone();
    advertised.sort();
    known.sort();
    if advertised == known {
        return;
    }
    let what = format!(
        "the cluster knows member {:x} at peer URLs {}, but the flags advertise {}: the other \
         members will dial the old address",
        stored.id,
        known.join(","),
        advertised.join(",")
    );
    let fix = format!(
        "from a running member: `etcdctl member update {:x} --peer-urls={}` (or start with \
         --initial-advertise-peer-urls {})",
        stored.id,
        advertised.join(","),
        known.join(",")
    );
    findings.push(if flags.force_new_cluster {
        note(what, fix)
    } else {
        problem(what, fix)
    });
}

fn quorum(flags: &Flags, members: &[StoredMember], findings: &mut Vec<Finding>) {
    let voters: Vec<&StoredMember> = members.iter().filter(|m| !m.is_learner).collect();
    let unstarted: Vec<String> = voters
        .iter()
        .filter(|m| m.name.is_empty())
        .map(|m| format!("{:x} ({})", m.id, m.peer_urls.join(",")))
        .collect();
    if unstarted.is_empty() || flags.force_new_cluster {
        return;
    }
    let quorum = voters.len() / 2 + 1;
    let started = voters.len() - unstarted.len();
    let what = format!(
        "{} of the cluster's {} voting members never started: {}",
        unstarted.len(),
        voters.len(),
        unstarted.join(", ")
    );
    if started < quorum {
        findings.push(problem(
            format!("{what}; the {started} started ones are short of the quorum of {quorum}, so nothing can commit"),
            "start the missing members with the settings `etcdctl member add` printed; if they \
             will never come, restart this member with --force-new-cluster",
        ));
    } else {
        findings.push(note(
            what,
            "start them with the settings `etcdctl member add` printed, or remove them",
        ));
    }
}

fn live(probe: &Probe, own_cluster: u64, findings: &mut Vec<Finding>) {
    let (cluster_id, skew_micros) = match &probe.answer {
        Ok(answer) => *answer,
        Err(why) => {
            findings.push(note(
                format!("the member at {} does not answer: {why}", probe.url),
                "",
            ));
            return;
        }
    };
    if let Some(cluster_id) = cluster_id.filter(|&id| id != own_cluster) {
        findings.push(problem(
            format!(
                "the member at {} is in cluster {cluster_id:x}, this member in cluster {own_cluster:x}",
                probe.url
            ),
            "check the URLs: this data directory and that member belong to different clusters",
        ));
    }
    if skew_micros.abs() > MAX_SKEW_MICROS {
        findings.push(problem(
            format!(
                "the clock of the member at {} is {:+.3} s off this machine's",
                probe.url,
                skew_micros as f64 / 1e6
            ),
            "synchronize the machines' clocks (NTP, chrony): leases and logs depend on them",
        ));
    }
}

#[cfg(test)]
mod tests;
