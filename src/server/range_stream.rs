//! Ranges read in parts. etcd 3.7's `KV.RangeStream` answers a range in chunks, so listing
//! 100,000 keys never holds the whole answer in memory (kube-apiserver 1.37 fills its watch
//! cache this way); and a unary `Range` over many keys is read the same way and its parts merged
//! (`gather`), so that reading a large range never stalls the member's driver for a time that
//! grows with the range: between two parts it applies, commits and answers whatever else waits
//! (etcd reads a range beside its writes, in a read transaction of its own).
//!
//! The first part is read as the request asks (linearizable unless `serializable`) and pins the
//! revision; the next parts are read at that revision from the key after the last one sent. Every
//! part is a `ClientRequest::RangePart`, which walks no further than its limit (`Part`), so no
//! part walks the whole range in one turn. Without a limit the count is the keys the parts
//! return; with one, what follows the last key sent is counted in count parts, each of a
//! bounded cost (`Part::Count`; the store counts whole stretches of its index without walking
//! them, so one part usually counts the rest) — etcd walks the rest of the range in the
//! request, so each page of a paginated list walks every key after it. Parts grow or shrink
//! towards a byte target derived from `--max-request-bytes`. Intermediate chunks carry
//! only key-values; the last carries the header, the count and `more`, so that merging every
//! chunk gives the unary answer. Sorted requests are refused with `Unimplemented`, as etcd
//! does (a unary one is read in one go); requests filtering on revisions, and count-only ones,
//! are answered in one part.

use std::future::Future;

use prost::Message as _;
use tonic::Status;

use super::status::to_status;
use crate::kv::KvError;
use crate::node::ClientError;
use crate::proto::etcdserverpb as pb;
use pb::range_request::{SortOrder, SortTarget};

/// Keys in a stream's first chunk; later chunks adapt to the byte target.
pub const FIRST_CHUNK_KEYS: i64 = 128;
/// Keys in the first part of a unary range read in parts: most ranges (kube-apiserver's pages
/// of 500 among them) are then read in one part, as before.
pub const FIRST_PART_KEYS: i64 = 1024;
/// What a count part spends at most (a key of the index walked, or a stretch of it counted
/// whole, costs one): a turn of the driver of a millisecond or two.
pub const COUNT_PART_KEYS: i64 = 32 * 1024;

/// How a range read in parts is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// The encoded size later parts grow or shrink towards.
    pub target_bytes: usize,
    /// Keys in the first part.
    pub first_keys: i64,
    /// What a count part spends at most (`Part::Count`).
    pub count_keys: i64,
}

/// Which part of a range a read is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The whole request in one read (a `ClientRequest::Range`): count-only and filtered
    /// requests, and a range that found its revision compacted at every try.
    First,
    /// The first part: read as the request asks and pins the revision, but walks no further
    /// than its own limit (a `ClientRequest::RangePart`); the count comes from the keys the
    /// parts return and the count parts.
    FirstUncounted,
    /// A later one, at the pinned revision: a `ClientRequest::RangePart`.
    Later,
    /// A count part at the pinned revision: a count-only `ClientRequest::RangePart` whose
    /// limit bounds what it spends (`KvStore::count_part`).
    Count,
}

/// Whether a unary `request` is read in parts: a key range, in key order, neither count-only
/// nor filtered on revisions.
pub fn read_in_parts(request: &pb::RangeRequest) -> bool {
    !request.range_end.is_empty()
        && !request.count_only
        && !filtered(request)
        && check(request).is_ok()
}

/// Whether `request` filters on mod or create revisions (then it is read in one part: a part
/// could hold no key and still not be the last).
fn filtered(request: &pb::RangeRequest) -> bool {
    request.min_mod_revision != 0
        || request.max_mod_revision != 0
        || request.min_create_revision != 0
        || request.max_create_revision != 0
}

