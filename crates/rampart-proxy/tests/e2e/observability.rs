use std::path::Path;

use rampart_test_support::client::http1_get;
use rampart_test_support::upstream::MockUpstream;

use crate::common::{TempDir, config, log_lines, start};

const ROUTES: &str = r#"
routes:
  - name: users
    match: { path: "/users/{id}" }
    upstream: up
  - name: admin
    match: { prefix: /admin }
    upstream: up
    ip_filter: { deny: ["127.0.0.0/8"] }
"#;

#[tokio::test]
async fn access_log_lines_use_opentelemetry_names_and_carry_decisions() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let log = dir.path("a.log");
    let gw = start(&config(up.addr, &log, ROUTES)).await;
    let addr = gw.listener_addr("http").unwrap();
    http1_get(addr, "/users/7?token=secret", &[("user-agent", "e2e/1")]).await;
    http1_get(addr, "/admin", &[]).await;

    let lines = log_lines(&log, 3).await;
    let access: Vec<_> = lines.iter().filter(|l| l["type"] == "access").collect();
    let first = access[0];
    assert_eq!(first["http.request.method"], "GET");
    assert_eq!(first["url.path"], "/users/7", "the query is not logged");
    assert_eq!(first["http.route"], "/users/{id}");
    assert_eq!(first["rampart.route.name"], "users");
    assert_eq!(first["http.response.status_code"], 200);
    assert_eq!(first["client.address"], "127.0.0.1");
    assert_eq!(first["user_agent.original"], "e2e/1");
    assert_eq!(first["network.protocol.version"], "1.1");
    assert!(first["http.server.request.duration"].as_f64().unwrap() > 0.0);
    assert!(first["http.response.body.size"].as_u64().unwrap() > 0);
    assert_eq!(first["rampart.upstream"], "up");
    assert!(!first.to_string().contains("secret"));

    let denied = access[1];
    assert_eq!(denied["http.response.status_code"], 403);
    assert_eq!(denied["rampart.decisions"][0]["layer"], "ipfilter");
    assert_eq!(denied["rampart.decisions"][0]["outcome"], "deny");
    assert_eq!(
        denied["rampart.decisions"][0]["rule_id"],
        "deny 127.0.0.0/8"
    );

    let event = lines.iter().find(|l| l["type"] == "security").unwrap();
    assert_eq!(event["layer"], "ipfilter");
    assert_eq!(event["reason"], "ip_denied");
    assert_eq!(event["rule_id"], "deny 127.0.0.0/8");
    assert_eq!(event["http.response.status_code"], 403);
    assert_eq!(event["request_id"], denied["request_id"]);
}

#[tokio::test]
async fn metrics_health_and_readiness() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let gw = start(&config(up.addr, &dir.path("a.log"), ROUTES)).await;
    let addr = gw.listener_addr("http").unwrap();
    http1_get(addr, "/users/1", &[]).await;
    http1_get(addr, "/users/2", &[]).await;
    http1_get(addr, "/admin", &[]).await;
    http1_get(addr, "/missing", &[]).await;

    let admin = gw.admin_addr();
    assert_eq!(http1_get(admin, "/healthz", &[]).await.status(), 200);
    assert_eq!(http1_get(admin, "/readyz", &[]).await.status(), 200);
    let m = crate::common::metrics(admin).await;
    for expected in [
        r#"rampart_http_requests_total{route="users",status="200"} 2"#,
        r#"rampart_http_requests_total{route="admin",status="403"} 1"#,
        r#"rampart_http_requests_total{route="none",status="404"} 1"#,
        r#"rampart_http_request_duration_seconds_count{route="users",status="200"} 2"#,
        r#"rampart_denials_total{layer="ipfilter",reason="ip_denied"} 1"#,
    ] {
        assert!(m.contains(expected), "missing {expected} in\n{m}");
    }
}

#[tokio::test]
async fn reload_swaps_routes_and_a_bad_config_keeps_the_old_one() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let yaml = config(up.addr, &dir.path("a.log"), ROUTES);
    let gw = start(&yaml).await;
    let addr = gw.listener_addr("http").unwrap();
    assert_eq!(http1_get(addr, "/new", &[]).await.status(), 404);

    let added = yaml.clone() + "  - name: new\n    match: { path: /new }\n    upstream: up\n";
    gw.reload(rampart_config::parse(&added, Path::new("t.yaml")).unwrap())
        .unwrap();
    assert_eq!(http1_get(addr, "/new", &[]).await.status(), 200);

    // A config that parses but cannot be put in service (missing certificate).
    let broken = added.replace(
        "    bind: \"127.0.0.1:0\"\nadmin",
        "    bind: \"127.0.0.1:0\"\n    tls: { cert: /nonexistent.pem, key: /nonexistent.key }\nadmin",
    );
    assert_ne!(broken, added);
    let err = gw
        .reload(rampart_config::parse(&broken, Path::new("t.yaml")).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("nonexistent.pem"), "{err}");
    assert_eq!(http1_get(addr, "/new", &[]).await.status(), 200);

    let m = crate::common::metrics(gw.admin_addr()).await;
    assert!(
        m.contains(r#"rampart_config_reloads_total{result="ok"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"rampart_config_reloads_total{result="error"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_fails_readiness() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let gw = start(&config(
        up.addr,
        &dir.path("a.log"),
        "routes:\n  - name: all\n    match: { prefix: / }\n    upstream: up\n",
    ))
    .await;
    let addr = gw.listener_addr("http").unwrap();
    let admin = gw.admin_addr();
    let slow = tokio::spawn(async move { http1_get(addr, "/slow?ms=800", &[]).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let shared = gw.shared().clone();
    let shutdown = tokio::spawn(gw.shutdown());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(shared.draining.load(std::sync::atomic::Ordering::Relaxed));
    assert_eq!(http1_get(admin, "/readyz", &[]).await.status(), 503);
    let r = slow.await.unwrap();
    assert_eq!(r.status(), 200, "in-flight request was not drained");
    tokio::time::timeout(std::time::Duration::from_secs(5), shutdown)
        .await
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
}

#[tokio::test]
async fn a_reload_does_not_disturb_in_flight_requests() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let routes = "routes:\n  - name: slow\n    match: { path: /slow }\n    upstream: up\n";
    let gw = start(&config(up.addr, &dir.path("a.log"), routes)).await;
    let addr = gw.listener_addr("http").unwrap();
    let slow = tokio::spawn(async move { http1_get(addr, "/slow?ms=600", &[]).await });
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    // The new config no longer has the route the in-flight request matched.
    let without = config(up.addr, &dir.path("a.log"), "routes: []\n");
    gw.reload(rampart_config::parse(&without, Path::new("t.yaml")).unwrap())
        .unwrap();
    assert_eq!(http1_get(addr, "/slow", &[]).await.status(), 404);
    let r = slow.await.unwrap();
    assert_eq!(r.status(), 200);
    let lines = log_lines(&dir.path("a.log"), 2).await;
    assert!(
        lines
            .iter()
            .any(|l| l["rampart.route.name"] == "slow" && l["http.response.status_code"] == 200)
    );
}

#[tokio::test]
async fn a_renamed_listener_keeps_serving_until_restart() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let yaml = config(up.addr, &dir.path("a.log"), ROUTES);
    let gw = start(&yaml).await;
    let addr = gw.listener_addr("http").unwrap();
    let renamed = yaml.replace("- name: http", "- name: web");
    gw.reload(rampart_config::parse(&renamed, Path::new("t.yaml")).unwrap())
        .unwrap();
    assert_eq!(http1_get(addr, "/users/1", &[]).await.status(), 200);
}
