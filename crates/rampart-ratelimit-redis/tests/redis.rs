//! Against a real redis-server: the scripts decide exactly as the pure algorithms and ban
//! exactly as the in-memory bans, a fleet of gateways never admits more than the limit and
//! shares its bans, every key expires, and each failure mode holds when Redis dies or hangs,
//! within the timeout.

// Test helpers outside `#[test]` functions fail by panicking too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt::Debug;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_core::{ManualClock, SystemClock};
use rampart_ratelimit::{
    Algorithm, Answer, BanInfo, BanRule, Bans, DecisionPath, FixedWindow, Gcra, LeakyBucket, Nanos,
    Outcome, SharedStore, SlidingLog, SlidingWindow, Spec, TokenBucket,
};
use rampart_ratelimit_redis::{
    BreakerState, FailureMode, FleetLimiter, RedisError, RedisLimiter, RedisSettings,
};
use rampart_test_support::redis::RedisServer;

fn nz(n: u64) -> NonZeroU64 {
    NonZeroU64::new(n).unwrap()
}

fn settings(server: &RedisServer, timeout: Duration) -> RedisSettings {
    RedisSettings {
        timeout,
        ..RedisSettings::new(server.url())
    }
}

/// A small deterministic generator (no seeds to chase in a failure report).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Feeds the same trace to the script (with injected time) and to the pure algorithm;
/// returns whether the script ever delayed.
async fn same_decisions<A>(server: &RedisServer, name: &str, spec: Spec, algo: A, seed: u64) -> bool
where
    A: Algorithm,
    A::State: Debug,
{
    let period = match spec {
        Spec::Gcra { period, .. }
        | Spec::TokenBucket { period, .. }
        | Spec::FixedWindow { period, .. }
        | Spec::SlidingWindow { period, .. }
        | Spec::SlidingLog { period, .. } => period,
        Spec::LeakyBucket { per_minute, .. } => {
            Duration::from_secs(if per_minute { 60 } else { 1 })
        }
    };
    // A cost of `limit + 1` is never admitted.
    let limit = match spec {
        Spec::Gcra { burst, .. } => burst,
        Spec::TokenBucket { capacity, .. } => capacity,
        Spec::FixedWindow { count, .. }
        | Spec::SlidingWindow { count, .. }
        | Spec::SlidingLog { count, .. } => count,
        Spec::LeakyBucket { burst, .. } => burst + 1,
    };
    let mut delayed = false;
    let period_ns = period.as_nanos() as u64;
    for count_rejected in [false, true] {
        let limiter = RedisLimiter::new(
            name,
            spec,
            count_rejected,
            None,
            &settings(server, Duration::from_secs(1)),
        )
        .unwrap();
        let client = format!("client-{count_rejected}");
        let mut rng = Lcg(seed);
        let mut state = A::State::default();
        let (mut allowed, mut denied) = (false, false);
        // Late 2026 in nanoseconds since the epoch, off any round number.
        let mut now: Nanos = 1_790_000_000 * 1_000_000_000 + 123_456_789;
        for step in 0..300 {
            now += match rng.next() % 10 {
                0..=2 => 0,
                3..=6 => rng.next() % (period_ns / 4 + 1),
                7 | 8 => rng.next() % (period_ns + 1),
                _ => rng.next() % (3 * period_ns),
            };
            let cost = match rng.next() % 20 {
                0 => limit + 1,
                1..=4 => 2,
                _ => 1,
            };
            let expected = algo.decide(&mut state, now, cost, count_rejected);
            let got = limiter.decide_at(&client, cost, now).await.unwrap();
            allowed |= matches!(got, Answer::Decided(Outcome::Allow { .. }));
            delayed |= matches!(got, Answer::Decided(Outcome::Delay(_)));
            denied |= matches!(got, Answer::Decided(Outcome::Deny { .. }));
            assert_eq!(
                got,
                Answer::Decided(expected),
                "{name} count_rejected={count_rejected} step {step} now {now} cost {cost}: \
                 pure state after {state:?}"
            );
        }
        assert!(
            allowed && denied,
            "{name}: the trace must both admit and refuse"
        );
    }
    delayed
}

#[tokio::test]
async fn scripts_decide_exactly_as_the_pure_algorithms() {
    let server = RedisServer::start();
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    for (i, (count, period, burst)) in [(3, s(1), 4), (10, ms(100), 1), (7, ms(333), 3)]
        .into_iter()
        .enumerate()
    {
        let spec = Spec::Gcra {
            count,
            period,
            burst,
        };
        let algo = Gcra::new(nz(count), period, nz(burst));
        same_decisions(&server, &format!("gcra{i}"), spec, algo, 11 + i as u64).await;
    }
    for (i, (count, period)) in [(5, s(1)), (7, ms(333)), (1, ms(50))]
        .into_iter()
        .enumerate()
    {
        let spec = Spec::FixedWindow { count, period };
        let algo = FixedWindow::new(nz(count), period);
        same_decisions(&server, &format!("fw{i}"), spec, algo, 21 + i as u64).await;
        let spec = Spec::SlidingWindow { count, period };
        let algo = SlidingWindow::new(nz(count), period);
        same_decisions(&server, &format!("sw{i}"), spec, algo, 31 + i as u64).await;
    }
    for (i, (count, period, capacity)) in [(3, s(1), 5), (7, ms(900), 2), (1, ms(70), 1)]
        .into_iter()
        .enumerate()
    {
        let spec = Spec::TokenBucket {
            count,
            period,
            capacity,
        };
        let algo = TokenBucket::new(nz(count), period, nz(capacity));
        same_decisions(&server, &format!("tb{i}"), spec, algo, 41 + i as u64).await;
    }
}

