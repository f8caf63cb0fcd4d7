//! Keeping a provider's signing keys current: fetching its JWKS (directly or through OpenID
//! Connect discovery), refreshing it in the background, and refetching once, single-flight and
//! rate-limited, when a token names a `kid` the store does not know.
//!
//! This is the one module of the crate that does I/O (HTTP fetches); it does no file I/O.
//!
//! A [`KeyStore`] holds the provider's current [`KeySet`] in an [`ArcSwap`]: readers
//! ([`KeyStore::current`], the fast path of [`KeyStore::key_for`]) take a snapshot with one
//! atomic load and never wait for a fetch.
//!
//! What it guarantees:
//!
//! - **Fail closed.** Until a fetch succeeds the store holds no keys, and every `kid` is
//!   [`Lookup::Unknown`]. A failed fetch never replaces keys: the last good set stays in force
//!   while the provider is down (failures are counted in [`KeyStoreStats`] and logged).
//! - **One refetch for a new key.** A `kid` missing from the current set triggers one fetch,
//!   shared by every concurrent caller (single-flight); callers wait for it and look again.
//! - **A flood costs one fetch per cooldown.** No unknown-`kid` fetch starts within
//!   [`JwksOptions::refetch_cooldown`] of the start of the previous unknown-`kid` fetch (a
//!   scheduled refresh does not count, so a key rotated in just after one is found at once);
//!   unknown `kid`s in that window are answered at once. Random `kid`s sent by an attacker thus
//!   cost the identity provider at most one request per cooldown.
//! - **Bounded fetches.** Every request has a timeout and a body size limit, needs status 200
//!   (redirects are not followed), and goes to `https` (plain `http` only on loopback unless
//!   [`JwksOptions::allow_http`]).
//! - **Discovery is checked.** With [`KeySource::Discovery`], the document's `issuer` must equal
//!   the configured issuer exactly (OpenID Connect Discovery 1.0 §4.3) and its `jwks_uri` obeys
//!   the same scheme rule.
//! - **Background refresh** every [`JwksOptions::refresh_interval`], sooner when the JWKS answer
//!   asks for it with a shorter `Cache-Control: max-age` (never sooner than the cooldown, and a
//!   failed fetch is retried after the cooldown). The task stops when the store is dropped.
//!
//! Trust for `https`: the Mozilla root set compiled in through `webpki-roots`, plus the
//! certificates of [`JwksOptions::extra_ca_pem`] for a private CA. Compiled-in roots behave the
//! same on every host (including minimal containers without a CA bundle) and need no file to be
//! read here; an identity provider behind a private CA is configured with its CA explicitly.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_LENGTH, HeaderMap, HeaderValue, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::keys::KeySet;

/// Default bound on each HTTP request (connect, TLS, head and body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default limit on a discovery document or JWKS body.
pub const DEFAULT_MAX_BYTES: usize = 512 * 1024;
/// Default interval of the background refresh.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Default minimum time between the start of a fetch and an unknown-`kid` refetch.
pub const DEFAULT_REFETCH_COOLDOWN: Duration = Duration::from_secs(30);
/// The longest the background refresh ever waits, whatever the settings say.
pub const MAX_REFRESH_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
/// The shortest wait the background refresh ever schedules, whatever the settings say, so a
/// zero cooldown cannot make it spin.
const MIN_REFRESH_DELAY: Duration = Duration::from_millis(100);
/// The discovery document's path under the issuer (OpenID Connect Discovery 1.0 §4).
const WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// Where a provider's keys come from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The contents of a JWKS file. The caller reads the file (the binary, and the proxy when it
    /// compiles a new runtime on reload, as it does for PEM files), so this crate does no file
    /// I/O and a file that does not parse is a configuration error at compile time. These keys
    /// never change: there is no background refresh and no refetch.
    Inline(Vec<u8>),
    /// A JWKS URL.
    Url(String),
    /// The issuer URL; the JWKS URL is the `jwks_uri` of
    /// `{issuer}/.well-known/openid-configuration` (a trailing `/` of the issuer is removed
    /// before appending, as OpenID Connect Discovery 1.0 §4 says).
    Discovery(String),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Inline(bytes) => write!(f, "Inline({} bytes)", bytes.len()),
            KeySource::Url(url) => f.debug_tuple("Url").field(url).finish(),
            KeySource::Discovery(issuer) => f.debug_tuple("Discovery").field(issuer).finish(),
        }
    }
}

