//! The configuration model: what a user writes in `rampart.yaml`.
//!
//! Every struct rejects unknown fields, so a typo is an error with a line number instead
//! of a silently ignored setting. Defaults are explained in docs/RATIONALE.md.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::units::{ByteSize, HumanDuration};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the gateway accepts client traffic. At least one.
    pub listeners: Vec<Listener>,
    /// The admin listener (metrics, health, readiness).
    #[serde(default)]
    pub admin: Admin,
    /// Request hygiene limits and timeouts, for every listener.
    #[serde(default)]
    pub limits: Limits,
    /// How the client address is found behind proxies.
    #[serde(default)]
    pub client_ip: ClientIp,
    /// Headers added to (and removed from) every response.
    #[serde(default)]
    pub security_headers: SecurityHeaders,
    /// The JSON access log.
    #[serde(default)]
    pub access_log: AccessLog,
    /// How shutdown drains in-flight requests.
    #[serde(default)]
    pub shutdown: Shutdown,
    /// Named upstream pools that routes send requests to.
    #[serde(default)]
    pub upstreams: BTreeMap<String, Upstream>,
    /// The Redis server that rate-limit policies with `store: redis` share with the other
    /// gateways of a fleet (see docs/RATE_LIMITING.md).
    #[serde(default)]
    pub redis: Option<RedisStore>,
    /// Named rate-limit policies that routes refer to (see docs/RATE_LIMITING.md).
    #[serde(default)]
    pub rate_limits: BTreeMap<String, RateLimitPolicy>,
    /// Named token providers that routes' `auth` refers to (see docs/AUTH.md).
    #[serde(default)]
    pub auth_providers: BTreeMap<String, AuthProvider>,
    /// API keys, stored as SHA-256 digests (see docs/AUTH.md).
    #[serde(default)]
    pub api_keys: Option<ApiKeysConfig>,
    /// Where token revocations are kept (see docs/AUTH.md).
    #[serde(default)]
    pub revocations: Revocations,
    /// Cedar policies that routes with `authorize: { cedar: true }` are decided by (see
    /// docs/AUTHZ.md).
    #[serde(default)]
    pub policies: Option<Policies>,
    /// Routes, matched most specific first (see docs/CONFIG.md).
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// A listener: an address, and optionally TLS or an HTTP->HTTPS redirect.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// A name for logs and metrics.
    pub name: String,
    /// The socket address to bind, like `0.0.0.0:8443` or `[::]:8080`.
    #[schemars(with = "String")]
    pub bind: Spanned<SocketAddr>,
    /// TLS termination on this listener. Without it the listener speaks cleartext
    /// HTTP/1.1 and h2c (prior knowledge).
    #[serde(default)]
    pub tls: Option<Tls>,
    /// Answer every request on this (cleartext) listener with a redirect to HTTPS
    /// instead of proxying it.
    #[serde(default)]
    pub redirect_https: Option<RedirectHttps>,
    /// Accept HTTP/2 (over TLS through ALPN, in cleartext as h2c). Default true.
    #[serde(default = "yes")]
    pub http2: bool,
}

/// TLS settings of a listener.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM file with the certificate chain, leaf first.
    #[schemars(with = "PathBuf")]
    pub cert: Spanned<PathBuf>,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    #[schemars(with = "PathBuf")]
    pub key: Spanned<PathBuf>,
    /// The lowest TLS version accepted.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Verify client certificates against these CAs (mTLS).
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
    /// The Strict-Transport-Security header sent on every TLS response.
    #[serde(default)]
    pub hsts: Hsts,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3 (the default).
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

/// Client-certificate verification.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    /// PEM file with the CA certificates client certificates must chain to.
    #[schemars(with = "PathBuf")]
    pub ca: Spanned<PathBuf>,
    /// Refuse the handshake without a valid client certificate (default true). When false,
    /// a client without a certificate is let in, unauthenticated, and one with an invalid
    /// certificate is still refused.
    #[serde(default = "yes")]
    pub required: bool,
}

/// Strict-Transport-Security (RFC 6797).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hsts {
    /// Send the header (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How long browsers remember to use HTTPS only (default 365d).
    #[serde(default = "one_year")]
    pub max_age: HumanDuration,
    /// Apply to subdomains too (default true).
    #[serde(default = "yes")]
    pub include_subdomains: bool,
    /// Ask for inclusion in browsers' preload lists (default false: hard to undo).
    #[serde(default)]
    pub preload: bool,
}