#[tokio::test]
async fn the_sliding_log_and_leaky_bucket_scripts_decide_exactly_as_the_pure_algorithms() {
    let server = RedisServer::start();
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    for (i, (count, period)) in [(5, s(1)), (3, ms(333)), (1, ms(50)), (12, ms(700))]
        .into_iter()
        .enumerate()
    {
        let spec = Spec::SlidingLog { count, period };
        let algo = SlidingLog::new(nz(count), period);
        same_decisions(&server, &format!("log{i}"), spec, algo, 51 + i as u64).await;
    }
    for (i, (count, per_minute, burst, delay)) in [
        (10, false, 5, 0),
        (10, false, 5, 5),
        (7, false, 4, 2),
        (30, true, 3, 1),
        (1, false, 0, 0),
        (3, false, 6, 9),
    ]
    .into_iter()
    .enumerate()
    {
        let spec = Spec::LeakyBucket {
            count,
            per_minute,
            burst,
            delay,
        };
        let algo = LeakyBucket::nginx(nz(count), per_minute, burst, delay);
        let delayed =
            same_decisions(&server, &format!("leaky{i}"), spec, algo, 61 + i as u64).await;
        assert_eq!(
            delayed,
            delay < burst,
            "leaky{i}: delays only below `delay`"
        );
    }
}

/// Hand-made traces where the arithmetic is decisive: nginx's whole milliseconds (a request
/// 0.999 ms later has leaked nothing), a delay that rounds down to none, and a sliding log
/// whose oldest entries leave the window exactly at its edge.
#[tokio::test]
async fn hand_made_edges_of_the_log_and_the_bucket() {
    let server = RedisServer::start();
    const MS: u64 = 1_000_000;
    let t0: Nanos = 1_790_000_000 * SEC + 400 * MS + 999_999;
    for count_rejected in [false, true] {
        let spec = Spec::LeakyBucket {
            count: 10,
            per_minute: false,
            burst: 2,
            delay: 1,
        };
        let algo = LeakyBucket::nginx(nz(10), false, 2, 1);
        let limiter = RedisLimiter::new(
            &format!("edge-leaky-{count_rejected}"),
            spec,
            count_rejected,
            None,
            &settings(&server, Duration::from_secs(1)),
        )
        .unwrap();
        let mut state = Default::default();
        let mut seen = Vec::new();
        for (offset, cost) in [
            (0, 1),
            (1, 1),
            (2, 1),
            (3, 1),
            (100 * MS - 1, 1),
            (100 * MS, 1),
            (150 * MS, 1),
            (199 * MS + 1, 2),
            (400 * MS, 3),
            (2_000 * MS, 4),
            (2_000 * MS, 1),
        ] {
            let now = t0 + offset;
            let expected = algo.decide(&mut state, now, cost, count_rejected);
            let got = limiter.decide_at("c", cost, now).await.unwrap();
            assert_eq!(
                got,
                Answer::Decided(expected),
                "leaky at +{offset} ns cost {cost}"
            );
            seen.push(expected);
        }
        assert!(seen.iter().any(|o| matches!(o, Outcome::Delay(_))));
        assert!(seen.iter().any(|o| matches!(o, Outcome::Deny { .. })));

        let window = 1_000 * MS;
        let spec = Spec::SlidingLog {
            count: 3,
            period: Duration::from_nanos(window),
        };
        let algo = SlidingLog::new(nz(3), Duration::from_nanos(window));
        let limiter = RedisLimiter::new(
            &format!("edge-log-{count_rejected}"),
            spec,
            count_rejected,
            None,
            &settings(&server, Duration::from_secs(1)),
        )
        .unwrap();
        let mut state = Default::default();
        for (offset, cost) in [
            (0, 2),
            (1, 1),
            (2, 1),
            (5, 4),
            (window - 1, 1),
            (window, 1),
            (window, 1),
            (window + 1, 2),
            (window + 2, 1),
            // One entry, then refusals costing more than it: counted, they replace only
            // as many old entries as the log holds.
            (3 * window, 1),
            (3 * window + 1, 3),
            (3 * window + 2, 2),
            (3 * window + 3, 0),
            // An empty log refusing a request above the limit.
            (5 * window, 4),
            (5 * window + 1, 3),
        ] {
            let now = t0 + offset;
            let expected = algo.decide(&mut state, now, cost, count_rejected);
            let got = limiter.decide_at("c", cost, now).await.unwrap();
            assert_eq!(
                got,
                Answer::Decided(expected),
                "log at +{offset} ns cost {cost}"
            );
        }
    }
}