/// How a [`KeyStore`] fetches. Each field says its default and why.
#[derive(Clone, PartialEq, Eq)]
pub struct JwksOptions {
    /// Bound on each HTTP request, from connect to the last body byte (default 5 s: identity
    /// providers answer in well under a second; a token verification that triggered a
    /// refetch waits at most this long, twice with discovery).
    pub timeout: Duration,
    /// Largest discovery document or JWKS accepted (default 512 KiB: real key sets are a few
    /// KiB; the limit keeps a hostile or broken provider from filling memory).
    pub max_bytes: usize,
    /// Background refresh interval (default 5 min): how long a key removed at the provider
    /// (a compromised one) stays trusted here. A shorter `Cache-Control: max-age` on the JWKS
    /// answer wins, but never below `refetch_cooldown`; a longer one does not stretch it (the
    /// operator's interval bounds how long a withdrawn key is trusted).
    pub refresh_interval: Duration,
    /// Minimum time from the start of one fetch to an unknown-`kid` refetch (default 30 s:
    /// keys are published before they sign, so a legitimate new `kid` rarely waits; a flood of
    /// random `kid`s costs the provider one request per 30 s). Also the retry delay of the
    /// background refresh after a failure.
    pub refetch_cooldown: Duration,
    /// Extra trusted CA certificates, PEM (default none: the compiled-in Mozilla roots only).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Allow plain `http` to any host (default false: `http` only to loopback addresses and
    /// `localhost`, for tests and demos). Keys fetched over cleartext from elsewhere could be
    /// replaced by anyone on the path, which would let them mint tokens.
    pub allow_http: bool,
}

impl Default for JwksOptions {
    fn default() -> Self {
        JwksOptions {
            timeout: DEFAULT_TIMEOUT,
            max_bytes: DEFAULT_MAX_BYTES,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            refetch_cooldown: DEFAULT_REFETCH_COOLDOWN,
            extra_ca_pem: None,
            allow_http: false,
        }
    }
}

impl fmt::Debug for JwksOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksOptions")
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .field("refresh_interval", &self.refresh_interval)
            .field("refetch_cooldown", &self.refetch_cooldown)
            .field("extra_ca_pem", &self.extra_ca_pem.as_ref().map(Vec::len))
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// The answer of [`KeyStore::key_for`].
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The `kid` is in this key set (the snapshot that was current when it was found).
    Found(Arc<KeySet>),
    /// No key has this `kid`, even after a refetch (or no refetch was allowed: cooldown, or
    /// an inline source). Keys without a `kid` may still apply: the verifier asks
    /// [`KeySet::candidates`] of [`KeyStore::current`], which falls back to them.
    Unknown,
}

/// Counters and facts for metrics and health.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyStoreStats {
    /// Fetches that installed a new key set.
    pub fetches_ok: u64,
    /// Fetches that failed (the previous keys stayed in force).
    pub fetches_failed: u64,
    /// Unknown `kid`s answered without a refetch because of the cooldown.
    pub refetches_suppressed: u64,
    /// When the last successful fetch ended.
    pub last_success: Option<SystemTime>,
    /// Why the last fetch failed, if the last fetch failed.
    pub last_error: Option<FetchError>,
    /// Keys in the current set.
    pub keys: usize,
}

/// Why a [`KeyStore`] could not be built: a configuration problem, found before any fetch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The URL does not parse or has no host.
    #[error("invalid URL {url:?}: {reason}")]
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
    /// An inline JWKS does not parse.
    #[error("JWKS: {0}")]
    InvalidJwks(String),
    /// The TLS client could not be configured.
    #[error("TLS client: {0}")]
    Tls(String),
    /// A remote source needs a Tokio runtime for its background refresh.
    #[error("a JWKS URL or discovery needs a Tokio runtime")]
    NoRuntime,
}

