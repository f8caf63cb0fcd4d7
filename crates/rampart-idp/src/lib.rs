//! A demo and test OpenID Connect identity provider: discovery, JWKS, a token endpoint that
//! mints signed JWT access tokens, and RFC 7662 introspection, over real HTTP/1.1 (or
//! HTTPS).
//!
//! **This is not a production identity provider.** Its signing keys are generated when it
//! starts and live only in memory (a restart invalidates every token it issued), and
//! `/token` authenticates nobody: whoever can reach it gets a token for any subject with any
//! scopes. Bind it to loopback. It has two users: the token-validation tests (through
//! `rampart_test_support::idp`, a re-export of this crate) and `rampart demo`, which serves
//! it on `127.0.0.1:9100`. It answers like a real provider (content types,
//! `Cache-Control`, OAuth error bodies) rather than just enough for one test.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /.well-known/openid-configuration` | the discovery document: `issuer` (the base URL, `http://127.0.0.1:PORT`), `jwks_uri`, `token_endpoint`, `introspection_endpoint`, ... |
//! | `GET /jwks` | `{"keys": [...]}`, the published public keys, with `Cache-Control: public, max-age=N` ([`MockIdp::set_jwks_max_age`], 300 s by default) |
//! | `POST /token` | form `sub` (required), `scope`, `aud`, `ttl` (seconds), `kid` (a published key), `roles` and `groups` (space- or comma-separated, as arrays): `{"access_token": JWT, "token_type": "Bearer", "expires_in": N}`; no client or user authentication (anyone may mint) |
//! | `POST /introspect` | RFC 7662: HTTP Basic client authentication with the configured client id and secret (401 `invalid_client` otherwise), form `token`: `{"active": true, ...claims}` for a token this provider minted (and that has not expired) or registered as active, else `{"active": false}` |
//!
//! Minted tokens carry the header `{"alg", "typ": "at+jwt", "kid"}` (RFC 9068) and the
//! claims `iss`, `sub`, `aud` (when there is one), `scope` (when not empty), `client_id`,
//! `iat`, `exp` and `jti`. Form errors are 400 with `{"error": "invalid_request",
//! "error_description": ...}`; a form needs `Content-Type: application/x-www-form-urlencoded`
//! and each parameter at most once (RFC 6749 §3.2). Other paths are 404, other methods 405.
//!
//! Tests steer it from Rust: [`MockIdp::try_rotate`], [`MockIdp::add_key`],
//! [`MockIdp::set_down`] (503 to everything), [`MockIdp::set_delay`],
//! [`MockIdp::try_mint_with`] (any header and claims, any key, published or not),
//! [`MockIdp::register_opaque`], overrides of the served documents, and per-endpoint request
//! counters. A request is counted when its head arrives, before the delay and before the
//! down check, so a counter says how often a client *tried*.
//!
//! Nothing here panics: [`MockIdp::bind`] returns its error, and a key that fails to sign
//! makes `/token` answer 500 `server_error`. The feature `test-util` adds the one-line
//! conveniences tests use (`MockIdp::start`, `SigningKey::generate`, `MockIdp::token`,
//! `MockIdp::mint`, `MockIdp::rotate`, ...), which panic instead of returning an error; the
//! `rampart` binary does not enable it.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::keys::random_id;
pub use crate::keys::{KeyAlg, KeyError, SigningKey, sign_jwt};
pub use crate::tasks::TaskGroup;

mod keys;
mod server;
mod tasks;

/// Path of the discovery document (OpenID Connect Discovery 1.0 §4).
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Path of the JWKS.
pub const JWKS_PATH: &str = "/jwks";
/// Path of the token endpoint.
pub const TOKEN_PATH: &str = "/token";
/// Path of the introspection endpoint.
pub const INTROSPECTION_PATH: &str = "/introspect";

/// Minted and registered tokens kept for introspection before expired ones are pruned.
const PRUNE_ABOVE: usize = 10_000;

