//! The claim policy: what a verified token must say, and the identity it gives.
//!
//! Checked after the signature, against a `now` the caller passes in (seconds since the
//! Unix epoch; this crate never reads a clock):
//!
//! * `typ` (header), when the policy names one: compared case-insensitively with the
//!   `application/` prefix optional (RFC 7515 §4.1.9), so `at+jwt` (RFC 9068 §2.1) matches
//!   `application/at+jwt`. Explicit typing keeps an ID token or a logout token from passing
//!   as an access token (RFC 8725 §3.11).
//! * `iss`: a string exactly equal to the provider's issuer, byte for byte: no case
//!   folding, no trailing-slash or prefix tolerance (RFC 8725 §3.8).
//! * `aud`: a string or an array of strings naming one of the provider's audiences
//!   (RFC 7519 §4.1.3, RFC 8725 §3.9). A token that has an `aud` is refused by a policy
//!   with no audiences, as RFC 7519 §4.1.3 says: configure the audience.
//! * `exp`, `nbf`, `iat`: JSON numbers (NumericDate, RFC 7519 §2: integer or fraction),
//!   not negative, not past year 9999; anything else (a string, a boolean, `null`) is
//!   [`Rejection::BadClaimType`]. `exp` is required unless the policy says otherwise.
//!   With leeway `L`: expired when `now >= exp + L`, not yet valid when `now + L < nbf`,
//!   issued in the future when `iat > now + L`.
//! * `sub`: a non-empty string, required: the identity is keyed on it.
//! * claims the policy lists as required: present and not `null`.
//! * `scope` (a space-separated string, RFC 9068 §2.2.3) or else `scp` (an array of
//!   strings, or a space-separated string), `roles` (an array of strings; the claim name,
//!   or a dotted path such as `realm_access.roles`, is configurable), `client_id` (RFC 9068)
//!   or else `azp`, `jti`: of the right type when present.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rampart_core::{ClaimValue, Claims};

use serde_json::{Map, Value};

use crate::rejection::Rejection;
use crate::token::media_type_eq;

/// The default clock-skew allowance: 60 seconds.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// The largest leeway a policy accepts: 300 seconds. More would keep expired tokens alive
/// for minutes.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// The latest NumericDate accepted: 9999-12-31T23:59:59Z.
pub const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// What a verified token's claims must satisfy.
#[derive(Debug, Clone)]
pub struct ClaimsPolicy {
    issuer: String,
    audiences: Vec<String>,
    leeway_secs: u64,
    require_exp: bool,
    typ: Option<String>,
    required: Vec<String>,
    roles_claim: String,
    groups_claim: String,
}

/// A policy or verifier that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The issuer is empty.
    #[error("issuer must not be empty")]
    EmptyIssuer,
    /// An audience, the `typ`, a required claim or the roles claim is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// The leeway is longer than [`MAX_LEEWAY`].
    #[error("leeway must be at most {} s", MAX_LEEWAY.as_secs())]
    LeewayTooLong,
    /// The allow-list of algorithms is empty.
    #[error("at least one algorithm must be allowed")]
    NoAlgorithms,
}

/// Who a verified token speaks for: what later layers (rate limits, authorization,
/// forwarded headers) need from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// Granted scopes, from `scope` or `scp`.
    pub scopes: Vec<String>,
    /// Granted roles, from the policy's roles claim.
    pub roles: Vec<String>,
    /// Groups, from the policy's groups claim.
    pub groups: Vec<String>,
    /// Every claim, for ownership checks and policies.
    pub claims: Claims,
    /// The OAuth client, from `client_id` or `azp`.
    pub client_id: Option<String>,
    /// `jti`, for revocation.
    pub jti: Option<String>,
    /// `exp`, in whole seconds since the Unix epoch (rounded down).
    pub expires_at: Option<u64>,
    /// `iat`, in whole seconds since the Unix epoch (rounded down).
    pub issued_at: Option<u64>,
}

impl ClaimsPolicy {
    /// A policy for tokens of `issuer`: no audience, 60 s leeway, `exp` required, any
    /// `typ`, roles from `roles`.
    pub fn new(issuer: impl Into<String>) -> Result<ClaimsPolicy, PolicyError> {
        let issuer = issuer.into();
        if issuer.is_empty() {
            return Err(PolicyError::EmptyIssuer);
        }
        Ok(ClaimsPolicy {
            issuer,
            audiences: Vec::new(),
            leeway_secs: DEFAULT_LEEWAY.as_secs(),
            require_exp: true,
            typ: None,
            required: Vec::new(),
            roles_claim: "roles".to_owned(),
            groups_claim: "groups".to_owned(),
        })
    }