#[tokio::test]
async fn with_redis_time_keys_expire_when_their_state_is_fresh_again() {
    let server = RedisServer::start();
    let spec = Spec::Gcra {
        count: 1,
        period: Duration::from_millis(300),
        burst: 1,
    };
    let limiter = RedisLimiter::new(
        "expiry",
        spec,
        false,
        None,
        &settings(&server, Duration::from_secs(2)),
    )
    .unwrap();
    assert!(matches!(
        limiter.decide("c", 1).await.unwrap(),
        Answer::Decided(Outcome::Allow { remaining: 0, .. })
    ));
    match limiter.decide("c", 1).await.unwrap() {
        Answer::Decided(Outcome::Deny { retry_after }) => {
            assert!(retry_after <= Duration::from_millis(300))
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(limiter.key("c"))
        .query(&mut conn)
        .unwrap();
    assert!((1..=300).contains(&ttl), "ttl {ttl} ms");
    tokio::time::sleep(Duration::from_millis(ttl as u64 + 50)).await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(limiter.key("c"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(exists, 0);
    assert!(matches!(
        limiter.decide("c", 1).await.unwrap(),
        Answer::Decided(Outcome::Allow { .. })
    ));
}

#[tokio::test]
async fn with_redis_time_log_and_bucket_keys_expire_too() {
    let server = RedisServer::start();
    let log = Spec::SlidingLog {
        count: 2,
        period: Duration::from_millis(300),
    };
    // Three requests leave an excess of two, which leaks (with one more) in 300 ms.
    let bucket = Spec::LeakyBucket {
        count: 10,
        per_minute: false,
        burst: 2,
        delay: 2,
    };
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    for (name, spec) in [("log", log), ("bucket", bucket)] {
        let limiter = RedisLimiter::new(
            name,
            spec,
            false,
            None,
            &settings(&server, Duration::from_secs(2)),
        )
        .unwrap();
        for _ in 0..3 {
            limiter.decide("c", 1).await.unwrap();
        }
        let ttl: i64 = redis::cmd("PTTL")
            .arg(limiter.key("c"))
            .query(&mut conn)
            .unwrap();
        assert!((1..=301).contains(&ttl), "{name}: ttl {ttl} ms");
        tokio::time::sleep(Duration::from_millis(ttl as u64 + 50)).await;
        let exists: i64 = redis::cmd("EXISTS")
            .arg(limiter.key("c"))
            .query(&mut conn)
            .unwrap();
        assert_eq!(exists, 0, "{name}");
    }
}

/// Three gateways, each with its own connection, hammer one key concurrently.
async fn fleet_admits_at_most(spec: Spec, limit: usize, name: &str) {
    let server = RedisServer::start();
    let gateways: Vec<Arc<FleetLimiter>> = (0..3)
        .map(|_| {
            let redis = RedisLimiter::new(
                name,
                spec,
                false,
                None,
                &settings(&server, Duration::from_secs(1)),
            )
            .unwrap();
            Arc::new(FleetLimiter::new(
                redis,
                FailureMode::Closed,
                1000,
                Arc::new(SystemClock),
            ))
        })
        .collect();
    let mut tasks = Vec::new();
    for gateway in &gateways {
        for _ in 0..4 {
            let gateway = gateway.clone();
            tasks.push(tokio::spawn(async move {
                let (mut admitted, mut failed) = (0, 0);
                for _ in 0..50 {
                    let d = gateway.decide("hot", 1).await;
                    match (d.path, d.answer) {
                        (DecisionPath::Shared, Answer::Decided(Outcome::Allow { .. })) => {
                            admitted += 1
                        }
                        (DecisionPath::Shared, _) => {}
                        _ => failed += 1,
                    }
                }
                (admitted, failed)
            }));
        }
    }
    let (mut admitted, mut failed) = (0, 0);
    for t in tasks {
        let (a, f) = t.await.unwrap();
        admitted += a;
        failed += f;
    }
    assert!(admitted <= limit, "{name}: admitted {admitted} > {limit}");
    if failed == 0 {
        assert_eq!(admitted, limit, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_three_gateways_never_admits_more_than_the_limit() {
    let hour = Duration::from_secs(3600);
    fleet_admits_at_most(
        Spec::Gcra {
            count: 1,
            period: hour,
            burst: 50,
        },
        50,
        "fleet-gcra",
    )
    .await;
    fleet_admits_at_most(
        Spec::SlidingWindow {
            count: 40,
            period: hour,
        },
        40,
        "fleet-sw",
    )
    .await;
    fleet_admits_at_most(
        Spec::TokenBucket {
            count: 1,
            period: hour,
            capacity: 30,
        },
        30,
        "fleet-tb",
    )
    .await;
}

const TIMEOUT: Duration = Duration::from_millis(50);

fn gateway(server: &RedisServer, mode: FailureMode) -> FleetLimiter {
    let spec = Spec::Gcra {
        count: 1,
        period: Duration::from_secs(3600),
        burst: 5,
    };
    let redis = RedisLimiter::new(
        &format!("{mode:?}"),
        spec,
        false,
        None,
        &settings(server, TIMEOUT),
    )
    .unwrap();
    FleetLimiter::new(redis, mode, 1000, Arc::new(SystemClock))
}

#[tokio::test]
async fn when_redis_dies_each_failure_mode_holds_within_the_timeout() {
    let mut server = RedisServer::start();
    let gateways = [
        gateway(&server, FailureMode::Open),
        gateway(&server, FailureMode::Closed),
        gateway(&server, FailureMode::Local),
    ];
    for g in &gateways {
        for _ in 0..3 {
            let d = g.decide("c", 1).await;
            assert_eq!(d.path, DecisionPath::Shared, "{:?}", d.error);
            assert!(matches!(d.answer, Answer::Decided(Outcome::Allow { .. })));
        }
    }
    server.kill();
    for g in &gateways {
        let mut local_admitted = 0;
        for i in 0..20 {
            let started = Instant::now();
            let d = g.decide("c", 1).await;
            let took = started.elapsed();
            assert!(
                took < 4 * TIMEOUT,
                "{:?} decision {i} took {took:?}",
                g.mode()
            );
            assert!(d.error.is_some());
            match g.mode() {
                FailureMode::Open => {
                    assert_eq!(d.path, DecisionPath::FailOpen);
                    assert!(matches!(d.answer, Answer::Decided(Outcome::Allow { .. })));
                }
                FailureMode::Closed => {
                    assert_eq!(d.path, DecisionPath::FailClosed);
                    assert_eq!(
                        d.answer,
                        Answer::Decided(Outcome::Deny {
                            retry_after: Duration::from_secs(2)
                        })
                    );
                }
                FailureMode::Local => {
                    assert_eq!(d.path, DecisionPath::Local);
                    local_admitted +=
                        usize::from(matches!(d.answer, Answer::Decided(Outcome::Allow { .. })));
                }
            }
            // Five failures open the breaker; from then on no call reaches the network.
            if i >= 5 {
                assert!(
                    matches!(d.error, Some(RedisError::CircuitOpen)),
                    "decision {i}: {:?}",
                    d.error
                );
                assert!(took < TIMEOUT, "an open breaker answered in {took:?}");
            } else {
                assert!(!matches!(d.error, Some(RedisError::CircuitOpen)));
            }
        }
        assert!(matches!(
            g.redis().breaker().state(),
            BreakerState::Open { .. }
        ));
        if g.mode() == FailureMode::Local {
            // The gateway alone enforces the burst of 5.
            assert_eq!(local_admitted, 5);
        }
    }
}

#[tokio::test]
async fn when_redis_hangs_calls_time_out_and_the_breaker_opens() {
    let server = RedisServer::start();
    let g = gateway(&server, FailureMode::Closed);
    assert_eq!(g.decide("c", 1).await.path, DecisionPath::Shared);
    server.pause();
    for i in 0..5 {
        let started = Instant::now();
        let d = g.decide("c", 1).await;
        let took = started.elapsed();
        assert!(
            matches!(d.error, Some(RedisError::Timeout(_))),
            "decision {i}: {:?}",
            d.error
        );
        assert!(took >= TIMEOUT && took < 4 * TIMEOUT, "took {took:?}");
        assert_eq!(d.path, DecisionPath::FailClosed);
    }
    let started = Instant::now();
    let d = g.decide("c", 1).await;
    assert!(matches!(d.error, Some(RedisError::CircuitOpen)));
    assert!(started.elapsed() < TIMEOUT);
}

#[tokio::test]
async fn after_a_restart_the_half_open_trial_closes_the_breaker() {
    let mut server = RedisServer::start();
    let port = server.port;
    let spec = Spec::FixedWindow {
        count: 100,
        period: Duration::from_secs(3600),
    };
    let redis = RedisLimiter::new(
        "restart",
        spec,
        false,
        None,
        &RedisSettings {
            timeout: TIMEOUT,
            breaker_failures: 2,
            breaker_cool_down: Duration::from_millis(300),
            ..RedisSettings::new(server.url())
        },
    )
    .unwrap();
    redis.decide("c", 1).await.unwrap();
    server.kill();
    assert!(redis.decide("c", 1).await.is_err());
    assert!(redis.decide("c", 1).await.is_err());
    assert!(matches!(
        redis.decide("c", 1).await,
        Err(RedisError::CircuitOpen)
    ));
    // A new server knows no scripts: the trial goes through the EVAL fallback.
    let _server = RedisServer::start_on(port);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let answer = redis.decide("c", 1).await.unwrap();
    assert!(matches!(
        answer,
        Answer::Decided(Outcome::Allow { remaining: 99, .. })
    ));
    assert_eq!(
        redis.breaker().state(),
        BreakerState::Closed { failures: 0 }
    );
}

// ---------------------------------------------------------------------------------------
// Bans
// ---------------------------------------------------------------------------------------

const SEC: u64 = 1_000_000_000;

/// Late 2026 in nanoseconds since the epoch, on a minute boundary, so the ban-counting
/// windows below start where the in-memory test's do.
const T0: Nanos = 1_790_000_040 * SEC;

fn banning(
    server: &RedisServer,
    policy: &str,
    spec: Spec,
    count_rejected: bool,
    ban: BanRule,
) -> RedisLimiter {
    RedisLimiter::new(
        policy,
        spec,
        count_rejected,
        Some(ban),
        &settings(server, Duration::from_secs(1)),
    )
    .unwrap()
}

/// One request an hour: every request after the first is refused.
const STINGY: Spec = Spec::Gcra {
    count: 1,
    period: Duration::from_secs(3600),
    burst: 1,
};

fn refused(answer: Answer) -> bool {
    matches!(answer, Answer::Decided(Outcome::Deny { .. }))
}

#[tokio::test]
async fn the_nth_refusal_bans_everywhere_and_repeat_offenders_wait_longer() {
    let server = RedisServer::start();
    let rule = BanRule {
        after: 3,
        within: Duration::from_secs(60),
        duration: Duration::from_secs(10),
        max_duration: Duration::from_secs(25),
    };
    // Two gateways: one makes the refusals, the other sees the ban.
    let a = banning(&server, "login", STINGY, false, rule);
    let b = banning(&server, "login", STINGY, false, rule);
    let t = T0 + SEC;
    assert!(matches!(
        a.decide_at("ip:1", 1, t).await.unwrap(),
        Answer::Decided(Outcome::Allow { .. })
    ));
    assert!(refused(a.decide_at("ip:1", 1, t).await.unwrap()));
    assert!(refused(b.decide_at("ip:1", 1, t).await.unwrap()));
    assert_eq!(
        a.decide_at("ip:1", 1, t).await.unwrap(),
        Answer::Banned(Duration::from_secs(10))
    );
    assert_eq!(
        b.decide_at("ip:1", 1, t + 5 * SEC).await.unwrap(),
        Answer::Banned(Duration::from_secs(5))
    );
    // Another client, and the same client on another policy, are not banned.
    assert!(matches!(
        b.decide_at("ip:2", 1, t).await.unwrap(),
        Answer::Decided(Outcome::Allow { .. })
    ));
    let other = banning(&server, "api", STINGY, false, rule);
    assert!(matches!(
        other.decide_at("ip:1", 1, t).await.unwrap(),
        Answer::Decided(Outcome::Allow { .. })
    ));
    let listed = b.bans_at(t + 5 * SEC).await.unwrap();
    assert_eq!(
        listed,
        [BanInfo {
            client: "ip:1".into(),
            remaining: Duration::from_secs(5),
            strikes: 1
        }]
    );
    assert!(other.bans_at(t).await.unwrap().is_empty());
    // The ban is over after 10 s. (A refusal now would ban again at once, as in memory: the
    // counting window still holds three refusals.)
    assert!(a.bans_at(T0 + 11 * SEC).await.unwrap().is_empty());
    // Next counting window: three more refusals ban again, twice as long, then capped.
    let t = T0 + 70 * SEC;
    for _ in 0..2 {
        assert!(refused(a.decide_at("ip:1", 1, t).await.unwrap()));
    }
    assert_eq!(
        b.decide_at("ip:1", 1, t).await.unwrap(),
        Answer::Banned(Duration::from_secs(20))
    );
    let t = T0 + 140 * SEC;
    for _ in 0..2 {
        assert!(refused(b.decide_at("ip:1", 1, t).await.unwrap()));
    }
    assert_eq!(
        a.decide_at("ip:1", 1, t).await.unwrap(),
        Answer::Banned(Duration::from_secs(25))
    );
    let listed = a.bans_at(t).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].strikes, 3);
    assert_eq!(listed[0].remaining, Duration::from_secs(25));
    // Lifting forgets the ban, the strikes and the refusals: everywhere.
    assert!(b.lift("ip:1").await.unwrap());
    assert!(!b.lift("ip:1").await.unwrap());
    assert!(a.bans_at(t).await.unwrap().is_empty());
    assert!(refused(a.decide_at("ip:1", 1, t).await.unwrap()));
    assert!(refused(a.decide_at("ip:1", 1, t).await.unwrap()));
    assert_eq!(
        a.decide_at("ip:1", 1, t).await.unwrap(),
        Answer::Banned(Duration::from_secs(10)),
        "a first ban again"
    );
    // Strikes are forgotten after the ban, one longest ban and one window: a first ban.
    let t = t + (10 + 25 + 60 + 1) * SEC;
    for _ in 0..2 {
        assert!(refused(a.decide_at("ip:1", 1, t).await.unwrap()));
    }
    assert_eq!(
        a.decide_at("ip:1", 1, t).await.unwrap(),
        Answer::Banned(Duration::from_secs(10))
    );
}

#[tokio::test]
async fn with_redis_time_bans_are_listed_lifted_and_every_key_expires() {
    let server = RedisServer::start();
    let rule = BanRule {
        after: 2,
        within: Duration::from_millis(200),
        duration: Duration::from_millis(300),
        max_duration: Duration::from_millis(400),
    };
    let spec = Spec::FixedWindow {
        count: 1,
        period: Duration::from_millis(250),
    };
    let a = banning(&server, "short", spec, false, rule);
    let b = banning(&server, "short", spec, false, rule);
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let mut pttl = |key: String| -> i64 { redis::cmd("PTTL").arg(key).query(&mut conn).unwrap() };

    // Ban "x" through both gateways; "y" only refused once.
    let mut banned = None;
    for i in 0..6 {
        let g = if i % 2 == 0 { &a } else { &b };
        if let Answer::Banned(d) = g.decide("x", 1).await.unwrap() {
            banned = Some(d);
            break;
        }
    }
    let banned = banned.expect("two refusals in a row ban");
    assert!(banned <= Duration::from_millis(400), "{banned:?}");
    assert!(matches!(b.decide("x", 1).await.unwrap(), Answer::Banned(_)));
    let listed = a.bans().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].client, "x");
    assert!(listed[0].remaining <= banned);
    for (key, most) in [
        (a.ban_key("x"), 400),
        (a.strikes_key("x"), 400 + 400 + 200),
        (a.refusals_key("x"), 200),
    ] {
        let ttl = pttl(key.clone());
        assert!((1..=most).contains(&ttl), "{key}: ttl {ttl} ms");
    }

    // Lifted: listed nowhere, and a refusal no longer bans at once.
    assert!(b.lift("x").await.unwrap());
    assert!(a.bans().await.unwrap().is_empty());
    assert_eq!(pttl(a.ban_key("x")), -2);
    assert_eq!(pttl(a.strikes_key("x")), -2);

    // Ban again, then let every key of the client expire on its own.
    let mut again = false;
    for _ in 0..6 {
        if matches!(a.decide("x", 1).await.unwrap(), Answer::Banned(_)) {
            again = true;
            break;
        }
    }
    assert!(again);
    let keys = [
        a.key("x"),
        a.ban_key("x"),
        a.strikes_key("x"),
        a.refusals_key("x"),
    ];
    let longest = keys.iter().map(|k| pttl(k.clone())).max().unwrap();
    assert!((1..=1000).contains(&longest), "longest ttl {longest} ms");
    tokio::time::sleep(Duration::from_millis(longest as u64 + 50)).await;
    for key in keys {
        assert_eq!(pttl(key.clone()), -2, "{key} still exists");
    }
    assert!(matches!(
        a.decide("x", 1).await.unwrap(),
        Answer::Decided(Outcome::Allow { .. })
    ));
}

/// What the in-memory defense answers: a ban first, then the rate; a refusal may ban.
fn in_memory<A: Algorithm>(
    algo: &A,
    state: &mut A::State,
    bans: &Bans,
    client: &str,
    now: Nanos,
    cost: u64,
    count_rejected: bool,
) -> Answer {
    if let Some(left) = bans.banned(client, now) {
        return Answer::Banned(left);
    }
    let outcome = algo.decide(state, now, cost, count_rejected);
    if matches!(outcome, Outcome::Deny { .. })
        && let Some(ban) = bans.refused(client, now)
    {
        return Answer::Banned(ban);
    }
    Answer::Decided(outcome)
}

/// Feeds the same trace, over three clients, to the scripts with a ban rule and to the
/// pure algorithm with the in-memory `Bans`; compares every answer and, now and then, the
/// ban listings.
async fn same_bans<A>(server: &RedisServer, name: &str, spec: Spec, algo: A, rule: BanRule)
where
    A: Algorithm,
    A::State: Debug,
{
    let clients = ["ip:a", "ip:b", "ip:c"];
    let within = rule.within.as_nanos() as u64;
    for count_rejected in [false, true] {
        let policy = format!("{name}-{count_rejected}");
        let limiter = banning(server, &policy, spec, count_rejected, rule);
        let bans = Bans::new(rule, 1000);
        let mut states: Vec<A::State> = clients.iter().map(|_| A::State::default()).collect();
        let mut rng = Lcg(within ^ rule.after);
        let mut now: Nanos = T0 + 987_654_321;
        let (mut banned, mut escalated) = (0, false);
        for step in 0..400 {
            now += match rng.next() % 20 {
                0..=11 => 0,
                12..=16 => rng.next() % (within / 4 + 1),
                17 | 18 => rng.next() % (2 * within),
                // Long enough to forget strikes now and then.
                _ => rng.next() % (3 * within + 3 * rule.max_duration.as_nanos() as u64),
            };
            let i = (rng.next() % 3) as usize;
            let client = clients[i];
            let cost = 1 + rng.next() % 2;
            let expected = in_memory(
                &algo,
                &mut states[i],
                &bans,
                client,
                now,
                cost,
                count_rejected,
            );
            let got = limiter.decide_at(client, cost, now).await.unwrap();
            assert_eq!(
                got, expected,
                "{policy} step {step} now {now} {client} cost {cost}: state {:?}",
                states[i]
            );
            if let Answer::Banned(d) = got {
                banned += 1;
                escalated |= d > rule.duration;
            }
            if step % 25 == 0 {
                assert_eq!(
                    limiter.bans_at(now).await.unwrap(),
                    bans.list(now),
                    "{policy} step {step}: listings"
                );
            }
        }
        assert!(
            banned > 0 && escalated,
            "{policy}: the trace must ban and escalate"
        );
    }
}

#[tokio::test]
async fn bans_in_redis_answer_exactly_as_the_in_memory_bans() {
    let server = RedisServer::start();
    let ms = Duration::from_millis;
    let rules = [
        BanRule {
            after: 3,
            within: ms(2000),
            duration: ms(500),
            max_duration: ms(1700),
        },
        BanRule {
            after: 1,
            within: ms(700),
            duration: ms(100),
            max_duration: ms(5000),
        },
        BanRule {
            after: 5,
            within: ms(333),
            duration: ms(50),
            max_duration: ms(150),
        },
    ];
    for (i, rule) in rules.into_iter().enumerate() {
        let (count, period, burst) = (2, ms(300), 2);
        let spec = Spec::Gcra {
            count,
            period,
            burst,
        };
        let algo = Gcra::new(nz(count), period, nz(burst));
        same_bans(&server, &format!("gcra{i}"), spec, algo, rule).await;
        let spec = Spec::FixedWindow {
            count: 3,
            period: ms(400),
        };
        let algo = FixedWindow::new(nz(3), ms(400));
        same_bans(&server, &format!("fw{i}"), spec, algo, rule).await;
        let spec = Spec::SlidingLog {
            count: 3,
            period: ms(500),
        };
        let algo = SlidingLog::new(nz(3), ms(500));
        same_bans(&server, &format!("log{i}"), spec, algo, rule).await;
        // Delays are admissions: they never count towards a ban.
        let spec = Spec::LeakyBucket {
            count: 5,
            per_minute: false,
            burst: 2,
            delay: 1,
        };
        let algo = LeakyBucket::nginx(nz(5), false, 2, 1);
        same_bans(&server, &format!("leaky{i}"), spec, algo, rule).await;
    }
}

#[tokio::test]
async fn through_the_shared_store_seam() {
    let server = RedisServer::start();
    let rule = BanRule {
        after: 2,
        within: Duration::from_secs(60),
        duration: Duration::from_secs(600),
        max_duration: Duration::from_secs(3600),
    };
    let redis = RedisLimiter::new(
        "seam",
        STINGY,
        false,
        Some(rule),
        &settings(&server, Duration::from_secs(1)),
    )
    .unwrap();
    let fleet = FleetLimiter::new(redis, FailureMode::Closed, 100, Arc::new(SystemClock));
    let store: &dyn SharedStore = &fleet;
    let answers = [
        store.decide("c", 1).await,
        store.decide("c", 1).await,
        store.decide("c", 1).await,
        store.decide("c", 1).await,
    ];
    for a in &answers {
        assert_eq!(a.path, DecisionPath::Shared);
        assert_eq!(a.error, None);
    }
    assert!(refused(answers[1].answer));
    assert_eq!(answers[2].answer, Answer::Banned(Duration::from_secs(600)));
    assert!(matches!(answers[3].answer, Answer::Banned(d) if d <= Duration::from_secs(600)));
    let listed = store.bans().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].client.as_str(), listed[0].strikes), ("c", 1));
    assert_eq!(store.lift("c").await, Ok(true));
    assert_eq!(store.bans().await, Ok(vec![]));
}

