//! Cluster membership: etcd-compatible member and cluster IDs, the replicated table of members
//! (name, peer and client URLs, learner flag) with the IDs removed for good, and parsing of
//! `--initial-cluster`. The table changes only when a committed conf change or attribute entry is
//! applied; [`Membership::validate_add`] lets a proposer refuse early with the same rules.

use std::collections::{BTreeMap, BTreeSet};

use crate::proto::{etcdserverpb::Member, stetpb};
use crate::types::{ClusterId, MemberId};

/// At most this many learners at once (etcd's `maxLearners`).
pub const MAX_LEARNERS: usize = 1;

/// Why a membership change or a membership input was refused. Messages for client-visible errors
/// are etcd's own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberError {
    /// The ID belongs to a member that was removed; it can never come back.
    #[error("etcdserver: ID removed")]
    IdRemoved,
    /// The ID is already a member.
    #[error("etcdserver: member ID already exist")]
    IdExists,
    /// Another member already uses one of the peer URLs.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// Adding the learner would exceed [`MAX_LEARNERS`].
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// No member with that ID.
    #[error("etcdserver: member not found")]
    IdNotFound,
    /// Promotion of a member that is already a voter.
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    /// A member with ID 0 (raft's "no node") or without peer URLs.
    #[error("etcdserver: given member URLs are invalid")]
    InvalidMember,
    /// A malformed `--initial-cluster` value.
    #[error("invalid --initial-cluster: {0}")]
    InitialCluster(String),
    /// A snapshot's membership cannot be trusted.
    #[error("corrupt membership snapshot: {0}")]
    Corrupt(String),
}

/// A member's ID as etcd derives it: SHA-1 over the sorted peer URLs concatenated, then the cluster
/// token, then (for members added at runtime) the salt in decimal, as etcd appends the Unix time in
/// seconds; the ID is the first 8 bytes of the digest, big-endian. With `salt: None` every member of
/// a new cluster computes the same IDs independently.
pub fn member_id(peer_urls: &[String], cluster_token: &str, salt: Option<u64>) -> MemberId {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut hasher = sha1_smol::Sha1::new();
    for url in urls {
        hasher.update(url.as_bytes());
    }
    hasher.update(cluster_token.as_bytes());
    if let Some(salt) = salt {
        hasher.update(salt.to_string().as_bytes());
    }
    MemberId(first_8_bytes(&hasher.digest().bytes()))
}

/// A cluster's ID as etcd derives it: SHA-1 over the sorted member IDs, 8 bytes big-endian each;
/// the first 8 bytes of the digest, big-endian.
pub fn cluster_id(member_ids: &[MemberId]) -> ClusterId {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut hasher = sha1_smol::Sha1::new();
    for id in ids {
        hasher.update(&id.0.to_be_bytes());
    }
    ClusterId(first_8_bytes(&hasher.digest().bytes()))
}

/// The ID of the cluster a `--force-new-cluster` start makes of `member` alone, after the
/// `previous` cluster's log up to `commit`: SHA-1 over all three, so each forced start (a later
/// one commits more) makes a cluster no member of an earlier one takes for its own. Never
/// `previous`, never 0 (an unknown cluster on the peer handshake).
pub fn forced_cluster_id(previous: ClusterId, member: MemberId, commit: u64) -> ClusterId {
    let mut salt = 0u64;
    loop {
        let mut hasher = sha1_smol::Sha1::new();
        hasher.update(b"stet --force-new-cluster");
        for part in [previous.0, member.0, commit, salt] {
            hasher.update(&part.to_be_bytes());
        }
        let id = first_8_bytes(&hasher.digest().bytes());
        if id != previous.0 && id != 0 {
            return ClusterId(id);
        }
        salt += 1;
    }
}

fn first_8_bytes(digest: &[u8; 20]) -> u64 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(head)
}

