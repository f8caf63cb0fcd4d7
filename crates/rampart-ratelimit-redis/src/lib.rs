//! Rate limiting shared by a fleet of gateways through Redis.
//!
//! The algorithms of `rampart-ratelimit` (GCRA, token bucket, fixed window, sliding window
//! counter) run as Lua scripts inside Redis: one script per decision, sent with `EVALSHA`
//! (falling back to `EVAL` on `NOSCRIPT`), so every decision is one atomic round trip and
//! gateways never race each other between a read and a write. The time comes from Redis
//! `TIME` inside the script, so gateways with skewed clocks still agree. The scripts are
//! line-for-line ports of the pure decisions and are tested against them.
//!
//! Keys are `rampart:{<policy>:<client>}:<algorithm>`: the braces are a Redis Cluster hash
//! tag, so a policy/client pair lives on one slot, and each decision touches that one key.
//! A key expires (`PEXPIRE`) when its state would decide like a fresh one, so Redis memory
//! is bounded by the clients active within one window.
//!
//! Every Redis call, connection included, is bounded by a timeout (50 ms by default) and
//! guarded by a [`CircuitBreaker`]. What happens when Redis cannot answer is the policy's
//! [`FailureMode`], applied by [`FleetLimiter`]: admit, refuse, or fall back to an
//! in-memory limiter of the same algorithm on each gateway.
//!
//! Client choice: the `redis` crate (redis-rs) with `tokio-comp` and `script`. It is the
//! most used Rust client, its multiplexed connection lets every task of a gateway share one
//! TCP connection with pipelined requests, and its `Script` gives the SHA1 for `EVALSHA`.
//! We do not use its connection manager: reconnection is ours, so that a connection attempt
//! is bounded by the same timeout and counted by the same breaker as a call.
//!
//! Limits of the Lua port: Lua numbers are doubles, so the scripts keep every quantity below
//! 2^53 (instants are stored as second/nanosecond pairs and computed relative to now). Policies
//! whose scaled quantities would not fit (a window longer than 52 days, a sliding window whose
//! `limit * window_ns` or a token bucket whose `capacity * period_ns` exceeds 2^53) are refused
//! when built, with [`ConfigError::TooLarge`].

mod breaker;
mod fleet;
mod limiter;
mod script;

pub use breaker::{BreakerState, CircuitBreaker, Permit};
pub use fleet::{FailureMode, FleetDecision, FleetLimiter};
pub use limiter::{ConfigError, RedisError, RedisLimiter, RedisSettings};
