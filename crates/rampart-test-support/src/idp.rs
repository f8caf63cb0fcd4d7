//! A mock OpenID Connect identity provider: discovery, JWKS, a token endpoint that mints
//! signed JWT access tokens, and RFC 7662 introspection, over real HTTP/1.1 on `127.0.0.1`.
//!
//! It is what the token-validation tests run against, and what `rampart demo` serves as its
//! demo identity provider, so it answers like a real one (content types, `Cache-Control`,
//! OAuth error bodies) rather than just enough for one test.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /.well-known/openid-configuration` | the discovery document: `issuer` (the base URL, `http://127.0.0.1:PORT`), `jwks_uri`, `token_endpoint`, `introspection_endpoint`, ... |
//! | `GET /jwks` | `{"keys": [...]}`, the published public keys, with `Cache-Control: public, max-age=N` ([`MockIdp::set_jwks_max_age`], 300 s by default) |
//! | `POST /token` | form `sub` (required), `scope`, `aud`, `ttl` (seconds), `kid` (a published key): `{"access_token": JWT, "token_type": "Bearer", "expires_in": N}`; no client authentication (anyone may mint: it is a mock) |
//! | `POST /introspect` | RFC 7662: HTTP Basic client authentication with the configured client id and secret (401 `invalid_client` otherwise), form `token`: `{"active": true, ...claims}` for a token this provider minted (and that has not expired) or registered as active, else `{"active": false}` |
//!
//! Minted tokens carry the header `{"alg", "typ": "at+jwt", "kid"}` (RFC 9068) and the
//! claims `iss`, `sub`, `aud` (when there is one), `scope` (when not empty), `client_id`,
//! `iat`, `exp` and `jti`. Form errors are 400 with `{"error": "invalid_request",
//! "error_description": ...}`; a form needs `Content-Type: application/x-www-form-urlencoded`
//! and each parameter at most once (RFC 6749 §3.2). Other paths are 404, other methods 405.
//!
//! Tests steer it from Rust: [`MockIdp::rotate`], [`MockIdp::add_key`],
//! [`MockIdp::set_down`] (503 to everything), [`MockIdp::set_delay`], [`MockIdp::mint`] and
//! [`MockIdp::mint_with`] (any header and claims, any key, published or not),
//! [`MockIdp::register_opaque`], overrides of the served documents, and per-endpoint request
//! counters. A request is counted when its head arrives, before the delay and before the
//! down check, so a counter says how often a client *tried*.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::header::{
    ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, PRAGMA, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::TaskGroup;

/// Path of the discovery document (OpenID Connect Discovery 1.0 §4).
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Path of the JWKS.
pub const JWKS_PATH: &str = "/jwks";
/// Path of the token endpoint.
pub const TOKEN_PATH: &str = "/token";
/// Path of the introspection endpoint.
pub const INTROSPECTION_PATH: &str = "/introspect";

/// Largest form body accepted by `/token` and `/introspect` (413 beyond).
const MAX_FORM_BYTES: usize = 64 * 1024;
/// Minted and registered tokens kept for introspection before expired ones are pruned.
const PRUNE_ABOVE: usize = 10_000;

/// The signature algorithm of a [`SigningKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit key.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519 (JOSE `EdDSA`, `crv` `Ed25519`).
    EdDsa,
}

impl KeyAlg {
    /// The JOSE `alg` name: `RS256`, `ES256` or `EdDSA`.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlg::Rs256 => "RS256",
            KeyAlg::Es256 => "ES256",
            KeyAlg::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A private signing key with its `kid`. Cheap to clone (the key material is shared).
#[derive(Clone)]
pub struct SigningKey {
    kid: Arc<str>,
    alg: KeyAlg,
    material: Arc<Material>,
}

enum Material {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl SigningKey {
    /// Generates a key for `alg` with a fresh random `kid`. An RSA 2048 key takes tens of
    /// milliseconds; EC and Ed25519 keys are instant.
    pub fn generate(alg: KeyAlg) -> SigningKey {
        Self::generate_with_kid(alg, &random_kid())
    }

