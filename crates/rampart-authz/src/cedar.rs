//! Cedar policies: the request as Cedar entities, strict validation at load, enforced and
//! shadow policy sets.
//!
//! What a request looks like to a policy (docs/AUTHZ.md has the schema to start from):
//!
//! * **principal**: `Rampart::User::"<issuer>#<sub>"` (one issuer's `alice` is not
//!   another's), with attributes `sub`, `issuer`, `provider`, `scopes`, `roles`, `groups`
//!   and, when the credential has them, `client_id` and `tier`. Its parents are
//!   `Rampart::Role::"<role>"` and `Rampart::Group::"<group>"` for each role and group, so
//!   `principal in Rampart::Role::"admin"` reads as it should. A request without
//!   credentials (a route with `auth: { optional: true }`) is
//!   `Rampart::Anonymous::"anonymous"`, and only reaches policies when the schema lets
//!   the action apply to `Anonymous`.
//! * **action**: `Rampart::Action::"<METHOD> <route template>"`, like
//!   `Rampart::Action::"GET /users/{user_id}/orders"`.
//! * **resource**: `Rampart::Route::"<route name>"`, with attributes `name` and `template`.
//! * **context**: `params` (the path parameters, percent-decoded), `query` (the query
//!   parameters that appear once, decoded), `method`, `path`, `client_ip` (an `ipaddr`),
//!   `now` (seconds since the Unix epoch) and `token` (the credential's claims).
//!
//! A policy set and its schema are validated in strict mode when the configuration loads;
//! a policy that does not validate is a configuration error naming the file and line. At
//! run time a policy whose evaluation errs denies the request (fail closed), even when the
//! policy was a `permit` that another permit would have covered: a request shaped unlike
//! the schema expects is not one to guess about.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Effect, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    Policy, PolicyId, PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;
use rampart_core::{ClaimValue, Identity};

/// The namespace of every entity type Rampart builds.
pub const NAMESPACE: &str = "Rampart";

/// A file's name (for messages) and text.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file name, as messages should show it.
    pub name: String,
    /// Its contents.
    pub text: String,
}

/// A policy file or schema that does not load, with the file and line it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file.
    pub file: String,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl LoadError {
    fn new(file: &str, line: Option<usize>, message: impl Into<String>) -> LoadError {
        LoadError {
            file: file.to_owned(),
            line,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for LoadError {}

/// The request facts a decision needs besides the identity.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The normalized path.
    pub path: &'a str,
    /// Path parameters, raw (decoded here).
    pub params: &'a [(std::sync::Arc<str>, String)],
    /// The raw query string.
    pub query: Option<&'a str>,
    /// The client address.
    pub client_ip: IpAddr,
    /// Seconds since the Unix epoch.
    pub now: i64,
}

/// What one policy set decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// Permitted, with no policy erring.
    pub allowed: bool,
    /// The policies that decided: the permits that allowed, or the forbids that denied.
    /// Empty for a denial because no permit applied.
    pub policies: Vec<String>,
    /// Policies whose evaluation erred (each denies).
    pub errors: Vec<String>,
    /// Refused without evaluation: the caller is anonymous and the schema does not let
    /// the action apply to `Anonymous`.
    pub anonymous: bool,
}

impl Judgement {
    /// The stable reason code: `permitted`, `forbidden`, `no_permit` or `policy_error`.
    pub fn reason(&self) -> &'static str {
        if self.allowed {
            "permitted"
        } else if self.anonymous {
            "authentication_required"
        } else if !self.errors.is_empty() {
            "policy_error"
        } else if self.policies.is_empty() {
            "no_permit"
        } else {
            "forbidden"
        }
    }

    /// The rule id for logs and metrics: the deciding policy ids, joined with `,`
    /// (`cedar:default-deny` when no permit applied).
    pub fn rule(&self) -> String {
        let ids = if self.errors.is_empty() {
            &self.policies
        } else {
            &self.errors
        };
        if ids.is_empty() {
            "cedar:default-deny".to_owned()
        } else {
            ids.join(",")
        }
    }
}

/// Both sets' decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The enforced set.
    pub enforced: Judgement,
    /// The shadow set, when there is one.
    pub shadow: Option<Judgement>,
}

