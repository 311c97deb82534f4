//! In-memory MVCC throughput: puts, single-key gets and 100-key prefix ranges on `KvStore`,
//! against a plain `BTreeMap<Vec<u8>, Vec<u8>>` doing the same work in the same process.
//!
//! Run with `cargo bench --bench mvcc`. Keys are 16 bytes (`key` + 13 digits), values 256 bytes,
//! inserted in a shuffled order; every 100 consecutive key numbers share a 14-byte prefix.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use stet::kv::KvStore;
use stet::proto::etcdserverpb::{PutRequest, RangeRequest};

const PUTS: usize = 200_000;
const GETS: usize = 200_000;
const PREFIX_RANGES: usize = 20_000;
const VALUE_BYTES: usize = 256;

fn key(n: usize) -> Vec<u8> {
    format!("key{n:013}").into_bytes()
}

/// The [start, end) of the 100 keys whose number shares `n`'s hundreds.
fn prefix_range(n: usize) -> (Vec<u8>, Vec<u8>) {
    let base = n / 100 * 100;
    let start = key(base);
    let mut end = start[..14].to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    (start, end)
}

struct Figures {
    puts_per_sec: f64,
    gets_per_sec: f64,
    ranges_per_sec: f64,
}

fn per_sec(ops: usize, started: Instant) -> f64 {
    ops as f64 / started.elapsed().as_secs_f64()
}

fn bench_stet(order: &[usize], lookups: &[usize], value: &[u8]) -> Figures {
    let mut store = KvStore::new();
    let no_leases = |_: i64| false;
    let started = Instant::now();
    for &n in order {
        let req = PutRequest {
            key: key(n),
            value: value.to_vec(),
            ..PutRequest::default()
        };
        if let Err(e) = store.put(&req, &no_leases) {
            panic!("put failed: {e}");
        }
    }
    let puts_per_sec = per_sec(order.len(), started);

    let started = Instant::now();
    let mut found = 0usize;
    for &n in &lookups[..GETS] {
        let req = RangeRequest {
            key: key(n),
            ..RangeRequest::default()
        };
        found += store.range(&req).map_or(0, |r| r.kvs.len());
    }
    let gets_per_sec = per_sec(GETS, started);
    assert_eq!(found, GETS);

    let started = Instant::now();
    let mut found = 0usize;
    for &n in &lookups[..PREFIX_RANGES] {
        let (start, end) = prefix_range(n);
        let req = RangeRequest {
            key: start,
            range_end: end,
            ..RangeRequest::default()
        };
        found += store.range(&req).map_or(0, |r| r.kvs.len());
    }
    let ranges_per_sec = per_sec(PREFIX_RANGES, started);
    assert_eq!(found, PREFIX_RANGES * 100);
    black_box(&store);
    Figures {
        puts_per_sec,
        gets_per_sec,
        ranges_per_sec,
    }
}

fn bench_btreemap(order: &[usize], lookups: &[usize], value: &[u8]) -> Figures {
    let mut map: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let started = Instant::now();
    for &n in order {
        map.insert(key(n), value.to_vec());
    }
    let puts_per_sec = per_sec(order.len(), started);

    // Gets and ranges copy out what they find, as a Range response does.
    let started = Instant::now();
    let mut found = 0usize;
    for &n in &lookups[..GETS] {
        let k = key(n);
        found += map
            .get(&k)
            .map(|v| black_box((k.clone(), v.clone())))
            .iter()
            .count();
    }
    let gets_per_sec = per_sec(GETS, started);
    assert_eq!(found, GETS);

    let started = Instant::now();
    let mut found = 0usize;
    for &n in &lookups[..PREFIX_RANGES] {
        let (start, end) = prefix_range(n);
        let kvs: Vec<(Vec<u8>, Vec<u8>)> = map
            .range(start..end)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        found += black_box(kvs).len();
    }
    let ranges_per_sec = per_sec(PREFIX_RANGES, started);
    assert_eq!(found, PREFIX_RANGES * 100);
    Figures {
        puts_per_sec,
        gets_per_sec,
        ranges_per_sec,
    }
}

fn main() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let mut order: Vec<usize> = (0..PUTS).collect();
    order.shuffle(&mut rng);
    let mut lookups: Vec<usize> = (0..PUTS).collect();
    lookups.shuffle(&mut rng);
    let value = vec![b'v'; VALUE_BYTES];

    let stet = bench_stet(&order, &lookups, &value);
    let base = bench_btreemap(&order, &lookups, &value);

    println!("mvcc bench: {PUTS} keys of 16 bytes, {VALUE_BYTES}-byte values");
    println!(
        "{:<22} {:>14} {:>14} {:>8}",
        "operation", "stet ops/s", "btreemap ops/s", "ratio"
    );
    let rows = [
        ("put", stet.puts_per_sec, base.puts_per_sec),
        ("get (1 key)", stet.gets_per_sec, base.gets_per_sec),
        ("range (100 keys)", stet.ranges_per_sec, base.ranges_per_sec),
    ];
    for (name, ours, theirs) in rows {
        println!(
            "{name:<22} {ours:>14.0} {theirs:>14.0} {:>8.2}",
            ours / theirs
        );
    }
}