/// How a [`MockIdp`] is set up. `Default` gives an RS256 provider on `127.0.0.1:0` with
/// client `rampart` / `rampart-secret`, audience `rampart` and one-hour tokens.
#[derive(Debug, Clone)]
pub struct IdpConfig {
    /// Where to listen; port 0 picks a free one.
    pub bind: SocketAddr,
    /// Algorithm of the initial key and of the keys [`MockIdp::try_rotate`] makes.
    pub alg: KeyAlg,
    /// Client id for HTTP Basic authentication at `/introspect`; also the `client_id` claim
    /// of minted tokens.
    pub client_id: String,
    /// Client secret for `/introspect`.
    pub client_secret: String,
    /// `aud` of minted tokens when the request names none (`None`: no `aud` claim).
    pub audience: Option<String>,
    /// Lifetime of minted tokens when the request names none.
    pub default_ttl: Duration,
}

impl Default for IdpConfig {
    fn default() -> Self {
        IdpConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            alg: KeyAlg::Rs256,
            client_id: "rampart".to_owned(),
            client_secret: "rampart-secret".to_owned(),
            audience: Some("rampart".to_owned()),
            default_ttl: Duration::from_secs(3600),
        }
    }
}

/// A running identity provider. Dropping it aborts the server and its connections.
#[derive(Debug)]
pub struct MockIdp {
    /// The address it listens on.
    pub addr: SocketAddr,
    state: Arc<State>,
    tasks: TaskGroup,
}

impl MockIdp {
    /// Starts a provider with `config`, plain HTTP, or behind TLS with `tls` (its issuer and
    /// URLs are then `https://127.0.0.1:PORT`). Fails if it cannot bind `config.bind`, or
    /// (in practice never) if its first key cannot be generated.
    pub async fn bind(
        config: IdpConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<MockIdp> {
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let first_key = SigningKey::try_generate(config.alg).map_err(io::Error::other)?;
        let instance = random_id(9).map_err(io::Error::other)?;
        let tasks = TaskGroup::default();
        let state = Arc::new(State {
            base_url: format!("{scheme}://{addr}"),
            instance,
            keys: Mutex::new(KeyRing {
                current: first_key.clone(),
                published: vec![first_key],
            }),
            config,
            tokens: Mutex::new(HashMap::new()),
            next_jti: AtomicU64::new(1),
            down: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
            jwks_max_age: AtomicU64::new(300),
            jwks_override: Mutex::new(None),
            discovery_override: Mutex::new(None),
            discovery_fetches: AtomicUsize::new(0),
            jwks_fetches: AtomicUsize::new(0),
            token_requests: AtomicUsize::new(0),
            introspections: AtomicUsize::new(0),
            tasks: tasks.clone(),
        });
        let acceptor = tls.map(TlsAcceptor::from);
        tasks.spawn(server::accept_loop(listener, state.clone(), acceptor));
        Ok(MockIdp { addr, state, tasks })
    }

    // ---- addresses ---------------------------------------------------------------------------

    /// The issuer: `http://127.0.0.1:PORT` (`https://` behind TLS), no trailing slash.
    pub fn issuer(&self) -> &str {
        &self.state.base_url
    }

    /// `{issuer}/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("{}{DISCOVERY_PATH}", self.state.base_url)
    }

    /// `{issuer}/jwks`.
    pub fn jwks_url(&self) -> String {
        format!("{}{JWKS_PATH}", self.state.base_url)
    }

