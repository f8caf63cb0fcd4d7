use std::time::Duration;

use rampart_test_support::client::{h2c_get, http1_get, raw_exchange_responses, ws_echo_roundtrip};
use rampart_test_support::upstream::MockUpstream;

use crate::common::{TempDir, config, echo, start};

const ROUTES: &str = r#"
routes:
  - name: catch-all
    match: { prefix: / }
    upstream: up
  - name: user
    match: { path: "/users/{id}", methods: [GET] }
    upstream: up
  - name: me
    match: { path: /users/me, methods: [GET] }
    upstream: up
  - name: login
    match: { path: /login, methods: [POST] }
    upstream: up
  - name: admin
    match: { prefix: /admin }
    upstream: up
    ip_filter: { allow: ["10.0.0.0/8"] }
  - name: tenant
    match: { host: "*.example.com", prefix: / }
    upstream: up
"#;

#[tokio::test]
async fn routes_match_by_host_path_template_and_method() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let gw = start(&config(up.addr, &dir.path("access.log"), ROUTES)).await;
    let addr = gw.listener_addr("http").unwrap();

    let r = http1_get(addr, "/users/42?x=1", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(echo(r.body())["path"], "/users/42?x=1");

    // Admin is IP-filtered: 127.0.0.1 is not in 10.0.0.0/8.
    let r = http1_get(addr, "/admin/panel", &[]).await;
    assert_eq!(r.status(), 403);
    let body = echo(r.body());
    assert_eq!(body["reason"], "ip_denied");

    // Dot segments cannot step around the filter, encoded or not.
    for sneaky in [
        "/public/../admin/panel",
        "/public/%2e%2e/admin",
        "//admin",
        "/%61dmin",
    ] {
        let r = http1_get(addr, sneaky, &[]).await;
        assert_eq!(r.status(), 403, "{sneaky}");
    }
    // What is forwarded is the normalized path.
    let r = http1_get(addr, "/a/./b/../c", &[]).await;
    assert_eq!(echo(r.body())["path"], "/a/c");

    // Host-based route.
    let r = http1_get(addr, "/anything", &[("host", "shop.example.com")]).await;
    assert_eq!(r.status(), 200);

    assert_eq!(up.requests(), 3);
    drop(gw);
}

#[tokio::test]
async fn wrong_method_gets_405_with_allow_and_unknown_paths_404() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let routes = r#"
routes:
  - name: login
    match: { path: /login, methods: [POST] }
    upstream: up
"#;
    let gw = start(&config(up.addr, &dir.path("a.log"), routes)).await;
    let addr = gw.listener_addr("http").unwrap();
    let r = http1_get(addr, "/login", &[]).await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let r = http1_get(addr, "/nope", &[]).await;
    assert_eq!(r.status(), 404);
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn client_ip_is_the_rightmost_untrusted_hop_behind_trusted_proxies() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let extra = r#"
client_ip:
  trusted_proxies: ["127.0.0.0/8", "10.0.0.0/8"]
routes:
  - name: all
    match: { prefix: / }
    upstream: up
    ip_filter: { deny: ["198.51.100.7/32"] }
