//! The binary end to end: `validate`, `run` with SIGHUP and file-change reloads, SIGTERM
//! drain, `schema`, and `demo`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rampart_test_support::client::{http1_get, http1_request, tls_get};
use rampart_test_support::upstream::MockUpstream;

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("rampart-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `rampart run`, killed on drop.
struct Gateway {
    child: Child,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn stderr(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut s = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn config(
    listen: SocketAddr,
    admin: SocketAddr,
    upstream: SocketAddr,
    extra_routes: &str,
) -> String {
    format!(
        r#"listeners:
  - name: http
    bind: "{listen}"
admin:
  bind: "{admin}"
access_log:
  output: "off"
upstreams:
  up:
    targets: ["{upstream}"]
routes:
  - name: all
    match: {{ prefix: /api }}
    upstream: up
{extra_routes}"#
    )
}

async fn spawn(config: &Path, admin: SocketAddr, watch_interval: &str) -> Gateway {
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .args(["--workers", "1", "--watch-interval", watch_interval])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let gw = Gateway { child };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(admin).await.is_ok() {
            return gw;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gateway did not start: {}", gw.stderr());
}

async fn status(addr: SocketAddr, path: &str) -> u16 {
    http1_get(addr, path, &[]).await.status().as_u16()
}

#[test]
fn validate_accepts_a_good_config() {
    let dir = Dir::new("validate-ok");
    let f = dir.file(
        "ok.yaml",
        &config(free_port(), free_port(), free_port(), ""),
    );
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": OK\n"));
}

#[test]
fn validate_names_the_line_of_an_unknown_field_or_bad_duration() {
    let dir = Dir::new("validate-bad");
    let good = config(free_port(), free_port(), free_port(), "");
    let unknown = good.replace("    targets:", "    tragets:");
    let f = dir.file("unknown.yaml", &unknown);
    let err = validate_fails(&f);
    assert!(
        err.contains(&format!("{}:10:5: unknown field `tragets`", f.display())),
        "{err}"
    );

    let bad = good.replace("    targets:", "    connect_timeout: soon\n    targets:");
    let f = dir.file("duration.yaml", &bad);
    let err = validate_fails(&f);
    assert!(
        err.contains(&format!("{}:10:22: invalid duration \"soon\"", f.display())),
        "{err}"
    );

    // Several semantic errors are all reported.
    let two = good
        .replace("upstream: up", "upstream: nowhere")
        .replace("prefix: /api", "prefix: api");
    let f = dir.file("two.yaml", &two);
    let out = Command::new(BIN)
        .args(["validate", "-c"])
        .arg(&f)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown upstream \"nowhere\""), "{err}");
    assert!(err.contains("must start with /"), "{err}");
    assert!(err.contains("2 error(s)"), "{err}");

    let out = Command::new(BIN)
        .args(["validate", "-c", "/nonexistent/rampart.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn schema_command_matches_the_published_schema() {
    let out = Command::new(BIN).arg("schema").output().unwrap();
    assert!(out.status.success());
    let published = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.schema.json"),
    )
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), published);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_broken_config_keeps_the_old_one() {
    let up = MockUpstream::start().await;
    let dir = Dir::new("sighup");
    let (listen, admin) = (free_port(), free_port());
    let cfg = dir.file("r.yaml", &config(listen, admin, up.addr, ""));
    let gw = spawn(&cfg, admin, "0").await;
    assert_eq!(status(listen, "/api/x").await, 200);
    assert_eq!(status(listen, "/new").await, 404);

    let with_new = config(
        listen,
        admin,
        up.addr,
        "  - name: new\n    match: { prefix: /new }\n    upstream: up\n",
    );
    std::fs::write(&cfg, &with_new).unwrap();
    gw.signal("-HUP");
    wait_for(|| async { status(listen, "/new").await == 200 }).await;

    // A broken file: the reload is refused and the previous config keeps serving.
    std::fs::write(&cfg, with_new.replace("routes:", "routez:")).unwrap();
    gw.signal("-HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status(listen, "/new").await, 200);
    assert_eq!(status(listen, "/api/x").await, 200);
    let m = String::from_utf8(http1_get(admin, "/metrics", &[]).await.body().to_vec()).unwrap();
    let log = gw.stderr();
    assert!(
        m.contains(r#"rampart_config_reloads_total{result="error"} 1"#),
        "{m}\n{log}"
    );
    assert!(log.contains("reload refused"), "{log}");
    assert!(log.contains("unknown field `routez`"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_config_file_is_reloaded_without_a_signal() {
    let up = MockUpstream::start().await;
    let dir = Dir::new("watch");
    let (listen, admin) = (free_port(), free_port());
    let cfg = dir.file("w.yaml", &config(listen, admin, up.addr, ""));
    let _gw = spawn(&cfg, admin, "1").await;
    assert_eq!(status(listen, "/watched").await, 404);
    std::fs::write(
        &cfg,
        config(
            listen,
            admin,
            up.addr,
            "  - name: w\n    match: { prefix: /watched }\n    upstream: up\n",
        ),
    )
    .unwrap();
    wait_for(|| async { status(listen, "/watched").await == 200 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits() {
    let up = MockUpstream::start().await;
    let dir = Dir::new("drain");
    let (listen, admin) = (free_port(), free_port());
    let slow_route = "  - name: slow\n    match: { path: /slow }\n    upstream: up\n";
    let cfg = dir.file("d.yaml", &config(listen, admin, up.addr, slow_route));
    let mut gw = spawn(&cfg, admin, "0").await;
    let slow = tokio::spawn(async move { http1_get(listen, "/slow?ms=1000", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.signal("-TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        status(admin, "/readyz").await,
        503,
        "readiness must fail while draining"
    );
    assert_eq!(slow.await.unwrap().status(), 200, "in-flight request cut");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(code) = gw.child.try_wait().unwrap() {
            assert!(code.success(), "exit status {code}");
            break;
        }
        assert!(Instant::now() < deadline, "did not exit after draining");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `rampart demo` on its fixed ports: proxies to the demo API over HTTP, TLS answers with
/// HSTS, /login is rate limited, and /api/orders wants a token from the demo identity
/// provider. This is the only test on those ports, so tests running in parallel never
/// collide; if something else holds one, the demo exits with an error and the test fails
/// with its stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_proxies_sends_hsts_over_tls_limits_logins_and_wants_tokens() {
    let mut child = Command::new(BIN)
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let banner = banner_lines(child.stdout.take().unwrap());
    let mut gw = Gateway { child };
    let admin: SocketAddr = "127.0.0.1:9901".parse().unwrap();
    let http: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let https: SocketAddr = "127.0.0.1:8443".parse().unwrap();
    let idp: SocketAddr = "127.0.0.1:9100".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(admin).await.is_err() {
        let exited = gw.child.try_wait().unwrap();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "demo did not start ({exited:?}): {}",
            gw.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let banner = banner
        .recv_timeout(Duration::from_secs(10))
        .expect("the demo prints its banner");
    for line in [
        "curl -i http://127.0.0.1:8080/api/orders ",
        "curl -s -d 'sub=alice&scope=orders:read' http://127.0.0.1:9100/token",
        "curl -i http://127.0.0.1:8080/api/orders -H \"Authorization: Bearer $TOKEN\"",
    ] {
        assert!(banner.contains(line), "{line:?} not in\n{banner}");
    }

    let r = http1_get(http, "/api/products", &[]).await;
    assert_eq!(r.status(), 200);
    assert!(String::from_utf8_lossy(r.body()).contains("Rampart T-shirt"));

    // The demo's certificate is self-signed: accept it the way `curl -k` does.
    let tls = insecure_client();
    let r = tls_get(https, "localhost", tls, "/api/products")
        .await
        .unwrap();
    assert_eq!(r.response.status(), 200);
    assert!(
        r.response.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age=31536000")
    );
    assert_eq!(status(http, "/internal").await, 403);

    // POST /login: 5 per minute per IP, then 429 with Retry-After and RateLimit fields.
    let mut last = None;
    for _ in 0..6 {
        let req = http::Request::post("/login")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
            .unwrap();
        last = Some(http1_request(http, req).await.unwrap());
    }
    let last = last.unwrap();
    assert_eq!(last.status(), 429);
    assert!(last.headers().contains_key("retry-after"));
    assert!(
        last.headers()["ratelimit-policy"]
            .to_str()
            .unwrap()
            .contains("\"login_per_ip\";q=5;w=60")
    );

    // GET /api/orders: no token is 401 with the bare RFC 6750 challenge, even with a forged
    // identity header.
    let r = http1_get(http, "/api/orders", &[("x-user-id", "admin")]).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"rampart\"");

    // A token from the demo identity provider's /token with the scope: 200, and the demo
    // API saw the token's subject as x-user-id, not the forged one.
    let token = demo_token(idp, "alice", "orders:read").await;
    let r = http1_get(
        http,
        "/api/orders",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("x-user-id", "admin"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200, "{:?}", r.body());
    let orders: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(orders["user"], "alice");
    assert!(!orders["orders"].as_array().unwrap().is_empty());

    // A valid token without the scope: 403 insufficient_scope.
    let token = demo_token(idp, "bob", "profile").await;
    let r = http1_get(
        http,
        "/api/orders",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(r.status(), 403);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer realm=\"rampart\"")
            && challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"orders:read\""),
        "{challenge}"
    );

    // /api/products stays public.
    assert_eq!(status(http, "/api/products/1").await, 200);

    // Access control, as the banner shows it: alice reads her orders, not bob's (under
    // any spelling); support reads anyone's; only role admin reaches /admin (Cedar).
    let alice = demo_token_form(idp, "sub=alice").await;
    let support = demo_token_form(idp, "sub=sam&roles=support").await;
    let admin = demo_token_form(idp, "sub=ada&roles=admin").await;
    let get = |path: &'static str, token: &str| {
        let auth = format!("Bearer {token}");
        async move { http1_get(http, path, &[("authorization", &auth)]).await }
    };
    let r = get("/users/alice/orders", &alice).await;
    assert_eq!(r.status(), 200, "{:?}", r.body());
    let r = get("/users/bob/orders", &alice).await;
    assert_eq!(r.status(), 403);
    assert!(String::from_utf8_lossy(r.body()).contains("not_owner"));
    assert_eq!(
        get("/users/al%69ce/../bob/orders", &alice).await.status(),
        403
    );
    assert_eq!(get("/users/bob/orders", &support).await.status(), 200);
    let r = get("/admin", &alice).await;
    assert_eq!(r.status(), 403);
    assert!(String::from_utf8_lossy(r.body()).contains("no_permit"));
    assert_eq!(get("/admin", &admin).await.status(), 200);
    assert_eq!(get("/admin", &support).await.status(), 403);
    for line in [
        "curl -i http://127.0.0.1:8080/users/bob/orders -H \"Authorization: Bearer $ALICE\"",
        "rampart roles --config",
    ] {
        assert!(banner.contains(line), "{line:?} not in\n{banner}");
    }
}

/// Reads the demo's stdout on a thread: sends the banner (everything up to "Ctrl-C stops.")
/// once, then keeps draining the pipe so access-log lines never block the demo.
fn banner_lines(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut banner = Some(String::new());
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(text) = banner.as_mut() {
                text.push_str(&line);
                text.push('\n');
                if line.contains("Ctrl-C stops.") {
                    let _ = tx.send(banner.take().unwrap());
                }
            }
        }
    });
    rx
}

/// `curl -s -d 'sub=SUB&scope=SCOPE' http://127.0.0.1:9100/token`, returning `access_token`.
async fn demo_token(idp: SocketAddr, sub: &str, scope: &str) -> String {
    demo_token_form(idp, &format!("sub={sub}&scope={scope}")).await
}

/// `curl -s -d FORM http://127.0.0.1:9100/token`, returning `access_token`.
async fn demo_token_form(idp: SocketAddr, form: &str) -> String {
    let form = form.to_owned();
    let req = http::Request::post("/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(bytes::Bytes::from(form)))
        .unwrap();
    let r = http1_request(idp, req).await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.body());
    let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

fn insecure_client() -> std::sync::Arc<rustls::ClientConfig> {
    #[derive(Debug)]
    struct AcceptAny(std::sync::Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = rampart_test_support::crypto_provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    std::sync::Arc::new(config)
}

/// Runs `rampart validate -c path`, requires it to fail, and returns its stderr.
fn validate_fails(path: &Path) -> String {
    let out = Command::new(BIN)
        .args(["validate", "-c"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "validate accepted {}",
        path.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn wait_for<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "condition not met within 10s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `rampart ARGS CONFIG`, which must succeed; its stdout.
fn rampart_ok(args: &[&str], config: &Path) -> String {
    let out = Command::new(BIN).args(args).arg(config).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A file of examples/policies (the demo's Cedar schema and policies).
fn example_policy(name: &str) -> String {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    std::fs::read_to_string(examples.join(name)).unwrap()
}

/// The demo's routes and policies (examples/policies), for `validate` and `roles`.
fn authz_config(dir: &Dir, policies: &str) -> PathBuf {
    let schema = dir.file(
        "rampart.cedarschema",
        &example_policy("rampart.cedarschema"),
    );
    let enforced = dir.file("main.cedar", policies);
    let extra = format!(
        r#"  - name: user-orders
    match: {{ path: "/users/{{user_id}}/orders", methods: [GET] }}
    upstream: up
    auth: {{ providers: [corp] }}
    authorize:
      owner_match: [{{ path: user_id }}]
      owner_exempt_roles: [support]
  - name: admin
    match: {{ prefix: /admin, methods: [GET, POST] }}
    upstream: up
    auth: {{ providers: [corp] }}
    authorize: {{ cedar: true }}
auth_providers:
  corp:
    issuer: "https://idp.example"
    jwks: {{ url: "https://idp.example/jwks" }}
policies:
  schema: "{schema}"
  files: ["{enforced}"]
"#,
        schema = schema.display(),
        enforced = enforced.display(),
    );
    dir.file(
        "authz.yaml",
        &config(free_port(), free_port(), free_port(), &extra),
    )
}

#[test]
fn validate_refuses_a_policy_with_a_typo_naming_its_file_and_line() {
    let dir = Dir::new("validate-cedar");
    let demo = example_policy("demo.cedar");
    let ok = authz_config(&dir, &demo);
    rampart_ok(&["validate", "-c"], &ok);

    let typo = demo.replace("principal.sub", "principal.sbu");
    assert_ne!(typo, demo);
    let line = demo
        .lines()
        .position(|l| l.contains("principal.sub"))
        .unwrap()
        + 1;
    let f = authz_config(&dir, &typo);
    let err = validate_fails(&f);
    let policy_file = dir.0.join("main.cedar");
    assert!(
        err.contains(&format!(
            "{}:{line}: for policy `orders-owner-or-support`",
            policy_file.display()
        )),
        "{err}"
    );
    assert!(err.contains("sbu"), "{err}");
}

#[test]
fn roles_lists_which_role_may_do_what() {
    let dir = Dir::new("roles");
    let demo = example_policy("demo.cedar");
    let f = authz_config(&dir, &demo);
    let table = rampart_ok(&["roles", "-c"], &f);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let row = |route: &str, method: &str, role: &str| {
        rows.iter()
            .find(|r| r.len() >= 4 && r[0] == route && r[1] == method && r[2] == role)
            .unwrap_or_else(|| panic!("no {route} {method} {role} in\n{table}"))
            .clone()
    };
    assert_eq!(row("user-orders", "GET", "support")[3], "any");
    assert_eq!(row("user-orders", "GET", "admin")[3], "own");
    assert_eq!(row("admin", "GET", "admin")[3..], ["any", "admin-area"]);
    assert_eq!(row("admin", "GET", "support")[3], "denied");
    assert_eq!(row("admin", "POST", "admin")[3], "conditional");
    assert!(table.contains("(no role)"), "{table}");

    let csv = rampart_ok(&["roles", "--format", "csv", "-c"], &f);
    assert!(
        csv.starts_with("route,method,role,access,because\n"),
        "{csv}"
    );
    assert!(csv.contains("admin,GET,admin,any,admin-area\n"), "{csv}");
}

/// `rampart run` watches the policy files: promoting the shadow candidate by editing the
/// enforced file takes effect without a signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_policy_file_is_reloaded_without_a_signal() {
    let idp = rampart_test_support::idp::MockIdp::start().await;
    let up = MockUpstream::start().await;
    let dir = Dir::new("watch-policies");
    let (listen, admin) = (free_port(), free_port());
    let schema = dir.file(
        "rampart.cedarschema",
        &example_policy("rampart.cedarschema"),
    );
    let enforced = dir.file("main.cedar", &example_policy("demo.cedar"));
    let extra = format!(
        r#"  - name: admin
    match: {{ prefix: /admin, methods: [GET, POST] }}
    upstream: up
    auth: {{ providers: [corp] }}
    authorize: {{ cedar: true }}
auth_providers:
  corp:
    issuer: "{issuer}"
    audiences: [rampart]
    jwks: {{ discovery: true }}
policies:
  schema: "{schema}"
  files: ["{enforced}"]
"#,
        issuer = idp.issuer(),
        schema = schema.display(),
        enforced = enforced.display(),
    );
    let cfg = dir.file("p.yaml", &config(listen, admin, up.addr, &extra));
    let _gw = spawn(&cfg, admin, "1").await;
    let mut claims = idp.claims("sam", "");
    claims["roles"] = serde_json::json!(["support"]);
    let auth = format!("Bearer {}", idp.mint(&claims));
    let admin_status = || async {
        http1_get(listen, "/admin", &[("authorization", &auth)])
            .await
            .status()
            .as_u16()
    };
    assert_eq!(admin_status().await, 403);
    std::fs::write(&enforced, example_policy("candidate.cedar")).unwrap();
    wait_for(|| async { admin_status().await == 200 }).await;
}
