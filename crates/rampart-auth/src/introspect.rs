//! Opaque access tokens, checked with the identity provider by OAuth 2.0 Token Introspection
//! (RFC 7662).
//!
//! An [`Introspector`] POSTs the token to the provider's introspection endpoint, authenticated
//! as an OAuth client ([`ClientAuth`]), and turns the answer into the same [`TokenIdentity`] a
//! JWT gives, through the same [`ClaimsPolicy`] (issuer, audience, `exp`/`nbf`/`iat` with
//! leeway, `sub`, scopes, roles, client id, `jti`).
//!
//! What it guarantees:
//!
//! - **Fail closed.** A transport error, a timeout, a status other than 200, a body that is
//!   not one JSON object (or holds a duplicate member name), a body over the size limit, or an
//!   `active` member that is missing or not a boolean is [`IntrospectRejection::Failed`]
//!   (reason `introspection_failed`): the token is not known to be good, so the caller must
//!   not admit it. The caller decides how to answer (a 503 through the route's failure mode,
//!   for instance), never whether to admit.
//! - **`active: true` is not enough.** The answer's claims go through the claim policy: an
//!   `exp` in the past or an `nbf` in the future (beyond the leeway) is refused even when the
//!   provider says active, dates must be JSON numbers, `sub` a non-empty string, `iss` (when
//!   the answer has one, which RFC 7662 makes optional) the configured issuer, and `aud` one
//!   of the configured audiences exactly as for a JWT.
//! - **A cache that never outlives the token.** Answers are cached by the token's SHA-256
//!   ([`token_hash`]; the token itself is neither stored nor logged). An identity is kept
//!   until the token's `exp` or [`IntrospectionSettings::cache_max_ttl`] from now, whichever
//!   comes first, checked against the caller's `now` on every hit as well as by the cache's
//!   own timer. Refusals (`active: false`, or claims the policy refuses) are kept for
//!   [`NEGATIVE_TTL`], so a flood of one bad token costs the provider one request per 10 s.
//!   Failures are never cached: the next request asks again.
//! - **One request per token at a time.** Concurrent introspections of the same token share
//!   one request (single-flight); different tokens proceed in parallel. The request runs in its
//!   own task, so a caller that gives up does not cancel it for the others, and it is bounded
//!   by [`IntrospectionSettings::timeout`], so every waiter is too.
//! - **Bounded, authenticated requests.** `https` only (plain `http` to loopback addresses for
//!   tests and demos), the compiled-in Mozilla roots plus an optional private CA (the same
//!   client setup as [`jwks`](crate::jwks)), no redirects followed.
//!
//! The price of the cache is revocation latency: a token revoked at the provider stays
//! accepted here until its cache entry ends, at most `cache_max_ttl` (5 min by default).
//! Revocations made through Rampart itself are checked on every request by the caller.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, USER_AGENT};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::claims::{ClaimsPolicy, DEFAULT_LEEWAY, PolicyError, TokenIdentity};
use crate::json::{JsonError, parse_object};
use crate::jwks::{JwksError, check_url, error_chain, https_connector};
use crate::rejection::Rejection;
use crate::token::DEFAULT_MAX_TOKEN_BYTES;
use crate::verify::{short_hex, token_hash};

/// Default bound on one introspection request, connect to last body byte: 2 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default limit on an introspection answer: 64 KiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Default longest time an identity is cached: 5 minutes.
pub const DEFAULT_CACHE_MAX_TTL: Duration = Duration::from_secs(5 * 60);
/// Default number of cached answers: 100 000.
pub const DEFAULT_CACHE_CAPACITY: u64 = 100_000;
/// How long a refusal (`active: false`, or claims the policy refuses) is cached: 10 s. Long
/// enough that a flood of one bad token costs the provider one request per 10 s; short enough
/// that a token refused by mistake (a provider that had not yet replicated a new token)
/// recovers quickly. Never longer than [`IntrospectionSettings::cache_max_ttl`].
pub const NEGATIVE_TTL: Duration = Duration::from_secs(10);

