//! [`FleetLimiter`]: a Redis limiter with the policy's choice of what to do when Redis
//! cannot answer.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Instant;

use rampart_core::Clock;
use rampart_ratelimit::{
    FixedWindow, Gcra, LeakyBucket, MemoryStore, Nanos, Outcome, SlidingLog, SlidingWindow, Spec,
    TokenBucket,
};

use crate::limiter::{RedisError, RedisLimiter};

/// What a policy does when Redis is unreachable, slow, or its breaker is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Admit every request: availability over enforcement.
    Open,
    /// Refuse every request, with the breaker's cool-down as `Retry-After`.
    Closed,
    /// Enforce the policy on this gateway alone, in memory: a fleet of `n` gateways then
    /// admits up to `n` times the limit in total.
    Local,
}

/// Which way a decision was made, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionPath {
    /// Redis decided.
    Redis,
    /// Redis failed; the request was admitted ([`FailureMode::Open`]).
    FailOpen,
    /// Redis failed; the request was refused ([`FailureMode::Closed`]).
    FailClosed,
    /// Redis failed; the gateway's in-memory limiter decided ([`FailureMode::Local`]).
    Local,
}

/// A decision and how it was made.
#[derive(Debug)]
pub struct FleetDecision {
    /// The decision.
    pub outcome: Outcome,
    /// Which way it was made.
    pub path: DecisionPath,
    /// Why Redis did not decide, when it did not.
    pub error: Option<RedisError>,
}

/// A policy shared through Redis, with a failure mode.
pub struct FleetLimiter {
    redis: RedisLimiter,
    mode: FailureMode,
    local: Option<LocalStore>,
    clock: Arc<dyn Clock>,
    origin: Instant,
}

impl std::fmt::Debug for FleetLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetLimiter")
            .field("redis", &self.redis)
            .field("mode", &self.mode)
            .finish()
    }
}

impl FleetLimiter {
    /// Wraps `redis` with `mode`. For [`FailureMode::Local`], the fallback tracks at most
    /// `local_max_keys` clients and reads time from `clock`.
    pub fn new(
        redis: RedisLimiter,
        mode: FailureMode,
        local_max_keys: usize,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let local =
            (mode == FailureMode::Local).then(|| LocalStore::new(redis.spec(), local_max_keys));
        let origin = clock.now();
        Self {
            redis,
            mode,
            local,
            clock,
            origin,
        }
    }

    /// The Redis limiter inside.
    pub fn redis(&self) -> &RedisLimiter {
        &self.redis
    }

    /// The failure mode.
    pub fn mode(&self) -> FailureMode {
        self.mode
    }

    /// Decides for a request of `cost` by `client`: by Redis when it answers within its
    /// timeout, otherwise by the failure mode. Never waits longer than the timeout.
    pub async fn decide(&self, client: &str, cost: u64) -> FleetDecision {
        match self.redis.decide(client, cost).await {
            Ok(outcome) => FleetDecision {
                outcome,
                path: DecisionPath::Redis,
                error: None,
            },
            Err(e) => self.fallback(client, cost, e),
        }
    }

    fn fallback(&self, client: &str, cost: u64, error: RedisError) -> FleetDecision {
        let (outcome, path) = match (self.mode, &self.local) {
            (FailureMode::Open, _) => (
                Outcome::Allow {
                    remaining: 0,
                    reset: std::time::Duration::ZERO,
                },
                DecisionPath::FailOpen,
            ),
            (FailureMode::Local, Some(local)) => {
                let now = self.clock.now().saturating_duration_since(self.origin);
                let now = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
                (
                    local.decide(client.as_bytes(), now, cost, self.redis.count_rejected()),
                    DecisionPath::Local,
                )
            }
            (FailureMode::Closed | FailureMode::Local, _) => (
                Outcome::Deny {
                    retry_after: self.redis.breaker().cool_down(),
                },
                DecisionPath::FailClosed,
            ),
        };
        FleetDecision {
            outcome,
            path,
            error: Some(error),
        }
    }
}

/// The in-memory fallback, with the algorithm erased.
enum LocalStore {
    Gcra(MemoryStore<Gcra>),
    TokenBucket(MemoryStore<TokenBucket>),
    LeakyBucket(MemoryStore<LeakyBucket>),
    FixedWindow(MemoryStore<FixedWindow>),
    SlidingWindow(MemoryStore<SlidingWindow>),
    SlidingLog(MemoryStore<SlidingLog>),
}

fn nz(n: u64) -> NonZeroU64 {
    NonZeroU64::new(n).unwrap_or(NonZeroU64::MIN)
}

impl LocalStore {
    fn new(spec: &Spec, keys: usize) -> Self {
        match *spec {
            Spec::Gcra {
                count,
                period,
                burst,
            } => Self::Gcra(MemoryStore::new(
                Gcra::new(nz(count), period, nz(burst)),
                keys,
            )),
            Spec::TokenBucket {
                count,
                period,
                capacity,
            } => Self::TokenBucket(MemoryStore::new(
                TokenBucket::new(nz(count), period, nz(capacity)),
                keys,
            )),
            Spec::LeakyBucket {
                count,
                per_minute,
                burst,
                delay,
            } => Self::LeakyBucket(MemoryStore::new(
                LeakyBucket::nginx(nz(count), per_minute, burst, delay),
                keys,
            )),
            Spec::FixedWindow { count, period } => {
                Self::FixedWindow(MemoryStore::new(FixedWindow::new(nz(count), period), keys))
            }
            Spec::SlidingWindow { count, period } => Self::SlidingWindow(MemoryStore::new(
                SlidingWindow::new(nz(count), period),
                keys,
            )),
            Spec::SlidingLog { count, period } => {
                Self::SlidingLog(MemoryStore::new(SlidingLog::new(nz(count), period), keys))
            }
        }
    }

    fn decide(&self, key: &[u8], now: Nanos, cost: u64, count_rejected: bool) -> Outcome {
        match self {
            Self::Gcra(s) => s.decide(key, now, cost, count_rejected),
            Self::TokenBucket(s) => s.decide(key, now, cost, count_rejected),
            Self::LeakyBucket(s) => s.decide(key, now, cost, count_rejected),
            Self::FixedWindow(s) => s.decide(key, now, cost, count_rejected),
            Self::SlidingWindow(s) => s.decide(key, now, cost, count_rejected),
            Self::SlidingLog(s) => s.decide(key, now, cost, count_rejected),
        }
    }
}
