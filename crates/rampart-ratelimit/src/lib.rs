//! Rate-limiting algorithms as pure decision functions.
//!
//! Every algorithm is a small policy value and a per-key state; [`Algorithm::decide`]
//! takes the state, the current time and the request's cost, updates the state and
//! returns an [`Outcome`]. Nothing here reads a clock or locks anything: the caller owns
//! time (a `rampart_core::Clock`) and storage (an in-memory map or Redis), so each
//! algorithm is tested exactly, tick by tick.
//!
//! Time is a count of nanoseconds from an origin the caller chooses ([`Nanos`]); the
//! nginx-compatible leaky bucket works in whole milliseconds, as nginx does.
//!
//! Which algorithm to choose is explained in docs/RATE_LIMITING.md.

pub mod algo;
pub mod bans;
pub mod defense;
pub mod nginx;
pub mod shared;
pub mod store;

pub use algo::{
    Algorithm, FixedWindow, Gcra, LeakyBucket, Nanos, Outcome, SlidingLog, SlidingWindow,
    TokenBucket,
};
pub use bans::{BanInfo, BanRule, Bans};
pub use defense::{Audience, KeyPart, Policy, PolicySettings, RateLimit, Spec};
pub use nginx::{Zones, ZonesDecision};
pub use shared::{Answer, DecisionPath, SharedDecision, SharedStore};
pub use store::MemoryStore;