/// The entity type names, parsed once.
#[derive(Debug, Clone)]
struct Types {
    user: EntityTypeName,
    anonymous: EntityTypeName,
    role: EntityTypeName,
    group: EntityTypeName,
    route: EntityTypeName,
    action: EntityTypeName,
}

impl Types {
    fn new() -> Result<Types, LoadError> {
        let t = |n: &str| {
            EntityTypeName::from_str(&format!("{NAMESPACE}::{n}"))
                .map_err(|e| LoadError::new("schema", None, format!("entity type {n}: {e}")))
        };
        Ok(Types {
            user: t("User")?,
            anonymous: t("Anonymous")?,
            role: t("Role")?,
            group: t("Group")?,
            route: t("Route")?,
            action: t("Action")?,
        })
    }
}

/// Loaded, validated policies.
#[derive(Debug)]
pub struct PolicyEngine {
    schema: Schema,
    types: Types,
    enforced: PolicySet,
    shadow: Option<PolicySet>,
    authorizer: Authorizer,
    actions: Vec<Entity>,
    /// The claims policies can read (`context.token.<claim>`); `None`: all of them (a
    /// policy uses `context` or `context.token` as a whole).
    token_claims: Option<HashSet<String>>,
}

/// A route as Cedar sees it, built once per route.
#[derive(Debug, Clone)]
pub struct RouteEntities {
    resource: EntityUid,
    route: Entity,
    /// Action by method.
    actions: HashMap<String, EntityUid>,
    /// Whether the schema lets each action apply to anonymous callers.
    anonymous: HashSet<String>,
}