impl Default for Hsts {
    fn default() -> Self {
        Self {
            enabled: true,
            max_age: one_year(),
            include_subdomains: true,
            preload: false,
        }
    }
}

/// Redirect cleartext requests to HTTPS.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedirectHttps {
    /// The HTTPS port to redirect to (default 443, left out of the URL).
    #[serde(default = "https_port")]
    pub port: u16,
    /// The redirect status: 301 or 308 (default 308, which keeps the method and body).
    #[serde(default = "status_308")]
    pub status: u16,
}

/// The admin listener.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Where to listen (default 127.0.0.1:9901: loopback only, it is not authenticated).
    #[schemars(with = "String")]
    #[serde(default = "admin_bind")]
    pub bind: Spanned<SocketAddr>,
}

impl Default for Admin {
    fn default() -> Self {
        Self { bind: admin_bind() }
    }
}

/// Request hygiene: size limits and timeouts.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Most request header fields (default 100); more gives 431.
    #[serde(default = "d_max_header_count")]
    pub max_header_count: usize,
    /// Most bytes of request line and headers together (default 32KiB); more gives 431.
    #[serde(default = "d_max_header_bytes")]
    pub max_header_bytes: ByteSize,
    /// Most request body bytes (default 1MiB); more gives 413, while streaming too.
    #[serde(default = "d_max_body_bytes")]
    pub max_body_bytes: ByteSize,
    /// Time allowed to receive a whole request head (default 10s); slower clients are cut off.
    #[serde(default = "d_header_read_timeout")]
    pub header_read_timeout: HumanDuration,
    /// Close a connection that sends and receives nothing for this long (default 60s).
    #[serde(default = "d_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// HTTP/2: most concurrent streams per connection (default 100).
    #[serde(default = "d_h2_streams")]
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: most streams reset by the client before the server saw them (default 20);
    /// past it the connection is closed (rapid-reset defense, CVE-2023-44487).
    #[serde(default = "d_h2_pending_resets")]
    pub h2_max_pending_accept_reset_streams: usize,
    /// HTTP/2: most streams the server resets for protocol errors before closing the
    /// connection (default 100).
    #[serde(default = "d_h2_local_resets")]
    pub h2_max_local_error_reset_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_count: d_max_header_count(),
            max_header_bytes: d_max_header_bytes(),
            max_body_bytes: d_max_body_bytes(),
            header_read_timeout: d_header_read_timeout(),
            idle_timeout: d_idle_timeout(),
            h2_max_concurrent_streams: d_h2_streams(),
            h2_max_pending_accept_reset_streams: d_h2_pending_resets(),
            h2_max_local_error_reset_streams: d_h2_local_resets(),
        }
    }
}

/// How the client address is determined.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientIp {
    /// Proxies whose forwarding headers are believed (CIDRs). The client address is the
    /// right-most address in the forwarding header that is not one of these. Empty (the
    /// default): the TCP peer is the client and forwarding headers are ignored.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub trusted_proxies: Vec<IpNet>,
    /// Which header trusted proxies use.
    #[serde(default)]
    pub header: ForwardedHeader,
}

/// A forwarding header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (the default).
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239), its `for=` parameters.
    Forwarded,
}

/// Security headers on responses.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityHeaders {
    /// Add the built-in set (`X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
    /// `Referrer-Policy: no-referrer`, `Cross-Origin-Resource-Policy: same-origin`,
    /// `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'`). Default true.
    #[serde(default = "yes")]
    pub defaults: bool,
    /// Extra headers, or overrides of the built-in ones (an empty value removes one).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Headers removed from upstream responses (default `server`, `x-powered-by`).
    #[serde(default = "d_remove_headers")]
    pub remove: Vec<String>,
}

impl Default for SecurityHeaders {
    fn default() -> Self {
        Self {
            defaults: true,
            set: BTreeMap::new(),
            remove: d_remove_headers(),
        }
    }
}

/// The access log.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    /// `stdout` (default), `stderr`, `off`, or a file path (appended to).
    #[serde(default = "d_log_output")]
    pub output: String,
}

impl Default for AccessLog {
    fn default() -> Self {
        Self {
            output: d_log_output(),
        }
    }
}

