use std::time::{Duration, Instant};

use rampart_test_support::client::http1_get;
use rampart_test_support::upstream::{MockUpstream, start_blackhole, start_closed_port};

use crate::common::{TempDir, config, echo, log_lines, start};

#[tokio::test]
async fn a_down_upstream_gives_502_quickly_and_a_slow_one_504() {
    let closed = start_closed_port().await;
    let (hole, _handle) = start_blackhole().await;
    let dir = TempDir::new();
    let extra = format!(
        r#"
  slow:
    targets: ["{hole}"]
    response_timeout: 500ms
routes:
  - name: down
    match: {{ prefix: /down }}
    upstream: up
  - name: slow
    match: {{ prefix: /slow }}
    upstream: slow
"#
    );
    // `extra` continues the upstreams map started by `config`.
    let gw = start(&config(closed, &dir.path("a.log"), &extra)).await;
    let addr = gw.listener_addr("http").unwrap();

    let t = Instant::now();
    let r = http1_get(addr, "/down", &[]).await;
    assert_eq!(r.status(), 502);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "502 took {:?}",
        t.elapsed()
    );
    assert_eq!(echo(r.body())["reason"], "upstream_unreachable");

    let t = Instant::now();
    let r = http1_get(addr, "/slow", &[]).await;
    assert_eq!(r.status(), 504);
    assert!(
        t.elapsed() >= Duration::from_millis(450) && t.elapsed() < Duration::from_secs(3),
        "504 took {:?}",
        t.elapsed()
    );

    let metrics = crate::common::metrics(gw.admin_addr()).await;
    assert!(
        metrics.contains(r#"rampart_upstream_errors_total{upstream="up",kind="connect"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"rampart_upstream_errors_total{upstream="slow",kind="timeout"} 1"#),
        "{metrics}"
    );
    let lines = log_lines(&dir.path("a.log"), 2).await;
    assert!(lines.iter().any(|l| l["http.response.status_code"] == 504));
}

#[tokio::test]
async fn a_slow_upstream_within_its_timeout_is_waited_for() {
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let gw = start(&config(
        up.addr,
        &dir.path("a.log"),
        "routes:\n  - name: all\n    match: { prefix: / }\n    upstream: up\n",
    ))
    .await;
    let r = http1_get(gw.listener_addr("http").unwrap(), "/slow?ms=300", &[]).await;
    assert_eq!(r.status(), 200);
}
