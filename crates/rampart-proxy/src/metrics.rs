//! Prometheus metrics, served on the admin listener at `/metrics`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route name (`none` when no route matched).
    pub route: Arc<str>,
    /// The response status code.
    pub status: u16,
}

/// Labels of denial metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabels {
    /// The layer that denied.
    pub layer: &'static str,
    /// Its reason code.
    pub reason: String,
}

/// Labels of authentication refusals.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// The provider that judged the token (`none` when no token or no provider matched).
    pub provider: String,
    /// The reason code (`missing_token`, `expired`, `bad_signature`, ...).
    pub reason: String,
}

/// Labels of authorization decisions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthzLabels {
    /// The route name.
    pub route: Arc<str>,
    /// `authz` (enforced) or `authz_shadow` (the shadow policy set).
    pub layer: &'static str,
    /// `allow`, `deny`, or `shadow` (the shadow set would have denied).
    pub outcome: &'static str,
    /// The rule or policy ids that decided.
    pub rule: String,
}

/// Labels of upstream error metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// The upstream name.
    pub upstream: Arc<str>,
    /// `connect`, `timeout` or `protocol`.
    pub kind: &'static str,
}

/// Labels of reload metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    /// Requests by route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request duration in seconds (head received to body sent) by route and status.
    pub duration: Family<RequestLabels, Histogram>,
    /// Denials by layer and reason.
    pub denials: Family<DenialLabels, Counter>,
    /// Requests a layer in shadow (dry-run) mode would have denied, by layer and reason.
    pub shadow_denials: Family<DenialLabels, Counter>,
    /// Requests a layer let through although it could not decide (its backend failed and
    /// it fails open, or fell back to a local decision), by layer and reason.
    pub fail_open: Family<DenialLabels, Counter>,
    /// Authentication refusals by provider and reason.
    pub auth_rejections: Family<AuthLabels, Counter>,
    /// Authorization decisions by route, layer, outcome and deciding rule or policies.
    pub authz_decisions: Family<AuthzLabels, Counter>,
    /// Upstream failures by upstream and kind.
    pub upstream_errors: Family<UpstreamLabels, Counter>,
    /// Config reloads by result.
    pub reloads: Family<ResultLabels, Counter>,
    /// Open client connections.
    pub connections: Gauge,
    /// Access-log lines dropped because the writer could not keep up.
    pub log_dropped: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rampart");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ])
        });
        let denials = Family::<DenialLabels, Counter>::default();
        let shadow_denials = Family::<DenialLabels, Counter>::default();
        let fail_open = Family::<DenialLabels, Counter>::default();
        let auth_rejections = Family::<AuthLabels, Counter>::default();
        let authz_decisions = Family::<AuthzLabels, Counter>::default();
        let upstream_errors = Family::<UpstreamLabels, Counter>::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        let connections = Gauge::default();
        let log_dropped = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request head to the end of the response body, by route and status",
            duration.clone(),
        );
        registry.register(
            "denials",
            "Requests denied, by layer and reason",
            denials.clone(),
        );
        registry.register(
            "shadow_denials",
            "Requests a layer in shadow mode would have denied, by layer and reason",
            shadow_denials.clone(),
        );
        registry.register(
            "fail_open",
            "Requests a layer let through without its normal decision (its backend failed), by layer and reason",
            fail_open.clone(),
        );
        registry.register(
            "auth_rejections",
            "Requests refused by authentication, by provider and reason",
            auth_rejections.clone(),
        );
        registry.register(
            "authz_decisions",
            "Authorization decisions, by route, layer (authz, authz_shadow), outcome and the rule or policies that decided",
            authz_decisions.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream failures, by upstream and kind",
            upstream_errors.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads, by result",
            reloads.clone(),
        );
        registry.register(
            "connections_open",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "access_log_dropped",
            "Access-log lines dropped because the writer fell behind",
            log_dropped.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            denials,
            shadow_denials,
            fail_open,
            auth_rejections,
            authz_decisions,
            upstream_errors,
            reloads,
            connections,
            log_dropped,
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
