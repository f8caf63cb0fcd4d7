//! The helpers exercised against each other.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode, Version};
use http_body_util::Full;
use rustls::ProtocolVersion;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{
    h2c_get, http1_get, http1_request, raw_exchange, raw_exchange_responses, tls_client_config,
    tls_get, ws_echo_roundtrip,
};
use crate::pki::{TestPki, cert_der_from_pem};
use crate::upstream::{MockUpstream, start_blackhole, start_closed_port};
use crate::wait_for_port;

const SHORT: Duration = Duration::from_secs(2);

fn json(body: &Bytes) -> Value {
    serde_json::from_slice(body).expect("JSON body")
}

/// Reads until EOF or error; true if that happened within `within`.
async fn sees_close(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let read_to_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_to_end).await.is_ok()
}

// ---- mock upstream over HTTP/1.1 ---------------------------------------------------------------

#[tokio::test]
async fn echo_reports_method_path_version_and_headers() {
    let upstream = MockUpstream::start().await;
    let response = http1_get(
        upstream.addr,
        "/some/path?a=1&b=two",
        &[("x-test", "hello"), ("accept", "a"), ("accept", "b")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["server"], "mock-upstream");
    assert_eq!(headers["x-powered-by"], "test");
    assert!(headers.get("connection").is_none());
    assert!(headers.get("keep-alive").is_none());

    let echo = json(response.body());
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/some/path?a=1&b=two");
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["headers"]["x-test"], "hello");
    assert_eq!(echo["headers"]["accept"], "a, b");
    assert_eq!(
        echo["headers"]["host"],
        format!("127.0.0.1:{}", upstream.addr.port())
    );
    assert_eq!(echo["body_len"], 0);
    assert_eq!(upstream.requests(), 1);
}

#[tokio::test]
async fn echo_counts_request_body_and_keeps_given_host() {
    let upstream = MockUpstream::start().await;
    let request = Request::post("/upload")
        .header("host", "api.example")
        .body(Full::new(Bytes::from(vec![b'a'; 100_000])))
        .expect("request");
    let response = http1_request(upstream.addr, request)
        .await
        .expect("exchange");
    let echo = json(response.body());
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body_len"], 100_000);
    assert_eq!(echo["headers"]["host"], "api.example");
    assert_eq!(echo["headers"]["content-length"], "100000");
}

#[tokio::test]
async fn absolute_form_request_shows_in_uri() {
    let upstream = MockUpstream::start().await;
    let response = raw_exchange(
        upstream.addr,
        b"GET http://upstream.test/x?y=1 HTTP/1.1\r\nHost: upstream.test\r\nConnection: close\r\n\r\n",
        SHORT,
    )
    .await;
    let parsed = response.responses();
    assert_eq!(parsed.len(), 1, "{}", response.text());
    let echo: Value = serde_json::from_slice(&parsed[0].body).expect("JSON");
    assert_eq!(echo["path"], "/x?y=1");
    assert_eq!(echo["uri"], "http://upstream.test/x?y=1");
}

#[tokio::test]
async fn raw_exchange_sees_status_and_close() {
    let upstream = MockUpstream::start().await;
    let response = raw_exchange(
        upstream.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        SHORT,
    )
    .await;
    assert_eq!(response.status(), Some(200));
    assert!(response.closed);
    assert!(response.text().contains("\"method\":\"GET\""));
    assert_eq!(response.header("Server").as_deref(), Some("mock-upstream"));
    assert_eq!(response.statuses(), vec![200]);
}