impl PolicyEngine {
    /// Loads and validates a schema, the enforced policy files and the shadow files.
    /// Every problem found is returned, each naming its file and line.
    pub fn load(
        schema: &Source,
        files: &[Source],
        shadow: &[Source],
    ) -> Result<PolicyEngine, Vec<LoadError>> {
        let types = Types::new().map_err(|e| vec![e])?;
        let schema_value = parse_schema(schema).map_err(|e| vec![e])?;
        let mut errors = check_entity_shapes(&schema_value, &types, &schema.name);
        let enforced = load_set(&schema_value, files, &mut errors);
        let shadow = (!shadow.is_empty()).then(|| load_set(&schema_value, shadow, &mut errors));
        // Action entities matter only for action groups (`action in Action::"reads"`);
        // without groups, `action ==` and `action in [...]` need no entity, and leaving them
        // out saves copying them into every request.
        let actions = match schema_value.action_entities() {
            Ok(a) => {
                let grouped = a.iter().any(|e| {
                    a.ancestors(&e.uid())
                        .is_some_and(|mut parents| parents.next().is_some())
                });
                if grouped {
                    a.iter().cloned().collect()
                } else {
                    Vec::new()
                }
            }
            Err(e) => {
                errors.push(LoadError::new(&schema.name, None, format!("actions: {e}")));
                Vec::new()
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut reads = TokenReads::default();
        for set in std::iter::once(&enforced).chain(shadow.as_ref()) {
            for p in set.policies() {
                match p.to_json() {
                    Ok(json) => reads.walk(&json),
                    Err(_) => reads.whole = true,
                }
            }
        }
        Ok(PolicyEngine {
            token_claims: (!reads.whole).then_some(reads.claims),
            schema: schema_value,
            types,
            enforced,
            shadow,
            authorizer: Authorizer::new(),
            actions,
        })
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// True when a shadow set is loaded.
    pub fn has_shadow(&self) -> bool {
        self.shadow.is_some()
    }

    /// The action name of a method on a route template: `GET /users/{user_id}`.
    pub fn action_name(method: &str, template: &str) -> String {
        format!("{method} {template}")
    }

    /// The Cedar view of a route answering `methods`. Errs, naming the missing actions,
    /// when the schema does not declare an action for each method.
    pub fn route(
        &self,
        name: &str,
        template: &str,
        methods: &[String],
    ) -> Result<RouteEntities, String> {
        let resource = uid(&self.types.route, name);
        let mut attrs = HashMap::new();
        attrs.insert(
            "name".to_owned(),
            RestrictedExpression::new_string(name.to_owned()),
        );
        attrs.insert(
            "template".to_owned(),
            RestrictedExpression::new_string(template.to_owned()),
        );
        let route =
            Entity::new(resource.clone(), attrs, HashSet::new()).map_err(|e| e.to_string())?;
        let declared: HashSet<&EntityUid> = self.schema.actions().collect();
        let mut actions = HashMap::new();
        let mut anonymous = HashSet::new();
        let mut missing = Vec::new();
        for m in methods {
            let action_name = Self::action_name(m, template);
            let action = uid(&self.types.action, &action_name);
            if !declared.contains(&action) {
                missing.push(format!("Action::{action_name:?}"));
                continue;
            }
            let principals = self
                .schema
                .principals_for_action(&action)
                .map(|mut p| p.any(|t| *t == self.types.anonymous))
                .unwrap_or(false);
            if principals {
                anonymous.insert(m.clone());
            }
            actions.insert(m.clone(), action);
        }
        if !missing.is_empty() {
            return Err(format!(
                "the schema declares no {} (every method of a route decided by Cedar needs its action, \"<METHOD> <path template>\")",
                missing.join(", ")
            ));
        }
        Ok(RouteEntities {
            resource,
            route,
            actions,
            anonymous,
        })
    }

    /// Decides a request with the enforced set and, when there is one, the shadow set.
    pub fn decide(
        &self,
        route: &RouteEntities,
        identity: Option<&Identity>,
        facts: &Facts<'_>,
    ) -> Decided {
        let Some(action) = route.actions.get(facts.method) else {
            // A method the route does not take never gets here; refuse if it does.
            let refuse = Judgement {
                allowed: false,
                policies: Vec::new(),
                errors: vec!["cedar:undeclared-action".to_owned()],
                anonymous: false,
            };
            return Decided {
                shadow: self.shadow.as_ref().map(|_| refuse.clone()),
                enforced: refuse,
            };
        };
        if identity.is_none() && !route.anonymous.contains(facts.method) {
            let refuse = Judgement {
                allowed: false,
                policies: vec!["cedar:anonymous".to_owned()],
                errors: Vec::new(),
                anonymous: true,
            };
            return Decided {
                shadow: self.shadow.as_ref().map(|_| refuse.clone()),
                enforced: refuse,
            };
        }
        let built = self.build(route, action, identity, facts);
        let judge = |set: &PolicySet| match &built {
            Ok((request, entities)) => self.judge(set, request, entities),
            // The request could not be expressed in Cedar (not expected: every attribute
            // name is unique and every value has a Cedar type). A constant rule id: the
            // error text could carry request data into a metric label.
            Err(_) => Judgement {
                allowed: false,
                policies: Vec::new(),
                errors: vec!["cedar:request".to_owned()],
                anonymous: false,
            },
        };
        Decided {
            enforced: judge(&self.enforced),
            shadow: self.shadow.as_ref().map(judge),
        }
    }

    fn judge(&self, set: &PolicySet, request: &Request, entities: &Entities) -> Judgement {
        let response = self.authorizer.is_authorized(request, set, entities);
        let policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| id.to_string())
            .collect();
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => {
                    e.policy_id().to_string()
                }
            })
            .collect();
        Judgement {
            allowed: response.decision() == Decision::Allow && errors.is_empty(),
            policies,
            errors,
            anonymous: false,
        }
    }

    /// The request and its entities.
    fn build(
        &self,
        route: &RouteEntities,
        action: &EntityUid,
        identity: Option<&Identity>,
        facts: &Facts<'_>,
    ) -> Result<(Request, Entities), String> {
        let mut entities: Vec<Entity> = Vec::with_capacity(self.actions.len() + 8);
        entities.extend(self.actions.iter().cloned());
        entities.push(route.route.clone());
        let principal = match identity {
            Some(id) => {
                let (principal, parents) = principal_entity(&self.types, id)?;
                let uid = principal.uid();
                entities.push(principal);
                entities.extend(parents);
                uid
            }
            None => {
                let uid = uid(&self.types.anonymous, "anonymous");
                entities.push(Entity::new_no_attrs(uid.clone(), HashSet::new()));
                uid
            }
        };
        let context = context(identity, facts, self.token_claims.as_ref())?;
        let request = Request::new(
            principal,
            action.clone(),
            route.resource.clone(),
            context,
            None,
        )
        .map_err(|e| e.to_string())?;
        let entities = Entities::from_entities(entities, None).map_err(|e| e.to_string())?;
        Ok((request, entities))
    }

