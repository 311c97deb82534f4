//! Just-in-time linearization search (Wing & Gong, with Lowe's memoization) over one key.
//!
//! Call and return events sit in a doubly linked list in time order. The operations that may
//! take effect next are the calls before the first return in the list; linearizing one lifts
//! its call and return out of the list. Reaching a return means that operation should already
//! have taken effect, so the search backtracks. A cache of (linearized set, register state)
//! keeps each configuration from being explored twice; sets are cached as 128-bit
//! fingerprints. The stack is explicit: no recursion.
//!
//! Operations with unknown outcomes have a call and no return: they may take effect at any
//! point, or never; the search succeeds once every known operation is linearized.
//!
//! Pruning unknown operations. Call a maximal run of unknown operations in a linearization a
//! block. If some linearization exists, one exists in which (1) every unknown operation changes
//! the state, (2) no unknown operation leaves the same state as it would have without the part
//! of its block before it, and (3) every block is followed by a known operation that is invalid
//! from the state before the block. Proof sketch, rewriting any linearization: drop an unknown
//! operation that changes nothing (1), or the part of a block that a later member overwrites
//! (2), or a block at the very end. If a block is followed by a known operation X valid from
//! the state before the block, X is valid from two states, so either it ends in the same state
//! from both (a put or delete: drop the block) or it is a failed cas that leaves both alone
//! (move the block after X). Each rewrite removes unknown operations or moves some later, so
//! rewriting ends, in a linearization of that form. The search only builds such ones: it keeps
//! the state before the current block as a "shadow", and starts a block only when a known
//! operation that may go next is invalid from the current state (as X must be). Without this,
//! pending unknown operations would be tried at every point and multiply the states by every
//! subset of them. The next steps depend on the shadow, so it is part of the cached
//! configuration.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use super::history::{Candidate, StateId, ABSENT};

const NIL: u32 = u32::MAX;
const HEAD: u32 = 0;

pub(super) struct SearchResult {
    pub verdict: Verdict,
    pub states_explored: u64,
}

pub(super) enum Verdict {
    Linearizable,
    NotLinearizable(Failure),
    GaveUp(String),
}

/// The deepest point the search reached before failing, for the report.
pub(super) struct Failure {
    /// Candidates linearized, in order.
    pub prefix: Vec<usize>,
    /// The state after `prefix`.
    pub state: StateId,
    /// The candidate whose return was reached without it being linearized.
    pub blocked: usize,
}

#[derive(Clone, Copy)]
enum Event {
    Head,
    Call { cand: u32, ret: u32 },
    Return { cand: u32 },
}

/// The event list, with removal and re-insertion in LIFO order ("dancing links").
struct EventList {
    events: Vec<Event>,
    next: Vec<u32>,
    prev: Vec<u32>,
}

impl EventList {
    fn new(cands: &[Candidate]) -> Self {
        // (time, calls before returns at equal times so they count as concurrent, cand)
        let mut order: Vec<(u64, u8, u32)> = Vec::with_capacity(cands.len() * 2);
        for (i, c) in cands.iter().enumerate() {
            let i = u32::try_from(i).expect("fewer than 2^31 operations per key");
            order.push((c.invoke_us, 0, i));
            if let Some(complete_us) = c.complete_us {
                order.push((complete_us, 1, i));
            }
        }
        order.sort_unstable();
        let mut ret_node = vec![NIL; cands.len()];
        for (pos, &(_, kind, cand)) in order.iter().enumerate() {
            if kind == 1 {
                ret_node[cand as usize] = node_id(pos + 1);
            }
        }
        let mut events = Vec::with_capacity(order.len() + 1);
        events.push(Event::Head);
        for &(_, kind, cand) in &order {
            events.push(match kind {
                0 => Event::Call {
                    cand,
                    ret: ret_node[cand as usize],
                },
                _ => Event::Return { cand },
            });
        }
        let n = events.len();
        let next = (0..n)
            .map(|i| if i + 1 < n { node_id(i + 1) } else { NIL })
            .collect();
        let prev = (0..n)
            .map(|i| if i == 0 { NIL } else { node_id(i - 1) })
            .collect();
        EventList { events, next, prev }
    }