#[tokio::test]
async fn keep_alive_and_pipelining() {
    let upstream = MockUpstream::start().await;
    let request = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /status/404 HTTP/1.1\r\nHost: x\r\n\r\n";
    let started = Instant::now();
    let response = raw_exchange_responses(upstream.addr, request, 2, SHORT).await;
    assert!(started.elapsed() < SHORT, "returned on the second response");
    assert_eq!(response.statuses(), vec![200, 404]);
    assert!(!response.closed, "keep-alive connection stays open");
    assert_eq!(upstream.requests(), 2);
    assert_eq!(upstream.connections(), 1);

    // Waiting for the timeout with nothing more to read: still open.
    let response = raw_exchange(
        upstream.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(response.status(), Some(200));
    assert!(!response.closed);
}

#[tokio::test]
async fn hop_route_sends_hop_by_hop_headers() {
    let upstream = MockUpstream::start().await;
    let response = raw_exchange_responses(
        upstream.addr,
        b"GET /hop HTTP/1.1\r\nHost: x\r\n\r\n",
        1,
        SHORT,
    )
    .await;
    assert_eq!(response.status(), Some(200));
    // hyper passes a handler's `connection` header through unchanged.
    assert_eq!(response.header("connection").as_deref(), Some("x-hop"));
    assert_eq!(response.header("keep-alive").as_deref(), Some("timeout=5"));
    assert_eq!(response.header("x-hop").as_deref(), Some("secret"));
    assert!(!response.closed);
}

#[tokio::test]
async fn slow_route_waits() {
    let upstream = MockUpstream::start().await;
    let started = Instant::now();
    let response = http1_get(upstream.addr, "/slow?ms=150", &[]).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(json(response.body())["path"], "/slow?ms=150");
}

#[tokio::test]
async fn status_route() {
    let upstream = MockUpstream::start().await;
    let response = http1_get(upstream.addr, "/status/503", &[]).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.body().as_ref(), b"status 503\n");
    assert_eq!(response.headers()["server"], "mock-upstream");

    let response = http1_get(upstream.addr, "/status/204", &[]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.body().is_empty());

    let response = http1_get(upstream.addr, "/status/nope", &[]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bytes_route_sized_and_chunked() {
    let upstream = MockUpstream::start().await;
    let response = http1_get(upstream.addr, "/bytes?n=40000", &[]).await;
    assert_eq!(response.headers()["content-length"], "40000");
    assert_eq!(response.body().len(), 40_000);
    assert!(response.body().iter().all(|&b| b == b'x'));

    let raw = raw_exchange_responses(
        upstream.addr,
        b"GET /bytes?n=40000&chunked=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        1,
        SHORT,
    )
    .await;
    let parsed = raw.responses();
    assert_eq!(parsed[0].header("transfer-encoding"), Some("chunked"));
    assert_eq!(parsed[0].body.len(), 40_000);

    let response = http1_get(upstream.addr, "/bytes?n=0", &[]).await;
    assert!(response.body().is_empty());
}

#[tokio::test]
async fn websocket_echo() {
    let upstream = MockUpstream::start().await;
    let reply = ws_echo_roundtrip(upstream.addr, "/ws", "hello there").await;
    assert_eq!(reply.as_deref(), Ok("hello there"));

    let response = http1_get(upstream.addr, "/ws", &[]).await;
    assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);

    let refused = ws_echo_roundtrip(upstream.addr, "/", "x").await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn dropping_upstream_closes_its_connections() {
    let upstream = MockUpstream::start().await;
    let mut stream = TcpStream::connect(upstream.addr).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.expect("read");
    assert!(n > 0);

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", upstream.addr))
        .await
        .expect("websocket");
    ws.send("ping".into()).await.expect("send");
    assert!(matches!(ws.next().await, Some(Ok(m)) if m.is_text()));

    let addr = upstream.addr;
    drop(upstream);
    assert!(
        sees_close(&mut stream, SHORT).await,
        "HTTP connection closed"
    );
    let ended = tokio::time::timeout(SHORT, ws.next())
        .await
        .expect("ws ends");
    assert!(
        !matches!(ended, Some(Ok(ref m)) if m.is_text()),
        "{ended:?}"
    );
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn h2c_upstream_and_client() {
    let upstream = MockUpstream::start_h2c().await;
    let response = h2c_get(upstream.addr, "/p?q=1").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_2);
    let echo = json(response.body());
    assert_eq!(echo["version"], "HTTP/2.0");
    assert_eq!(echo["path"], "/p?q=1");
    assert_eq!(upstream.requests(), 1);
}

// ---- degenerate endpoints ----------------------------------------------------------------------

#[tokio::test]
async fn closed_port_refuses() {
    let addr = start_closed_port().await;
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn blackhole_accepts_and_never_answers() {
    let (addr, handle) = start_blackhole().await;
    let response = raw_exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_millis(200),
    )
    .await;
    assert!(response.bytes.is_empty());
    assert!(!response.closed);
    assert_eq!(response.status(), None);
    assert_eq!(handle.accepted(), 1);

    let mut stream = TcpStream::connect(addr).await.expect("connect");
    assert!(wait_for_port(addr, SHORT).await);
    drop(handle);
    assert!(
        sees_close(&mut stream, SHORT).await,
        "held connection closed"
    );
}

#[tokio::test]
async fn wait_for_port_sees_listener_and_gives_up_on_closed_port() {
    let upstream = MockUpstream::start().await;
    assert!(wait_for_port(upstream.addr, SHORT).await);
    let closed = start_closed_port().await;
    let started = Instant::now();
    assert!(!wait_for_port(closed, Duration::from_millis(100)).await);
    assert!(started.elapsed() < SHORT);
}

#[test]
fn clock_reexport_works() {
    use crate::clock::{Clock, ManualClock};
    let clock = ManualClock::new();
    let t0 = clock.now();
    clock.advance(Duration::from_secs(3));
    assert_eq!(clock.now() - t0, Duration::from_secs(3));
}

// ---- PKI and TLS -------------------------------------------------------------------------------

#[test]
fn pki_writes_files_and_cleans_up() {
    let pki = TestPki::new();
    let dir = pki.dir.clone();
    assert!(dir.starts_with(std::env::temp_dir()));
    assert_eq!(
        std::fs::read_to_string(&pki.ca_path).expect("ca"),
        pki.ca_pem
    );
    assert!(pki.server_cert_pem().contains("BEGIN CERTIFICATE"));
    let key = std::fs::read_to_string(&pki.server_key_path).expect("key");
    assert!(key.contains("BEGIN PRIVATE KEY"));
    assert_ne!(pki.client.cert_pem, pki.rogue_client.cert_pem);

    let other = TestPki::new();
    assert_ne!(other.dir, dir);
    assert_ne!(other.ca_pem, pki.ca_pem);

    let before = pki.server_cert_pem();
    let new_pem = pki.write_new_server_cert();
    assert_ne!(new_pem, before);
    assert_eq!(pki.server_cert_pem(), new_pem);
    assert_ne!(
        std::fs::read_to_string(&pki.server_key_path).expect("key"),
        key
    );

    drop(pki);
    assert!(!dir.exists());
}

#[tokio::test]
async fn tls_http1_and_h2_by_alpn() {
    let pki = TestPki::new();
    let upstream =
        MockUpstream::start_tls(pki.server_tls_config(false, &[b"h2", b"http/1.1"])).await;

    let config = tls_client_config(&pki.ca_pem, None, &[]);
    let got = tls_get(upstream.addr, "localhost", config, "/hello")
        .await
        .expect("TLS GET");
    assert_eq!(got.response.status(), StatusCode::OK);
    assert_eq!(got.alpn, None);
    assert_eq!(got.version, Some(ProtocolVersion::TLSv1_3));
    assert_eq!(got.peer_cert_der, cert_der_from_pem(&pki.server_cert_pem()));
    let echo = json(got.response.body());
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(
        echo["headers"]["host"],
        format!("localhost:{}", upstream.addr.port())
    );

    let config = tls_client_config(&pki.ca_pem, None, &[b"h2", b"http/1.1"]);
    let got = tls_get(upstream.addr, "127.0.0.1", config, "/h2?x=1")
        .await
        .expect("TLS GET over h2");
    assert_eq!(got.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(got.response.version(), Version::HTTP_2);
    let echo = json(got.response.body());
    assert_eq!(echo["version"], "HTTP/2.0");
    assert_eq!(echo["path"], "/h2?x=1");
}

#[tokio::test]
async fn tls_rejects_untrusted_server_and_wrong_name() {
    let pki = TestPki::new();
    let upstream = MockUpstream::start_tls(pki.server_tls_config(false, &[])).await;
    let untrusted = tls_client_config(&pki.rogue_ca_pem, None, &[]);
    let err = tls_get(upstream.addr, "localhost", untrusted, "/")
        .await
        .expect_err("untrusted CA");
    assert!(err.contains("handshake"), "{err}");
    let config = tls_client_config(&pki.ca_pem, None, &[]);
    let err = tls_get(upstream.addr, "other.test", config, "/")
        .await
        .expect_err("wrong name");
    assert!(err.contains("handshake"), "{err}");
}

#[tokio::test]
async fn tls_client_auth() {
    let pki = TestPki::new();
    let upstream =
        MockUpstream::start_tls(pki.server_tls_config(true, &[b"h2", b"http/1.1"])).await;

    for alpn in [&[][..], &[&b"h2"[..]][..]] {
        let good = tls_client_config(&pki.ca_pem, Some(&pki.client), alpn);
        let got = tls_get(upstream.addr, "localhost", good, "/")
            .await
            .expect("trusted client cert");
        assert_eq!(got.response.status(), StatusCode::OK);

        let rogue = tls_client_config(&pki.ca_pem, Some(&pki.rogue_client), alpn);
        let err = tls_get(upstream.addr, "localhost", rogue, "/")
            .await
            .expect_err("rogue client cert");
        assert!(!err.is_empty());

        let anonymous = tls_client_config(&pki.ca_pem, None, alpn);
        let err = tls_get(upstream.addr, "localhost", anonymous, "/")
            .await
            .expect_err("no client cert");
        assert!(!err.is_empty());
    }
    assert_eq!(
        upstream.requests(),
        2,
        "only the trusted client got through"
    );
}

#[tokio::test]
async fn reissued_server_cert_is_served_by_new_config() {
    let pki = TestPki::new();
    let old = cert_der_from_pem(&pki.server_cert_pem());
    let new_pem = pki.write_new_server_cert();
    let upstream = MockUpstream::start_tls(pki.server_tls_config(false, &[])).await;
    let config = tls_client_config(&pki.ca_pem, None, &[]);
    let got = tls_get(upstream.addr, "localhost", config, "/")
        .await
        .expect("TLS GET");
    assert_eq!(got.peer_cert_der, cert_der_from_pem(&new_pem));
    assert_ne!(got.peer_cert_der, old);
}
