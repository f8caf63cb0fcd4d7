//! The seam between the rate-limit defense and a store shared by a fleet of gateways.
//!
//! The in-memory store decides synchronously inside the defense. A shared store (Redis, in
//! `rampart-ratelimit-redis`) decides over the network, so it is asynchronous, it can fail,
//! and it keeps the policy's bans next to the counters so that every gateway sees them. This
//! crate defines the trait and the answers; the Redis crate implements it, which keeps this
//! crate free of any network dependency.

use std::time::Duration;

use async_trait::async_trait;

use crate::algo::Outcome;
use crate::bans::BanInfo;

/// What a store answered for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The policy's algorithm decided.
    Decided(Outcome),
    /// The client is banned (already, or by this very refusal) for this much longer.
    Banned(Duration),
}

/// Which way a shared decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionPath {
    /// The shared store decided.
    Shared,
    /// The store failed; the request was admitted (failure mode `open`).
    FailOpen,
    /// The store failed; the request was refused (failure mode `closed`).
    FailClosed,
    /// The store failed; this gateway's in-memory limiter decided (failure mode `local`).
    Local,
}

/// An answer and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedDecision {
    /// The answer.
    pub answer: Answer,
    /// Which way it was reached.
    pub path: DecisionPath,
    /// Why the shared store did not answer, when it did not (for the log).
    pub error: Option<String>,
}

/// A policy's counters and bans kept where every gateway of a fleet sees them.
///
/// `decide` never fails: an implementation applies the policy's failure mode itself and says
/// so in [`SharedDecision::path`]. It must return within its own timeout.
#[async_trait]
pub trait SharedStore: Send + Sync + std::fmt::Debug {
    /// Decides for a request of `cost` by `client` (the policy's client label).
    async fn decide(&self, client: &str, cost: u64) -> SharedDecision;

    /// The bans in force, sorted by client.
    async fn bans(&self) -> Result<Vec<BanInfo>, String>;

    /// Lifts `client`'s ban and escalation; true if it was banned.
    async fn lift(&self, client: &str) -> Result<bool, String>;

    /// Counts a refusal of `client` by another layer (a bad credential) towards its ban,
    /// without a rate decision. Called when the request is complete, so it must not block:
    /// an implementation that talks to a server does so in the background, and a failure
    /// only loses that one strike. The default counts nothing.
    fn strike(&self, _client: &str) {}
}