/// Parses etcd's `--initial-cluster` value, `name=url,name=url,...`. A name may appear several
/// times to give the member several peer URLs. Returns the members in order of first appearance,
/// each with its URLs in the order given.
pub fn parse_initial_cluster(s: &str) -> Result<Vec<(String, Vec<String>)>, MemberError> {
    let bad = |msg: String| MemberError::InitialCluster(msg);
    if s.trim().is_empty() {
        return Err(bad("empty value".to_string()));
    }
    let mut members: Vec<(String, Vec<String>)> = Vec::new();
    let mut seen_urls = BTreeSet::new();
    for item in s.split(',') {
        let item = item.trim();
        let (name, url) = item
            .split_once('=')
            .ok_or_else(|| bad(format!("item {item:?} is not of the form name=url")))?;
        if name.is_empty() {
            return Err(bad(format!("item {item:?} has an empty name")));
        }
        check_peer_url(url).map_err(|why| bad(format!("member {name:?}: URL {url:?} {why}")))?;
        if !seen_urls.insert(url) {
            return Err(bad(format!("URL {url:?} appears more than once")));
        }
        match members.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => members.push((name.to_string(), vec![url.to_string()])),
        }
    }
    Ok(members)
}

/// The checks etcd's `types.NewURLs` makes: a known scheme, a `host:port` address, no path.
fn check_peer_url(url: &str) -> Result<(), &'static str> {
    let (scheme, rest) = url.split_once("://").ok_or("has no scheme")?;
    if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
        return Err("must use scheme http, https, unix or unixs");
    }
    if rest.contains('/') {
        return Err("must not contain a path");
    }
    if rest.contains(['?', '#']) {
        return Err("must not contain a query or fragment");
    }
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or("does not have the form scheme://host:port")?;
    if host.is_empty() || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("does not have the form scheme://host:port");
    }
    Ok(())
}

/// The replicated membership table of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    cluster_id: ClusterId,
    members: BTreeMap<MemberId, Member>,
    removed: BTreeSet<MemberId>,
}

impl Membership {
    /// An empty table for cluster `cluster_id`.
    pub fn new(cluster_id: ClusterId) -> Self {
        Membership {
            cluster_id,
            members: BTreeMap::new(),
            removed: BTreeSet::new(),
        }
    }

    /// The table of a new cluster from a parsed `--initial-cluster`: IDs from each member's peer
    /// URLs and `cluster_token` (no salt), and the cluster ID from those IDs. All members are
    /// voters without client URLs (they publish their attributes once started).
    pub fn bootstrap(
        initial: &[(String, Vec<String>)],
        cluster_token: &str,
    ) -> Result<Self, MemberError> {
        let members: Vec<Member> = initial
            .iter()
            .map(|(name, urls)| Member {
                id: member_id(urls, cluster_token, None).0,
                name: name.clone(),
                peer_ur_ls: urls.clone(),
                client_ur_ls: Vec::new(),
                is_learner: false,
            })
            .collect();
        let ids: Vec<MemberId> = members.iter().map(|m| MemberId(m.id)).collect();
        let mut table = Membership::new(cluster_id(&ids));
        for member in members {
            table.add(member)?;
        }
        Ok(table)
    }

    /// The cluster's ID.
    pub fn cluster_id(&self) -> ClusterId {
        self.cluster_id
    }

    /// Replaces the cluster ID (a member joining an existing cluster learns it from its peers).
    pub fn set_cluster_id(&mut self, cluster_id: ClusterId) {
        self.cluster_id = cluster_id;
    }

    /// The checks [`Membership::add`] makes, without changing anything: use before proposing.
    pub fn validate_add(&self, member: &Member) -> Result<(), MemberError> {
        let id = MemberId(member.id);
        if member.id == 0 || member.peer_ur_ls.is_empty() {
            return Err(MemberError::InvalidMember);
        }
        if self.removed.contains(&id) {
            return Err(MemberError::IdRemoved);
        }
        if self.members.contains_key(&id) {
            return Err(MemberError::IdExists);
        }
        if self.any_other_uses(id, &member.peer_ur_ls) {
            return Err(MemberError::PeerUrlExists);
        }
        if member.is_learner && self.learners().len() >= MAX_LEARNERS {
            return Err(MemberError::TooManyLearners);
        }
        Ok(())
    }