/// Graceful shutdown.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Shutdown {
    /// How long in-flight requests may run after SIGTERM before connections are cut
    /// (default 30s).
    #[serde(default = "d_drain_timeout")]
    pub drain_timeout: HumanDuration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            drain_timeout: d_drain_timeout(),
        }
    }
}

/// An upstream pool.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// `host:port` targets, used round-robin.
    #[schemars(with = "Vec<String>")]
    pub targets: Vec<Spanned<String>>,
    /// Time allowed to open a TCP connection (default 5s); past it the client gets 502.
    #[serde(default = "d_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Time allowed for the response head after the request was sent (default 30s); past
    /// it the client gets 504.
    #[serde(default = "d_response_timeout")]
    pub response_timeout: HumanDuration,
    /// How long an unused pooled connection is kept (default 90s).
    #[serde(default = "d_pool_idle_timeout")]
    pub pool_idle_timeout: HumanDuration,
    /// Most idle pooled connections per target (default 64).
    #[serde(default = "d_pool_max_idle")]
    pub pool_max_idle_per_target: usize,
}

/// A route: which requests, where they go, and the defenses on the way.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// A name for logs and metrics.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Which requests this route takes.
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// The upstream (a key of `upstreams`).
    #[schemars(with = "String")]
    pub upstream: Spanned<String>,
    /// A lower body limit for this route than `limits.max_body_bytes`.
    #[serde(default)]
    pub max_body_bytes: Option<ByteSize>,
    /// Pass WebSocket upgrades through (default true).
    #[serde(default = "yes")]
    pub websocket: bool,
    /// IP allow and deny lists.
    #[serde(default)]
    pub ip_filter: Option<IpFilter>,
    /// Rate-limit policies (keys of `rate_limits`); every one must admit the request.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub rate_limit: Vec<Spanned<String>>,
    /// What to do when a defense on this route fails: `closed` (default, 503) or `open`.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Require a valid token from one of these providers.
    #[serde(default)]
    pub auth: Option<RouteAuth>,
    /// What the authenticated caller must be or hold: scopes, roles, groups, providers,
    /// ownership of the object, Cedar policies (see docs/AUTHZ.md). Needs `auth`.
    #[serde(default)]
    pub authorize: Option<Authorize>,
}

/// A route's authorization requirements, checked in this order: providers, scopes,
/// roles, groups, ownership, Cedar policies. The first that fails refuses the request.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Authorize {
    /// Only identities from these providers (keys of `auth_providers`, or `api_keys`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub providers: Vec<Spanned<String>>,
    /// Required scopes (403 `insufficient_scope` when one is missing).
    #[serde(default)]
    pub scopes: Requirement,
    /// Required roles, from each provider's `roles_claim`.
    #[serde(default)]
    pub roles: Requirement,
    /// Required groups, from each provider's `groups_claim`.
    #[serde(default)]
    pub groups: Requirement,
    /// Object ownership: each rule's request value must equal the caller's claim. Every
    /// rule must hold.
    #[serde(default)]
    pub owner_match: Vec<OwnerMatch>,
    /// Callers with one of these roles skip `owner_match` (support staff, say). The other
    /// requirements still apply.
    #[serde(default)]
    pub owner_exempt_roles: Vec<String>,
    /// Decide with the Cedar policies of the top-level `policies` (default false).
    #[serde(default)]
    pub cedar: bool,
}

/// A set of names the caller must hold: every one of `all_of`, and at least one of
/// `any_of` when it is not empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// Names the caller must all hold.
    #[serde(default)]
    pub all_of: Vec<String>,
    /// Names of which the caller must hold at least one.
    #[serde(default)]
    pub any_of: Vec<String>,
}

/// One ownership rule: a request value (exactly one of `path`, `query`, `header`) that
/// must equal a claim of the caller.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnerMatch {
    /// A parameter of the route's path template (`user_id` for `/users/{user_id}`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    /// A query parameter; it must appear exactly once.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub query: Option<Spanned<String>>,
    /// A request header; it must appear exactly once.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub header: Option<Spanned<String>>,
    /// The claim (or dotted path) it must equal (default `sub`). A claim holding an
    /// array matches any of its items; numbers compare as their decimal text.
    #[serde(default = "d_owner_claim")]
    pub claim: String,
    /// `sensitive` (default) or `insensitive`: ASCII letters only, so that `K` never
    /// matches the Kelvin sign.
    #[serde(default)]
    pub case: CaseRule,
}

