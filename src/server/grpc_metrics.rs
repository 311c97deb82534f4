//! etcd's gRPC metrics (go-grpc-prometheus' `grpc_server_*` and etcd's client byte counters)
//! for every call of etcd's services, unary and streaming alike: an axum middleware in front of
//! the gRPC routes sees each call start, counts the length-prefixed messages in both bodies, and
//! records the call as handled when its response ends — with the `grpc-status` the response
//! carried (trailers, or headers for an immediate error), or `Canceled` if the client went away
//! first. Only etcd's own methods get series, so a client cannot grow the label sets.
//! (Client-facing HTTP only; the simulator serves gRPC without it.)

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;

use axum::http::HeaderName;

use super::metrics::{
    GrpcCall, GrpcMethod, Metrics, GRPC_CANCELED, GRPC_UNKNOWN, MAX_GRPC_METHODS,
};

/// Every method of etcd's v3 services, with its gRPC type as go-grpc-prometheus names it.
const METHODS: &[(&str, &[&str])] = &[
    (
        "etcdserverpb.KV",
        &[
            "Range",
            "Put",
            "DeleteRange",
            "Txn",
            "Compact",
            "RangeStream",
        ],
    ),
    ("etcdserverpb.Watch", &["Watch"]),
    (
        "etcdserverpb.Lease",
        &[
            "LeaseGrant",
            "LeaseRevoke",
            "LeaseKeepAlive",
            "LeaseTimeToLive",
            "LeaseLeases",
        ],
    ),
    (
        "etcdserverpb.Cluster",
        &[
            "MemberAdd",
            "MemberRemove",
            "MemberUpdate",
            "MemberList",
            "MemberPromote",
        ],
    ),
    (
        "etcdserverpb.Maintenance",
        &[
            "Alarm",
            "Status",
            "Defragment",
            "Hash",
            "HashKV",
            "Snapshot",
            "MoveLeader",
            "Downgrade",
        ],
    ),
    (
        "etcdserverpb.Auth",
        &[
            "AuthEnable",
            "AuthDisable",
            "AuthStatus",
            "Authenticate",
            "UserAdd",
            "UserGet",
            "UserList",
            "UserDelete",
            "UserChangePassword",
            "UserGrantRole",
            "UserRevokeRole",
            "RoleAdd",
            "RoleGet",
            "RoleList",
            "RoleDelete",
            "RoleGrantPermission",
            "RoleRevokePermission",
        ],
    ),
];

/// How many methods `METHODS` lists; each has its place among the metrics' kept series.
const METHOD_COUNT: usize = {
    let mut count = 0;
    let mut service = 0;
    while service < METHODS.len() {
        count += METHODS[service].1.len();
        service += 1;
    }
    count
};
const _: () = assert!(METHOD_COUNT <= MAX_GRPC_METHODS);

/// The header a gRPC status travels in.
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// The method a request path (`/etcdserverpb.KV/Range`) names, if it is one of etcd's.
pub fn call_for_path(path: &str) -> Option<GrpcMethod> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let mut index = 0;
    let (service, methods) = METHODS.iter().find(|(name, methods)| {
        let found = *name == service;
        if !found {
            index += methods.len();
        }
        found
    })?;
    let at = methods.iter().position(|name| *name == method)?;
    let method = methods[at];
    index += at;
    let grpc_type = match method {
        "Watch" | "LeaseKeepAlive" => "bidi_stream",
        "Snapshot" | "RangeStream" => "server_stream",
        _ => "unary",
    };
    Some(GrpcMethod {
        labels: GrpcCall {
            grpc_type,
            grpc_service: service,
            grpc_method: method,
        },
        index,
    })
}

/// The `grpc-status` code in `headers`, if there is one.
fn grpc_status(headers: &axum::http::HeaderMap) -> Option<u32> {
    let value = headers.get(&GRPC_STATUS)?.to_str().ok()?;
    value.trim().parse().ok()
}

/// The middleware: counts the call if the path names one of etcd's methods.
pub async fn count_calls(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(call) = call_for_path(request.uri().path()) else {
        return next.run(request).await;
    };
    let started = Instant::now();
    metrics.grpc_started(&call);
    let request = request.map(|body| {
        Body::new(Counted {
            inner: body,
            messages: Messages::default(),
            side: Side::Request,
            call: call.clone(),
            metrics: metrics.clone(),
        })
    });
    let response = next.run(request).await;
    let immediate = grpc_status(response.headers());
    response.map(|body| {
        Body::new(Counted {
            inner: body,
            messages: Messages::default(),
            side: Side::Response {
                started,
                code: immediate,
                recorded: false,
            },
            call,
            metrics,
        })
    })
}

/// Finds the boundaries of gRPC's length-prefixed messages (1 flag byte, 4 length bytes, the
/// message) in a body that arrives in arbitrary pieces.
#[derive(Debug, Default)]
pub struct Messages {
    prefix: [u8; 5],
    prefix_len: usize,
    /// Bytes of the current message still to come (after its prefix).
    remaining: u64,
}