    /// Adds a member (voter or learner).
    pub fn add(&mut self, member: Member) -> Result<(), MemberError> {
        self.validate_add(&member)?;
        self.members.insert(MemberId(member.id), member);
        Ok(())
    }

    /// Removes a member for good and returns it; its ID can never be added again.
    pub fn remove(&mut self, id: MemberId) -> Result<Member, MemberError> {
        if self.removed.contains(&id) {
            return Err(MemberError::IdRemoved);
        }
        let member = self.members.remove(&id).ok_or(MemberError::IdNotFound)?;
        self.removed.insert(id);
        Ok(member)
    }

    /// Promotes a learner to a voter.
    pub fn promote(&mut self, id: MemberId) -> Result<(), MemberError> {
        let member = self.member_mut(id)?;
        if !member.is_learner {
            return Err(MemberError::NotLearner);
        }
        member.is_learner = false;
        Ok(())
    }

    /// Replaces a member's peer URLs (etcd's MemberUpdate). Its ID does not change.
    pub fn update_peer_urls(&mut self, id: MemberId, urls: Vec<String>) -> Result<(), MemberError> {
        if urls.is_empty() {
            return Err(MemberError::InvalidMember);
        }
        self.member_mut(id)?;
        if self.any_other_uses(id, &urls) {
            return Err(MemberError::PeerUrlExists);
        }
        self.member_mut(id)?.peer_ur_ls = urls;
        Ok(())
    }

    /// Records the name and client URLs a started member published.
    pub fn set_attributes(
        &mut self,
        id: MemberId,
        name: String,
        client_urls: Vec<String>,
    ) -> Result<(), MemberError> {
        let member = self.member_mut(id)?;
        member.name = name;
        member.client_ur_ls = client_urls;
        Ok(())
    }

    /// The member with this ID, if it is one.
    pub fn get(&self, id: MemberId) -> Option<&Member> {
        self.members.get(&id)
    }

    /// Every member, sorted by ID.
    pub fn list(&self) -> Vec<Member> {
        self.members.values().cloned().collect()
    }

