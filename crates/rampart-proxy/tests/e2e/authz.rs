//! Authorization end to end: ownership rules against encoding and normalization tricks
//! through the real normalizer and router, Cedar decisions, the shadow set in the log and
//! metrics, and policies reloaded with the config.

use std::path::Path;

use rampart_test_support::client::http1_get;
use rampart_test_support::idp::MockIdp;
use rampart_test_support::upstream::MockUpstream;

use crate::common::{TempDir, config, echo, log_lines, metrics, start};

const SCHEMA: &str = include_str!("../../../../examples/policies/rampart.cedarschema");
const POLICIES: &str = include_str!("../../../../examples/policies/demo.cedar");
const CANDIDATE: &str = include_str!("../../../../examples/policies/candidate.cedar");

fn routes(idp: &MockIdp, dir: &TempDir) -> String {
    format!(
        r#"
auth_providers:
  corp:
    issuer: "{issuer}"
    audiences: [rampart]
    jwks: {{ discovery: true }}
policies:
  schema: "{schema}"
  files: ["{policies}"]
  shadow_files: ["{candidate}"]
routes:
  - name: user-orders
    match: {{ path: "/users/{{user_id}}/orders", methods: [GET] }}
    upstream: up
    auth: {{ providers: [corp] }}
    authorize:
      owner_match: [{{ path: user_id, claim: sub }}]
      owner_exempt_roles: [support]
  - name: admin
    match: {{ prefix: /admin, methods: [GET, POST] }}
    upstream: up
    auth: {{ providers: [corp] }}
    authorize: {{ cedar: true }}
"#,
        issuer = idp.issuer(),
        schema = dir.path("rampart.cedarschema").display(),
        policies = dir.path("demo.cedar").display(),
        candidate = dir.path("candidate.cedar").display(),
    )
}

fn write_policies(dir: &TempDir) {
    for (name, text) in [
        ("rampart.cedarschema", SCHEMA),
        ("demo.cedar", POLICIES),
        ("candidate.cedar", CANDIDATE),
    ] {
        std::fs::write(dir.path(name), text).unwrap();
    }
}

fn token(idp: &MockIdp, sub: &str, roles: &[&str]) -> String {
    let mut claims = idp.claims(sub, "");
    claims["roles"] = serde_json::json!(roles);
    format!("Bearer {}", idp.mint(&claims))
}

/// The status of `GET /admin/users` with `authorization`.
async fn admin_area(addr: std::net::SocketAddr, authorization: &str) -> u16 {
    http1_get(addr, "/admin/users", &[("authorization", authorization)])
        .await
        .status()
        .as_u16()
}

