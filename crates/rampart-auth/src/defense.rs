//! The authentication defense: bearer tokens (RFC 6750) verified on a route's
//! `request_head`.
//!
//! A route names one or more [`Provider`]s. The defense finds the token where the providers
//! say (the `Authorization: Bearer` header by default; a header, a cookie or, only when
//! configured, a query parameter), picks the provider by the token's issuer, verifies it
//! ([`Verifier`]: strict parse, key bound to its algorithm, signature, claims), checks
//! revocation and the route's scopes, and puts the [`Identity`] in the request context for
//! later layers (per-identity rate limits, authorization). Claims can be forwarded to the
//! upstream as headers; incoming copies of those headers are always removed first, so a
//! client cannot forge them.
//!
//! Refusals follow RFC 6750 §3: no credentials is `401` with a bare `WWW-Authenticate:
//! Bearer realm="..."`; a bad token is `401` with `error="invalid_token"`; a request that
//! carries credentials in two places is `400` `invalid_request`; missing scopes is `403`
//! `insufficient_scope` with the scopes needed. Every refusal carries a stable reason code
//! ([`Rejection::reason`], `missing_token`, `revoked`, ...) for the security-event log and
//! the metrics, and names the provider as the rule. Tokens are never logged: the context
//! carries a short SHA-256 of the credential.
//!
//! Verified tokens are cached ([`TokenCache`], keyed by the token's SHA-256, bounded, each
//! entry living no longer than its token), so a returning token costs a hash and a lookup.
//! Revocation is checked on every request, cached or not.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use rampart_core::http_reexport::header::{
    AUTHORIZATION, COOKIE, HeaderName, HeaderValue, WWW_AUTHENTICATE,
};
use rampart_core::http_reexport::{StatusCode, request::Parts};
use rampart_core::{
    Clock, Decision, DefenseError, Identity, Interruption, Outcome, RequestContext, Verdict,
};

use crate::apikeys::ApiKeys;
use crate::claims::TokenIdentity;
use crate::introspect::{IntrospectRejection, Introspector};
use crate::jwks::{KeyStore, Lookup};
use crate::keys::KeySet;
use crate::rejection::Rejection;
use crate::revocation::{RevocationStore, TokenFacts};
use crate::token;
use crate::verify::{Verifier, short_hex, token_hash};

/// The layer name in logs and metrics.
pub const LAYER: &str = "auth";

/// Where a provider's tokens are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFrom {
    /// `Authorization: Bearer <token>` (RFC 6750 §2.1).
    Bearer,
    /// A header holding the bare token.
    Header(HeaderName),
    /// A cookie.
    Cookie(String),
    /// A query parameter (RFC 6750 §2.3).
    Query(String),
}

/// Where a provider's keys are.
#[derive(Debug, Clone)]
pub enum ProviderKeys {
    /// A fixed set (a JWKS file, an HMAC secret).
    Static(Arc<KeySet>),
    /// Fetched and kept current (a JWKS URL or discovery).
    Fetched(Arc<KeyStore>),
}

/// How a provider's tokens are checked.
#[derive(Debug)]
pub enum Verification {
    /// JWTs, verified here against the provider's keys.
    Jwt {
        /// The checks.
        verifier: Verifier,
        /// The keys.
        keys: ProviderKeys,
    },
    /// Opaque tokens, asked about at the provider's RFC 7662 introspection endpoint.
    Introspection(Introspector),
}

/// One token issuer as a route sees it.
#[derive(Debug)]
pub struct Provider {
    name: Arc<str>,
    issuer: String,
    verification: Verification,
    token_from: TokenFrom,
    forward: Vec<(String, HeaderName)>,
}

/// Why a provider could not establish a token.
enum Failure {
    /// The token is not good (401).
    Rejected(Rejection),
    /// The provider could not tell (introspection failed): the route's failure mode
    /// decides, closed by default.
    Unavailable(String),
}