    /// Every member, sorted by ID, without copying.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Member> {
        self.members.values()
    }

    /// IDs of the voting members, sorted.
    pub fn voters(&self) -> Vec<MemberId> {
        self.ids_where(|m| !m.is_learner)
    }

    /// IDs of the learners, sorted.
    pub fn learners(&self) -> Vec<MemberId> {
        self.ids_where(|m| m.is_learner)
    }

    /// The IDs removed from this cluster for good, sorted.
    pub fn removed_ids(&self) -> Vec<u64> {
        self.removed.iter().map(|id| id.0).collect()
    }

    /// Whether `id` was removed from this cluster.
    pub fn is_removed(&self, id: MemberId) -> bool {
        self.removed.contains(&id)
    }

    /// Writes members (by ID), removed IDs (sorted) and the cluster ID into a state snapshot.
    pub fn write_to_snapshot(&self, snap: &mut stetpb::StateSnapshot) {
        snap.members = self.list();
        snap.removed = self.removed.iter().map(|id| id.0).collect();
        snap.cluster_id = self.cluster_id.0;
    }

    /// Reads the membership of a state snapshot, rejecting a zero cluster ID, members with ID 0 or
    /// no peer URLs, duplicate or removed member IDs, and peer URLs shared by two members.
    pub fn restore(snap: &stetpb::StateSnapshot) -> Result<Self, MemberError> {
        let corrupt = |msg: String| MemberError::Corrupt(msg);
        if snap.cluster_id == 0 {
            return Err(corrupt("cluster ID is 0".to_string()));
        }
        let mut table = Membership::new(ClusterId(snap.cluster_id));
        table.removed = snap.removed.iter().copied().map(MemberId).collect();
        let mut urls = BTreeSet::new();
        for member in &snap.members {
            let id = MemberId(member.id);
            if member.id == 0 || member.peer_ur_ls.is_empty() {
                return Err(corrupt(format!("member {id} has ID 0 or no peer URLs")));
            }
            if table.removed.contains(&id) {
                return Err(corrupt(format!("member {id} is also listed as removed")));
            }
            for url in &member.peer_ur_ls {
                if !urls.insert(url.as_str()) {
                    return Err(corrupt(format!("peer URL {url:?} used twice")));
                }
            }
            if table.members.insert(id, member.clone()).is_some() {
                return Err(corrupt(format!("member {id} listed twice")));
            }
        }
        Ok(table)
    }

    fn member_mut(&mut self, id: MemberId) -> Result<&mut Member, MemberError> {
        if self.removed.contains(&id) {
            return Err(MemberError::IdRemoved);
        }
        self.members.get_mut(&id).ok_or(MemberError::IdNotFound)
    }

    fn any_other_uses(&self, id: MemberId, urls: &[String]) -> bool {
        self.members
            .iter()
            .filter(|(other, _)| **other != id)
            .any(|(_, m)| m.peer_ur_ls.iter().any(|u| urls.contains(u)))
    }

    fn ids_where(&self, keep: impl Fn(&Member) -> bool) -> Vec<MemberId> {
        self.members
            .iter()
            .filter(|(_, m)| keep(m))
            .map(|(id, _)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn member(id: u64, peer: &str, learner: bool) -> Member {
        Member {
            id,
            name: format!("m{id}"),
            peer_ur_ls: urls(&[peer]),
            client_ur_ls: Vec::new(),
            is_learner: learner,
        }
    }

    fn three_voters() -> Membership {
        let mut t = Membership::new(ClusterId(99));
        for id in 1..=3 {
            t.add(member(id, &format!("http://10.0.0.{id}:2380"), false))
                .unwrap();
        }
        t
    }

    #[test]
    fn default_single_member_ids_match_etcd() {
        // `etcd` with no flags prints member 8e9e05c52164694d in cluster cdf818194e3a8c32.
        let id = member_id(&urls(&["http://localhost:2380"]), "etcd-cluster", None);
        assert_eq!(id, MemberId(0x8e9e05c52164694d));
        assert_eq!(cluster_id(&[id]), ClusterId(0xcdf818194e3a8c32));
    }

    #[test]
    fn member_id_ignores_url_order_but_not_token_or_salt() {
        let a = urls(&["http://a:2380", "http://b:2380"]);
        let b = urls(&["http://b:2380", "http://a:2380"]);
        assert_eq!(member_id(&a, "t", None), member_id(&b, "t", None));
        assert_ne!(member_id(&a, "t", None), member_id(&a, "u", None));
        assert_ne!(member_id(&a, "t", None), member_id(&a, "t", Some(1)));
        assert_ne!(member_id(&a, "t", Some(1)), member_id(&a, "t", Some(2)));
        assert_eq!(member_id(&a, "t", Some(7)), member_id(&b, "t", Some(7)));
    }

    #[test]
    fn a_forced_cluster_is_new_and_each_forced_start_makes_another() {
        let (old, me) = (ClusterId(0xcdf818194e3a8c32), MemberId(0x8e9e05c52164694d));
        let first = forced_cluster_id(old, me, 100);
        assert_ne!(first, old);
        assert_ne!(first.0, 0);
        assert_eq!(first, forced_cluster_id(old, me, 100), "deterministic");
        assert_ne!(first, forced_cluster_id(old, me, 101));
        assert_ne!(first, forced_cluster_id(old, MemberId(7), 100));
        assert_ne!(forced_cluster_id(first, me, 100), first);
    }

    #[test]
    fn cluster_id_ignores_member_order() {
        let ids = [MemberId(3), MemberId(1), MemberId(2)];
        let sorted = [MemberId(1), MemberId(2), MemberId(3)];
        assert_eq!(cluster_id(&ids), cluster_id(&sorted));
        assert_ne!(cluster_id(&ids), cluster_id(&sorted[..2]));
    }

    #[test]
    fn add_rejects_removed_existing_and_duplicate_url_members() {
        let mut t = three_voters();
        assert_eq!(
            t.add(member(1, "http://new:2380", false)),
            Err(MemberError::IdExists)
        );
        assert_eq!(
            t.add(member(4, "http://10.0.0.2:2380", false)),
            Err(MemberError::PeerUrlExists)
        );
        t.remove(MemberId(3)).unwrap();
        assert_eq!(
            t.add(member(3, "http://elsewhere:2380", false)),
            Err(MemberError::IdRemoved)
        );
        assert_eq!(
            t.add(member(0, "http://zero:2380", false)),
            Err(MemberError::InvalidMember)
        );
        // The removed member's URL is free again.
        t.add(member(5, "http://10.0.0.3:2380", false)).unwrap();
    }

    #[test]
    fn at_most_one_learner_at_a_time() {
        let mut t = three_voters();
        t.add(member(4, "http://l1:2380", true)).unwrap();
        assert_eq!(
            t.validate_add(&member(5, "http://l2:2380", true)),
            Err(MemberError::TooManyLearners)
        );
        assert_eq!(
            t.add(member(5, "http://l2:2380", true)),
            Err(MemberError::TooManyLearners)
        );
        t.add(member(6, "http://v:2380", false)).unwrap();
        t.promote(MemberId(4)).unwrap();
        t.add(member(5, "http://l2:2380", true)).unwrap();
        assert_eq!(t.learners(), vec![MemberId(5)]);
    }

    #[test]
    fn validate_add_changes_nothing() {
        let t = three_voters();
        let before = t.clone();
        t.validate_add(&member(4, "http://n:2380", false)).unwrap();
        assert_eq!(t, before);
    }

    #[test]
    fn remove_records_the_id_for_good() {
        let mut t = three_voters();
        assert_eq!(t.remove(MemberId(2)).unwrap().id, 2);
        assert!(t.is_removed(MemberId(2)));
        assert_eq!(t.get(MemberId(2)), None);
        assert_eq!(t.remove(MemberId(2)), Err(MemberError::IdRemoved));
        assert_eq!(t.remove(MemberId(9)), Err(MemberError::IdNotFound));
        assert_eq!(t.voters(), vec![MemberId(1), MemberId(3)]);
    }

    #[test]
    fn promote_only_learners() {
        let mut t = three_voters();
        assert_eq!(t.promote(MemberId(1)), Err(MemberError::NotLearner));
        assert_eq!(t.promote(MemberId(9)), Err(MemberError::IdNotFound));
        t.add(member(4, "http://l:2380", true)).unwrap();
        t.promote(MemberId(4)).unwrap();
        assert_eq!(t.voters().len(), 4);
        assert!(t.learners().is_empty());
    }

    #[test]
    fn update_peer_urls_rejects_urls_of_other_members() {
        let mut t = three_voters();
        assert_eq!(
            t.update_peer_urls(MemberId(1), urls(&["http://10.0.0.2:2380"])),
            Err(MemberError::PeerUrlExists)
        );
        assert_eq!(
            t.update_peer_urls(MemberId(9), urls(&["http://x:2380"])),
            Err(MemberError::IdNotFound)
        );
        // Keeping one's own URL is fine.
        t.update_peer_urls(
            MemberId(1),
            urls(&["http://10.0.0.1:2380", "http://x:2380"]),
        )
        .unwrap();
        assert_eq!(t.get(MemberId(1)).unwrap().peer_ur_ls.len(), 2);
    }

    #[test]
    fn set_attributes_records_name_and_client_urls() {
        let mut t = three_voters();
        t.set_attributes(MemberId(2), "infra1".into(), urls(&["http://c:2379"]))
            .unwrap();
        let m = t.get(MemberId(2)).unwrap();
        assert_eq!((m.name.as_str(), m.client_ur_ls.len()), ("infra1", 1));
        t.remove(MemberId(2)).unwrap();
        assert_eq!(
            t.set_attributes(MemberId(2), "x".into(), vec![]),
            Err(MemberError::IdRemoved)
        );
    }

    #[test]
    fn list_is_sorted_by_id() {
        let mut t = Membership::new(ClusterId(1));
        for id in [30, 10, 20] {
            t.add(member(id, &format!("http://h{id}:1"), false))
                .unwrap();
        }
        let ids: Vec<u64> = t.list().iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![10, 20, 30]);
    }

    #[test]
    fn snapshot_round_trips() {
        let mut t = three_voters();
        t.add(member(7, "http://l:2380", true)).unwrap();
        t.remove(MemberId(2)).unwrap();
        let mut snap = stetpb::StateSnapshot::default();
        t.write_to_snapshot(&mut snap);
        assert_eq!(Membership::restore(&snap).unwrap(), t);
    }

    #[test]
    fn restore_rejects_inconsistent_snapshots() {
        let good = {
            let mut snap = stetpb::StateSnapshot::default();
            three_voters().write_to_snapshot(&mut snap);
            snap
        };
        let mut cases = Vec::new();
        let mut s = good.clone();
        s.cluster_id = 0;
        cases.push(s);
        let mut s = good.clone();
        s.members.push(member(1, "http://other:1", false));
        cases.push(s);
        let mut s = good.clone();
        s.removed.push(2);
        cases.push(s);
        let mut s = good.clone();
        s.members.push(member(8, "http://10.0.0.1:2380", false));
        cases.push(s);
        let mut s = good;
        s.members.push(member(0, "http://z:1", false));
        cases.push(s);
        for snap in cases {
            assert!(matches!(
                Membership::restore(&snap),
                Err(MemberError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn parses_initial_cluster_with_repeated_names() {
        let parsed = parse_initial_cluster(
            "infra0=http://10.0.1.10:2380,infra1=http://10.0.1.11:2380,infra0=https://10.0.2.10:2380",
        )
        .unwrap();
        assert_eq!(
            parsed,
            vec![
                (
                    "infra0".to_string(),
                    urls(&["http://10.0.1.10:2380", "https://10.0.2.10:2380"])
                ),
                ("infra1".to_string(), urls(&["http://10.0.1.11:2380"])),
            ]
        );
    }

    #[test]
    fn rejects_malformed_initial_cluster_items() {
        for bad in [
            "",
            "infra0",
            "=http://a:1",
            "infra0=",
            "infra0=a:1",
            "infra0=ftp://a:1",
            "infra0=http://a",
            "infra0=http://a:1/path",
            "infra0=http://:1",
            "infra0=http://a:x",
            "infra0=http://a:1,infra1=http://a:1",
            "infra0=http://a:1,",
        ] {
            let err = parse_initial_cluster(bad).unwrap_err();
            assert!(
                matches!(err, MemberError::InitialCluster(_)),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn bootstrap_derives_ids_like_etcd() {
        let parsed = parse_initial_cluster("default=http://localhost:2380").unwrap();
        let t = Membership::bootstrap(&parsed, "etcd-cluster").unwrap();
        assert_eq!(t.cluster_id(), ClusterId(0xcdf818194e3a8c32));
        assert_eq!(t.voters(), vec![MemberId(0x8e9e05c52164694d)]);
        assert_eq!(t.get(MemberId(0x8e9e05c52164694d)).unwrap().name, "default");
    }

    proptest! {
        #[test]
        fn member_id_is_independent_of_url_order(
            mut list in proptest::collection::vec("[a-z]{1,6}", 1..5),
            token in "[a-z-]{0,10}",
            salt in proptest::option::of(any::<u64>()),
        ) {
            let a = member_id(&list, &token, salt);
            list.reverse();
            prop_assert_eq!(a, member_id(&list, &token, salt));
        }

        #[test]
        fn restore_never_panics(
            members in proptest::collection::vec(
                (0u64..5, proptest::collection::vec("[a-c]", 0..3), any::<bool>()), 0..5),
            removed in proptest::collection::vec(0u64..5, 0..3),
            cluster in 0u64..3,
        ) {
            let snap = stetpb::StateSnapshot {
                members: members
                    .into_iter()
                    .map(|(id, peer_ur_ls, is_learner)| Member {
                        id, peer_ur_ls, is_learner, ..Default::default()
                    })
                    .collect(),
                removed,
                cluster_id: cluster,
                ..Default::default()
            };
            let _ = Membership::restore(&snap);
        }
    }
}
