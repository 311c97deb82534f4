//! `stetutl doctor`, and what `stet` prints when it refuses to start: the data directory and the
//! settings a member would start with (and, when they answer, the live members it knows) examined
//! for etcd's FAQ failures, each explained with its fix (`checks`, decided without IO, from facts
//! `gather` reads without changing anything).

pub mod checks;
mod gather;

pub use checks::{Finding, Severity};
pub use gather::Scratch;

use super::config::{ClusterState, ServerConfig};
use crate::storage::StorageLayout;
use crate::wal::Metadata;

/// How far the doctor looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Everything: the membership a restart would load (from a scratch copy of the data
    /// directory, as large as it is) and the live members it names.
    Full,
    /// The same without asking the live members.
    Offline,
    /// Only what reading the WAL and the small files tells (what `stet` runs when it refuses to
    /// start: no copy of a large data directory, no waiting on peers).
    Quick,
}

/// Every diagnosis for a member starting with `config`, looking as far as `depth`.
pub fn examine(config: &ServerConfig, depth: Depth) -> Vec<Finding> {
    let layout = StorageLayout::new(&config.data_dir, config.wal_dir.as_deref());
    let flags = checks::Flags {
        name: config.name.clone(),
        data_dir: config.data_dir.display().to_string(),
        identity: Metadata {
            member_id: config.member_id.0,
            cluster_id: config.cluster_id.0,
        },
        new_cluster: config.cluster_state == ClusterState::New,
        force_new_cluster: config.force_new_cluster,
        advertise_peer_urls: config.peer_urls.clone(),
    };
    let data = gather::data(&layout, depth != Depth::Quick);
    let mut urls: Vec<String> = Vec::new();
    if depth == Depth::Full {
        if let Some(Ok((members, _))) = data.as_ref().map(|d| &d.membership) {
            for member in members {
                urls.extend(member.client_urls.iter().cloned());
            }
        }
        urls.sort();
        urls.dedup();
    }
    let probes: Vec<checks::Probe> = urls.iter().map(|url| gather::probe(url)).collect();
    checks::diagnose(&flags, data.as_ref(), &probes)
}

/// The findings as lines for a person: problems first, each with its fix.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for severity in [Severity::Problem, Severity::Note] {
        for finding in findings.iter().filter(|f| f.severity == severity) {
            let label = match severity {
                Severity::Problem => "PROBLEM",
                Severity::Note => "note",
            };
            out.push_str(&format!("{label}: {}\n", finding.what));
            if !finding.fix.is_empty() {
                out.push_str(&format!("  fix: {}\n", finding.fix));
            }
        }
    }
    out
}