/// Whether `request` can be streamed: refused with etcd's `Unimplemented` when sorted other
/// than by key, ascending (the order chunks come in).
pub fn check(request: &pb::RangeRequest) -> Result<(), Status> {
    let order = SortOrder::try_from(request.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(request.sort_target).unwrap_or(SortTarget::Key);
    // NONE with another target sorts by that target, as etcd does: only key order streams.
    let natural = target == SortTarget::Key && matches!(order, SortOrder::None | SortOrder::Ascend);
    if natural {
        Ok(())
    } else {
        Err(Status::unimplemented(
            "etcdserver: RangeStream does not support a sort order; use Range",
        ))
    }
}

/// The key right after `key` in byte order.
fn next_key(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

/// The next chunk's key count: doubled while chunks come in under half the byte target,
/// halved when one went over it.
fn next_chunk_keys(keys: i64, chunk_bytes: usize, target_bytes: usize) -> i64 {
    if chunk_bytes > target_bytes {
        (keys / 2).max(1)
    } else if chunk_bytes * 2 < target_bytes {
        keys.saturating_mul(2).min(1 << 20)
    } else {
        keys
    }
}

/// How many times a unary range read in parts starts over when a compaction passed the revision
/// its first part pinned; then it is read in one part.
const RESTARTS_ON_COMPACTION: usize = 2;

/// [`gather`], starting over when a compaction passed the revision the first part pinned (the
/// answer is then as of a later revision, still within the request's span); after
/// `RESTARTS_ON_COMPACTION` tries the range is read in one part. A request that named its
/// revision gets the refusal, as a read at a compacted revision does.
pub async fn gather_restarting<R, RF>(
    request: pb::RangeRequest,
    sizes: Sizes,
    mut range: R,
) -> Result<pb::RangeResponse, Status>
where
    R: FnMut(pb::RangeRequest, Part) -> RF,
    RF: Future<Output = Result<pb::RangeResponse, Status>>,
{
    for _ in 0..RESTARTS_ON_COMPACTION {
        match gather(request.clone(), sizes, &mut range).await {
            Err(status) if request.revision == 0 && compacted(&status) => continue,
            result => return result,
        }
    }
    range(request, Part::First).await
}

/// Whether `status` says a revision was compacted.
fn compacted(status: &Status) -> bool {
    let error = ClientError::Kv(KvError::Compacted {
        compact_revision: 0,
    });
    status.code() == tonic::Code::OutOfRange && status.message() == to_status(&error).message()
}

/// `request` read in parts through `range` (one read of a part), merged into the unary answer.
pub async fn gather<R, RF>(
    request: pb::RangeRequest,
    sizes: Sizes,
    range: R,
) -> Result<pb::RangeResponse, Status>
where
    R: FnMut(pb::RangeRequest, Part) -> RF,
    RF: Future<Output = Result<pb::RangeResponse, Status>>,
{
    let mut merged = pb::RangeResponse::default();
    let collect = |chunk: pb::RangeStreamResponse| {
        let part = chunk.range_response.unwrap_or_default();
        merged.kvs.extend(part.kvs);
        // Intermediate chunks carry none of these; the last carries the answer's.
        (merged.header, merged.count, merged.more) = (part.header, part.count, part.more);
        async { true }
    };
    stream(request, sizes, range, collect).await?;
    Ok(merged)
}

/// Streams `request` through `range` (one read of a part) into `send` (false once the client
/// is gone), cut as `sizes` says. Errors of a read end the stream with that error.
pub async fn stream<R, RF, S, SF>(
    request: pb::RangeRequest,
    sizes: Sizes,
    mut range: R,
    mut send: S,
) -> Result<(), Status>
where
    R: FnMut(pb::RangeRequest, Part) -> RF,
    RF: Future<Output = Result<pb::RangeResponse, Status>>,
    S: FnMut(pb::RangeStreamResponse) -> SF,
    SF: Future<Output = bool>,
{
    assert!(sizes.first_keys > 0, "a part holds at least one key");
    assert!(sizes.count_keys > 0, "a count part walks at least one key");
    if request.count_only || filtered(&request) {
        let whole = range(request, Part::First).await?;
        send(wrap(whole)).await;
        return Ok(());
    }
    let wanted = request.limit;
    let mut chunk_keys = sizes.first_keys;
    let mut next = pb::RangeRequest {
        limit: if wanted > 0 {
            chunk_keys.min(wanted)
        } else {
            chunk_keys
        },
        ..request.clone()
    };
    let first = range(next.clone(), Part::FirstUncounted).await?;
    let header = first.header;
    // The revision asked for, or the one the first read saw (a header names the store's current
    // revision, not the one a read was made at).
    next.revision = if request.revision > 0 {
        request.revision
    } else {
        header.as_ref().map_or(0, |h| h.revision)
    };
    next.serializable = true;
    let mut sent: i64 = 0;
    let mut chunk = first;
    loop {
        let mut kvs = std::mem::take(&mut chunk.kvs);
        if wanted > 0 {
            kvs.truncate((wanted - sent).max(0) as usize);
        }
        sent += kvs.len() as i64;
        let last_key = kvs.last().map(|kv| kv.key.clone());
        let done = !chunk.more || (wanted > 0 && sent >= wanted) || last_key.is_none();
        if done {
            // Keys remain past a limit: count them at the pinned revision.
            let rest = match (&last_key, chunk.more) {
                (Some(last_key), true) => {
                    count_rest(&next, next_key(last_key), sizes.count_keys, &mut range).await?
                }
                _ => 0,
            };
            let last = pb::RangeResponse {
                header,
                kvs,
                more: rest > 0,
                count: sent + rest,
            };
            send(wrap(last)).await;
            return Ok(());
        }
        let bytes: usize = kvs.iter().map(|kv| kv.encoded_len()).sum();
        let partial = pb::RangeResponse {
            kvs,
            ..Default::default()
        };
        if !send(wrap(partial)).await {
            return Ok(());
        }
        chunk_keys = next_chunk_keys(chunk_keys, bytes, sizes.target_bytes);
        next.key = next_key(&last_key.unwrap_or_default());
        next.limit = if wanted > 0 {
            chunk_keys.min(wanted - sent)
        } else {
            chunk_keys
        };
        chunk = range(next.clone(), Part::Later).await?;
    }
}

/// Counts the keys of `pinned`'s range from `from` on at its revision, in count parts of at
/// most `count_keys` keys of the index each.
async fn count_rest<R, RF>(
    pinned: &pb::RangeRequest,
    from: Vec<u8>,
    count_keys: i64,
    range: &mut R,
) -> Result<i64, Status>
where
    R: FnMut(pb::RangeRequest, Part) -> RF,
    RF: Future<Output = Result<pb::RangeResponse, Status>>,
{
    let mut part = pb::RangeRequest {
        key: from,
        limit: count_keys,
        count_only: true,
        keys_only: true,
        ..pinned.clone()
    };
    let mut counted: i64 = 0;
    loop {
        let answer = range(part.clone(), Part::Count).await?;
        counted = counted.saturating_add(answer.count);
        if !answer.more {
            return Ok(counted);
        }
        // A count part that stopped early names the last key it walked.
        let Some(last) = answer.kvs.last() else {
            return Err(Status::internal(
                "stet: a count part stopped early without naming where",
            ));
        };
        let resume = next_key(&last.key);
        assert!(resume > part.key, "count parts move forward");
        part.key = resume;
    }
}

fn wrap(range_response: pb::RangeResponse) -> pb::RangeStreamResponse {
    pb::RangeStreamResponse {
        range_response: Some(range_response),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mvccpb::KeyValue;
    use std::sync::{Arc, Mutex};

    /// A store of `n` keys `k00000..` answering ranges as the KV store does (count = every key in
    /// range, `more` when the limit cut it).
    fn store(n: usize) -> Vec<KeyValue> {
        (0..n)
            .map(|i| KeyValue {
                key: format!("k{i:05}").into_bytes(),
                value: vec![b'v'; 100],
                mod_revision: 7,
                ..Default::default()
            })
            .collect()
    }

    fn answer(kvs: &[KeyValue], request: &pb::RangeRequest) -> pb::RangeResponse {
        let in_range: Vec<&KeyValue> = kvs
            .iter()
            .filter(|kv| {
                kv.key >= request.key
                    && (request.range_end.is_empty() || kv.key < request.range_end)
            })
            .collect();
        let limit = if request.limit > 0 {
            request.limit as usize
        } else {
            usize::MAX
        };
        pb::RangeResponse {
            header: Some(pb::ResponseHeader {
                revision: 7,
                ..Default::default()
            }),
            kvs: in_range
                .iter()
                .take(limit)
                .map(|kv| (*kv).clone())
                .collect(),
            more: in_range.len() > limit,
            count: in_range.len() as i64,
        }
    }

    /// What the node answers a part: a `RangePart` (every part but `Part::First`) counts only
    /// the keys it walked, one past its limit at most; a count part (`KvStore::count_part`)
    /// here walks at most its limit and names the last key it walked when more follow (the
    /// store's may count more, taking stretches of its index whole).
    fn part_answer(kvs: &[KeyValue], request: &pb::RangeRequest, part: Part) -> pb::RangeResponse {
        let mut answer = answer(kvs, request);
        match part {
            Part::First => {}
            Part::FirstUncounted | Part::Later => {
                assert!(!request.count_only, "{part:?} reads keys");
                answer.count = answer.kvs.len() as i64 + i64::from(answer.more);
            }
            Part::Count => {
                assert!(request.count_only && request.limit > 0, "a count part");
                let last = answer.kvs.last().cloned();
                answer.count = answer.kvs.len() as i64;
                answer.kvs = match last {
                    Some(kv) if answer.more => vec![KeyValue {
                        key: kv.key,
                        ..Default::default()
                    }],
                    _ => Vec::new(),
                };
            }
        }
        answer
    }

    /// How the tests cut their ranges: count parts of 700 keys.
    fn sizes(target_bytes: usize, first_keys: i64) -> Sizes {
        Sizes {
            target_bytes,
            first_keys,
            count_keys: 700,
        }
    }

    /// Streams `request` over `kvs`; the chunks, and every range request made.
    fn run(
        kvs: Vec<KeyValue>,
        request: pb::RangeRequest,
    ) -> (Vec<pb::RangeResponse>, Vec<pb::RangeRequest>) {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let chunks = Arc::new(Mutex::new(Vec::new()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let (asked2, chunks2) = (asked.clone(), chunks.clone());
        runtime
            .block_on(stream(
                request,
                sizes(4096, FIRST_CHUNK_KEYS),
                move |r: pb::RangeRequest, part: Part| {
                    asked2.lock().expect("lock").push(r.clone());
                    let answer = part_answer(&kvs, &r, part);
                    async move { Ok(answer) }
                },
                move |c: pb::RangeStreamResponse| {
                    chunks2
                        .lock()
                        .expect("lock")
                        .push(c.range_response.expect("response"));
                    async { true }
                },
            ))
            .expect("stream");
        let chunks = chunks.lock().expect("lock").clone();
        let asked = asked.lock().expect("lock").clone();
        (chunks, asked)
    }

    fn merged(chunks: &[pb::RangeResponse]) -> pb::RangeResponse {
        let mut all = pb::RangeResponse::default();
        for chunk in chunks {
            all.merge(chunk.encode_to_vec().as_slice()).expect("merge");
        }
        all
    }

    fn range(key: &str, end: &str, limit: i64) -> pb::RangeRequest {
        pb::RangeRequest {
            key: key.into(),
            range_end: end.into(),
            limit,
            ..Default::default()
        }
    }

    #[test]
    fn the_merged_chunks_are_the_unary_answer() {
        let kvs = store(2000);
        for request in [
            range("k", "l", 0),
            range("k", "l", 500),
            range("k00100", "k00200", 0),
            range("x", "y", 0),
        ] {
            let (chunks, asked) = run(kvs.clone(), request.clone());
            assert_eq!(merged(&chunks), answer(&kvs, &request), "{request:?}");
            assert!(chunks[..chunks.len() - 1]
                .iter()
                .all(|c| c.header.is_none() && c.count == 0));
            assert!(
                asked[1..].iter().all(|r| r.revision == 7 && r.serializable),
                "pinned"
            );
        }
        let (chunks, _) = run(kvs, range("k", "l", 0));
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        // The first chunk has a fixed key count; the next ones shrink towards the target.
        let sizes: Vec<usize> = chunks.iter().map(|c| c.encoded_len()).collect();
        assert!(
            sizes[4..].iter().all(|&size| size < 2 * 4096 + 200),
            "chunks near the target: {sizes:?}"
        );
    }

    /// A unary range gathered from parts is the unary answer, though no part counts the whole
    /// range (each counts only the keys it walked): without a limit the count is every key the
    /// parts returned; with one, the keys sent and what count parts of a bounded walk each
    /// counted after them. A limit below the first part's size is read in one part of that
    /// limit, then counted.
    #[test]
    fn gathered_parts_are_the_unary_answer() {
        let kvs = store(5000);
        for request in [
            range("k", "l", 0),
            range("k", "l", 3000),
            range("k", "l", 10),
            range("k", "k00011", 10),
            range("k", "k00010", 10),
            range("k04990", "l", 10),
        ] {
            let asked = Arc::new(Mutex::new(Vec::new()));
            let (kvs2, asked2) = (kvs.clone(), asked.clone());
            let reader = move |r: pb::RangeRequest, part: Part| {
                asked2.lock().expect("lock").push((r.clone(), part));
                let answer = part_answer(&kvs2, &r, part);
                async move { Ok(answer) }
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            let gathered = runtime
                .block_on(gather(
                    request.clone(),
                    sizes(4096, FIRST_PART_KEYS),
                    reader,
                ))
                .expect("gather");
            assert_eq!(gathered, answer(&kvs, &request), "{request:?}");
            let asked = asked.lock().expect("lock").clone();
            let parts: Vec<Part> = asked.iter().map(|(_, part)| *part).collect();
            assert_eq!(parts[0], Part::FirstUncounted, "{request:?}");
            let reads = parts.iter().filter(|p| **p != Part::Count).count();
            assert!(parts[1..reads].iter().all(|p| *p == Part::Later));
            let counts = &asked[reads..];
            assert!(counts.iter().all(|(r, p)| *p == Part::Count
                && r.revision == 7
                && r.serializable
                && r.limit == 700));
            // The keys after the limit, in count parts of 700 index keys.
            let after = match request.limit {
                0 => 0,
                limit => (answer(&kvs, &request).count - limit).max(0),
            };
            assert_eq!(counts.len() as i64, (after + 699) / 700, "{request:?}");
            if request.limit == 10 {
                assert_eq!((reads, asked[0].0.limit), (1, 10), "{request:?}");
            } else {
                assert_eq!(asked[0].0.limit, FIRST_PART_KEYS);
                assert!(reads > 2, "{reads} parts");
            }
        }
    }

    /// A unary range whose later part finds its pinned revision compacted starts over and
    /// answers whole; one compacted at every try is read in one part, as asked; a request that
    /// named its revision gets the refusal.
    #[test]
    fn a_gather_starts_over_when_a_compaction_passes_its_revision() {
        let kvs = store(3000);
        let compacted = || {
            to_status(&ClientError::Kv(KvError::Compacted {
                compact_revision: 9,
            }))
        };
        // Fails the first `failing` tries at their first later part; every read asked, with its part.
        let run = |request: pb::RangeRequest, failing: usize| {
            let asked = Arc::new(Mutex::new(Vec::new()));
            let (kvs, asked2) = (kvs.clone(), asked.clone());
            let mut tries = 0;
            let reader = move |r: pb::RangeRequest, part: Part| {
                asked2.lock().expect("lock").push((r.clone(), part));
                if !matches!(part, Part::Later | Part::Count) {
                    tries += 1;
                }
                let answer = match part {
                    Part::Later if tries <= failing => Err(compacted()),
                    _ => Ok(part_answer(&kvs, &r, part)),
                };
                async move { answer }
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            let result = runtime.block_on(gather_restarting(request, sizes(4096, 16), reader));
            let asked = asked.lock().expect("lock").clone();
            (result, asked)
        };
        let whole = range("k", "l", 0);
        let (result, asked) = run(whole.clone(), 1);
        assert_eq!(result.expect("restarted"), answer(&kvs, &whole));
        let firsts = |asked: &[(pb::RangeRequest, Part)]| {
            asked
                .iter()
                .filter(|(_, p)| matches!(p, Part::First | Part::FirstUncounted))
                .count()
        };
        assert_eq!(firsts(&asked), 2, "one restart");
        let (result, asked) = run(whole.clone(), usize::MAX);
        assert_eq!(result.expect("read in one part"), answer(&kvs, &whole));
        let last = asked.last().expect("asked");
        assert_eq!(last, &(whole.clone(), Part::First), "the request as asked");
        assert_eq!(firsts(&asked), 3);
        let mut at_five = whole;
        at_five.revision = 5;
        let (result, asked) = run(at_five, 1);
        assert_eq!(result.expect_err("refused").code(), tonic::Code::OutOfRange);
        assert_eq!(firsts(&asked), 1);
    }

    #[test]
    fn unary_ranges_over_a_key_range_in_key_order_are_read_in_parts() {
        assert!(read_in_parts(&range("a", "b", 0)));
        assert!(read_in_parts(&range("a", "b", 10)));
        assert!(!read_in_parts(&range("a", "", 0)), "one key");
        let mut counted = range("a", "b", 0);
        counted.count_only = true;
        assert!(!read_in_parts(&counted));
        let mut filtered = range("a", "b", 0);
        filtered.min_mod_revision = 3;
        assert!(!read_in_parts(&filtered));
        let mut sorted = range("a", "b", 0);
        sorted.sort_order = SortOrder::Descend as i32;
        assert!(!read_in_parts(&sorted));
    }

    #[test]
    fn a_range_at_a_revision_reads_every_chunk_there() {
        let mut at_five = range("k", "l", 0);
        at_five.revision = 5;
        let (chunks, asked) = run(store(1000), at_five);
        assert!(chunks.len() > 1);
        assert!(
            asked.iter().all(|r| r.revision == 5),
            "every chunk at revision 5"
        );
    }

    #[test]
    fn a_sort_order_is_refused_and_key_ascending_is_not() {
        let mut sorted = range("a", "b", 0);
        sorted.sort_order = SortOrder::Descend as i32;
        assert_eq!(
            check(&sorted).map_err(|s| s.code()),
            Err(tonic::Code::Unimplemented)
        );
        sorted.sort_order = SortOrder::Ascend as i32;
        assert!(check(&sorted).is_ok());
        sorted.sort_target = SortTarget::Mod as i32;
        assert!(check(&sorted).is_err());
        sorted.sort_order = SortOrder::None as i32;
        assert!(
            check(&sorted).is_err(),
            "NONE with another target sorts by it"
        );
    }

    #[test]
    fn chunks_grow_towards_the_target_and_shrink_past_it() {
        assert_eq!(next_chunk_keys(100, 10, 1000), 200);
        assert_eq!(next_chunk_keys(100, 600, 1000), 100);
        assert_eq!(next_chunk_keys(100, 2000, 1000), 50);
        assert_eq!(next_chunk_keys(1, 2000, 1000), 1);
    }
}
