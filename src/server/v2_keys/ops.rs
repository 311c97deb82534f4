//! etcd v2's key operations over the v3 store, decided without IO: a request's parameters
//! checked as etcd checks them into an [`Op`], the v3 requests it takes, and the v2 answer made
//! from their results. A v2 key is the v3 key of the same bytes (`/v2/keys/a/b` is `/a/b`),
//! its `createdIndex` and `modifiedIndex` are the key's create and mod revisions, and the
//! `X-Etcd-Index` is the store's revision — like etcd's v2-over-v3 mode, so v2 and v3 clients
//! see the same keys. A directory is the keys under a prefix: listed, deleted recursively, never
//! stored empty.

use std::collections::BTreeMap;

use super::form::Params;
use super::reply::{Action, Node, V2Error};
use crate::proto::etcdserverpb::{self as pb, compare, request_op, response_op};
use crate::proto::mvccpb::KeyValue;

/// The most keys a directory listing reads; a larger directory is refused, not cut short.
pub const MAX_LISTED_KEYS: i64 = 10_000;

/// A conditional write's conditions (`prevExist`, `prevValue`, `prevIndex`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Conditions {
    pub prev_exist: Option<bool>,
    pub prev_value: Option<String>,
    pub prev_index: Option<i64>,
}

impl Conditions {
    pub fn is_empty(&self) -> bool {
        *self == Conditions::default()
    }
}

/// A checked v2 keys request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Get {
        key: String,
        recursive: bool,
        /// Read through raft (`quorum=true`); else this member answers from what it applied.
        quorum: bool,
    },
    Put {
        key: String,
        value: String,
        ttl_seconds: Option<i64>,
        conditions: Conditions,
    },
    Delete {
        key: String,
        dir: bool,
        recursive: bool,
        conditions: Conditions,
    },
}

fn invalid(code: u32, cause: &str) -> V2Error {
    V2Error::new(code, cause, 0)
}

fn flag(params: &Params, name: &str) -> Result<bool, V2Error> {
    params
        .flag(name)
        .map(|value| value.unwrap_or(false))
        .map_err(|()| invalid(209, &format!("invalid value for {name:?}")))
}

/// Checks a request as etcd does; `method` is the HTTP method.
pub fn parse(method: &str, key: String, params: &Params) -> Result<Op, V2Error> {
    if flag(params, "wait")? {
        return Err(invalid(
            209,
            "wait: stet serves no v2 watches; watch with the v3 API",
        ));
    }
    match method {
        "GET" | "HEAD" => Ok(Op::Get {
            recursive: flag(params, "recursive")?,
            quorum: flag(params, "quorum")?,
            key,
        }),
        "PUT" => parse_put(key, params),
        "DELETE" => {
            let (dir, recursive) = (flag(params, "dir")?, flag(params, "recursive")?);
            if key == "/" {
                return Err(V2Error::new(107, "/", 0));
            }
            let conditions = conditions(params)?;
            if conditions.prev_exist.is_some() {
                return Err(invalid(209, "prevExist: not taken by a delete"));
            }
            Ok(Op::Delete {
                key,
                dir,
                recursive,
                conditions,
            })
        }
        _ => Err(invalid(
            209,
            "method: stet serves GET, PUT and DELETE of v2 keys (no in-order POST)",
        )),
    }
}

fn parse_put(key: String, params: &Params) -> Result<Op, V2Error> {
    if key == "/" {
        return Err(V2Error::new(107, "/", 0));
    }
    if flag(params, "dir")? {
        return Err(invalid(
            209,
            "dir: stet keeps no empty directories (a directory exists while keys are under it)",
        ));
    }
    if flag(params, "refresh")? {
        return Err(invalid(209, "refresh: not supported; set the value again"));
    }
    let ttl_seconds = match params.get("ttl") {
        None | Some("") => None,
        Some(text) => match text.parse::<i64>() {
            Ok(ttl) if ttl > 0 => Some(ttl),
            _ => return Err(invalid(202, "invalid value for \"ttl\"")),
        },
    };
    Ok(Op::Put {
        key,
        value: params.get("value").unwrap_or_default().to_string(),
        ttl_seconds,
        conditions: conditions(params)?,
    })
}