impl Provider {
    /// A provider named `name` (the configuration's key) for tokens of `issuer`, checked by
    /// `verification`, read from `token_from`, forwarding the claims in `forward` (claim
    /// name, header) to the upstream.
    pub fn new(
        name: &str,
        issuer: &str,
        verification: Verification,
        token_from: TokenFrom,
        forward: Vec<(String, HeaderName)>,
    ) -> Self {
        Self {
            name: name.into(),
            issuer: issuer.into(),
            verification,
            token_from,
            forward,
        }
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The issuer its tokens carry.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Its key store, when its keys are fetched.
    pub fn key_store(&self) -> Option<&Arc<KeyStore>> {
        match &self.verification {
            Verification::Jwt {
                keys: ProviderKeys::Fetched(s),
                ..
            } => Some(s),
            _ => None,
        }
    }

    fn is_jwt(&self) -> bool {
        matches!(self.verification, Verification::Jwt { .. })
    }

    /// Checks `token` at `now` (seconds since the Unix epoch): the identity, the claims to
    /// forward, and the leeway to allow past `exp`.
    async fn establish(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(TokenIdentity, Vec<(HeaderName, HeaderValue)>, u64), Failure> {
        match &self.verification {
            Verification::Jwt { verifier, keys } => {
                let v = self
                    .verify(verifier, keys, token, now)
                    .await
                    .map_err(Failure::Rejected)?;
                let forwarded = self.forwarded(|claim| v.claim_str(claim));
                Ok((v.identity, forwarded, verifier.policy().leeway_secs()))
            }
            Verification::Introspection(introspector) => {
                let id = introspector
                    .introspect(token, now)
                    .await
                    .map_err(|e| match e {
                        IntrospectRejection::Claims(r) => Failure::Rejected(r),
                        IntrospectRejection::Inactive => Failure::Rejected(Rejection::Inactive),
                        IntrospectRejection::Failed(why) => Failure::Unavailable(why),
                    })?;
                let forwarded = self.forwarded(|claim| identity_claim(&id, claim));
                Ok((id, forwarded, 0))
            }
        }
    }

    fn forwarded(&self, claim: impl Fn(&str) -> Option<String>) -> Vec<(HeaderName, HeaderValue)> {
        self.forward
            .iter()
            .filter_map(|(name, header)| {
                Some((header.clone(), HeaderValue::from_str(&claim(name)?).ok()?))
            })
            .collect()
    }

    /// Verifies a JWT, fetching the provider's keys again once for a `kid` it does not
    /// know (the key store rate-limits that).
    async fn verify(
        &self,
        verifier: &Verifier,
        keys: &ProviderKeys,
        token: &str,
        now: u64,
    ) -> Result<crate::Verified, Rejection> {
        match keys {
            ProviderKeys::Static(keys) => verifier.verify(token, keys, now),
            ProviderKeys::Fetched(store) => {
                let first = verifier.verify(token, &store.current(), now);
                if !matches!(first, Err(Rejection::UnknownKid)) {
                    return first;
                }
                let kid = token::parse_jws(token, verifier.options())?
                    .kid()
                    .map(str::to_owned);
                match kid {
                    Some(kid) => match store.key_for(&kid).await {
                        Lookup::Found(keys) => verifier.verify(token, &keys, now),
                        Lookup::Unknown => Err(Rejection::UnknownKid),
                    },
                    None => first,
                }
            }
        }
    }
}

/// What a verified token established, cached by the token's hash.
#[derive(Debug)]
struct Established {
    provider: Arc<str>,
    identity: Identity,
    issued_at: Option<u64>,
    jti: Option<String>,
    /// Claims to forward, as (header, value).
    forwarded: Vec<(HeaderName, HeaderValue)>,
    /// Valid until then (seconds since the Unix epoch): `exp` plus the leeway.
    valid_until: u64,
}

/// Verified tokens by SHA-256, shared by every route of a runtime.
pub struct TokenCache {
    inner: moka::sync::Cache<[u8; 32], Arc<Established>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.inner.entry_count())
            .finish()
    }
}

impl TokenCache {
    /// A cache of at most `capacity` tokens, each kept at most `max_age` (and never past
    /// its token's expiry: that is checked on every hit).
    pub fn new(capacity: u64, max_age: Duration) -> Self {
        Self {
            inner: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(max_age)
                .build(),
        }
    }
}

