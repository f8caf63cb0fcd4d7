//! The compiled configuration: everything the request path needs, built once per
//! (re)load and swapped in atomically. A request holds the `Arc<Runtime>` it started
//! with to its end, so a reload never changes the rules under an in-flight request.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode};
use rampart_auth::revocation::{MemoryRevocations, RevocationStore};
use rampart_auth::{AuthSettings, Authenticate, Provider, TokenCache};
use rampart_config::{
    AuthProvider, Config, ConfigError, ConfigErrors, Location, RateAlgorithm, RateLimitPolicy,
    RedisStore, StoreFailure, StoreKind,
};
use rampart_core::{Chain, Clock, Defense, FailureMode, SystemClock};
use rampart_ratelimit::{Audience, BanRule, KeyPart, Policy, PolicySettings, RateLimit, Spec};
use rampart_ratelimit_redis::{
    FailureMode as StoreMode, FleetLimiter, RedisLimiter, RedisSettings,
};

use crate::forwarded::ClientIpPolicy;
use crate::hygiene::HeaderLimits;
use crate::router::{HostMatch, Matcher, PathMatch, Router};
use crate::upstream::UpstreamPool;

/// The compiled configuration.
#[derive(Debug)]
pub struct Runtime {
    /// The route table.
    pub router: Router<Arc<RouteEntry>>,
    /// Per-listener settings by listener name.
    pub listeners: HashMap<String, ListenerRuntime>,
    /// How the client address is found.
    pub client_ip: ClientIpPolicy,
    /// Header limits.
    pub header_limits: HeaderLimits,
    /// The response-header policy.
    pub response_headers: ResponseHeaders,
    /// The config it was compiled from (listener binds, limits, log output).
    pub config: Config,
    /// Rate-limit policies by name, with the settings they were built from; a reload
    /// keeps a policy (and its counters) whose settings did not change.
    pub rate_policies: HashMap<String, (RateLimitPolicy, Arc<Policy>)>,
    /// The time origin of rate-limit decisions, the same for every runtime of a process.
    pub origin: Instant,
    /// Token providers by name, with the settings they were built from; a reload keeps a
    /// provider whose settings did not change (and so its fetched keys).
    pub auth_providers: HashMap<String, (AuthProvider, Arc<Provider>)>,
    /// Revoked tokens and subjects, the same for every runtime of a process.
    pub revocations: Arc<dyn RevocationStore>,
}

/// A compiled route.
#[derive(Debug)]
pub struct RouteEntry {
    /// The route name.
    pub name: Arc<str>,
    /// The path pattern as written (`http.route`).
    pub template: Arc<str>,
    /// Where requests go.
    pub upstream: Arc<UpstreamPool>,
    /// The defenses, in order.
    pub chain: Chain,
    /// Most request body bytes.
    pub max_body: u64,
    /// Pass WebSocket upgrades through.
    pub websocket: bool,
}

/// Per-listener settings that may change on reload (the bind address may not).
#[derive(Debug, Clone)]
pub struct ListenerRuntime {
    /// TLS, when the listener terminates TLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The HSTS header value for TLS responses.
    pub hsts: Option<HeaderValue>,
    /// Redirect every request to HTTPS on this port with this status.
    pub redirect: Option<(u16, StatusCode)>,
    /// Accept HTTP/2.
    pub http2: bool,
}

/// Headers set on and removed from every response.
#[derive(Debug, Clone, Default)]
pub struct ResponseHeaders {
    /// Set only when the upstream did not set them.
    pub defaults: Vec<(HeaderName, HeaderValue)>,
    /// Always set (override the upstream's).
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Removed from upstream responses.
    pub remove: Vec<HeaderName>,
}

/// The built-in security headers (see docs/RATIONALE.md).
const DEFAULT_SECURITY_HEADERS: [(&str, &str); 5] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

impl Runtime {
    /// Compiles `config`; `file` names the config in error messages. Reads the TLS files.
    pub fn compile(config: &Config, file: &Path) -> Result<Self, ConfigErrors> {
        Self::compile_with(config, file, None)
    }