/// How the gateway authenticates itself to the introspection endpoint as an OAuth client
/// (RFC 7662 §2.1 requires some authorization; RFC 6749 §2.3.1 defines these two).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`): `Authorization: Basic base64(id ":" secret)`,
    /// where id and secret are each `application/x-www-form-urlencoded` first (RFC 6749
    /// §2.3.1). The default: every server must support it, and the secret stays out of the
    /// request body.
    #[default]
    Basic,
    /// `client_id` and `client_secret` as form parameters (`client_secret_post`), for
    /// providers that do not accept Basic.
    Post,
}

/// How an [`Introspector`] is set up. [`IntrospectionSettings::new`] fills in the defaults;
/// each field says its default and why. Required scopes are not here: the defense checks them,
/// as it does for JWTs.
#[derive(Clone, PartialEq, Eq)]
pub struct IntrospectionSettings {
    /// The introspection endpoint: `https`, or `http` to a loopback address (tests, demos).
    /// A token sent in cleartext across a network could be stolen and replayed.
    pub url: String,
    /// The gateway's OAuth client id at the provider.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// How the client authenticates (default [`ClientAuth::Basic`]).
    pub auth: ClientAuth,
    /// Bound on each request, connect to last body byte (default 2 s). The request holds up
    /// the client's request on a cache miss; providers answer in milliseconds, and a provider
    /// slower than this is treated as down (fail closed) rather than stalling every request.
    pub timeout: Duration,
    /// Largest answer accepted (default 64 KiB: a claim set is a few hundred bytes; the limit
    /// keeps a broken or hostile endpoint from filling memory).
    pub max_response_bytes: usize,
    /// Longest time an identity is cached (default 5 min), also bounded by the token's `exp`.
    /// This is how long a token revoked at the provider can still be accepted here, traded
    /// against a request to the provider for every client request. Zero disables caching.
    pub cache_max_ttl: Duration,
    /// Most answers cached (default 100 000: a few hundred bytes each, tens of MB at most,
    /// enough for the active tokens of a large deployment).
    pub cache_capacity: u64,
    /// Extra trusted CA certificates, PEM (default none: the compiled-in Mozilla roots).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// The provider's issuer: the identity's issuer, and the required `iss` of an answer that
    /// carries one.
    pub issuer: String,
    /// Accepted audiences (default none). As for JWTs: when set, the answer's `aud` must name
    /// one of them; when empty, an answer with an `aud` is refused.
    pub audiences: Vec<String>,
    /// Clock-skew allowance for `exp`, `nbf` and `iat` (default 60 s, at most 300 s).
    pub leeway: Duration,
}

/// Why an [`Introspector`] could not be built: a configuration problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntrospectError {
    /// The URL does not parse or has no host.
    #[error("invalid introspection URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Plain `http` to a host that is not a loopback address.
    #[error("{url} is plain http to a host that is not loopback; use https")]
    InsecureUrl {
        /// The URL as given.
        url: String,
    },
    /// The extra CA PEM holds no usable certificate.
    #[error("extra CA certificates: {0}")]
    InvalidCa(String),
    /// The TLS client could not be configured.
    #[error("TLS client: {0}")]
    Tls(String),
    /// The client id or secret is unusable (empty).
    #[error("client credentials: {0}")]
    Credentials(&'static str),
    /// A limit is zero (`timeout`, `max_response_bytes`).
    #[error("{0} must not be zero")]
    Zero(&'static str),
    /// The issuer, an audience or the leeway is refused by the claim policy.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// Why an opaque token was not accepted. [`reason`](Self::reason) is the stable code for logs
/// and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntrospectRejection {
    /// The provider answered `{"active": false}`: unknown, expired, revoked, or not a token
    /// this client may introspect. Reason `inactive`.
    #[error("token not active")]
    Inactive,
    /// No usable answer (transport error, timeout, status, body). Reason
    /// `introspection_failed`. The token's standing is unknown: the caller must fail closed.
    /// The detail is for operators; it never contains the token.
    #[error("introspection failed: {0}")]
    Failed(String),
    /// The provider says active, but the claims are refused (expired, not yet valid, wrong
    /// issuer or audience, a claim of the wrong type), or the token was refused before asking
    /// (empty, too long). Reason: the rejection's.
    #[error(transparent)]
    Claims(Rejection),
}

/// Checks opaque tokens with the provider's introspection endpoint, with a cache and
/// single-flight. Cheap to clone (clones share the cache).
#[derive(Clone)]
pub struct Introspector {
    inner: Arc<Inner>,
}

impl IntrospectionSettings {
    /// Settings for the endpoint `url` of `issuer`'s provider, with these client credentials,
    /// and every other field at its default.
    pub fn new(
        url: impl Into<String>,
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> IntrospectionSettings {
        IntrospectionSettings {
            url: url.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            auth: ClientAuth::default(),
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            cache_max_ttl: DEFAULT_CACHE_MAX_TTL,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            extra_ca_pem: None,
            issuer: issuer.into(),
            audiences: Vec::new(),
            leeway: DEFAULT_LEEWAY,
        }
    }
}

impl fmt::Debug for IntrospectionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionSettings")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("cache_max_ttl", &self.cache_max_ttl)
            .field("cache_capacity", &self.cache_capacity)
            .field("extra_ca_pem", &self.extra_ca_pem.as_ref().map(Vec::len))
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("leeway", &self.leeway)
            .finish()
    }
}