/// The authentication defense of one route.
pub struct Authenticate {
    providers: Vec<Arc<Provider>>,
    scopes: Vec<String>,
    optional: bool,
    realm: String,
    cache: Arc<TokenCache>,
    revocations: Option<Arc<dyn RevocationStore>>,
    /// Every header some provider of the route forwards, removed from every request.
    strip: Vec<HeaderName>,
    api_keys: Option<(HeaderName, Arc<ApiKeys>)>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Authenticate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticate")
            .field("providers", &self.providers)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Everything an [`Authenticate`] is made of.
pub struct AuthSettings {
    /// The accepted providers.
    pub providers: Vec<Arc<Provider>>,
    /// Scopes a token must all carry.
    pub scopes: Vec<String>,
    /// Requests without credentials pass, anonymous.
    pub optional: bool,
    /// The `realm` of `WWW-Authenticate`.
    pub realm: String,
    /// The shared cache of verified tokens.
    pub cache: Arc<TokenCache>,
    /// Revoked tokens and subjects.
    pub revocations: Option<Arc<dyn RevocationStore>>,
    /// API keys accepted on the route, and the header that carries them.
    pub api_keys: Option<(HeaderName, Arc<ApiKeys>)>,
    /// Wall time.
    pub clock: Arc<dyn Clock>,
}

/// A credential found in a request.
enum Found {
    None,
    One(String, usize),
    /// Credentials in several places, or a malformed `Authorization` header.
    Invalid(&'static str),
}

impl Authenticate {
    /// The defense for `s`.
    pub fn new(s: AuthSettings) -> Self {
        let mut strip: Vec<HeaderName> = s
            .providers
            .iter()
            .flat_map(|p| p.forward.iter().map(|(_, h)| h.clone()))
            .collect();
        // The API key is a credential for the gateway: it does not go upstream.
        strip.extend(s.api_keys.iter().map(|(h, _)| h.clone()));
        strip.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        strip.dedup();
        Self {
            providers: s.providers,
            scopes: s.scopes,
            optional: s.optional,
            realm: s.realm,
            cache: s.cache,
            revocations: s.revocations,
            strip,
            api_keys: s.api_keys,
            clock: s.clock,
        }
    }

