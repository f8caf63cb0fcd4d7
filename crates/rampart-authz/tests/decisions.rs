//! Table tests: (identity, request, configuration) -> decision, for route requirements,
//! ownership rules, Cedar permit/forbid and the shadow set. The encoding tricks that need
//! the router's normalization run through the real gateway in rampart-proxy's e2e tests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use common::{SCHEMA_TEXT, engine, load_with};
use http::HeaderName;
use rampart_authz::owner::Source as From;
use rampart_authz::{
    Authorize, Case, CedarRoute, Need, OwnerRule, PolicyEngine, Requirements, SHADOW_LAYER, Source,
};
use rampart_core::{
    ClaimValue, ClientInfo, Identity, ManualClock, Outcome, RequestContext, RouteInfo, Verdict,
};

/// What a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Allowed, the final decision naming this rule.
    Allow(&'static str),
    /// Refused with this status, reason and rule.
    Deny(u16, &'static str, &'static str),
}
use Expect::{Allow, Deny};

struct Who {
    sub: &'static str,
    provider: &'static str,
    scopes: &'static [&'static str],
    roles: &'static [&'static str],
    groups: &'static [&'static str],
    claims: &'static [(&'static str, Claim)],
}

#[derive(Clone, Copy)]
enum Claim {
    S(&'static str),
    I(i64),
    L(&'static [&'static str]),
    B(bool),
}

const NOBODY: Option<Who> = None;

fn who(sub: &'static str) -> Who {
    Who {
        sub,
        provider: "corp",
        scopes: &[],
        roles: &[],
        groups: &[],
        claims: &[],
    }
}

impl Who {
    fn scopes(mut self, s: &'static [&'static str]) -> Who {
        self.scopes = s;
        self
    }
    fn roles(mut self, r: &'static [&'static str]) -> Who {
        self.roles = r;
        self
    }
    fn groups(mut self, g: &'static [&'static str]) -> Who {
        self.groups = g;
        self
    }
    fn provider(mut self, p: &'static str) -> Who {
        self.provider = p;
        self
    }
    fn claims(mut self, c: &'static [(&'static str, Claim)]) -> Who {
        self.claims = c;
        self
    }
    fn identity(&self) -> Identity {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let mut claims = BTreeMap::new();
        claims.insert("sub".to_owned(), ClaimValue::String(self.sub.into()));
        claims.insert(
            "iss".to_owned(),
            ClaimValue::String("https://idp.example".into()),
        );
        for (k, c) in self.claims {
            let value = match c {
                Claim::S(s) => ClaimValue::String((*s).into()),
                Claim::I(n) => ClaimValue::Int(*n),
                Claim::L(items) => ClaimValue::List(
                    items
                        .iter()
                        .map(|s| ClaimValue::String((*s).into()))
                        .collect(),
                ),
                Claim::B(b) => ClaimValue::Bool(*b),
            };
            claims.insert((*k).to_owned(), value);
        }
        Identity {
            subject: self.sub.into(),
            issuer: "https://idp.example".into(),
            provider: self.provider.into(),
            scopes: v(self.scopes),
            roles: v(self.roles),
            groups: v(self.groups),
            claims: Arc::new(claims),
            ..Identity::default()
        }
    }
}

/// The parameters of `path` under `template` (both already normalized, as the router
/// hands them over).
fn params(template: &str, path: &str) -> Vec<(Arc<str>, String)> {
    template
        .split('/')
        .zip(path.split('/'))
        .filter_map(|(t, p)| {
            let name = t.strip_prefix('{')?.strip_suffix('}')?;
            Some((Arc::from(name), p.to_owned()))
        })
        .collect()
}

struct Outcome2 {
    verdict: Verdict,
    ctx: RequestContext,
}

fn run(
    authz: &Authorize,
    template: &str,
    who: Option<&Who>,
    request: &str,
    headers: &[(&str, &str)],
    client: &str,
) -> Outcome2 {
    let (method, uri) = request.split_once(' ').unwrap();
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let (head, ()) = builder.body(()).unwrap().into_parts();
    let ip: IpAddr = client.parse().unwrap();
    let mut ctx = RequestContext::new(
        "t".into(),
        ClientInfo {
            ip,
            peer: SocketAddr::new(ip, 40000),
            tls: None,
        },
    );
    ctx.route = Some(RouteInfo {
        name: "r".into(),
        template: template.into(),
        params: params(template, head.uri.path()),
    });
    ctx.identity = who.map(Who::identity);
    let verdict = authz.decide(&mut ctx, &head);
    Outcome2 { verdict, ctx }
}

