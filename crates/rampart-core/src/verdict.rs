//! What a defense answers: a [`Verdict`] when it decided, a [`DefenseError`] when it could not.

use std::borrow::Cow;
use std::time::Duration;

use http::{HeaderMap, StatusCode};

/// The decision of one defense about one request at one phase.
///
/// Blocking is a value, not an error: a denial is an ordinary outcome that the proxy turns
/// into an HTTP response in exactly one place.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Let the request go on to the next defense.
    Continue,
    /// Stop the request and answer with this interruption.
    Deny(Interruption),
    /// Hold the request for this long, then go on (smooth rate limiting).
    Delay(Duration),
}

/// Why and how a request is stopped: the response status, a machine-readable reason code,
/// the rule that fired, and any headers the client needs (`Retry-After`, `WWW-Authenticate`).
#[derive(Debug, Clone)]
pub struct Interruption {
    /// HTTP status of the response sent to the client.
    pub status: StatusCode,
    /// Stable, machine-readable reason (`ip_denied`, `rate_limited`, ...), used in events
    /// and metrics labels; keep the set small and fixed.
    pub reason: Cow<'static, str>,
    /// The rule or policy that fired, if any (a CIDR, a policy name, a CRS rule id).
    pub rule_id: Option<Cow<'static, str>>,
    /// Headers added to the denial response.
    pub headers: HeaderMap,
}

impl Interruption {
    /// An interruption with this status and reason, no rule and no headers.
    pub fn new(status: StatusCode, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            reason: reason.into(),
            rule_id: None,
            headers: HeaderMap::new(),
        }
    }

    /// Names the rule that fired.
    pub fn with_rule(mut self, rule: impl Into<Cow<'static, str>>) -> Self {
        self.rule_id = Some(rule.into());
        self
    }
}

/// A defense could not reach a decision (its store is down, its key set is unreadable).
///
/// What happens next is the route's [`crate::FailureMode`]: fail closed answers 503,
/// fail open lets the request through and records the failure.
#[derive(Debug, thiserror::Error)]
#[error("{layer} failed: {message}")]
pub struct DefenseError {
    /// The defense that failed.
    pub layer: &'static str,
    /// What went wrong, for the log (never shown to the client).
    pub message: String,
}

impl DefenseError {
    /// A failure of `layer` described by `message`.
    pub fn new(layer: &'static str, message: impl Into<String>) -> Self {
        Self {
            layer,
            message: message.into(),
        }
    }
}
