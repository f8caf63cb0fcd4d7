//! Bearer tokens end to end: a mock OpenID provider on loopback (discovery, JWKS, rotation,
//! outages), the gateway in front of the mock upstream.

use std::time::Duration;

use rampart_test_support::client::http1_get;
use rampart_test_support::idp::{KeyAlg, MockIdp, SigningKey};
use rampart_test_support::upstream::MockUpstream;

use crate::common::{TempDir, admin_delete, admin_post, config, echo, log_lines, metrics, start};

fn routes(idp: &MockIdp, cooldown: &str) -> String {
    format!(
        r#"
auth_providers:
  corp:
    issuer: "{issuer}"
    audiences: [rampart]
    typ: at+jwt
    jwks: {{ discovery: true, refetch_cooldown: {cooldown} }}
    forward_claims: {{ sub: x-user-id, scope: x-user-scopes }}
routes:
  - name: orders
    match: {{ prefix: /orders }}
    upstream: up
    auth: {{ providers: [corp], scopes: ["orders:read"] }}
  - name: public
    match: {{ prefix: /public }}
    upstream: up
    auth: {{ providers: [corp], optional: true }}
"#,
        issuer = idp.issuer()
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn reason(body: &[u8]) -> String {
    echo(body)["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn tokens_are_required_verified_scoped_and_their_claims_forwarded() {
    let idp = MockIdp::start().await;
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let gw = start(&config(up.addr, &dir.path("a.log"), &routes(&idp, "30s"))).await;
    let addr = gw.listener_addr("http").unwrap();

    // No credentials: 401 with a bare challenge (RFC 6750 §3.1), even with a forged
    // identity header.
    let r = http1_get(addr, "/orders/1", &[("x-user-id", "admin")]).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"rampart\"");
    assert_eq!(reason(r.body()), "missing_token");
    assert_eq!(up.requests(), 0);

    // A valid token: the upstream sees the verified subject, not the forged one.
    let token = idp.token("alice", "orders:read profile");
    let auth = bearer(&token);
    let r = http1_get(
        addr,
        "/orders/1",
        &[("authorization", &auth), ("x-user-id", "admin")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let seen = echo(r.body());
    assert_eq!(seen["headers"]["x-user-id"], "alice");
    assert_eq!(seen["headers"]["x-user-scopes"], "orders:read profile");

    // The right issuer but not the scope: 403 insufficient_scope naming the scope.
    let r = http1_get(
        addr,
        "/orders/1",
        &[("authorization", &bearer(&idp.token("bob", "profile")))],
    )
    .await;
    assert_eq!(r.status(), 403);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"orders:read\""), "{challenge}");

    // Expired, tampered, wrong audience, unpublished key: 401 invalid_token, each with
    // its reason.
    let mut expired = idp.claims("carol", "orders:read");
    expired["exp"] = serde_json::json!(1_000_000_000);
    expired["iat"] = serde_json::json!(999_999_000);
    let mut other_aud = idp.claims("dave", "orders:read");
    other_aud["aud"] = serde_json::json!("someone-else");
    let stranger = SigningKey::generate_with_kid(KeyAlg::Rs256, idp.current_key().kid());
    let forged = idp.mint_with(
        &serde_json::json!({"alg": "RS256", "typ": "at+jwt", "kid": stranger.kid()}),
        &idp.claims("mallory", "orders:read"),
        &stranger,
    );
    let mut tampered: Vec<&str> = token.split('.').collect();
    let evil_payload =
        base64_url(&serde_json::to_vec(&idp.claims("mallory", "orders:read")).unwrap());
    tampered[1] = &evil_payload;
    let tampered = tampered.join(".");
    for (t, why) in [
        (idp.mint(&expired), "expired"),
        (idp.mint(&other_aud), "bad_audience"),
        (forged, "bad_signature"),
        (tampered, "bad_signature"),
        ("not.a.jwt".to_string(), "bad_encoding"),
    ] {
        let r = http1_get(addr, "/orders/1", &[("authorization", &bearer(&t))]).await;
        assert_eq!(r.status(), 401, "{why}");
        assert_eq!(reason(r.body()), why);
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.starts_with("Bearer realm=\"rampart\", error=\"invalid_token\""),
            "{challenge}"
        );
    }
    // Two Authorization headers: 400 invalid_request.
    let r = http1_get(
        addr,
        "/orders/1",
        &[("authorization", &auth), ("authorization", &auth)],
    )
    .await;
    assert_eq!(r.status(), 400);

    // An optional route lets anonymous requests through and still refuses bad tokens.
    assert_eq!(http1_get(addr, "/public/x", &[]).await.status(), 200);
    let r = http1_get(addr, "/public/x", &[("authorization", "Bearer x.y.z")]).await;
    assert_eq!(r.status(), 401);

    assert_eq!(
        up.requests(),
        2,
        "only the admitted requests reached the upstream"
    );
    let m = metrics(gw.admin_addr()).await;
    for needle in [
        r#"rampart_auth_rejections_total{provider="none",reason="missing_token"} 1"#,
        r#"rampart_auth_rejections_total{provider="corp",reason="expired"} 1"#,
        r#"rampart_auth_rejections_total{provider="corp",reason="bad_signature"} 2"#,
        r#"rampart_denials_total{layer="auth",reason="insufficient_scope"} 1"#,
    ] {
        assert!(m.contains(needle), "{needle} not in\n{m}");
    }
    // The log names the subject and a hash of the token, never the token.
    let lines = log_lines(&dir.path("a.log"), 10).await;
    let text: String = lines.iter().map(|l| l.to_string()).collect();
    assert!(!text.contains(&token), "a token reached the log");
    let ok = lines
        .iter()
        .find(|l| l["user.id"] == "alice")
        .expect("an access line with the subject");
    assert_eq!(
        ok["rampart.credential.hash"].as_str().map(str::len),
        Some(16)
    );
}

fn base64_url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn key_rotation_kid_floods_and_an_identity_provider_outage() {
    let idp = MockIdp::start().await;
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let gw = start(&config(up.addr, &dir.path("a.log"), &routes(&idp, "1h"))).await;
    let addr = gw.listener_addr("http").unwrap();
    let get = |token: String| async move {
        http1_get(addr, "/orders/1", &[("authorization", &bearer(&token))]).await
    };
    assert_eq!(get(idp.token("alice", "orders:read")).await.status(), 200);
    let fetches = idp.jwks_fetches();

    // The provider rotates: a token under the new kid is accepted on first use, after one
    // fetch (even though the refetch cooldown of an hour has not passed since startup:
    // the first unknown kid is always worth one fetch).
    idp.rotate(true);
    assert_eq!(get(idp.token("alice", "orders:read")).await.status(), 200);
    assert_eq!(idp.jwks_fetches(), fetches + 1, "one fetch for the new kid");

    // A flood of random kids: refused, and the identity provider is not hammered.
    let stranger = SigningKey::generate(KeyAlg::Rs256);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let t = idp.mint_with(
            &serde_json::json!({"alg": "RS256", "typ": "at+jwt", "kid": format!("random-{i}")}),
            &idp.claims("mallory", "orders:read"),
            &stranger,
        );
        tasks.spawn(get(t));
    }
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(reason(r.body()), "unknown_kid");
    }
    assert!(
        idp.jwks_fetches() <= fetches + 1,
        "the kid flood caused {} fetches",
        idp.jwks_fetches() - fetches - 1
    );

    // The identity provider goes down: the last good keys keep serving.
    idp.set_down(true);
    assert_eq!(get(idp.token("bob", "orders:read")).await.status(), 200);
    idp.set_down(false);
    gw.shutdown().await;
}