/// How an ownership rule treats letter case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseRule {
    /// Byte for byte.
    #[default]
    Sensitive,
    /// ASCII letters compare without case; every other character byte for byte.
    Insensitive,
}

/// Cedar policies for routes with `authorize: { cedar: true }` (see docs/AUTHZ.md).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policies {
    /// The Cedar schema (`.cedarschema`, or `.json` for the JSON form). Policies are
    /// validated against it in strict mode when the configuration loads.
    #[schemars(with = "String")]
    pub schema: Spanned<PathBuf>,
    /// Policy files that are enforced.
    #[schemars(with = "Vec<String>")]
    pub files: Vec<Spanned<PathBuf>>,
    /// Policy files that are evaluated and logged beside the enforced ones, never
    /// enforced: try a change on live traffic.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub shadow_files: Vec<Spanned<PathBuf>>,
}

/// A route's authentication requirement.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteAuth {
    /// Providers (keys of `auth_providers`) whose tokens are accepted, tried by the token's
    /// issuer.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub providers: Vec<Spanned<String>>,
    /// Accept the API keys of the top-level `api_keys` (default false). A route needs
    /// providers, API keys, or both.
    #[serde(default)]
    pub api_keys: bool,
    /// Scopes the token must all carry (403 `insufficient_scope` otherwise).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Let requests without any credentials through, anonymous (default false). A request
    /// that presents an invalid token is still refused.
    #[serde(default)]
    pub optional: bool,
}

/// The revocation list.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Revocations {
    /// `memory` (this gateway, the default) or `redis` (shared by the fleet through the
    /// top-level `redis`). With Redis, a revocation check that Redis cannot answer fails
    /// closed (the route's `failure_mode`).
    #[serde(default)]
    pub store: StoreKind,
    /// Most entries kept in memory (default 1000000); a full list refuses new entries.
    #[serde(default = "d_max_keys")]
    pub max_entries: usize,
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            store: StoreKind::Memory,
            max_entries: d_max_keys(),
        }
    }
}

/// API keys.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysConfig {
    /// The header carrying the key (default `x-api-key`). It is removed before the request
    /// goes upstream.
    #[serde(default = "d_api_key_header")]
    pub header: String,
    /// The keys.
    pub keys: Vec<ApiKeyConfig>,
}

/// One API key: its digest and who it stands for.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// `sha256:<64 hex digits>` of the key (`printf %s "$KEY" | sha256sum`). The key
    /// itself is never written in the configuration.
    #[schemars(with = "String")]
    pub sha256: Spanned<String>,
    /// The identity it authenticates.
    pub subject: String,
    /// Its service tier.
    #[serde(default)]
    pub tier: Option<String>,
    /// Its scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// A JWT issuer whose tokens the gateway verifies.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthProvider {
    /// The exact `iss` of its tokens (and, with `jwks.discovery`, the OpenID issuer).
    #[schemars(with = "String")]
    pub issuer: Spanned<String>,
    /// Accepted `aud` values; a token must name at least one. Empty: `aud` is not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accepted signature algorithms (default RS256, PS256, ES256, ES384, EdDSA). HS256/384/512
    /// need `hmac_secret_file`. `none` is never accepted.
    #[serde(default = "d_algorithms")]
    pub algorithms: Vec<String>,
    /// Where the public keys come from: exactly one of `file`, `url`, `discovery`.
    #[serde(default)]
    pub jwks: Option<JwksSource>,
    /// Opaque tokens: ask this RFC 7662 introspection endpoint instead of verifying JWTs.
    #[serde(default)]
    pub introspection: Option<Introspection>,
    /// A file holding the shared secret for HS* tokens (at least as long as the hash).
    #[serde(default)]
    #[schemars(with = "Option<PathBuf>")]
    pub hmac_secret_file: Option<Spanned<PathBuf>>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 60s, at most 300s).
    #[serde(default = "d_leeway")]
    pub leeway: HumanDuration,
    /// Refuse tokens without `exp` (default true).
    #[serde(default = "yes")]
    pub require_exp: bool,
    /// The `typ` header tokens must carry, like `at+jwt` (RFC 9068). Unchecked when absent.
    #[serde(default)]
    pub typ: Option<String>,
    /// Claims every token must carry (besides `sub`, always required).
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Where the token is read from (default `Authorization: Bearer`).
    #[serde(default)]
    pub token_from: TokenFrom,
    /// Claims forwarded to the upstream as headers: claim name to header name. Incoming
    /// copies of those headers are removed first.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
    /// The largest token accepted (default 8KiB), checked before any decoding.
    #[serde(default = "d_max_token")]
    pub max_token_bytes: ByteSize,
    /// The claim roles are read from (an array of strings), or a dotted path such as
    /// `realm_access.roles` (default `roles`).
    #[serde(default = "d_roles_claim")]
    pub roles_claim: String,
    /// The claim groups are read from (an array of strings), or a dotted path (default
    /// `groups`).
    #[serde(default = "d_groups_claim")]
    pub groups_claim: String,
}