    /// Every role named in the enforced policies (entity literals of `Rampart::Role`).
    pub fn roles_named(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in self.enforced.policies() {
            if let Ok(json) = p.to_json() {
                collect_entities(&json, &self.types.role.to_string(), &mut out);
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The enforced permits with their conditions removed: which policies' scope (principal,
    /// action, resource) covers a request, whatever its `when` and `unless` say.
    pub fn scope_only_permits(&self) -> PolicySet {
        let mut set = PolicySet::new();
        for p in self.enforced.policies() {
            if p.effect() != Effect::Permit {
                continue;
            }
            let Ok(mut json) = p.to_json() else { continue };
            if let Some(obj) = json.as_object_mut() {
                obj.insert(
                    "conditions".to_owned(),
                    serde_json::Value::Array(Vec::new()),
                );
            }
            if let Ok(stripped) = Policy::from_json(Some(p.id().clone()), json) {
                let _ = set.add(stripped);
            }
        }
        set
    }

    /// Decides a synthetic request against `set` (for the role audit).
    pub(crate) fn judge_with(
        &self,
        set: &PolicySet,
        route: &RouteEntities,
        identity: &Identity,
        facts: &Facts<'_>,
    ) -> Judgement {
        let Some(action) = route.actions.get(facts.method) else {
            return Judgement {
                allowed: false,
                policies: Vec::new(),
                errors: vec!["cedar:undeclared-action".into()],
                anonymous: false,
            };
        };
        match self.build(route, action, Some(identity), facts) {
            Ok((request, entities)) => self.judge(set, &request, &entities),
            Err(e) => Judgement {
                allowed: false,
                policies: Vec::new(),
                errors: vec![e],
                anonymous: false,
            },
        }
    }

    /// The enforced set.
    pub fn enforced(&self) -> &PolicySet {
        &self.enforced
    }
}

/// `<issuer>#<sub>`: the principal's entity id.
pub fn principal_id(id: &Identity) -> String {
    format!("{}#{}", id.issuer, id.subject)
}

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

fn collect_entities(v: &serde_json::Value, ty: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if m.get("type").and_then(|t| t.as_str()) == Some(ty)
                && let Some(id) = m.get("id").and_then(|i| i.as_str())
            {
                out.push(id.to_owned());
            }
            for v in m.values() {
                collect_entities(v, ty, out);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                collect_entities(v, ty, out);
            }
        }
        _ => {}
    }
}

/// The context record.
fn context(
    identity: Option<&Identity>,
    facts: &Facts<'_>,
    token_claims: Option<&HashSet<String>>,
) -> Result<Context, String> {
    let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
    let record = |pairs: Vec<(String, RestrictedExpression)>| {
        RestrictedExpression::new_record(pairs).map_err(|e| e.to_string())
    };
    let params = facts
        .params
        .iter()
        .map(|(k, v)| {
            let decoded = crate::owner::percent_decode(v, false).unwrap_or_else(|| v.into());
            (k.to_string(), s(&decoded))
        })
        .collect();
    let mut query = Vec::new();
    if let Some(q) = facts.query {
        let mut names: Vec<String> = Vec::new();
        for pair in q.split(['&', ';']) {
            let k = pair.split_once('=').map_or(pair, |(k, _)| k);
            if let Some(k) = crate::owner::percent_decode(k, true)
                && !k.is_empty()
                && !names.iter().any(|n| n.eq_ignore_ascii_case(&k))
            {
                names.push(k.into_owned());
            }
        }
        for n in names {
            if let Ok(v) = crate::owner::query_value(q, &n) {
                query.push((n, s(&v)));
            }
        }
    }
    let token = identity
        .map(|id| {
            id.claims
                .iter()
                .filter(|(k, _)| token_claims.is_none_or(|read| read.contains(*k)))
                .filter_map(|(k, v)| Some((k.clone(), claim(v)?)))
                .collect()
        })
        .unwrap_or_default();
    Context::from_pairs([
        ("params".to_owned(), record(params)?),
        ("query".to_owned(), record(query)?),
        ("method".to_owned(), s(facts.method)),
        ("path".to_owned(), s(facts.path)),
        ("client_ip".to_owned(), ip_expression(facts.client_ip)),
        ("now".to_owned(), RestrictedExpression::new_long(facts.now)),
        ("token".to_owned(), record(token)?),
    ])
    .map_err(|e| e.to_string())
}

/// Which token claims the policies read. Policies reach a claim only as
/// `context.token.<claim>` or `context.token has <claim>` (strict validation refuses
/// anything else on an undeclared attribute), so the claims named that way are all a
/// decision can depend on; the others need not be built into every request's context.
/// A policy that uses `context` or `context.token` as a whole (`context.token == {...}`)
/// needs them all.
#[derive(Debug, Default)]
struct TokenReads {
    claims: HashSet<String>,
    whole: bool,
}

impl TokenReads {
    fn is_context(v: &serde_json::Value) -> bool {
        v.get("Var").and_then(|n| n.as_str()) == Some("context")
    }