    /// Compiles `config` as a successor of `previous`, keeping its rate-limit state where
    /// the policy is unchanged.
    pub fn compile_with(
        config: &Config,
        file: &Path,
        previous: Option<&Runtime>,
    ) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let origin = previous.map_or_else(Instant::now, |p| p.origin);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let rate_policies = rate_policies(config, previous, &clock, |e| {
            errors.push(ConfigError::at(file, Location::UNKNOWN, e));
        });
        let auth_providers = crate::auth::providers(config, file, previous, &mut errors);
        let api_keys = crate::auth::api_keys(config, file, &mut errors);
        let policies = crate::authz::engine(config, file, &mut errors);
        // Verified tokens are cached per runtime (a reload may change what a provider
        // accepts); revocations live as long as the process.
        let token_cache = Arc::new(TokenCache::new(100_000, Duration::from_secs(300)));
        let revocations = revocation_store(config, previous).unwrap_or_else(|e| {
            errors.push(ConfigError::at(file, Location::UNKNOWN, e));
            Arc::new(MemoryRevocations::new(1))
        });
        let mut listeners = HashMap::new();
        for l in &config.listeners {
            let mut rt = ListenerRuntime {
                tls: None,
                hsts: None,
                redirect: l.redirect_https.as_ref().map(|r| {
                    let status = if r.status == 301 {
                        StatusCode::MOVED_PERMANENTLY
                    } else {
                        StatusCode::PERMANENT_REDIRECT
                    };
                    (r.port, status)
                }),
                http2: l.http2,
            };
            if let Some(tls) = &l.tls {
                match crate::tls::server_config(tls, l.http2) {
                    Ok(cfg) => rt.tls = Some(cfg),
                    Err(e) => errors.push(ConfigError::at(
                        file,
                        tls.cert.referenced,
                        format!("listener {:?}: tls: {e}", l.name),
                    )),
                }
                rt.hsts = crate::tls::hsts_value(tls);
            }
            listeners.insert(l.name.clone(), rt);
        }

        let mut pools = HashMap::new();
        for (name, up) in &config.upstreams {
            match UpstreamPool::new(name, up) {
                Ok(p) => {
                    pools.insert(name.clone(), Arc::new(p));
                }
                Err(e) => errors.push(ConfigError::at(
                    file,
                    Location::UNKNOWN,
                    format!("upstream {name:?}: {e}"),
                )),
            }
        }

        let mut routes = Vec::new();
        for r in &config.routes {
            let (path, template, loc) = match (&r.matcher.path, &r.matcher.prefix) {
                (Some(p), _) => match PathMatch::parse_path(&p.value) {
                    Ok(m) => (m, p.value.clone(), p.referenced),
                    Err(e) => {
                        errors.push(ConfigError::at(file, p.referenced, e.to_string()));
                        continue;
                    }
                },
                (None, Some(p)) => (
                    PathMatch::prefix(&p.value),
                    format!("{}*", p.value),
                    p.referenced,
                ),
                (None, None) => continue,
            };
            let mut methods = Vec::new();
            for m in &r.matcher.methods {
                match Method::from_bytes(m.as_bytes()) {
                    Ok(m) => methods.push(m),
                    Err(_) => errors.push(ConfigError::at(file, loc, format!("bad method {m:?}"))),
                }
            }
            let Some(upstream) = pools.get(&r.upstream.value).cloned() else {
                continue;
            };
            let mut defenses: Vec<Arc<dyn Defense>> = Vec::new();
            if let Some(f) = &r.ip_filter {
                defenses.push(Arc::new(rampart_ipfilter::IpFilter::new(
                    f.allow.clone(),
                    f.deny.clone(),
                )));
            }
            // Limits that do not need the client's identity run before any credential is
            // parsed (no cryptography for a flood); the others after authentication.
            let (after_auth, before_auth): (Vec<Arc<Policy>>, Vec<Arc<Policy>>) = r
                .rate_limit
                .iter()
                .filter_map(|n| rate_policies.get(&n.value).map(|(_, p)| p.clone()))
                .partition(|p| p.needs_identity());
            if !before_auth.is_empty() {
                defenses.push(Arc::new(RateLimit::new(before_auth, clock.clone(), origin)));
            }
            if let Some(auth) = &r.auth {
                let providers: Vec<Arc<Provider>> = auth
                    .providers
                    .iter()
                    .filter_map(|n| auth_providers.get(&n.value).map(|(_, p)| p.clone()))
                    .collect();
                defenses.push(Arc::new(Authenticate::new(AuthSettings {
                    providers,
                    scopes: auth.scopes.clone(),
                    optional: auth.optional,
                    realm: "rampart".into(),
                    cache: token_cache.clone(),
                    revocations: Some(revocations.clone()),
                    api_keys: api_keys.clone().filter(|_| auth.api_keys),
                    clock: clock.clone(),
                })));
            }
            if !after_auth.is_empty() {
                defenses.push(Arc::new(RateLimit::new(after_auth, clock.clone(), origin)));
            }
            if let Some(authz) =
                crate::authz::route(r, &template, policies.as_ref(), file, &mut errors)
            {
                defenses.push(Arc::new(authz.defense(clock.clone())));
            }
            let failure_mode = match r.failure_mode {
                rampart_config::FailureMode::Closed => FailureMode::Closed,
                rampart_config::FailureMode::Open => FailureMode::Open,
            };
            let max_body = r
                .max_body_bytes
                .map_or(config.limits.max_body_bytes.0, |b| {
                    b.0.min(config.limits.max_body_bytes.0)
                });
            let entry = RouteEntry {
                name: r.name.value.as_str().into(),
                template: template.into(),
                upstream,
                chain: Chain::new(defenses, failure_mode),
                max_body,
                websocket: r.websocket,
            };
            let matcher = Matcher {
                host: HostMatch::parse(r.matcher.host.as_deref()),
                path,
                methods,
            };
            routes.push((matcher, Arc::new(entry)));
        }