    fn now(&self) -> u64 {
        self.clock
            .wall()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// The token, and the index of the provider whose source found it.
    fn find(&self, head: &Parts) -> Found {
        let mut found: Option<(&str, usize)> = None;
        for (i, p) in self.providers.iter().enumerate() {
            let got = match &p.token_from {
                TokenFrom::Bearer => match bearer(head) {
                    Ok(t) => t,
                    Err(why) => return Found::Invalid(why),
                },
                TokenFrom::Header(name) => {
                    let mut values = head.headers.get_all(name).iter();
                    match (values.next(), values.next()) {
                        (None, _) => None,
                        (Some(v), None) => match v.to_str() {
                            Ok(s) if !s.is_empty() => Some(s.trim()),
                            _ => return Found::Invalid("malformed token header"),
                        },
                        (Some(_), Some(_)) => return Found::Invalid("token header repeated"),
                    }
                }
                TokenFrom::Cookie(name) => cookie(head, name),
                TokenFrom::Query(name) => query(head, name),
            };
            if let Some(t) = got {
                match found {
                    Some((other, _)) if other != t => {
                        return Found::Invalid("credentials in more than one place");
                    }
                    Some(_) => {}
                    None => found = Some((t, i)),
                }
            }
        }
        match found {
            Some((t, i)) => Found::One(t.to_owned(), i),
            None => Found::None,
        }
    }

    fn challenge(&self, error: Option<(&str, &str)>, scope: Option<&str>) -> HeaderValue {
        if self.providers.is_empty()
            && let Some((header, _)) = &self.api_keys
        {
            let v = format!("ApiKey realm=\"{}\", header=\"{header}\"", self.realm);
            return HeaderValue::from_str(&v)
                .unwrap_or_else(|_| HeaderValue::from_static("ApiKey"));
        }
        let mut v = format!("Bearer realm=\"{}\"", self.realm);
        if let Some((code, description)) = error {
            v.push_str(&format!(
                ", error=\"{code}\", error_description=\"{description}\""
            ));
        }
        if let Some(scope) = scope {
            v.push_str(&format!(", scope=\"{scope}\""));
        }
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }

    fn refuse(
        &self,
        status: StatusCode,
        reason: &'static str,
        provider: Option<&str>,
        challenge: HeaderValue,
    ) -> Verdict {
        let mut i = Interruption::new(status, reason);
        if let Some(p) = provider {
            i = i.with_rule(p.to_string());
        }
        i.headers.insert(WWW_AUTHENTICATE, challenge);
        Verdict::Deny(i)
    }

    fn invalid(&self, r: &Rejection, provider: Option<&str>) -> Verdict {
        // The description names the class of problem, never the token's contents.
        let description = match r {
            Rejection::Expired => "the token expired",
            Rejection::Revoked => "the token was revoked",
            Rejection::NotYetValid | Rejection::IatInFuture => "the token is not valid yet",
            _ => "the token is not valid",
        };
        self.refuse(
            StatusCode::UNAUTHORIZED,
            r.reason(),
            provider,
            self.challenge(Some(("invalid_token", description)), None),
        )
    }

    /// Checks `token` with the provider its issuer names (or, for a token that is not a
    /// JWT, the route's introspecting provider).
    async fn establish(
        &self,
        token: &str,
        found_by: usize,
        now: u64,
    ) -> Result<Arc<Established>, (Failure, Option<Arc<str>>)> {
        let provider = self
            .pick(token, found_by)
            .ok_or((Failure::Rejected(Rejection::BadIssuer), None))?;
        let name = provider.name.clone();
        let (id, forwarded, leeway) = provider
            .establish(token, now)
            .await
            .map_err(|f| (f, Some(name.clone())))?;
        Ok(Arc::new(Established {
            provider: name.clone(),
            identity: Identity {
                subject: id.subject,
                issuer: id.issuer,
                provider: name.to_string(),
                scopes: id.scopes,
                roles: id.roles,
                groups: id.groups,
                claims: id.claims,
                client_id: id.client_id,
                tier: None,
                expires_at: id.expires_at,
            },
            issued_at: id.issued_at,
            jti: id.jti,
            forwarded,
            // Without `exp` (a provider that allows it) a token stays cached no longer
            // than the cache's own maximum age.
            valid_until: id.expires_at.map_or(u64::MAX, |e| e.saturating_add(leeway)),
        }))
    }

    /// With one provider, that one; with several, the one whose issuer the token names
    /// (read before verification only to choose; the verification checks it again).
    fn pick(&self, token: &str, found_by: usize) -> Option<&Arc<Provider>> {
        if self.providers.len() == 1 {
            return self.providers.first();
        }
        let opaque = || self.providers.iter().find(|p| !p.is_jwt());
        let found = self.providers.get(found_by)?;
        let options = match &found.verification {
            Verification::Jwt { verifier, .. } => verifier.options().clone(),
            Verification::Introspection(_) => crate::ParseOptions::new(crate::AlgSet::all()),
        };
        let Ok(parsed) = token::parse(token, &options) else {
            // Not a JWT we could read: an opaque token, if the route takes them.
            return opaque();
        };
        let iss = parsed.claims.get("iss")?.as_str()?;
        self.providers
            .iter()
            .find(|p| p.is_jwt() && p.issuer() == iss)
    }
}

/// A claim of an introspected token, from what introspection established.
fn identity_claim(id: &TokenIdentity, claim: &str) -> Option<String> {
    match claim {
        "sub" => Some(id.subject.clone()),
        "iss" => Some(id.issuer.clone()),
        "scope" => Some(id.scopes.join(" ")),
        "client_id" => id.client_id.clone(),
        "jti" => id.jti.clone(),
        _ => None,
    }
}

impl Authenticate {
    /// The verdict for a presented API key: its identity, or 401.
    fn api_key(&self, ctx: &mut RequestContext, key: &[u8]) -> Verdict {
        let Some((_, keys)) = &self.api_keys else {
            return Verdict::Continue;
        };
        ctx.credential = Some(short_hex(&crate::apikeys::digest(key)).into());
        let Some(found) = keys.lookup(key) else {
            let mut i = Interruption::new(StatusCode::UNAUTHORIZED, "invalid_api_key")
                .with_rule("api_keys".to_string());
            i.headers.insert(
                WWW_AUTHENTICATE,
                self.challenge(Some(("invalid_token", "the API key is not valid")), None),
            );
            return Verdict::Deny(i);
        };
        if !has_scopes(&found.scopes, &self.scopes) {
            let needed = self.scopes.join(" ");
            return self.refuse(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                Some("api_keys"),
                self.challenge(
                    Some(("insufficient_scope", "the key lacks a required scope")),
                    Some(&needed),
                ),
            );
        }
        ctx.record(Decision {
            layer: LAYER,
            outcome: Outcome::Allow,
            reason: Cow::Borrowed("authenticated"),
            rule_id: Some(Cow::Borrowed("api_keys")),
        });
        ctx.identity = Some(Identity {
            subject: found.subject.clone(),
            issuer: "api_key".into(),
            provider: "api_keys".into(),
            scopes: found.scopes.clone(),
            roles: Vec::new(),
            groups: Vec::new(),
            claims: api_key_claims(found),
            client_id: None,
            tier: found.tier.clone(),
            expires_at: None,
        });
        Verdict::Continue
    }
}

/// The claims of an API key's identity: `sub`, `scope` and, when it has one, `tier`.
fn api_key_claims(key: &crate::apikeys::ApiKey) -> rampart_core::Claims {
    use rampart_core::ClaimValue;
    let mut claims = std::collections::BTreeMap::new();
    claims.insert("sub".to_owned(), ClaimValue::String(key.subject.clone()));
    claims.insert("scope".to_owned(), ClaimValue::String(key.scopes.join(" ")));
    if let Some(tier) = &key.tier {
        claims.insert("tier".to_owned(), ClaimValue::String(tier.clone()));
    }
    Arc::new(claims)
}

/// The token of an `Authorization: Bearer` header, if there is one.
fn bearer(head: &Parts) -> Result<Option<&str>, &'static str> {
    let mut values = head.headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("Authorization header repeated");
    }
    let Ok(value) = value.to_str() else {
        return Err("malformed Authorization header");
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        // Another scheme without parameters (`Basic`): not ours.
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim_start_matches(' ');
    // b64token (RFC 6750 §2.1): letters, digits, -._~+/ and trailing '='.
    let ok = !token.is_empty()
        && token
            .trim_end_matches('=')
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if ok {
        Ok(Some(token))
    } else {
        Err("malformed bearer token")
    }
}

fn cookie<'r>(head: &'r Parts, name: &str) -> Option<&'r str> {
    head.headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

fn query<'r>(head: &'r Parts, name: &str) -> Option<&'r str> {
    head.uri
        .query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Removes every `name=...` parameter from `uri`'s query.
