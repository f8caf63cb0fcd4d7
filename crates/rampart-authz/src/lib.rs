//! Rampart authorization: what an authenticated caller may do.
//!
//! Three layers, each optional on a route, checked in order by the [`Authorize`] defense:
//!
//! 1. [`Requirements`]: providers, scopes, roles and groups the caller must hold (403,
//!    with an RFC 6750 `insufficient_scope` challenge when a scope is missing).
//! 2. [`OwnerRule`]s: object ownership, a path parameter, query parameter or header that
//!    must equal a claim, compared on the value the upstream will act on (see [`owner`]).
//! 3. Cedar policies ([`PolicyEngine`]): RBAC and ABAC over the verified identity and the
//!    request, validated against a schema in strict mode at load, with a shadow set that
//!    is evaluated and logged but never enforced.
//!
//! Every decision names the rule or policies that made it. [`audit`] answers which roles
//! can perform which actions on which routes.

pub mod audit;
pub mod cedar;
mod defense;
pub mod owner;
mod require;

pub use cedar::{Decided, Facts, Judgement, LoadError, PolicyEngine, RouteEntities, Source};
pub use defense::{Authorize, CedarRoute, LAYER, SHADOW_LAYER};
pub use owner::{Case, OwnerFailure, OwnerRule};
pub use require::{Need, Requirements, Unmet};
