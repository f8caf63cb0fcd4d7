//! [`RedisLimiter`]: one policy's decisions made atomically inside Redis.

use std::time::Duration;

use rampart_ratelimit::{Answer, BanInfo, BanRule, Nanos, Outcome, Spec};
use redis::{ErrorKind, ServerErrorKind};

use crate::breaker::CircuitBreaker;
use crate::connection::{Connector, SCAN_COUNT};
use crate::script::{Program, ban_params, strike_program};

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
    /// A scaled parameter does not fit the exact range of Lua numbers (2^52).
    #[error("{0} is too large for the Redis scripts")]
    TooLarge(&'static str),
    /// The URL is not a Redis URL.
    #[error("invalid redis url: {0}")]
    Url(#[source] redis::RedisError),
}

/// One rate-limit policy whose state and bans live in Redis, shared by every gateway that
/// uses the same policy name and Redis.
#[derive(Debug)]
pub struct RedisLimiter {
    spec: Spec,
    count_rejected: bool,
    ban: Option<BanRule>,
    ban_params: [u64; 4],
    prefix: String,
    program: Program,
    strike: (redis::Script, String),
    connector: Connector,
}

const NS_PER_SEC: u64 = 1_000_000_000;

impl RedisLimiter {
    /// A limiter for the policy `policy` running `spec`; `count_rejected` as in
    /// [`rampart_ratelimit::Algorithm::decide`]; `ban` bans clients that keep getting
    /// refused, as [`rampart_ratelimit::Bans`] does, but in Redis so that every gateway sees
    /// the ban. Does not connect: the first decision does.
    pub fn new(
        policy: &str,
        spec: Spec,
        count_rejected: bool,
        ban: Option<BanRule>,
        settings: &RedisSettings,
    ) -> Result<Self, ConfigError> {
        let program = Program::new(&spec)?;
        let ban_params = ban_params(ban.as_ref())?;
        let connector = Connector::new(settings).map_err(ConfigError::Url)?;
        Ok(Self {
            spec,
            count_rejected,
            ban,
            ban_params,
            prefix: format!("rampart:{{{policy}:"),
            program,
            strike: strike_program(),
            connector,
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

    /// The ban rule, if the policy bans.
    pub fn ban(&self) -> Option<BanRule> {
        self.ban
    }

    /// The circuit breaker guarding this limiter's decisions.
    pub fn breaker(&self) -> &CircuitBreaker {
        self.connector.breaker()
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.connector.timeout()
    }

    /// The Redis key holding `client`'s state: `rampart:{<policy>:<client>}:<algorithm>`.
    pub fn key(&self, client: &str) -> String {
        self.tagged(client, self.program.name)
    }

    /// The key holding `client`'s ban while it is in force: `rampart:{<policy>:<client>}:ban`,
    /// a hash of its end (`s`, `n`: seconds and nanoseconds since the epoch), its strikes
    /// (`k`) and the client (`c`), expiring when the ban ends.
    pub fn ban_key(&self, client: &str) -> String {
        self.tagged(client, "ban")
    }

    /// The key remembering how many times `client` was banned:
    /// `rampart:{<policy>:<client>}:strikes`, a hash of the count (`k`) and when it is
    /// forgotten (`s`, `n`), expiring then.
    pub fn strikes_key(&self, client: &str) -> String {
        self.tagged(client, "strikes")
    }

    /// The key counting `client`'s refusals in the current ban-counting window:
    /// `rampart:{<policy>:<client>}:refusals`, a hash of the window's start (`s`, `n`) and
    /// the count (`c`), expiring when the window ends.
    pub fn refusals_key(&self, client: &str) -> String {
        self.tagged(client, "refusals")
    }

    fn tagged(&self, client: &str, suffix: &str) -> String {
        format!("{}{client}}}:{suffix}", self.prefix)
    }

    /// Decides for a request of `cost` by `client`, at Redis's time, in one round trip: a
    /// banned client is answered [`Answer::Banned`] before the rate is consulted, and the
    /// refusal that bans it is answered the same way.
    pub async fn decide(&self, client: &str, cost: u64) -> Result<Answer, RedisError> {
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
    ) -> Result<Answer, RedisError> {
        self.guarded(client, cost, Some(now)).await
    }

    /// Counts a refusal of `client` by another layer (a bad credential) towards its ban,
    /// without a rate decision, at Redis's time: exactly as a refused decision counts, in
    /// one atomic call bounded by the timeout and the circuit breaker. Returns the ban's
    /// length when this strike bans; `None` when it does not, when the client is already
    /// banned (a banned client's strikes are not counted, as its requests are not), and,
    /// without a call, when the policy does not ban.
    pub async fn strike(&self, client: &str) -> Result<Option<Duration>, RedisError> {
        self.guarded_strike(client, None).await
    }

    /// As [`RedisLimiter::strike`], at `now` nanoseconds since the Unix epoch (as
    /// [`RedisLimiter::decide_at`]).
    pub async fn strike_at(
        &self,
        client: &str,
        now: Nanos,
    ) -> Result<Option<Duration>, RedisError> {
        self.guarded_strike(client, Some(now)).await
    }

    async fn guarded_strike(
        &self,
        client: &str,
        now: Option<Nanos>,
    ) -> Result<Option<Duration>, RedisError> {
        if self.ban.is_none() {
            return Ok(None);
        }
        let reply = self
            .connector
            .guarded(self.run(&self.strike.0, &self.strike.1, &[], client, 0, now))
            .await?;
        match *reply.as_slice() {
            [3, length, 1, ..] => Ok(Some(Duration::from_nanos(
                u64::try_from(length).unwrap_or(u64::MAX),
            ))),
            [2, ..] | [3, _] => Ok(None),
            _ => Err(RedisError::BadReply(reply)),
        }
    }

    /// The bans of this policy in force at Redis's time, sorted by client.
    ///
    /// Scans the keyspace (`SCAN MATCH rampart:{<policy>:*}:ban`), so it costs one round
    /// trip per thousand keys of the database; the whole listing is bounded by 2 s. It does
    /// not go through the circuit breaker: an operator's listing neither waits for the
    /// breaker nor trips it for the decisions. With Redis Cluster it lists the node the
    /// connection reaches.
    pub async fn bans(&self) -> Result<Vec<BanInfo>, RedisError> {
        self.connector.admin(self.list_bans(None)).await
    }

    /// As [`RedisLimiter::bans`], at `now` nanoseconds since the Unix epoch (for bans made
    /// by [`RedisLimiter::decide_at`]).
    pub async fn bans_at(&self, now: Nanos) -> Result<Vec<BanInfo>, RedisError> {
        self.connector.admin(self.list_bans(Some(now))).await
    }

    /// Lifts `client`'s ban and forgets its strikes and its recent refusals, as
    /// [`rampart_ratelimit::Bans::lift`]; true if it was banned. Atomic, bounded like
    /// [`RedisLimiter::bans`].
    pub async fn lift(&self, client: &str) -> Result<bool, RedisError> {
        self.connector
            .admin(async {
                let mut conn = self.connector.connection().await?;
                let (banned, _forgotten): (u64, u64) = redis::pipe()
                    .atomic()
                    .cmd("DEL")
                    .arg(self.ban_key(client))
                    .cmd("DEL")
                    .arg(self.strikes_key(client))
                    .arg(self.refusals_key(client))
                    .query_async(&mut conn)
                    .await?;
                Ok(banned > 0)
            })
            .await
    }

    async fn guarded(
        &self,
        client: &str,
        cost: u64,
        now: Option<Nanos>,
    ) -> Result<Answer, RedisError> {
        self.connector.guarded(self.call(client, cost, now)).await
    }

    async fn call(
        &self,
        client: &str,
        cost: u64,
        now: Option<Nanos>,
    ) -> Result<Answer, RedisError> {
        let program = &self.program;
        let reply = self
            .run(
                &program.script,
                &program.code,
                &program.params,
                client,
                cost,
                now,
            )
            .await?;
        parse(&reply).ok_or(RedisError::BadReply(reply))
    }

    /// Runs a script (`script`, whose source is `code`) over `client`'s keys.
    async fn run(
        &self,
        script: &redis::Script,
        code: &str,
        params: &[u64],
        client: &str,
        cost: u64,
        now: Option<Nanos>,
    ) -> Result<Vec<i64>, RedisError> {
        let mut conn = self.connector.connection().await?;
        let keys = [
            self.key(client),
            self.ban_key(client),
            self.strikes_key(client),
            self.refusals_key(client),
        ];
        let (secs, nanos) = match now {
            Some(t) => ((t / NS_PER_SEC).to_string(), (t % NS_PER_SEC).to_string()),
            None => (String::new(), String::new()),
        };
        // The client is only needed to name a ban in a listing.
        let ban_client = if self.ban.is_some() { client } else { "" };
        let args = |cmd: &mut redis::Cmd| {
            cmd.arg(keys.len()).arg(&keys[..]);
            cmd.arg(&secs)
                .arg(&nanos)
                .arg(cost)
                .arg(if self.count_rejected { "1" } else { "0" })
                .arg(&self.ban_params[..])
                .arg(ban_client);
            for p in params {
                cmd.arg(*p);
            }
        };
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha.arg(script.get_hash());
        args(&mut evalsha);
        let reply: Vec<i64> = match evalsha.query_async(&mut conn).await {
            Ok(reply) => reply,
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                // First use on this server (or after a restart): EVAL runs the script and
                // caches it, so later calls are back to one EVALSHA.
                let mut eval = redis::cmd("EVAL");
                eval.arg(code);
                args(&mut eval);
                eval.query_async(&mut conn).await?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(reply)
    }

    async fn list_bans(&self, now: Option<Nanos>) -> Result<Vec<BanInfo>, RedisError> {
        let mut conn = self.connector.connection().await?;
        let pattern = format!("{}*}}:ban", glob_escape(&self.prefix));
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut conn)
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // SCAN may return a key more than once.
        keys.sort_unstable();
        keys.dedup();
        let now = match now {
            Some(now) => u128::from(now),
            None => {
                let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
                u128::from(secs) * u128::from(NS_PER_SEC) + u128::from(micros) * 1000
            }
        };
        let mut bans = Vec::new();
        for chunk in keys.chunks(SCAN_COUNT as usize) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("HMGET")
                    .arg(key)
                    .arg("s")
                    .arg("n")
                    .arg("k")
                    .arg("c");
            }
            type Fields = (Option<u64>, Option<u64>, Option<u32>, Option<Vec<u8>>);
            let rows: Vec<Fields> = pipe.query_async(&mut conn).await?;
            for (key, row) in chunk.iter().zip(rows) {
                let (Some(secs), Some(nanos), Some(strikes), Some(client)) = row else {
                    // Expired between the scan and the read.
                    continue;
                };
                let Ok(client) = String::from_utf8(client) else {
                    continue;
                };
                // A policy named `a` scans the keys of a policy `a:b` too; the client the
                // ban names tells whose key it is.
                if self.ban_key(&client).as_bytes() != key.as_slice() {
                    continue;
                }
                let until = u128::from(secs) * u128::from(NS_PER_SEC) + u128::from(nanos);
                if until > now {
                    let left = u64::try_from(until - now).unwrap_or(u64::MAX);
                    bans.push(BanInfo {
                        client,
                        remaining: Duration::from_nanos(left),
                        strikes,
                    });
                }
            }
        }
        bans.sort_by(|a, b| a.client.cmp(&b.client));
        Ok(bans)
    }
}

/// Escapes the glob characters of `s` for `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The scripts reply `{0, remaining, reset_ns}`, `{1, delay_ns}`, `{2, retry_ns}` or
/// `{3, banned_ns}`; -1 nanoseconds stands for "never".
fn parse(reply: &[i64]) -> Option<Answer> {
    let duration = |n: i64| {
        if n < 0 {
            Duration::from_nanos(u64::MAX)
        } else {
            Duration::from_nanos(n.unsigned_abs())
        }
    };
    let outcome = match *reply {
        [0, remaining, reset, ..] => Outcome::Allow {
            remaining: u64::try_from(remaining).ok()?,
            reset: duration(reset),
        },
        [1, delay, ..] => Outcome::Delay(duration(delay)),
        [2, retry, ..] => Outcome::Deny {
            retry_after: duration(retry),
        },
        [3, left, ..] => return Some(Answer::Banned(duration(left))),
        _ => return None,
    };
    Some(Answer::Decided(outcome))
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
            None,
            &RedisSettings::new("redis://127.0.0.1:1"),
        )
        .unwrap();
        assert_eq!(
            limiter.key("ip:192.0.2.1"),
            "rampart:{login:ip:192.0.2.1}:gcra"
        );
        assert_eq!(
            limiter.ban_key("ip:192.0.2.1"),
            "rampart:{login:ip:192.0.2.1}:ban"
        );
        assert_eq!(
            limiter.strikes_key("ip:192.0.2.1"),
            "rampart:{login:ip:192.0.2.1}:strikes"
        );
        assert_eq!(
            limiter.refusals_key("ip:192.0.2.1"),
            "rampart:{login:ip:192.0.2.1}:refusals"
        );
    }

    #[test]
    fn replies_parse_and_never_means_the_longest_duration() {
        assert_eq!(
            parse(&[2, -1, 0]),
            Some(Answer::Decided(Outcome::Deny {
                retry_after: Duration::from_nanos(u64::MAX)
            }))
        );
        assert_eq!(
            parse(&[0, 3, 1_000]),
            Some(Answer::Decided(Outcome::Allow {
                remaining: 3,
                reset: Duration::from_micros(1)
            }))
        );
        assert_eq!(
            parse(&[1, 5_000_000]),
            Some(Answer::Decided(Outcome::Delay(Duration::from_millis(5))))
        );
        assert_eq!(
            parse(&[3, 2_000_000_000]),
            Some(Answer::Banned(Duration::from_secs(2)))
        );
        assert_eq!(parse(&[7]), None);
        assert_eq!(parse(&[0, -1, 0]), None);
    }

    #[test]
    fn every_algorithm_builds_and_oversized_policies_are_refused() {
        let settings = RedisSettings::new("redis://127.0.0.1:1");
        let s = Duration::from_secs;
        for spec in [
            Spec::SlidingLog {
                count: 5,
                period: s(60),
            },
            Spec::LeakyBucket {
                count: 30,
                per_minute: true,
                burst: 10,
                delay: 5,
            },
        ] {
            assert!(RedisLimiter::new("p", spec, false, None, &settings).is_ok());
        }
        for spec in [
            Spec::SlidingLog {
                count: 5,
                period: s(60 * 86_400),
            },
            // A burst of a million at one a minute takes two years to leak.
            Spec::LeakyBucket {
                count: 1,
                per_minute: true,
                burst: 1_000_000,
                delay: 0,
            },
        ] {
            assert!(matches!(
                RedisLimiter::new("p", spec, false, None, &settings),
                Err(ConfigError::TooLarge(_))
            ));
        }
        let huge = Spec::SlidingWindow {
            count: 1_000_000,
            period: Duration::from_secs(86_400),
        };
        assert!(matches!(
            RedisLimiter::new("p", huge, false, None, &settings),
            Err(ConfigError::TooLarge(_))
        ));
        let gcra = Spec::Gcra {
            count: 1,
            period: Duration::from_secs(1),
            burst: 1,
        };
        let month = Duration::from_secs(30 * 86_400);
        let ban = |max_duration| BanRule {
            after: 3,
            within: Duration::from_secs(60),
            duration: Duration::from_secs(60),
            max_duration,
        };
        assert!(
            RedisLimiter::new(
                "p",
                gcra,
                false,
                Some(ban(Duration::from_secs(86_400))),
                &settings
            )
            .is_ok()
        );
        assert!(matches!(
            RedisLimiter::new("p", gcra, false, Some(ban(month)), &settings),
            Err(ConfigError::TooLarge(_))
        ));
    }

    #[test]
    fn listing_patterns_escape_glob_characters() {
        assert_eq!(
            glob_escape(r"rampart:{a*b?[c]\:"),
            r"rampart:{a\*b\?\[c\]\\:"
        );
    }
}