impl Messages {
    /// Takes the next piece of the body; the whole messages it completed and their lengths.
    pub fn feed(&mut self, mut data: &[u8]) -> (u64, u64) {
        let (mut messages, mut bytes) = (0, 0);
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(data.len() as u64);
                self.remaining -= take;
                data = &data[take as usize..];
                if self.remaining == 0 {
                    messages += 1;
                }
                continue;
            }
            let take = (5 - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&data[..take]);
            self.prefix_len += take;
            data = &data[take..];
            if self.prefix_len == 5 {
                self.prefix_len = 0;
                let length = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]);
                self.remaining = u64::from(length);
                bytes += u64::from(length);
                if length == 0 {
                    messages += 1;
                }
            }
        }
        (messages, bytes)
    }
}

enum Side {
    Request,
    Response {
        started: Instant,
        /// The status code, once the response said it.
        code: Option<u32>,
        recorded: bool,
    },
}

/// A body whose messages are counted as they pass.
struct Counted {
    inner: Body,
    messages: Messages,
    side: Side,
    call: GrpcMethod,
    metrics: Arc<Metrics>,
}

impl Counted {
    fn record_handled(&mut self, gone: bool) {
        if let Side::Response {
            started,
            code,
            recorded,
        } = &mut self.side
        {
            if !*recorded {
                *recorded = true;
                // A response that ends without a status was cut short: the client left.
                let code = code.unwrap_or(if gone { GRPC_CANCELED } else { GRPC_UNKNOWN });
                self.metrics
                    .grpc_handled(&self.call, code, started.elapsed());
            }
        }
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let (messages, bytes) = this.messages.feed(data);
                    match this.side {
                        Side::Request => this.metrics.grpc_received(&this.call, messages, bytes),
                        Side::Response { .. } => {
                            this.metrics.grpc_sent(&this.call, messages, bytes)
                        }
                    }
                }
                if let (Some(trailers), Side::Response { code, .. }) =
                    (frame.trailers_ref(), &mut this.side)
                {
                    *code = grpc_status(trailers).or(*code);
                }
            }
            Poll::Ready(None) => this.record_handled(false),
            Poll::Ready(Some(Err(_))) => this.record_handled(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.record_handled(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: &[u8]) -> Vec<u8> {
        let mut framed = vec![0];
        framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        framed.extend_from_slice(payload);
        framed
    }

    #[test]
    fn messages_are_counted_however_the_body_is_cut() {
        let mut body = message(b"hello");
        body.extend(message(b""));
        body.extend(message(&[7; 300]));
        for piece in 1..body.len() {
            let mut counter = Messages::default();
            let (mut messages, mut bytes) = (0, 0);
            for chunk in body.chunks(piece) {
                let (m, b) = counter.feed(chunk);
                messages += m;
                bytes += b;
            }
            assert_eq!((messages, bytes), (3, 305), "pieces of {piece}");
        }
    }

    #[test]
    fn a_message_is_counted_once_it_is_whole() {
        let mut counter = Messages::default();
        let body = message(b"abcdef");
        assert_eq!(counter.feed(&body[..7]).0, 0);
        assert_eq!(counter.feed(&body[7..]).0, 1);
    }

    #[test]
    fn only_etcds_methods_are_counted_with_their_types() {
        let call = call_for_path("/etcdserverpb.KV/Range").expect("KV.Range");
        assert_eq!(
            (call.labels.grpc_type, call.labels.grpc_service),
            ("unary", "etcdserverpb.KV")
        );
        assert_eq!(call.labels.grpc_method, "Range");
        let type_of = |path| call_for_path(path).map(|c| c.labels.grpc_type);
        assert_eq!(type_of("/etcdserverpb.Watch/Watch"), Some("bidi_stream"));
        assert_eq!(
            type_of("/etcdserverpb.Lease/LeaseKeepAlive"),
            Some("bidi_stream")
        );
        assert_eq!(
            type_of("/etcdserverpb.Maintenance/Snapshot"),
            Some("server_stream")
        );
        assert_eq!(
            type_of("/etcdserverpb.KV/RangeStream"),
            Some("server_stream")
        );
        assert_eq!(call_for_path("/etcdserverpb.KV/Nope"), None);
        assert_eq!(call_for_path("/made.up/Range"), None);
        assert_eq!(call_for_path("/health"), None);
    }

    #[test]
    fn every_method_has_a_place_of_its_own() {
        let mut places = std::collections::BTreeMap::new();
        for (service, methods) in METHODS {
            for method in *methods {
                let call = call_for_path(&format!("/{service}/{method}")).expect("a method");
                assert_eq!(
                    (call.labels.grpc_service, call.labels.grpc_method),
                    (*service, *method)
                );
                let earlier = places.insert(call.index, (*service, *method));
                assert_eq!(
                    earlier, None,
                    "{service}/{method} shares place {}",
                    call.index
                );
            }
        }
        assert_eq!(places.len(), METHOD_COUNT);
        assert!(places.keys().all(|&index| index < MAX_GRPC_METHODS));
    }

    #[test]
    fn statuses_are_read_from_the_grpc_status_header() {
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", " 14".parse().expect("a header value"));
        assert_eq!(grpc_status(&headers), Some(14));
        headers.insert("grpc-status", "nope".parse().expect("a header value"));
        assert_eq!(grpc_status(&headers), None);
    }
}
