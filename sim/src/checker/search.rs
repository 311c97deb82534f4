//! Just-in-time linearization search (Wing & Gong, with Lowe's memoization) over one key.
//!
//! Call and return events sit in a doubly linked list in time order. The operations that may
//! take effect next are the calls before the first return in the list; linearizing one lifts
//! its call and return out of the list. Reaching a return means that operation should already
//! have taken effect, so the search backtracks. A cache of (linearized set, register state)
//! keeps each configuration from being explored twice. The stack is explicit: no recursion.
//!
//! Operations with unknown outcomes have a call and no return: they may take effect at any
//! point, or never; the search succeeds once every known operation is linearized.
//!
//! Pruning: any linearization stays valid if an operation with unknown outcome is dropped
//! from it (it may never take effect) as long as the states after it do not change. So the
//! search never linearizes an unknown operation that leaves the state as it was (a cas whose
//! expected value does not match, say), nor an unknown blind write (put, or delete with unknown
//! outcome) immediately followed by another blind write, which overwrites it. Without this, a
//! handful of pending unknown operations multiply the states by every subset of them. Because
//! the second rule depends on the previous step, "previous step was an unknown blind write" is
//! part of the cached configuration.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::history::{Candidate, StateId, ABSENT};

const NIL: u32 = u32::MAX;
const HEAD: u32 = 0;

/// Give up once a key's cache holds this many bitset words (8 bytes each), whatever the
/// state bound: 2^27 words is 1 GiB.
const MAX_CACHE_WORDS: usize = 1 << 27;

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

/// Set of visited configurations: (linearized set, state, previous step was an unknown blind
/// write). Bitsets live in one flat arena; the map holds the first entry per hash and
/// collisions chain through `chain`.
struct Cache {
    words: usize,
    heads: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    chain: Vec<u32>,
    tags: Vec<(StateId, bool)>,
    bits: Vec<u64>,
}

impl Cache {
    fn new(words: usize) -> Self {
        Cache {
            words,
            heads: HashMap::default(),
            chain: Vec::new(),
            tags: Vec::new(),
            bits: Vec::new(),
        }
    }

    fn hash(set_hash: u64, state: StateId, after_blind: bool) -> u64 {
        set_hash ^ mix(u64::from(state) << 1 | u64::from(after_blind))
    }

    fn contains(&self, set: &[u64], set_hash: u64, state: StateId, after_blind: bool) -> bool {
        let mut at = match self.heads.get(&Self::hash(set_hash, state, after_blind)) {
            Some(&at) => at,
            None => return false,
        };
        while at != NIL {
            let i = at as usize;
            if self.tags[i] == (state, after_blind)
                && self.bits[i * self.words..(i + 1) * self.words] == *set
            {
                return true;
            }
            at = self.chain[i];
        }
        false
    }

    /// Inserts the configuration; false if it (or one that dominates it) was already there.
    fn insert(&mut self, set: &[u64], set_hash: u64, state: StateId, after_blind: bool) -> bool {
        // Not having just made an unknown blind write allows a superset of next steps.
        if self.contains(set, set_hash, state, after_blind)
            || (after_blind && self.contains(set, set_hash, state, false))
        {
            return false;
        }
        let id = u32::try_from(self.tags.len()).expect("fewer than 2^32 cached states");
        let head = self
            .heads
            .entry(Self::hash(set_hash, state, after_blind))
            .or_insert(NIL);
        self.chain.push(*head);
        *head = id;
        self.tags.push((state, after_blind));
        self.bits.extend_from_slice(set);
        true
    }

    fn size_words(&self) -> usize {
        self.bits.len()
    }
}

struct Frame {
    call: u32,
    ret: u32,
    cand: u32,
    prev_state: StateId,
    prev_after_blind: bool,
}

/// Searches for a linearization of `cands`, exploring at most `max_states` configurations.
pub(super) fn search(cands: &[Candidate], max_states: u64) -> SearchResult {
    let mut list = EventList::new(cands);
    let words = cands.len().div_ceil(64).max(1);
    let zobrist: Vec<u64> = (0..cands.len() as u64).map(mix).collect();
    let mut cache = Cache::new(words);
    let mut set = vec![0u64; words];
    let mut set_hash = 0u64;
    let mut state = ABSENT;
    let mut after_blind = false;
    let mut remaining_known = cands.iter().filter(|c| c.complete_us.is_some()).count();
    let mut stack: Vec<Frame> = Vec::new();
    let mut failure: Option<Failure> = None;
    let mut states_explored = 0u64;
    let mut node = list.next[HEAD as usize];
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
                let unknown = c.complete_us.is_none();
                let skip = after_blind && c.step.is_blind();
                let next_state = match c.step.apply(state) {
                    _ if skip => None,
                    Some(same) if unknown && same == state => None,
                    next_state => next_state,
                };
                if let Some(next_state) = next_state {
                    let next_after_blind = unknown && c.step.is_blind();
                    let (w, b) = (cand as usize / 64, 1u64 << (cand % 64));
                    set[w] |= b;
                    set_hash ^= zobrist[cand as usize];
                    if cache.insert(&set, set_hash, next_state, next_after_blind) {
                        states_explored += 1;
                        if states_explored > max_states {
                            let why = format!("explored-state bound of {max_states} reached");
                            return result(Verdict::GaveUp(why), states_explored);
                        }
                        if cache.size_words() > MAX_CACHE_WORDS {
                            let why = format!("cache exceeded {MAX_CACHE_WORDS} words");
                            return result(Verdict::GaveUp(why), states_explored);
                        }
                        stack.push(Frame {
                            call: node,
                            ret,
                            cand,
                            prev_state: state,
                            prev_after_blind: after_blind,
                        });
                        state = next_state;
                        after_blind = next_after_blind;
                        list.lift(node, ret);
                        if c.complete_us.is_some() {
                            remaining_known -= 1;
                        }
                        node = list.next[HEAD as usize];
                        continue;
                    }
                    set[w] &= !b;
                    set_hash ^= zobrist[cand as usize];
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
                set[c / 64] &= !(1u64 << (c % 64));
                set_hash ^= zobrist[c];
                state = frame.prev_state;
                after_blind = frame.prev_after_blind;
                list.unlift(frame.call, frame.ret);
                if cands[c].complete_us.is_some() {
                    remaining_known += 1;
                }
                node = list.next[frame.call as usize];
            }
        }
    }
}