/// Why a fetch failed. The store keeps its previous keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// No complete answer within the timeout.
    #[error("{url}: no answer within {timeout:?}")]
    Timeout {
        /// The URL fetched.
        url: String,
        /// The timeout in force.
        timeout: Duration,
    },
    /// Connecting, TLS or the exchange failed.
    #[error("{url}: {error}")]
    Request {
        /// The URL fetched.
        url: String,
        /// The error, with its causes.
        error: String,
    },
    /// The answer was not 200.
    #[error("{url}: status {status}")]
    Status {
        /// The URL fetched.
        url: String,
        /// The status received.
        status: u16,
    },
    /// The body was larger than the limit.
    #[error("{url}: body larger than {limit} bytes")]
    TooLarge {
        /// The URL fetched.
        url: String,
        /// The limit in force.
        limit: usize,
    },
    /// The discovery document is not JSON or lacks `issuer` or `jwks_uri` strings.
    #[error("{url}: invalid discovery document: {reason}")]
    InvalidDiscovery {
        /// The discovery URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The discovery document names another issuer (OpenID Connect Discovery 1.0 §4.3).
    #[error("discovery document announces issuer {found:?}, expected {expected:?}")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The issuer the document announces.
        found: String,
    },
    /// The discovery document's `jwks_uri` is not acceptable.
    #[error("discovery document's jwks_uri: {0}")]
    InvalidJwksUri(JwksError),
    /// The JWKS does not parse.
    #[error("{url}: invalid JWKS: {error}")]
    InvalidJwks {
        /// The JWKS URL.
        url: String,
        /// The parser's error.
        error: String,
    },
}

/// A provider's current keys, kept up to date. Not `Clone`: share it in an `Arc`. Dropping it
/// stops the background refresh (a fetch already running finishes on its own, bounded by its
/// timeout).
pub struct KeyStore {
    inner: Arc<Inner>,
    refresher: Option<JoinHandle<()>>,
}

impl KeyStore {
    /// Builds a store named `provider` (the name used in logs) for `source`.
    ///
    /// [`KeySource::Inline`] parses the keys now and never changes them. A remote source checks
    /// its URL and options, starts with no keys, and spawns the background task on the current
    /// Tokio runtime, which fetches at once and then refreshes; until that first fetch ends,
    /// [`key_for`](Self::key_for) waits for it, and if it fails every `kid` is unknown (fail
    /// closed) until a later fetch succeeds. Use [`start`](Self::start) to wait for the first
    /// fetch and learn its outcome.
    ///
    /// # Errors
    ///
    /// A configuration problem: an invalid or insecure URL, unusable CA PEM, an inline JWKS
    /// that does not parse, or no Tokio runtime for a remote source.
    pub fn new(
        provider: impl Into<String>,
        source: KeySource,
        options: JwksOptions,
    ) -> Result<KeyStore, JwksError> {
        let provider = provider.into();
        let remote = match source {
            KeySource::Inline(json) => {
                let keys = parse_key_set(&json).map_err(JwksError::InvalidJwks)?;
                return Ok(KeyStore {
                    inner: Arc::new(Inner::new(provider, None, options, keys)),
                    refresher: None,
                });
            }
            KeySource::Url(url) => Remote::Url(check_url(&url, options.allow_http)?),
            KeySource::Discovery(issuer) => {
                check_url(&issuer, options.allow_http)?;
                let discovery_url = format!("{}{WELL_KNOWN}", issuer.trim_end_matches('/'));
                Remote::Discovery {
                    url: check_url(&discovery_url, options.allow_http)?,
                    issuer,
                }
            }
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| JwksError::NoRuntime)?;
        let client = http_client(options.extra_ca_pem.as_deref())?;
        let inner = Arc::new(Inner::new(
            provider,
            Some(Fetcher { remote, client }),
            options,
            KeySet::default(),
        ));
        // Mark the first fetch as running before anyone can ask for a key, so early callers
        // wait for it instead of seeing an empty set.
        inner.mark_started();
        let refresher = runtime.spawn(refresh_loop(inner.clone()));
        Ok(KeyStore {
            inner,
            refresher: Some(refresher),
        })
    }

