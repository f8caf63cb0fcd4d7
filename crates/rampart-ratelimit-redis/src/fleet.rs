//! [`FleetLimiter`]: a Redis limiter with the policy's choice of what to do when Redis
//! cannot answer; the [`SharedStore`] the rate-limit defense uses.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rampart_core::Clock;
use rampart_ratelimit::{
    Answer, BanInfo, Bans, DecisionPath, FixedWindow, Gcra, LeakyBucket, MemoryStore, Nanos,
    Outcome, SharedDecision, SharedStore, SlidingLog, SlidingWindow, Spec, TokenBucket,
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

/// A decision and how it was made.
#[derive(Debug)]
pub struct FleetDecision {
    /// The answer.
    pub answer: Answer,
    /// Which way it was made: [`DecisionPath::Shared`] when Redis decided.
    pub path: DecisionPath,
    /// Why Redis did not decide, when it did not.
    pub error: Option<RedisError>,
}

/// A policy shared through Redis, with a failure mode.
pub struct FleetLimiter {
    redis: Arc<RedisLimiter>,
    mode: FailureMode,
    local: Option<Arc<Local>>,
    clock: Arc<dyn Clock>,
    origin: Instant,
}

/// The in-memory fallback of [`FailureMode::Local`]: the policy's algorithm and, when it
/// bans, its bans, on this gateway alone.
struct Local {
    store: LocalStore,
    bans: Option<Bans>,
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
    /// `local_max_keys` clients (and as many bans, when the policy bans) and reads time
    /// from `clock`.
    pub fn new(
        redis: RedisLimiter,
        mode: FailureMode,
        local_max_keys: usize,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let local = (mode == FailureMode::Local).then(|| {
            Arc::new(Local {
                store: LocalStore::new(redis.spec(), local_max_keys),
                bans: redis.ban().map(|rule| Bans::new(rule, local_max_keys)),
            })
        });
        let origin = clock.now();
        Self {
            redis: Arc::new(redis),
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

    /// The bans of the in-memory fallback ([`FailureMode::Local`] with a ban rule): the
    /// bans this gateway made alone while Redis was failing.
    pub fn local_bans(&self) -> Option<&Bans> {
        self.local.as_ref().and_then(|l| l.bans.as_ref())
    }

    /// Decides for a request of `cost` by `client`: by Redis when it answers within its
    /// timeout (bans included), otherwise by the failure mode. Never waits longer than the
    /// timeout.
    pub async fn decide(&self, client: &str, cost: u64) -> FleetDecision {
        match self.redis.decide(client, cost).await {
            Ok(answer) => FleetDecision {
                answer,
                path: DecisionPath::Shared,
                error: None,
            },
            Err(e) => self.fallback(client, cost, e),
        }
    }

    fn fallback(&self, client: &str, cost: u64, error: RedisError) -> FleetDecision {
        let (answer, path) = match (self.mode, &self.local) {
            (FailureMode::Open, _) => (
                Answer::Decided(Outcome::Allow {
                    remaining: 0,
                    reset: Duration::ZERO,
                }),
                DecisionPath::FailOpen,
            ),
            (FailureMode::Local, Some(local)) => {
                let now = local_now(self.clock.as_ref(), self.origin);
                (
                    local.decide(client, now, cost, self.redis.count_rejected()),
                    DecisionPath::Local,
                )
            }
            (FailureMode::Closed | FailureMode::Local, _) => (
                Answer::Decided(Outcome::Deny {
                    retry_after: self.redis.breaker().cool_down(),
                }),
                DecisionPath::FailClosed,
            ),
        };
        FleetDecision {
            answer,
            path,
            error: Some(error),
        }
    }
}

/// The fallback's time: nanoseconds since the limiter was made.
fn local_now(clock: &dyn Clock, origin: Instant) -> Nanos {
    let now = clock.now().saturating_duration_since(origin);
    u64::try_from(now.as_nanos()).unwrap_or(u64::MAX)
}

/// The rate-limit defense's view: errors become their messages, for the log and the admin
/// API.
#[async_trait]
impl SharedStore for FleetLimiter {
    async fn decide(&self, client: &str, cost: u64) -> SharedDecision {
        let d = FleetLimiter::decide(self, client, cost).await;
        SharedDecision {
            answer: d.answer,
            path: d.path,
            error: d.error.map(|e| e.to_string()),
        }
    }

    /// The bans in Redis. The in-memory fallback's bans are this gateway's alone and are
    /// not listed (see [`FleetLimiter::local_bans`]).
    async fn bans(&self) -> Result<Vec<BanInfo>, String> {
        self.redis.bans().await.map_err(|e| e.to_string())
    }

    /// Lifts the ban in Redis and in the in-memory fallback; fails when Redis does (the
    /// fallback's ban is lifted all the same).
    async fn lift(&self, client: &str) -> Result<bool, String> {
        let local = self.local_bans().is_some_and(|bans| bans.lift(client));
        let shared = self.redis.lift(client).await.map_err(|e| e.to_string())?;
        Ok(shared || local)
    }

    /// Counts the strike in Redis from a background task (none outside a Tokio runtime:
    /// the strike is dropped). When Redis fails and the failure mode is
    /// [`FailureMode::Local`] with a ban rule, the strike is counted in the in-memory
    /// fallback's bans instead, as a refused decision would be; otherwise it is lost.
    fn strike(&self, client: &str) {
        if self.redis.ban().is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let redis = Arc::clone(&self.redis);
        let local = self.local.clone();
        let clock = Arc::clone(&self.clock);
        let origin = self.origin;
        let client = client.to_string();
        runtime.spawn(async move {
            if redis.strike(&client).await.is_err()
                && let Some(bans) = local.as_ref().and_then(|l| l.bans.as_ref())
            {
                let now = local_now(clock.as_ref(), origin);
                if bans.banned(&client, now).is_none() {
                    bans.refused(&client, now);
                }
            }
        });
    }
}

impl Local {
    /// As the in-memory defense decides: a ban first, then the rate, and a refusal may ban.
    fn decide(&self, client: &str, now: Nanos, cost: u64, count_rejected: bool) -> Answer {
        if let Some(left) = self.bans.as_ref().and_then(|b| b.banned(client, now)) {
            return Answer::Banned(left);
        }
        let outcome = self
            .store
            .decide(client.as_bytes(), now, cost, count_rejected);
        if matches!(outcome, Outcome::Deny { .. })
            && let Some(ban) = self.bans.as_ref().and_then(|b| b.refused(client, now))
        {
            return Answer::Banned(ban);
        }
        Answer::Decided(outcome)
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
