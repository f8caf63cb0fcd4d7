use std::path::Path;

use super::*;

const GOOD: &str = r#"
listeners:
  - name: public
    bind: "127.0.0.1:8080"
upstreams:
  api:
    targets: ["127.0.0.1:9000"]
    connect_timeout: 2s
routes:
  - name: users
    match: { path: "/users/{id}", methods: [GET] }
    upstream: api
"#;

fn parse_str(s: &str) -> Result<Config, ConfigErrors> {
    parse(s, Path::new("rampart.yaml"))
}

#[test]
fn a_good_config_parses_with_defaults() {
    let c = parse_str(GOOD).expect("valid");
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.upstreams["api"].connect_timeout.0.as_secs(), 2);
    assert_eq!(c.upstreams["api"].response_timeout.0.as_secs(), 30);
    assert_eq!(c.limits.max_body_bytes.0, 1 << 20);
    assert_eq!(c.admin.bind.value.port(), 9901);
}

#[test]
fn unknown_field_names_its_line() {
    let bad = GOOD.replace("    connect_timeout: 2s", "    conect_timeout: 2s");
    let errs = parse_str(&bad).expect_err("unknown field");
    let e = &errs.0[0];
    assert_eq!(e.line, Some(8), "{e}");
    assert!(e.message.contains("conect_timeout"), "{e}");
    assert!(
        e.to_string()
            .starts_with("rampart.yaml:8:5: unknown field `conect_timeout`"),
        "{e}"
    );
}

#[test]
fn bad_duration_names_its_line() {
    let bad = GOOD.replace("connect_timeout: 2s", "connect_timeout: 2 seconds");
    let errs = parse_str(&bad).expect_err("bad duration");
    let e = &errs.0[0];
    assert_eq!(e.line, Some(8), "{e}");
    assert!(e.message.contains("invalid duration"), "{e}");
}

#[test]
fn semantic_errors_are_all_reported_with_locations() {
    let bad = r#"
listeners:
  - name: a
    bind: "127.0.0.1:8080"
  - name: a
    bind: "127.0.0.1:8080"
upstreams:
  api:
    targets: ["nohost"]
routes:
  - name: r
    match: { prefix: "api" }
    upstream: missing
"#;
    let errs = parse_str(bad).expect_err("invalid").0;
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|t| t.contains(":5:") || t.contains("used twice")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("rampart.yaml:6:") && t.contains("bound twice")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("rampart.yaml:9:") && t.contains("host:port")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("rampart.yaml:13:") && t.contains("unknown upstream")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("rampart.yaml:12:") && t.contains("must start with /")),
        "{text:?}"
    );
}

#[test]
fn path_and_prefix_are_exclusive() {
    let bad = GOOD.replace(
        r#"match: { path: "/users/{id}", methods: [GET] }"#,
        r#"match: { path: "/a", prefix: "/b" }"#,
    );
    let errs = parse_str(&bad).expect_err("both").0;
    assert!(errs.iter().any(|e| e.message.contains("exactly one")));
}

#[test]
fn tls_and_hsts_settings_parse() {
    let yaml = r#"
listeners:
  - name: tls
    bind: "127.0.0.1:8443"
    tls:
      cert: cert.pem
      key: key.pem
      min_version: "1.3"
      client_auth: { ca: ca.pem, required: false }
      hsts: { max_age: 1d, preload: true }
  - name: plain
    bind: "127.0.0.1:8080"
    redirect_https: { port: 8443 }
"#;
    let c = parse_str(yaml).expect("valid");
    let tls = c.listeners[0].tls.as_ref().expect("tls");
    assert_eq!(tls.min_version, TlsVersion::Tls13);
    assert_eq!(tls.hsts.max_age.0.as_secs(), 86_400);
    assert!(tls.hsts.include_subdomains && tls.hsts.preload);
    assert_eq!(tls.cert.referenced.line(), 6);
    assert!(!tls.client_auth.as_ref().expect("mtls").required);
    assert_eq!(
        c.listeners[1].redirect_https.as_ref().map(|r| r.port),
        Some(8443)
    );
}

#[test]
fn syntax_errors_have_a_location() {
    let errs = parse_str("listeners: [\n  - name: x\n")
        .expect_err("syntax")
        .0;
    assert!(errs[0].line.is_some(), "{}", errs[0]);
}

#[test]
fn the_published_schema_is_current() {
    // Compared as JSON values: the order of members depends on serde_json's features,
    // which other crates of the workspace may switch on.
    let schema = serde_json::to_value(json_schema()).expect("serializes");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.schema.json");
    let published: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
            .unwrap_or_default();
    assert!(
        published == schema,
        "docs/config.schema.json is out of date: run `cargo run -p rampart -- schema > docs/config.schema.json`"
    );
}