    /// Accept tokens whose `aud` names one of `audiences` (and require `aud`).
    pub fn with_audiences<I, S>(mut self, audiences: I) -> Result<ClaimsPolicy, PolicyError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audiences = non_empty(audiences, "audience")?;
        Ok(self)
    }

    /// The clock-skew allowance, at most [`MAX_LEEWAY`]; whole seconds count.
    pub fn with_leeway(mut self, leeway: Duration) -> Result<ClaimsPolicy, PolicyError> {
        if leeway > MAX_LEEWAY {
            return Err(PolicyError::LeewayTooLong);
        }
        self.leeway_secs = leeway.as_secs();
        Ok(self)
    }

    /// Whether `exp` must be present (default: yes).
    #[must_use]
    pub fn require_exp(mut self, required: bool) -> ClaimsPolicy {
        self.require_exp = required;
        self
    }

    /// Require the header `typ` to be `typ` (e.g. `at+jwt`).
    pub fn with_typ(mut self, typ: impl Into<String>) -> Result<ClaimsPolicy, PolicyError> {
        let typ = typ.into();
        if typ.is_empty() {
            return Err(PolicyError::Empty("typ"));
        }
        self.typ = Some(typ);
        Ok(self)
    }

    /// Claims that must be present (and not `null`).
    pub fn with_required_claims<I, S>(mut self, names: I) -> Result<ClaimsPolicy, PolicyError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.required = non_empty(names, "required claim")?;
        Ok(self)
    }

    /// Read roles from this claim, or from this dotted path (`realm_access.roles`).
    pub fn with_roles_claim(
        mut self,
        claim: impl Into<String>,
    ) -> Result<ClaimsPolicy, PolicyError> {
        let claim = claim.into();
        if claim.is_empty() || claim.split('.').any(str::is_empty) {
            return Err(PolicyError::Empty("roles claim"));
        }
        self.roles_claim = claim;
        Ok(self)
    }

    /// Read groups from this claim, or from this dotted path (default `groups`).
    pub fn with_groups_claim(
        mut self,
        claim: impl Into<String>,
    ) -> Result<ClaimsPolicy, PolicyError> {
        let claim = claim.into();
        if claim.is_empty() || claim.split('.').any(str::is_empty) {
            return Err(PolicyError::Empty("groups claim"));
        }
        self.groups_claim = claim;
        Ok(self)
    }

    /// The issuer tokens must name.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The leeway, in seconds.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway_secs
    }

    /// Checks a verified token's header and claims at time `now` (seconds since the Unix
    /// epoch) and extracts its identity.
    pub fn check(
        &self,
        header: &Map<String, Value>,
        claims: &Map<String, Value>,
        now: u64,
    ) -> Result<TokenIdentity, Rejection> {
        if let Some(want) = &self.typ {
            match header.get("typ").and_then(Value::as_str) {
                Some(typ) if media_type_eq(typ, want) => {}
                _ => return Err(Rejection::BadTyp),
            }
        }

        let issuer = match claims.get("iss") {
            None => return Err(Rejection::MissingClaim("iss".into())),
            Some(Value::String(iss)) if *iss == self.issuer => iss.clone(),
            Some(Value::String(_)) => return Err(Rejection::BadIssuer),
            Some(_) => return Err(Rejection::BadClaimType("iss".into())),
        };
        self.check_audience(claims)?;
        let (exp, iat) = self.check_times(claims, now)?;

        let subject = match claims.get("sub") {
            None => return Err(Rejection::MissingClaim("sub".into())),
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            Some(_) => return Err(Rejection::BadClaimType("sub".into())),
        };
        for name in &self.required {
            if claims.get(name).is_none_or(Value::is_null) {
                return Err(Rejection::MissingClaim(name.clone()));
            }
        }

        Ok(TokenIdentity {
            issuer,
            subject,
            scopes: scopes(claims)?,
            roles: string_list(claims, &self.roles_claim)?,
            groups: string_list(claims, &self.groups_claim)?,
            claims: Arc::new(claim_values(claims)),
            client_id: match optional_string(claims, "client_id")? {
                Some(id) => Some(id),
                None => optional_string(claims, "azp")?,
            },
            jti: optional_string(claims, "jti")?,
            expires_at: exp.map(whole_seconds),
            issued_at: iat.map(whole_seconds),
        })
    }

    fn check_audience(&self, claims: &Map<String, Value>) -> Result<(), Rejection> {
        let matches = |aud: &str| self.audiences.iter().any(|a| a == aud);
        match claims.get("aud") {
            None if self.audiences.is_empty() => Ok(()),
            None => Err(Rejection::MissingClaim("aud".into())),
            Some(Value::String(aud)) => {
                if matches(aud) {
                    Ok(())
                } else {
                    Err(Rejection::BadAudience)
                }
            }
            Some(Value::Array(auds)) => {
                let mut found = false;
                for aud in auds {
                    let aud = aud
                        .as_str()
                        .ok_or_else(|| Rejection::BadClaimType("aud".into()))?;
                    found |= matches(aud);
                }
                if found {
                    Ok(())
                } else {
                    Err(Rejection::BadAudience)
                }
            }
            Some(_) => Err(Rejection::BadClaimType("aud".into())),
        }
    }

    /// Checks `exp`, `nbf` and `iat`, and returns `exp` and `iat`.
    fn check_times(
        &self,
        claims: &Map<String, Value>,
        now: u64,
    ) -> Result<(Option<f64>, Option<f64>), Rejection> {
        // NumericDates stay below 2^38, so f64 holds them and `now` exactly.
        let now = now as f64;
        let leeway = self.leeway_secs as f64;
        let exp = numeric_date(claims, "exp")?;
        match exp {
            None if self.require_exp => return Err(Rejection::MissingClaim("exp".into())),
            Some(exp) if now >= exp + leeway => return Err(Rejection::Expired),
            _ => {}
        }
        if let Some(nbf) = numeric_date(claims, "nbf")?
            && now + leeway < nbf
        {
            return Err(Rejection::NotYetValid);
        }
        let iat = numeric_date(claims, "iat")?;
        if let Some(iat) = iat
            && iat > now + leeway
        {
            return Err(Rejection::IatInFuture);
        }
        Ok((exp, iat))
    }
}

