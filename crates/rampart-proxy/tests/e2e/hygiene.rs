use std::time::{Duration, Instant};

use rampart_test_support::client::{http1_request, raw_exchange};
use rampart_test_support::upstream::MockUpstream;

use crate::common::{TempDir, config, start};

const ALL: &str = r#"
limits:
  max_header_count: 20
  max_header_bytes: 4KiB
  max_body_bytes: 1KiB
  header_read_timeout: 1s
  idle_timeout: 3s
routes:
  - name: all
    match: { prefix: / }
    upstream: up
"#;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn ambiguous_framing_gets_400_and_the_connection_closed() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let gw = start(&config(up.addr, &dir.path("a.log"), ALL)).await;
    let addr = gw.listener_addr("http").unwrap();
    let attacks: [&[u8]; 7] = [
        // CL.TE and TE.CL in both header orders.
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
        // Obfuscated Transfer-Encoding.
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        // Conflicting Content-Length.
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    ];
    for attack in attacks {
        let r = raw_exchange(addr, attack, WAIT).await;
        assert_eq!(
            r.status(),
            Some(400),
            "{}\n=> {}",
            String::from_utf8_lossy(attack),
            r.text()
        );
        assert!(
            r.closed,
            "connection left open after {}",
            String::from_utf8_lossy(attack)
        );
        assert_eq!(
            r.statuses().len(),
            1,
            "a smuggled request was answered: {}",
            r.text()
        );
    }
    assert_eq!(
        up.requests(),
        0,
        "an ambiguous request reached the upstream"
    );
    let lines = crate::common::log_lines(&dir.path("a.log"), 2).await;
    let event = lines.iter().find(|l| l["type"] == "security").unwrap();
    assert_eq!(event["layer"], "hygiene");
    assert_eq!(event["reason"], "content_length_and_transfer_encoding");
}

#[tokio::test]
async fn too_many_or_too_large_headers_get_431() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let gw = start(&config(up.addr, &dir.path("a.log"), ALL)).await;
    let addr = gw.listener_addr("http").unwrap();

    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..25 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let r = raw_exchange(addr, many.as_bytes(), WAIT).await;
    assert_eq!(r.status(), Some(431), "{}", r.text());

    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nx-big: {}\r\n\r\n",
        "v".repeat(5000)
    );
    let r = raw_exchange(addr, big.as_bytes(), WAIT).await;
    assert_eq!(r.status(), Some(431), "{}", r.text());

    // Far past hyper's own buffer: still 431, not a reset.
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nx-big: {}\r\n\r\n",
        "v".repeat(64 * 1024)
    );
    let r = raw_exchange(addr, huge.as_bytes(), WAIT).await;
    assert_eq!(r.status(), Some(431), "{}", r.text());
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_declared_or_streamed() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let gw = start(&config(up.addr, &dir.path("a.log"), ALL)).await;
    let addr = gw.listener_addr("http").unwrap();

    // Declared too large: refused before anything is read or sent upstream.
    let r = raw_exchange(
        addr,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(r.status(), Some(413), "{}", r.text());
    assert_eq!(up.requests(), 0);

    // Chunked, no length: cut off while streaming.
    let mut req = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'x'; 512]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = raw_exchange(addr, &req, WAIT).await;
    assert_eq!(r.status(), Some(413), "{}", r.text());

    // Within the limit: passes.
    let ok = http1_request(
        addr,
        http::Request::post("/")
            .body(http_body_util::Full::new(bytes::Bytes::from(vec![
                b'y';
                1000
            ])))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn slowloris_head_is_cut_off_by_the_header_timeout() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let gw = start(&config(up.addr, &dir.path("a.log"), ALL)).await;
    let addr = gw.listener_addr("http").unwrap();
    let started = Instant::now();
    // Half a head, then silence: the 1 s header timeout must close the connection.
    let r = raw_exchange(addr, b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ", WAIT).await;
    assert!(
        r.closed,
        "connection still open after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let gw = start(&config(up.addr, &dir.path("a.log"), ALL)).await;
    let addr = gw.listener_addr("http").unwrap();
    let started = Instant::now();
    let r = raw_exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(8),
    )
    .await;
    assert_eq!(r.status(), Some(200));
    assert!(r.closed, "idle connection never closed");
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "took {:?}",
        started.elapsed()
    );
}