#[test]
fn a_route_host_with_a_port_is_refused() {
    let bad = GOOD.replace(
        r#"match: { path: "/users/{id}", methods: [GET] }"#,
        r#"match: { host: "api.example.com:8443", path: "/users/{id}" }"#,
    );
    let errs = parse_str(&bad).expect_err("host with port").0;
    assert!(
        errs.iter().any(|e| e.message.contains("has a port")),
        "{errs:?}"
    );
}

#[test]
fn rate_limit_policies_are_checked() {
    let yaml = GOOD.to_string()
        + r#"    rate_limit: [login, nope]
rate_limits:
  login:
    algorithm: leaky_bucket
    rate: 10/5s
    burst: 2
    delay: 3
    key: [ip, "header:x api"]
"#;
    let errs = parse_str(&yaml).expect_err("invalid").0;
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    for needle in [
        "unknown rate limit \"nope\"",
        "per second or per minute",
        "delay cannot exceed burst",
        "key part \"header:x api\"",
    ] {
        assert!(
            text.iter().any(|t| t.contains(needle)),
            "{needle} not in {text:?}"
        );
    }
    let ok = GOOD.to_string()
        + "    rate_limit: [login]\nrate_limits:\n  login: { algorithm: leaky_bucket, rate: 10r/s, burst: 5, nodelay: true }\n";
    let c = parse_str(&ok).expect("valid");
    assert_eq!(c.rate_limits["login"].rate.value.count.get(), 10);
}

#[test]
fn shared_policies_need_redis_and_failure_modes_need_a_shared_store() {
    let yaml = GOOD.to_string()
        + r#"    rate_limit: [fleet, local]
rate_limits:
  fleet: { rate: 10/s, store: redis, on_store_failure: closed }
  local: { rate: 10/s, on_store_failure: open }
"#;
    let errs = parse_str(&yaml).expect_err("invalid").0;
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    for needle in [
        "rate_limits.fleet: store: redis needs the top-level redis section",
        "rate_limits.local: on_store_failure applies to store: redis only",
    ] {
        assert!(
            text.iter().any(|t| t.contains(needle)),
            "{needle} not in {text:?}"
        );
    }
    assert!(
        errs.iter().all(|e| e.line.is_some()),
        "policy errors point at the policy: {text:?}"
    );
    let bad_url = GOOD.to_string() + "redis: { url: \"http://secret@host\" }\n";
    let errs = parse_str(&bad_url).expect_err("invalid").0;
    assert!(errs[0].message.contains("redis.url must be"));
    assert!(!errs[0].message.contains("secret"), "the url is not echoed");
    let ok = GOOD.to_string()
        + r#"    rate_limit: [fleet]
redis: { url: "redis://127.0.0.1:6379/0", timeout: 20ms }
rate_limits:
  fleet: { rate: 10/s, store: redis, on_store_failure: open }
"#;
    let c = parse_str(&ok).expect("valid");
    let redis = c.redis.expect("redis section");
    assert_eq!(redis.timeout.0, std::time::Duration::from_millis(20));
    assert_eq!(redis.breaker_failures, 5);
    assert_eq!(c.rate_limits["fleet"].store, StoreKind::Redis);
    assert_eq!(c.rate_limits["fleet"].on_store_failure, StoreFailure::Open);
}

#[test]
fn auth_providers_are_checked() {
    let yaml = GOOD.to_string()
        + r#"    auth: { providers: [corp, nope] }
auth_providers:
  corp:
    issuer: https://id.example.com
    algorithms: [RS256, none, HS256, XY999]
    jwks: { url: "https://id.example.com/jwks", discovery: true }
    leeway: 10m
    token_from: { header: x-token, cookie: t }
    forward_claims: { sub: "x user" }
  bare:
    issuer: ""
"#;
    let errs = parse_str(&yaml).expect_err("invalid").0;
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    for needle in [
        "unknown auth provider \"nope\"",
        "alg none is never accepted",
        "algorithm \"XY999\"",
        "HS* algorithms need hmac_secret_file",
        "exactly one of file, url and discovery",
        "leeway is at most 300s",
        "token_from takes at most one",
        "\"x user\" is not a valid header name",
        "auth_providers.bare: issuer must not be empty",
        "auth_providers.bare: public-key algorithms need jwks",
    ] {
        assert!(
            text.iter().any(|t| t.contains(needle)),
            "{needle} not in {text:?}"
        );
    }
    assert!(errs.iter().all(|e| e.line.is_some()), "{text:?}");
    let ok = GOOD.to_string()
        + r#"    auth: { providers: [corp], scopes: [users:read] }
auth_providers:
  corp:
    issuer: https://id.example.com
    audiences: [api]
    jwks: { discovery: true }
    typ: at+jwt
"#;
    let c = parse_str(&ok).expect("valid");
    let corp = &c.auth_providers["corp"];
    assert_eq!(corp.leeway.0.as_secs(), 60);
    assert_eq!(
        corp.algorithms,
        ["RS256", "PS256", "ES256", "ES384", "EdDSA"]
    );
    let jwks = corp.jwks.as_ref().expect("jwks");
    assert_eq!(jwks.refetch_cooldown.0.as_secs(), 30);
    assert_eq!(
        c.routes[0].auth.as_ref().expect("auth").scopes,
        ["users:read"]
    );
}