/// An RFC 7662 token introspection endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Introspection {
    /// The endpoint (https, or http on loopback).
    pub url: String,
    /// The gateway's client id at the authorization server.
    pub client_id: String,
    /// A file holding the client secret (a final newline is not part of it).
    #[schemars(with = "PathBuf")]
    pub client_secret_file: Spanned<PathBuf>,
    /// How the client authenticates: `basic` (HTTP Basic, the default) or `post` (in the
    /// form).
    #[serde(default)]
    pub client_auth: IntrospectionAuth,
    /// Bound on each introspection (default 2s); past it the request fails closed.
    #[serde(default = "d_introspection_timeout")]
    pub timeout: HumanDuration,
    /// Keep an active answer at most this long (default 5m, never past the token's `exp`).
    /// A token revoked at the server may be accepted for up to this long.
    #[serde(default = "d_jwks_refresh")]
    pub cache_ttl: HumanDuration,
    /// Extra CA certificates (PEM) trusted for the endpoint.
    #[serde(default)]
    #[schemars(with = "Option<PathBuf>")]
    pub ca_file: Option<Spanned<PathBuf>>,
}

/// How the gateway authenticates to an introspection endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntrospectionAuth {
    /// `client_secret_basic`.
    #[default]
    Basic,
    /// `client_secret_post`.
    Post,
}

/// Where a provider's keys come from.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwksSource {
    /// A JWKS file (re-read on reload).
    #[serde(default)]
    #[schemars(with = "Option<PathBuf>")]
    pub file: Option<Spanned<PathBuf>>,
    /// A JWKS URL (https, or http on loopback).
    #[serde(default)]
    pub url: Option<String>,
    /// Find the JWKS URL by OpenID Connect discovery from `issuer`.
    #[serde(default)]
    pub discovery: bool,
    /// Extra CA certificates (PEM) trusted for fetching, besides the system's.
    #[serde(default)]
    #[schemars(with = "Option<PathBuf>")]
    pub ca_file: Option<Spanned<PathBuf>>,
    /// Refresh the keys this often (default 5m; a shorter `Cache-Control: max-age` wins).
    #[serde(default = "d_jwks_refresh")]
    pub refresh_interval: HumanDuration,
    /// After a fetch for an unknown `kid`, wait this long before another (default 30s).
    #[serde(default = "d_jwks_cooldown")]
    pub refetch_cooldown: HumanDuration,
    /// Bound on each fetch (default 5s).
    #[serde(default = "d_jwks_timeout")]
    pub timeout: HumanDuration,
}

/// Where tokens are read from. At most one of `header`, `cookie`, `query`; none means
/// `Authorization: Bearer`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenFrom {
    /// A header holding the bare token.
    #[serde(default)]
    pub header: Option<String>,
    /// A cookie holding the token.
    #[serde(default)]
    pub cookie: Option<String>,
    /// A query parameter holding the token (RFC 6750 §2.3; leaks into logs and histories,
    /// so off unless named here).
    #[serde(default)]
    pub query: Option<String>,
}

/// What a route matches. Exactly one of `path` and `prefix`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// The Host (`:authority`), exact or `*.example.com`; any host when absent.
    #[serde(default)]
    pub host: Option<String>,
    /// An exact path or a template with `{param}` segments: `/users/{id}/orders`.
    #[schemars(with = "Option<String>")]
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// A path prefix, matched on whole segments: `/api` takes `/api` and `/api/x`, not `/apix`.
    #[schemars(with = "Option<String>")]
    #[serde(default)]
    pub prefix: Option<Spanned<String>>,
    /// Methods taken (any when empty). A path that matches with another method gets 405.
    #[serde(default)]
    pub methods: Vec<String>,
}

