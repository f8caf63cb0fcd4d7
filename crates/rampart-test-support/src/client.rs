//! Clients for tests: raw bytes over TCP, HTTP/1.1, h2c, HTTPS (HTTP/1.1 or h2 by ALPN) and
//! WebSocket. Every exchange is bounded by a timeout (the caller's, or
//! [`DEFAULT_TIMEOUT`]) so a misbehaving server fails the test instead
//! of hanging it, and every connection task is aborted when the helper returns.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{HOST, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, ProtocolVersion, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

use crate::pki::ClientIdentity;
use crate::{DEFAULT_TIMEOUT, GroupExecutor, ShutdownOnDrop, TaskGroup, crypto_provider};

// ---------------------------------------------------------------------------------------------
// Raw TCP
// ---------------------------------------------------------------------------------------------

/// What came back on a raw TCP exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawResponse {
    /// Every byte read, possibly several responses (pipelining) or a partial one.
    pub bytes: Vec<u8>,
    /// True if the server closed the connection (EOF or reset) before the timeout; false if
    /// it was still open when reading stopped.
    pub closed: bool,
}

/// One HTTP/1.x response parsed out of a [`RawResponse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedResponse {
    /// The status code.
    pub status: u16,
    /// Header fields in order, names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked if it was chunked.
    pub body: Vec<u8>,
}

impl ParsedResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl RawResponse {
    /// The status code of the first response's status line (`HTTP/1.x NNN ...`), if the
    /// bytes start with one.
    pub fn status(&self) -> Option<u16> {
        let line_end = find(&self.bytes, b"\r\n").unwrap_or(self.bytes.len());
        parse_status_line(self.bytes.get(..line_end)?)
    }

    /// All bytes as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The complete responses in the bytes, in order (framing by `content-length`, chunked
    /// encoding, or the connection close; 1xx, 204 and 304 have no body). Stops at the first
    /// incomplete or unparsable one. Responses to HEAD requests are not recognised as such.
    pub fn responses(&self) -> Vec<ParsedResponse> {
        let mut out = Vec::new();
        let mut rest = self.bytes.as_slice();
        while !rest.is_empty() {
            let Some((response, used)) = parse_response(rest, self.closed) else {
                break;
            };
            let switching = response.status == 101;
            out.push(response);
            // After a 101 the bytes belong to another protocol.
            if switching {
                break;
            }
            rest = rest.get(used..).unwrap_or_default();
        }
        out
    }

    /// The statuses of [`responses`](Self::responses).
    pub fn statuses(&self) -> Vec<u16> {
        self.responses().iter().map(|r| r.status).collect()
    }

