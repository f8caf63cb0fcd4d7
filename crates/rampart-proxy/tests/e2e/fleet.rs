//! A fleet of gateways sharing rate limits and bans through a real redis-server, and each
//! failure mode when that Redis dies or hangs.

use std::time::{Duration, Instant};

use rampart_proxy::Gateway;
use rampart_test_support::client::http1_get;
use rampart_test_support::redis::RedisServer;
use rampart_test_support::upstream::MockUpstream;

use crate::common::{TempDir, admin_delete, admin_post, config, echo, log_lines, metrics, start};

fn reason(body: &[u8]) -> String {
    echo(body)["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Three gateways in front of one upstream, all with `extra` and `redis.url` set.
async fn fleet(
    n: usize,
    up: &MockUpstream,
    redis: &RedisServer,
    dir: &TempDir,
    extra: &str,
) -> Vec<Gateway> {
    let mut out = Vec::new();
    for i in 0..n {
        let yaml = config(
            up.addr,
            &dir.path(&format!("gw{i}.log")),
            &format!(
                "redis:\n  url: \"{}\"\n  timeout: 100ms\n  breaker_cool_down: 300ms\n{extra}",
                redis.url()
            ),
        );
        out.push(start(&yaml).await);
    }
    out
}

const SHARED: &str = r#"
rate_limits:
  fleet_gcra: { algorithm: gcra, rate: 10/h, burst: 10, store: redis }
  fleet_window: { algorithm: sliding_window, rate: 7/h, store: redis }
routes:
  - name: gcra
    match: { path: /gcra }
    upstream: up
    rate_limit: [fleet_gcra]
  - name: window
    match: { path: /window }
    upstream: up
    rate_limit: [fleet_window]
"#;

#[tokio::test]
async fn three_gateways_together_never_admit_more_than_the_limit() {
    let up = MockUpstream::start().await;
    let redis = RedisServer::start();
    let dir = TempDir::new();
    let gws = fleet(3, &up, &redis, &dir, SHARED).await;
    for (path, limit) in [("/gcra", 10), ("/window", 7)] {
        // Twelve concurrent requests on each gateway, all from the same client.
        let mut tasks = tokio::task::JoinSet::new();
        for gw in &gws {
            let addr = gw.listener_addr("http").unwrap();
            for _ in 0..12 {
                tasks.spawn(async move { http1_get(addr, path, &[]).await });
            }
        }
        let (mut admitted, mut refused) = (0, 0);
        while let Some(r) = tasks.join_next().await {
            let r = r.unwrap();
            match r.status().as_u16() {
                200 => admitted += 1,
                429 => {
                    refused += 1;
                    assert_eq!(reason(r.body()), "rate_limited");
                    assert!(r.headers().contains_key("retry-after"));
                }
                s => panic!("{path}: unexpected status {s}"),
            }
        }
        assert_eq!(
            (admitted, refused),
            (limit, 36 - limit),
            "{path}: the fleet admits exactly the shared limit"
        );
    }
    // Every gateway decided through Redis: none logged a fallback.
    let m = metrics(gws[0].admin_addr()).await;
    assert!(!m.contains("rampart_fail_open_total{"), "{m}");
    for gw in gws {
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn a_ban_on_one_gateway_holds_on_every_gateway_and_is_lifted_for_all() {
    let up = MockUpstream::start().await;
    let redis = RedisServer::start();
    let dir = TempDir::new();
    let extra = r#"
rate_limits:
  login: { algorithm: fixed_window, rate: 1/h, store: redis, ban: { after: 2, within: 1h, duration: 10m } }
routes:
  - name: login
    match: { path: /login }
    upstream: up
    rate_limit: [login]
"#;
    let gws = fleet(2, &up, &redis, &dir, extra).await;
    let (a, b) = (
        gws[0].listener_addr("http").unwrap(),
        gws[1].listener_addr("http").unwrap(),
    );
    assert_eq!(http1_get(a, "/login", &[]).await.status(), 200);
    let r = http1_get(a, "/login", &[]).await;
    assert_eq!(
        (r.status().as_u16(), reason(r.body())),
        (429, "rate_limited".into())
    );
    // The second refusal (on the other gateway) reaches the threshold: banned.
    let r = http1_get(b, "/login", &[]).await;
    assert_eq!(
        (r.status().as_u16(), reason(r.body())),
        (429, "banned".into())
    );
    assert_eq!(r.headers()["retry-after"], "600");
    let r = http1_get(a, "/login", &[]).await;
    assert_eq!(reason(r.body()), "banned", "the first gateway sees the ban");

    // The admin API of either gateway lists the shared ban and lifts it for both.
    let list = http1_get(gws[1].admin_addr(), "/bans", &[]).await;
    assert_eq!(list.status(), 200);
    let list = echo(list.body());
    assert_eq!(list["login"][0]["client"], "ip:127.0.0.1");
    assert_eq!(list["login"][0]["strikes"], 1);
    let lift = "/bans?policy=login&client=ip:127.0.0.1";
    assert_eq!(admin_delete(gws[0].admin_addr(), lift).await, 200);
    let r = http1_get(b, "/login", &[]).await;
    assert_eq!(
        reason(r.body()),
        "rate_limited",
        "no longer banned, still over the rate"
    );
    let list = echo(http1_get(gws[1].admin_addr(), "/bans", &[]).await.body());
    assert_eq!(list["login"], serde_json::json!([]));
    for gw in gws {
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn when_redis_dies_or_hangs_each_policy_keeps_its_failure_mode_within_the_timeout() {
    let up = MockUpstream::start().await;
    let mut redis = RedisServer::start();
    let port = redis.port;
    let dir = TempDir::new();
    let extra = r#"
rate_limits:
  open: { algorithm: gcra, rate: 1/h, burst: 1, store: redis, on_store_failure: open }
  closed: { algorithm: gcra, rate: 100/h, burst: 100, store: redis, on_store_failure: closed }
  local: { algorithm: gcra, rate: 2/h, burst: 2, store: redis, on_store_failure: local }
routes:
  - { name: open, match: { path: /open }, upstream: up, rate_limit: [open] }
  - { name: closed, match: { path: /closed }, upstream: up, rate_limit: [closed] }
  - { name: local, match: { path: /local }, upstream: up, rate_limit: [local] }
"#;
    let gws = fleet(1, &up, &redis, &dir, extra).await;
    let gw = &gws[0];
    let addr = gw.listener_addr("http").unwrap();
    // Redis up: it decides (the `open` policy's one request is used up).
    assert_eq!(http1_get(addr, "/open", &[]).await.status(), 200);
    assert_eq!(http1_get(addr, "/open", &[]).await.status(), 429);
    assert_eq!(http1_get(addr, "/closed", &[]).await.status(), 200);

    // The worst case first: Redis hangs (connections open, no answers), then dies.
    redis.pause();
    let timed = |path: &'static str| async move {
        let t = Instant::now();
        let r = http1_get(addr, path, &[]).await;
        (r, t.elapsed())
    };
    // The bound is the 100 ms timeout plus the proxying itself; 2 s leaves room for a
    // loaded test machine while still catching a call that waits for the hung server.
    let bound = Duration::from_secs(2);
    for round in 0..2 {
        let (r, took) = timed("/open").await;
        assert_eq!(r.status(), 200, "round {round}: fail open admits");
        assert!(took < bound, "fail open took {took:?}");
        let (r, took) = timed("/closed").await;
        assert_eq!(r.status(), 503, "round {round}: fail closed refuses");
        assert_eq!(reason(r.body()), "store_unavailable");
        assert!(r.headers().contains_key("retry-after"));
        assert!(took < bound, "fail closed took {took:?}");
        if round == 0 {
            redis.kill();
        }
    }
    // Local fallback: this gateway alone enforces 2 per hour.
    let mut local = Vec::new();
    for _ in 0..3 {
        let (r, took) = timed("/local").await;
        assert!(took < bound, "local fallback took {took:?}");
        local.push(r.status().as_u16());
    }
    assert_eq!(local, [200, 200, 429]);
    let m = metrics(gw.admin_addr()).await;
    for needle in [
        r#"rampart_fail_open_total{layer="ratelimit",reason="store_unavailable"} 2"#,
        r#"rampart_fail_open_total{layer="ratelimit",reason="store_unavailable_local"} 3"#,
        r#"rampart_denials_total{layer="ratelimit",reason="store_unavailable"} 2"#,
    ] {
        assert!(m.contains(needle), "{needle} not in\n{m}");
    }
    let lines = log_lines(&dir.path("gw0.log"), 10).await;
    assert!(lines.iter().any(|l| {
        l["rampart.decisions"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["outcome"] == "fail_open"))
    }));

    // Redis comes back on the same address: after the breaker's cool-down, it decides
    // again (a fresh Redis has no state: the `open` policy admits its one request, then
    // refuses).
    let _redis = RedisServer::start_on(port);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(http1_get(addr, "/open", &[]).await.status().as_u16());
        if statuses.ends_with(&[200, 429]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        statuses.ends_with(&[200, 429]),
        "Redis decides again: {statuses:?}"
    );
    for gw in gws {
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn a_token_revoked_through_one_gateway_is_refused_by_every_gateway() {
    let idp = rampart_test_support::idp::MockIdp::start().await;
    let up = MockUpstream::start().await;
    let redis = RedisServer::start();
    let dir = TempDir::new();
    let extra = format!(
        r#"
revocations: {{ store: redis }}
auth_providers:
  corp:
    issuer: "{issuer}"
    audiences: [rampart]
    jwks: {{ discovery: true }}
routes:
  - name: orders
    match: {{ prefix: /orders }}
    upstream: up
    auth: {{ providers: [corp] }}
"#,
        issuer = idp.issuer()
    );
    let gws = fleet(2, &up, &redis, &dir, &extra).await;
    let (a, b) = (
        gws[0].listener_addr("http").unwrap(),
        gws[1].listener_addr("http").unwrap(),
    );
    let claims = idp.claims("alice", "");
    let jti = claims["jti"].as_str().unwrap().to_string();
    let auth = format!("Bearer {}", idp.mint(&claims));
    for gw in [a, b] {
        assert_eq!(
            http1_get(gw, "/orders/1", &[("authorization", &auth)])
                .await
                .status(),
            200
        );
    }
    let revoke = serde_json::json!({"provider": "corp", "jti": jti});
    assert_eq!(
        admin_post(gws[0].admin_addr(), "/revocations", revoke).await,
        200
    );
    // Both gateways had the token in their verified-token cache; both refuse it now.
    for gw in [a, b] {
        let r = http1_get(gw, "/orders/1", &[("authorization", &auth)]).await;
        assert_eq!(
            (r.status().as_u16(), reason(r.body())),
            (401, "revoked".into())
        );
    }
    let list = echo(
        http1_get(gws[1].admin_addr(), "/revocations", &[])
            .await
            .body(),
    );
    assert_eq!(list["tokens"][0]["jti"], jti.as_str());
    // Redis gone: a revocation check cannot be made, and the request fails closed.
    drop(redis);
    let r = http1_get(b, "/orders/1", &[("authorization", &auth)]).await;
    assert_eq!(r.status(), 503);
    for gw in gws {
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn guessing_credentials_on_one_gateway_bans_the_client_on_all() {
    let idp = rampart_test_support::idp::MockIdp::start().await;
    let up = MockUpstream::start().await;
    let redis = RedisServer::start();
    let dir = TempDir::new();
    let extra = format!(
        r#"
rate_limits:
  guard: {{ rate: 1000/m, burst: 1000, store: redis, ban: {{ after: 3, within: 1m, duration: 1m }} }}
auth_providers:
  corp:
    issuer: "{issuer}"
    audiences: [rampart]
    jwks: {{ discovery: true }}
routes:
  - name: orders
    match: {{ prefix: /orders }}
    upstream: up
    rate_limit: [guard]
    auth: {{ providers: [corp] }}
"#,
        issuer = idp.issuer()
    );
    let gws = fleet(2, &up, &redis, &dir, &extra).await;
    let (a, b) = (
        gws[0].listener_addr("http").unwrap(),
        gws[1].listener_addr("http").unwrap(),
    );
    let good = format!("Bearer {}", idp.token("alice", ""));
    assert_eq!(
        http1_get(b, "/orders/1", &[("authorization", &good)])
            .await
            .status(),
        200
    );
    for bad in ["Bearer a.b.c", "Bearer x.y.z", "Bearer q.r.s"] {
        assert_eq!(
            http1_get(a, "/orders/1", &[("authorization", bad)])
                .await
                .status(),
            401
        );
    }
    // The strikes are recorded in the background, after each response: give them a moment.
    let mut last = 0;
    for _ in 0..40 {
        let r = http1_get(b, "/orders/1", &[("authorization", &good)]).await;
        last = r.status().as_u16();
        if last == 429 {
            assert_eq!(reason(r.body()), "banned");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last, 429, "the other gateway bans the guessing client");
    for gw in gws {
        gw.shutdown().await;
    }
}
