//! The v2 keys API's decisions without a member: parameters checked as etcd checks them, the
//! v3 requests they make, and the answers built from v3 results.

use super::form::Params;
use super::ops::{self, Conditions, Op};
use crate::proto::etcdserverpb::compare;
use crate::proto::mvccpb::KeyValue;

fn parse(method: &str, key: &str, body: &str, query: &str) -> Result<Op, (u32, String)> {
    ops::parse(method, key.to_string(), &Params::new(body, query)).map_err(|e| (e.code, e.cause))
}

fn kv(key: &str, value: &str, create: i64, modified: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
        create_revision: create,
        mod_revision: modified,
        version: 1,
        lease: 0,
    }
}

#[test]
fn etcdctl_v2_requests_parse() {
    assert_eq!(
        parse("GET", "/k", "", "quorum=false&recursive=false&sorted=false"),
        Ok(Op::Get {
            key: "/k".into(),
            recursive: false,
            quorum: false
        })
    );
    assert_eq!(
        parse("PUT", "/kt", "ttl=10&value=v", ""),
        Ok(Op::Put {
            key: "/kt".into(),
            value: "v".into(),
            ttl_seconds: Some(10),
            conditions: Conditions::default(),
        })
    );
    assert_eq!(
        parse("PUT", "/k3", "value=v", "prevExist=false"),
        Ok(Op::Put {
            key: "/k3".into(),
            value: "v".into(),
            ttl_seconds: None,
            conditions: Conditions {
                prev_exist: Some(false),
                ..Conditions::default()
            },
        })
    );
    assert_eq!(
        parse("DELETE", "/d", "", "dir=true&recursive=true"),
        Ok(Op::Delete {
            key: "/d".into(),
            dir: true,
            recursive: true,
            conditions: Conditions::default(),
        })
    );
    // A PUT without a value stores the empty value, as etcd's.
    assert!(matches!(parse("PUT", "/e", "", ""), Ok(Op::Put { value, .. }) if value.is_empty()));
}

#[test]
fn bad_parameters_get_etcds_error_codes() {
    let cases = [
        (parse("PUT", "/a", "value=1&ttl=abc", ""), 202),
        (parse("PUT", "/a", "value=1", "ttl=-1"), 202),
        (parse("PUT", "/a", "value=1", "prevIndex=x"), 203),
        (parse("PUT", "/a", "value=1", "prevExist=bogus"), 209),
        (parse("PUT", "/a", "value=1", "prevValue="), 201),
        (parse("GET", "/a", "", "recursive=bogus"), 209),
        (parse("PUT", "/", "value=1", ""), 107),
        (parse("DELETE", "/", "", "recursive=true"), 107),
        (parse("POST", "/q", "value=1", ""), 209),
        (parse("GET", "/a", "", "wait=true"), 209),
        (parse("PUT", "/d", "", "dir=true"), 209),
    ];
    for (answer, code) in cases {
        assert_eq!(answer.map_err(|(c, _)| c), Err(code));
    }
    assert_eq!(
        parse("PUT", "/a", "", "prevExist=bogus").unwrap_err().1,
        "invalid value for prevExist"
    );
}

#[test]
fn conditions_become_v3_compares() {
    let conditions = Conditions {
        prev_exist: Some(true),
        prev_value: Some("old".into()),
        prev_index: Some(7),
    };
    let compares = ops::compares("/a", &conditions);
    let targets: Vec<i32> = compares.iter().map(|c| c.target).collect();
    assert_eq!(
        targets,
        [
            compare::CompareTarget::Version as i32,
            compare::CompareTarget::Value as i32,
            compare::CompareTarget::Mod as i32
        ]
    );
    assert!(compares.iter().all(|c| c.key == b"/a"));
    assert_eq!(
        compares[2].target_union,
        Some(compare::TargetUnion::ModRevision(7))
    );
    let create_only = Conditions {
        prev_exist: Some(false),
        ..Conditions::default()
    };
    assert_eq!(
        ops::compares("/a", &create_only)[0].target_union,
        Some(compare::TargetUnion::CreateRevision(0))
    );
    assert!(ops::compares("/a", &Conditions::default()).is_empty());
}

#[test]
fn failed_compares_answer_as_etcd() {
    let current = kv("/a", "2", 3, 5);
    let swap = Conditions {
        prev_value: Some("wrong".into()),
        prev_index: Some(999),
        ..Conditions::default()
    };
    let failure = ops::compare_failure("/a", &swap, Some(&current), 9);
    assert_eq!(
        (failure.code, failure.cause.as_str(), failure.index),
        (101, "[wrong != 2] [999 != 5]", 9)
    );
    let only_index = Conditions {
        prev_value: Some("2".into()),
        prev_index: Some(4),
        ..Conditions::default()
    };
    assert_eq!(
        ops::compare_failure("/a", &only_index, Some(&current), 9).cause,
        "[4 != 5]"
    );
    let create = Conditions {
        prev_exist: Some(false),
        ..Conditions::default()
    };
    assert_eq!(
        ops::compare_failure("/a", &create, Some(&current), 9).code,
        105
    );
    assert_eq!(ops::compare_failure("/a", &swap, None, 9).code, 100);
}

