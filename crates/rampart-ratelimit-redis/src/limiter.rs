//! [`RedisLimiter`]: one policy's decisions made atomically inside Redis.

use std::time::{Duration, Instant};

use rampart_ratelimit::{Nanos, Outcome, Spec};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, ServerErrorKind};
use tokio::sync::Mutex;

use crate::breaker::CircuitBreaker;
use crate::script::Program;

/// How a [`RedisLimiter`] reaches Redis. The defaults are in [`RedisSettings::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// A `redis://host:port/db` URL.
    pub url: String,
    /// Bound on each decision, connecting included.
    pub timeout: Duration,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before a trial call.
    pub breaker_cool_down: Duration,
}

impl RedisSettings {
    /// Settings for `url` with a 50 ms timeout (a decision is one round trip on a local
    /// network, well under a millisecond; 50 ms is far above that yet short next to a
    /// request's budget) and a breaker that opens after 5 consecutive failures for 2 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: Duration::from_millis(50),
            breaker_failures: 5,
            breaker_cool_down: Duration::from_secs(2),
        }
    }
}

/// Why a Redis decision could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The call (or the connection attempt) took longer than the timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The circuit breaker is open: the call was not attempted.
    #[error("redis circuit breaker is open")]
    CircuitOpen,
    /// Redis or the connection reported an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The script answered something it never sends.
    #[error("unexpected reply from the rate-limit script: {0:?}")]
    BadReply(Vec<i64>),
}