/// The array of strings at `path` (a claim name or a dotted path); absent or `null` is
/// empty.
fn string_list(claims: &Map<String, Value>, path: &str) -> Result<Vec<String>, Rejection> {
    let mut names = path.split('.');
    let first = names.next().and_then(|name| claims.get(name));
    let value = names.try_fold(first, |v, name| Some(v?.as_object()?.get(name)));
    match value.flatten() {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            string_items(items).ok_or_else(|| Rejection::BadClaimType(path.to_owned()))
        }
        Some(_) => Err(Rejection::BadClaimType(path.to_owned())),
    }
}

/// The claims as [`ClaimValue`]s, for ownership checks and policies. `null` and numbers
/// that are not 64-bit integers are left out (they have no policy counterpart); so are
/// array items of those kinds.
pub fn claim_values(claims: &Map<String, Value>) -> BTreeMap<String, ClaimValue> {
    fn convert(v: &Value) -> Option<ClaimValue> {
        Some(match v {
            Value::Null => return None,
            Value::Bool(b) => ClaimValue::Bool(*b),
            Value::Number(n) => ClaimValue::Int(n.as_i64()?),
            Value::String(s) => ClaimValue::String(s.clone()),
            Value::Array(items) => ClaimValue::List(items.iter().filter_map(convert).collect()),
            Value::Object(m) => ClaimValue::Map(
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), convert(v)?)))
                    .collect(),
            ),
        })
    }
    claims
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), convert(v)?)))
        .collect()
}

/// A claim as text, for forwarding upstream: strings as they are, numbers and booleans
/// in JSON form, arrays of those joined with `,`. Objects and `null` give `None`.
pub fn claim_as_string(claims: &Map<String, Value>, name: &str) -> Option<String> {
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    match claims.get(name)? {
        Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()
            .map(|parts| parts.join(",")),
        other => scalar(other),
    }
}

fn non_empty<I, S>(items: I, what: &'static str) -> Result<Vec<String>, PolicyError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let items: Vec<String> = items.into_iter().map(Into::into).collect();
    if items.iter().any(String::is_empty) {
        return Err(PolicyError::Empty(what));
    }
    Ok(items)
}

/// A NumericDate claim: a JSON number in `0..=MAX_NUMERIC_DATE`.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, Rejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if t.is_finite() && (0.0..=MAX_NUMERIC_DATE as f64).contains(&t) => Ok(Some(t)),
            _ => Err(Rejection::BadClaimType(name.into())),
        },
        Some(_) => Err(Rejection::BadClaimType(name.into())),
    }
}

fn whole_seconds(t: f64) -> u64 {
    // In range by `numeric_date`; `as` truncates toward zero, which is floor here.
    t as u64
}

fn optional_string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, Rejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Rejection::BadClaimType(name.into())),
    }
}

fn scopes(claims: &Map<String, Value>) -> Result<Vec<String>, Rejection> {
    let split = |s: &str| {
        s.split(' ')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    };
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => Ok(split(s)),
        (Some(_), _) => Err(Rejection::BadClaimType("scope".into())),
        (None, None) => Ok(Vec::new()),
        (None, Some(Value::String(s))) => Ok(split(s)),
        (None, Some(Value::Array(items))) => {
            string_items(items).ok_or_else(|| Rejection::BadClaimType("scp".into()))
        }
        (None, Some(_)) => Err(Rejection::BadClaimType("scp".into())),
    }
}

fn string_items(items: &[Value]) -> Option<Vec<String>> {
    items
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests;