#[tokio::test]
async fn revoked_tokens_and_subjects_are_refused_until_the_revocation_is_removed() {
    let idp = MockIdp::start().await;
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let gw = start(&config(up.addr, &dir.path("a.log"), &routes(&idp, "30s"))).await;
    let (addr, admin) = (gw.listener_addr("http").unwrap(), gw.admin_addr());
    let claims = idp.claims("alice", "orders:read");
    let jti = claims["jti"].as_str().unwrap().to_string();
    let token = idp.mint(&claims);
    let auth = bearer(&token);
    assert_eq!(
        http1_get(addr, "/orders/1", &[("authorization", &auth)])
            .await
            .status(),
        200
    );

    let post = |body| admin_post(admin, "/revocations", body);
    assert_eq!(
        post(serde_json::json!({"provider": "corp", "jti": jti})).await,
        200
    );
    // Cached or not, the revoked token is refused from now on.
    let r = http1_get(addr, "/orders/1", &[("authorization", &auth)]).await;
    assert_eq!(
        (r.status().as_u16(), reason(r.body())),
        (401, "revoked".to_string())
    );
    // Another token of the same subject is not affected...
    let fresh = bearer(&idp.token("alice", "orders:read"));
    assert_eq!(
        http1_get(addr, "/orders/1", &[("authorization", &fresh)])
            .await
            .status(),
        200
    );
    // ...until every token of the subject issued before now is cut off.
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let cut_off = serde_json::json!({"issuer": idp.issuer(), "subject": "alice", "before": later});
    assert_eq!(post(cut_off).await, 200);
    let r = http1_get(addr, "/orders/1", &[("authorization", &fresh)]).await;
    assert_eq!(reason(r.body()), "revoked");
    let bob = bearer(&idp.token("bob", "orders:read"));
    assert_eq!(
        http1_get(addr, "/orders/1", &[("authorization", &bob)])
            .await
            .status(),
        200
    );

    let list = echo(http1_get(admin, "/revocations", &[]).await.body());
    assert_eq!(list["tokens"][0]["jti"], jti.as_str());
    assert_eq!(list["subjects"][0]["subject"], "alice");
    // Bad requests are refused with a reason.
    assert_eq!(post(serde_json::json!({"provider": "corp"})).await, 400);
    assert_eq!(
        admin_delete(admin, "/revocations?provider=corp&subject=alice").await,
        200
    );
    assert_eq!(
        http1_get(addr, "/orders/1", &[("authorization", &fresh)])
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
}

fn sha256_hex(s: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

#[tokio::test]
async fn api_keys_authenticate_by_digest_and_bad_credentials_feed_the_ban() {
    let idp = MockIdp::start().await;
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let extra = format!(
        r#"
api_keys:
  keys:
    - {{ sha256: "sha256:{gold}", subject: billing, tier: gold, scopes: ["invoices:read"] }}
    - {{ sha256: "sha256:{plain}", subject: reader }}
rate_limits:
  guard: {{ rate: 1000/m, burst: 1000, ban: {{ after: 3, within: 1m, duration: 1m }} }}
auth_providers:
  corp:
    issuer: "{issuer}"
    audiences: [rampart]
    jwks: {{ discovery: true }}
routes:
  - name: billing
    match: {{ prefix: /billing }}
    upstream: up
    auth: {{ api_keys: true, scopes: ["invoices:read"] }}
  - name: orders
    match: {{ prefix: /orders }}
    upstream: up
    rate_limit: [guard]
    auth: {{ providers: [corp], api_keys: true }}
"#,
        gold = sha256_hex("rk_test_gold"),
        plain = sha256_hex("rk_test_plain"),
        issuer = idp.issuer(),
    );
    let gw = start(&config(up.addr, &dir.path("a.log"), &extra)).await;
    let addr = gw.listener_addr("http").unwrap();

    let r = http1_get(addr, "/billing/1", &[]).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "ApiKey realm=\"rampart\", header=\"x-api-key\""
    );
    let r = http1_get(addr, "/billing/1", &[("x-api-key", "rk_test_nope")]).await;
    assert_eq!(
        (r.status().as_u16(), reason(r.body())),
        (401, "invalid_api_key".into())
    );
    let r = http1_get(addr, "/billing/1", &[("x-api-key", "rk_test_gold")]).await;
    assert_eq!(r.status(), 200);
    assert!(
        echo(r.body())["headers"].get("x-api-key").is_none(),
        "the key does not go upstream"
    );
    let r = http1_get(addr, "/billing/1", &[("x-api-key", "rk_test_plain")]).await;
    assert_eq!(r.status(), 403, "a key without the scope");
    // A key and a token at once: which one is meant is ambiguous.
    let token = bearer(&idp.token("alice", ""));
    let r = http1_get(
        addr,
        "/orders/1",
        &[("x-api-key", "rk_test_plain"), ("authorization", &token)],
    )
    .await;
    assert_eq!(r.status(), 400);
    // Either credential works on a route that takes both.
    assert_eq!(
        http1_get(addr, "/orders/1", &[("authorization", &token)])
            .await
            .status(),
        200
    );
    assert_eq!(
        http1_get(addr, "/orders/1", &[("x-api-key", "rk_test_plain")])
            .await
            .status(),
        200
    );
    // Guessing: three bad credentials ban the client, whatever it sends next.
    for bad in ["Bearer a.b.c", "Bearer x.y.z", "Bearer q.r.s"] {
        let r = http1_get(addr, "/orders/1", &[("authorization", bad)]).await;
        assert_eq!(r.status(), 401);
    }
    let r = http1_get(addr, "/orders/1", &[("authorization", &token)]).await;
    assert_eq!(
        (r.status().as_u16(), reason(r.body())),
        (429, "banned".into())
    );
    let lines = log_lines(&dir.path("a.log"), 8).await;
    assert!(lines.iter().any(|l| l["user.id"] == "billing"));
}

#[tokio::test]
async fn opaque_tokens_are_introspected_cached_and_fail_closed() {
    let idp = MockIdp::start().await;
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let secret = dir.path("client-secret");
    std::fs::write(&secret, format!("{}\n", idp.client_secret())).unwrap();
    let extra = format!(
        r#"
auth_providers:
  opaque:
    issuer: "{issuer}"
    introspection:
      url: "{url}"
      client_id: "{client}"
      client_secret_file: "{secret}"
      timeout: 500ms
    forward_claims: {{ sub: x-user-id }}
routes:
  - name: opaque
    match: {{ prefix: /opaque }}
    upstream: up
    auth: {{ providers: [opaque], scopes: [read] }}
"#,
        issuer = idp.issuer(),
        url = idp.introspection_url(),
        client = idp.client_id(),
        secret = secret.display(),
    );
    let gw = start(&config(up.addr, &dir.path("a.log"), &extra)).await;
    let addr = gw.listener_addr("http").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    idp.register_opaque(
        "op-live-1",
        serde_json::json!({"sub": "erin", "scope": "read", "exp": now + 600}),
        true,
    );
    idp.register_opaque("op-dead-1", serde_json::json!({}), false);

    let r = http1_get(addr, "/opaque/1", &[("authorization", "Bearer op-live-1")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(echo(r.body())["headers"]["x-user-id"], "erin");
    let asked = idp.introspections();
    let r = http1_get(addr, "/opaque/1", &[("authorization", "Bearer op-live-1")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        idp.introspections(),
        asked,
        "a returning token is served from the cache"
    );

    let r = http1_get(addr, "/opaque/1", &[("authorization", "Bearer op-dead-1")]).await;
    assert_eq!(
        (r.status().as_u16(), reason(r.body())),
        (401, "inactive".into())
    );

    // The server cannot answer: fail closed (503), never admit.
    idp.set_down(true);
    idp.register_opaque(
        "op-live-2",
        serde_json::json!({"sub": "frank", "scope": "read", "exp": now + 600}),
        true,
    );
    let r = http1_get(addr, "/opaque/1", &[("authorization", "Bearer op-live-2")]).await;
    assert_eq!(
        (r.status().as_u16(), reason(r.body())),
        (503, "defense_error".into())
    );
    idp.set_down(false);
    let r = http1_get(addr, "/opaque/1", &[("authorization", "Bearer op-live-2")]).await;
    assert_eq!(r.status(), 200, "failures are not cached");
}

#[tokio::test]
async fn tokens_come_only_from_where_the_provider_says() {
    let idp = MockIdp::start().await;
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let extra = format!(
        r#"
auth_providers:
  header: {{ issuer: "{issuer}", audiences: [rampart], jwks: {{ discovery: true }} }}
  cookie: {{ issuer: "{issuer}", audiences: [rampart], jwks: {{ discovery: true }}, token_from: {{ cookie: at }} }}
  query: {{ issuer: "{issuer}", audiences: [rampart], jwks: {{ discovery: true }}, token_from: {{ query: access_token }} }}
routes:
  - {{ name: h, match: {{ prefix: /h }}, upstream: up, auth: {{ providers: [header] }} }}
  - {{ name: c, match: {{ prefix: /c }}, upstream: up, auth: {{ providers: [cookie] }} }}
  - {{ name: q, match: {{ prefix: /q }}, upstream: up, auth: {{ providers: [query] }} }}
"#,
        issuer = idp.issuer()
    );
    let gw = start(&config(up.addr, &dir.path("a.log"), &extra)).await;
    let addr = gw.listener_addr("http").unwrap();
    let token = idp.token("alice", "");
    let in_query = format!("/h?access_token={token}");
    // Query-string tokens are off unless a provider names the parameter.
    let r = http1_get(addr, &in_query, &[]).await;
    assert_eq!(
        (r.status().as_u16(), reason(r.body())),
        (401, "missing_token".into())
    );
    let r = http1_get(
        addr,
        &format!("/q?page=2&access_token={token}&sort=asc"),
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        echo(r.body())["path"],
        "/q?page=2&sort=asc",
        "the token does not go upstream"
    );
    let cookie = format!("theme=dark; at={token}");
    assert_eq!(
        http1_get(addr, "/c", &[("cookie", &cookie)]).await.status(),
        200
    );
    // A cookie provider does not read the Authorization header, and the other way round.
    let auth = bearer(&token);
    assert_eq!(
        http1_get(addr, "/c", &[("authorization", &auth)])
            .await
            .status(),
        401
    );
    assert_eq!(
        http1_get(addr, "/h", &[("cookie", &cookie)]).await.status(),
        401
    );
    assert_eq!(
        http1_get(addr, "/h", &[("authorization", &auth)])
            .await
            .status(),
        200
    );
    // Another scheme in Authorization is not a bearer token.
    let r = http1_get(
        addr,
        "/h",
        &[("authorization", "Basic YWxpY2U6d29uZGVybGFuZA==")],
    )
    .await;
    assert_eq!(reason(r.body()), "missing_token");
}
