//! The core of Rampart: the vocabulary every layer shares, and nothing that does I/O.
//!
//! A request travels through a chain of [`Defense`]s. Each defense sees the request in
//! phases (request head, request body, response head, completion) and answers each phase
//! with a [`Verdict`]: let the request go on, deny it with an [`Interruption`], or hold it
//! for a while. A defense that itself fails returns a [`DefenseError`]; whether that lets
//! the request through or stops it is the route's [`FailureMode`], never the defense's choice.
//!
//! The per-request [`RequestContext`] carries what the layers learned so far: the client,
//! the matched route, the authenticated identity and every decision made, so the access log,
//! the security-event log and the metrics describe exactly what happened.
//!
//! Architecture invariant: this crate performs no I/O and reads no clock except through
//! [`Clock`]; defense crates depend on it alone.

pub mod clock;
pub mod context;
pub mod phase;
pub mod revocation;
pub mod verdict;

pub use clock::{Clock, ManualClock, SystemClock};
pub use context::{
    ClaimValue, Claims, ClientInfo, Decision, Identity, Outcome, PeerCertificate, RequestContext,
    RouteInfo, TlsInfo,
};
pub use phase::{Chain, Defense, FailureMode, PhaseOutcome};
pub use verdict::{DefenseError, Interruption, Verdict};

/// The `http` crate this crate's API uses, so defense crates name the same types.
pub use http as http_reexport;
