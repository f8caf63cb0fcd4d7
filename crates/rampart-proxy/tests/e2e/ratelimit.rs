use std::path::Path;

use rampart_test_support::client::http1_get;
use rampart_test_support::upstream::MockUpstream;

use crate::common::{TempDir, config, log_lines, start};

const LIMITS: &str = r#"
rate_limits:
  login:
    algorithm: sliding_log
    rate: 3/m
  dry:
    algorithm: fixed_window
    rate: 1/m
    shadow: true
  members:
    rate: 1/m
    applies_to: authenticated
routes:
  - name: login
    match: { path: /login }
    upstream: up
    rate_limit: [login, members]
  - name: shadow
    match: { path: /shadow }
    upstream: up
    rate_limit: [dry]
"#;

#[tokio::test]
async fn a_per_ip_limit_answers_429_with_retry_after_and_ratelimit_fields() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let gw = start(&config(up.addr, &dir.path("a.log"), LIMITS)).await;
    let addr = gw.listener_addr("http").unwrap();
    for left in [2, 1, 0] {
        let r = http1_get(addr, "/login", &[]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["ratelimit-policy"], "\"login\";q=3;w=60");
        let state = r.headers()["ratelimit"].to_str().unwrap().to_string();
        assert!(
            state.starts_with(&format!("\"login\";r={left};t=")),
            "{state}"
        );
    }
    let r = http1_get(addr, "/login", &[]).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((59..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        r.headers()["ratelimit"],
        format!("\"login\";r=0;t={retry}").as_str()
    );
    assert_eq!(up.requests(), 3, "the refused request reached the upstream");
    // The `members` policy applies to authenticated clients only: it never refused here.

    // A client behind another address is not affected.
    let lines = log_lines(&dir.path("a.log"), 5).await;
    let event = lines.iter().find(|l| l["type"] == "security").unwrap();
    assert_eq!(event["layer"], "ratelimit");
    assert_eq!(event["reason"], "rate_limited");
    assert_eq!(event["rule_id"], "login");
    assert_eq!(event["http.response.status_code"], 429);
    let m = crate::common::metrics(gw.admin_addr()).await;
    assert!(
        m.contains(r#"rampart_denials_total{layer="ratelimit",reason="rate_limited"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn counters_survive_a_reload_that_keeps_the_policy() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let yaml = config(up.addr, &dir.path("a.log"), LIMITS);
    let gw = start(&yaml).await;
    let addr = gw.listener_addr("http").unwrap();
    for _ in 0..3 {
        assert_eq!(http1_get(addr, "/login", &[]).await.status(), 200);
    }
    // A new route, and every policy moved two lines down: still the same policies.
    let with_route = yaml.replace("rate_limits:\n", "# moved\n\nrate_limits:\n")
        + "  - name: extra\n    match: { path: /extra }\n    upstream: up\n";
    gw.reload(rampart_config::parse(&with_route, Path::new("t.yaml")).unwrap())
        .unwrap();
    assert_eq!(
        http1_get(addr, "/login", &[]).await.status(),
        429,
        "a reload reset the counters"
    );
    // Changing the policy starts it afresh.
    let changed = with_route.replace("rate: 3/m", "rate: 4/m");
    gw.reload(rampart_config::parse(&changed, Path::new("t.yaml")).unwrap())
        .unwrap();
    assert_eq!(http1_get(addr, "/login", &[]).await.status(), 200);
}

#[tokio::test]
async fn shadow_policies_count_but_never_refuse() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let gw = start(&config(up.addr, &dir.path("a.log"), LIMITS)).await;
    let addr = gw.listener_addr("http").unwrap();
    for _ in 0..3 {
        assert_eq!(http1_get(addr, "/shadow", &[]).await.status(), 200);
    }
    let m = crate::common::metrics(gw.admin_addr()).await;
    assert!(
        m.contains(r#"rampart_shadow_denials_total{layer="ratelimit",reason="rate_limited"} 2"#),
        "{m}"
    );
    let lines = log_lines(&dir.path("a.log"), 3).await;
    assert_eq!(lines[2]["rampart.decisions"][0]["outcome"], "shadow");
}

#[tokio::test]
async fn repeat_offenders_are_banned_and_the_admin_api_lifts_bans() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let limits = r#"
rate_limits:
  strict:
    algorithm: fixed_window
    rate: 1/m
    ban: { after: 2, within: 1m, duration: 10m }
routes:
  - name: all
    match: { prefix: / }
    upstream: up
    rate_limit: [strict]
"#;
    let gw = start(&config(up.addr, &dir.path("a.log"), limits)).await;
    let addr = gw.listener_addr("http").unwrap();
    let admin = gw.admin_addr();
    assert_eq!(http1_get(addr, "/", &[]).await.status(), 200);
    let r = http1_get(addr, "/", &[]).await;
    assert_eq!(r.status(), 429);
    let r = http1_get(addr, "/", &[]).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "600");
    assert_eq!(crate::common::echo(r.body())["reason"], "banned");

    let list = http1_get(admin, "/bans", &[]).await;
    let bans = crate::common::echo(list.body());
    assert_eq!(bans["strict"][0]["client"], "ip:127.0.0.1");
    assert_eq!(bans["strict"][0]["strikes"], 1);

    let lift = "/bans?policy=strict&client=ip:127.0.0.1";
    assert_eq!(crate::common::admin_delete(admin, lift).await, 200);
    let bans = crate::common::echo(http1_get(admin, "/bans", &[]).await.body());
    assert_eq!(bans["strict"].as_array().map(Vec::len), Some(0));
    // Lifted: back to the ordinary limit (still used up this minute).
    let r = http1_get(addr, "/", &[]).await;
    assert_eq!(crate::common::echo(r.body())["reason"], "rate_limited");
}
