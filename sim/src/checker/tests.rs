use std::collections::HashMap;
use std::time::Instant;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// Builds histories on key "k" unless `add` is given another key.
#[derive(Default)]
struct History(Vec<Operation>);

fn val(s: &str) -> Value {
    s.as_bytes().to_vec()
}

fn key() -> Key {
    val("k")
}

impl History {
    fn add(&mut self, client: u64, op: Op, at: (u64, u64), outcome: Outcome) -> &mut Self {
        let id = self.0.len() as u64;
        self.0.push(Operation {
            id,
            client,
            op,
            invoke_us: at.0,
            complete_us: at.1,
            outcome,
        });
        self
    }
    fn put(&mut self, client: u64, value: &str, at: (u64, u64)) -> &mut Self {
        let op = Op::Put {
            key: key(),
            value: val(value),
        };
        self.add(client, op, at, Outcome::Put)
    }
    fn put_unknown(&mut self, client: u64, value: &str, invoke_us: u64) -> &mut Self {
        let op = Op::Put {
            key: key(),
            value: val(value),
        };
        self.add(client, op, (invoke_us, 0), Outcome::Unknown)
    }
    fn get(&mut self, client: u64, value: Option<&str>, at: (u64, u64)) -> &mut Self {
        let outcome = Outcome::Get(value.map(val));
        self.add(client, Op::Get { key: key() }, at, outcome)
    }
    fn serializable_get(&mut self, client: u64, value: Option<&str>, at: (u64, u64)) -> &mut Self {
        let outcome = Outcome::Get(value.map(val));
        self.add(client, Op::SerializableGet { key: key() }, at, outcome)
    }
    fn delete(&mut self, client: u64, deleted: bool, at: (u64, u64)) -> &mut Self {
        let outcome = Outcome::Delete { deleted };
        self.add(client, Op::Delete { key: key() }, at, outcome)
    }
    fn cas(
        &mut self,
        client: u64,
        expected: Option<&str>,
        new: &str,
        succeeded: bool,
        at: (u64, u64),
    ) -> &mut Self {
        let op = Op::Cas {
            key: key(),
            expected: expected.map(val),
            new: val(new),
        };
        self.add(client, op, at, Outcome::Cas { succeeded })
    }
    fn check(&self) -> Result<CheckStats, CheckError> {
        check(&self.0)
    }
    fn assert_linearizable(&self) {
        if let Err(e) = self.check() {
            panic!("expected linearizable, got: {e}");
        }
    }
    fn assert_violation(&self) -> Violation {
        match self.check() {
            Err(CheckError::Violation(v)) => v,
            other => panic!("expected a violation, got {other:?}"),
        }
    }
}

#[test]
fn sequential_history_is_linearizable() {
    let stats = History::default()
        .get(0, None, (0, 1))
        .put(0, "a", (2, 3))
        .get(1, Some("a"), (4, 5))
        .put(1, "b", (6, 7))
        .get(0, Some("b"), (8, 9))
        .delete(0, true, (10, 11))
        .get(1, None, (12, 13))
        .delete(1, false, (14, 15))
        .check()
        .expect("linearizable");
    assert_eq!(stats.keys, 1);
    assert_eq!(stats.operations, 8);
    assert!(stats.states_explored >= 8);
}

#[test]
fn concurrent_put_and_get_may_linearize_either_way() {
    for seen in [Some("a"), Some("b")] {
        History::default()
            .put(0, "a", (0, 10))
            .put(1, "b", (20, 100))
            .get(2, seen, (30, 40))
            .assert_linearizable();
    }
    // Two concurrent puts, then reads that agree on which one was last.
    for last in ["a", "b"] {
        History::default()
            .put(0, "a", (0, 50))
            .put(1, "b", (10, 40))
            .get(2, Some(last), (60, 70))
            .get(0, Some(last), (80, 90))
            .assert_linearizable();
    }
}

#[test]
fn operations_completing_as_others_start_count_as_concurrent() {
    History::default()
        .put(0, "a", (0, 10))
        .get(1, None, (10, 20))
        .assert_linearizable();
}

#[test]
fn unknown_write_that_took_effect_is_accepted() {
    History::default()
        .put(0, "a", (0, 10))
        .put_unknown(1, "b", 20)
        .get(0, Some("a"), (30, 40))
        .get(2, Some("b"), (1_000, 1_010))
        .get(0, Some("b"), (2_000, 2_010))
        .assert_linearizable();
}