    /// [`new`](Self::new), then waits for the first fetch. The store is returned whether that
    /// fetch succeeded or not (with no keys if not: fail closed, and the background refresh
    /// keeps trying); its error, if any, comes alongside. Always `None` for an inline source.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub async fn start(
        provider: impl Into<String>,
        source: KeySource,
        options: JwksOptions,
    ) -> Result<(KeyStore, Option<FetchError>), JwksError> {
        let store = KeyStore::new(provider, source, options)?;
        let error = store.refresh().await.err();
        Ok((store, error))
    }

    /// The provider name given at construction.
    pub fn provider(&self) -> &str {
        &self.inner.provider
    }

    /// The current key set (one atomic load; never waits).
    pub fn current(&self) -> Arc<KeySet> {
        self.inner.keys.load_full()
    }

    /// The key set holding `kid`. When the current set has no such key, one refetch is made,
    /// shared with every concurrent caller, unless the previous fetch started less than the
    /// cooldown ago (then [`Lookup::Unknown`] at once). A fetch that is already running (the
    /// first one, a refresh) is waited for instead of answering unknown.
    pub async fn key_for(&self, kid: &str) -> Lookup {
        let current = self.current();
        if has_kid(&current, kid) {
            return Lookup::Found(current);
        }
        let Some(mut done) = self.inner.join_or_start(Cause::UnknownKid) else {
            return Lookup::Unknown;
        };
        // Err means the store is gone; there is nothing better to answer than the lookup.
        let _ = done.changed().await;
        let current = self.current();
        if has_kid(&current, kid) {
            Lookup::Found(current)
        } else {
            Lookup::Unknown
        }
    }

    /// Fetches now, ignoring the cooldown (or waits for the fetch already running) and returns
    /// the number of keys installed, or why the fetch failed. A no-op answering the key count
    /// for an inline source.
    ///
    /// # Errors
    ///
    /// The fetch's error; the previous keys stay in force.
    pub async fn refresh(&self) -> Result<usize, FetchError> {
        let Some(mut done) = self.inner.join_or_start(Cause::Refresh) else {
            return Ok(self.current().len());
        };
        let _ = done.changed().await;
        match &self.inner.state().last_outcome {
            Some(Err(error)) => Err(error.clone()),
            _ => Ok(self.current().len()),
        }
    }

    /// Counters and facts for metrics.
    pub fn stats(&self) -> KeyStoreStats {
        let state = self.inner.state();
        KeyStoreStats {
            fetches_ok: self.inner.fetches_ok.load(Ordering::Relaxed),
            fetches_failed: self.inner.fetches_failed.load(Ordering::Relaxed),
            refetches_suppressed: self.inner.suppressed.load(Ordering::Relaxed),
            last_success: state.last_success,
            last_error: match &state.last_outcome {
                Some(Err(error)) => Some(error.clone()),
                _ => None,
            },
            keys: self.current().len(),
        }
    }
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("provider", &self.inner.provider)
            .field("keys", &self.current().len())
            .finish_non_exhaustive()
    }
}

impl Drop for KeyStore {
    fn drop(&mut self) {
        if let Some(refresher) = &self.refresher {
            refresher.abort();
        }
    }
}

// ---- internals ---------------------------------------------------------------------------------

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

struct Inner {
    provider: String,
    /// `None` for an inline source.
    fetcher: Option<Fetcher>,
    options: JwksOptions,
    keys: ArcSwap<KeySet>,
    state: Mutex<FetchState>,
    /// Bumped after every fetch ends (keys installed first), waking its waiters.
    done: watch::Sender<u64>,
    fetches_ok: AtomicU64,
    fetches_failed: AtomicU64,
    suppressed: AtomicU64,
}

struct Fetcher {
    remote: Remote,
    client: HttpClient,
}

enum Remote {
    Url(Uri),
    Discovery { issuer: String, url: Uri },
}