impl IntrospectRejection {
    /// The reason codes of [`Inactive`](Self::Inactive) and [`Failed`](Self::Failed);
    /// [`Claims`](Self::Claims) uses [`Rejection::REASONS`].
    pub const REASONS: [&'static str; 2] = ["inactive", "introspection_failed"];

    /// The stable reason code: `inactive`, `introspection_failed`, or the claim rejection's
    /// ([`Rejection::reason`]: `expired`, `bad_audience`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            IntrospectRejection::Inactive => "inactive",
            IntrospectRejection::Failed(_) => "introspection_failed",
            IntrospectRejection::Claims(rejection) => rejection.reason(),
        }
    }

    /// Whether this is a failure to decide (the provider could not be asked) rather than a
    /// verdict on the token. Either way the token is not admitted.
    pub fn is_failure(&self) -> bool {
        matches!(self, IntrospectRejection::Failed(_))
    }
}

impl Introspector {
    /// An introspector for `settings`. Makes no request.
    ///
    /// # Errors
    ///
    /// A configuration problem: an invalid or insecure URL, empty credentials, a zero limit,
    /// unusable CA PEM, or an issuer, audience or leeway the claim policy refuses.
    pub fn new(settings: IntrospectionSettings) -> Result<Introspector, IntrospectError> {
        let endpoint = check_url(&settings.url, false).map_err(setup_error)?;
        if settings.client_id.is_empty() {
            return Err(IntrospectError::Credentials("the client id is empty"));
        }
        if settings.client_secret.is_empty() {
            return Err(IntrospectError::Credentials("the client secret is empty"));
        }
        if settings.timeout.is_zero() {
            return Err(IntrospectError::Zero("timeout"));
        }
        if settings.max_response_bytes == 0 {
            return Err(IntrospectError::Zero("max_response_bytes"));
        }
        let mut policy = ClaimsPolicy::new(settings.issuer.clone())?
            .with_leeway(settings.leeway)?
            // RFC 7662 §2.2 makes every member but `active` optional.
            .require_exp(false);
        if !settings.audiences.is_empty() {
            policy = policy.with_audiences(settings.audiences.iter().cloned())?;
        }
        let credentials = credentials(&settings)?;
        let connector = https_connector(settings.extra_ca_pem.as_deref()).map_err(setup_error)?;
        let cache = moka::sync::Cache::builder()
            .max_capacity(settings.cache_capacity)
            .expire_after(EntryExpiry)
            .build();
        Ok(Introspector {
            inner: Arc::new(Inner {
                endpoint,
                client: Client::builder(TokioExecutor::new()).build(connector),
                credentials,
                auth: settings.auth,
                timeout: settings.timeout,
                max_response_bytes: settings.max_response_bytes,
                cache_max_ttl: settings.cache_max_ttl.as_secs(),
                policy,
                cache,
                in_flight: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The identity `token` stands for at `now` (seconds since the Unix epoch), from the cache
    /// or from the provider. Concurrent calls for one token share one request.
    ///
    /// # Errors
    ///
    /// [`IntrospectRejection::Inactive`] or [`IntrospectRejection::Claims`] when the token is
    /// refused; [`IntrospectRejection::Failed`] when the provider gave no usable answer, which
    /// the caller must treat as a refusal (fail closed).
    pub async fn introspect(
        &self,
        token: &str,
        now: u64,
    ) -> Result<TokenIdentity, IntrospectRejection> {
        if token.is_empty() {
            return Err(IntrospectRejection::Claims(Rejection::Malformed(
                "empty token",
            )));
        }
        if token.len() > DEFAULT_MAX_TOKEN_BYTES {
            return Err(IntrospectRejection::Claims(Rejection::TooLarge {
                limit: DEFAULT_MAX_TOKEN_BYTES,
            }));
        }
        let key = token_hash(token);
        if let Some(hit) = self.inner.cached(&key, now) {
            return hit;
        }
        let mut done = {
            let mut in_flight = self.inner.in_flight();
            // Looked up again under the lock: a request that ended since the first look put
            // its answer in the cache before leaving the in-flight map.
            if let Some(hit) = self.inner.cached(&key, now) {
                return hit;
            }
            match in_flight.get(&key) {
                Some(done) => done.clone(),
                None => {
                    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                        return Err(IntrospectRejection::Failed(
                            "no Tokio runtime to run the request".to_owned(),
                        ));
                    };
                    let (sender, done) = watch::channel(None);
                    in_flight.insert(key, done.clone());
                    runtime.spawn(self.inner.clone().run(token.to_owned(), key, now, sender));
                    done
                }
            }
        };
        let outcome = match done.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            // The task ended without an answer (the runtime is shutting down).
            Err(_) => None,
        };
        match outcome {
            Some(outcome) => outcome.map(|identity| TokenIdentity::clone(&identity)),
            None => Err(IntrospectRejection::Failed(
                "the introspection request was abandoned".to_owned(),
            )),
        }
    }

    /// The endpoint, as parsed.
    pub fn endpoint(&self) -> &Uri {
        &self.inner.endpoint
    }

    /// The number of cached answers (approximate: expired entries leave lazily).
    pub fn cached_entries(&self) -> u64 {
        self.inner.cache.entry_count()
    }
}

impl fmt::Debug for Introspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspector")
            .field("endpoint", &self.inner.endpoint)
            .field("auth", &self.inner.auth)
            .field("issuer", &self.inner.policy.issuer())
            .field("cached", &self.inner.cache.entry_count())
            .finish_non_exhaustive()
    }
}

// ---- internals ---------------------------------------------------------------------------------

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The answer for one token, as shared between the waiters of one request and cached.
type Outcome = Result<Arc<TokenIdentity>, IntrospectRejection>;

struct Inner {
    endpoint: Uri,
    client: HttpClient,
    credentials: Credentials,
    auth: ClientAuth,
    timeout: Duration,
    max_response_bytes: usize,
    /// In seconds: the cache works in the caller's whole seconds.
    cache_max_ttl: u64,
    policy: ClaimsPolicy,
    cache: moka::sync::Cache<[u8; 32], Entry>,
    /// Requests running, by token hash; each receiver turns `Some` when its request ends.
    in_flight: Mutex<HashMap<[u8; 32], watch::Receiver<Option<Outcome>>>>,
}

/// The client credentials, encoded once.
enum Credentials {
    /// The `Authorization` header value.
    Header(HeaderValue),
    /// `&client_id=...&client_secret=...`, appended to the form.
    Form(String),
}

#[derive(Clone)]
struct Entry {
    outcome: Outcome,
    /// Usable while the caller's `now` is before this (seconds since the Unix epoch).
    until: u64,
    /// The cache's own timer for the entry, from insertion (`until - now` then).
    ttl: Duration,
}

/// Gives each entry its own lifetime.
struct EntryExpiry;

impl moka::Expiry<[u8; 32], Entry> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        entry: &Entry,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Removes a request from the in-flight map when it ends, however it ends (a task aborted by a
/// runtime shutdown included), so the next caller starts a new one.
struct InFlight<'a> {
    inner: &'a Inner,
    key: [u8; 32],
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.inner.in_flight().remove(&self.key);
    }
}

