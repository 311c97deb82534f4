//! One line per WAL entry for a person: its type as `etcd-dump-logs` names it and what it asks,
//! decoded from the bytes stet proposes (`stetpb::InternalRequest`, raft's `ConfChange` with a
//! `stetpb::ConfChangeContext`). Values are never printed, only their sizes.

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType};
use stet::proto::etcdserverpb as pb;
use stet::proto::stetpb;
use stet::proto::stetpb::internal_request::Request;

/// The entry types `--entry-type` accepts, as etcd-dump-logs names them (plus stet's own).
pub const ENTRY_TYPES: &[&str] = &[
    "Normal",
    "ConfigChange",
    "IRRRange",
    "IRRPut",
    "IRRDeleteRange",
    "IRRTxn",
    "IRRCompaction",
    "IRRLeaseGrant",
    "IRRLeaseRevoke",
    "IRRLeaseRenew",
    "IRRAlarm",
    "IRRMemberAttributes",
];

/// An entry as dump-logs prints it.
pub struct Described {
    /// `norm` or `conf`, as etcd-dump-logs prints the raft type.
    pub short_type: &'static str,
    /// The most specific name in [`ENTRY_TYPES`] (`Normal` for an empty or undecodable entry).
    pub entry_type: &'static str,
    pub text: String,
}

impl Described {
    /// Whether `--entry-type` selects it (`Normal` selects every normal entry).
    pub fn matches(&self, wanted: &[String]) -> bool {
        wanted.is_empty()
            || wanted
                .iter()
                .any(|w| w == self.entry_type || (w == "Normal" && self.short_type == "norm"))
    }
}

pub fn describe(entry: &Entry) -> Described {
    match entry.get_entry_type() {
        EntryType::EntryNormal => describe_normal(&entry.data),
        EntryType::EntryConfChange => Described {
            short_type: "conf",
            entry_type: "ConfigChange",
            text: describe_conf_change(&entry.data),
        },
        EntryType::EntryConfChangeV2 => Described {
            short_type: "conf",
            entry_type: "ConfigChange",
            text: format!("conf change v2 ({} bytes)", entry.data.len()),
        },
    }
}

fn normal(entry_type: &'static str, text: String) -> Described {
    Described {
        short_type: "norm",
        entry_type,
        text,
    }
}

fn describe_normal(data: &[u8]) -> Described {
    if data.is_empty() {
        // A new leader's empty entry.
        return normal("Normal", String::new());
    }
    let Some(request) = stetpb::InternalRequest::decode(data)
        .ok()
        .and_then(|r| r.request)
    else {
        return normal("Normal", format!("undecodable ({} bytes)", data.len()));
    };
    match request {
        Request::Put(put) => normal("IRRPut", describe_put(&put)),
        Request::DeleteRange(del) => normal(
            "IRRDeleteRange",
            format!(
                "delete_range key=\"{}\" range_end=\"{}\"{}",
                quoted(&del.key),
                quoted(&del.range_end),
                flag(del.prev_kv, " prev_kv")
            ),
        ),
        Request::Txn(txn) => normal(
            "IRRTxn",
            format!(
                "txn compare={} success={} failure={}",
                txn.compare.len(),
                ops(&txn.success),
                ops(&txn.failure)
            ),
        ),
        Request::Compaction(c) => normal(
            "IRRCompaction",
            format!(
                "compaction revision={}{}",
                c.revision,
                flag(c.physical, " physical")
            ),
        ),
        Request::LeaseGrant(g) => normal(
            "IRRLeaseGrant",
            format!("lease_grant id={:x} ttl={}", g.id, g.ttl),
        ),
        Request::LeaseRevoke(r) => normal("IRRLeaseRevoke", format!("lease_revoke id={:x}", r.id)),
        Request::LeaseRenew(r) => normal(
            "IRRLeaseRenew",
            format!("lease_renew leases={}", r.ids.len()),
        ),
        Request::Range(r) => normal(
            "IRRRange",
            format!(
                "range key=\"{}\" range_end=\"{}\" limit={} revision={}",
                quoted(&r.key),
                quoted(&r.range_end),
                r.limit,
                r.revision
            ),
        ),
        Request::Alarm(a) => normal("IRRAlarm", describe_alarm(&a)),
        Request::MemberAttributes(m) => normal("IRRMemberAttributes", describe_attributes(&m)),
        auth => {
            let (entry_type, text) = describe_auth(auth);
            normal(entry_type, text)
        }
    }
}