#[derive(Default)]
struct FetchState {
    in_flight: bool,
    last_started: Option<Instant>,
    /// When the last fetch caused by an unknown `kid` started: the cooldown counts from it.
    last_on_demand: Option<Instant>,
    last_success: Option<SystemTime>,
    /// The number of keys installed, or the error, of the last fetch that ended.
    last_outcome: Option<Result<usize, FetchError>>,
    /// `max-age` of the last successful JWKS answer.
    max_age: Option<Duration>,
    /// The `jwks_uri` of the last good discovery document.
    discovered: Option<Uri>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// A token named a `kid` not in the current set: subject to the cooldown.
    UnknownKid,
    /// The background refresh or an explicit [`KeyStore::refresh`]: also re-runs discovery.
    Refresh,
}

impl Inner {
    fn new(
        provider: String,
        fetcher: Option<Fetcher>,
        options: JwksOptions,
        keys: KeySet,
    ) -> Inner {
        Inner {
            provider,
            fetcher,
            options,
            keys: ArcSwap::from_pointee(keys),
            state: Mutex::new(FetchState::default()),
            done: watch::Sender::new(0),
            fetches_ok: AtomicU64::new(0),
            fetches_failed: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, FetchState> {
        // The lock guards plain data updated in single statements; a poisoned lock still
        // holds consistent values.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that the first fetch is about to run (see [`KeyStore::new`]).
    fn mark_started(&self) {
        let mut state = self.state();
        state.in_flight = true;
        state.last_started = Some(Instant::now());
    }

    /// Joins the running fetch or starts one, and returns a receiver that changes when it
    /// ends; `None` when no fetch will happen (inline source, or an unknown `kid` within the
    /// cooldown).
    fn join_or_start(self: &Arc<Self>, cause: Cause) -> Option<watch::Receiver<u64>> {
        self.fetcher.as_ref()?;
        let mut state = self.state();
        if !state.in_flight {
            // Only fetches for unknown kids count towards the cooldown: a scheduled refresh
            // (or the first fetch) just before a rotation must not make the new kid wait.
            let cooling = state
                .last_on_demand
                .is_some_and(|t| t.elapsed() < self.options.refetch_cooldown);
            if cause == Cause::UnknownKid && cooling {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            state.in_flight = true;
            state.last_started = Some(Instant::now());
            if cause == Cause::UnknownKid {
                state.last_on_demand = state.last_started;
            }
            let inner = self.clone();
            tokio::spawn(async move { inner.run_fetch(cause).await });
        }
        // Subscribed under the lock: the fetch cannot end (it takes the lock) before we are
        // listening.
        Some(self.done.subscribe())
    }

    /// Runs one fetch and publishes its outcome. Runs in its own task so that a caller that
    /// gives up (a client that disconnects) does not cancel a fetch others wait for.
    async fn run_fetch(&self, cause: Cause) {
        let outcome = match &self.fetcher {
            Some(fetcher) => self.fetch(fetcher, cause).await,
            None => return,
        };
        let mut state = self.state();
        let outcome = match outcome {
            Ok(fetched) => {
                let count = fetched.keys.len();
                let skipped = fetched.keys.skipped().len();
                self.keys.store(Arc::new(fetched.keys));
                self.fetches_ok.fetch_add(1, Ordering::Relaxed);
                state.last_success = Some(SystemTime::now());
                state.max_age = fetched.max_age;
                tracing::info!(
                    provider = %self.provider,
                    keys = count,
                    skipped,
                    ?cause,
                    "jwks fetched"
                );
                Ok(count)
            }
            Err(error) => {
                self.fetches_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    provider = %self.provider,
                    error = %error,
                    keys_kept = self.keys.load().len(),
                    ?cause,
                    "jwks fetch failed; keeping the last good keys"
                );
                Err(error)
            }
        };
        state.last_outcome = Some(outcome);
        state.in_flight = false;
        drop(state);
        self.done
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    async fn fetch(&self, fetcher: &Fetcher, cause: Cause) -> Result<Fetched, FetchError> {
        let jwks_url = match &fetcher.remote {
            Remote::Url(url) => url.clone(),
            Remote::Discovery { issuer, url } => {
                let cached = self.state().discovered.clone();
                match cached {
                    Some(jwks_url) if cause == Cause::UnknownKid => jwks_url,
                    _ => {
                        let jwks_url = self.discover(fetcher, issuer, url).await?;
                        self.state().discovered = Some(jwks_url.clone());
                        jwks_url
                    }
                }
            }
        };
        let (body, max_age) = self.get(fetcher, &jwks_url).await?;
        let keys = parse_key_set(&body).map_err(|error| FetchError::InvalidJwks {
            url: jwks_url.to_string(),
            error,
        })?;
        Ok(Fetched { keys, max_age })
    }

    /// Fetches the discovery document, checks its issuer and returns its `jwks_uri`.
    async fn discover(
        &self,
        fetcher: &Fetcher,
        issuer: &str,
        url: &Uri,
    ) -> Result<Uri, FetchError> {
        let (body, _) = self.get(fetcher, url).await?;
        let invalid = |reason: &str| FetchError::InvalidDiscovery {
            url: url.to_string(),
            reason: reason.to_owned(),
        };
        let document: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| invalid(&e.to_string()))?;
        let found = document
            .get("issuer")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| invalid("no issuer string"))?;
        if found != issuer {
            return Err(FetchError::IssuerMismatch {
                expected: issuer.to_owned(),
                found: found.to_owned(),
            });
        }
        let jwks_uri = document
            .get("jwks_uri")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| invalid("no jwks_uri string"))?;
        check_url(jwks_uri, self.options.allow_http).map_err(FetchError::InvalidJwksUri)
    }

    /// GETs `url`: status 200, body within the size limit, all within the timeout. Returns
    /// the body and the answer's `max-age`.
    async fn get(
        &self,
        fetcher: &Fetcher,
        url: &Uri,
    ) -> Result<(Bytes, Option<Duration>), FetchError> {
        let limit = self.options.max_bytes;
        let request_error = |error: &(dyn std::error::Error + 'static)| FetchError::Request {
            url: url.to_string(),
            error: error_chain(error),
        };
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = url.clone();
        let headers = request.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static("rampart"));

        let exchange = async {
            let response = fetcher
                .client
                .request(request)
                .await
                .map_err(|e| request_error(&e))?;
            if response.status() != StatusCode::OK {
                return Err(FetchError::Status {
                    url: url.to_string(),
                    status: response.status().as_u16(),
                });
            }
            let too_large = || FetchError::TooLarge {
                url: url.to_string(),
                limit,
            };
            let declared = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit as u64) {
                return Err(too_large());
            }
            let max_age = max_age(response.headers());
            let body = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<LengthLimitError>() {
                        too_large()
                    } else {
                        request_error(&*e)
                    }
                })?
                .to_bytes();
            Ok((body, max_age))
        };
        tokio::time::timeout(self.options.timeout, exchange)
            .await
            .map_err(|_| FetchError::Timeout {
                url: url.to_string(),
                timeout: self.options.timeout,
            })?
    }

    /// How long the background refresh waits after the last fetch ended: the refresh
    /// interval (at most [`MAX_REFRESH_INTERVAL`]), shortened by a smaller `max-age` but not
    /// below the cooldown; after a failure, the cooldown.
    fn next_refresh_delay(&self) -> Duration {
        let options = &self.options;
        let interval = options.refresh_interval.min(MAX_REFRESH_INTERVAL);
        let state = self.state();
        let delay = match (&state.last_outcome, state.max_age) {
            (Some(Err(_)), _) => options.refetch_cooldown.min(interval),
            (_, Some(max_age)) => interval.min(max_age.max(options.refetch_cooldown)),
            (_, None) => interval,
        };
        delay.max(MIN_REFRESH_DELAY)
    }
}

