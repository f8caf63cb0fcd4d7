//! Rate limiting shared by a fleet of gateways through Redis.
//!
//! All six algorithms of `rampart-ratelimit` (GCRA, token bucket, the nginx `limit_req`
//! leaky bucket, fixed window, sliding window counter, exact sliding log) run as Lua scripts
//! inside Redis: one script per decision, sent with `EVALSHA` (falling back to `EVAL` on
//! `NOSCRIPT`), so every decision is one atomic round trip and gateways never race each other
//! between a read and a write. The time comes from Redis `TIME` inside the script, so
//! gateways with skewed clocks still agree. The scripts are line-for-line ports of the pure
//! decisions and are tested against them on random and hand-made traces.
//!
//! A policy's bans (`rampart_ratelimit::BanRule`) live in Redis too, checked and counted by
//! the same script: a banned client is answered before the rate is consulted, and the
//! refusal that reaches the rule's count bans the client for every gateway at once. The
//! semantics are those of the in-memory `rampart_ratelimit::Bans` (tested against it):
//! refusals counted in a fixed window of `within`, the `after`th bans for `duration`,
//! doubled for each earlier ban still remembered, up to `max_duration`; strikes forgotten
//! `max_duration + within` after the ban ends. [`RedisLimiter::bans`] lists them and
//! [`RedisLimiter::lift`] lifts one.
//!
//! Keys, all `rampart:{<policy>:<client>}:<suffix>`: the braces are a Redis Cluster hash
//! tag, so every key of a policy/client pair lives on one slot and a script never crosses
//! slots. The suffix is the algorithm's name for the rate state (`gcra`, `token_bucket`,
//! `leaky_bucket`, `fixed_window`, `sliding_window`: hashes; `sliding_log`: a list of at
//! most `limit` instants), `ban`, `strikes` and `refusals` for the bans. Every key expires
//! (`PEXPIRE`) when its state would decide like a fresh one, so Redis memory is bounded by
//! the clients active within one window (and the clients banned or remembered).
//!
//! Script replies: `{0, remaining, reset_ns}` admit, `{1, delay_ns}` admit after a delay
//! (leaky bucket), `{2, retry_ns}` refuse, `{3, remaining_ns}` banned; -1 nanoseconds
//! stands for "never".
//!
//! Every decision, connection included, is bounded by a timeout (50 ms by default) and
//! guarded by a [`CircuitBreaker`]. What happens when Redis cannot answer is the policy's
//! [`FailureMode`], applied by [`FleetLimiter`]: admit, refuse, or fall back to an
//! in-memory limiter (and in-memory bans) of the same policy on each gateway.
//! [`FleetLimiter`] is the `rampart_ratelimit::SharedStore` the rate-limit defense uses.
//!
//! Client choice: the `redis` crate (redis-rs) with `tokio-comp` and `script`. It is the
//! most used Rust client, its multiplexed connection lets every task of a gateway share one
//! TCP connection with pipelined requests, and its `Script` gives the SHA1 for `EVALSHA`.
//! We do not use its connection manager: reconnection is ours, so that a connection attempt
//! is bounded by the same timeout and counted by the same breaker as a call.
//!
//! Limits of the Lua port: Lua numbers are doubles, so the scripts keep every quantity below
//! 2^53 (instants are stored as second/nanosecond pairs and computed relative to now).
//! Policies whose scaled quantities would not fit are refused when built, with
//! [`ConfigError::TooLarge`]: a window longer than 52 days (2^52 ns), a GCRA whose
//! `burst * interval_ns`, a sliding window whose `2 * limit * window_ns` or a token bucket
//! whose `capacity * period_ns` exceeds 2^52, a leaky bucket whose burst takes more than 52
//! days to leak, or a ban rule whose `2 * max_duration + within` exceeds 52 days. A listing of bans scans the keyspace
//! (`SCAN`), so with Redis Cluster it sees the node its connection reaches.

mod breaker;
mod connection;
mod fleet;
mod limiter;
mod revocation;
mod script;

pub use breaker::{BreakerState, CircuitBreaker, Permit};
pub use fleet::{FailureMode, FleetDecision, FleetLimiter};
pub use limiter::{ConfigError, RedisError, RedisLimiter, RedisSettings};
pub use revocation::RedisRevocations;