#[tokio::test]
async fn the_local_fallback_bans_on_its_own_gateway() {
    // Nothing listens on port 1: every call fails at once, then the breaker opens.
    let rule = BanRule {
        after: 2,
        within: Duration::from_secs(60),
        duration: Duration::from_secs(600),
        max_duration: Duration::from_secs(3600),
    };
    let redis = RedisLimiter::new(
        "local",
        STINGY,
        false,
        Some(rule),
        &RedisSettings::new("redis://127.0.0.1:1/"),
    )
    .unwrap();
    let clock = Arc::new(ManualClock::new());
    let fleet = FleetLimiter::new(redis, FailureMode::Local, 100, clock.clone());
    let store: &dyn SharedStore = &fleet;
    let mut answers = Vec::new();
    for _ in 0..4 {
        let d = store.decide("c", 1).await;
        assert_eq!(d.path, DecisionPath::Local);
        assert!(d.error.is_some());
        answers.push(d.answer);
    }
    assert!(matches!(answers[0], Answer::Decided(Outcome::Allow { .. })));
    assert!(refused(answers[1]));
    assert_eq!(answers[2], Answer::Banned(Duration::from_secs(600)));
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        store.decide("c", 1).await.answer,
        Answer::Banned(Duration::from_secs(540))
    );
    assert_eq!(fleet.local_bans().unwrap().list(0).len(), 1);
    // Listing needs Redis; lifting lifts the local ban even though Redis is down.
    assert!(store.bans().await.is_err());
    assert!(store.lift("c").await.is_err());
    assert!(refused(store.decide("c", 1).await.answer));
}

