//! Shared set-up for the end-to-end tests: a gateway started in-process from YAML, on
//! 127.0.0.1 ephemeral ports, in front of a mock upstream.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rampart_proxy::Gateway;

/// A temp directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "rampart-e2e-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Parses `yaml` and starts a gateway from it.
pub async fn start(yaml: &str) -> Gateway {
    let file = Path::new("test.yaml");
    let config = rampart_config::parse(yaml, file).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    Gateway::start(config, file).await.unwrap()
}

/// A minimal config: one cleartext listener `http`, admin on an ephemeral port, access log
/// to `log`, upstream `up` at `upstream`, and the given routes/extra top-level YAML.
pub fn config(upstream: SocketAddr, log: &Path, extra: &str) -> String {
    format!(
        r#"
listeners:
  - name: http
    bind: "127.0.0.1:0"
admin:
  bind: "127.0.0.1:0"
access_log:
  output: "{log}"
upstreams:
  up:
    targets: ["{upstream}"]
    connect_timeout: 1s
    response_timeout: 2s
{extra}
"#,
        log = log.display()
    )
}

/// The access-log lines written so far, parsed (waits briefly for the writer thread).
pub async fn log_lines(log: &Path, at_least: usize) -> Vec<serde_json::Value> {
    for _ in 0..100 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= at_least {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {at_least} log lines in {}", log.display());
}

/// The JSON echo of the mock upstream.
pub fn echo(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// The admin listener's `/metrics` text.
pub async fn metrics(admin: SocketAddr) -> String {
    let r = rampart_test_support::client::http1_get(admin, "/metrics", &[]).await;
    String::from_utf8(r.body().to_vec()).unwrap()
}

/// `POST path` to the admin listener with a JSON body; returns the status.
pub async fn admin_post(admin: SocketAddr, path: &str, body: serde_json::Value) -> u16 {
    let request = http::Request::post(path)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    let r = rampart_test_support::client::http1_request(admin, request).await;
    r.unwrap().status().as_u16()
}

/// `DELETE path` on the admin listener; returns the status.
pub async fn admin_delete(admin: SocketAddr, path: &str) -> u16 {
    let request = http::Request::delete(path)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = rampart_test_support::client::http1_request(admin, request).await;
    r.unwrap().status().as_u16()
}