    /// Generates a key for `alg` with the given `kid`.
    pub fn generate_with_kid(alg: KeyAlg, kid: &str) -> SigningKey {
        let material = match alg {
            KeyAlg::Rs256 => {
                Material::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).expect("generate RSA key"))
            }
            KeyAlg::Es256 => Material::Ec(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .expect("generate P-256 key"),
            ),
            KeyAlg::EdDsa => Material::Ed(Ed25519KeyPair::generate().expect("generate Ed25519")),
        };
        SigningKey {
            kid: kid.into(),
            alg,
            material: Arc::new(material),
        }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> KeyAlg {
        self.alg
    }

    /// The public key as a JWK (RFC 7517): `kty`, `kid`, `use: sig`, `alg`, and `n`/`e`
    /// (RSA), `crv`/`x`/`y` (EC) or `crv`/`x` (OKP), all base64url without padding.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match &*self.material {
            Material::Rsa(pair) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64url(public.modulus().big_endian_without_leading_zero()),
                    "e": b64url(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Material::Ec(pair) => {
                // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
                let point = pair.public_key().as_ref();
                assert_eq!(point.len(), 65, "uncompressed P-256 point");
                json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": b64url(&point[1..33]),
                    "y": b64url(&point[33..65]),
                })
            }
            Material::Ed(pair) => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": b64url(pair.public_key().as_ref()),
            }),
        };
        jwk["kid"] = Value::from(&*self.kid);
        jwk["use"] = Value::from("sig");
        jwk["alg"] = Value::from(self.alg.name());
        jwk
    }

    /// Signs `message` with this key's algorithm (RS256: PKCS#1 v1.5; ES256: the fixed-size
    /// `r || s` form JOSE uses; EdDSA: Ed25519).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &*self.material {
            Material::Rsa(pair) => {
                let mut signature = vec![0u8; pair.public_modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .expect("RSA signature");
                signature
            }
            Material::Ec(pair) => pair
                .sign(&SystemRandom::new(), message)
                .expect("ECDSA signature")
                .as_ref()
                .to_vec(),
            Material::Ed(pair) => pair.sign(message).as_ref().to_vec(),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Signs `claims` under `header` with `key` and returns the compact JWS
/// `b64url(header).b64url(claims).b64url(signature)`. The header is used exactly as given
/// (nothing is added or checked), so a test can put any `alg`, `kid` or `typ` in it.
pub fn sign_jwt(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(&signature))
}

/// How a [`MockIdp`] is set up. `Default` gives an RS256 provider on `127.0.0.1:0` with
/// client `rampart` / `rampart-secret`, audience `rampart` and one-hour tokens.
#[derive(Debug, Clone)]
pub struct IdpConfig {
    /// Where to listen; port 0 picks a free one.
    pub bind: SocketAddr,
    /// Algorithm of the initial key and of the keys [`MockIdp::rotate`] makes.
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

/// A running mock identity provider. Dropping it aborts the server and its connections.
#[derive(Debug)]
pub struct MockIdp {
    /// The address it listens on.
    pub addr: SocketAddr,
    state: Arc<State>,
    tasks: TaskGroup,
}

impl MockIdp {
    /// Starts an RS256 provider with the default [`IdpConfig`] on `127.0.0.1:0`, plain
    /// HTTP. Panics if it cannot bind.
    pub async fn start() -> MockIdp {
        Self::start_with(IdpConfig::default()).await
    }

    /// Starts a provider with the default config but keys for `alg`.
    pub async fn start_alg(alg: KeyAlg) -> MockIdp {
        Self::start_with(IdpConfig {
            alg,
            ..IdpConfig::default()
        })
        .await
    }