    /// `context.token` in the JSON form of a policy.
    fn is_token(v: &serde_json::Value) -> bool {
        v.get(".").is_some_and(|access| {
            access.get("attr").and_then(|a| a.as_str()) == Some("token")
                && access.get("left").is_some_and(Self::is_context)
        })
    }

    fn walk(&mut self, v: &serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                if Self::is_context(v) {
                    // `context` used other than through an attribute (checked below).
                    self.whole = true;
                    return;
                }
                for op in [".", "has"] {
                    let Some(access) = m.get(op) else { continue };
                    let left = access.get("left");
                    if left.is_some_and(Self::is_token) {
                        if let Some(attr) = access.get("attr").and_then(|a| a.as_str()) {
                            self.claims.insert(attr.to_owned());
                        }
                        return;
                    }
                    if left.is_some_and(Self::is_context) {
                        // `context.<attr>`: fine unless it is `context.token` used whole.
                        if access.get("attr").and_then(|a| a.as_str()) == Some("token") {
                            self.whole = true;
                        }
                        return;
                    }
                }
                for v in m.values() {
                    self.walk(v);
                }
            }
            serde_json::Value::Array(items) => {
                for v in items {
                    self.walk(v);
                }
            }
            _ => {}
        }
    }
}

/// `ip("<addr>")`. Cedar builds the extension call by parsing the name `ip` on every call
/// (a few microseconds), so each thread keeps the expressions of the clients it saw last.
fn ip_expression(ip: IpAddr) -> RestrictedExpression {
    use std::cell::RefCell;
    const KEEP: usize = 4096;
    thread_local! {
        static SEEN: RefCell<HashMap<IpAddr, RestrictedExpression>> = RefCell::new(HashMap::new());
    }
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        if let Some(e) = seen.get(&ip) {
            return e.clone();
        }
        if seen.len() >= KEEP {
            seen.clear();
        }
        let e = RestrictedExpression::new_ip(ip.to_string());
        seen.insert(ip, e.clone());
        e
    })
}

/// A claim as a Cedar value. Arrays mixing kinds, which Cedar sets cannot hold, are left
/// out.
fn claim(v: &ClaimValue) -> Option<RestrictedExpression> {
    Some(match v {
        ClaimValue::Bool(b) => RestrictedExpression::new_bool(*b),
        ClaimValue::Int(n) => RestrictedExpression::new_long(*n),
        ClaimValue::String(s) => RestrictedExpression::new_string(s.clone()),
        ClaimValue::List(items) => {
            let same_kind = items.windows(2).all(
                |w| matches!(w, [a, b] if std::mem::discriminant(a) == std::mem::discriminant(b)),
            );
            if !same_kind {
                return None;
            }
            RestrictedExpression::new_set(items.iter().filter_map(claim))
        }
        ClaimValue::Map(m) => RestrictedExpression::new_record(
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), claim(v)?)))
                .collect::<Vec<_>>(),
        )
        .ok()?,
    })
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(1, |t| t.bytes().filter(|b| *b == b'\n').count() + 1)
}