#[test]
fn unknown_write_that_never_took_effect_is_accepted() {
    History::default()
        .put(0, "a", (0, 10))
        .put_unknown(1, "b", 20)
        .put_unknown(1, "c", 30)
        .add(1, Op::Delete { key: key() }, (40, 0), Outcome::Unknown)
        .get(0, Some("a"), (50, 60))
        .get(2, Some("a"), (1_000, 1_010))
        .assert_linearizable();
}

#[test]
fn failed_operations_and_unknown_reads_are_dropped() {
    History::default()
        .add(
            0,
            Op::Put {
                key: key(),
                value: val("x"),
            },
            (0, 10),
            Outcome::Failed,
        )
        .add(1, Op::Get { key: key() }, (5, 0), Outcome::Unknown)
        .get(1, None, (20, 30))
        .assert_linearizable();
}

#[test]
fn cas_chains_are_linearizable() {
    History::default()
        .cas(0, None, "a", true, (0, 10))
        .cas(1, Some("a"), "b", true, (20, 30))
        .cas(0, Some("a"), "c", false, (40, 50))
        .get(1, Some("b"), (60, 70))
        .assert_linearizable();
    // Three clients race from the same expected value: exactly one may win.
    History::default()
        .cas(0, None, "a", false, (0, 100))
        .cas(1, None, "b", true, (10, 90))
        .cas(2, None, "c", false, (20, 80))
        .get(0, Some("b"), (110, 120))
        .assert_linearizable();
}

#[test]
fn unknown_cas_may_take_effect_late() {
    History::default()
        .put(0, "a", (0, 10))
        .add(
            1,
            Op::Cas {
                key: key(),
                expected: Some(val("a")),
                new: val("b"),
            },
            (20, 0),
            Outcome::Unknown,
        )
        .get(0, Some("a"), (30, 40))
        .get(0, Some("b"), (50, 60))
        .assert_linearizable();
}

#[test]
fn stale_read_after_completed_write_is_rejected() {
    let violation = History::default()
        .put(0, "a", (0, 10))
        .put(0, "b", (20, 30))
        .get(1, Some("a"), (40, 50))
        .assert_violation();
    assert_eq!(violation.key, key());
    assert_eq!(violation.operations.len(), 3);
    assert!(violation.detail.contains("not linearizable"), "{violation}");
    assert!(
        violation.detail.contains("#2"),
        "names the read: {violation}"
    );
}

#[test]
fn read_of_never_written_value_is_rejected() {
    History::default()
        .put(0, "a", (0, 10))
        .get(1, Some("z"), (5, 50))
        .assert_violation();
}

#[test]
fn two_cas_succeeding_from_the_same_value_are_rejected() {
    History::default()
        .put(0, "a", (0, 10))
        .cas(1, Some("a"), "b", true, (20, 40))
        .cas(2, Some("a"), "c", true, (25, 35))
        .assert_violation();
}

#[test]
fn read_going_back_in_time_is_rejected() {
    History::default()
        .put(0, "a", (0, 10))
        .put(1, "b", (20, 100))
        .get(2, Some("b"), (30, 40))
        .get(2, Some("a"), (50, 60))
        .assert_violation();
}

#[test]
fn delete_of_absent_key_reporting_deleted_is_rejected() {
    History::default()
        .delete(0, true, (0, 10))
        .assert_violation();
    History::default()
        .put(0, "a", (0, 10))
        .delete(0, true, (20, 30))
        .delete(1, true, (40, 50))
        .assert_violation();
}

#[test]
fn unknown_write_cannot_explain_a_read_before_its_invocation() {
    History::default()
        .get(0, Some("b"), (0, 10))
        .put_unknown(1, "b", 20)
        .assert_violation();
}

#[test]
fn failed_write_cannot_explain_a_read() {
    History::default()
        .add(
            0,
            Op::Put {
                key: key(),
                value: val("a"),
            },
            (0, 10),
            Outcome::Failed,
        )
        .get(1, Some("a"), (20, 30))
        .assert_violation();
}

