//! The role audit: which roles can perform which actions on which routes.
//!
//! For each route, method and role, a caller holding only that role (and the scopes and
//! groups the route asks for) is put through the route's requirements, its ownership rules
//! and its Cedar policies, twice: once on another caller's object and once on its own. The
//! answer is one of:
//!
//! * `any`: allowed on any object;
//! * `own`: allowed only on the caller's own objects (an ownership rule or a policy that
//!   compares a path parameter with the caller);
//! * `conditional`: a permit covers the role, action and route, but its conditions (time,
//!   client address, token claims) decide per request;
//! * `denied`: nothing lets the role through.
//!
//! Every answer names the requirement or the policies that gave it, so a permission review
//! can be checked against the configuration.

use std::sync::Arc;

use rampart_core::{ClaimValue, Identity};

use crate::cedar::{Facts, PolicyEngine, RouteEntities};
use crate::owner::OwnerRule;
use crate::require::Requirements;

/// The subject of the audit's synthetic caller.
const AUDIT_SUBJECT: &str = "rampart-audit-caller";
/// The path parameter value of "another caller's object".
const OTHER_OBJECT: &str = "rampart-audit-other";

/// A route as the audit needs it.
#[derive(Debug, Clone)]
pub struct AuditRoute<'a> {
    /// The route's name.
    pub name: &'a str,
    /// Its template.
    pub template: &'a str,
    /// Its methods.
    pub methods: Vec<String>,
    /// The path parameters of its template.
    pub params: Vec<String>,
    /// Its requirements.
    pub requirements: &'a Requirements,
    /// Its ownership rules.
    pub owner: &'a [OwnerRule],
    /// Roles exempt from them.
    pub owner_exempt: &'a [String],
    /// Its Cedar view, when Cedar decides it.
    pub cedar: Option<&'a RouteEntities>,
}

/// What a role may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// On any object.
    Any,
    /// Only on the caller's own objects.
    Own,
    /// Depends on conditions evaluated per request.
    Conditional,
    /// Never.
    Denied,
}

impl Access {
    /// `any`, `own`, `conditional` or `denied`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Access::Any => "any",
            Access::Own => "own",
            Access::Conditional => "conditional",
            Access::Denied => "denied",
        }
    }
}

/// One line of the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The route.
    pub route: String,
    /// The method.
    pub method: String,
    /// The role (empty: an authenticated caller without roles).
    pub role: String,
    /// What it may do.
    pub access: Access,
    /// The requirement or policies that decided.
    pub because: String,
}