    /// `{issuer}/token`.
    pub fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.state.base_url)
    }

    /// `{issuer}/introspect`.
    pub fn introspection_url(&self) -> String {
        format!("{}{INTROSPECTION_PATH}", self.state.base_url)
    }

    /// The client id `/introspect` accepts.
    pub fn client_id(&self) -> &str {
        &self.state.config.client_id
    }

    /// The client secret `/introspect` accepts.
    pub fn client_secret(&self) -> &str {
        &self.state.config.client_secret
    }

    // ---- keys ----------------------------------------------------------------------------------

    /// The key that signs minted tokens.
    pub fn current_key(&self) -> SigningKey {
        self.state.keys().current.clone()
    }

    /// The `kid`s `/jwks` publishes, in order.
    pub fn published_kids(&self) -> Vec<String> {
        self.state
            .keys()
            .published
            .iter()
            .map(|k| k.kid().to_owned())
            .collect()
    }

    /// The JWKS document `/jwks` serves (ignoring [`set_jwks_override`](Self::set_jwks_override)).
    pub fn jwks(&self) -> Value {
        self.state.jwks()
    }

    /// Generates a new key (the configured algorithm, a new `kid`), publishes it and makes
    /// it the signing key. The previous keys stay published if `keep_old`, else only the new
    /// key is. Returns the new key.
    pub fn try_rotate(&self, keep_old: bool) -> Result<SigningKey, KeyError> {
        let key = SigningKey::try_generate(self.state.config.alg)?;
        let mut keys = self.state.keys();
        if !keep_old {
            keys.published.clear();
        }
        keys.published.push(key.clone());
        keys.current = key.clone();
        Ok(key)
    }

    /// Publishes `key` alongside the others without making it the signing key (mint with it
    /// through [`try_mint_with`](Self::try_mint_with) or `kid` at `/token`). A key with the
    /// same `kid` is replaced.
    pub fn add_key(&self, key: SigningKey) {
        let mut keys = self.state.keys();
        keys.published.retain(|k| k.kid() != key.kid());
        keys.published.push(key);
    }

    /// Stops publishing the key `kid`; it still signs if it is the current key. Returns
    /// whether it was published.
    pub fn remove_key(&self, kid: &str) -> bool {
        let mut keys = self.state.keys();
        let before = keys.published.len();
        keys.published.retain(|k| k.kid() != kid);
        keys.published.len() != before
    }

    // ---- tokens --------------------------------------------------------------------------------

    /// The claims `/token` would put in a token for `sub` and `scope` (space-separated; empty
    /// for none): `iss`, `sub`, `aud` (the configured audience), `scope`, `client_id`, `iat`
    /// (now), `exp` (now + default TTL) and a unique `jti`. A starting point for tests that
    /// tweak one claim.
    pub fn claims(&self, sub: &str, scope: &str) -> Value {
        self.state.claims(
            sub,
            scope,
            self.state.config.audience.as_deref(),
            self.state.config.default_ttl,
        )
    }

    /// Signs `claims` under `header`, both used exactly as given, with any `key` (published
    /// or not), and remembers the token for introspection. For negative tests: wrong `alg`,
    /// unknown `kid`, a key that is not published, odd `typ`.
    pub fn try_mint_with(
        &self,
        header: &Value,
        claims: &Value,
        key: &SigningKey,
    ) -> Result<String, KeyError> {
        let token = sign_jwt(key, header, claims)?;
        self.state.remember(&token, claims.clone(), true);
        Ok(token)
    }

    /// Makes `/introspect` answer for `token` (any string, typically an opaque one): with
    /// `active`, `{"active": true}` plus the members of `claims` (a JSON object; `exp`, if
    /// present, still makes it inactive once past); without, `{"active": false}`.
    /// Registering the same token again replaces the entry.
    pub fn register_opaque(&self, token: &str, claims: Value, active: bool) {
        self.state.remember(token, claims, active);
    }

    /// Forgets `token`, so introspection answers `{"active": false}` (revocation at the
    /// provider).
    pub fn revoke(&self, token: &str) {
        self.state.tokens().remove(token);
    }

    // ---- behaviour -----------------------------------------------------------------------------

    /// While `down`, every request is answered 503 (`Retry-After: 1`).
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Waits `delay` before answering each request (zero: answer at once).
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// The `max-age` of `/jwks` answers, in seconds (300 by default).
    pub fn set_jwks_max_age(&self, seconds: u64) {
        self.state.jwks_max_age.store(seconds, Ordering::SeqCst);
    }

    /// Serves `body` (as `application/json`) at `/jwks` instead of the key set; `None`
    /// restores it. For oversized or malformed key sets.
    pub fn set_jwks_override(&self, body: Option<Vec<u8>>) {
        *lock(&self.state.jwks_override) = body.map(Bytes::from);
    }

    /// The discovery document as served by default.
    pub fn discovery_document(&self) -> Value {
        self.state.discovery()
    }

    /// Serves `document` at the discovery path instead of the real one; `None` restores it.
    /// For an announced `issuer` that does not match, or a `jwks_uri` elsewhere.
    pub fn set_discovery_override(&self, document: Option<Value>) {
        *lock(&self.state.discovery_override) = document;
    }

    // ---- counters ------------------------------------------------------------------------------

    /// Requests received for the discovery document (any method, down or not).
    pub fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }

    /// Requests received for `/jwks` (any method, down or not).
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Requests received for `/token`.
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    /// Requests received for `/introspect`, whether or not the client authenticated.
    pub fn introspections(&self) -> usize {
        self.state.introspections.load(Ordering::SeqCst)
    }
}