impl Inner {
    fn in_flight(&self) -> MutexGuard<'_, HashMap<[u8; 32], watch::Receiver<Option<Outcome>>>> {
        // Plain data changed in single statements: a poisoned lock still holds a usable map.
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached answer for `key`, if one is still good at `now`.
    fn cached(
        &self,
        key: &[u8; 32],
        now: u64,
    ) -> Option<Result<TokenIdentity, IntrospectRejection>> {
        let entry = self.cache.get(key)?;
        if now >= entry.until {
            // The caller's clock says it is over, whatever the cache's timer says.
            self.cache.invalidate(key);
            return None;
        }
        Some(
            entry
                .outcome
                .map(|identity| TokenIdentity::clone(&identity)),
        )
    }

    /// One request, in its own task: asks, caches what may be cached, then wakes the waiters.
    async fn run(
        self: Arc<Self>,
        token: String,
        key: [u8; 32],
        now: u64,
        done: watch::Sender<Option<Outcome>>,
    ) {
        let in_flight = InFlight { inner: &self, key };
        let outcome = self.check(&token, now).await;
        drop(token);
        match &outcome {
            Ok(identity) => tracing::debug!(
                endpoint = %self.endpoint,
                token = %short_hex(&key),
                sub = %identity.subject,
                "token introspected: active"
            ),
            Err(IntrospectRejection::Failed(error)) => tracing::warn!(
                endpoint = %self.endpoint,
                token = %short_hex(&key),
                error = %error,
                "token introspection failed; the token is refused"
            ),
            Err(rejection) => tracing::debug!(
                endpoint = %self.endpoint,
                token = %short_hex(&key),
                reason = rejection.reason(),
                "token introspected: refused"
            ),
        }
        self.remember(key, &outcome, now);
        // Out of the map only once the answer is cached (see `introspect`).
        drop(in_flight);
        done.send_replace(Some(outcome));
    }