    /// The first value of header `name` in the first response's head (which need not be
    /// complete past its head).
    pub fn header(&self, name: &str) -> Option<String> {
        let head_end = find(&self.bytes, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(self.bytes.get(..head_end)?).into_owned();
        parse_headers(&head)
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// Connects to `addr`, writes `request` as is, then reads until the server closes the
/// connection or `timeout` (counted from the start) runs out.
///
/// A write error is ignored (the server may answer and close before reading everything);
/// whatever it answered is still read. Panics if the connection cannot be made.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> RawResponse {
    raw_exchange_inner(addr, request, timeout, None).await
}

/// Like [`raw_exchange`], but returns as soon as `count` complete responses have arrived
/// (see [`RawResponse::responses`]) instead of waiting for the close or the timeout, which
/// keeps keep-alive tests fast. `closed` then says whether the server had also closed.
pub async fn raw_exchange_responses(
    addr: SocketAddr,
    request: &[u8],
    count: usize,
    timeout: Duration,
) -> RawResponse {
    raw_exchange_inner(addr, request, timeout, Some(count)).await
}

async fn raw_exchange_inner(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
    want_responses: Option<usize>,
) -> RawResponse {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| panic!("raw_exchange: connecting to {addr} timed out"))
        .unwrap_or_else(|e| panic!("raw_exchange: cannot connect to {addr}: {e}"));
    let _ = stream.set_nodelay(true);
    let _ = tokio::time::timeout_at(deadline, stream.write_all(request)).await;

    let mut response = RawResponse::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => break,
            Ok(Ok(0)) | Ok(Err(_)) => {
                response.closed = true;
                break;
            }
            Ok(Ok(n)) => {
                response
                    .bytes
                    .extend_from_slice(buf.get(..n).unwrap_or_default());
                if let Some(count) = want_responses
                    && response.responses().len() >= count
                {
                    break;
                }
            }
        }
    }
    response
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_status_line(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// Header lines of a head (the status line is skipped).
fn parse_headers(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}

/// Parses one response from the start of `buf`; returns it and the bytes it used.
fn parse_response(buf: &[u8], eof: bool) -> Option<(ParsedResponse, usize)> {
    let head_len = find(buf, b"\r\n\r\n")?;
    let head = std::str::from_utf8(buf.get(..head_len)?).ok()?;
    let status = parse_status_line(head.split("\r\n").next()?.as_bytes())?;
    let headers = parse_headers(head);
    let body_start = head_len + 4;
    let rest = buf.get(body_start..)?;
    let mut response = ParsedResponse {
        status,
        headers,
        body: Vec::new(),
    };

    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Some((response, body_start));
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut pos = 0;
        loop {
            let line_len = find(rest.get(pos..)?, b"\r\n")?;
            let line = std::str::from_utf8(rest.get(pos..pos + line_len)?).ok()?;
            let size_text = line.split(';').next()?.trim();
            let size = usize::from_str_radix(size_text, 16).ok()?;
            pos += line_len + 2;
            if size == 0 {
                // Trailer section: header lines up to an empty line.
                let trailers = rest.get(pos..)?;
                let end = if trailers.starts_with(b"\r\n") {
                    2
                } else {
                    find(trailers, b"\r\n\r\n")? + 4
                };
                return Some((response, body_start + pos + end));
            }
            response.body.extend_from_slice(rest.get(pos..pos + size)?);
            if rest.get(pos + size..pos + size + 2)? != b"\r\n" {
                return None;
            }
            pos += size + 2;
        }
    }
    if let Some(length) = response.header("content-length") {
        let length: usize = length.parse().ok()?;
        response.body = rest.get(..length)?.to_vec();
        return Some((response, body_start + length));
    }
    // Delimited by the connection close.
    if eof {
        response.body = rest.to_vec();
        return Some((response, buf.len()));
    }
    None
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 and h2c
// ---------------------------------------------------------------------------------------------

/// Formats an error with its whole `source()` chain (hyper's own message rarely says what
/// went wrong underneath).
pub fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// GET `path` over a fresh plain HTTP/1.1 connection with the given extra headers; `Host` is
/// `127.0.0.1:PORT` unless given. Panics if the exchange fails or takes longer than
/// [`DEFAULT_TIMEOUT`].
pub async fn http1_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response<Bytes> {
    let mut builder = Request::get(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    http1_request(addr, request)
        .await
        .unwrap_or_else(|e| panic!("http1_get {path} on {addr}: {}", error_chain(&e)))
}

/// Sends `request` over a fresh plain HTTP/1.1 connection and collects the response body.
/// A missing `Host` header is set to `addr` (`127.0.0.1:PORT`); the URI is sent as given
/// (origin-form for `/path`, absolute-form for `http://...`).
///
/// Returns hyper's error if the exchange fails; panics if the TCP connection cannot be
/// made or the whole exchange takes longer than [`DEFAULT_TIMEOUT`].
pub async fn http1_request(
    addr: SocketAddr,
    mut request: Request<Full<Bytes>>,
) -> Result<Response<Bytes>, hyper::Error> {
    if !request.headers().contains_key(HOST) {
        let host = HeaderValue::from_str(&addr.to_string()).expect("address is a valid host");
        request.headers_mut().insert(HOST, host);
    }
    let exchange = async {
        let stream = connect(addr).await;
        send_http1(stream, request).await
    };
    tokio::time::timeout(DEFAULT_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("HTTP/1.1 exchange with {addr} timed out"))
}

/// GET `path` over a fresh cleartext HTTP/2 connection (prior knowledge), with the URI
/// `http://ADDR{path}`. Panics if the exchange fails or times out.
pub async fn h2c_get(addr: SocketAddr, path: &str) -> Response<Bytes> {
    let request = Request::get(path)
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    h2c_request(addr, request)
        .await
        .unwrap_or_else(|e| panic!("h2c_get {path} on {addr}: {}", error_chain(&e)))
}

/// Sends `request` over a fresh cleartext HTTP/2 connection (prior knowledge). A URI without
/// scheme and authority gets `http://ADDR`. Panics if the TCP connection cannot be made or
/// the exchange takes longer than [`DEFAULT_TIMEOUT`].
pub async fn h2c_request(
    addr: SocketAddr,
    mut request: Request<Full<Bytes>>,
) -> Result<Response<Bytes>, hyper::Error> {
    if request.uri().authority().is_none() {
        *request.uri_mut() = absolute_uri("http", &addr.to_string(), request.uri());
    }
    let exchange = async {
        let stream = connect(addr).await;
        send_h2(stream, request).await
    };
    tokio::time::timeout(DEFAULT_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("h2c exchange with {addr} timed out"))
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    let _ = stream.set_nodelay(true);
    stream
}

fn absolute_uri(scheme: &str, authority: &str, uri: &Uri) -> Uri {
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    format!("{scheme}://{authority}{path}")
        .parse()
        .expect("valid absolute URI")
}

async fn send_http1<IO>(
    io: IO,
    request: Request<Full<Bytes>>,
) -> Result<Response<Bytes>, hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tasks = TaskGroup::default();
    let _shutdown = ShutdownOnDrop(tasks.clone());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tasks.spawn(async move {
        let _ = conn.await;
    });
    let response = sender.send_request(request).await?;
    collect(response).await
}

async fn send_h2<IO>(io: IO, request: Request<Full<Bytes>>) -> Result<Response<Bytes>, hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tasks = TaskGroup::default();
    let _shutdown = ShutdownOnDrop(tasks.clone());
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(GroupExecutor(tasks.clone()), TokioIo::new(io))
            .await?;
    tasks.spawn(async move {
        let _ = conn.await;
    });
    let response = sender.send_request(request).await?;
    collect(response).await
}