struct Fetched {
    keys: KeySet,
    max_age: Option<Duration>,
}

/// The background task: the first fetch (already marked as started by [`KeyStore::new`]),
/// then a refresh after each delay. Aborted when the store drops.
async fn refresh_loop(inner: Arc<Inner>) {
    // The first fetch: marked in flight by `new`, so start it here directly.
    inner.run_fetch(Cause::Refresh).await;
    loop {
        tokio::time::sleep(inner.next_refresh_delay()).await;
        if let Some(mut done) = inner.join_or_start(Cause::Refresh) {
            let _ = done.changed().await;
        }
    }
}

fn parse_key_set(json: &[u8]) -> Result<KeySet, String> {
    KeySet::from_jwks(json).map_err(|e| e.to_string())
}

/// Whether a key of `set` has exactly this `kid` (keys without a `kid` do not count: they
/// are the verifier's fallback, found through [`KeySet::candidates`]).
fn has_kid(set: &KeySet, kid: &str) -> bool {
    set.keys().iter().any(|key| key.kid() == Some(kid))
}

/// Parses `url` and applies the scheme rule: `https`, or `http` to loopback (or anywhere with
/// `allow_http`). Also the rule for the introspection endpoint ([`crate::introspect`]).
pub(crate) fn check_url(url: &str, allow_http: bool) -> Result<Uri, JwksError> {
    let invalid = |reason: &str| JwksError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
    let host = uri.host().ok_or_else(|| invalid("no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if allow_http || is_loopback(host) => Ok(uri),
        Some("http") => Err(JwksError::InsecureUrl {
            url: url.to_owned(),
        }),
        _ => Err(invalid("the scheme must be https")),
    }
}

/// `localhost`, `127.0.0.0/8` or `::1` (as `http::Uri` gives it, in brackets).
fn is_loopback(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The answer's freshness lifetime: `max-age=N`, or zero for `no-store` / `no-cache`.
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut found = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            if directive.eq_ignore_ascii_case("no-store")
                || directive.eq_ignore_ascii_case("no-cache")
            {
                return Some(Duration::ZERO);
            }
            if let Some((name, seconds)) = directive.split_once('=')
                && name.trim().eq_ignore_ascii_case("max-age")
                && let Ok(seconds) = seconds.trim().trim_matches('"').parse::<u64>()
            {
                found = Some(Duration::from_secs(seconds));
            }
        }
    }
    found
}