    /// Starts a provider with `config`, plain HTTP. Panics if it cannot bind.
    pub async fn start_with(config: IdpConfig) -> MockIdp {
        Self::bind(config, None).await.expect("bind mock IdP")
    }

    /// Starts a provider with `config` behind TLS (for instance
    /// [`TestPki::server_tls_config`](crate::pki::TestPki::server_tls_config)); its issuer
    /// and URLs are then `https://127.0.0.1:PORT`. Panics if it cannot bind.
    pub async fn start_tls(config: IdpConfig, tls: Arc<rustls::ServerConfig>) -> MockIdp {
        Self::bind(config, Some(tls)).await.expect("bind mock IdP")
    }

    /// Like the `start` functions but returns the bind error instead of panicking (for
    /// `rampart demo`, whose fixed port may be taken).
    pub async fn bind(
        config: IdpConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<MockIdp> {
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let first_key = SigningKey::generate(config.alg);
        let tasks = TaskGroup::default();
        let state = Arc::new(State {
            base_url: format!("{scheme}://{addr}"),
            keys: Mutex::new(KeyRing {
                current: first_key.clone(),
                published: vec![first_key],
            }),
            config,
            tokens: Mutex::new(HashMap::new()),
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
        tasks.spawn(accept_loop(listener, state.clone(), acceptor));
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
    pub fn rotate(&self, keep_old: bool) -> SigningKey {
        let key = SigningKey::generate(self.state.config.alg);
        let mut keys = self.state.keys();
        if !keep_old {
            keys.published.clear();
        }
        keys.published.push(key.clone());
        keys.current = key.clone();
        key
    }

    /// Publishes `key` alongside the others without making it the signing key (mint with it
    /// through [`mint_with`](Self::mint_with) or `kid` at `/token`). A key with the same
    /// `kid` is replaced.
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
    /// (now), `exp` (now + default TTL) and a random `jti`. A starting point for tests that
    /// tweak one claim.
    pub fn claims(&self, sub: &str, scope: &str) -> Value {
        self.state.claims(
            sub,
            scope,
            self.state.config.audience.as_deref(),
            self.state.config.default_ttl,
        )
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

    /// Signs `claims` under `header`, both used exactly as given, with any `key` (published
    /// or not), and remembers the token for introspection. For negative tests: wrong `alg`,
    /// unknown `kid`, a key that is not published, odd `typ`.
    pub fn mint_with(&self, header: &Value, claims: &Value, key: &SigningKey) -> String {
        let token = sign_jwt(key, header, claims);
        self.state.remember(&token, claims.clone(), true);
        token
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

impl Drop for MockIdp {
    fn drop(&mut self) {
        self.tasks.shutdown();
    }
}

// ---- state -------------------------------------------------------------------------------------

#[derive(Debug)]
struct State {
    base_url: String,
    config: IdpConfig,
    keys: Mutex<KeyRing>,
    tokens: Mutex<HashMap<String, Registered>>,
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
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    fn keys(&self) -> MutexGuard<'_, KeyRing> {
        lock(&self.keys)
    }

    fn tokens(&self) -> MutexGuard<'_, HashMap<String, Registered>> {
        lock(&self.tokens)
    }

    fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys()
            .published
            .iter()
            .map(SigningKey::public_jwk)
            .collect();
        json!({ "keys": keys })
    }

    fn discovery(&self) -> Value {
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

    fn claims(&self, sub: &str, scope: &str, aud: Option<&str>, ttl: Duration) -> Value {
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
        claims.insert("jti".into(), Value::from(random_id(16)));
        Value::Object(claims)
    }

    fn remember(&self, token: &str, claims: Value, active: bool) {
        let mut tokens = self.tokens();
        if tokens.len() >= PRUNE_ABOVE {
            let now = unix_now();
            tokens.retain(|_, r| !is_expired(&r.claims, now));
        }
        tokens.insert(token.to_owned(), Registered { claims, active });
    }
}

fn default_header(key: &SigningKey) -> Value {
    json!({ "alg": key.alg().name(), "typ": "at+jwt", "kid": key.kid() })
}

fn is_expired(claims: &Value, now: u64) -> bool {
    claims
        .get("exp")
        .and_then(Value::as_f64)
        .is_some_and(|exp| exp <= now as f64)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `len` random bytes, base64url.
fn random_id(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("system randomness");
    b64url(&bytes)
}

fn random_kid() -> String {
    format!("key-{}", random_id(6))
}

// ---- server ------------------------------------------------------------------------------------

async fn accept_loop(listener: TcpListener, state: Arc<State>, tls: Option<TlsAcceptor>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Typically EMFILE; back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (conn_state, tls) = (state.clone(), tls.clone());
        state.tasks.spawn(async move {
            match tls {
                None => serve(stream, conn_state).await,
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve(stream, conn_state).await;
                    }
                }
            }
        });
    }
}

async fn serve<IO>(io: IO, state: Arc<State>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(req, state.clone()));
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .await;
}

type Answer = Response<Full<Bytes>>;

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Result<Answer, Infallible> {
    let path = req.uri().path().to_owned();
    let counter = match path.as_str() {
        DISCOVERY_PATH => Some(&state.discovery_fetches),
        JWKS_PATH => Some(&state.jwks_fetches),
        TOKEN_PATH => Some(&state.token_requests),
        INTROSPECTION_PATH => Some(&state.introspections),
        _ => None,
    };
    if let Some(counter) = counter {
        counter.fetch_add(1, Ordering::SeqCst);
    }

    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if state.down.load(Ordering::SeqCst) {
        let mut answer = oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the identity provider is down",
        );
        answer
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return Ok(answer);
    }

    let method = req.method().clone();
    let answer = match (path.as_str(), method) {
        (DISCOVERY_PATH, Method::GET) => {
            let document = lock(&state.discovery_override)
                .clone()
                .unwrap_or_else(|| state.discovery());
            let mut answer = json_answer(StatusCode::OK, &document);
            answer.headers_mut().insert(
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            answer
        }
        (JWKS_PATH, Method::GET) => {
            let body = lock(&state.jwks_override)
                .clone()
                .unwrap_or_else(|| Bytes::from(state.jwks().to_string()));
            let mut answer = bytes_answer(StatusCode::OK, "application/json", body);
            let max_age = state.jwks_max_age.load(Ordering::SeqCst);
            answer.headers_mut().insert(
                CACHE_CONTROL,
                HeaderValue::from_str(&format!("public, max-age={max_age}"))
                    .expect("digits are a valid header value"),
            );
            answer
        }
        (TOKEN_PATH, Method::POST) => no_store(token_endpoint(req, &state).await),
        (INTROSPECTION_PATH, Method::POST) => no_store(introspection_endpoint(req, &state).await),
        (DISCOVERY_PATH | JWKS_PATH, _) => method_not_allowed("GET"),
        (TOKEN_PATH | INTROSPECTION_PATH, _) => method_not_allowed("POST"),
        _ => oauth_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    };
    Ok(answer)
}

async fn token_endpoint(req: Request<Incoming>, state: &State) -> Answer {
    let form = match read_form(req).await {
        Ok(form) => form,
        Err(answer) => return answer,
    };
    let Some(sub) = form.get("sub").filter(|s| !s.is_empty()) else {
        return invalid_request("the sub parameter is required");
    };
    let scope = form.get("scope").map_or("", String::as_str);
    let aud = match form.get("aud") {
        Some(aud) => Some(aud.as_str()),
        None => state.config.audience.as_deref(),
    };
    let ttl = match form.get("ttl") {
        None => state.config.default_ttl,
        Some(ttl) => match ttl.parse::<u64>() {
            Ok(seconds) if seconds > 0 => Duration::from_secs(seconds),
            _ => return invalid_request("ttl must be a positive number of seconds"),
        },
    };
    let key = {
        let keys = state.keys();
        match form.get("kid") {
            None => keys.current.clone(),
            Some(kid) => match keys.published.iter().find(|k| k.kid() == kid) {
                Some(key) => key.clone(),
                None => return invalid_request("kid names no published key"),
            },
        }
    };
    let claims = state.claims(sub, scope, aud, ttl);
    let token = sign_jwt(&key, &default_header(&key), &claims);
    state.remember(&token, claims, true);
    let mut body = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
    });
    if !scope.is_empty() {
        body["scope"] = Value::from(scope);
    }
    json_answer(StatusCode::OK, &body)
}

async fn introspection_endpoint(req: Request<Incoming>, state: &State) -> Answer {
    if !client_authenticated(&req, &state.config) {
        let mut answer = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "HTTP Basic client authentication required",
        );
        answer.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"mock-idp\""),
        );
        return answer;
    }
    let form = match read_form(req).await {
        Ok(form) => form,
        Err(answer) => return answer,
    };
    let Some(token) = form.get("token") else {
        return invalid_request("the token parameter is required");
    };
    let now = unix_now();
    let body = match state.tokens().get(token) {
        Some(entry) if entry.active && !is_expired(&entry.claims, now) => {
            let mut body = Map::new();
            body.insert("active".into(), Value::Bool(true));
            if let Value::Object(claims) = &entry.claims {
                for (name, value) in claims {
                    if name != "active" {
                        body.insert(name.clone(), value.clone());
                    }
                }
            }
            body.entry("token_type")
                .or_insert_with(|| Value::from("Bearer"));
            Value::Object(body)
        }
        _ => json!({ "active": false }),
    };
    json_answer(StatusCode::OK, &body)
}