        let response_headers = response_headers(config, file, &mut errors);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Self {
            router: Router::new(routes),
            listeners,
            client_ip: ClientIpPolicy {
                trusted: config.client_ip.trusted_proxies.clone(),
                header: config.client_ip.header,
            },
            header_limits: HeaderLimits {
                max_count: config.limits.max_header_count,
                max_bytes: usize::try_from(config.limits.max_header_bytes.0).unwrap_or(usize::MAX),
            },
            response_headers,
            config: config.clone(),
            rate_policies,
            origin,
            auth_providers,
            revocations,
        })
    }

    /// Nanoseconds since this process's rate-limit time origin (what bans are measured in).
    pub fn rate_now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The drain timeout on shutdown.
    pub fn drain_timeout(&self) -> Duration {
        self.config.shutdown.drain_timeout.0
    }
}

fn rate_policies(
    config: &Config,
    previous: Option<&Runtime>,
    clock: &Arc<dyn Clock>,
    mut error: impl FnMut(String),
) -> HashMap<String, (RateLimitPolicy, Arc<Policy>)> {
    let mut out = HashMap::new();
    for (name, settings) in &config.rate_limits {
        // A shared policy is also rebuilt when the Redis it talks to changed.
        let reused = previous
            .and_then(|p| {
                let same_store = settings.store == StoreKind::Memory
                    || p.config.redis.as_ref().map(unplaced_redis)
                        == config.redis.as_ref().map(unplaced_redis);
                p.rate_policies.get(name).filter(|_| same_store)
            })
            .filter(|(old, _)| unplaced(old) == unplaced(settings))
            .map(|(_, policy)| policy.clone());
        let policy = match reused {
            Some(p) => p,
            None => match build_policy(name, settings, config.redis.as_ref(), clock) {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    error(format!("rate_limits.{name}: {e}"));
                    continue;
                }
            },
        };
        out.insert(name.clone(), (settings.clone(), policy));
    }
    out
}

/// The revocation list: the previous runtime's when its store settings did not change (so
/// revocations survive reloads), else a new one in memory or over the shared Redis.
fn revocation_store(
    config: &Config,
    previous: Option<&Runtime>,
) -> Result<Arc<dyn RevocationStore>, String> {
    let same_redis = |p: &Runtime| {
        p.config.redis.as_ref().map(unplaced_redis) == config.redis.as_ref().map(unplaced_redis)
    };
    if let Some(p) = previous.filter(|p| {
        p.config.revocations == config.revocations
            && (config.revocations.store == StoreKind::Memory || same_redis(p))
    }) {
        return Ok(p.revocations.clone());
    }
    match (config.revocations.store, &config.redis) {
        (StoreKind::Redis, Some(r)) => {
            let settings = RedisSettings {
                url: r.url.value.clone(),
                timeout: r.timeout.0,
                breaker_failures: r.breaker_failures,
                breaker_cool_down: r.breaker_cool_down.0,
            };
            let store = rampart_ratelimit_redis::RedisRevocations::new(&settings)
                .map_err(|e| format!("revocations: {e}"))?;
            Ok(Arc::new(store))
        }
        _ => Ok(Arc::new(MemoryRevocations::new(
            config.revocations.max_entries,
        ))),
    }
}

/// `p` without source locations: a policy that only moved in the file is the same policy.
fn unplaced(p: &RateLimitPolicy) -> RateLimitPolicy {
    let mut p = p.clone();
    p.rate.referenced = Location::UNKNOWN;
    p.rate.defined = Location::UNKNOWN;
    p
}

fn unplaced_redis(r: &RedisStore) -> RedisStore {
    let mut r = r.clone();
    r.url.referenced = Location::UNKNOWN;
    r.url.defined = Location::UNKNOWN;
    r
}