fn http_client(extra_ca_pem: Option<&[u8]>) -> Result<HttpClient, JwksError> {
    Ok(Client::builder(TokioExecutor::new()).build(https_connector(extra_ca_pem)?))
}

/// The connector of every outgoing request of this crate (here and [`crate::introspect`]):
/// rustls with aws-lc-rs, the compiled-in Mozilla roots plus `extra_ca_pem`, HTTP/1.1.
/// It also speaks plain `http`; callers apply [`check_url`] first.
pub(crate) fn https_connector(
    extra_ca_pem: Option<&[u8]>,
) -> Result<HttpsConnector<HttpConnector>, JwksError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_ca_pem {
        let mut added = 0usize;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| JwksError::InvalidCa(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| JwksError::InvalidCa(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(JwksError::InvalidCa("no certificate in the PEM".to_owned()));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| JwksError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build())
}

/// An error with its `source()` chain (hyper's own message rarely says what went wrong).
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in ["localhost", "LOCALHOST", "127.0.0.1", "127.8.9.10", "[::1]"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "example.com",
            "10.0.0.1",
            "[::2]",
            "localhost.example",
            "128.0.0.1",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn url_rule() {
        assert!(check_url("https://idp.example/jwks", false).is_ok());
        assert!(check_url("http://127.0.0.1:9100/jwks", false).is_ok());
        assert!(check_url("http://[::1]:9100/jwks", false).is_ok());
        assert!(check_url("http://localhost/jwks", false).is_ok());
        assert_eq!(
            check_url("http://idp.example/jwks", false),
            Err(JwksError::InsecureUrl {
                url: "http://idp.example/jwks".to_owned()
            })
        );
        assert!(check_url("http://idp.example/jwks", true).is_ok());
        assert!(matches!(
            check_url("ftp://idp.example/jwks", true),
            Err(JwksError::InvalidUrl { .. })
        ));
        assert!(matches!(
            check_url("/jwks", false),
            Err(JwksError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn cache_control_max_age() {
        let mut headers = HeaderMap::new();
        assert_eq!(max_age(&headers), None);
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=600"),
        );
        assert_eq!(max_age(&headers), Some(Duration::from_secs(600)));
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("Max-Age = 7, must-revalidate"),
        );
        assert_eq!(max_age(&headers), Some(Duration::from_secs(7)));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        assert_eq!(max_age(&headers), Some(Duration::ZERO));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=soon"));
        assert_eq!(max_age(&headers), None);
    }
}