#[test]
fn serializable_reads_may_be_stale_but_not_invented() {
    History::default()
        .put(0, "a", (0, 10))
        .put(0, "b", (20, 30))
        .serializable_get(1, Some("a"), (40, 50))
        .serializable_get(1, None, (60, 70))
        .assert_linearizable();
    let violation = History::default()
        .put(0, "a", (0, 10))
        .serializable_get(1, Some("z"), (40, 50))
        .assert_violation();
    assert!(
        violation.detail.contains("no operation wrote"),
        "{violation}"
    );
    let violation = History::default()
        .serializable_get(1, Some("a"), (0, 10))
        .put(0, "a", (20, 30))
        .assert_violation();
    assert!(
        violation.detail.contains("after the read completed"),
        "{violation}"
    );
}

#[test]
fn violation_names_the_bad_key_among_many() {
    let mut h = History::default();
    h.put(0, "a", (0, 10));
    let other = |value: &str| Op::Put {
        key: val("other"),
        value: val(value),
    };
    h.add(1, other("x"), (0, 10), Outcome::Put);
    h.add(
        1,
        Op::Get { key: val("other") },
        (20, 30),
        Outcome::Get(None),
    );
    let violation = h.assert_violation();
    assert_eq!(violation.key, val("other"));
    assert_eq!(violation.operations.len(), 2);
}

#[test]
fn malformed_histories_are_reported_as_such() {
    let mismatch = History::default()
        .add(0, Op::Get { key: key() }, (0, 10), Outcome::Put)
        .check();
    assert!(matches!(mismatch, Err(CheckError::Malformed { id: 0, .. })));
    let backwards = History::default().put(0, "a", (10, 5)).check();
    assert!(matches!(
        backwards,
        Err(CheckError::Malformed { id: 0, .. })
    ));
}

#[test]
fn search_bound_gives_up_distinctly_from_a_violation() {
    let mut h = History::default();
    for i in 0..8 {
        h.put(i, &format!("v{i}"), (0, 100));
    }
    h.get(0, Some("v3"), (200, 210));
    match check_with_limit(&h.0, 3) {
        Err(err @ CheckError::GaveUp { .. }) => {
            assert!(err.to_string().contains("checker gave up"), "{err}");
        }
        other => panic!("expected to give up, got {other:?}"),
    }
    h.check().expect("linearizable with the default bound");
}

#[test]
fn many_unknown_writes_that_never_took_effect_stay_cheap() {
    let mut h = History::default();
    h.put(0, "a", (0, 10));
    for i in 0..40 {
        h.put_unknown(1 + i, &format!("lost{i}"), 20 + i);
    }
    for i in 0..200 {
        h.get(0, Some("a"), (100 + 20 * i, 110 + 20 * i));
    }
    let stats = h.check().expect("linearizable");
    assert!(stats.states_explored < 100_000, "{stats:?}");
    // Proving a violation explores everything: the pending operations must not multiply it.
    h.get(0, Some("b"), (10_000, 10_010));
    match check_with_limit(&h.0, 100_000) {
        Err(CheckError::Violation(_)) => {}
        other => panic!("expected a violation, got {other:?}"),
    }
}

/// What a generated operation did, chosen by the test before running it against a register.
#[derive(Debug, Clone, Copy)]
enum Fate {
    /// Took effect; the client saw the outcome.
    Known,
    /// Took effect; the client timed out.
    UnknownApplied,
    /// Did not take effect; the client timed out.
    UnknownLost,
    /// Did not take effect; the client was told so.
    Failed,
}

/// One generated operation with its linearization point inside `[invoke_us, complete_us]`.
struct Planned {
    client: u64,
    op: Op,
    invoke_us: u64,
    lin_us: u64,
    complete_us: u64,
    fate: Fate,
}

/// Runs planned operations against a real register in linearization-point order, so the
/// resulting history is linearizable by construction.
fn run_against_register(mut planned: Vec<Planned>) -> Vec<Operation> {
    planned.sort_by_key(|p| p.lin_us);
    let mut register: HashMap<Key, Value> = HashMap::new();
    let mut history = Vec::with_capacity(planned.len());
    for (id, p) in planned.into_iter().enumerate() {
        let applies = matches!(p.fate, Fate::Known | Fate::UnknownApplied);
        let outcome = if applies {
            apply(&mut register, &p.op)
        } else {
            Outcome::Failed
        };
        let outcome = match p.fate {
            Fate::Known => outcome,
            Fate::UnknownApplied | Fate::UnknownLost => Outcome::Unknown,
            Fate::Failed => Outcome::Failed,
        };
        history.push(Operation {
            id: id as u64,
            client: p.client,
            op: p.op,
            invoke_us: p.invoke_us,
            complete_us: p.complete_us,
            outcome,
        });
    }
    history.sort_by_key(|o| o.invoke_us);
    history
}