/// `file:line: message` for a diagnostic whose labels point into `text`.
fn located(file: &str, text: &str, d: &(dyn Diagnostic + '_), message: String) -> LoadError {
    let line = d
        .labels()
        .and_then(|mut l| l.next())
        .map(|l| line_of(text, l.offset()));
    LoadError::new(file, line, message)
}

fn parse_schema(src: &Source) -> Result<Schema, LoadError> {
    if src.name.ends_with(".json") {
        Schema::from_json_str(&src.text).map_err(|e| {
            let msg = full_message(&e);
            located(&src.name, &src.text, &e, format!("schema: {msg}"))
        })
    } else {
        match Schema::from_cedarschema_str(&src.text) {
            Ok((schema, _warnings)) => Ok(schema),
            Err(e) => {
                let msg = full_message(&e);
                Err(located(&src.name, &src.text, &e, format!("schema: {msg}")))
            }
        }
    }
}

/// An error's message with its help, on one line.
fn full_message(e: &(dyn Diagnostic + '_)) -> String {
    let mut msg = e.to_string();
    if let Some(help) = e.help() {
        msg.push_str(&format!(" (help: {help})"));
    }
    msg
}

/// Checks that the entities Rampart builds conform to the schema: a schema that declares
/// `sub` as a `Long`, or forgets `scopes`, would make policies type-check against values
/// that never come.
fn check_entity_shapes(schema: &Schema, types: &Types, file: &str) -> Vec<LoadError> {
    let mut errors = Vec::new();
    for ty in [&types.user, &types.role, &types.group, &types.route] {
        if !schema.entity_types().any(|t| t == ty) {
            errors.push(LoadError::new(
                file,
                None,
                format!("the schema must declare entity type {ty} (see docs/AUTHZ.md)"),
            ));
        }
    }
    if !errors.is_empty() {
        return errors;
    }
    let role = uid(&types.role, "r");
    let group = uid(&types.group, "g");
    let sample = Identity {
        subject: "s".into(),
        issuer: "i".into(),
        provider: "p".into(),
        scopes: vec!["x".into()],
        roles: vec!["r".into()],
        groups: vec!["g".into()],
        client_id: Some("c".into()),
        tier: Some("t".into()),
        ..Identity::default()
    };
    let mut attrs = HashMap::new();
    attrs.insert(
        "name".to_owned(),
        RestrictedExpression::new_string("n".into()),
    );
    attrs.insert(
        "template".to_owned(),
        RestrictedExpression::new_string("/t".into()),
    );
    let route = Entity::new(uid(&types.route, "n"), attrs, HashSet::new());
    let built = principal_entity(types, &sample).and_then(|(p, _)| {
        Ok(vec![
            p,
            Entity::new_no_attrs(role, HashSet::new()),
            Entity::new_no_attrs(group, HashSet::new()),
            route.map_err(|e| e.to_string())?,
        ])
    });
    match built {
        Ok(entities) => {
            if let Err(e) = Entities::from_entities(entities, Some(schema)) {
                errors.push(LoadError::new(
                    file,
                    None,
                    format!(
                        "the schema does not fit the entities Rampart builds: {} (start from the schema in docs/AUTHZ.md)",
                        full_message(&e)
                    ),
                ));
            }
        }
        Err(e) => errors.push(LoadError::new(file, None, e)),
    }
    errors
}

fn load_set(schema: &Schema, files: &[Source], errors: &mut Vec<LoadError>) -> PolicySet {
    let mut set = PolicySet::new();
    // Which file each policy came from.
    let mut origin: HashMap<PolicyId, usize> = HashMap::new();
    for (index, f) in files.iter().enumerate() {
        let parsed = match PolicySet::from_str(&f.text) {
            Ok(p) => p,
            Err(e) => {
                for one in e.iter() {
                    errors.push(located(&f.name, &f.text, one, full_message(one)));
                }
                continue;
            }
        };
        if parsed.templates().next().is_some() {
            errors.push(LoadError::new(
                &f.name,
                None,
                "policy templates (?principal, ?resource) are not supported; write static policies",
            ));
            continue;
        }
        let mut policies: Vec<&Policy> = parsed.policies().collect();
        // The parser names them policy0, policy1, ... in file order.
        policies.sort_by_key(|p| {
            p.id()
                .to_string()
                .strip_prefix("policy")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(usize::MAX)
        });
        let mut search_from = 0;
        for p in policies {
            let text = p.to_string();
            let offset = f
                .text
                .get(search_from..)
                .and_then(|rest| rest.find(text.trim()))
                .map_or(search_from, |o| o + search_from);
            search_from = offset + 1;
            let line = line_of(&f.text, offset);
            let id = match p.annotation("id") {
                Some(id) if !id.is_empty() => id.to_owned(),
                _ => format!("{}:{line}", f.name),
            };
            let id = PolicyId::new(id);
            if let Some(other) = origin.get(&id) {
                let other = files.get(*other).map_or("?", |s| s.name.as_str());
                errors.push(LoadError::new(
                    &f.name,
                    Some(line),
                    format!("policy id {:?} is also used in {other}", id.to_string()),
                ));
                continue;
            }
            origin.insert(id.clone(), index);
            if let Err(e) = set.add(p.new_id(id)) {
                errors.push(LoadError::new(&f.name, Some(line), e.to_string()));
            }
        }
    }
    let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
    for e in result.validation_errors() {
        let (file, text) = origin
            .get(e.policy_id())
            .and_then(|i| files.get(*i))
            .map_or(("policies", ""), |f| (f.name.as_str(), f.text.as_str()));
        // Cedar's message names the policy (`for policy `x`, ...`).
        errors.push(located(file, text, e, full_message(e)));
    }
    set
}

/// The principal entity of an identity, and its role and group entities.
fn principal_entity(types: &Types, id: &Identity) -> Result<(Entity, Vec<Entity>), String> {
    let mut parents = HashSet::new();
    let mut parent_entities = Vec::new();
    for (ty, names) in [(&types.role, &id.roles), (&types.group, &id.groups)] {
        for n in names {
            let p = uid(ty, n);
            if parents.insert(p.clone()) {
                parent_entities.push(Entity::new_no_attrs(p, HashSet::new()));
            }
        }
    }
    let mut attrs = HashMap::new();
    let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
    let set = |v: &[String]| RestrictedExpression::new_set(v.iter().map(|x| s(x)));
    attrs.insert("sub".to_owned(), s(&id.subject));
    attrs.insert("issuer".to_owned(), s(&id.issuer));
    attrs.insert("provider".to_owned(), s(&id.provider));
    attrs.insert("scopes".to_owned(), set(&id.scopes));
    attrs.insert("roles".to_owned(), set(&id.roles));
    attrs.insert("groups".to_owned(), set(&id.groups));
    if let Some(c) = &id.client_id {
        attrs.insert("client_id".to_owned(), s(c));
    }
    if let Some(t) = &id.tier {
        attrs.insert("tier".to_owned(), s(t));
    }
    let principal = Entity::new(uid(&types.user, &principal_id(id)), attrs, parents)
        .map_err(|e| e.to_string())?;
    Ok((principal, parent_entities))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(policy: &str) -> Option<Vec<String>> {
        let p = Policy::parse(None, policy).unwrap_or_else(|e| unreachable!("{e}"));
        let mut r = TokenReads::default();
        r.walk(&p.to_json().unwrap_or_default());
        (!r.whole).then(|| {
            let mut v: Vec<String> = r.claims.into_iter().collect();
            v.sort();
            v
        })
    }

    #[test]
    fn only_the_claims_policies_name_are_built() {
        assert_eq!(
            reads(
                "permit(principal, action, resource) when { context.token has tenant && context.token.tenant == \"a\" && context.token.level > 2 };"
            ),
            Some(vec!["level".to_owned(), "tenant".to_owned()])
        );
        assert_eq!(
            reads(
                "permit(principal, action, resource) when { context.params.id == principal.sub };"
            ),
            Some(vec![])
        );
        assert_eq!(
            reads(
                "permit(principal, action, resource) when { context.token == {\"sub\": \"a\"} };"
            ),
            None
        );
        assert_eq!(
            reads("permit(principal, action, resource) when { context == {} };"),
            None
        );
        assert_eq!(
            reads("permit(principal, action, resource) when { context has token };"),
            None
        );
    }
}
