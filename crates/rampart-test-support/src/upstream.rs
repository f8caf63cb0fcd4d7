//! A mock upstream HTTP server (HTTP/1.1; h2c and TLS variants too) and two degenerate TCP
//! endpoints (a closed port and a black hole) for testing the proxy's forwarding and failure
//! handling.
//!
//! [`MockUpstream`] routes by path:
//!
//! | path | answer |
//! | --- | --- |
//! | anything else | 200 JSON echo of the request (see below) |
//! | `/hop` | the echo, plus `keep-alive: timeout=5`, `x-hop: secret`, `connection: x-hop` |
//! | `/slow?ms=N` | the echo, after waiting N ms |
//! | `/status/N` | status N, `text/plain` body `status N\n` (empty for 204/304) |
//! | `/bytes?n=N` | N bytes of `x` in 16 KiB frames, with `content-length`; add `&chunked=1` for chunked transfer encoding instead |
//! | `/ws` | WebSocket echo (101) when the request asks for `Upgrade: websocket`, else 426 (without an `upgrade` header, to keep hop-by-hop headers out of answers) |
//!
//! The echo body is
//! `{"method": "GET", "path": "/a?b=c", "uri": "/a?b=c", "version": "HTTP/1.1",
//! "headers": {"host": "..."}, "body_len": 0}`: `path` is the path and query as received,
//! `uri` the full request target (differs only for absolute-form requests), header names are
//! lower case and repeated headers are joined with `", "`. The request body is always read
//! to the end (and counted) before the answer is sent, whatever the route. Every answer
//! carries `server: mock-upstream` and `x-powered-by: test` (and hyper's `date`); no
//! hop-by-hop header is added except on `/hop` and the 101 (`upgrade`, `connection`).
//!
//! Note that [`wait_for_port`](crate::wait_for_port) probes count in
//! [`MockUpstream::connections`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{CONNECTION, CONTENT_TYPE, HeaderValue, UPGRADE};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::{GroupExecutor, TaskGroup};

/// Size of the frames `/bytes` streams.
const CHUNK_SIZE: usize = 16 * 1024;
static CHUNK: [u8; CHUNK_SIZE] = [b'x'; CHUNK_SIZE];

type RespBody = BoxBody<Bytes, Infallible>;

/// A running mock upstream (HTTP/1.1 with keep-alive) on `127.0.0.1`. Dropping it aborts the
/// server and every connection it holds, WebSocket ones included.
#[derive(Debug)]
pub struct MockUpstream {
    /// The address it listens on.
    pub addr: SocketAddr,
    state: Arc<State>,
    tasks: TaskGroup,
}

#[derive(Debug)]
struct State {
    requests: AtomicUsize,
    connections: AtomicUsize,
    tasks: TaskGroup,
}

impl MockUpstream {
    /// Binds `127.0.0.1:0` and serves plain HTTP/1.1.
    pub async fn start() -> MockUpstream {
        Self::start_with(Transport::Http1).await
    }

    /// Like [`start`](Self::start) but serves cleartext HTTP/2 with prior knowledge (h2c)
    /// instead of HTTP/1.1. `/ws` answers 426 (no extended CONNECT).
    pub async fn start_h2c() -> MockUpstream {
        Self::start_with(Transport::H2c).await
    }

    /// Like [`start`](Self::start) but behind TLS with `config` (for instance
    /// [`TestPki::server_tls_config`](crate::pki::TestPki::server_tls_config)); speaks HTTP/2
    /// when ALPN picks `h2`, else HTTP/1.1. Failed handshakes just drop the connection.
    pub async fn start_tls(config: Arc<rustls::ServerConfig>) -> MockUpstream {
        Self::start_with(Transport::Tls(TlsAcceptor::from(config))).await
    }

    async fn start_with(transport: Transport) -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind mock upstream");
        let addr = listener.local_addr().expect("mock upstream local addr");
        let tasks = TaskGroup::default();
        let state = Arc::new(State {
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            tasks: tasks.clone(),
        });
        tasks.spawn(accept_loop(listener, state.clone(), transport));
        MockUpstream { addr, state, tasks }
    }

    /// How many requests it has received (counted when the request head arrives).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// How many TCP connections it has accepted; with keep-alive this stays below
    /// [`requests`](Self::requests).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// `http://127.0.0.1:PORT`, handy for proxy configs.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.tasks.shutdown();
    }
}

#[derive(Clone)]
enum Transport {
    Http1,
    H2c,
    Tls(TlsAcceptor),
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, transport: Transport) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Typically EMFILE; back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        state.connections.fetch_add(1, Ordering::SeqCst);
        let (conn_state, transport) = (state.clone(), transport.clone());
        state.tasks.spawn(async move {
            match transport {
                Transport::Http1 => serve_http1(stream, conn_state).await,
                Transport::H2c => serve_h2(stream, conn_state).await,
                Transport::Tls(acceptor) => {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                        serve_h2(tls, conn_state).await;
                    } else {
                        serve_http1(tls, conn_state).await;
                    }
                }
            }
        });
    }
}

async fn serve_http1<IO>(io: IO, state: Arc<State>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(req, state.clone()));
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
}