/// IP allow and deny lists (CIDRs). Deny wins; with an allow list, everything else is denied.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpFilter {
    /// Only these networks may use the route (all when empty).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub allow: Vec<IpNet>,
    /// These networks may not.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub deny: Vec<IpNet>,
}

/// A rate-limit policy.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitPolicy {
    /// The algorithm (default `gcra`).
    #[serde(default)]
    pub algorithm: RateAlgorithm,
    /// The sustained rate: `100/m`, `10r/s`, `5/10s`.
    /// (Its location is where the policy's errors point.)
    #[schemars(with = "crate::units::Rate")]
    pub rate: Spanned<crate::units::Rate>,
    /// Requests admitted at once above the rate. For `gcra` and `token_bucket` the bucket
    /// size (default 1: no burst); for `leaky_bucket`, nginx's `burst` (default 0). Unused
    /// by the window algorithms, whose limit is the rate's count.
    #[serde(default)]
    pub burst: Option<u64>,
    /// `leaky_bucket` only: pass this many of the burst at once, delay the rest (nginx
    /// `delay=N`; default 0, every excess request waits).
    #[serde(default)]
    pub delay: Option<u64>,
    /// `leaky_bucket` only: pass the whole burst at once (nginx `nodelay`).
    #[serde(default)]
    pub nodelay: bool,
    /// What identifies a client: any of `ip`, `subject`, `route`, `header:<name>`,
    /// combined (default `[ip]`).
    #[serde(default = "d_rate_key")]
    pub key: Vec<String>,
    /// IPv6 clients are grouped by this prefix length (default 64: one subscriber).
    #[serde(default = "d_ipv6_prefix")]
    pub ipv6_prefix: u8,
    /// Which clients the policy applies to (default `all`).
    #[serde(default)]
    pub applies_to: Audience,
    /// What one request costs (default 1).
    #[serde(default = "d_cost")]
    pub cost: u64,
    /// Refused requests use up allowance too (default false).
    #[serde(default)]
    pub count_rejected: bool,
    /// Dry run: log and count what would be refused, refuse nothing (default false).
    #[serde(default)]
    pub shadow: bool,
    /// The status of a refusal (default 429).
    #[serde(default = "d_status_429")]
    pub status: u16,
    /// Send `RateLimit` / `RateLimit-Policy` on admitted responses too (default true;
    /// refusals always carry them).
    #[serde(default = "yes")]
    pub headers: bool,
    /// Most clients tracked at once, in memory (default 1000000).
    #[serde(default = "d_max_keys")]
    pub max_keys: usize,
    /// Ban clients that keep getting refused.
    #[serde(default)]
    pub ban: Option<BanConfig>,
    /// Where the counters and bans live: `memory` (this gateway alone, the default) or
    /// `redis` (shared by every gateway using the same `redis`; needs the top-level
    /// `redis` section).
    #[serde(default)]
    pub store: StoreKind,
    /// With `store: redis`, what to do when Redis cannot answer within its timeout or its
    /// circuit breaker is open: `local` (the default) enforces the policy on this gateway
    /// alone, `closed` refuses with 503, `open` admits.
    #[serde(default)]
    pub on_store_failure: StoreFailure,
}

/// Where a rate-limit policy keeps its state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In this gateway's memory.
    #[default]
    Memory,
    /// In the shared Redis.
    Redis,
}

/// What a policy with a shared store does when the store is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StoreFailure {
    /// Enforce the policy with this gateway's memory alone (a fleet of n gateways then
    /// admits up to n times the limit).
    #[default]
    Local,
    /// Refuse every request of the policy with 503.
    Closed,
    /// Admit every request of the policy; each is logged as `fail_open`.
    Open,
}

/// The Redis server shared by a fleet.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisStore {
    /// `redis://[user:password@]host:port[/db]`.
    #[schemars(with = "String")]
    pub url: Spanned<String>,
    /// Bound on each decision, connecting included (default 50ms).
    #[serde(default = "d_redis_timeout")]
    pub timeout: HumanDuration,
    /// Consecutive failures that open the circuit breaker (default 5).
    #[serde(default = "d_breaker_failures")]
    pub breaker_failures: u32,
    /// How long the open breaker sends every decision to the failure mode before trying
    /// Redis again (default 2s).
    #[serde(default = "d_breaker_cool_down")]
    pub breaker_cool_down: HumanDuration,
}

