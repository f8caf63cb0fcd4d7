//! The authorization defense: requirements, then ownership, then Cedar.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use http::header::WWW_AUTHENTICATE;
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use rampart_core::{
    Clock, Decision, Defense, DefenseError, Identity, Interruption, Outcome, RequestContext,
    Verdict,
};

use crate::cedar::{Facts, Judgement, PolicyEngine, RouteEntities};
use crate::owner::OwnerRule;
use crate::require::{Requirements, Unmet};

/// The layer name of authorization decisions.
pub const LAYER: &str = "authz";
/// The layer name of the shadow policy set's decisions.
pub const SHADOW_LAYER: &str = "authz_shadow";

/// A route decided by Cedar: the loaded policies and the route's entities.
#[derive(Debug, Clone)]
pub struct CedarRoute {
    /// The policies.
    pub engine: Arc<PolicyEngine>,
    /// The route as Cedar sees it.
    pub route: RouteEntities,
}

/// A route's authorization.
pub struct Authorize {
    requirements: Requirements,
    owner: Vec<OwnerRule>,
    owner_exempt: Vec<String>,
    cedar: Option<CedarRoute>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Authorize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorize")
            .field("requirements", &self.requirements)
            .field("owner", &self.owner)
            .field("owner_exempt", &self.owner_exempt)
            .field("cedar", &self.cedar.is_some())
            .finish()
    }
}

/// What refused, before it becomes an interruption.
enum Refused {
    Anonymous,
    Unmet(Unmet),
    Owner(String, &'static str),
    Cedar(Judgement),
}

impl Authorize {
    /// A route's authorization: `requirements`, then each of `owner` (skipped for callers
    /// holding one of `owner_exempt`), then Cedar when `cedar` is set.
    pub fn new(
        requirements: Requirements,
        owner: Vec<OwnerRule>,
        owner_exempt: Vec<String>,
        cedar: Option<CedarRoute>,
        clock: Arc<dyn Clock>,
    ) -> Authorize {
        Authorize {
            requirements,
            owner,
            owner_exempt,
            cedar,
            clock,
        }
    }

    /// Decides a request whose identity (if any) is in `ctx`. Records the allowing and
    /// shadow decisions in `ctx`; a refusal is returned as the verdict.
    pub fn decide(&self, ctx: &mut RequestContext, head: &Parts) -> Verdict {
        let mut notes: Vec<Decision> = Vec::new();
        let result = self.judge(ctx, head, &mut notes);
        for n in notes {
            ctx.record(n);
        }
        match result {
            Ok(rule) => {
                ctx.record(Decision {
                    layer: LAYER,
                    outcome: Outcome::Allow,
                    reason: Cow::Borrowed("authorized"),
                    rule_id: Some(Cow::Owned(rule)),
                });
                Verdict::Continue
            }
            Err(r) => Verdict::Deny(self.interruption(r, ctx.identity.is_none())),
        }
    }

    fn judge(
        &self,
        ctx: &RequestContext,
        head: &Parts,
        notes: &mut Vec<Decision>,
    ) -> Result<String, Refused> {
        let identity = ctx.identity.as_ref();
        let mut because = Vec::new();
        if !self.requirements.is_empty() || !self.owner.is_empty() {
            let id = identity.ok_or(Refused::Anonymous)?;
            self.requirements.check(id).map_err(Refused::Unmet)?;
            if !self.requirements.is_empty() {
                because.push("requirements".to_owned());
            }
            self.check_owner(ctx, head, id, &mut because)?;
        }
        if let Some(c) = &self.cedar {
            let facts = Facts {
                method: head.method.as_str(),
                path: head.uri.path(),
                params: ctx.route.as_ref().map_or(&[], |r| r.params.as_slice()),
                query: head.uri.query(),
                client_ip: ctx.client.ip,
                now: self
                    .clock
                    .wall()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            };
            let decided = c.engine.decide(&c.route, identity, &facts);
            if let Some(shadow) = &decided.shadow {
                notes.push(Decision {
                    layer: SHADOW_LAYER,
                    outcome: if shadow.allowed {
                        Outcome::Allow
                    } else {
                        Outcome::Shadow
                    },
                    reason: Cow::Borrowed(shadow.reason()),
                    rule_id: Some(Cow::Owned(shadow.rule())),
                });
            }
            if !decided.enforced.allowed {
                return Err(Refused::Cedar(decided.enforced));
            }
            because.push(decided.enforced.rule());
        }
        Ok(if because.is_empty() {
            "none".to_owned()
        } else {
            because.join(";")
        })
    }

    fn check_owner(
        &self,
        ctx: &RequestContext,
        head: &Parts,
        id: &Identity,
        because: &mut Vec<String>,
    ) -> Result<(), Refused> {
        if self.owner.is_empty() {
            return Ok(());
        }
        if let Some(role) = self.owner_exempt.iter().find(|r| id.roles.contains(r)) {
            because.push(format!("owner_exempt_roles:{role}"));
            return Ok(());
        }
        for rule in &self.owner {
            rule.check(ctx, head, id)
                .map_err(|f| Refused::Owner(rule.id(), f.reason()))?;
        }
        because.push("owner_match".to_owned());
        Ok(())
    }

    fn interruption(&self, r: Refused, anonymous: bool) -> Interruption {
        // A caller without credentials is asked for them (401); one with credentials that
        // do not suffice is refused (403).
        let (status, reason, rule) = match &r {
            Refused::Anonymous => (
                StatusCode::UNAUTHORIZED,
                Cow::Borrowed("authentication_required"),
                "authorize".to_owned(),
            ),
            Refused::Unmet(u) => (StatusCode::FORBIDDEN, Cow::Borrowed(u.reason()), u.rule()),
            Refused::Owner(rule, reason) => {
                (StatusCode::FORBIDDEN, Cow::Borrowed(*reason), rule.clone())
            }
            Refused::Cedar(j) if anonymous => (
                StatusCode::UNAUTHORIZED,
                Cow::Borrowed(j.reason()),
                j.rule(),
            ),
            Refused::Cedar(j) => (StatusCode::FORBIDDEN, Cow::Borrowed(j.reason()), j.rule()),
        };
        let mut i = Interruption::new(status, reason).with_rule(rule);
        let challenge = match &r {
            Refused::Unmet(Unmet::Scope(_)) => Some(format!(
                "Bearer realm=\"rampart\", error=\"insufficient_scope\", error_description=\"the token lacks a required scope\", scope=\"{}\"",
                self.requirements.scopes.names()
            )),
            _ if status == StatusCode::UNAUTHORIZED => Some("Bearer realm=\"rampart\"".into()),
            _ => None,
        };
        if let Some(v) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            i.headers.insert(WWW_AUTHENTICATE, v);
        }
        i
    }
}

#[async_trait]
impl Defense for Authorize {
    fn name(&self) -> &'static str {
        LAYER
    }

    async fn request_head(
        &self,
        ctx: &mut RequestContext,
        head: &mut Parts,
    ) -> Result<Verdict, DefenseError> {
        Ok(self.decide(ctx, head))
    }
}