async fn serve_h2<IO>(io: IO, state: Arc<State>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let executor = GroupExecutor(state.tasks.clone());
    let service = service_fn(move |req| handle(req, state.clone()));
    let _ = http2::Builder::new(executor)
        .serve_connection(TokioIo::new(io), service)
        .await;
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<RespBody>, Infallible> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    if path == "/ws" {
        return Ok(websocket(req, &state));
    }

    let (parts, mut body) = req.into_parts();
    let mut body_len: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    body_len += data.len() as u64;
                }
            }
            // The client went away mid-body; nobody will read the answer.
            Err(_) => break,
        }
    }

    let response = if let Some(code) = path.strip_prefix("/status/") {
        status_response(code)
    } else if path == "/bytes" {
        let n = query_param(&parts.uri, "n")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let chunked = query_param(&parts.uri, "chunked").is_some_and(|v| v != "0");
        let mut response = Response::new(RepeatBody::new(n, !chunked).boxed());
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        response
    } else {
        if path == "/slow" {
            let ms = query_param(&parts.uri, "ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let mut response = echo_response(&parts, body_len);
        if path == "/hop" {
            let headers = response.headers_mut();
            headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
            headers.insert("x-hop", HeaderValue::from_static("secret"));
            headers.insert(CONNECTION, HeaderValue::from_static("x-hop"));
        }
        response
    };
    Ok(with_server_headers(response))
}

fn with_server_headers(mut response: Response<RespBody>) -> Response<RespBody> {
    let headers = response.headers_mut();
    headers.insert("server", HeaderValue::from_static("mock-upstream"));
    headers.insert("x-powered-by", HeaderValue::from_static("test"));
    response
}

fn full(body: impl Into<Bytes>) -> RespBody {
    Full::new(body.into()).boxed()
}

fn echo_response(parts: &http::request::Parts, body_len: u64) -> Response<RespBody> {
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let joined = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        headers.insert(name.as_str().to_owned(), serde_json::Value::String(joined));
    }
    let echo = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
        "uri": parts.uri.to_string(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_len": body_len,
    });
    let mut response = Response::new(full(echo.to_string()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn status_response(code: &str) -> Response<RespBody> {
    let status = code
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|s| s.as_u16() >= 200);
    let mut response = match status {
        Some(status) => {
            let body = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
                Bytes::new()
            } else {
                Bytes::from(format!("status {}\n", status.as_u16()))
            };
            let mut response = Response::new(full(body));
            *response.status_mut() = status;
            response
        }
        None => {
            let mut response = Response::new(full(format!("bad status {code:?}\n")));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
        }
    };
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn websocket(mut req: Request<Incoming>, state: &State) -> Response<RespBody> {
    let wants_websocket = req
        .headers()
        .get_all(UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("websocket"));
    let key = req.headers().get("sec-websocket-key").cloned();
    let (true, Some(key)) = (wants_websocket, key) else {
        let mut response = Response::new(full("websocket upgrade required\n"));
        *response.status_mut() = StatusCode::UPGRADE_REQUIRED;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return with_server_headers(response);
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    state.tasks.spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        // Pings are answered and close frames acknowledged by tungstenite itself; the loop
        // ends when the peer closes or the socket fails.
        while let Some(Ok(message)) = ws.next().await {
            if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                break;
            }
        }
    });

    let accept = derive_accept_key(key.as_bytes());
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&accept).expect("accept key is base64"),
    );
    with_server_headers(response)
}

/// The value of `name` in the URI's query (`a=1&b=2`; no percent-decoding).
fn query_param<'a>(uri: &'a http::Uri, name: &str) -> Option<&'a str> {
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// `n` bytes of `x`, produced in [`CHUNK_SIZE`] frames.
struct RepeatBody {
    remaining: u64,
    sized: bool,
}

impl RepeatBody {
    fn new(n: u64, sized: bool) -> Self {
        Self {
            remaining: n,
            sized,
        }
    }
}

impl Body for RepeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = usize::try_from(this.remaining).map_or(CHUNK_SIZE, |r| r.min(CHUNK_SIZE));
        this.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK).slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.sized {
            SizeHint::with_exact(self.remaining)
        } else {
            SizeHint::default()
        }
    }
}

/// An address on `127.0.0.1` where nothing listens (a listener was bound there and closed),
/// for connection-refused tests.
pub async fn start_closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind for closed port");
    listener.local_addr().expect("closed port local addr")
}

/// Keeps a black-hole server alive; dropping it aborts the server and closes every
/// connection it holds.
#[derive(Debug)]
pub struct Handle {
    accepted: Arc<AtomicUsize>,
    tasks: TaskGroup,
}

impl Handle {
    /// How many connections the black hole has accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.tasks.shutdown();
    }
}

/// A TCP server on `127.0.0.1` that accepts connections, reads and discards whatever is sent
/// and never answers, holding each connection open until the client closes it or the handle
/// is dropped. For upstream-timeout (504) tests.
pub async fn start_blackhole() -> (SocketAddr, Handle) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind black hole");
    let addr = listener.local_addr().expect("black hole local addr");
    let tasks = TaskGroup::default();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (loop_tasks, loop_accepted) = (tasks.clone(), accepted.clone());
    tasks.spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            loop_accepted.fetch_add(1, Ordering::SeqCst);
            loop_tasks.spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    (addr, Handle { accepted, tasks })
}
