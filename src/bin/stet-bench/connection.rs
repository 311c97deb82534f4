//! One gRPC connection of `stet-bench`: HTTP/2 straight over hyper, on plain TCP with
//! `TCP_NODELAY`, its writes batched by the server's own [`BatchingWriter`].
//!
//! The load generator shares the machine with the server it measures, so what it spends per
//! request is CPU taken from that server, stet or etcd alike. tonic's `Channel` costs two things
//! the bench does not need: a `tower` buffer (each request hops through a queue to a worker task
//! before it reaches hyper), and a `writev` for nearly every request, because hyper's HTTP/2 I/O
//! task flushes each time a request wakes it and the clients wake it one by one as their answers
//! come in. grpc-go's client, which etcd's own tools use, batches its writes. Here a client's
//! request goes to hyper without the buffer hop, and the requests issued while hyper's I/O task
//! yields once leave in one write. A connection is opened once: when it ends, the clients on it
//! stop (their failed requests are counted) rather than reconnect.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use stet::server::write_batch::BatchingWriter;
use tokio::net::TcpStream;
use tonic::body::Body;
use tonic::codegen::http::{uri, Request, Response, Uri};
use tonic::codegen::Service;

/// A handle on one HTTP/2 connection, cloned by every client that shares it. A tonic client
/// (`KvClient<Connection>`) sends its requests through it.
#[derive(Debug, Clone)]
pub struct Connection {
    sender: SendRequest<Body>,
    scheme: uri::Scheme,
    authority: uri::Authority,
}

impl Connection {
    /// Whether the connection ended (closed by the server, or failed): every request on it fails.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// Connects to `url` (`http://host:port`) and starts the HTTP/2 connection's task.
pub async fn connect(url: &Uri) -> Result<Connection, String> {
    let (host, port) = host_and_port(url)?;
    let stream = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|error| error.to_string())?;
    stream
        .set_nodelay(true)
        .map_err(|error| error.to_string())?;
    let io = TokioIo::new(BatchingWriter::new(stream));
    let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .map_err(|error| format!("HTTP/2 handshake: {}", error_chain(&error)))?;
    let named = url.clone();
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!(
                "stet-bench: connection to {named} ended: {}",
                error_chain(&error)
            );
        }
    });
    let authority = url
        .authority()
        .cloned()
        .ok_or_else(|| format!("{url}: no host"))?;
    Ok(Connection {
        sender,
        scheme: uri::Scheme::HTTP,
        authority,
    })
}

/// The host (an IPv6 address without its brackets) and port of an `http` URL; port 80 when the
/// URL names none. Any other scheme is refused: the bench speaks plain HTTP/2 only.
fn host_and_port(url: &Uri) -> Result<(String, u16), String> {
    match url.scheme_str() {
        Some("http") => {}
        other => return Err(format!("scheme {other:?} is not supported (only http://)")),
    }
    let host = url.host().ok_or_else(|| format!("{url}: no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), url.port_u16().unwrap_or(80)))
}

/// An error with its sources, since hyper's errors hide the cause one level down (and
/// some levels repeat the one below: those are skipped).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if parts.last() != Some(&part) {
            parts.push(part);
        }
        source = cause.source();
    }
    parts.join(": ")
}

impl Service<Request<Body>> for Connection {
    type Response = Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.sender.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // tonic gives the path only; HTTP/2 needs the scheme and authority too.
        let (mut head, body) = request.into_parts();
        let mut parts = head.uri.into_parts();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        head.uri = Uri::from_parts(parts).expect("a path with the endpoint's own scheme and host");
        Box::pin(self.sender.send_request(Request::from_parts(head, body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<(String, u16), String> {
        host_and_port(&url.parse::<Uri>().expect("a URI"))
    }

    #[test]
    fn http_urls_give_host_and_port() {
        assert_eq!(
            parse("http://127.0.0.1:2379"),
            Ok(("127.0.0.1".into(), 2379))
        );
        assert_eq!(parse("http://[::1]:23790"), Ok(("::1".into(), 23790)));
        assert_eq!(parse("http://localhost"), Ok(("localhost".into(), 80)));
    }

    #[test]
    fn other_schemes_are_refused_by_name() {
        let error = parse("https://127.0.0.1:2379").unwrap_err();
        assert!(error.contains("https"), "{error}");
    }
}
