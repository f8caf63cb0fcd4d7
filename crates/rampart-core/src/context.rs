//! The per-request context: what the layers know about a request and what they decided.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Everything the chain learns about one request while it passes through.
///
/// The proxy creates it when the request head has been read and hands it to every phase
/// hook in order; the completion hook and the access log read the final state.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// A unique id for this request, also sent upstream as `X-Request-Id`.
    pub request_id: Arc<str>,
    /// Who sent the request.
    pub client: ClientInfo,
    /// The route that matched, once routing has run.
    pub route: Option<RouteInfo>,
    /// The authenticated identity, once an authentication layer has set it.
    pub identity: Option<Identity>,
    /// A short hash of the credential the request presented (never the credential), for
    /// the log.
    pub credential: Option<Arc<str>>,
    /// Every decision made so far, in order.
    pub decisions: Vec<Decision>,
    /// Headers a layer wants on the response, whatever it is (rate-limit status on an
    /// allowed response, for instance). Added after the response-header policy.
    pub response_headers: http::HeaderMap,
}

impl RequestContext {
    /// A fresh context for a request from `client`.
    pub fn new(request_id: Arc<str>, client: ClientInfo) -> Self {
        Self {
            request_id,
            client,
            route: None,
            identity: None,
            credential: None,
            decisions: Vec::new(),
            response_headers: http::HeaderMap::new(),
        }
    }

    /// Records a decision of `layer`.
    pub fn record(&mut self, decision: Decision) {
        self.decisions.push(decision);
    }

    /// The value of the route parameter `name` (`{id}` in `/users/{id}`), if the matched
    /// route has one.
    pub fn route_param(&self, name: &str) -> Option<&str> {
        self.route
            .as_ref()?
            .params
            .iter()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The client of a request, as far as the gateway can tell.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The client address: the TCP peer, or the right-most untrusted hop of
    /// `X-Forwarded-For`/`Forwarded` when the peer is a trusted proxy.
    pub ip: IpAddr,
    /// The TCP peer that connected to the gateway.
    pub peer: SocketAddr,
    /// TLS facts, when the connection is TLS.
    pub tls: Option<Arc<TlsInfo>>,
}

/// What the TLS handshake established.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// The server name the client asked for (SNI).
    pub server_name: Option<String>,
    /// The negotiated application protocol (`h2`, `http/1.1`).
    pub alpn: Option<String>,
    /// The negotiated protocol version (`1.2`, `1.3`).
    pub version: Option<String>,
    /// The verified client certificate (mTLS), if one was presented and verified.
    pub peer_certificate: Option<PeerCertificate>,
}

/// A client certificate that chained to a configured CA.
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    /// The subject distinguished name, RFC 4514 style.
    pub subject: String,
    /// DNS, URI, e-mail and IP subject alternative names.
    pub sans: Vec<String>,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub sha256: String,
}

/// The matched route.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    /// The route's configured name (a metrics label).
    pub name: Arc<str>,
    /// The matched path pattern (`/users/{id}`), the OpenTelemetry `http.route`.
    pub template: Arc<str>,
    /// Values of the template parameters, in order.
    pub params: Vec<(Arc<str>, String)>,
}

/// An authenticated principal, set by an authentication layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The subject (`sub` claim, API key owner, certificate subject).
    pub subject: String,
    /// Who vouched for it (token issuer, `mtls`, `api_key`).
    pub issuer: String,
    /// The provider (configuration name) that verified it, for logs and metrics.
    pub provider: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Granted roles (from the provider's roles claim).
    pub roles: Vec<String>,
    /// Groups the principal belongs to (from the provider's groups claim).
    pub groups: Vec<String>,
    /// The verified claims of the credential, for ownership checks and policies. Shared:
    /// a cached token hands out the same map to every request.
    pub claims: Claims,
    /// The OAuth client the credential was issued to (`client_id` or `azp`).
    pub client_id: Option<String>,
    /// The service tier (API keys), for rate-limit policies.
    pub tier: Option<String>,
    /// When the credential expires, in seconds since the Unix epoch.
    pub expires_at: Option<u64>,
}

/// The claims of a verified credential, by name.
pub type Claims = Arc<BTreeMap<String, ClaimValue>>;

/// One claim value, as the credential carried it. JSON `null` and numbers that are not
/// integers have no counterpart: a claim holding one is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimValue {
    /// `true` or `false`.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A string.
    String(String),
    /// An array.
    List(Vec<ClaimValue>),
    /// An object.
    Map(BTreeMap<String, ClaimValue>),
}

impl Identity {
    /// The claim at `path`, a claim name or a dotted path into objects
    /// (`realm_access.roles`). `sub` falls back to the subject for credentials without
    /// claims (API keys).
    pub fn claim(&self, path: &str) -> Option<Cow<'_, ClaimValue>> {
        let mut names = path.split('.');
        let first = names.next().and_then(|n| self.claims.get(n));
        let found = names.try_fold(first, |v, name| match v? {
            ClaimValue::Map(m) => Some(m.get(name)),
            _ => None,
        });
        match found.flatten() {
            Some(v) => Some(Cow::Borrowed(v)),
            None if path == "sub" && !self.subject.is_empty() => {
                Some(Cow::Owned(ClaimValue::String(self.subject.clone())))
            }
            None => None,
        }
    }
}

/// One layer's decision about a request, for logs and metrics.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The layer that decided (`ipfilter`, `hygiene`, `ratelimit`).
    pub layer: &'static str,
    /// What it decided.
    pub outcome: Outcome,
    /// A stable reason code (`ip_denied`, `body_too_large`).
    pub reason: Cow<'static, str>,
    /// The rule or policy that fired.
    pub rule_id: Option<Cow<'static, str>>,
}

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The layer let the request go on.
    Allow,
    /// The layer stopped the request.
    Deny,
    /// The layer held the request before letting it go on.
    Delay,
    /// The layer failed and the route failed open.
    FailOpen,
    /// The layer failed and the route failed closed.
    FailClosed,
    /// The request failed without anyone denying it (the upstream was unreachable).
    Error,
    /// The layer would have denied, but runs in shadow (dry-run) mode: logged and counted,
    /// not enforced.
    Shadow,
}

impl Outcome {
    /// The lowercase name used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Delay => "delay",
            Outcome::FailOpen => "fail_open",
            Outcome::FailClosed => "fail_closed",
            Outcome::Error => "error",
            Outcome::Shadow => "shadow",
        }
    }
}