    fn remove(&mut self, node: u32) {
        let (p, n) = (self.prev[node as usize], self.next[node as usize]);
        self.next[p as usize] = n;
        if n != NIL {
            self.prev[n as usize] = p;
        }
    }

    fn reinsert(&mut self, node: u32) {
        let (p, n) = (self.prev[node as usize], self.next[node as usize]);
        self.next[p as usize] = node;
        if n != NIL {
            self.prev[n as usize] = node;
        }
    }

    fn lift(&mut self, call: u32, ret: u32) {
        self.remove(call);
        if ret != NIL {
            self.remove(ret);
        }
    }

    fn unlift(&mut self, call: u32, ret: u32) {
        if ret != NIL {
            self.reinsert(ret);
        }
        self.reinsert(call);
    }
}

fn node_id(i: usize) -> u32 {
    u32::try_from(i).expect("fewer than 2^32 events per key")
}

/// SplitMix64 finalizer: a well-mixed 64-bit value per input.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Keys of the cache map are already hashes; pass them through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("only u64 keys are hashed");
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// No shadow state: no unknown operation just before.
const NO_SHADOW: StateId = StateId::MAX;

/// A 128-bit Zobrist fingerprint of a set of candidates: the XOR of a pseudo-random 128-bit
/// value per member, updated in O(1) as members come and go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct SetPrint(u64, u64);

impl SetPrint {
    fn of(cand: usize) -> SetPrint {
        let i = cand as u64;
        SetPrint(mix(i), mix(i ^ 0x5851_f42d_4c95_7f2d))
    }

    fn toggle(&mut self, member: SetPrint) {
        self.0 ^= member.0;
        self.1 ^= member.1;
    }
}

/// A visited configuration: (linearized set, state, shadow state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Config {
    set: SetPrint,
    state: StateId,
    shadow: StateId,
}

impl Hash for Config {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        hasher.write_u64(self.set.0 ^ mix(u64::from(self.state) << 32 | u64::from(self.shadow)));
    }
}

/// Visited configurations, with sets stored as fingerprints ("hash compaction"), which keeps
/// an entry at 24 bytes whatever the number of operations. Two distinct sets share a
/// fingerprint with probability 2^-128, for N states about N^2 * 2^-129 overall. A collision
/// could only cut a path that should be explored, so at worst it reports a violation that is
/// not there; it can never accept a history that is not linearizable.
#[derive(Default)]
struct Cache {
    seen: HashSet<Config, BuildHasherDefault<PassThrough>>,
}

impl Cache {
    /// Inserts the configuration; false if it (or one that dominates it) was already there.
    fn insert(&mut self, config: Config) -> bool {
        // Without a shadow, nothing is cut: a superset of the next steps.
        let dominated = config.shadow != NO_SHADOW
            && self.seen.contains(&Config {
                shadow: NO_SHADOW,
                ..config
            });
        !dominated && self.seen.insert(config)
    }
}

struct Frame {
    call: u32,
    ret: u32,
    cand: u32,
    prev_state: StateId,
    prev_shadow: StateId,
}

/// The (state, shadow) after linearizing `c`, or `None` if it is invalid from `state` or cut
/// as making no difference (see the module comment).
fn step(c: &Candidate, state: StateId, shadow: StateId) -> Option<(StateId, StateId)> {
    let next_state = c.step.apply(state)?;
    let unknown = c.complete_us.is_none();
    if unknown && next_state == state {
        return None;
    }
    if shadow == NO_SHADOW {
        return Some((next_state, if unknown { state } else { NO_SHADOW }));
    }
    match c.step.apply(shadow) {
        // Valid without the block of unknown operations before it: the block can be dropped
        // or moved after this one.
        Some(_) if !unknown => None,
        // Overwrites the block of unknown operations before it.
        Some(without_block) if without_block == next_state => None,
        _ => Some((next_state, if unknown { shadow } else { NO_SHADOW })),
    }
}