/// The conveniences tests use: each is a fallible function above with the error turned into
/// a panic, so a test reads as one line.
#[cfg(any(test, feature = "test-util"))]
impl MockIdp {
    /// Starts an RS256 provider with the default [`IdpConfig`] on `127.0.0.1:0`, plain
    /// HTTP. Panics if it cannot bind.
    pub async fn start() -> MockIdp {
        Self::start_with(IdpConfig::default()).await
    }

    /// Starts a provider with the default config but keys for `alg`. Panics if it cannot
    /// bind.
    pub async fn start_alg(alg: KeyAlg) -> MockIdp {
        Self::start_with(IdpConfig {
            alg,
            ..IdpConfig::default()
        })
        .await
    }

    /// Starts a provider with `config`, plain HTTP. Panics if it cannot bind.
    pub async fn start_with(config: IdpConfig) -> MockIdp {
        or_panic(Self::bind(config, None).await, "bind the identity provider")
    }

    /// Starts a provider with `config` behind TLS; its issuer and URLs are then
    /// `https://127.0.0.1:PORT`. Panics if it cannot bind.
    pub async fn start_tls(config: IdpConfig, tls: Arc<rustls::ServerConfig>) -> MockIdp {
        or_panic(
            Self::bind(config, Some(tls)).await,
            "bind the identity provider",
        )
    }

    /// [`try_rotate`](Self::try_rotate), panicking on failure.
    pub fn rotate(&self, keep_old: bool) -> SigningKey {
        or_panic(self.try_rotate(keep_old), "rotate the signing key")
    }

    /// A token for `sub` with `scope`, signed by the current key, like `/token` mints it.
    pub fn token(&self, sub: &str, scope: &str) -> String {
        self.mint(&self.claims(sub, scope))
    }

    /// Signs `claims` (used as given) with the current key under the header
    /// `{"alg", "typ": "at+jwt", "kid"}`, and remembers the token for introspection.
    pub fn mint(&self, claims: &Value) -> String {
        let key = self.current_key();
        self.mint_with(&default_header(&key), claims, &key)
    }

    /// [`try_mint_with`](Self::try_mint_with), panicking on failure.
    pub fn mint_with(&self, header: &Value, claims: &Value, key: &SigningKey) -> String {
        or_panic(self.try_mint_with(header, claims, key), "sign a token")
    }
}

/// The conveniences tests use, panicking where the functions they wrap return an error.
#[cfg(any(test, feature = "test-util"))]
impl SigningKey {
    /// [`try_generate`](Self::try_generate), panicking on failure.
    pub fn generate(alg: KeyAlg) -> SigningKey {
        or_panic(SigningKey::try_generate(alg), "generate a key")
    }

    /// [`try_generate_with_kid`](Self::try_generate_with_kid), panicking on failure.
    pub fn generate_with_kid(alg: KeyAlg, kid: &str) -> SigningKey {
        or_panic(
            SigningKey::try_generate_with_kid(alg, kid),
            "generate a key",
        )
    }
}

impl Drop for MockIdp {
    fn drop(&mut self) {
        self.tasks.shutdown();
    }
}

// ---- state -------------------------------------------------------------------------------------