/// Whether `req` carries `Authorization: Basic base64(client_id:client_secret)`.
fn client_authenticated(req: &Request<Incoming>, config: &IdpConfig) -> bool {
    let Some(value) = req.headers().get(AUTHORIZATION) else {
        return false;
    };
    let Some(encoded) = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, credentials)| credentials.trim())
    else {
        return false;
    };
    let Ok(decoded) = STANDARD.decode(encoded) else {
        return false;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return false;
    };
    decoded.split_once(':') == Some((config.client_id.as_str(), config.client_secret.as_str()))
}

/// Reads an `application/x-www-form-urlencoded` body of at most [`MAX_FORM_BYTES`] into a
/// map; an error is the answer to send.
async fn read_form(req: Request<Incoming>) -> Result<HashMap<String, String>, Answer> {
    let is_form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let body = match Limited::new(req.into_body(), MAX_FORM_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Err(oauth_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the form is too large",
            ));
        }
    };
    let mut form = HashMap::new();
    for (name, value) in form_urlencoded::parse(&body) {
        if form
            .insert(name.clone().into_owned(), value.into_owned())
            .is_some()
        {
            return Err(invalid_request(&format!(
                "the {name} parameter is repeated"
            )));
        }
    }
    Ok(form)
}

fn bytes_answer(status: StatusCode, content_type: &'static str, body: Bytes) -> Answer {
    let mut answer = Response::new(Full::new(body));
    *answer.status_mut() = status;
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    answer
}

fn json_answer(status: StatusCode, body: &Value) -> Answer {
    bytes_answer(status, "application/json", Bytes::from(body.to_string()))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Answer {
    json_answer(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

fn invalid_request(description: &str) -> Answer {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn method_not_allowed(allow: &'static str) -> Answer {
    let mut answer = oauth_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        "method not allowed",
    );
    answer
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    answer
}

/// Token and introspection answers must not be cached (RFC 6749 §5.1, RFC 7662 §4).
fn no_store(mut answer: Answer) -> Answer {
    let headers = answer.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    answer
}

#[cfg(test)]
mod tests;
