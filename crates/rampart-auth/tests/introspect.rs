//! `rampart_auth::introspect` against the mock identity provider over real loopback sockets:
//! active and inactive tokens, the cache (hits, its lifetime bounded by the token's, refusals
//! cached briefly, failures never), fail-closed on every kind of failure, single-flight under
//! concurrency, timeouts, HTTPS with a private CA, and both client authentication methods.
//! Answers the mock cannot produce (malformed bodies, `client_secret_post`) come from a small
//! raw HTTP server in this file.

// Test helpers outside `#[test]` functions fail by panicking too.
#![allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rampart_auth::Rejection;
use rampart_auth::introspect::{
    ClientAuth, IntrospectRejection, IntrospectionSettings, Introspector,
};
use rampart_test_support::idp::{IdpConfig, KeyAlg, MockIdp};
use rampart_test_support::pki::TestPki;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

async fn idp() -> MockIdp {
    MockIdp::start_alg(KeyAlg::Es256).await
}

fn settings(idp: &MockIdp) -> IntrospectionSettings {
    IntrospectionSettings::new(
        idp.introspection_url(),
        idp.issuer(),
        idp.client_id(),
        idp.client_secret(),
    )
}

fn build(settings: IntrospectionSettings) -> Introspector {
    Introspector::new(settings).expect("valid settings")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn failed(outcome: Result<rampart_auth::TokenIdentity, IntrospectRejection>) -> String {
    match outcome {
        Err(IntrospectRejection::Failed(detail)) => detail,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn active_token_accepted_then_served_from_the_cache() {
    let idp = idp().await;
    let now = unix_now();
    idp.register_opaque(
        "opaque-alice",
        json!({
            "sub": "alice", "scope": "read write", "client_id": "app",
            "exp": now + 3600, "iat": now - 5, "jti": "j-1", "token_type": "Bearer",
        }),
        true,
    );
    let introspector = build(settings(&idp));

    let identity = introspector
        .introspect("opaque-alice", now)
        .await
        .expect("active");
    // No `iss` in the answer: the configured issuer.
    assert_eq!(identity.issuer, idp.issuer());
    assert_eq!(identity.subject, "alice");
    assert_eq!(identity.scopes, ["read", "write"]);
    assert_eq!(identity.client_id.as_deref(), Some("app"));
    assert_eq!(identity.jti.as_deref(), Some("j-1"));
    assert_eq!(identity.expires_at, Some(now + 3600));
    assert_eq!(identity.issued_at, Some(now - 5));
    assert_eq!(idp.introspections(), 1);

    let again = introspector
        .introspect("opaque-alice", now + 1)
        .await
        .expect("cached");
    assert_eq!(again, identity);
    assert_eq!(idp.introspections(), 1, "served from the cache");

    // Revoked at the provider: still cached until the maximum TTL (the documented price),
    // then asked again and refused.
    idp.revoke("opaque-alice");
    assert!(
        introspector
            .introspect("opaque-alice", now + 299)
            .await
            .is_ok()
    );
    assert_eq!(idp.introspections(), 1);
    assert_eq!(
        introspector.introspect("opaque-alice", now + 300).await,
        Err(IntrospectRejection::Inactive)
    );
    assert_eq!(idp.introspections(), 2);
}

#[tokio::test]
async fn inactive_token_refused_and_cached_briefly() {
    let idp = idp().await;
    let now = unix_now();
    idp.register_opaque("opaque-off", json!({ "sub": "bob" }), false);
    let introspector = build(settings(&idp));

    let refused = introspector.introspect("opaque-off", now).await;
    assert_eq!(refused, Err(IntrospectRejection::Inactive));
    assert_eq!(refused.expect_err("refused").reason(), "inactive");
    assert_eq!(idp.introspections(), 1);
    for _ in 0..20 {
        assert_eq!(
            introspector.introspect("opaque-off", now + 9).await,
            Err(IntrospectRejection::Inactive)
        );
    }
    assert_eq!(
        idp.introspections(),
        1,
        "a flood of one bad token: one request"
    );

    // Briefly: 10 s later the provider is asked again.
    assert_eq!(
        introspector.introspect("opaque-off", now + 10).await,
        Err(IntrospectRejection::Inactive)
    );
    assert_eq!(idp.introspections(), 2);

    assert_eq!(
        introspector.introspect("never-issued", now).await,
        Err(IntrospectRejection::Inactive)
    );
    // Refused before asking.
    assert_eq!(
        introspector.introspect("", now).await,
        Err(IntrospectRejection::Claims(Rejection::Malformed(
            "empty token"
        )))
    );
    let huge = "x".repeat(8 * 1024 + 1);
    assert_eq!(
        introspector
            .introspect(&huge, now)
            .await
            .map_err(|e| e.reason()),
        Err("too_large")
    );
    assert_eq!(idp.introspections(), 3);
}

#[tokio::test]
async fn active_answers_still_go_through_the_claim_policy() {
    let idp = idp().await;
    let now = unix_now();
    let introspector = build(settings(&idp));
    let cases = [
        // Refused although the provider says active.
        // The mock itself calls a token whose `exp` has passed inactive, so the caller's
        // clock is moved past it (and the 60 s leeway) instead.
        (
            "at-expired",
            json!({ "sub": "a", "exp": now + 3600 }),
            now + 3600 + 60,
            Rejection::Expired,
        ),
        (
            "at-nbf",
            json!({ "sub": "a", "nbf": now + 61, "exp": now + 3600 }),
            now,
            Rejection::NotYetValid,
        ),
        (
            "at-string-exp",
            json!({ "sub": "a", "exp": "soon" }),
            now,
            Rejection::BadClaimType("exp".into()),
        ),
        (
            "at-string-iat",
            json!({ "sub": "a", "iat": "yesterday" }),
            now,
            Rejection::BadClaimType("iat".into()),
        ),
        (
            "at-no-sub",
            json!({ "scope": "read" }),
            now,
            Rejection::MissingClaim("sub".into()),
        ),
        (
            "at-empty-sub",
            json!({ "sub": "" }),
            now,
            Rejection::BadClaimType("sub".into()),
        ),
        (
            "at-other-iss",
            json!({ "sub": "a", "iss": "https://elsewhere.example" }),
            now,
            Rejection::BadIssuer,
        ),
        // No audience configured: an answer with an `aud` is refused, as for a JWT.
        (
            "at-aud",
            json!({ "sub": "a", "aud": "api" }),
            now,
            Rejection::BadAudience,
        ),
    ];
    for (token, claims, at, expected) in cases {
        idp.register_opaque(token, claims, true);
        let refused = introspector.introspect(token, at).await;
        assert_eq!(
            refused,
            Err(IntrospectRejection::Claims(expected)),
            "{token}"
        );
    }

    // Audiences configured: `aud` must name one of them; a minted JWT introspected as an
    // opaque token carries the provider's `iss` and `aud: rampart`.
    let minted = idp.token("carol", "read");
    let audience = build(IntrospectionSettings {
        audiences: vec!["rampart".to_owned()],
        ..settings(&idp)
    });
    let identity = audience.introspect(&minted, now).await.expect("active");
    assert_eq!(identity.subject, "carol");
    assert_eq!(identity.scopes, ["read"]);
    let other = build(IntrospectionSettings {
        audiences: vec!["other-api".to_owned()],
        ..settings(&idp)
    });
    assert_eq!(
        other.introspect(&minted, now).await.map_err(|e| e.reason()),
        Err("bad_audience")
    );
    idp.register_opaque("no-aud", json!({ "sub": "dave" }), true);
    assert_eq!(
        audience.introspect("no-aud", now).await,
        Err(IntrospectRejection::Claims(Rejection::MissingClaim(
            "aud".into()
        )))
    );
}

#[tokio::test]
async fn wrong_client_secret_fails_closed() {
    let idp = idp().await;
    let now = unix_now();
    idp.register_opaque("opaque-1", json!({ "sub": "alice" }), true);
    let introspector = build(IntrospectionSettings {
        client_secret: "not-the-secret".to_owned(),
        ..settings(&idp)
    });
    let outcome = introspector.introspect("opaque-1", now).await;
    let rejection = outcome.clone().expect_err("refused");
    assert_eq!(rejection.reason(), "introspection_failed");
    assert!(rejection.is_failure());
    assert_eq!(failed(outcome), "status 401");
    // Not cached.
    failed(introspector.introspect("opaque-1", now).await);
    assert_eq!(idp.introspections(), 2);
}

#[tokio::test]
async fn provider_down_fails_closed_and_is_not_cached() {
    let idp = idp().await;
    let now = unix_now();
    idp.register_opaque("opaque-1", json!({ "sub": "alice" }), true);
    let introspector = build(settings(&idp));

    idp.set_down(true);
    assert_eq!(
        failed(introspector.introspect("opaque-1", now).await),
        "status 503"
    );
    failed(introspector.introspect("opaque-1", now).await);
    assert_eq!(idp.introspections(), 2, "failures are not cached");
    assert_eq!(introspector.cached_entries(), 0);

    idp.set_down(false);
    let identity = introspector
        .introspect("opaque-1", now)
        .await
        .expect("back up");
    assert_eq!(identity.subject, "alice");
    assert!(introspector.introspect("opaque-1", now).await.is_ok());
    assert_eq!(idp.introspections(), 3);

    // Nobody listening at all.
    drop(idp);
    let gone = idp_gone().await;
    let introspector = introspector_at(&gone);
    failed(introspector.introspect("opaque-1", now).await);
}

/// An introspection URL on a port where nothing listens.
async fn idp_gone() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/introspect")
}

fn introspector_at(url: &str) -> Introspector {
    build(IntrospectionSettings::new(
        url,
        "http://127.0.0.1",
        "rampart",
        "rampart-secret",
    ))
}

#[tokio::test]
async fn concurrent_introspections_of_one_token_share_one_request() {
    let idp = idp().await;
    let now = unix_now();
    idp.register_opaque("opaque-hot", json!({ "sub": "alice" }), true);
    idp.set_delay(Duration::from_millis(300));
    let introspector = build(settings(&idp));

    let mut tasks = JoinSet::new();
    for _ in 0..50 {
        let introspector = introspector.clone();
        tasks.spawn(async move { introspector.introspect("opaque-hot", now).await });
    }
    while let Some(outcome) = tasks.join_next().await {
        let identity = outcome.expect("task").expect("active");
        assert_eq!(identity.subject, "alice");
    }
    assert_eq!(idp.introspections(), 1);

    // Distinct tokens proceed in parallel: five 300 ms requests take about 300 ms.
    for i in 0..5 {
        idp.register_opaque(
            &format!("opaque-{i}"),
            json!({ "sub": format!("u{i}") }),
            true,
        );
    }
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..5 {
        let introspector = introspector.clone();
        tasks.spawn(async move { introspector.introspect(&format!("opaque-{i}"), now).await });
    }
    while let Some(outcome) = tasks.join_next().await {
        outcome.expect("task").expect("active");
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(1_200),
        "in parallel: {elapsed:?}"
    );
    assert_eq!(idp.introspections(), 6);

    // A failure reaches every waiter, and is not kept.
    idp.register_opaque("opaque-cold", json!({ "sub": "bob" }), true);
    idp.set_down(true);
    let mut tasks = JoinSet::new();
    for _ in 0..10 {
        let introspector = introspector.clone();
        tasks.spawn(async move { introspector.introspect("opaque-cold", now).await });
    }
    while let Some(outcome) = tasks.join_next().await {
        failed(outcome.expect("task"));
    }
    assert_eq!(idp.introspections(), 7);
    idp.set_down(false);
    idp.set_delay(Duration::ZERO);
    assert!(introspector.introspect("opaque-cold", now).await.is_ok());
    assert_eq!(idp.introspections(), 8);
}

#[tokio::test]
async fn the_cache_never_outlives_the_token() {
    let idp = idp().await;
    let now = unix_now();
    let exp = now + 2;
    idp.register_opaque("short-lived", json!({ "sub": "alice", "exp": exp }), true);
    let introspector = build(settings(&idp));

    assert!(introspector.introspect("short-lived", now).await.is_ok());
    assert!(
        introspector
            .introspect("short-lived", exp - 1)
            .await
            .is_ok()
    );
    assert_eq!(idp.introspections(), 1);

    // Wait until the token has expired by the wall clock (the mock's too).
    while unix_now() < exp {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        introspector.introspect("short-lived", unix_now()).await,
        Err(IntrospectRejection::Inactive)
    );
    assert_eq!(
        idp.introspections(),
        2,
        "asked again, not served from the cache"
    );
}

#[tokio::test]
async fn timeouts_bound_the_wait() {
    let idp = idp().await;
    let now = unix_now();
    idp.register_opaque("opaque-slow", json!({ "sub": "alice" }), true);
    idp.set_delay(Duration::from_secs(2));
    let timeout = Duration::from_millis(200);
    let introspector = build(IntrospectionSettings {
        timeout,
        ..settings(&idp)
    });

    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..5 {
        let introspector = introspector.clone();
        tasks.spawn(async move { introspector.introspect("opaque-slow", now).await });
    }
    while let Some(outcome) = tasks.join_next().await {
        let detail = failed(outcome.expect("task"));
        assert!(detail.starts_with("no answer within"), "{detail}");
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(800), "bounded: {elapsed:?}");
    assert_eq!(idp.introspections(), 1);

    idp.set_delay(Duration::ZERO);
    assert!(introspector.introspect("opaque-slow", now).await.is_ok());
}

#[tokio::test]
async fn https_with_a_private_ca() {
    let pki = TestPki::new();
    let idp = MockIdp::start_tls(
        IdpConfig {
            alg: KeyAlg::Es256,
            ..IdpConfig::default()
        },
        pki.server_tls_config(false, &[]),
    )
    .await;
    let now = unix_now();
    idp.register_opaque("opaque-tls", json!({ "sub": "alice" }), true);
    assert!(idp.introspection_url().starts_with("https://127.0.0.1:"));

    let trusted = build(IntrospectionSettings {
        extra_ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        ..settings(&idp)
    });
    assert!(trusted.introspect("opaque-tls", now).await.is_ok());

    // Without the CA the certificate is not trusted: fail closed.
    let untrusted = build(settings(&idp));
    let detail = failed(untrusted.introspect("opaque-tls", now).await);
    assert!(detail.contains("UnknownIssuer"), "{detail}");
}

#[tokio::test]
async fn client_authentication_basic_and_post() {
    let server = RawServer::start(ok_json(r#"{"active": true, "sub": "alice"}"#)).await;
    let now = unix_now();
    let settings = IntrospectionSettings {
        client_id: "my client".to_owned(),
        client_secret: "p:ss/wörd".to_owned(),
        ..IntrospectionSettings::new(server.url(), "https://idp.example", "x", "x")
    };

    let basic = build(settings.clone());
    assert!(basic.introspect("tok en+1", now).await.is_ok());
    let request = server.last_request();
    let expected = format!(
        "authorization: Basic {}\r\n",
        STANDARD.encode("my+client:p%3Ass%2Fw%C3%B6rd")
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains(&expected.to_ascii_lowercase()),
        "{request}"
    );
    assert!(
        request.starts_with("POST /introspect HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains("content-type: application/x-www-form-urlencoded\r\n"),
        "{request}"
    );
    assert!(
        request.ends_with("\r\n\r\ntoken=tok+en%2B1&token_type_hint=access_token"),
        "{request}"
    );

    let post = build(IntrospectionSettings {
        auth: ClientAuth::Post,
        ..settings
    });
    assert!(post.introspect("tok en+1", now).await.is_ok());
    let request = server.last_request();
    assert!(
        !request.to_ascii_lowercase().contains("authorization:"),
        "{request}"
    );
    assert!(
        request.ends_with(
            "\r\n\r\ntoken=tok+en%2B1&token_type_hint=access_token\
             &client_id=my+client&client_secret=p%3Ass%2Fw%C3%B6rd"
        ),
        "{request}"
    );
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn unusable_answers_fail_closed_and_are_not_cached() {
    let big = format!(r#"{{"active": true, "sub": "{}"}}"#, "a".repeat(70 * 1024));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "status 500",
            answer(
                "500 Internal Server Error",
                r#"{"active": true, "sub": "a"}"#,
            ),
        ),
        (
            "status 302",
            answer("302 Found", r#"{"active": true, "sub": "a"}"#),
        ),
        ("the answer is not JSON", ok_json("<html>hello</html>")),
        ("the answer is not JSON", ok_json("")),
        (
            "the answer is not JSON",
            ok_json(r#"{"active": true, "sub": "a"} trailing"#),
        ),
        ("the answer is not a JSON object", ok_json("[true]")),
        ("the answer is not a JSON object", ok_json("true")),
        (
            "the answer has no active member",
            ok_json(r#"{"sub": "a"}"#),
        ),
        (
            "active is not a boolean",
            ok_json(r#"{"active": "true", "sub": "a"}"#),
        ),
        (
            "active is not a boolean",
            ok_json(r#"{"active": 1, "sub": "a"}"#),
        ),
        (
            "active is not a boolean",
            ok_json(r#"{"active": null, "sub": "a"}"#),
        ),
        (
            "duplicate member name in the answer",
            ok_json(r#"{"active": false, "active": true, "sub": "a"}"#),
        ),
        ("answer larger than 65536 bytes", ok_json(&big)),
        // No Content-Length: the limit applies while reading.
        ("answer larger than 65536 bytes", close_delimited(&big)),
    ];
    let now = unix_now();
    for (expected, raw) in cases {
        let server = RawServer::start(raw).await;
        let introspector = introspector_at(&server.url());
        for round in 1..=2 {
            let detail = failed(introspector.introspect("opaque-1", now).await);
            assert!(detail.starts_with(expected), "{expected}: {detail}");
            assert_eq!(server.requests(), round, "{expected}: never cached");
        }
    }
}

// ---- a raw HTTP/1.1 server with a fixed answer ---------------------------------------------------

/// A `200 OK` JSON answer with a `Content-Length`.
fn ok_json(body: &str) -> Vec<u8> {
    answer("200 OK", body)
}

fn answer(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         location: /elsewhere\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A `200 OK` whose body ends when the connection closes.
fn close_delimited(body: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{body}")
        .into_bytes()
}

/// Answers every request with the same bytes and closes the connection; records each request
/// (head and body) as text.
struct RawServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl RawServer {
    async fn start(answer: Vec<u8>) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let record = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let (answer, record) = (answer.clone(), record.clone());
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut stream).await else {
                        return;
                    };
                    record.lock().expect("lock").push(request);
                    let _ = stream.write_all(&answer).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        RawServer { addr, seen, task }
    }

    fn url(&self) -> String {
        format!("http://{}/introspect", self.addr)
    }

    fn requests(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    fn last_request(&self) -> String {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a request")
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request: the head, then `Content-Length` bytes of body.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buffer).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                return Some(text);
            }
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}