    /// Asks the provider about `token` and applies the claim policy to the answer.
    async fn check(&self, token: &str, now: u64) -> Outcome {
        let answer = tokio::time::timeout(self.timeout, self.ask(token))
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))
            .and_then(|answer| answer)
            .map_err(IntrospectRejection::Failed)?;
        match answer.get("active") {
            Some(Value::Bool(true)) => self
                .identity(answer, now)
                .map(Arc::new)
                .map_err(IntrospectRejection::Claims),
            Some(Value::Bool(false)) => Err(IntrospectRejection::Inactive),
            Some(_) => Err(IntrospectRejection::Failed(
                "active is not a boolean".to_owned(),
            )),
            None => Err(IntrospectRejection::Failed(
                "the answer has no active member".to_owned(),
            )),
        }
    }

    /// The identity in an active answer: the claim policy, with the configured issuer standing
    /// in for an absent `iss`.
    fn identity(
        &self,
        mut claims: Map<String, Value>,
        now: u64,
    ) -> Result<TokenIdentity, Rejection> {
        if !claims.contains_key("iss") {
            claims.insert("iss".to_owned(), Value::from(self.policy.issuer()));
        }
        self.policy.check(&Map::new(), &claims, now)
    }

    /// The exchange: POST the form, status 200, a JSON object within the size limit.
    async fn ask(&self, token: &str) -> Result<Map<String, Value>, String> {
        let limit = self.max_response_bytes;
        let mut form = String::with_capacity(token.len() + 64);
        form.push_str("token=");
        form_encode(&mut form, token);
        // A hint the provider may use to find the token faster (RFC 7662 §2.1).
        form.push_str("&token_type_hint=access_token");
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.endpoint.clone();
        let headers = request.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static("rampart"));
        match &self.credentials {
            Credentials::Header(value) => {
                headers.insert(AUTHORIZATION, value.clone());
            }
            Credentials::Form(params) => form.push_str(params),
        }
        *request.body_mut() = Full::new(Bytes::from(form));

        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| error_chain(&e))?;
        if response.status() != StatusCode::OK {
            return Err(format!("status {}", response.status().as_u16()));
        }
        let too_large = || format!("answer larger than {limit} bytes");
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    too_large()
                } else {
                    error_chain(&*e)
                }
            })?
            .to_bytes();
        parse_object(&body).map_err(|e| {
            match e {
                JsonError::Syntax => "the answer is not JSON",
                JsonError::DuplicateMember => "duplicate member name in the answer",
                JsonError::NotAnObject => "the answer is not a JSON object",
            }
            .to_owned()
        })
    }

    /// Caches `outcome` if it may be: an identity until the token's `exp` or the maximum TTL,
    /// a refusal for [`NEGATIVE_TTL`] (within the maximum TTL), a failure never.
    fn remember(&self, key: [u8; 32], outcome: &Outcome, now: u64) {
        let horizon = now.saturating_add(self.cache_max_ttl);
        let until = match outcome {
            Ok(identity) => identity.expires_at.map_or(horizon, |exp| exp.min(horizon)),
            Err(IntrospectRejection::Inactive | IntrospectRejection::Claims(_)) => {
                now.saturating_add(NEGATIVE_TTL.as_secs()).min(horizon)
            }
            Err(IntrospectRejection::Failed(_)) => return,
        };
        if until <= now {
            return;
        }
        let entry = Entry {
            outcome: outcome.clone(),
            until,
            ttl: Duration::from_secs(until - now),
        };
        self.cache.insert(key, entry);
    }
}