fn got(o: &Outcome2) -> Expect {
    match &o.verdict {
        Verdict::Continue => {
            let last = o.ctx.decisions.last().expect("an allow is recorded");
            assert_eq!(last.outcome, Outcome::Allow);
            let rule = last.rule_id.as_deref().unwrap_or("");
            Allow(Box::leak(rule.to_owned().into_boxed_str()))
        }
        Verdict::Deny(i) => Deny(
            i.status.as_u16(),
            Box::leak(i.reason.to_string().into_boxed_str()),
            Box::leak(
                i.rule_id
                    .as_deref()
                    .unwrap_or("")
                    .to_owned()
                    .into_boxed_str(),
            ),
        ),
        Verdict::Delay(_) => panic!("authorization never delays"),
    }
}

fn check_table(authz: &Authorize, template: &str, cases: Vec<(&str, Option<Who>, &str, Expect)>) {
    let mut failures = Vec::new();
    for (name, who, request, expect) in &cases {
        let o = run(authz, template, who.as_ref(), request, &[], "203.0.113.9");
        let g = got(&o);
        if g != *expect {
            failures.push(format!("{name}: {request}: expected {expect:?}, got {g:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn authorize(req: Requirements, owner: Vec<OwnerRule>, exempt: &[&str]) -> Authorize {
    Authorize::new(req, owner, v(exempt), None, Arc::new(ManualClock::new()))
}

#[test]
fn scopes_all_of_and_any_of() {
    let a = authorize(
        Requirements {
            scopes: Need {
                all_of: v(&["orders:read"]),
                any_of: v(&["eu", "us"]),
            },
            ..Requirements::default()
        },
        vec![],
        &[],
    );
    check_table(
        &a,
        "/orders",
        vec![
            (
                "all and one of any",
                Some(who("a").scopes(&["orders:read", "eu"])),
                "GET /orders",
                Allow("requirements"),
            ),
            (
                "all and the other of any",
                Some(who("a").scopes(&["us", "orders:read", "x"])),
                "GET /orders",
                Allow("requirements"),
            ),
            (
                "missing the all_of scope",
                Some(who("a").scopes(&["eu", "us"])),
                "GET /orders",
                Deny(403, "insufficient_scope", "scopes.all_of"),
            ),
            (
                "none of any_of",
                Some(who("a").scopes(&["orders:read"])),
                "GET /orders",
                Deny(403, "insufficient_scope", "scopes.any_of"),
            ),
            (
                "scope names are exact (no prefix match)",
                Some(who("a").scopes(&["orders:read:all", "eu"])),
                "GET /orders",
                Deny(403, "insufficient_scope", "scopes.all_of"),
            ),
            (
                "scope names are case-sensitive",
                Some(who("a").scopes(&["Orders:Read", "eu"])),
                "GET /orders",
                Deny(403, "insufficient_scope", "scopes.all_of"),
            ),
            (
                "no credentials",
                NOBODY,
                "GET /orders",
                Deny(401, "authentication_required", "authorize"),
            ),
        ],
    );
    // The 403 carries the RFC 6750 challenge naming the scopes.
    let o = run(
        &a,
        "/orders",
        Some(&who("a")),
        "GET /orders",
        &[],
        "10.0.0.1",
    );
    let Verdict::Deny(i) = &o.verdict else {
        panic!("denied")
    };
    let challenge = i.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"orders:read eu us\""),
        "{challenge}"
    );
}

#[test]
fn roles_groups_and_providers() {
    let a = authorize(
        Requirements {
            providers: v(&["corp"]),
            roles: Need {
                all_of: vec![],
                any_of: v(&["admin", "auditor"]),
            },
            groups: Need {
                all_of: v(&["staff"]),
                any_of: vec![],
            },
            ..Requirements::default()
        },
        vec![],
        &[],
    );
    check_table(
        &a,
        "/admin",
        vec![
            (
                "admin in staff",
                Some(who("a").roles(&["admin"]).groups(&["staff"])),
                "GET /admin",
                Allow("requirements"),
            ),
            (
                "auditor in staff",
                Some(who("a").roles(&["auditor"]).groups(&["staff", "x"])),
                "GET /admin",
                Allow("requirements"),
            ),
            (
                "no role",
                Some(who("a").groups(&["staff"])),
                "GET /admin",
                Deny(403, "role_required", "roles.any_of"),
            ),
            (
                "role name with another case",
                Some(who("a").roles(&["Admin"]).groups(&["staff"])),
                "GET /admin",
                Deny(403, "role_required", "roles.any_of"),
            ),
            (
                "a role is not a group",
                Some(who("a").roles(&["admin", "staff"])),
                "GET /admin",
                Deny(403, "group_required", "groups.all_of"),
            ),
            (
                "a group is not a role",
                Some(who("a").groups(&["staff", "admin"])),
                "GET /admin",
                Deny(403, "role_required", "roles.any_of"),
            ),
            (
                "the right role from another provider",
                Some(
                    who("a")
                        .roles(&["admin"])
                        .groups(&["staff"])
                        .provider("api_keys"),
                ),
                "GET /admin",
                Deny(403, "provider_not_allowed", "providers"),
            ),
        ],
    );
}

fn owner(source: From, claim: &str, case: Case) -> OwnerRule {
    OwnerRule {
        source,
        claim: claim.into(),
        case,
    }
}

#[test]
fn ownership_by_path_parameter_with_encoding_tricks() {
    let a = authorize(
        Requirements::default(),
        vec![owner(From::Path("user_id".into()), "sub", Case::Sensitive)],
        &["support"],
    );
    let t = "/users/{user_id}/orders";
    let rule = "owner:path.user_id=sub";
    check_table(
        &a,
        t,
        vec![
            (
                "own orders",
                Some(who("alice")),
                "GET /users/alice/orders",
                Allow("owner_match"),
            ),
            (
                "another user's",
                Some(who("alice")),
                "GET /users/bob/orders",
                Deny(403, "not_owner", rule),
            ),
            (
                "percent-encoded own id is still own",
                Some(who("alice@example.com")),
                "GET /users/alice%40example.com/orders",
                Allow("owner_match"),
            ),
            (
                "double encoding decodes once only",
                Some(who("alice")),
                "GET /users/%2561lice/orders",
                Deny(403, "not_owner", rule),
            ),
            (
                "encoded slash and dot segments inside the id",
                Some(who("alice")),
                "GET /users/bob%2F..%2Falice/orders",
                Deny(403, "not_owner", rule),
            ),
            (
                "case differs",
                Some(who("alice")),
                "GET /users/Alice/orders",
                Deny(403, "not_owner", rule),
            ),
            (
                "trailing encoded space",
                Some(who("alice")),
                "GET /users/alice%20/orders",
                Deny(403, "not_owner", rule),
            ),
            (
                "encoded NUL after the id",
                Some(who("alice")),
                "GET /users/alice%00/orders",
                Deny(403, "not_owner", rule),
            ),
            (
                "overlong UTF-8 for 'a'",
                Some(who("alice")),
                "GET /users/%C1%A1lice/orders",
                Deny(403, "owner_undecodable", rule),
            ),
            (
                "NFD spelling of an NFC subject",
                Some(who("jos\u{e9}")),
                "GET /users/jose%CC%81/orders",
                Deny(403, "not_owner", rule),
            ),
            (
                "NFC spelling, percent-encoded, of the same subject",
                Some(who("jos\u{e9}")),
                "GET /users/jos%C3%A9/orders",
                Allow("owner_match"),
            ),
            (
                "fullwidth letters",
                Some(who("alice")),
                "GET /users/%EF%BD%81lice/orders",
                Deny(403, "not_owner", rule),
            ),
            (
                "matrix parameter appended",
                Some(who("alice")),
                "GET /users/alice;role=admin/orders",
                Deny(403, "not_owner", rule),
            ),
            (
                "support is exempt",
                Some(who("sam").roles(&["support"])),
                "GET /users/bob/orders",
                Allow("owner_exempt_roles:support"),
            ),
            (
                "a support group is not the support role",
                Some(who("sam").groups(&["support"])),
                "GET /users/bob/orders",
                Deny(403, "not_owner", rule),
            ),
            (
                "no credentials",
                NOBODY,
                "GET /users/alice/orders",
                Deny(401, "authentication_required", "authorize"),
            ),
        ],
    );
}

#[test]
fn ownership_by_query_header_and_tenant_claims() {
    let a = authorize(
        Requirements::default(),
        vec![
            owner(From::Query("account".into()), "sub", Case::Sensitive),
            owner(
                From::Header(HeaderName::from_static("x-tenant")),
                "tenant",
                Case::AsciiInsensitive,
            ),
        ],
        &[],
    );
    let alice = || who("alice").claims(&[("tenant", Claim::S("acme"))]);
    let cases = [
        (
            "own account, own tenant",
            "account=alice",
            vec!["acme"],
            Allow("owner_match"),
        ),
        (
            "encoded query value",
            "account=%61lice",
            vec!["acme"],
            Allow("owner_match"),
        ),
        (
            "tenant ignoring ASCII case",
            "account=alice",
            vec!["ACME"],
            Allow("owner_match"),
        ),
        (
            "another account",
            "account=bob",
            vec!["acme"],
            Deny(403, "not_owner", "owner:query.account=sub"),
        ),
        (
            "duplicate parameter",
            "account=alice&account=bob",
            vec!["acme"],
            Deny(403, "owner_ambiguous", "owner:query.account=sub"),
        ),
        (
            "duplicate behind ;",
            "account=alice;account=bob",
            vec!["acme"],
            Deny(403, "owner_ambiguous", "owner:query.account=sub"),
        ),
        (
            "duplicate with another case",
            "account=alice&ACCOUNT=bob",
            vec!["acme"],
            Deny(403, "owner_ambiguous", "owner:query.account=sub"),
        ),
        (
            "duplicate with an encoded name",
            "account=alice&acc%6Funt=bob",
            vec!["acme"],
            Deny(403, "owner_ambiguous", "owner:query.account=sub"),
        ),
        (
            "plus is a space",
            "account=alice+",
            vec!["acme"],
            Deny(403, "not_owner", "owner:query.account=sub"),
        ),
        (
            "missing parameter",
            "other=alice",
            vec!["acme"],
            Deny(403, "owner_missing", "owner:query.account=sub"),
        ),
        (
            "empty value",
            "account=",
            vec!["acme"],
            Deny(403, "not_owner", "owner:query.account=sub"),
        ),
        (
            "another tenant",
            "account=alice",
            vec!["globex"],
            Deny(403, "not_owner", "owner:header.x-tenant=tenant"),
        ),
        (
            "two tenant headers",
            "account=alice",
            vec!["acme", "globex"],
            Deny(403, "owner_ambiguous", "owner:header.x-tenant=tenant"),
        ),
        (
            "a tenant list in one header",
            "account=alice",
            vec!["acme, globex"],
            Deny(403, "not_owner", "owner:header.x-tenant=tenant"),
        ),
        (
            "Kelvin sign for K under ASCII case folding",
            "account=alice",
            vec!["\u{212A}acme"],
            Deny(403, "owner_undecodable", "owner:header.x-tenant=tenant"),
        ),
        (
            "no tenant header",
            "account=alice",
            vec![],
            Deny(403, "owner_missing", "owner:header.x-tenant=tenant"),
        ),
    ];
    let mut failures = Vec::new();
    for (name, query, tenants, expect) in cases {
        let mut builder = http::Request::get(format!("/accounts?{query}"));
        for t in &tenants {
            // Header values that are not visible ASCII go in as raw bytes.
            builder = builder.header(
                "x-tenant",
                http::HeaderValue::from_bytes(t.as_bytes()).unwrap(),
            );
        }
        let (head, ()) = builder.body(()).unwrap().into_parts();
        let mut ctx = RequestContext::new(
            "t".into(),
            ClientInfo {
                ip: [10, 0, 0, 1].into(),
                peer: "10.0.0.1:1".parse().unwrap(),
                tls: None,
            },
        );
        ctx.identity = Some(alice().identity());
        let verdict = a.decide(&mut ctx, &head);
        let g = got(&Outcome2 { verdict, ctx });
        if g != expect {
            failures.push(format!("{name}: expected {expect:?}, got {g:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ownership_against_numbers_lists_and_odd_claims() {
    let by = |claim: &str| {
        authorize(
            Requirements::default(),
            vec![owner(From::Path("id".into()), claim, Case::Sensitive)],
            &[],
        )
    };
    let t = "/tenants/{id}";
    let user = || {
        who("alice").claims(&[
            ("tenant_id", Claim::I(42)),
            ("tenants", Claim::L(&["acme", "globex"])),
            ("admin", Claim::B(true)),
        ])
    };
    check_table(
        &by("tenant_id"),
        t,
        vec![
            (
                "number claim",
                Some(user()),
                "GET /tenants/42",
                Allow("owner_match"),
            ),
            (
                "leading zero",
                Some(user()),
                "GET /tenants/042",
                Deny(403, "not_owner", "owner:path.id=tenant_id"),
            ),
            (
                "plus sign",
                Some(user()),
                "GET /tenants/+42",
                Deny(403, "not_owner", "owner:path.id=tenant_id"),
            ),
        ],
    );
    check_table(
        &by("tenants"),
        t,
        vec![
            (
                "member of a listed tenant",
                Some(user()),
                "GET /tenants/globex",
                Allow("owner_match"),
            ),
            (
                "not a member",
                Some(user()),
                "GET /tenants/initech",
                Deny(403, "not_owner", "owner:path.id=tenants"),
            ),
        ],
    );
    check_table(
        &by("admin"),
        t,
        vec![(
            "a boolean claim owns nothing",
            Some(user()),
            "GET /tenants/true",
            Deny(403, "owner_no_claim", "owner:path.id=admin"),
        )],
    );
    check_table(
        &by("org"),
        t,
        vec![(
            "a missing claim owns nothing",
            Some(user()),
            "GET /tenants/acme",
            Deny(403, "owner_no_claim", "owner:path.id=org"),
        )],
    );
}

fn cedar_route(
    engine: &Arc<PolicyEngine>,
    name: &str,
    template: &str,
    methods: &[&str],
) -> Authorize {
    let route = engine.route(name, template, &v(methods)).unwrap();
    Authorize::new(
        Requirements::default(),
        vec![],
        vec![],
        Some(CedarRoute {
            engine: engine.clone(),
            route,
        }),
        Arc::new(ManualClock::new()),
    )
}

#[test]
fn cedar_permit_forbid_and_default_deny() {
    let e = engine(false);
    let admin = cedar_route(&e, "admin", "/admin*", &["GET", "POST"]);
    let orders = cedar_route(&e, "user-orders", "/users/{user_id}/orders", &["GET"]);
    /// Name, route, template, caller, request, client address, expected decision.
    type Row<'a> = (
        &'a str,
        &'a Authorize,
        &'a str,
        Option<Who>,
        &'a str,
        &'a str,
        Expect,
    );
    let cases: Vec<Row<'_>> = vec![
        (
            "admin reads",
            &admin,
            "/admin*",
            Some(who("ada").roles(&["admin"])),
            "GET /admin/x",
            "198.51.100.7",
            Allow("admin-area"),
        ),
        (
            "user reads admin",
            &admin,
            "/admin*",
            Some(who("bob")),
            "GET /admin/x",
            "198.51.100.7",
            Deny(403, "no_permit", "cedar:default-deny"),
        ),
        (
            "admin group is not admin role",
            &admin,
            "/admin*",
            Some(who("bob").groups(&["admin"])),
            "GET /admin/x",
            "10.1.2.3",
            Deny(403, "no_permit", "cedar:default-deny"),
        ),
        (
            "admin writes from inside",
            &admin,
            "/admin*",
            Some(who("ada").roles(&["admin"])),
            "POST /admin/x",
            "10.1.2.3",
            Allow("admin-area"),
        ),
        (
            "admin writes from loopback",
            &admin,
            "/admin*",
            Some(who("ada").roles(&["admin"])),
            "POST /admin/x",
            "127.0.0.1",
            Allow("admin-area"),
        ),
        (
            "admin writes from outside: forbid wins",
            &admin,
            "/admin*",
            Some(who("ada").roles(&["admin"])),
            "POST /admin/x",
            "198.51.100.7",
            Deny(403, "forbidden", "admin-writes-from-inside"),
        ),
        (
            "anonymous never reaches a User-only action",
            &admin,
            "/admin*",
            NOBODY,
            "GET /admin/x",
            "10.1.2.3",
            Deny(401, "authentication_required", "cedar:anonymous"),
        ),
        (
            "own orders by policy",
            &orders,
            "/users/{user_id}/orders",
            Some(who("alice")),
            "GET /users/alice/orders",
            "198.51.100.7",
            Allow("orders-owner-or-support"),
        ),
        (
            "another's orders by policy",
            &orders,
            "/users/{user_id}/orders",
            Some(who("alice")),
            "GET /users/bob/orders",
            "198.51.100.7",
            Deny(403, "no_permit", "cedar:default-deny"),
        ),
        (
            "encoded own id is decoded for policies",
            &orders,
            "/users/{user_id}/orders",
            Some(who("alice")),
            "GET /users/%61lice/orders",
            "198.51.100.7",
            Allow("orders-owner-or-support"),
        ),
        (
            "support by policy",
            &orders,
            "/users/{user_id}/orders",
            Some(who("sam").roles(&["support"])),
            "GET /users/bob/orders",
            "198.51.100.7",
            Allow("orders-owner-or-support"),
        ),
        (
            "principal is namespaced by issuer, sub compared",
            &orders,
            "/users/{user_id}/orders",
            Some(who("https://idp.example#alice")),
            "GET /users/alice/orders",
            "198.51.100.7",
            Deny(403, "no_permit", "cedar:default-deny"),
        ),
    ];
    let mut failures = Vec::new();
    for (name, authz, template, who, request, client, expect) in cases {
        let o = run(authz, template, who.as_ref(), request, &[], client);
        let g = got(&o);
        if g != expect {
            failures.push(format!("{name}: expected {expect:?}, got {g:?}"));
        }
        assert!(
            !o.ctx.decisions.iter().any(|d| d.layer == SHADOW_LAYER),
            "no shadow set, no shadow decision"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_shadow_set_is_evaluated_and_recorded_never_enforced() {
    let e = engine(true);
    let admin = cedar_route(&e, "admin", "/admin*", &["GET", "POST"]);
    // Support reading the admin area: the shadow set would allow, the enforced set denies.
    let o = run(
        &admin,
        "/admin*",
        Some(&who("sam").roles(&["support"])),
        "GET /admin",
        &[],
        "10.0.0.1",
    );
    assert_eq!(got(&o), Deny(403, "no_permit", "cedar:default-deny"));
    let shadow = o
        .ctx
        .decisions
        .iter()
        .find(|d| d.layer == SHADOW_LAYER)
        .unwrap();
    assert_eq!(shadow.outcome, Outcome::Allow);
    assert_eq!(shadow.rule_id.as_deref(), Some("support-reads-admin"));

    // A user: both deny; the shadow denial is recorded as Shadow.
    let o = run(
        &admin,
        "/admin*",
        Some(&who("bob")),
        "GET /admin",
        &[],
        "10.0.0.1",
    );
    assert_eq!(got(&o), Deny(403, "no_permit", "cedar:default-deny"));
    let shadow = o
        .ctx
        .decisions
        .iter()
        .find(|d| d.layer == SHADOW_LAYER)
        .unwrap();
    assert_eq!(shadow.outcome, Outcome::Shadow);
    assert_eq!(shadow.reason, "no_permit");

    // An admin writing from outside: the enforced forbid holds; the shadow set has no
    // forbid, so it would allow. Enforcement follows the enforced set only.
    let o = run(
        &admin,
        "/admin*",
        Some(&who("ada").roles(&["admin"])),
        "POST /admin",
        &[],
        "198.51.100.7",
    );
    assert_eq!(got(&o), Deny(403, "forbidden", "admin-writes-from-inside"));
    let shadow = o
        .ctx
        .decisions
        .iter()
        .find(|d| d.layer == SHADOW_LAYER)
        .unwrap();
    assert_eq!(shadow.outcome, Outcome::Allow);
}

fn load(policies: &str) -> Result<PolicyEngine, Vec<rampart_authz::LoadError>> {
    load_with(SCHEMA_TEXT, policies)
}

#[test]
fn a_typo_in_an_attribute_is_refused_at_load_with_file_and_line() {
    let text = "// orders\n@id(\"owner\")\npermit (principal, action == Rampart::Action::\"GET /users/{user_id}/orders\", resource)\nwhen { context.params.user_id == principal.sbu };\n";
    let errors = load(text).unwrap_err();
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{all:?}");
    let e = &errors[0];
    assert_eq!(e.file, "policies/main.cedar");
    assert_eq!(e.line, Some(4), "{all:?}");
    assert!(
        e.message.contains("owner") && e.message.contains("sbu"),
        "{}",
        e.message
    );

    // A typo in a context attribute, a type error, an unknown action and an unknown
    // entity type: each refused, each with its line.
    let text = concat!(
        "permit (principal, action == Rampart::Action::\"GET /users/{user_id}/orders\", resource)\n",
        "when { context.params.userid == principal.sub };\n",
        "permit (principal, action == Rampart::Action::\"GET /admin*\", resource)\n",
        "when { context.now == \"noon\" };\n",
        "permit (principal, action == Rampart::Action::\"DELETE /admin*\", resource);\n",
        "permit (principal in Rampart::Rol::\"admin\", action, resource);\n",
    );
    let errors = load(text).unwrap_err();
    let lines: Vec<Option<usize>> = errors.iter().map(|e| e.line).collect();
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    for line in [2, 4, 5, 6] {
        assert!(
            lines.contains(&Some(line)),
            "no error on line {line}: {all:#?}"
        );
    }

    // Syntax errors carry their line too.
    let errors = load("permit (principal, action, resource)\nwhen { principal. };\n").unwrap_err();
    assert_eq!(errors[0].line, Some(2), "{errors:?}");

    // Two policies with one @id.
    let errors = load("@id(\"x\") permit (principal, action, resource);\n@id(\"x\") forbid (principal, action, resource);\n").unwrap_err();
    assert!(errors[0].message.contains("\"x\""), "{errors:?}");

    // Policies without @id are named file:line.
    let e =
        load("\n\npermit (principal in Rampart::Role::\"admin\", action, resource);\n").unwrap();
    let ids: Vec<String> = e
        .enforced()
        .policies()
        .map(|p| p.id().to_string())
        .collect();
    assert_eq!(ids, ["policies/main.cedar:3"]);
}

#[test]
fn a_schema_that_does_not_fit_what_rampart_builds_is_refused() {
    let policies = [Source {
        name: "p.cedar".into(),
        text: "permit (principal, action, resource);".into(),
    }];
    let schema = |text: &str| Source {
        name: "s.cedarschema".into(),
        text: text.into(),
    };
    // `sub` declared as a Long.
    let wrong = SCHEMA_TEXT.replace("sub: String,\n    issuer", "sub: Long,\n    issuer");
    assert_ne!(wrong, SCHEMA_TEXT);
    let errors = PolicyEngine::load(&schema(&wrong), &policies, &[]).unwrap_err();
    assert!(errors[0].message.contains("does not fit"), "{errors:?}");
    // No Route entity type.
    let errors = PolicyEngine::load(
        &schema("namespace Rampart { entity User; entity Role; entity Group; }"),
        &policies,
        &[],
    )
    .unwrap_err();
    assert!(
        errors.iter().any(|e| e.message.contains("Rampart::Route")),
        "{errors:?}"
    );
    // A schema syntax error, with its line.
    let errors = PolicyEngine::load(
        &schema("namespace Rampart {\n  entity User in [Role {\n}"),
        &policies,
        &[],
    )
    .unwrap_err();
    assert_eq!(errors[0].file, "s.cedarschema");
    assert!(errors[0].line.is_some(), "{errors:?}");
}

#[test]
fn a_route_needs_an_action_per_method_in_the_schema() {
    let e = engine(false);
    let err = e
        .route("admin", "/admin*", &v(&["GET", "DELETE"]))
        .unwrap_err();
    assert!(err.contains("Action::\"DELETE /admin*\""), "{err}");
    assert!(e.route("admin", "/admin*", &v(&["GET", "POST"])).is_ok());
}

#[test]
fn a_policy_that_errs_at_run_time_denies() {
    // `tenant` is optional in the token; a policy guarded with `has` validates, and a token
    // without the claim is simply not permitted. A claim of the wrong kind (a number where
    // the schema says String) makes the evaluation err: the request is denied and the
    // policy named.
    let text = "@id(\"tenant-admins\")\npermit (principal, action == Rampart::Action::\"GET /admin*\", resource)\nwhen { context.token has tenant && context.token.tenant like \"acme*\" };\n";
    let e = Arc::new(load(text).unwrap());
    let admin = cedar_route(&e, "admin", "/admin*", &["GET"]);
    let t = "/admin*";
    let ok = who("a").claims(&[("tenant", Claim::S("acme"))]);
    assert_eq!(
        got(&run(&admin, t, Some(&ok), "GET /admin", &[], "10.0.0.1")),
        Allow("tenant-admins")
    );
    let none = who("a");
    assert_eq!(
        got(&run(&admin, t, Some(&none), "GET /admin", &[], "10.0.0.1")),
        Deny(403, "no_permit", "cedar:default-deny")
    );
    let wrong = who("a").claims(&[("tenant", Claim::I(7))]);
    assert_eq!(
        got(&run(&admin, t, Some(&wrong), "GET /admin", &[], "10.0.0.1")),
        Deny(403, "policy_error", "tenant-admins")
    );
}

#[test]
fn action_groups_of_the_schema_work_in_policies() {
    // The demo's schema with the admin actions put in a group "admin-reads".
    let schema = SCHEMA_TEXT.replace(
        "action \"GET /admin*\", \"POST /admin*\" appliesTo {",
        "action \"admin-reads\";\n  action \"POST /admin*\" appliesTo {\n    principal: [User],\n    resource: [Route],\n    context: Request,\n  };\n  action \"GET /admin*\" in [\"admin-reads\"] appliesTo {",
    );
    assert_ne!(schema, SCHEMA_TEXT);
    let e = Arc::new(load_with(&schema, "@id(\"auditors-read\")\npermit (principal in Rampart::Role::\"auditor\", action in Rampart::Action::\"admin-reads\", resource);").unwrap_or_else(|e| panic!("{e:?}")));
    let admin = cedar_route(&e, "admin", "/admin*", &["GET", "POST"]);
    let auditor = who("a").roles(&["auditor"]);
    assert_eq!(
        got(&run(
            &admin,
            "/admin*",
            Some(&auditor),
            "GET /admin",
            &[],
            "10.0.0.1"
        )),
        Allow("auditors-read")
    );
    assert_eq!(
        got(&run(
            &admin,
            "/admin*",
            Some(&auditor),
            "POST /admin",
            &[],
            "10.0.0.1"
        )),
        Deny(403, "no_permit", "cedar:default-deny")
    );
}

#[test]
fn anonymous_callers_reach_policies_only_where_the_schema_lets_them() {
    let schema = SCHEMA_TEXT.replace(
        "action \"GET /admin*\", \"POST /admin*\" appliesTo {\n    principal: [User],",
        "action \"GET /admin*\", \"POST /admin*\" appliesTo {\n    principal: [User, Anonymous],",
    );
    assert_ne!(schema, SCHEMA_TEXT);
    let e = Arc::new(load_with(&schema, "@id(\"public-reads\")\npermit (principal is Rampart::Anonymous, action == Rampart::Action::\"GET /admin*\", resource);").unwrap_or_else(|e| panic!("{e:?}")));
    let admin = cedar_route(&e, "admin", "/admin*", &["GET", "POST"]);
    assert_eq!(
        got(&run(&admin, "/admin*", None, "GET /admin", &[], "10.0.0.1")),
        Allow("public-reads")
    );
    assert_eq!(
        got(&run(
            &admin,
            "/admin*",
            None,
            "POST /admin",
            &[],
            "10.0.0.1"
        )),
        Deny(401, "no_permit", "cedar:default-deny")
    );
    // A signed-in user is not anonymous.
    assert_eq!(
        got(&run(
            &admin,
            "/admin*",
            Some(&who("a")),
            "GET /admin",
            &[],
            "10.0.0.1"
        )),
        Deny(403, "no_permit", "cedar:default-deny")
    );
}
