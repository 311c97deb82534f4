//! Identifier newtypes that must never be mixed up: members, clusters, revisions, auth revisions,
//! raft terms and log indexes.

use std::fmt;

/// A member's ID: derived from its peer URLs and the cluster token, and equal to its raft node ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MemberId(pub u64);

/// A cluster's ID: derived from the IDs of its initial members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ClusterId(pub u64);

/// An MVCC store revision (etcd's main revision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision(pub i64);

/// The auth store's revision: counts its changes (users, roles, permissions, disabling), apart
/// from the MVCC store's revision. Tokens carry the one they were issued at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AuthRevision(pub u64);

/// A raft term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Term(pub u64);

/// A raft log index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogIndex(pub u64);

macro_rules! hex_display {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:x}", self.0)
            }
        }
    )*};
}
hex_display!(MemberId, ClusterId);

macro_rules! decimal_display {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    )*};
}
decimal_display!(Revision, AuthRevision, Term, LogIndex);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_and_cluster_ids_print_in_hex_like_etcd() {
        assert_eq!(MemberId(0x8e9e05c52164694d).to_string(), "8e9e05c52164694d");
        assert_eq!(ClusterId(255).to_string(), "ff");
        assert_eq!(Revision(42).to_string(), "42");
    }
}