#[test]
fn writes_answer_with_etcds_actions() {
    let prev = kv("/a", "1", 2, 2);
    let set = ops::put_action("/a", "2", &Conditions::default(), 4, Some(&prev));
    assert_eq!((set.action, set.created), ("set", false));
    assert_eq!(
        set.body(),
        "{\"action\":\"set\",\"node\":{\"key\":\"/a\",\"value\":\"2\",\"modifiedIndex\":4,\"createdIndex\":2},\
         \"prevNode\":{\"key\":\"/a\",\"value\":\"1\",\"modifiedIndex\":2,\"createdIndex\":2}}\n"
    );
    let created = ops::put_action("/b", "x", &Conditions::default(), 5, None);
    assert!(created.created);
    assert_eq!(created.node.created_index, Some(5));
    assert!(created.body().find("prevNode").is_none());
    let swap = Conditions {
        prev_index: Some(2),
        ..Conditions::default()
    };
    assert_eq!(
        ops::put_action("/a", "3", &swap, 6, Some(&prev)).action,
        "compareAndSwap"
    );
    let update = Conditions {
        prev_exist: Some(true),
        ..Conditions::default()
    };
    assert_eq!(
        ops::put_action("/a", "3", &update, 6, Some(&prev)).action,
        "update"
    );
}

#[test]
fn directories_list_their_direct_children() {
    let kvs = [
        kv("/dir/a", "1", 4, 4),
        kv("/dir/sub/b", "2", 5, 9),
        kv("/dir/sub/deeper/c", "3", 6, 6),
        kv("/dir/_hidden", "h", 7, 7),
    ];
    let refs: Vec<&KeyValue> = kvs.iter().collect();
    let listing = ops::dir_node("/dir", &refs, false);
    let keys: Vec<_> = listing
        .nodes
        .iter()
        .flatten()
        .map(|n| (n.key.clone().unwrap_or_default(), n.dir, n.nodes.is_some()))
        .collect();
    assert_eq!(
        keys,
        [
            ("/dir/a".to_string(), false, false),
            ("/dir/sub".to_string(), true, false)
        ]
    );
    let sub = &listing.nodes.as_ref().unwrap()[1];
    assert_eq!((sub.created_index, sub.modified_index), (Some(5), Some(9)));
    let deep = ops::dir_node("/dir", &refs, true);
    let sub = &deep.nodes.as_ref().unwrap()[1];
    let below: Vec<_> = sub.nodes.iter().flatten().map(|n| n.key.clone()).collect();
    assert_eq!(
        below,
        [
            Some("/dir/sub/b".to_string()),
            Some("/dir/sub/deeper".to_string())
        ]
    );
    // The root has no key and no indexes; an empty one no nodes.
    let root = ops::dir_node("/", &[], false);
    assert_eq!(
        root,
        super::reply::Node {
            dir: true,
            ..Default::default()
        }
    );
    assert_eq!(ops::children_range("/"), (b"/".to_vec(), b"0".to_vec()));
    assert_eq!(
        ops::children_range("/dir"),
        (b"/dir/".to_vec(), b"/dir0".to_vec())
    );
}

#[test]
fn deletes_become_one_txn_and_answer_with_the_previous_version_or_the_directory() {
    use crate::proto::etcdserverpb::{self as pb, response_op};
    let plain = ops::delete_txn("/d", true, &Conditions::default());
    assert_eq!(plain.success.len(), 2, "the key and everything under it");
    assert!(plain.compare.is_empty());
    let swap = Conditions {
        prev_value: Some("x".into()),
        ..Conditions::default()
    };
    let conditional = ops::delete_txn("/d", true, &swap);
    assert_eq!(
        conditional.success.len(),
        1,
        "a conditional delete is of the key only"
    );
    assert_eq!(conditional.compare.len(), 1);

    let deleted = |prev: Vec<KeyValue>, below: i64| pb::TxnResponse {
        succeeded: true,
        responses: vec![
            pb::ResponseOp {
                response: Some(response_op::Response::ResponseDeleteRange(
                    pb::DeleteRangeResponse {
                        deleted: prev.len() as i64,
                        prev_kvs: prev,
                        ..Default::default()
                    },
                )),
            },
            pb::ResponseOp {
                response: Some(response_op::Response::ResponseDeleteRange(
                    pb::DeleteRangeResponse {
                        deleted: below,
                        ..Default::default()
                    },
                )),
            },
        ],
        ..Default::default()
    };
    let key = ops::delete_action("/d", &swap, &deleted(vec![kv("/d", "x", 2, 3)], 0), 9)
        .expect("the key was deleted");
    assert_eq!(
        key.body(),
        "{\"action\":\"compareAndDelete\",\"node\":{\"key\":\"/d\",\"modifiedIndex\":9,\"createdIndex\":2},\
         \"prevNode\":{\"key\":\"/d\",\"value\":\"x\",\"modifiedIndex\":3,\"createdIndex\":2}}\n"
    );
    let dir = ops::delete_action("/d", &Conditions::default(), &deleted(Vec::new(), 4), 9)
        .expect("the directory was deleted");
    assert_eq!(
        dir.body(),
        "{\"action\":\"delete\",\"node\":{\"key\":\"/d\",\"dir\":true,\"modifiedIndex\":9},\
         \"prevNode\":{\"key\":\"/d\",\"dir\":true}}\n"
    );
    assert!(ops::delete_action("/d", &Conditions::default(), &deleted(Vec::new(), 0), 9).is_none());
}