fn strip_query_param(uri: &mut rampart_core::http_reexport::Uri, name: &str) {
    use rampart_core::http_reexport::Uri;
    use rampart_core::http_reexport::uri::PathAndQuery;
    let Some(query) = uri.query() else {
        return;
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
        .collect();
    let pq = if kept.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = PathAndQuery::from_maybe_shared(pq).ok();
    if let Ok(stripped) = Uri::from_parts(parts) {
        *uri = stripped;
    }
}

fn has_scopes(granted: &[String], needed: &[String]) -> bool {
    needed.iter().all(|n| granted.iter().any(|g| g == n))
}

#[async_trait]
impl rampart_core::Defense for Authenticate {
    fn name(&self) -> &'static str {
        LAYER
    }

    async fn request_head(
        &self,
        ctx: &mut RequestContext,
        head: &mut Parts,
    ) -> Result<Verdict, DefenseError> {
        let api_key = match &self.api_keys {
            Some((header, _)) => {
                let mut values = head.headers.get_all(header).iter();
                match (values.next(), values.next()) {
                    (Some(v), None) => Some(v.as_bytes().to_vec()),
                    (Some(_), Some(_)) => {
                        return Ok(self.refuse(
                            StatusCode::BAD_REQUEST,
                            "invalid_request",
                            None,
                            self.challenge(
                                Some(("invalid_request", "API key header repeated")),
                                None,
                            ),
                        ));
                    }
                    (None, _) => None,
                }
            }
            None => None,
        };
        let found = self.find(head);
        if let Some(key) = api_key {
            for h in &self.strip {
                head.headers.remove(h);
            }
            if matches!(found, Found::One(..)) {
                return Ok(self.refuse(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    None,
                    self.challenge(
                        Some(("invalid_request", "credentials in more than one place")),
                        None,
                    ),
                ));
            }
            return Ok(self.api_key(ctx, &key));
        }
        let (token, found_by) = match found {
            Found::One(t, i) => (t, i),
            Found::Invalid(why) => {
                return Ok(self.refuse(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    None,
                    self.challenge(Some(("invalid_request", why)), None),
                ));
            }
            Found::None if self.optional => {
                for h in &self.strip {
                    head.headers.remove(h);
                }
                return Ok(Verdict::Continue);
            }
            Found::None => {
                return Ok(self.refuse(
                    StatusCode::UNAUTHORIZED,
                    "missing_token",
                    None,
                    self.challenge(None, None),
                ));
            }
        };
        for h in &self.strip {
            head.headers.remove(h);
        }
        // A token in the query string is a credential for the gateway: it does not go
        // upstream (where it would end up in access logs).
        if let Some(TokenFrom::Query(name)) = self.providers.get(found_by).map(|p| &p.token_from) {
            strip_query_param(&mut head.uri, name);
        }
        let now = self.now();
        let hash = token_hash(&token);
        ctx.credential = Some(short_hex(&hash).into());
        let cached = self
            .cache
            .inner
            .get(&hash)
            .filter(|e| e.valid_until > now)
            .filter(|e| self.providers.iter().any(|p| p.name == e.provider));
        let established = match cached {
            Some(e) => e,
            None => match self.establish(&token, found_by, now).await {
                Ok(e) => {
                    self.cache.inner.insert(hash, e.clone());
                    e
                }
                Err((Failure::Rejected(r), provider)) => {
                    return Ok(self.invalid(&r, provider.as_deref()));
                }
                Err((Failure::Unavailable(why), provider)) => {
                    let provider = provider.as_deref().unwrap_or("none");
                    return Err(DefenseError::new(
                        LAYER,
                        format!("provider {provider}: introspection failed: {why}"),
                    ));
                }
            },
        };
        if let Some(store) = &self.revocations {
            let facts = TokenFacts {
                issuer: &established.identity.issuer,
                subject: &established.identity.subject,
                jti: established.jti.as_deref(),
                issued_at: established.issued_at,
            };
            let revoked = store
                .is_revoked(facts, now)
                .await
                .map_err(|e| DefenseError::new(LAYER, format!("revocation store: {e}")))?;
            if revoked {
                return Ok(self.invalid(&Rejection::Revoked, Some(&established.provider)));
            }
        }
        if !has_scopes(&established.identity.scopes, &self.scopes) {
            let needed = self.scopes.join(" ");
            return Ok(self.refuse(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                Some(&established.provider),
                self.challenge(
                    Some(("insufficient_scope", "the token lacks a required scope")),
                    Some(&needed),
                ),
            ));
        }
        for (header, value) in &established.forwarded {
            head.headers.insert(header.clone(), value.clone());
        }
        ctx.record(Decision {
            layer: LAYER,
            outcome: Outcome::Allow,
            reason: Cow::Borrowed("authenticated"),
            rule_id: Some(Cow::Owned(established.provider.to_string())),
        });
        ctx.identity = Some(established.identity.clone());
        Ok(Verdict::Continue)
    }
}