// ---------------------------------------------------------------------------------------
// Strikes by another layer
// ---------------------------------------------------------------------------------------

/// A generous policy: its rate never refuses, so only strikes ban.
const GENEROUS: Spec = Spec::Gcra {
    count: 1000,
    period: Duration::from_secs(1),
    burst: 1000,
};

#[tokio::test]
async fn strikes_ban_exactly_as_refusals_do_and_every_gateway_sees_it() {
    let server = RedisServer::start();
    let rule = BanRule {
        after: 3,
        within: Duration::from_secs(60),
        duration: Duration::from_secs(10),
        max_duration: Duration::from_secs(25),
    };
    let a = banning(&server, "auth", GENEROUS, false, rule);
    let b = banning(&server, "auth", GENEROUS, false, rule);
    // The in-memory defense: a banned client's refusals are not counted.
    let memory = Bans::new(rule, 100);
    let model = |client: &str, now: Nanos| {
        if memory.banned(client, now).is_some() {
            None
        } else {
            memory.refused(client, now)
        }
    };
    // Strikes at irregular times over several counting windows, bans and re-bans.
    let mut rng = Lcg(7);
    let mut t = T0;
    let mut bans = 0;
    for _ in 0..200 {
        t += rng.next() % (4 * SEC);
        let client = if rng.next().is_multiple_of(4) {
            "ip:2"
        } else {
            "ip:1"
        };
        let expected = model(client, t);
        assert_eq!(
            a.strike_at(client, t).await.unwrap(),
            expected,
            "{client} at {t}"
        );
        bans += usize::from(expected.is_some());
        // Every gateway sees the same ban, before the rate.
        let seen = b.decide_at(client, 1, t).await.unwrap();
        match memory.banned(client, t) {
            Some(left) => assert_eq!(seen, Answer::Banned(left), "{client} at {t}"),
            None => assert!(matches!(seen, Answer::Decided(Outcome::Allow { .. }))),
        }
    }
    assert!(bans >= 5, "the trace bans and re-bans ({bans})");
    // Three strikes in a row from a fresh client: the third bans for `duration`.
    let t = T0 + 3600 * SEC;
    assert_eq!(a.strike_at("ip:3", t).await.unwrap(), None);
    assert_eq!(a.strike_at("ip:3", t).await.unwrap(), None);
    assert_eq!(
        a.strike_at("ip:3", t).await.unwrap(),
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        b.decide_at("ip:3", 1, t + SEC).await.unwrap(),
        Answer::Banned(Duration::from_secs(9))
    );
    // Strikes and refused decisions count together.
    let stingy = banning(&server, "mixed", STINGY, false, rule);
    assert!(!refused(stingy.decide_at("ip:4", 1, t).await.unwrap()));
    assert!(refused(stingy.decide_at("ip:4", 1, t).await.unwrap()));
    assert_eq!(stingy.strike_at("ip:4", t).await.unwrap(), None);
    assert_eq!(
        stingy.decide_at("ip:4", 1, t).await.unwrap(),
        Answer::Banned(Duration::from_secs(10))
    );
    // Without a ban rule a strike is nothing, and makes no call.
    let plain = RedisLimiter::new(
        "plain",
        GENEROUS,
        false,
        None,
        &RedisSettings::new("redis://127.0.0.1:1"),
    )
    .unwrap();
    assert_eq!(plain.strike("ip:1").await.unwrap(), None);
}

#[tokio::test]
async fn fleet_strikes_through_the_shared_store_ban_in_the_background() {
    let server = RedisServer::start();
    let rule = BanRule {
        after: 2,
        within: Duration::from_secs(60),
        duration: Duration::from_secs(30),
        max_duration: Duration::from_secs(60),
    };
    let redis = banning(&server, "auth-fleet", GENEROUS, false, rule);
    let fleet = FleetLimiter::new(redis, FailureMode::Closed, 100, Arc::new(SystemClock));
    let store: &dyn SharedStore = &fleet;
    store.strike("ip:1");
    store.strike("ip:1");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let d = store.decide("ip:1", 1).await;
        assert_eq!(d.path, DecisionPath::Shared, "{:?}", d.error);
        if matches!(d.answer, Answer::Banned(_)) {
            break;
        }
        assert!(Instant::now() < deadline, "two strikes never banned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another client is untouched.
    assert!(matches!(
        store.decide("ip:2", 1).await.answer,
        Answer::Decided(Outcome::Allow { .. })
    ));
}