/// Builds a policy in memory, or over the shared Redis for `store: redis`.
fn build_policy(
    name: &str,
    p: &RateLimitPolicy,
    redis: Option<&RedisStore>,
    clock: &Arc<dyn Clock>,
) -> Result<Policy, String> {
    let settings = policy_settings(name, p);
    let (StoreKind::Redis, Some(r)) = (p.store, redis) else {
        return Ok(Policy::new(settings));
    };
    let redis_settings = RedisSettings {
        url: r.url.value.clone(),
        timeout: r.timeout.0,
        breaker_failures: r.breaker_failures,
        breaker_cool_down: r.breaker_cool_down.0,
    };
    let limiter = RedisLimiter::new(
        name,
        settings.spec,
        settings.count_rejected,
        // The scripts count every refusal towards a ban; a dry-run policy must not ban.
        settings.ban.filter(|_| !settings.shadow),
        &redis_settings,
    )
    .map_err(|e| e.to_string())?;
    let mode = match p.on_store_failure {
        StoreFailure::Local => StoreMode::Local,
        StoreFailure::Closed => StoreMode::Closed,
        StoreFailure::Open => StoreMode::Open,
    };
    let fleet = FleetLimiter::new(limiter, mode, settings.max_keys, clock.clone());
    Ok(Policy::shared(settings, Arc::new(fleet)))
}

/// Translates a checked config policy into the defense's terms.
fn policy_settings(name: &str, p: &RateLimitPolicy) -> PolicySettings {
    let count = p.rate.value.count.get();
    let period = p.rate.value.period;
    let spec = match p.algorithm {
        RateAlgorithm::Gcra => Spec::Gcra {
            count,
            period,
            burst: p.burst.unwrap_or(1),
        },
        RateAlgorithm::TokenBucket => Spec::TokenBucket {
            count,
            period,
            capacity: p.burst.unwrap_or(1),
        },
        RateAlgorithm::LeakyBucket => {
            let burst = p.burst.unwrap_or(0);
            Spec::LeakyBucket {
                count,
                per_minute: period.as_secs() == 60,
                burst,
                delay: if p.nodelay {
                    burst
                } else {
                    p.delay.unwrap_or(0)
                },
            }
        }
        RateAlgorithm::FixedWindow => Spec::FixedWindow { count, period },
        RateAlgorithm::SlidingWindow => Spec::SlidingWindow { count, period },
        RateAlgorithm::SlidingLog => Spec::SlidingLog { count, period },
    };
    let key = p
        .key
        .iter()
        .filter_map(|part| match part.as_str() {
            "ip" => Some(KeyPart::Ip),
            "subject" => Some(KeyPart::Subject),
            "route" => Some(KeyPart::Route),
            other => other
                .strip_prefix("header:")
                .and_then(|h| HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok())
                .map(KeyPart::Header),
        })
        .collect();
    PolicySettings {
        name: name.to_string(),
        spec,
        key,
        ipv6_prefix: p.ipv6_prefix,
        audience: match p.applies_to {
            rampart_config::Audience::All => Audience::All,
            rampart_config::Audience::Anonymous => Audience::Anonymous,
            rampart_config::Audience::Authenticated => Audience::Authenticated,
        },
        cost: p.cost,
        count_rejected: p.count_rejected,
        shadow: p.shadow,
        status: StatusCode::from_u16(p.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS),
        headers: p.headers,
        max_keys: p.max_keys,
        ban: p.ban.as_ref().map(|b| BanRule {
            after: b.after,
            within: b.within.0,
            duration: b.duration.0,
            max_duration: b.max_duration.0,
        }),
        ban_on_auth_failures: p.ban.as_ref().is_some_and(|b| b.auth_failures),
    }
}

fn response_headers(
    config: &Config,
    file: &Path,
    errors: &mut Vec<ConfigError>,
) -> ResponseHeaders {
    let sh = &config.security_headers;
    let mut out = ResponseHeaders::default();
    if sh.defaults {
        for (k, v) in DEFAULT_SECURITY_HEADERS {
            if sh.set.keys().any(|s| s.eq_ignore_ascii_case(k)) {
                continue;
            }
            out.defaults
                .push((HeaderName::from_static(k), HeaderValue::from_static(v)));
        }
    }
    for (k, v) in &sh.set {
        let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes());
        let value = HeaderValue::from_str(v);
        match (name, value) {
            (Ok(n), _) if v.is_empty() => out.remove.push(n),
            (Ok(n), Ok(v)) => out.set.push((n, v)),
            _ => errors.push(ConfigError::at(
                file,
                Location::UNKNOWN,
                format!("security_headers.set: invalid header {k:?}"),
            )),
        }
    }
    for k in &sh.remove {
        match HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()) {
            Ok(n) => out.remove.push(n),
            Err(_) => errors.push(ConfigError::at(
                file,
                Location::UNKNOWN,
                format!("security_headers.remove: invalid header {k:?}"),
            )),
        }
    }
    out
}
