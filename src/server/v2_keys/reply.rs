//! What a v2 keys request answers, in etcd v2's shapes: an action body (`{"action", "node",
//! "prevNode"}`) or an error body (`{"errorCode", "message", "cause", "index"}`), both ending
//! with a newline, JSON escaped as Go escapes it (`<`, `>`, `&` as `\u003c`...), node fields in
//! etcd's order.

use serde::Serialize;

/// One node of the v2 tree: a key with its value, or a directory (keys sharing a prefix).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub dir: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<Node>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    #[serde(rename = "modifiedIndex", skip_serializing_if = "Option::is_none")]
    pub modified_index: Option<i64>,
    #[serde(rename = "createdIndex", skip_serializing_if = "Option::is_none")]
    pub created_index: Option<i64>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A successful request's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    pub action: &'static str,
    pub node: Node,
    #[serde(rename = "prevNode", skip_serializing_if = "Option::is_none")]
    pub prev_node: Option<Node>,
    /// 201 for a key created, else 200.
    #[serde(skip)]
    pub created: bool,
    /// The store's revision the answer is at (`X-Etcd-Index`).
    #[serde(skip)]
    pub index: i64,
}

impl Action {
    pub fn body(&self) -> String {
        go_json(self)
    }
}

/// A failed request: etcd v2's error code, what it concerns, and the store's revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Error {
    pub code: u32,
    pub cause: String,
    /// The revision the answer is at; 0 for a request refused before it was read, as etcd.
    pub index: i64,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "errorCode")]
    code: u32,
    message: &'static str,
    cause: &'a str,
    index: i64,
}

impl V2Error {
    pub fn new(code: u32, cause: impl Into<String>, index: i64) -> V2Error {
        V2Error {
            code,
            cause: cause.into(),
            index,
        }
    }

    /// etcd's message for the code.
    pub fn message(&self) -> &'static str {
        match self.code {
            100 => "Key not found",
            101 => "Compare failed",
            102 => "Not a file",
            104 => "Not a directory",
            105 => "Key already exists",
            107 => "Root is read only",
            108 => "Directory not empty",
            201 => "PrevValue is Required in POST form",
            202 => "The given TTL in POST form is not a number",
            203 => "The given index in POST form is not a number",
            209 => "Invalid field",
            _ => "Raft Internal Error",
        }
    }

    /// The HTTP status etcd answers the code with.
    pub fn status(&self) -> u16 {
        match self.code {
            100 => 404,
            101 | 105 => 412,
            102 | 108 => 403,
            104 | 107 | 200..=299 => 400,
            _ => 500,
        }
    }

    pub fn body(&self) -> String {
        go_json(&ErrorBody {
            code: self.code,
            message: self.message(),
            cause: &self.cause,
            index: self.index,
        })
    }
}

/// JSON as Go's encoder writes it: HTML-safe escapes, then a newline.
fn go_json(value: &impl Serialize) -> String {
    let json = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_string());
    // These characters occur in the encoded text only inside strings.
    let mut out = json
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    out.push('\n');
    out
}

/// A moment as Go's RFC 3339 with nanoseconds prints it in UTC (trailing zeros trimmed):
/// `2026-12-04T01:27:37.33426826Z`.
pub fn rfc3339_nanos(since_epoch: std::time::Duration) -> String {
    let seconds = since_epoch.as_secs();
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    let rest = seconds % 86_400;
    let (year, month, day) = crate::time::civil_from_days(days);
    let mut text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    let nanos = since_epoch.subsec_nanos();
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push('Z');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn errors_read_as_etcds() {
        let missing = V2Error::new(100, "/missing", 33);
        assert_eq!(missing.status(), 404);
        assert_eq!(
            missing.body(),
            "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/missing\",\"index\":33}\n"
        );
        assert_eq!(V2Error::new(101, "[a != b]", 3).status(), 412);
        assert_eq!(V2Error::new(202, "", 0).status(), 400);
        assert_eq!(V2Error::new(108, "", 0).status(), 403);
        assert_eq!(V2Error::new(300, "", 0).status(), 500);
    }

    #[test]
    fn nodes_keep_etcds_field_order_and_go_escapes() {
        let action = Action {
            action: "set",
            node: Node {
                key: Some("/a<b>&".into()),
                value: Some(String::new()),
                ttl: Some(5),
                expiration: Some("x".into()),
                modified_index: Some(4),
                created_index: Some(2),
                ..Node::default()
            },
            prev_node: None,
            created: false,
            index: 4,
        };
        assert_eq!(
            action.body(),
            "{\"action\":\"set\",\"node\":{\"key\":\"/a\\u003cb\\u003e\\u0026\",\"value\":\"\",\
             \"expiration\":\"x\",\"ttl\":5,\"modifiedIndex\":4,\"createdIndex\":2}}\n"
        );
        let root = Node {
            dir: true,
            ..Node::default()
        };
        assert_eq!(go_json(&root), "{\"dir\":true}\n");
    }

    #[test]
    fn times_print_as_rfc3339_with_nanoseconds() {
        assert_eq!(rfc3339_nanos(Duration::ZERO), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nanos(Duration::new(1_796_347_657, 334_268_260)),
            "2026-12-04T01:27:37.33426826Z"
        );
        assert_eq!(
            rfc3339_nanos(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }
}