fn conditions(params: &Params) -> Result<Conditions, V2Error> {
    let prev_exist = params
        .flag("prevExist")
        .map_err(|()| invalid(209, "invalid value for prevExist"))?;
    let prev_value = match params.get("prevValue") {
        Some("") => return Err(invalid(201, "\"prevValue\" cannot be empty")),
        other => other.map(str::to_string),
    };
    let prev_index = match params.get("prevIndex") {
        None | Some("") => None,
        Some(text) => match text.parse::<i64>() {
            Ok(index) if index >= 0 => Some(index),
            _ => return Err(invalid(203, "invalid value for \"prevIndex\"")),
        },
    };
    Ok(Conditions {
        prev_exist,
        prev_value,
        prev_index,
    })
}

/// The v3 range of the keys under directory `key` (`/` holds every key starting with `/`).
pub fn children_range(key: &str) -> (Vec<u8>, Vec<u8>) {
    let mut prefix = key.as_bytes().to_vec();
    if prefix.last() != Some(&b'/') {
        prefix.push(b'/');
    }
    let mut end = prefix.clone();
    // The prefix ends with '/', so the byte after it never overflows.
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    (prefix, end)
}

/// The v3 compares a write's conditions make.
pub fn compares(key: &str, conditions: &Conditions) -> Vec<pb::Compare> {
    let compare = |target: compare::CompareTarget,
                   result: compare::CompareResult,
                   union: compare::TargetUnion| pb::Compare {
        result: result as i32,
        target: target as i32,
        key: key.as_bytes().to_vec(),
        target_union: Some(union),
        ..Default::default()
    };
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let mut compares = Vec::new();
    match conditions.prev_exist {
        Some(false) => compares.push(compare(T::Create, R::Equal, U::CreateRevision(0))),
        Some(true) => compares.push(compare(T::Version, R::Greater, U::Version(0))),
        None => {}
    }
    if let Some(value) = &conditions.prev_value {
        compares.push(compare(
            T::Value,
            R::Equal,
            U::Value(value.as_bytes().to_vec()),
        ));
    }
    if let Some(index) = conditions.prev_index {
        compares.push(compare(T::Mod, R::Equal, U::ModRevision(index)));
    }
    compares
}

/// The error a failed conditional write answers, given the key's current version.
pub fn compare_failure(
    key: &str,
    conditions: &Conditions,
    current: Option<&KeyValue>,
    index: i64,
) -> V2Error {
    let Some(current) = current else {
        return V2Error::new(100, key, index);
    };
    if conditions.prev_exist == Some(false) {
        return V2Error::new(105, key, index);
    }
    let mut causes = Vec::new();
    if let Some(value) = &conditions.prev_value {
        let actual = String::from_utf8_lossy(&current.value);
        if *value != actual {
            causes.push(format!("[{value} != {actual}]"));
        }
    }
    if let Some(wanted) = conditions.prev_index {
        if wanted != current.mod_revision {
            causes.push(format!("[{wanted} != {}]", current.mod_revision));
        }
    }
    V2Error::new(101, causes.join(" "), index)
}

/// A key's node.
pub fn file_node(kv: &KeyValue) -> Node {
    Node {
        key: Some(String::from_utf8_lossy(&kv.key).into_owned()),
        value: Some(String::from_utf8_lossy(&kv.value).into_owned()),
        modified_index: Some(kv.mod_revision),
        created_index: Some(kv.create_revision),
        ..Node::default()
    }
}

/// What a deleted key's node shows: its key, the delete's revision and its create revision.
pub fn deleted_node(prev: &KeyValue, revision: i64) -> Node {
    Node {
        key: Some(String::from_utf8_lossy(&prev.key).into_owned()),
        modified_index: Some(revision),
        created_index: Some(prev.create_revision),
        ..Node::default()
    }
}

/// The keys below a directory, grouped by the next path component.
#[derive(Default)]
struct Child<'a> {
    file: Option<&'a KeyValue>,
    below: Vec<&'a KeyValue>,
}