fn apply(register: &mut HashMap<Key, Value>, op: &Op) -> Outcome {
    match op {
        Op::Put { key, value } => {
            register.insert(key.clone(), value.clone());
            Outcome::Put
        }
        Op::Get { key } | Op::SerializableGet { key } => Outcome::Get(register.get(key).cloned()),
        Op::Delete { key } => Outcome::Delete {
            deleted: register.remove(key).is_some(),
        },
        Op::Cas { key, expected, new } => {
            let succeeded = register.get(key) == expected.as_ref();
            if succeeded {
                register.insert(key.clone(), new.clone());
            }
            Outcome::Cas { succeeded }
        }
    }
}

/// Replaces the value of the `pick`-th known read with one nobody wrote.
fn corrupt_a_read(history: &mut [Operation], pick: usize) -> bool {
    let reads: Vec<usize> = (0..history.len())
        .filter(|&i| matches!(history[i].outcome, Outcome::Get(_)))
        .collect();
    if reads.is_empty() {
        return false;
    }
    history[reads[pick % reads.len()]].outcome = Outcome::Get(Some(val("never-written")));
    true
}

#[derive(Debug, Clone)]
struct Spec {
    client: u64,
    kind: u8,
    key: u8,
    value: u8,
    before_us: u64,
    after_us: u64,
    fate: u8,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..4u64,
        0..6u8,
        0..3u8,
        0..5u8,
        0..300u64,
        0..300u64,
        0..10u8,
    )
        .prop_map(
            |(client, kind, key, value, before_us, after_us, fate)| Spec {
                client,
                kind,
                key,
                value,
                before_us,
                after_us,
                fate,
            },
        )
}

/// Lays the specs out sequentially (one every 100us), then stretches each into an interval
/// around its point, keeping each client's operations from overlapping.
fn plan_from_specs(specs: &[Spec]) -> Vec<Planned> {
    let lin_us = |i: usize| 1_000 + 100 * i as u64;
    let mut complete_us = vec![0u64; specs.len()];
    let mut invoke_us = vec![0u64; specs.len()];
    let mut last_of_client: HashMap<u64, usize> = HashMap::new();
    for (i, s) in specs.iter().enumerate() {
        let earliest = match last_of_client.insert(s.client, i) {
            Some(prev) => complete_us[prev] + 1,
            None => 0,
        };
        invoke_us[i] = (lin_us(i) - s.before_us).max(earliest);
        let next_same = specs[i + 1..].iter().position(|n| n.client == s.client);
        let latest = next_same.map_or(u64::MAX, |j| lin_us(i + 1 + j) - 1);
        complete_us[i] = (lin_us(i) + s.after_us).min(latest);
    }
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let key = vec![b'a' + s.key];
            let value = val(&format!("v{}", s.value));
            let op = match s.kind {
                0 => Op::Put { key, value },
                1 | 5 => Op::Get { key },
                2 => Op::SerializableGet { key },
                3 => Op::Delete { key },
                _ => Op::Cas {
                    key,
                    expected: (s.value % 2 == 0).then(|| val(&format!("v{}", s.value / 2))),
                    new: value,
                },
            };
            let fate = match s.fate {
                0 => Fate::Failed,
                1 => Fate::UnknownLost,
                2 => Fate::UnknownApplied,
                _ => Fate::Known,
            };
            Planned {
                client: s.client,
                op,
                invoke_us: invoke_us[i],
                lin_us: lin_us(i),
                complete_us: complete_us[i],
                fate,
            }
        })
        .collect()
}

proptest! {
    #[test]
    fn histories_from_a_real_register_are_accepted_and_corrupted_reads_rejected(
        specs in prop::collection::vec(spec(), 1..60),
        pick in any::<usize>(),
    ) {
        let mut history = run_against_register(plan_from_specs(&specs));
        if let Err(e) = check(&history) {
            prop_assert!(false, "rejected a linearizable history: {}", e);
        }
        if corrupt_a_read(&mut history, pick) {
            let verdict = check(&history);
            prop_assert!(
                matches!(verdict, Err(CheckError::Violation(_))),
                "accepted a read of a value never written: {:?}",
                verdict
            );
        }
    }
}