/// An auth request as etcd-dump-logs names it; never a password or its hash.
fn describe_auth(request: Request) -> (&'static str, String) {
    let permission = |p: Option<&stet::proto::authpb::Permission>| {
        p.map_or(String::new(), |p| {
            format!(
                " type={} key=\"{}\" range_end=\"{}\"",
                p.perm_type,
                quoted(&p.key),
                quoted(&p.range_end)
            )
        })
    };
    match request {
        Request::AuthEnable(_) => ("IRRAuthEnable", "auth_enable".into()),
        Request::AuthDisable(_) => ("IRRAuthDisable", "auth_disable".into()),
        Request::Authenticate(a) => ("IRRAuthenticate", format!("authenticate name={}", a.name)),
        Request::AuthUserAdd(r) => ("IRRAuthUserAdd", format!("user_add name={}", r.name)),
        Request::AuthUserDelete(r) => ("IRRAuthUserDelete", format!("user_delete name={}", r.name)),
        Request::AuthUserGet(r) => ("IRRAuthUserGet", format!("user_get name={}", r.name)),
        Request::AuthUserChangePassword(r) => (
            "IRRAuthUserChangePassword",
            format!("user_change_password name={}", r.name),
        ),
        Request::AuthUserGrantRole(r) => (
            "IRRAuthUserGrantRole",
            format!("user_grant_role user={} role={}", r.user, r.role),
        ),
        Request::AuthUserRevokeRole(r) => (
            "IRRAuthUserRevokeRole",
            format!("user_revoke_role name={} role={}", r.name, r.role),
        ),
        Request::AuthUserList(_) => ("IRRAuthUserList", "user_list".into()),
        Request::AuthRoleList(_) => ("IRRAuthRoleList", "role_list".into()),
        Request::AuthRoleAdd(r) => ("IRRAuthRoleAdd", format!("role_add name={}", r.name)),
        Request::AuthRoleDelete(r) => ("IRRAuthRoleDelete", format!("role_delete role={}", r.role)),
        Request::AuthRoleGet(r) => ("IRRAuthRoleGet", format!("role_get role={}", r.role)),
        Request::AuthRoleGrantPermission(r) => (
            "IRRAuthRoleGrantPermission",
            format!(
                "role_grant_permission name={}{}",
                r.name,
                permission(r.perm.as_ref())
            ),
        ),
        Request::AuthRoleRevokePermission(r) => (
            "IRRAuthRoleRevokePermission",
            format!(
                "role_revoke_permission role={} key=\"{}\" range_end=\"{}\"",
                r.role,
                quoted(&r.key),
                quoted(&r.range_end)
            ),
        ),
        other => ("Normal", format!("{other:?}")),
    }
}

fn describe_put(put: &pb::PutRequest) -> String {
    format!(
        "put key=\"{}\" value_size={} lease={:x}{}{}{}",
        quoted(&put.key),
        put.value.len(),
        put.lease,
        flag(put.prev_kv, " prev_kv"),
        flag(put.ignore_value, " ignore_value"),
        flag(put.ignore_lease, " ignore_lease")
    )
}

fn describe_alarm(a: &pb::AlarmRequest) -> String {
    let action = match pb::alarm_request::AlarmAction::try_from(a.action) {
        Ok(pb::alarm_request::AlarmAction::Get) => "get",
        Ok(pb::alarm_request::AlarmAction::Activate) => "activate",
        Ok(pb::alarm_request::AlarmAction::Deactivate) => "deactivate",
        Err(_) => "unknown",
    };
    let alarm = pb::AlarmType::try_from(a.alarm).map_or("unknown", |t| t.as_str_name());
    format!("alarm {action} {alarm} member={:x}", a.member_id)
}