/// Directory `key`'s node from the keys under it (as [`children_range`] reads them): each
/// direct child a key's node, or a directory's with the smallest create and the largest mod
/// revision under it, expanded when `recursive`. The root has no key and no indexes. Keys whose
/// next component starts with `_` are hidden, as etcd hides them.
pub fn dir_node(key: &str, kvs: &[&KeyValue], recursive: bool) -> Node {
    let (prefix, _) = children_range(key);
    let prefix = String::from_utf8_lossy(&prefix).into_owned();
    let mut children: BTreeMap<String, Child<'_>> = BTreeMap::new();
    for &kv in kvs {
        let full = String::from_utf8_lossy(&kv.key);
        let Some(rest) = full.strip_prefix(prefix.as_str()) else {
            continue;
        };
        let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if name.is_empty() || name.starts_with('_') {
            continue;
        }
        let child = children.entry(name.to_string()).or_default();
        if tail.trim_matches('/').is_empty() {
            child.file = Some(kv);
        } else {
            child.below.push(kv);
        }
    }
    let nodes: Vec<Node> = children
        .into_iter()
        .map(|(name, child)| match child.file {
            Some(kv) => file_node(kv),
            None if recursive => dir_node(&format!("{prefix}{name}"), &child.below, true),
            // A child directory shown without its contents: no need to build them.
            None => Node {
                key: Some(format!("{prefix}{name}")),
                dir: true,
                modified_index: child.below.iter().map(|kv| kv.mod_revision).max(),
                created_index: child.below.iter().map(|kv| kv.create_revision).min(),
                ..Node::default()
            },
        })
        .collect();
    let root = key == "/";
    Node {
        key: (!root).then(|| key.to_string()),
        dir: true,
        nodes: (!nodes.is_empty()).then_some(nodes),
        modified_index: (!root)
            .then(|| kvs.iter().map(|kv| kv.mod_revision).max())
            .flatten(),
        created_index: (!root)
            .then(|| kvs.iter().map(|kv| kv.create_revision).min())
            .flatten(),
        ..Node::default()
    }
}

/// The answer of a write that succeeded at `revision`, `prev` being the version it replaced.
pub fn put_action(
    key: &str,
    value: &str,
    conditions: &Conditions,
    revision: i64,
    prev: Option<&KeyValue>,
) -> Action {
    let action = if conditions.prev_value.is_some() || conditions.prev_index.is_some() {
        "compareAndSwap"
    } else {
        match conditions.prev_exist {
            Some(false) => "create",
            Some(true) => "update",
            None => "set",
        }
    };
    Action {
        action,
        node: Node {
            key: Some(key.to_string()),
            value: Some(value.to_string()),
            modified_index: Some(revision),
            created_index: Some(prev.map_or(revision, |p| p.create_revision)),
            ..Node::default()
        },
        prev_node: prev.map(file_node),
        created: prev.is_none(),
        index: revision,
    }
}

/// A txn op reading `key` (a conditional write's failure branch: what the key holds now).
pub fn read_op(key: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(request_op::Request::RequestRange(pb::RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })),
    }
}

fn delete_op(key: Vec<u8>, range_end: Vec<u8>, prev_kv: bool) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            pb::DeleteRangeRequest {
                key,
                range_end,
                prev_kv,
            },
        )),
    }
}

/// The txn of a DELETE: the key (with its previous version), and with `recursive` (and no
/// conditions) every key under it; under the conditions' compares.
pub fn delete_txn(key: &str, recursive: bool, conditions: &Conditions) -> pb::TxnRequest {
    let mut success = vec![delete_op(key.as_bytes().to_vec(), Vec::new(), true)];
    if recursive && conditions.is_empty() {
        let (start, end) = children_range(key);
        success.push(delete_op(start, end, false));
    }
    pb::TxnRequest {
        compare: compares(key, conditions),
        success,
        failure: vec![read_op(key)],
    }
}

/// The answer of a DELETE whose txn `done` succeeded at `index`, if it deleted anything: the
/// key's previous version, or (recursive) the directory.
pub fn delete_action(
    key: &str,
    conditions: &Conditions,
    done: &pb::TxnResponse,
    index: i64,
) -> Option<Action> {
    let deleted: Vec<&pb::DeleteRangeResponse> = done
        .responses
        .iter()
        .filter_map(|r| match &r.response {
            Some(response_op::Response::ResponseDeleteRange(deleted)) => Some(deleted),
            _ => None,
        })
        .collect();
    let action = if conditions.is_empty() {
        "delete"
    } else {
        "compareAndDelete"
    };
    let answer = |node: Node, prev_node: Node| Action {
        action,
        node,
        prev_node: Some(prev_node),
        created: false,
        index,
    };
    if let Some(prev) = deleted.first().and_then(|d| d.prev_kvs.first()) {
        return Some(answer(deleted_node(prev, index), file_node(prev)));
    }
    if deleted.get(1).is_none_or(|d| d.deleted <= 0) {
        return None;
    }
    let dir = Node {
        key: Some(key.to_string()),
        dir: true,
        ..Node::default()
    };
    let node = Node {
        modified_index: Some(index),
        ..dir.clone()
    };
    Some(answer(node, dir))
}