async fn collect(
    response: Response<hyper::body::Incoming>,
) -> Result<Response<Bytes>, hyper::Error> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// The outcome of [`tls_get`].
#[derive(Debug)]
pub struct TlsResponse {
    /// The response, body collected.
    pub response: Response<Bytes>,
    /// The ALPN protocol the server chose, if any.
    pub alpn: Option<Vec<u8>>,
    /// The negotiated TLS version.
    pub version: Option<ProtocolVersion>,
    /// The server's leaf certificate, DER.
    pub peer_cert_der: Vec<u8>,
}

/// A rustls client config (aws-lc-rs provider, TLS 1.2 and 1.3) trusting only the
/// certificates in `ca_pem`, presenting `client` if given, offering `alpn` (empty: no ALPN).
pub fn tls_client_config(
    ca_pem: &str,
    client: Option<&ClientIdentity>,
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.expect("CA PEM parses"))
            .expect("CA is a valid trust anchor");
    }
    assert!(!roots.is_empty(), "no certificate in the CA PEM");
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let mut config = match client {
        Some(identity) => {
            let chain = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("client cert PEM parses");
            let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
                .expect("client key PEM parses");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client identity is usable")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// GET `path` over a fresh TLS connection to `addr`, verifying the server as `server_name`
/// (`localhost` or `127.0.0.1` for [`TestPki`](crate::pki::TestPki)'s certificate). Speaks
/// HTTP/2 if ALPN picked `h2`, else HTTP/1.1 with `Host: {server_name}:{port}`.
///
/// Any failure — TCP connect, handshake, or the request (with TLS 1.3 a rejected client
/// certificate only shows up there, as the server's alert) — is `Err` with the error chain
/// as text; so is taking longer than [`DEFAULT_TIMEOUT`].
pub async fn tls_get(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
    path: &str,
) -> Result<TlsResponse, String> {
    tokio::time::timeout(
        DEFAULT_TIMEOUT,
        tls_get_inner(addr, server_name, config, path),
    )
    .await
    .map_err(|_| format!("TLS exchange with {addr} timed out"))?
}

async fn tls_get_inner(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
    path: &str,
) -> Result<TlsResponse, String> {
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| format!("invalid server name {server_name:?}: {e}"))?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {}", error_chain(&e)))?;

    let (_, session) = tls.get_ref();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let version = session.protocol_version();
    let peer_cert_der = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.to_vec())
        .unwrap_or_default();

    let authority = if server_name.contains(':') {
        format!("[{server_name}]:{}", addr.port())
    } else {
        format!("{server_name}:{}", addr.port())
    };
    let result = if alpn.as_deref() == Some(b"h2") {
        let request = Request::get(absolute_uri("https", &authority, &path_uri(path)?))
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("building request: {e}"))?;
        send_h2(tls, request).await
    } else {
        let request = Request::get(path)
            .header(HOST, &authority)
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("building request: {e}"))?;
        send_http1(tls, request).await
    };
    let response = result.map_err(|e| format!("request: {}", error_chain(&e)))?;
    Ok(TlsResponse {
        response,
        alpn,
        version,
        peer_cert_der,
    })
}

fn path_uri(path: &str) -> Result<Uri, String> {
    path.parse()
        .map_err(|e| format!("invalid path {path:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------------------

/// Opens `ws://ADDR{path}` (plain TCP), sends `message` as a text message and returns the
/// first text message received (then closes). `Err` with the error text if the handshake is
/// refused (e.g. `HTTP error: 426 Upgrade Required`), the connection ends first, or it takes
/// longer than [`DEFAULT_TIMEOUT`].
pub async fn ws_echo_roundtrip(
    addr: SocketAddr,
    path: &str,
    message: &str,
) -> Result<String, String> {
    let roundtrip = async {
        let url = format!("ws://{addr}{path}");
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| format!("websocket handshake: {e}"))?;
        ws.send(Message::text(message))
            .await
            .map_err(|e| format!("websocket send: {e}"))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let _ = ws.close(None).await;
                    return Ok(text.as_str().to_owned());
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(format!("websocket closed by peer: {frame:?}"));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("websocket receive: {e}")),
                None => return Err("websocket ended without a reply".to_owned()),
            }
        }
    };
    tokio::time::timeout(DEFAULT_TIMEOUT, roundtrip)
        .await
        .map_err(|_| format!("websocket roundtrip with {addr} timed out"))?
}