fn describe_attributes(m: &stetpb::MemberAttributes) -> String {
    if m.update_peer_urls {
        return format!(
            "member update {:x} peer_urls={}",
            m.member_id,
            m.peer_urls.join(",")
        );
    }
    format!(
        "member publish {:x} name=\"{}\" client_urls={}",
        m.member_id,
        m.name.escape_default(),
        m.client_urls.join(",")
    )
}

fn describe_conf_change(data: &[u8]) -> String {
    let Ok(change) = ConfChange::parse_from_bytes(data) else {
        return format!("undecodable conf change ({} bytes)", data.len());
    };
    let context = stetpb::ConfChangeContext::decode(&change.context[..]).unwrap_or_default();
    let member = context.member.unwrap_or_default();
    let id = change.node_id;
    let peers = member.peer_ur_ls.join(",");
    match change.get_change_type() {
        ConfChangeType::AddNode if context.promote => format!("conf change promote member {id:x}"),
        ConfChangeType::AddNode => format!("conf change add member {id:x} peer_urls={peers}"),
        ConfChangeType::AddLearnerNode => {
            format!("conf change add learner {id:x} peer_urls={peers}")
        }
        ConfChangeType::RemoveNode => format!("conf change remove member {id:x}"),
    }
}

/// The kinds of a txn branch's operations, e.g. `[put,put,delete_range]`.
fn ops(ops: &[pb::RequestOp]) -> String {
    use pb::request_op::Request as Op;
    let names: Vec<&str> = ops
        .iter()
        .map(|op| match &op.request {
            Some(Op::RequestPut(_)) => "put",
            Some(Op::RequestRange(_)) => "range",
            Some(Op::RequestDeleteRange(_)) => "delete_range",
            Some(Op::RequestTxn(_)) => "txn",
            None => "none",
        })
        .collect();
    format!("[{}]", names.join(","))
}

/// Key bytes as printable text: non-printable bytes as `\xNN`, quotes and backslashes escaped.
fn quoted(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

fn flag(set: bool, text: &str) -> &str {
    if set {
        text
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal_entry(request: Request) -> Entry {
        let data = stetpb::InternalRequest {
            request: Some(request),
            ..Default::default()
        }
        .encode_to_vec();
        Entry {
            data: data.into(),
            ..Entry::default()
        }
    }

    #[test]
    fn a_put_shows_its_key_and_value_size_never_the_value() {
        let entry = normal_entry(Request::Put(pb::PutRequest {
            key: b"/a\n".to_vec(),
            value: b"secret".to_vec(),
            lease: 0x2a,
            ..Default::default()
        }));
        let described = describe(&entry);
        assert_eq!(described.text, "put key=\"/a\\n\" value_size=6 lease=2a");
        assert_eq!(
            (described.short_type, described.entry_type),
            ("norm", "IRRPut")
        );
        assert!(described.matches(&["Normal".to_string()]));
        assert!(described.matches(&["IRRPut".to_string()]));
        assert!(!described.matches(&["IRRTxn".to_string()]));
    }

    #[test]
    fn a_conf_change_names_the_member_and_its_peer_urls() {
        let context = stetpb::ConfChangeContext {
            member: Some(pb::Member {
                peer_ur_ls: vec!["http://10.0.0.2:2380".to_string()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut change = ConfChange::default();
        change.set_change_type(ConfChangeType::AddNode);
        change.node_id = 0x8e9e;
        change.context = context.encode_to_vec().into();
        let entry = Entry {
            entry_type: EntryType::EntryConfChange,
            data: change.write_to_bytes().unwrap().into(),
            ..Entry::default()
        };
        let described = describe(&entry);
        assert_eq!(
            described.text,
            "conf change add member 8e9e peer_urls=http://10.0.0.2:2380"
        );
        assert!(described.matches(&["ConfigChange".to_string()]));
        assert!(!described.matches(&["Normal".to_string()]));
    }

    #[test]
    fn empty_and_undecodable_entries_are_normal() {
        let empty = describe(&Entry::default());
        assert_eq!((empty.entry_type, empty.text.as_str()), ("Normal", ""));
        let junk = Entry {
            data: vec![0xff, 0xff, 0xff].into(),
            ..Entry::default()
        };
        assert_eq!(describe(&junk).text, "undecodable (3 bytes)");
    }
}
