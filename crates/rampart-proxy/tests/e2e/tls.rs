use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rampart_test_support::client::{http1_get, raw_exchange, tls_client_config, tls_get};
use rampart_test_support::pki::{TestPki, cert_der_from_pem};
use rampart_test_support::upstream::MockUpstream;

use crate::common::{TempDir, echo, log_lines, start};

fn tls_config(pki: &TestPki, upstream: SocketAddr, log: &Path, tls_extra: &str) -> String {
    format!(
        r#"
listeners:
  - name: https
    bind: "127.0.0.1:0"
    tls:
      cert: "{cert}"
      key: "{key}"
{tls_extra}
  - name: redirect
    bind: "127.0.0.1:0"
    redirect_https: {{ port: 8443 }}
admin:
  bind: "127.0.0.1:0"
access_log:
  output: "{log}"
upstreams:
  up:
    targets: ["{upstream}"]
routes:
  - name: all
    match: {{ prefix: / }}
    upstream: up
"#,
        cert = pki.server_cert_path.display(),
        key = pki.server_key_path.display(),
        log = log.display(),
    )
}

#[tokio::test]
async fn tls_serves_h2_and_http1_with_hsts() {
    let pki = TestPki::new();
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let gw = start(&tls_config(
        &pki,
        up.addr,
        &dir.path("a.log"),
        "      hsts: { max_age: 1d, preload: true }",
    ))
    .await;
    let addr = gw.listener_addr("https").unwrap();

    let h2 = tls_get(
        addr,
        "localhost",
        tls_client_config(&pki.ca_pem, None, &[b"h2", b"http/1.1"]),
        "/x",
    )
    .await
    .unwrap();
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(h2.response.status(), 200);
    assert_eq!(
        h2.response.headers()["strict-transport-security"],
        "max-age=86400; includeSubDomains; preload"
    );
    let e = echo(h2.response.body());
    assert_eq!(e["headers"]["x-forwarded-proto"], "https");
    assert_eq!(e["version"], "HTTP/1.1", "upstream leg is HTTP/1.1");

    let h1 = tls_get(
        addr,
        "127.0.0.1",
        tls_client_config(&pki.ca_pem, None, &[b"http/1.1"]),
        "/y",
    )
    .await
    .unwrap();
    assert_eq!(h1.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(
        h1.response
            .headers()
            .contains_key("strict-transport-security")
    );

    // Cleartext listeners never send HSTS (RFC 6797 section 7.2).
    let r = http1_get(gw.listener_addr("redirect").unwrap(), "/", &[]).await;
    assert!(r.headers().get("strict-transport-security").is_none());
}

#[tokio::test]
async fn cleartext_listener_redirects_to_https() {
    let pki = TestPki::new();
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let gw = start(&tls_config(&pki, up.addr, &dir.path("a.log"), "")).await;
    let r = http1_get(
        gw.listener_addr("redirect").unwrap(),
        "/a/b?c=d",
        &[("host", "api.example.com:8080")],
    )
    .await;
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        "https://api.example.com:8443/a/b?c=d"
    );
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn tls13_minimum_refuses_tls12_clients() {
    let pki = TestPki::new();
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let gw = start(&tls_config(
        &pki,
        up.addr,
        &dir.path("a.log"),
        "      min_version: \"1.3\"",
    ))
    .await;
    let addr = gw.listener_addr("https").unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der_from_pem(&pki.ca_pem).into()).unwrap();
    let tls12 =
        rustls::ClientConfig::builder_with_provider(rampart_test_support::crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    assert!(
        tls_get(addr, "localhost", std::sync::Arc::new(tls12), "/")
            .await
            .is_err()
    );
    let ok = tls_get(
        addr,
        "localhost",
        tls_client_config(&pki.ca_pem, None, &[]),
        "/",
    )
    .await
    .unwrap();
    assert_eq!(ok.version, Some(rustls::ProtocolVersion::TLSv1_3));
}

#[tokio::test]
async fn mtls_accepts_the_cas_clients_and_refuses_others() {
    let pki = TestPki::new();
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let extra = format!("      client_auth: {{ ca: \"{}\" }}", pki.ca_path.display());
    let gw = start(&tls_config(&pki, up.addr, &dir.path("a.log"), &extra)).await;
    let addr = gw.listener_addr("https").unwrap();

    let ok = tls_get(
        addr,
        "localhost",
        tls_client_config(&pki.ca_pem, Some(&pki.client), &[]),
        "/who",
    )
    .await
    .unwrap();
    assert_eq!(ok.response.status(), 200);
    let rogue = tls_get(
        addr,
        "localhost",
        tls_client_config(&pki.ca_pem, Some(&pki.rogue_client), &[]),
        "/",
    )
    .await;
    assert!(rogue.is_err(), "rogue client accepted");
    let anonymous = tls_get(
        addr,
        "localhost",
        tls_client_config(&pki.ca_pem, None, &[]),
        "/",
    )
    .await;
    assert!(anonymous.is_err(), "client without certificate accepted");
    assert_eq!(up.requests(), 1);

    // The verified identity reaches the request context (and so the access log).
    let lines = log_lines(&dir.path("a.log"), 1).await;
    assert!(
        lines[0]["tls.client.subject"]
            .as_str()
            .unwrap()
            .contains("client-1"),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn optional_client_auth_lets_anonymous_clients_in() {
    let pki = TestPki::new();
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let extra = format!(
        "      client_auth: {{ ca: \"{}\", required: false }}",
        pki.ca_path.display()
    );
    let gw = start(&tls_config(&pki, up.addr, &dir.path("a.log"), &extra)).await;
    let addr = gw.listener_addr("https").unwrap();
    let anon = tls_get(
        addr,
        "localhost",
        tls_client_config(&pki.ca_pem, None, &[]),
        "/",
    )
    .await
    .unwrap();
    assert_eq!(anon.response.status(), 200);
    let rogue = tls_get(
        addr,
        "localhost",
        tls_client_config(&pki.ca_pem, Some(&pki.rogue_client), &[]),
        "/",
    )
    .await;
    assert!(rogue.is_err());
}

#[tokio::test]
async fn certificate_reload_without_restart() {
    let pki = TestPki::new();
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let yaml = tls_config(&pki, up.addr, &dir.path("a.log"), "");
    let gw = start(&yaml).await;
    let addr = gw.listener_addr("https").unwrap();
    let client = tls_client_config(&pki.ca_pem, None, &[]);
    let before = tls_get(addr, "localhost", client.clone(), "/")
        .await
        .unwrap();
    assert_eq!(
        before.peer_cert_der,
        cert_der_from_pem(&pki.server_cert_pem())
    );

    let new_pem = pki.write_new_server_cert();
    gw.reload(rampart_config::parse(&yaml, Path::new("t.yaml")).unwrap())
        .unwrap();
    let after = tls_get(addr, "localhost", client, "/").await.unwrap();
    assert_eq!(after.peer_cert_der, cert_der_from_pem(&new_pem));
    assert_ne!(after.peer_cert_der, before.peer_cert_der);
}

#[tokio::test]
async fn tls_handshake_timeout_closes_silent_clients() {
    let pki = TestPki::new();
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    let yaml = tls_config(&pki, up.addr, &dir.path("a.log"), "")
        .replace("admin:", "limits:\n  header_read_timeout: 1s\nadmin:");
    let gw = start(&yaml).await;
    let r = raw_exchange(
        gw.listener_addr("https").unwrap(),
        b"",
        Duration::from_secs(5),
    )
    .await;
    assert!(r.closed);
}