/// Why a [`RedisLimiter`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The algorithm has no Redis script yet.
    #[error("the {0} algorithm is not available over Redis")]
    Unsupported(&'static str),
    /// A scaled parameter does not fit the exact range of Lua numbers (2^52).
    #[error("{0} is too large for the Redis scripts")]
    TooLarge(&'static str),
    /// The URL is not a Redis URL.
    #[error("invalid redis url: {0}")]
    Url(#[source] redis::RedisError),
}

/// One rate-limit policy whose state lives in Redis, shared by every gateway that uses
/// the same policy name and Redis.
#[derive(Debug)]
pub struct RedisLimiter {
    spec: Spec,
    count_rejected: bool,
    prefix: String,
    program: Program,
    client: redis::Client,
    timeout: Duration,
    conn: Mutex<Option<MultiplexedConnection>>,
    breaker: CircuitBreaker,
}

const NS_PER_SEC: u64 = 1_000_000_000;

impl RedisLimiter {
    /// A limiter for the policy `policy` running `spec`; `count_rejected` as in
    /// [`rampart_ratelimit::Algorithm::decide`]. Does not connect: the first decision does.
    pub fn new(
        policy: &str,
        spec: Spec,
        count_rejected: bool,
        settings: &RedisSettings,
    ) -> Result<Self, ConfigError> {
        let program = Program::new(&spec)?;
        let client = redis::Client::open(settings.url.as_str()).map_err(ConfigError::Url)?;
        Ok(Self {
            spec,
            count_rejected,
            prefix: format!("rampart:{{{policy}:"),
            program,
            client,
            timeout: settings.timeout,
            conn: Mutex::new(None),
            breaker: CircuitBreaker::new(settings.breaker_failures, settings.breaker_cool_down),
        })
    }

    /// The algorithm and its parameters.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Whether refusals use up allowance.
    pub fn count_rejected(&self) -> bool {
        self.count_rejected
    }

    /// The circuit breaker guarding this limiter's calls.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The Redis key holding `client`'s state: `rampart:{<policy>:<client>}:<algorithm>`.
    pub fn key(&self, client: &str) -> String {
        format!("{}{client}}}:{}", self.prefix, self.program.name)
    }

    /// Decides for a request of `cost` by `client`, at Redis's time, in one round trip.
    pub async fn decide(&self, client: &str, cost: u64) -> Result<Outcome, RedisError> {
        self.guarded(client, cost, None).await
    }

    /// As [`RedisLimiter::decide`], at `now` nanoseconds since the Unix epoch instead of
    /// Redis's time: for replaying traces and for testing the scripts against the pure
    /// algorithms. Keys then expire 10 s after their state would be fresh, since Redis's
    /// expiry clock does not follow the injected time.
    pub async fn decide_at(
        &self,
        client: &str,
        cost: u64,
        now: Nanos,
    ) -> Result<Outcome, RedisError> {
        self.guarded(client, cost, Some(now)).await
    }

    async fn guarded(
        &self,
        client: &str,
        cost: u64,
        now: Option<Nanos>,
    ) -> Result<Outcome, RedisError> {
        let Some(permit) = self.breaker.try_acquire(Instant::now()) else {
            return Err(RedisError::CircuitOpen);
        };
        let result = match tokio::time::timeout(self.timeout, self.call(client, cost, now)).await {
            // The client's own response timeout is the same bound: report both alike.
            Ok(Err(RedisError::Redis(e))) if e.is_timeout() => {
                Err(RedisError::Timeout(self.timeout))
            }
            Ok(result) => result,
            Err(_) => Err(RedisError::Timeout(self.timeout)),
        };
        match result {
            Ok(outcome) => {
                permit.succeeded();
                Ok(outcome)
            }
            Err(e) => {
                if drops_connection(&e) {
                    self.forget_connection();
                }
                permit.failed(Instant::now());
                Err(e)
            }
        }
    }

    async fn call(
        &self,
        client: &str,
        cost: u64,
        now: Option<Nanos>,
    ) -> Result<Outcome, RedisError> {
        let mut conn = self.connection().await?;
        let key = self.key(client);
        let (secs, nanos) = match now {
            Some(t) => ((t / NS_PER_SEC).to_string(), (t % NS_PER_SEC).to_string()),
            None => (String::new(), String::new()),
        };
        let args = |cmd: &mut redis::Cmd| {
            cmd.arg(1)
                .arg(&key)
                .arg(&secs)
                .arg(&nanos)
                .arg(cost)
                .arg(if self.count_rejected { "1" } else { "0" });
            for p in &self.program.params {
                cmd.arg(*p);
            }
        };
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha.arg(self.program.script.get_hash());
        args(&mut evalsha);
        let reply: Vec<i64> = match evalsha.query_async(&mut conn).await {
            Ok(reply) => reply,
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                // First use on this server (or after a restart): EVAL runs the script and
                // caches it, so later calls are back to one EVALSHA.
                let mut eval = redis::cmd("EVAL");
                eval.arg(&self.program.code);
                args(&mut eval);
                eval.query_async(&mut conn).await?
            }
            Err(e) => return Err(e.into()),
        };
        parse(&reply).ok_or(RedisError::BadReply(reply))
    }

    /// The shared connection, connecting when there is none. One task connects at a time;
    /// the others wait for it (within their own timeout) rather than open more sockets.
    async fn connection(&self) -> Result<MultiplexedConnection, RedisError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    fn forget_connection(&self) {
        // When another task holds the slot it is connecting afresh anyway.
        if let Ok(mut slot) = self.conn.try_lock() {
            *slot = None;
        }
    }
}

/// Errors after which the connection is not worth keeping: it is broken, or it hangs.
fn drops_connection(e: &RedisError) -> bool {
    match e {
        RedisError::Timeout(_) => true,
        RedisError::Redis(e) => e.is_io_error() || e.is_connection_dropped() || e.is_timeout(),
        RedisError::CircuitOpen | RedisError::BadReply(_) => false,
    }
}

/// The scripts reply `{0, remaining, reset_ns}`, `{1, delay_ns}` or `{2, retry_ns}`;
/// -1 nanoseconds stands for "never".
fn parse(reply: &[i64]) -> Option<Outcome> {
    let duration = |n: i64| {
        if n < 0 {
            Duration::from_nanos(u64::MAX)
        } else {
            Duration::from_nanos(n.unsigned_abs())
        }
    };
    match *reply {
        [0, remaining, reset, ..] => Some(Outcome::Allow {
            remaining: u64::try_from(remaining).ok()?,
            reset: duration(reset),
        }),
        [1, delay, ..] => Some(Outcome::Delay(duration(delay))),
        [2, retry, ..] => Some(Outcome::Deny {
            retry_after: duration(retry),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_put_policy_and_client_in_one_hash_tag() {
        let spec = Spec::Gcra {
            count: 10,
            period: Duration::from_secs(1),
            burst: 5,
        };
        let limiter = RedisLimiter::new(
            "login",
            spec,
            false,
            &RedisSettings::new("redis://127.0.0.1:1"),
        )
        .unwrap();
        assert_eq!(
            limiter.key("ip:192.0.2.1"),
            "rampart:{login:ip:192.0.2.1}:gcra"
        );
    }

    #[test]
    fn replies_parse_and_never_means_the_longest_duration() {
        assert_eq!(
            parse(&[2, -1, 0]),
            Some(Outcome::Deny {
                retry_after: Duration::from_nanos(u64::MAX)
            })
        );
        assert_eq!(
            parse(&[0, 3, 1_000]),
            Some(Outcome::Allow {
                remaining: 3,
                reset: Duration::from_micros(1)
            })
        );
        assert_eq!(parse(&[7]), None);
    }

    #[test]
    fn unsupported_and_oversized_policies_are_refused_when_built() {
        let settings = RedisSettings::new("redis://127.0.0.1:1");
        let log = Spec::SlidingLog {
            count: 5,
            period: Duration::from_secs(60),
        };
        assert!(matches!(
            RedisLimiter::new("p", log, false, &settings),
            Err(ConfigError::Unsupported(_))
        ));
        let huge = Spec::SlidingWindow {
            count: 1_000_000,
            period: Duration::from_secs(86_400),
        };
        assert!(matches!(
            RedisLimiter::new("p", huge, false, &settings),
            Err(ConfigError::TooLarge(_))
        ));
    }
}
