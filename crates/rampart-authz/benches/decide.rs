//! Authorization decisions: the whole `Authorize::decide` of a request whose identity is
//! known, for Cedar (building the principal, its role parents, the route, the action
//! entities and the context, then evaluating the demo's policies), with and without the
//! shadow set, and for the one-line rules (requirements, ownership). Run:
//! `cargo bench -p rampart-authz --bench decide` (add `-- --quick` for a short run).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

#[path = "../tests/common/mod.rs"]
mod common;

use common::engine;
use criterion::{Criterion, criterion_group, criterion_main};
use rampart_authz::owner::Source as From;
use rampart_authz::{Authorize, Case, CedarRoute, Need, OwnerRule, PolicyEngine, Requirements};
use rampart_core::{
    ClaimValue, ClientInfo, Identity, ManualClock, RequestContext, RouteInfo, Verdict,
};

/// A typical access token's identity: a subject, three scopes, one or two roles, and
/// eight claims.
fn identity(roles: &[&str]) -> Identity {
    let mut claims = BTreeMap::new();
    for (k, v) in [
        ("sub", "alice"),
        ("iss", "https://idp.example"),
        ("aud", "rampart"),
        ("scope", "orders:read orders:write profile"),
        ("client_id", "web"),
        ("jti", "0f8e2c"),
    ] {
        claims.insert(k.to_owned(), ClaimValue::String(v.to_owned()));
    }
    claims.insert("exp".into(), ClaimValue::Int(1_900_000_000));
    claims.insert("iat".into(), ClaimValue::Int(1_800_000_000));
    Identity {
        subject: "alice".into(),
        issuer: "https://idp.example".into(),
        provider: "corp".into(),
        scopes: vec![
            "orders:read".into(),
            "orders:write".into(),
            "profile".into(),
        ],
        roles: roles.iter().map(|r| r.to_string()).collect(),
        client_id: Some("web".into()),
        claims: Arc::new(claims),
        ..Identity::default()
    }
}

fn ctx(template: &str, params: &[(&str, &str)], id: &Identity) -> RequestContext {
    let peer: SocketAddr = "10.1.2.3:50000".parse().unwrap();
    let mut ctx = RequestContext::new(
        "r".into(),
        ClientInfo {
            ip: peer.ip(),
            peer,
            tls: None,
        },
    );
    ctx.route = Some(RouteInfo {
        name: "r".into(),
        template: template.into(),
        params: params
            .iter()
            .map(|(k, v)| (Arc::from(*k), (*v).to_owned()))
            .collect(),
    });
    ctx.identity = Some(id.clone());
    ctx
}

fn cedar(engine: &Arc<PolicyEngine>, name: &str, template: &str, methods: &[&str]) -> Authorize {
    let methods: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
    Authorize::new(
        Requirements::default(),
        vec![],
        vec![],
        Some(CedarRoute {
            engine: engine.clone(),
            route: engine.route(name, template, &methods).unwrap(),
        }),
        Arc::new(ManualClock::new()),
    )
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("authorize");
    let head = |uri: &str| http::Request::get(uri).body(()).unwrap().into_parts().0;

    let cases = [
        (
            "cedar_permit_admin",
            false,
            "/admin*",
            "/admin/users",
            &[][..],
            &["admin"][..],
            true,
        ),
        (
            "cedar_deny_no_permit",
            false,
            "/admin*",
            "/admin/users",
            &[][..],
            &[][..],
            false,
        ),
        (
            "cedar_permit_owner",
            false,
            "/users/{user_id}/orders",
            "/users/alice/orders",
            &[("user_id", "alice")][..],
            &[][..],
            true,
        ),
        (
            "cedar_permit_admin_with_shadow",
            true,
            "/admin*",
            "/admin/users",
            &[][..],
            &["admin"][..],
            true,
        ),
    ];
    for (name, shadow, template, uri, params, roles, allowed) in cases {
        let e = engine(shadow);
        let route = if template == "/admin*" {
            "admin"
        } else {
            "user-orders"
        };
        let authz = cedar(&e, route, template, &["GET"]);
        let id = identity(roles);
        let head = head(uri);
        let base = ctx(template, params, &id);
        // The benchmark must measure the decision it claims to.
        let mut check = base.clone();
        assert_eq!(
            matches!(authz.decide(&mut check, &head), Verdict::Continue),
            allowed,
            "{name}"
        );
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || base.clone(),
                |ctx| black_box(authz.decide(ctx, &head)),
                criterion::BatchSize::SmallInput,
            )
        });
    }

    let rules = Authorize::new(
        Requirements {
            scopes: Need {
                all_of: vec!["orders:read".into()],
                any_of: vec![],
            },
            ..Requirements::default()
        },
        vec![OwnerRule {
            source: From::Path("user_id".into()),
            claim: "sub".into(),
            case: Case::Sensitive,
        }],
        vec!["support".into()],
        None,
        Arc::new(ManualClock::new()),
    );
    let id = identity(&[]);
    let head = head("/users/alice/orders");
    let base = ctx("/users/{user_id}/orders", &[("user_id", "alice")], &id);
    assert!(matches!(
        rules.decide(&mut base.clone(), &head),
        Verdict::Continue
    ));
    group.bench_function("scope_and_owner_match", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |ctx| black_box(rules.decide(ctx, &head)),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