/// The roles worth auditing: every role the routes' requirements and the policies name,
/// sorted, after the empty role (a caller without roles).
pub fn roles_to_audit(routes: &[AuditRoute<'_>], engine: Option<&PolicyEngine>) -> Vec<String> {
    let mut roles: Vec<String> = Vec::new();
    for r in routes {
        roles.extend(r.requirements.roles.all_of.iter().cloned());
        roles.extend(r.requirements.roles.any_of.iter().cloned());
        roles.extend(r.owner_exempt.iter().cloned());
    }
    if let Some(e) = engine {
        roles.extend(e.roles_named());
    }
    roles.sort();
    roles.dedup();
    roles.insert(0, String::new());
    roles
}

/// The audit of `routes` for `roles`.
pub fn audit(
    routes: &[AuditRoute<'_>],
    engine: Option<&PolicyEngine>,
    roles: &[String],
) -> Vec<Row> {
    let scope_only = engine.map(PolicyEngine::scope_only_permits);
    let mut rows = Vec::new();
    for r in routes {
        for method in &r.methods {
            for role in roles {
                let (access, because) = judge(r, method, role, engine, scope_only.as_ref());
                rows.push(Row {
                    route: r.name.to_owned(),
                    method: method.clone(),
                    role: role.clone(),
                    access,
                    because,
                });
            }
        }
    }
    rows
}

fn caller(r: &AuditRoute<'_>, role: &str) -> Identity {
    let need = |n: &crate::require::Need| {
        let mut v = n.all_of.clone();
        v.extend(n.any_of.first().cloned());
        v
    };
    let mut claims = std::collections::BTreeMap::new();
    claims.insert(
        "sub".to_owned(),
        ClaimValue::String(AUDIT_SUBJECT.to_owned()),
    );
    Identity {
        subject: AUDIT_SUBJECT.to_owned(),
        issuer: "rampart-audit".to_owned(),
        provider: r
            .requirements
            .providers
            .first()
            .cloned()
            .unwrap_or_else(|| "rampart-audit".to_owned()),
        scopes: need(&r.requirements.scopes),
        roles: if role.is_empty() {
            Vec::new()
        } else {
            vec![role.to_owned()]
        },
        groups: need(&r.requirements.groups),
        claims: Arc::new(claims),
        ..Identity::default()
    }
}

fn judge(
    r: &AuditRoute<'_>,
    method: &str,
    role: &str,
    engine: Option<&PolicyEngine>,
    scope_only: Option<&cedar_policy::PolicySet>,
) -> (Access, String) {
    let id = caller(r, role);
    if let Err(unmet) = r.requirements.check(&id) {
        return (Access::Denied, unmet.rule());
    }
    let mut because = Vec::new();
    let mut access = Access::Any;
    if !r.owner.is_empty() {
        if let Some(exempt) = r.owner_exempt.iter().find(|e| *e == role) {
            because.push(format!("owner_exempt_roles:{exempt}"));
        } else {
            access = Access::Own;
            because.extend(r.owner.iter().map(OwnerRule::id));
        }
    }
    let (Some(engine), Some(route), Some(scope_only)) = (engine, r.cedar, scope_only) else {
        if because.is_empty() {
            because.push("requirements".to_owned());
        }
        return (access, because.join(";"));
    };
    let params = |value: &str| -> Vec<(Arc<str>, String)> {
        r.params
            .iter()
            .map(|p| (Arc::from(p.as_str()), value.to_owned()))
            .collect()
    };
    let facts = |params| audit_facts(method, r.template, params);
    let other = params(OTHER_OBJECT);
    let own = params(AUDIT_SUBJECT);
    let on_other = engine.judge_with(engine.enforced(), route, &id, &facts(&other));
    if on_other.allowed {
        because.push(on_other.rule());
        return (access, because.join(";"));
    }
    let on_own = engine.judge_with(engine.enforced(), route, &id, &facts(&own));
    if on_own.allowed {
        because.push(on_own.rule());
        return (Access::Own, because.join(";"));
    }
    let covered = engine.judge_with(scope_only, route, &id, &facts(&other));
    if covered.allowed {
        let why = if on_other.policies.is_empty() {
            format!("permit {} when its conditions hold", covered.rule())
        } else {
            format!(
                "permit {} unless forbid {} applies",
                covered.rule(),
                on_other.rule()
            )
        };
        return (Access::Conditional, why);
    }
    (Access::Denied, on_other.rule())
}

/// A request on `path` with `params`.
fn audit_facts<'a>(method: &'a str, path: &'a str, params: &'a [(Arc<str>, String)]) -> Facts<'a> {
    Facts {
        method,
        path,
        params,
        query: None,
        // A caller from elsewhere (TEST-NET-1), now: conditions on the client's network
        // or the time show as `conditional`, not as granted.
        client_ip: std::net::IpAddr::from([192, 0, 2, 1]),
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
    }
}

/// The audit as an aligned text table.
pub fn table(rows: &[Row]) -> String {
    let header = ["ROUTE", "METHOD", "ROLE", "ACCESS", "BECAUSE"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.route.clone(),
                r.method.clone(),
                if r.role.is_empty() {
                    "(no role)".to_owned()
                } else {
                    r.role.clone()
                },
                r.access.as_str().to_owned(),
                r.because.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for c in &cells {
        for (w, v) in widths.iter_mut().zip(c) {
            *w = (*w).max(v.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |vals: [&str; 5]| {
        let mut l = String::new();
        for (i, (v, w)) in vals.iter().zip(widths).enumerate() {
            if i == 4 {
                l.push_str(v);
            } else {
                l.push_str(&format!("{v:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header);
    for c in &cells {
        line([&c[0], &c[1], &c[2], &c[3], &c[4]].map(String::as_str));
    }
    out
}

/// The audit as CSV (RFC 4180 quoting), for spreadsheets.
pub fn csv(rows: &[Row]) -> String {
    let q = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let mut out = String::from("route,method,role,access,because\n");
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            q(&r.route),
            q(&r.method),
            q(&r.role),
            r.access.as_str(),
            q(&r.because)
        ));
    }
    out
}