#[test]
fn api_keys_are_digests_never_keys() {
    let yaml = GOOD.to_string()
        + r#"    auth: { api_keys: true }
api_keys:
  keys:
    - { sha256: "rk_live_the_key_itself", subject: billing }
    - { sha256: "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", subject: a }
    - { sha256: "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", subject: b }
"#;
    let errs = parse_str(&yaml).expect_err("invalid").0;
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|t| t.contains("sha256:<64 hex digits>")),
        "{text:?}"
    );
    assert!(text.iter().any(|t| t.contains("listed twice")), "{text:?}");
    assert!(errs.iter().all(|e| e.line.is_some()), "{text:?}");
    let no_section = GOOD.to_string() + "    auth: { api_keys: true }\n";
    let errs = parse_str(&no_section).expect_err("invalid").0;
    assert!(
        errs[0]
            .message
            .contains("needs the top-level api_keys section")
    );
}

#[test]
fn shared_revocations_need_redis() {
    let yaml = GOOD.to_string() + "revocations: { store: redis }\n";
    let errs = parse_str(&yaml).expect_err("invalid").0;
    assert!(
        errs[0]
            .message
            .contains("revocations: store: redis needs the top-level redis")
    );
    let ok = GOOD.to_string()
        + "redis: { url: \"redis://127.0.0.1:6379\" }\nrevocations: { store: redis }\n";
    let c = parse_str(&ok).expect("valid");
    assert_eq!(c.revocations.store, StoreKind::Redis);
    assert_eq!(
        parse_str(GOOD).expect("valid").revocations.max_entries,
        1_000_000
    );
}

#[test]
fn authorize_is_checked_against_the_route_and_providers() {
    let with = |authorize: &str| {
        format!(
            r#"{GOOD}    auth: {{ providers: [corp] }}
    authorize: {authorize}
auth_providers:
  corp:
    issuer: "https://idp.example"
    jwks: {{ url: "https://idp.example/jwks" }}
"#
        )
    };
    let ok = with(
        "{ scopes: { all_of: [a], any_of: [b, c] }, roles: { any_of: [admin] }, owner_match: [{ path: id }, { header: x-tenant, claim: org.tenant, case: insensitive }], owner_exempt_roles: [support], providers: [corp] }",
    );
    let c = parse_str(&ok).unwrap_or_else(|e| panic!("{e}"));
    let a = c.routes[0].authorize.as_ref().unwrap();
    assert_eq!(a.owner_match[0].claim, "sub");
    assert_eq!(a.owner_match[1].case, CaseRule::Insensitive);
    assert_eq!(c.auth_providers["corp"].roles_claim, "roles");

    let refused = |authorize: &str, needle: &str, line: Option<u64>| {
        let errs = parse_str(&with(authorize)).expect_err(authorize);
        let e = errs
            .0
            .iter()
            .find(|e| e.message.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {errs}"));
        if line.is_some() {
            assert_eq!(e.line, line, "{e}");
        }
    };
    refused(
        "{ owner_match: [{ path: user }] }",
        "not a parameter of the route's path template (id)",
        Some(14),
    );
    refused(
        "{ owner_match: [{ path: id, query: id }] }",
        "exactly one of path, query and header",
        None,
    );
    refused(
        "{ owner_match: [{ claim: sub }] }",
        "exactly one of path",
        None,
    );
    refused(
        "{ owner_match: [{ header: \"bad header\" }] }",
        "not a valid header name",
        None,
    );
    refused(
        "{ owner_match: [{ path: id, claim: \"a..b\" }] }",
        "not a claim name or dotted path",
        None,
    );
    refused(
        "{ owner_exempt_roles: [support] }",
        "exempts from nothing",
        None,
    );
    refused(
        "{ providers: [other] }",
        "which the route's auth does not accept",
        None,
    );
    refused(
        "{ roles: { any_of: [\"\"] } }",
        "authorize.roles has an empty name",
        None,
    );
    refused(
        "{ cedar: true }",
        "needs the top-level policies section",
        None,
    );
    refused(
        "{ owner_match: [{ path: id, case: upper }] }",
        "unknown variant",
        None,
    );

    // authorize without auth.
    let errs = parse_str(&format!(
        "{GOOD}    authorize: {{ roles: {{ any_of: [a] }} }}\n"
    ))
    .expect_err("no auth");
    assert!(errs.to_string().contains("authorize needs auth"), "{errs}");

    // Policies need files.
    let errs = parse_str(&format!(
        "{GOOD}policies: {{ schema: s.cedarschema, files: [] }}\n"
    ))
    .expect_err("no files");
    assert!(
        errs.to_string().contains("at least one policy file"),
        "{errs}"
    );
}
