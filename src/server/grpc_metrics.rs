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

use super::metrics::{GrpcCall, Metrics};

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

/// The call a request path (`/etcdserverpb.KV/Range`) names, if it is one of etcd's methods.
pub fn call_for_path(path: &str) -> Option<GrpcCall> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let (service, methods) = METHODS.iter().find(|(name, _)| *name == service)?;
    let method = methods.iter().find(|name| **name == method)?;
    let grpc_type = match *method {
        "Watch" | "LeaseKeepAlive" => "bidi_stream",
        "Snapshot" | "RangeStream" => "server_stream",
        _ => "unary",
    };
    Some(GrpcCall {
        grpc_type,
        grpc_service: service,
        grpc_method: method,
    })
}

/// The name go-grpc-prometheus gives a `grpc-status` code.
pub fn code_name(code: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES.get(code as usize).copied().unwrap_or("Unknown")
}

fn grpc_status(headers: &axum::http::HeaderMap) -> Option<&'static str> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(code_name(value.trim().parse().ok()?))
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
        /// The status, once the response said it.
        code: Option<&'static str>,
        recorded: bool,
    },
}

/// A body whose messages are counted as they pass.
struct Counted {
    inner: Body,
    messages: Messages,
    side: Side,
    call: GrpcCall,
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
                let code = code.unwrap_or(if gone { "Canceled" } else { "Unknown" });
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
            (call.grpc_type, call.grpc_service, call.grpc_method),
            ("unary", "etcdserverpb.KV", "Range")
        );
        assert_eq!(
            call_for_path("/etcdserverpb.Watch/Watch").map(|c| c.grpc_type),
            Some("bidi_stream")
        );
        assert_eq!(
            call_for_path("/etcdserverpb.Lease/LeaseKeepAlive").map(|c| c.grpc_type),
            Some("bidi_stream")
        );
        assert_eq!(
            call_for_path("/etcdserverpb.Maintenance/Snapshot").map(|c| c.grpc_type),
            Some("server_stream")
        );
        assert_eq!(
            call_for_path("/etcdserverpb.KV/RangeStream").map(|c| c.grpc_type),
            Some("server_stream")
        );
        assert_eq!(call_for_path("/etcdserverpb.KV/Nope"), None);
        assert_eq!(call_for_path("/made.up/Range"), None);
        assert_eq!(call_for_path("/health"), None);
    }

    #[test]
    fn status_codes_have_go_grpc_prometheus_names() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(1), "Canceled");
        assert_eq!(code_name(4), "DeadlineExceeded");
        assert_eq!(code_name(14), "Unavailable");
        assert_eq!(code_name(16), "Unauthenticated");
        assert_eq!(code_name(99), "Unknown");
    }
}