/// Escalation from refusals to a temporary ban.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BanConfig {
    /// This many refusals...
    pub after: u64,
    /// ...within this long ban the client.
    pub within: HumanDuration,
    /// The first ban's length; each further ban of the same client doubles it.
    pub duration: HumanDuration,
    /// The longest ban (default 24h).
    #[serde(default = "d_max_ban")]
    pub max_duration: HumanDuration,
    /// Requests that authentication refuses for a bad token or API key count as refusals
    /// too (default true), so a client guessing credentials is banned like one flooding.
    #[serde(default = "yes")]
    pub auth_failures: bool,
}

/// A rate-limiting algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RateAlgorithm {
    /// Generic cell rate algorithm: smooth rate plus a burst, one timestamp per client.
    #[default]
    Gcra,
    /// Token bucket: capacity `burst`, refilled at `rate`.
    TokenBucket,
    /// nginx `limit_req`: a queue of `burst` requests drained at `rate`, with `delay` or
    /// `nodelay`.
    LeakyBucket,
    /// A counter per aligned window.
    FixedWindow,
    /// The previous window's count weighted by its overlap, plus the current count.
    SlidingWindow,
    /// The exact log of request times within the window.
    SlidingLog,
}

/// Which clients a policy applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Everyone.
    #[default]
    All,
    /// Requests without an authenticated identity.
    Anonymous,
    /// Requests with an authenticated identity.
    Authenticated,
}

/// The failure mode of a route's defenses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// A failing defense denies with 503 (the default).
    #[default]
    Closed,
    /// A failing defense lets the request through; the failure is logged.
    Open,
}

fn d_roles_claim() -> String {
    "roles".into()
}
fn d_groups_claim() -> String {
    "groups".into()
}
fn d_owner_claim() -> String {
    "sub".into()
}
fn yes() -> bool {
    true
}
fn one_year() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(31_536_000))
}
fn https_port() -> u16 {
    443
}
fn status_308() -> u16 {
    308
}
fn admin_bind() -> Spanned<SocketAddr> {
    let addr = SocketAddr::from(([127, 0, 0, 1], 9901));
    Spanned::new(
        addr,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}
fn d_max_header_count() -> usize {
    100
}
fn d_max_header_bytes() -> ByteSize {
    ByteSize(32 * 1024)
}
fn d_max_body_bytes() -> ByteSize {
    ByteSize(1024 * 1024)
}
fn d_header_read_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10))
}
fn d_idle_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(60))
}
fn d_h2_streams() -> u32 {
    100
}
fn d_h2_pending_resets() -> usize {
    20
}
fn d_h2_local_resets() -> usize {
    100
}
fn d_remove_headers() -> Vec<String> {
    vec!["server".into(), "x-powered-by".into()]
}
fn d_log_output() -> String {
    "stdout".into()
}
fn d_redis_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(50))
}
fn d_breaker_failures() -> u32 {
    5
}
fn d_breaker_cool_down() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(2))
}
fn d_max_ban() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(86_400))
}
fn d_rate_key() -> Vec<String> {
    vec!["ip".into()]
}
fn d_ipv6_prefix() -> u8 {
    64
}
fn d_cost() -> u64 {
    1
}
fn d_status_429() -> u16 {
    429
}
fn d_api_key_header() -> String {
    "x-api-key".into()
}
fn d_algorithms() -> Vec<String> {
    ["RS256", "PS256", "ES256", "ES384", "EdDSA"]
        .map(String::from)
        .to_vec()
}
fn d_leeway() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(60))
}
fn d_max_token() -> ByteSize {
    ByteSize(8 * 1024)
}
fn d_jwks_refresh() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(300))
}
fn d_jwks_cooldown() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}
fn d_introspection_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(2))
}
fn d_jwks_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}
fn d_max_keys() -> usize {
    1_000_000
}
fn d_drain_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}
fn d_connect_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}
fn d_response_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}
fn d_pool_idle_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(90))
}
fn d_pool_max_idle() -> usize {
    64
}
