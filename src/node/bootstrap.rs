//! Starting a node: bootstrapping a new cluster, joining an existing one, or restarting from what
//! the driver read back from disk (snapshot plus WAL).

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Snapshot};

use super::{Node, Output, Persist};
use crate::engine::Engine;
use crate::member::Membership;
use crate::proto::etcdserverpb as pb;
use crate::proto::stetpb;
use crate::raftlog::LogStore;
use crate::state::{RestoreError, StateMachine};
use crate::time::Instant;

/// What a member had on disk: its last snapshot, the hard state and the entries after the snapshot.
#[derive(Debug, Clone, Default)]
pub struct DurableState {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
}

impl DurableState {
    /// Whether the member never had a write acknowledged (it crashed before its first write was
    /// synced): no snapshot and a hard state that never learned a term. Entries may be there — a
    /// torn first write keeps a prefix of them — but they were never acknowledged: the first
    /// write of every member (its bootstrap entries, or a joining member's first entries from the
    /// leader) carries its first hard state after them, so a lost hard state means a lost write.
    /// Starting from such entries would be wrong: a torn bootstrap leaves a prefix of the initial
    /// configuration, in which a member may find itself alone and elect itself.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.hard_state == HardState::default()
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("raft refused to start: {0}")]
    Raft(#[from] raft::Error),
    #[error(transparent)]
    EngineFile(#[from] crate::engine::EngineError),
    #[error("cannot read the applied state (index {index}) from the storage engine: {source}")]
    Engine {
        index: u64,
        #[source]
        source: RestoreError,
    },
    #[error("the storage engine holds the applied state only up to index {engine}, but the snapshot at index {snapshot} (after which the WAL starts) carries none: the engine file lost what it had made durable, or belongs to another data directory")]
    EngineBehind { engine: u64, snapshot: u64 },
    #[error("cannot restore the snapshot at index {index}: {source}")]
    Snapshot {
        index: u64,
        #[source]
        source: RestoreError,
    },
    #[error("the log read from disk is not contiguous: {0}")]
    Log(#[from] raft::StorageError),
    #[error("the hard state says entries up to {commit} are committed, but the WAL and snapshot hold entries only up to {last_index}: the data directory lost committed entries")]
    MissingCommitted { commit: u64, last_index: u64 },
    #[error("the data directory holds a restored backup for cluster {cluster_id:x} at applied index {applied}, not a new state for cluster {expected:x}: restore the backup again with the --initial-cluster and --initial-cluster-token this member starts with")]
    NotARestoredState {
        applied: u64,
        cluster_id: u64,
        expected: u64,
    },
    #[error("--initial-cluster does not include this member ({0})")]
    NotInInitialCluster(crate::types::MemberId),
    #[error("--force-new-cluster: member {0} is not in the membership its data dir holds (it was removed, or never joined)")]
    ForceNewClusterNotMember(crate::types::MemberId),
    #[error("--force-new-cluster: member {0} is a learner; only a voter can form a cluster alone")]
    ForceNewClusterLearner(crate::types::MemberId),
}

impl Node {
    /// Starts the first member set of a new cluster. Every initial member writes the same first
    /// entries: one conf change per member (term 1), committed from the start, so the membership
    /// (names, URLs) is replicated state like every later change. The first output asks the driver
    /// to persist them.
    pub fn bootstrap(
        config: super::NodeConfig,
        initial_members: &[pb::Member],
        engine: Engine,
        now: Instant,
        logger: &slog::Logger,
    ) -> Result<Node, StartError> {
        let state =
            StateMachine::with_engine(engine, config.cluster_id, config.min_lease_ttl_seconds())?;
        Node::bootstrap_with(config, initial_members, state, now, logger)
    }

    /// Like [`bootstrap`](Self::bootstrap), on the state a restored backup left in `engine`
    /// (`Engine::start_new_cluster`: applied index 0, no members, this cluster's ID): its keys,
    /// revisions and leases are the new cluster's from the start, and the members' entries apply
    /// on top of them.
    pub fn bootstrap_restored(
        config: super::NodeConfig,
        initial_members: &[pb::Member],
        engine: Engine,
        now: Instant,
        logger: &slog::Logger,
    ) -> Result<Node, StartError> {
        let (state, applied, _) = StateMachine::from_engine(engine, config.min_lease_ttl_seconds())
            .map_err(|source| StartError::Engine { index: 0, source })?;
        let found = state.members().cluster_id();
        if applied.index != 0 || found != config.cluster_id || !state.members().list().is_empty() {
            return Err(StartError::NotARestoredState {
                applied: applied.index,
                cluster_id: found.0,
                expected: config.cluster_id.0,
            });
        }
        Node::bootstrap_with(config, initial_members, state, now, logger)
    }

    fn bootstrap_with(
        config: super::NodeConfig,
        initial_members: &[pb::Member],
        state: StateMachine,
        now: Instant,
        logger: &slog::Logger,
    ) -> Result<Node, StartError> {
        if !initial_members.iter().any(|m| m.id == config.id.0) {
            return Err(StartError::NotInInitialCluster(config.id));
        }
        let mut members = initial_members.to_vec();
        members.sort_by_key(|m| m.id);
        let conf_state = ConfState {
            voters: members.iter().map(|m| m.id).collect(),
            ..Default::default()
        };
        let entries: Vec<Entry> = members
            .iter()
            .zip(1u64..)
            .map(|(member, index)| bootstrap_entry(member, index))
            .collect();
        let hard_state = HardState {
            term: 1,
            vote: 0,
            commit: entries.len() as u64,
            ..Default::default()
        };
        let mut store = LogStore::new(conf_state);
        store.append(&entries)?;
        store.set_hard_state(hard_state.clone());
        let mut node = Node::from_parts(config, store, state, 0, now, logger)?;
        node.outputs.push_back(Output::Persist(Persist {
            ready_number: 0,
            hard_state: Some(hard_state),
            entries,
            snapshot: None,
            must_sync: true,
        }));
        node.process_ready();
        Ok(node)
    }

    /// Starts a member added to a running cluster: it knows nothing until the leader sends it the
    /// log (or a snapshot).
    pub fn join(
        config: super::NodeConfig,
        engine: Engine,
        now: Instant,
        logger: &slog::Logger,
    ) -> Result<Node, StartError> {
        let store = LogStore::new(ConfState::default());
        let state =
            StateMachine::with_engine(engine, config.cluster_id, config.min_lease_ttl_seconds())?;
        Ok(Node::from_parts(config, store, state, 0, now, logger)?)
    }

    /// Restarts a member from its disk: the state machine from the snapshot, raft's log from the
    /// snapshot plus the WAL entries after it; raft then re-applies the committed entries.
    pub fn restart(
        config: super::NodeConfig,
        durable: DurableState,
        engine: Engine,
        now: Instant,
        logger: &slog::Logger,
    ) -> Result<Node, StartError> {
        let loaded = load(&config, durable, engine)?;
        let mut node = loaded.into_node(config, now, logger)?;
        node.stop_if_removed();
        node.process_ready();
        node.campaign_if_only_voter();
        Ok(node)
    }

    /// A member that is its cluster's only voter campaigns at once on restart instead of waiting
    /// out an election timeout (etcd advances a single member's election ticks likewise): no
    /// other member could lead, so nothing is gained by waiting.
    fn campaign_if_only_voter(&mut self) {
        let me = crate::types::MemberId(self.config.id.0);
        if self.failed
            || self.role == raft::StateRole::Leader
            || self.state.members().voters() != [me]
        {
            return;
        }
        // Errors mean raft would not campaign yet (e.g. unapplied conf changes); it then
        // elects itself after an election timeout like any single voter.
        let _ = self.raw.campaign();
        self.process_ready();
    }

    /// Restarts a member with `--force-new-cluster`, as etcd does: keep all its data, but make it
    /// the only member. Entries after the durable commit index are discarded (they were never
    /// known to be committed); then one committed `RemoveNode` per other member of the membership
    /// as of that commit is appended with the current term, so raft's configuration and the
    /// membership table both drop them when they are applied. The first output asks the driver to
    /// persist the new entries and hard state (the rewritten tail replaces the old one in the
    /// WAL); the node then campaigns at once and leads a one-voter cluster.
    ///
    /// Refused if the member was removed, is unknown to its own membership, or is a learner
    /// (a learner alone could never elect a leader).
    pub fn restart_forced(
        config: super::NodeConfig,
        durable: DurableState,
        engine: Engine,
        now: Instant,
        logger: &slog::Logger,
    ) -> Result<Node, StartError> {
        let mut loaded = load(&config, durable, engine)?;
        let mut hard_state = loaded.store.hard_state().clone();
        let commit = hard_state.commit;
        let kept: Vec<Entry> = loaded
            .store
            .held_entries()
            .iter()
            .filter(|e| e.index <= commit)
            .cloned()
            .collect();
        let unapplied: Vec<Entry> = kept
            .iter()
            .filter(|e| e.index > loaded.applied)
            .cloned()
            .collect();
        let members = membership_at_commit(loaded.state.members(), &unapplied);
        let me = crate::types::MemberId(config.id.0);
        match members.get(me) {
            Some(member) if !member.is_learner => {}
            Some(_) => return Err(StartError::ForceNewClusterLearner(me)),
            None => return Err(StartError::ForceNewClusterNotMember(me)),
        }
        let removals: Vec<Entry> = members
            .list()
            .iter()
            .filter(|m| m.id != me.0)
            .zip(commit + 1..)
            .map(|(member, index)| removal_entry(member, index, hard_state.term))
            .collect();
        hard_state.commit = commit + removals.len() as u64;
        let conf_state = loaded.store.conf_state().clone();
        let mut store = LogStore::new(conf_state.clone());
        let snapshot = loaded.store.latest_snapshot().clone();
        if snapshot.get_metadata().index > 0 {
            store.apply_snapshot(snapshot);
            // The configuration as of the applied index (the engine's may be newer).
            store.set_conf_state(conf_state);
        }
        store.append(&kept)?;
        store.append(&removals)?;
        store.set_hard_state(hard_state.clone());
        loaded.store = store;
        let mut node = loaded.into_node(config, now, logger)?;
        node.outputs.push_back(Output::Persist(Persist {
            ready_number: 0,
            hard_state: Some(hard_state),
            entries: removals,
            snapshot: None,
            must_sync: true,
        }));
        node.process_ready();
        node.campaign_if_only_voter();
        Ok(node)
    }
}

/// What a restart reads back: raft's log store, the state machine at the snapshot, the index it
/// is applied to, and the WAL entries after the snapshot.
struct Loaded {
    store: LogStore,
    state: StateMachine,
    applied: u64,
    /// The index of the snapshot the log starts after.
    snapshot_index: u64,
    /// A snapshot marking the engine's state, to be persisted at start: the engine is ahead of
    /// the log (a state from the leader was installed, and the member stopped before its
    /// snapshot record reached the WAL).
    engine_snapshot: Option<Snapshot>,
}

impl Loaded {
    /// The node over what was loaded; its last snapshot is at the applied index.
    fn into_node(
        self,
        config: super::NodeConfig,
        now: Instant,
        logger: &slog::Logger,
    ) -> Result<Node, StartError> {
        let hard_state = self.store.hard_state().clone();
        let mut state = self.state;
        let stored_cluster = state.members().cluster_id();
        if state.adopt_cluster_id(config.cluster_id) {
            // The WAL names the member's cluster; the engine catches up at its next commit (a
            // `--force-new-cluster` start that stopped before it).
            slog::info!(logger, "the applied state takes the WAL's cluster ID";
                "stored" => %format!("{:x}", stored_cluster.0),
                "cluster_id" => %format!("{:x}", config.cluster_id.0));
        }
        let mut node = Node::from_parts(config, self.store, state, self.applied, now, logger)?;
        node.snapshot_index = self.snapshot_index.max(self.applied);
        if let Some(snapshot) = self.engine_snapshot {
            node.outputs.push_back(Output::Persist(Persist {
                ready_number: 0,
                hard_state: Some(hard_state),
                entries: Vec::new(),
                snapshot: Some(snapshot),
                must_sync: true,
            }));
        }
        Ok(node)
    }
}

/// Reads back what a restart starts from. The applied state comes from the engine when it holds
/// the state at or after the last snapshot (the engine is made durable before the member takes a
/// snapshot, after which the WAL may drop entries), else from the snapshot, if it carries the
/// state (one the leader sent, installed after the engine's last durable commit). The member's
/// own snapshots carry no state: an engine older than one of them lost what it had made durable.
fn load(
    config: &super::NodeConfig,
    durable: DurableState,
    engine: Engine,
) -> Result<Loaded, StartError> {
    let min_ttl = config.min_lease_ttl_seconds();
    let mut store = LogStore::new(ConfState::default());
    let snapshot_index = durable
        .snapshot
        .as_ref()
        .map_or(0, |s| s.get_metadata().index);
    let engine_applied = engine.applied().index;
    let mut engine_term = 0;
    let (state, applied, engine_conf_state) = if engine_applied > 0
        && engine_applied >= snapshot_index
    {
        let (state, applied, conf_state) =
            StateMachine::from_engine(engine, min_ttl).map_err(|source| StartError::Engine {
                index: engine_applied,
                source,
            })?;
        engine_term = applied.term;
        (state, applied.index, conf_state)
    } else {
        let mut state = StateMachine::with_engine(engine, config.cluster_id, min_ttl)?;
        let data = durable
            .snapshot
            .as_ref()
            .map(|s| &s.data[..])
            .unwrap_or_default();
        if snapshot_index > 0 && data.is_empty() {
            return Err(StartError::EngineBehind {
                engine: engine_applied,
                snapshot: snapshot_index,
            });
        }
        if snapshot_index > 0 {
            state.restore(data).map_err(|source| StartError::Snapshot {
                index: snapshot_index,
                source,
            })?;
        }
        (state, snapshot_index, None)
    };
    if let Some(snapshot) = durable.snapshot {
        store.apply_snapshot(snapshot);
    }
    if let Some(bytes) = engine_conf_state {
        let conf_state =
            ConfState::parse_from_bytes(&bytes).map_err(|error| StartError::Engine {
                index: applied,
                source: RestoreError::Engine(crate::engine::EngineError::Damaged {
                    path: state.kv.engine().path().to_path_buf(),
                    what: format!("raft's configuration does not decode: {error}"),
                }),
            })?;
        store.set_conf_state(conf_state);
    }
    let conf_state = store.conf_state().clone();
    // The log holds every entry after the snapshot; the state already holds those up to
    // `applied`, which raft will not hand out again.
    let logged: Vec<Entry> = durable
        .entries
        .into_iter()
        .filter(|e| e.index > snapshot_index)
        .collect();
    store.append(&logged)?;
    let engine_snapshot = mark_engine_ahead_of_log(&mut store, applied, engine_term)?;
    let snapshot_index = match &engine_snapshot {
        Some(snapshot) => snapshot.get_metadata().index,
        None => snapshot_index,
    };
    let mut hard_state = durable.hard_state;
    hard_state.commit = hard_state.commit.max(applied);
    hard_state.term = hard_state.term.max(store.hard_state().term);
    if engine_term > hard_state.term {
        // The member never voted in a term it had not made durable (votes wait for the WAL).
        hard_state.term = engine_term;
        hard_state.vote = 0;
    }
    let last_index = raft::Storage::last_index(&store)?;
    if hard_state.commit > last_index {
        return Err(StartError::MissingCommitted {
            commit: hard_state.commit,
            last_index,
        });
    }
    store.set_hard_state(hard_state);
    // A member bootstrapped without a snapshot learns its first configuration from the
    // conf-change entries at the head of its log.
    if applied == 0 && conf_state.voters.is_empty() {
        store.set_conf_state(initial_conf_state(&logged));
    }
    Ok(Loaded {
        store,
        state,
        applied,
        snapshot_index,
        engine_snapshot,
    })
}

/// When the engine holds a state past the end of the log (a leader's state installed durably,
/// then a crash before its snapshot record reached the WAL), the log restarts at the engine's
/// index and term: a snapshot with no state (the engine holds it), to be persisted at start.
/// The entries the log held end before it and are dropped, as installing the snapshot did.
fn mark_engine_ahead_of_log(
    store: &mut LogStore,
    applied: u64,
    term: u64,
) -> Result<Option<Snapshot>, StartError> {
    if applied <= raft::Storage::last_index(store)? {
        return Ok(None);
    }
    let mut snapshot = Snapshot::default();
    let meta = snapshot.mut_metadata();
    meta.index = applied;
    meta.term = term;
    meta.set_conf_state(store.conf_state().clone());
    store.apply_snapshot(snapshot.clone());
    Ok(Some(snapshot))
}

/// The membership after applying the conf changes among `entries` (the committed entries after
/// the snapshot) to the snapshot's membership, by the same rules the node applies them with.
fn membership_at_commit(snapshot_members: &Membership, entries: &[Entry]) -> Membership {
    let mut members = snapshot_members.clone();
    for entry in entries {
        if entry.get_entry_type() != EntryType::EntryConfChange {
            continue;
        }
        let Ok(change) = ConfChange::parse_from_bytes(&entry.data) else {
            continue;
        };
        let context = stetpb::ConfChangeContext::decode(&change.context[..]).unwrap_or_default();
        // A refused change is refused identically when the node re-applies it.
        let mut next = members.clone();
        if super::apply::apply_membership(&mut next, &change, &context).is_ok() {
            members = next;
        }
    }
    members
}

/// A committed conf change removing `member`, as force-new-cluster appends it.
fn removal_entry(member: &pb::Member, index: u64, term: u64) -> Entry {
    conf_change_entry(ConfChangeType::RemoveNode, member, index, term)
}

/// A conf-change entry written by the node itself (bootstrap, force-new-cluster), carrying the
/// member in its context like a client's change does.
fn conf_change_entry(
    change_type: ConfChangeType,
    member: &pb::Member,
    index: u64,
    term: u64,
) -> Entry {
    let context = stetpb::ConfChangeContext {
        member: Some(member.clone()),
        ..Default::default()
    };
    let mut change = ConfChange::default();
    change.set_change_type(change_type);
    change.node_id = member.id;
    change.context = context.encode_to_vec().into();
    let mut entry = Entry::default();
    entry.set_entry_type(EntryType::EntryConfChange);
    entry.term = term;
    entry.index = index;
    entry.data = change.write_to_bytes().unwrap_or_default().into();
    entry
}

/// The configuration a log starts with: the voters and learners added by its first conf changes
/// (a bootstrapped log begins with one AddNode per initial member).
fn initial_conf_state(entries: &[Entry]) -> ConfState {
    let mut conf_state = ConfState::default();
    for entry in entries {
        if entry.get_entry_type() != EntryType::EntryConfChange || entry.term > 1 {
            break;
        }
        let Ok(change) = ConfChange::parse_from_bytes(&entry.data) else {
            break;
        };
        if change.get_change_type() != ConfChangeType::AddNode {
            break;
        }
        conf_state.voters.push(change.node_id);
    }
    conf_state
}

fn bootstrap_entry(member: &pb::Member, index: u64) -> Entry {
    conf_change_entry(ConfChangeType::AddNode, member, index, 1)
}