/// The encoded client credentials for `settings.auth`.
fn credentials(settings: &IntrospectionSettings) -> Result<Credentials, IntrospectError> {
    let mut id = String::new();
    form_encode(&mut id, &settings.client_id);
    let mut secret = String::new();
    form_encode(&mut secret, &settings.client_secret);
    match settings.auth {
        ClientAuth::Basic => {
            let encoded = STANDARD.encode(format!("{id}:{secret}"));
            let mut value = HeaderValue::try_from(format!("Basic {encoded}"))
                .map_err(|_| IntrospectError::Credentials("not a valid header value"))?;
            value.set_sensitive(true);
            Ok(Credentials::Header(value))
        }
        ClientAuth::Post => Ok(Credentials::Form(format!(
            "&client_id={id}&client_secret={secret}"
        ))),
    }
}

/// Appends `value` encoded as `application/x-www-form-urlencoded` (the URL Standard's
/// serializer, which RFC 6749 Appendix B refers to): ASCII alphanumerics and `*-._` as they
/// are, space as `+`, every other byte of the UTF-8 as `%XX`.
fn form_encode(out: &mut String, value: &str) {
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => {
                // Writing to a String cannot fail.
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
}

/// The introspection-side names for the URL and TLS problems the shared helpers report.
fn setup_error(error: JwksError) -> IntrospectError {
    match error {
        JwksError::InvalidUrl { url, reason } => IntrospectError::InvalidUrl { url, reason },
        JwksError::InsecureUrl { url } => IntrospectError::InsecureUrl { url },
        JwksError::InvalidCa(reason) => IntrospectError::InvalidCa(reason),
        // `check_url` and `https_connector` return no other variant.
        other => IntrospectError::Tls(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn settings() -> IntrospectionSettings {
        IntrospectionSettings::new(
            "http://127.0.0.1:9/introspect",
            "https://idp.example",
            "rampart",
            "s3cret",
        )
    }

    #[test]
    fn form_encoding() {
        let mut out = String::new();
        form_encode(&mut out, "aZ09*-._ :/+%&=é");
        assert_eq!(out, "aZ09*-._+%3A%2F%2B%25%26%3D%C3%A9");
    }

    #[test]
    fn basic_credentials_are_form_encoded_then_base64() {
        let mut s = settings();
        s.client_id = "my client".to_owned();
        s.client_secret = "p:ss/é".to_owned();
        let Ok(Credentials::Header(value)) = credentials(&s) else {
            panic!("a header");
        };
        assert!(value.is_sensitive());
        let expected = format!("Basic {}", STANDARD.encode("my+client:p%3Ass%2F%C3%A9"));
        assert_eq!(value, expected.as_str());
        s.auth = ClientAuth::Post;
        let Ok(Credentials::Form(form)) = credentials(&s) else {
            panic!("a form");
        };
        assert_eq!(form, "&client_id=my+client&client_secret=p%3Ass%2F%C3%A9");
    }

    #[test]
    fn configuration_is_checked() {
        assert!(Introspector::new(settings()).is_ok());
        let refused = |edit: fn(&mut IntrospectionSettings)| {
            let mut s = settings();
            edit(&mut s);
            Introspector::new(s).err()
        };
        assert_eq!(
            refused(|s| s.url = "http://idp.example/introspect".to_owned()),
            Some(IntrospectError::InsecureUrl {
                url: "http://idp.example/introspect".to_owned()
            })
        );
        assert!(matches!(
            refused(|s| s.url = "ftp://idp.example/introspect".to_owned()),
            Some(IntrospectError::InvalidUrl { .. })
        ));
        assert!(matches!(
            refused(|s| s.client_id.clear()),
            Some(IntrospectError::Credentials(_))
        ));
        assert!(matches!(
            refused(|s| s.client_secret.clear()),
            Some(IntrospectError::Credentials(_))
        ));
        assert_eq!(
            refused(|s| s.timeout = Duration::ZERO),
            Some(IntrospectError::Zero("timeout"))
        );
        assert_eq!(
            refused(|s| s.max_response_bytes = 0),
            Some(IntrospectError::Zero("max_response_bytes"))
        );
        assert_eq!(
            refused(|s| s.issuer.clear()),
            Some(IntrospectError::Policy(PolicyError::EmptyIssuer))
        );
        assert_eq!(
            refused(|s| s.leeway = Duration::from_secs(301)),
            Some(IntrospectError::Policy(PolicyError::LeewayTooLong))
        );
        assert!(matches!(
            refused(|s| s.extra_ca_pem = Some(b"not a pem".to_vec())),
            Some(IntrospectError::InvalidCa(_))
        ));
        assert!(!format!("{:?}", settings()).contains("s3cret"));
    }

    #[test]
    fn reasons() {
        assert_eq!(IntrospectRejection::Inactive.reason(), "inactive");
        let failed = IntrospectRejection::Failed("x".to_owned());
        assert_eq!(failed.reason(), "introspection_failed");
        assert!(failed.is_failure());
        let claims = IntrospectRejection::Claims(Rejection::Expired);
        assert_eq!(claims.reason(), "expired");
        assert!(!claims.is_failure());
        assert_eq!(
            IntrospectRejection::REASONS,
            [IntrospectRejection::Inactive.reason(), failed.reason()]
        );
        // `inactive` is also the defense's `Rejection::Inactive`; a failure has no
        // counterpart there (it is not a verdict on the token).
        assert_eq!(Rejection::Inactive.reason(), "inactive");
        assert!(!Rejection::REASONS.contains(&failed.reason()));
    }

    #[tokio::test]
    async fn cache_lifetimes() {
        let Ok(introspector) = Introspector::new(settings()) else {
            panic!("valid settings");
        };
        let inner = &introspector.inner;
        let now = 1_000_000;
        let identity = |claims: Value| {
            let Value::Object(claims) = claims else {
                panic!("an object");
            };
            inner
                .identity(claims, now)
                .map(Arc::new)
                .map_err(IntrospectRejection::Claims)
        };

        // Until exp when it comes before the maximum TTL.
        let short = identity(json!({ "sub": "a", "exp": now + 30 }));
        inner.remember([1; 32], &short, now);
        assert!(inner.cached(&[1; 32], now + 29).is_some());
        assert!(inner.cached(&[1; 32], now + 30).is_none());
        // The maximum TTL otherwise, and without exp.
        let long = identity(json!({ "sub": "b", "exp": now + 3600 }));
        inner.remember([2; 32], &long, now);
        assert!(inner.cached(&[2; 32], now + 299).is_some());
        assert!(inner.cached(&[2; 32], now + 300).is_none());
        let forever = identity(json!({ "sub": "c" }));
        inner.remember([3; 32], &forever, now);
        assert!(inner.cached(&[3; 32], now + 299).is_some());
        // Within the leeway after exp: accepted, not cached.
        let late = identity(json!({ "sub": "d", "exp": now - 10 }));
        assert!(late.is_ok());
        inner.remember([4; 32], &late, now);
        assert!(inner.cached(&[4; 32], now).is_none());
        // Refusals for the negative TTL, failures never.
        inner.remember([5; 32], &Err(IntrospectRejection::Inactive), now);
        assert_eq!(
            inner.cached(&[5; 32], now + 9),
            Some(Err(IntrospectRejection::Inactive))
        );
        assert!(inner.cached(&[5; 32], now + 10).is_none());
        let expired = identity(json!({ "sub": "e", "exp": now - 61 }));
        assert_eq!(
            expired,
            Err(IntrospectRejection::Claims(Rejection::Expired))
        );
        let failed = Err(IntrospectRejection::Failed("down".to_owned()));
        inner.remember([6; 32], &failed, now);
        assert!(inner.cached(&[6; 32], now).is_none());
    }

    #[test]
    fn answers_checked_by_the_claim_policy() {
        let mut s = settings();
        s.audiences = vec!["api".to_owned()];
        let Ok(introspector) = Introspector::new(s) else {
            panic!("valid settings");
        };
        let inner = &introspector.inner;
        let check = |claims: Value| {
            let Value::Object(claims) = claims else {
                panic!("an object");
            };
            inner.identity(claims, 1_000)
        };
        let Ok(identity) = check(json!({
            "sub": "alice", "aud": ["x", "api"], "scope": "read  write", "client_id": "app",
            "exp": 2_000, "iat": 900, "jti": "j1",
        })) else {
            panic!("accepted");
        };
        assert_eq!(identity.issuer, "https://idp.example");
        assert_eq!(identity.subject, "alice");
        assert_eq!(identity.scopes, ["read", "write"]);
        assert_eq!(identity.client_id.as_deref(), Some("app"));
        assert_eq!(identity.jti.as_deref(), Some("j1"));
        assert_eq!(identity.expires_at, Some(2_000));
        assert_eq!(identity.issued_at, Some(900));

        let cases = [
            (
                json!({ "aud": "api" }),
                Rejection::MissingClaim("sub".into()),
            ),
            (
                json!({ "sub": "", "aud": "api" }),
                Rejection::BadClaimType("sub".into()),
            ),
            (json!({ "sub": "a" }), Rejection::MissingClaim("aud".into())),
            (
                json!({ "sub": "a", "aud": "other" }),
                Rejection::BadAudience,
            ),
            (
                json!({ "sub": "a", "aud": "api", "iss": "https://evil.example" }),
                Rejection::BadIssuer,
            ),
            (
                json!({ "sub": "a", "aud": "api", "exp": "2000" }),
                Rejection::BadClaimType("exp".into()),
            ),
            (
                json!({ "sub": "a", "aud": "api", "exp": 939 }),
                Rejection::Expired,
            ),
            (
                json!({ "sub": "a", "aud": "api", "nbf": 1_061 }),
                Rejection::NotYetValid,
            ),
            (
                json!({ "sub": "a", "aud": "api", "scope": ["read"] }),
                Rejection::BadClaimType("scope".into()),
            ),
        ];
        for (claims, expected) in cases {
            assert_eq!(check(claims.clone()), Err(expected), "{claims}");
        }
    }
}