/// Alice (no roles) tries to reach bob's orders every way a path can be spelled. Each
/// request names the status it must get and, when it is let through, the path the upstream
/// must see: only ever alice's orders.
#[tokio::test]
async fn ownership_holds_against_encoding_and_normalization_tricks() {
    let idp = MockIdp::start().await;
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    write_policies(&dir);
    let gw = start(&config(up.addr, &dir.path("a.log"), &routes(&idp, &dir))).await;
    let addr = gw.listener_addr("http").unwrap();
    let alice = token(&idp, "alice", &[]);

    let cases: &[(&str, &str, u16, Option<&str>)] = &[
        (
            "own orders",
            "/users/alice/orders",
            200,
            Some("/users/alice/orders"),
        ),
        ("another user's", "/users/bob/orders", 403, None),
        ("encoded letter", "/users/%62ob/orders", 403, None),
        (
            "own id fully encoded",
            "/users/%61%6C%69%63%65/orders",
            200,
            Some("/users/alice/orders"),
        ),
        ("dot-dot segment", "/users/alice/../bob/orders", 403, None),
        (
            "encoded dot-dot",
            "/users/alice/%2e%2e/bob/orders",
            403,
            None,
        ),
        (
            "upper-case encoded dot-dot",
            "/users/alice/%2E%2E/bob/orders",
            403,
            None,
        ),
        (
            "half-encoded dot-dot",
            "/users/alice/.%2e/bob/orders",
            403,
            None,
        ),
        ("dot segment", "/users/./bob/orders", 403, None),
        ("dot segment after the id", "/users/bob/./orders", 403, None),
        (
            "climbing out of own orders",
            "/users/alice/orders/../../bob/orders",
            403,
            None,
        ),
        ("doubled slash", "/users//bob/orders", 403, None),
        ("trailing slash", "/users/bob/orders/", 403, None),
        (
            "own orders with a trailing slash",
            "/users/alice/orders/",
            200,
            Some("/users/alice/orders/"),
        ),
        ("upper case", "/users/BOB/orders", 403, None),
        ("double-encoded dots", "/users/%252e%252e/orders", 403, None),
        (
            "encoded slash inside the id",
            "/users/alice%2F..%2Fbob/orders",
            403,
            None,
        ),
        ("matrix parameter", "/users/bob;/orders", 403, None),
        ("encoded NUL", "/users/bob%00/orders", 400, None),
        ("bad escape", "/users/bob%zz/orders", 400, None),
        (
            "trailing encoded space",
            "/users/alice%20/orders",
            403,
            None,
        ),
        (
            "zero-width space",
            "/users/alice%E2%80%8B/orders",
            403,
            None,
        ),
        ("dotless i", "/users/al%C4%B1ce/orders", 403, None),
        ("overlong UTF-8", "/users/%C1%A1lice/orders", 403, None),
        (
            "query cannot override the path",
            "/users/alice/orders?user_id=bob",
            200,
            Some("/users/alice/orders?user_id=bob"),
        ),
        (
            "literal segments are case-sensitive",
            "/USERS/bob/orders",
            404,
            None,
        ),
        ("too many segments", "/users/bob/orders/x", 404, None),
    ];
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    let mut passed_upstream = 0;
    for (name, path, status, upstream_path) in cases {
        let r = http1_get(addr, path, &[("authorization", &alice)]).await;
        if r.status().as_u16() != *status {
            failures.push(format!(
                "{name}: {path}: expected {status}, got {}",
                r.status()
            ));
            continue;
        }
        if let Some(seen) = upstream_path {
            passed_upstream += 1;
            let got = echo(r.body())["path"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if got != *seen {
                failures.push(format!(
                    "{name}: {path}: upstream saw {got}, expected {seen}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        up.requests(),
        passed_upstream,
        "nothing else reached the upstream"
    );

    // Support staff are exempt; no credentials is 401.
    let support = token(&idp, "sam", &["support"]);
    let r = http1_get(addr, "/users/bob/orders", &[("authorization", &support)]).await;
    assert_eq!(r.status(), 200);
    let r = http1_get(addr, "/users/bob/orders", &[]).await;
    assert_eq!(r.status(), 401);

    // Every denial named its rule in the security events and the metrics.
    let m = metrics(gw.admin_addr()).await;
    assert!(
        m.contains(r#"rampart_authz_decisions_total{route="user-orders",layer="authz",outcome="deny",rule="owner:path.user_id=sub"}"#),
        "{m}"
    );
    assert!(
        m.contains(r#"rampart_denials_total{layer="authz",reason="not_owner"}"#),
        "{m}"
    );
}

/// The admin area is decided by Cedar: role admin only, writes only from inside; the
/// shadow candidate's opinion is logged beside the decision; an edited policy file takes
/// effect on reload, and one that does not validate is refused, the old policies holding.
#[tokio::test]
async fn cedar_decides_logs_the_shadow_set_and_reloads_with_the_config() {
    let idp = MockIdp::start().await;
    let up = MockUpstream::start().await;
    let dir = TempDir::new();
    write_policies(&dir);
    let log = dir.path("a.log");
    let yaml = config(up.addr, &log, &routes(&idp, &dir));
    let gw = start(&yaml).await;
    let addr = gw.listener_addr("http").unwrap();
    let admin = token(&idp, "ada", &["admin"]);
    let support = token(&idp, "sam", &["support"]);
    let user = token(&idp, "bob", &[]);

    assert_eq!(admin_area(addr, &admin).await, 200);
    let r = http1_get(addr, "/admin/users", &[("authorization", &user)]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(echo(r.body())["reason"], "no_permit");
    let r = http1_get(addr, "/admin/users", &[("authorization", &support)]).await;
    assert_eq!(r.status(), 403);

    // The access log explains each decision; for support, the shadow set would allow.
    // Three access lines and two security events (one per denial).
    let lines: Vec<serde_json::Value> = log_lines(&log, 5)
        .await
        .into_iter()
        .filter(|l| l["type"] == "access")
        .collect();
    assert_eq!(lines.len(), 3);
    let events: Vec<serde_json::Value> = log_lines(&log, 5)
        .await
        .into_iter()
        .filter(|l| l["type"] == "security")
        .collect();
    assert_eq!(events[0]["rule_id"], "cedar:default-deny");
    assert_eq!(events[0]["layer"], "authz");
    let decisions = |i: usize| lines[i]["rampart.decisions"].as_array().unwrap().clone();
    let find = |i: usize, layer: &str| {
        decisions(i)
            .into_iter()
            .find(|d| d["layer"] == layer)
            .unwrap_or_else(|| panic!("no {layer} decision in {:?}", lines[i]))
    };
    assert_eq!(find(0, "authz")["rule_id"], "admin-area");
    assert_eq!(find(1, "authz")["reason"], "no_permit");
    assert_eq!(find(1, "authz")["rule_id"], "cedar:default-deny");
    assert_eq!(find(1, "authz_shadow")["outcome"], "shadow");
    assert_eq!(find(2, "authz")["outcome"], "deny");
    assert_eq!(find(2, "authz_shadow")["outcome"], "allow");
    assert_eq!(find(2, "authz_shadow")["rule_id"], "support-reads-admin");
    let m = metrics(gw.admin_addr()).await;
    assert!(
        m.contains(r#"rampart_authz_decisions_total{route="admin",layer="authz_shadow",outcome="allow",rule="support-reads-admin"} 1"#),
        "{m}"
    );

    // Promote the candidate: edit the enforced file and reload the same config.
    std::fs::write(dir.path("demo.cedar"), CANDIDATE).unwrap();
    gw.reload(rampart_config::parse(&yaml, Path::new("t.yaml")).unwrap())
        .unwrap();
    assert_eq!(admin_area(addr, &support).await, 200);

    // A typo: the reload is refused with the file and line, and the policies in force stay.
    let typo = CANDIDATE.replace("principal.sub", "principal.sbu");
    assert_ne!(typo, CANDIDATE);
    std::fs::write(dir.path("demo.cedar"), &typo).unwrap();
    let err = gw
        .reload(rampart_config::parse(&yaml, Path::new("t.yaml")).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("demo.cedar:") && err.contains("sbu"), "{err}");
    assert_eq!(admin_area(addr, &support).await, 200);
    assert_eq!(admin_area(addr, &user).await, 403);
}