"#;
    let gw = start(&config(up.addr, &dir.path("a.log"), extra)).await;
    let addr = gw.listener_addr("http").unwrap();

    // 198.51.100.7 is the right-most untrusted hop: it is the client, and it is denied,
    // whatever it claims further left.
    let r = http1_get(
        addr,
        "/",
        &[("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.9")],
    )
    .await;
    assert_eq!(r.status(), 403);

    let r = http1_get(
        addr,
        "/",
        &[("x-forwarded-for", "198.51.100.7, 203.0.113.1")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let e = echo(r.body());
    assert_eq!(
        e["headers"]["x-forwarded-for"],
        "198.51.100.7, 203.0.113.1, 127.0.0.1"
    );
    assert_eq!(e["headers"]["x-forwarded-proto"], "http");
    assert!(
        e["headers"]["forwarded"].as_str().unwrap().ends_with(
            "for=127.0.0.1;proto=http;host=\"127.0.0.1:"
                .to_string()
                .as_str()
        ) || e["headers"]["forwarded"]
            .as_str()
            .unwrap()
            .contains("for=127.0.0.1;proto=http")
    );
    // A security event and two access lines; an access line is written when the response
    // body ends, which can be just after the client has it, so wait for all three.
    let lines = crate::common::log_lines(&dir.path("a.log"), 3).await;
    let access: Vec<_> = lines.iter().filter(|l| l["type"] == "access").collect();
    assert_eq!(access[0]["client.address"], "198.51.100.7");
    assert_eq!(access[1]["client.address"], "203.0.113.1");
    assert_eq!(access[1]["network.peer.address"], "127.0.0.1");
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_replaced() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let extra = "routes:\n  - name: all\n    match: { prefix: / }\n    upstream: up\n";
    let gw = start(&config(up.addr, &dir.path("a.log"), extra)).await;
    let addr = gw.listener_addr("http").unwrap();
    let r = http1_get(
        addr,
        "/",
        &[("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=6.6.6.6")],
    )
    .await;
    let e = echo(r.body());
    assert_eq!(e["headers"]["x-forwarded-for"], "127.0.0.1");
    assert!(
        !e["headers"]["forwarded"]
            .as_str()
            .unwrap()
            .contains("6.6.6.6")
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let extra = "routes:\n  - name: all\n    match: { prefix: / }\n    upstream: up\n";
    let gw = start(&config(up.addr, &dir.path("a.log"), extra)).await;
    let addr = gw.listener_addr("http").unwrap();
    let r = http1_get(
        addr,
        "/hop",
        &[
            ("connection", "x-secret, keep-alive"),
            ("x-secret", "token"),
            ("keep-alive", "timeout=100"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("x-kept", "yes"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    for gone in ["keep-alive", "x-hop"] {
        assert!(r.headers().get(gone).is_none(), "response kept {gone}");
    }
    // The upstream's Server and X-Powered-By are removed by the default policy.
    assert!(r.headers().get("server").is_none());
    assert!(r.headers().get("x-powered-by").is_none());
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let e = echo(r.body());
    for gone in ["x-secret", "keep-alive", "te", "proxy-authorization"] {
        assert!(e["headers"].get(gone).is_none(), "request kept {gone}: {e}");
    }
    assert_eq!(e["headers"]["x-kept"], "yes");
}

#[tokio::test]
async fn h2c_and_keep_alive_pipelining() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let extra = "routes:\n  - name: all\n    match: { prefix: / }\n    upstream: up\n";
    let gw = start(&config(up.addr, &dir.path("a.log"), extra)).await;
    let addr = gw.listener_addr("http").unwrap();
    let r = h2c_get(addr, "/h2").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(echo(r.body())["path"], "/h2");

    let two = b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nPOST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    let r = raw_exchange_responses(addr, two, 2, Duration::from_secs(5)).await;
    assert_eq!(r.statuses(), vec![200, 200]);
    assert_eq!(echo(&r.responses()[1].body)["body_len"], 3);
}

#[tokio::test]
async fn websocket_upgrade_passes_through_after_the_upstreams_101() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let extra = r#"
routes:
  - name: ws
    match: { path: /ws }
    upstream: up
  - name: no-ws
    match: { prefix: /nows }
    upstream: up
    websocket: false
"#;
    let gw = start(&config(up.addr, &dir.path("a.log"), extra)).await;
    let addr = gw.listener_addr("http").unwrap();
    let echoed = ws_echo_roundtrip(addr, "/ws", "hello through rampart")
        .await
        .unwrap();
    assert_eq!(echoed, "hello through rampart");
    // A route with WebSockets off strips the upgrade: the handshake fails.
    assert!(ws_echo_roundtrip(addr, "/nows", "x").await.is_err());
}