/// A workload like the simulator's: `clients` closed-loop clients, each operation taking
/// 50us–2ms, over `keys` keys with a few hot ones; a few percent time out or fail.
fn generate(
    seed: u64,
    clients: u64,
    keys: u64,
    ops: usize,
    unknown_percent: u32,
) -> Vec<Operation> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut clock_us = vec![0u64; clients as usize];
    let mut planned = Vec::with_capacity(ops);
    for n in 0..ops {
        let client = rng.gen_range(0..clients);
        let invoke_us = clock_us[client as usize] + rng.gen_range(0..200);
        let complete_us = invoke_us + rng.gen_range(50..2_000);
        clock_us[client as usize] = complete_us;
        let hot = rng.gen_bool(0.5);
        let k = if hot {
            rng.gen_range(0..keys.div_ceil(10))
        } else {
            rng.gen_range(0..keys)
        };
        let key = format!("key{k}").into_bytes();
        let value = format!("value{n}").into_bytes();
        let op = match rng.gen_range(0..100) {
            0..40 => Op::Get { key },
            40..70 => Op::Put { key, value },
            70..80 => Op::Cas {
                key,
                expected: rng
                    .gen_bool(0.8)
                    .then(|| format!("value{}", n.saturating_sub(rng.gen_range(1..20))))
                    .map(String::into_bytes),
                new: value,
            },
            80..90 => Op::Delete { key },
            _ => Op::SerializableGet { key },
        };
        let fate = match rng.gen_range(0..200) {
            r if r < unknown_percent => Fate::UnknownApplied,
            r if r < 2 * unknown_percent => Fate::UnknownLost,
            r if r < 2 * unknown_percent + 4 => Fate::Failed,
            _ => Fate::Known,
        };
        planned.push(Planned {
            client,
            op,
            invoke_us,
            lin_us: rng.gen_range(invoke_us..=complete_us),
            complete_us,
            fate,
        });
    }
    run_against_register(planned)
}

#[test]
fn generated_workload_is_accepted_and_a_corrupted_read_rejected() {
    for seed in 0..5 {
        let mut history = generate(seed, 10, 20, 2_000, 4);
        let stats = check(&history).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(stats.operations, 2_000);
        assert!(corrupt_a_read(&mut history, seed as usize * 7));
        assert!(matches!(check(&history), Err(CheckError::Violation(_))));
    }
}

/// `cargo test --release --lib checker -- --ignored --nocapture`
#[test]
#[ignore = "performance measurement; run in release"]
fn checker_throughput() {
    let unknown_percent: u32 = std::env::var("UNKNOWN_PERCENT").map_or(4, |v| v.parse().unwrap());
    for (clients, keys, ops) in [(10, 200, 20_000), (10, 10, 20_000), (10, 2, 20_000)] {
        let history = generate(42, clients, keys, ops, unknown_percent);
        let started = Instant::now();
        let stats = check(&history).expect("linearizable");
        let elapsed = started.elapsed();
        println!(
            "{ops} ops, {clients} clients, {keys} keys: {:?}, {:.0} ops/s, {} states",
            elapsed,
            ops as f64 / elapsed.as_secs_f64(),
            stats.states_explored
        );
        let mut corrupted = history.clone();
        corrupt_a_read(&mut corrupted, ops / 2);
        let started = Instant::now();
        let verdict = check(&corrupted);
        println!("  a corrupted read is rejected in {:?}", started.elapsed());
        assert!(
            matches!(verdict, Err(CheckError::Violation(_))),
            "{verdict:?}"
        );
    }
}

#[test]
fn many_unknown_cas_that_never_matched_stay_cheap() {
    let mut h = History::default();
    h.put(0, "a", (0, 10));
    for i in 0..40 {
        let op = Op::Cas {
            key: key(),
            expected: Some(val("nope")),
            new: val(&format!("lost{i}")),
        };
        h.add(1 + i, op, (20 + i, 0), Outcome::Unknown);
    }
    for i in 0..200 {
        h.get(0, Some("a"), (100 + 20 * i, 110 + 20 * i));
    }
    let stats = h.check().expect("linearizable");
    assert!(stats.states_explored < 100_000, "{stats:?}");
    // Proving a violation explores everything: the pending operations must not multiply it.
    h.get(0, Some("b"), (10_000, 10_010));
    match check_with_limit(&h.0, 100_000) {
        Err(CheckError::Violation(_)) => {}
        other => panic!("expected a violation, got {other:?}"),
    }
}