#[derive(Debug)]
pub(crate) struct State {
    base_url: String,
    /// A random id of this provider, the prefix of the `jti`s it mints.
    instance: String,
    config: IdpConfig,
    keys: Mutex<KeyRing>,
    tokens: Mutex<HashMap<String, Registered>>,
    next_jti: AtomicU64,
    down: AtomicBool,
    delay_ms: AtomicU64,
    jwks_max_age: AtomicU64,
    jwks_override: Mutex<Option<Bytes>>,
    discovery_override: Mutex<Option<Value>>,
    discovery_fetches: AtomicUsize,
    jwks_fetches: AtomicUsize,
    token_requests: AtomicUsize,
    introspections: AtomicUsize,
    tasks: TaskGroup,
}

#[derive(Debug)]
struct KeyRing {
    current: SigningKey,
    published: Vec<SigningKey>,
}

#[derive(Debug)]
struct Registered {
    claims: Value,
    active: bool,
}

/// Locks `mutex`, ignoring poisoning (a panicking test thread must not wedge the server).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    pub(crate) fn keys(&self) -> MutexGuard<'_, KeyRing> {
        lock(&self.keys)
    }

    pub(crate) fn tokens(&self) -> MutexGuard<'_, HashMap<String, Registered>> {
        lock(&self.tokens)
    }

    pub(crate) fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys()
            .published
            .iter()
            .map(SigningKey::public_jwk)
            .collect();
        json!({ "keys": keys })
    }

    pub(crate) fn discovery(&self) -> Value {
        let base = &self.base_url;
        json!({
            "issuer": base,
            "jwks_uri": format!("{base}{JWKS_PATH}"),
            "token_endpoint": format!("{base}{TOKEN_PATH}"),
            "introspection_endpoint": format!("{base}{INTROSPECTION_PATH}"),
            "response_types_supported": ["token"],
            "grant_types_supported": ["client_credentials"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.config.alg.name()],
            "token_endpoint_auth_methods_supported": ["none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
        })
    }

    pub(crate) fn claims(&self, sub: &str, scope: &str, aud: Option<&str>, ttl: Duration) -> Value {
        let now = unix_now();
        let mut claims = Map::new();
        claims.insert("iss".into(), Value::from(self.base_url.as_str()));
        claims.insert("sub".into(), Value::from(sub));
        if let Some(aud) = aud {
            claims.insert("aud".into(), Value::from(aud));
        }
        if !scope.is_empty() {
            claims.insert("scope".into(), Value::from(scope));
        }
        claims.insert(
            "client_id".into(),
            Value::from(self.config.client_id.as_str()),
        );
        claims.insert("iat".into(), Value::from(now));
        claims.insert("exp".into(), Value::from(now.saturating_add(ttl.as_secs())));
        // Unique without randomness (which could fail): this provider's id and a counter.
        let n = self.next_jti.fetch_add(1, Ordering::Relaxed);
        claims.insert("jti".into(), Value::from(format!("{}-{n}", self.instance)));
        Value::Object(claims)
    }

    pub(crate) fn remember(&self, token: &str, claims: Value, active: bool) {
        let mut tokens = self.tokens();
        if tokens.len() >= PRUNE_ABOVE {
            let now = unix_now();
            tokens.retain(|_, r| !is_expired(&r.claims, now));
        }
        tokens.insert(token.to_owned(), Registered { claims, active });
    }
}

pub(crate) fn default_header(key: &SigningKey) -> Value {
    json!({ "alg": key.alg().name(), "typ": "at+jwt", "kid": key.kid() })
}

pub(crate) fn is_expired(claims: &Value, now: u64) -> bool {
    claims
        .get("exp")
        .and_then(Value::as_f64)
        .is_some_and(|exp| exp <= now as f64)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unwraps the result of a `test-util` convenience.
#[cfg(any(test, feature = "test-util"))]
#[track_caller]
#[allow(clippy::panic)]
fn or_panic<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        // PANIC SAFETY: only the `test-util` conveniences come here, each documented as
        // panicking, and only tests enable that feature; what the provider serves (`bind`,
        // the endpoints) uses the fallible functions and never reaches this.
        Err(e) => panic!("{what}: {e}"),
    }
}

#[cfg(test)]
mod tests;