/// Whether a known operation that may take effect next is invalid from `state`: only then may
/// a block of unknown operations start.
fn window_has_blocked(list: &EventList, cands: &[Candidate], state: StateId) -> bool {
    let mut node = list.next[HEAD as usize];
    while node != NIL {
        match list.events[node as usize] {
            Event::Call { cand, .. } => {
                let c = &cands[cand as usize];
                if c.complete_us.is_some() && c.step.apply(state).is_none() {
                    return true;
                }
            }
            Event::Return { .. } | Event::Head => return false,
        }
        node = list.next[node as usize];
    }
    false
}

/// Searches for a linearization of `cands`, exploring at most `max_states` configurations.
pub(super) fn search(cands: &[Candidate], max_states: u64) -> SearchResult {
    let mut list = EventList::new(cands);
    let prints: Vec<SetPrint> = (0..cands.len()).map(SetPrint::of).collect();
    let mut cache = Cache::default();
    let mut set = SetPrint::default();
    let mut state = ABSENT;
    let mut shadow = NO_SHADOW;
    let mut remaining_known = cands.iter().filter(|c| c.complete_us.is_some()).count();
    let mut stack: Vec<Frame> = Vec::new();
    let mut failure: Option<Failure> = None;
    let mut states_explored = 0u64;
    let mut node = list.next[HEAD as usize];
    // Memoized `window_has_blocked` for the current configuration.
    let mut window_blocked: Option<bool> = None;
    let result = |verdict, states_explored| SearchResult {
        verdict,
        states_explored,
    };

    loop {
        if remaining_known == 0 {
            return result(Verdict::Linearizable, states_explored);
        }
        assert_ne!(
            node, NIL,
            "a known operation's return is always still in the list"
        );
        match list.events[node as usize] {
            Event::Head => unreachable!("the head is never after another node"),
            Event::Call { cand, ret } => {
                let c = &cands[cand as usize];
                let starts_block = c.complete_us.is_none() && shadow == NO_SHADOW;
                if starts_block && window_blocked.is_none() {
                    window_blocked = Some(window_has_blocked(&list, cands, state));
                }
                let next = match starts_block && window_blocked == Some(false) {
                    true => None,
                    false => step(c, state, shadow),
                };
                if let Some((next_state, next_shadow)) = next {
                    set.toggle(prints[cand as usize]);
                    let config = Config {
                        set,
                        state: next_state,
                        shadow: next_shadow,
                    };
                    if cache.insert(config) {
                        states_explored += 1;
                        if states_explored > max_states {
                            let why = format!("explored-state bound of {max_states} reached");
                            return result(Verdict::GaveUp(why), states_explored);
                        }
                        stack.push(Frame {
                            call: node,
                            ret,
                            cand,
                            prev_state: state,
                            prev_shadow: shadow,
                        });
                        state = next_state;
                        shadow = next_shadow;
                        list.lift(node, ret);
                        if c.complete_us.is_some() {
                            remaining_known -= 1;
                        }
                        node = list.next[HEAD as usize];
                        window_blocked = None;
                        continue;
                    }
                    set.toggle(prints[cand as usize]);
                }
                node = list.next[node as usize];
            }
            Event::Return { cand } => {
                if failure
                    .as_ref()
                    .is_none_or(|f| stack.len() > f.prefix.len())
                {
                    failure = Some(Failure {
                        prefix: stack.iter().map(|f| f.cand as usize).collect(),
                        state,
                        blocked: cand as usize,
                    });
                }
                let Some(frame) = stack.pop() else {
                    let failure = failure.expect("recorded just above");
                    return result(Verdict::NotLinearizable(failure), states_explored);
                };
                let c = frame.cand as usize;
                set.toggle(prints[c]);
                state = frame.prev_state;
                shadow = frame.prev_shadow;
                list.unlift(frame.call, frame.ret);
                if cands[c].complete_us.is_some() {
                    remaining_known += 1;
                }
                node = list.next[frame.call as usize];
                window_blocked = None;
            }
        }
    }
}