/// The register semantics written directly from `Op` and `Outcome`, as an oracle: the state
/// after `op`, or `None` if its outcome is impossible from `state`.
fn oracle_step(state: &Option<Value>, op: &Operation) -> Option<Option<Value>> {
    let unknown = op.outcome == Outcome::Unknown;
    match (&op.op, &op.outcome) {
        (Op::Put { value, .. }, _) => Some(Some(value.clone())),
        (Op::Get { .. }, Outcome::Get(seen)) => (seen == state).then(|| state.clone()),
        (Op::Delete { .. }, Outcome::Delete { deleted }) => {
            (*deleted == state.is_some()).then_some(None)
        }
        (Op::Delete { .. }, _) if unknown => Some(None),
        (Op::Cas { expected, new, .. }, outcome) => {
            let matches = state == expected;
            let after = if matches {
                Some(new.clone())
            } else {
                state.clone()
            };
            match outcome {
                Outcome::Cas { succeeded } if *succeeded != matches => None,
                _ => Some(after),
            }
        }
        _ => unreachable!("oracle histories hold no reads with unknown outcomes"),
    }
}

/// Exhaustive search over orders of the operations that respect real time; unknown ones may
/// be left out. Exponential: only for a handful of operations.
fn oracle_linearizable(ops: &[Operation]) -> bool {
    fn go(ops: &[Operation], done: &mut Vec<bool>, state: &Option<Value>) -> bool {
        let pending_known =
            |done: &[bool], i: usize| !done[i] && ops[i].outcome != Outcome::Unknown;
        if !(0..ops.len()).any(|i| pending_known(done, i)) {
            return true;
        }
        for i in 0..ops.len() {
            let blocked = (0..ops.len())
                .any(|j| pending_known(done, j) && j != i && ops[j].complete_us < ops[i].invoke_us);
            if done[i] || blocked {
                continue;
            }
            if let Some(next) = oracle_step(state, &ops[i]) {
                done[i] = true;
                let found = go(ops, done, &next);
                done[i] = false;
                if found {
                    return true;
                }
            }
        }
        false
    }
    go(ops, &mut vec![false; ops.len()], &None)
}

fn arbitrary_operation() -> impl Strategy<Value = Operation> {
    let value = prop::sample::select(vec![val("a"), val("b")]);
    let maybe = prop::option::of(value.clone());
    let op = prop_oneof![
        value
            .clone()
            .prop_map(|value| Op::Put { key: key(), value }),
        Just(Op::Get { key: key() }),
        Just(Op::Delete { key: key() }),
        (maybe.clone(), value).prop_map(|(expected, new)| Op::Cas {
            key: key(),
            expected,
            new
        }),
    ];
    (op, maybe, any::<bool>(), 0..4u8, 0..40u64, 0..30u64).prop_map(
        |(op, seen, flag, fate, invoke_us, duration_us)| {
            let outcome = match (&op, fate) {
                (Op::Get { .. }, _) => Outcome::Get(seen),
                (_, 0) => Outcome::Unknown,
                (Op::Put { .. }, _) => Outcome::Put,
                (Op::Delete { .. }, _) => Outcome::Delete { deleted: flag },
                _ => Outcome::Cas { succeeded: flag },
            };
            Operation {
                id: 0,
                client: 0,
                op,
                invoke_us,
                complete_us: invoke_us + duration_us,
                outcome,
            }
        },
    )
}

proptest! {
    #[test]
    fn verdicts_match_an_exhaustive_search(
        mut ops in prop::collection::vec(arbitrary_operation(), 1..8),
    ) {
        for (i, op) in ops.iter_mut().enumerate() {
            op.id = i as u64;
        }
        let expected = oracle_linearizable(&ops);
        match check(&ops) {
            Ok(_) => prop_assert!(expected, "accepted a non-linearizable history"),
            Err(CheckError::Violation(v)) => prop_assert!(!expected, "rejected: {}", v),
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
}
