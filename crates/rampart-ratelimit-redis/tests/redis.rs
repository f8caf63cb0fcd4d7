//! Against a real redis-server: the scripts decide exactly as the pure algorithms, a fleet
//! of gateways never admits more than the limit, and each failure mode holds when Redis
//! dies or hangs, within the timeout.

// Test helpers outside `#[test]` functions fail by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fmt::Debug;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_core::SystemClock;
use rampart_ratelimit::{
    Algorithm, FixedWindow, Gcra, Nanos, Outcome, SlidingWindow, Spec, TokenBucket,
};
use rampart_ratelimit_redis::{
    BreakerState, DecisionPath, FailureMode, FleetLimiter, RedisError, RedisLimiter, RedisSettings,
};
use support::RedisServer;

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

/// Feeds the same trace to the script (with injected time) and to the pure algorithm.
async fn same_decisions<A>(server: &RedisServer, name: &str, spec: Spec, algo: A, seed: u64)
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
        Spec::LeakyBucket { .. } => Duration::from_secs(1),
    };
    let limit = match spec {
        Spec::Gcra { burst, .. } => burst,
        Spec::TokenBucket { capacity, .. } => capacity,
        Spec::FixedWindow { count, .. }
        | Spec::SlidingWindow { count, .. }
        | Spec::SlidingLog { count, .. }
        | Spec::LeakyBucket { count, .. } => count,
    };
    let period_ns = period.as_nanos() as u64;
    for count_rejected in [false, true] {
        let limiter = RedisLimiter::new(
            name,
            spec,
            count_rejected,
            &settings(server, Duration::from_secs(5)),
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
            allowed |= matches!(got, Outcome::Allow { .. });
            denied |= matches!(got, Outcome::Deny { .. });
            assert_eq!(
                got, expected,
                "{name} count_rejected={count_rejected} step {step} now {now} cost {cost}: \
                 pure state after {state:?}"
            );
        }
        assert!(
            allowed && denied,
            "{name}: the trace must both admit and refuse"
        );
    }
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
        &settings(&server, Duration::from_secs(2)),
    )
    .unwrap();
    assert!(matches!(
        limiter.decide("c", 1).await.unwrap(),
        Outcome::Allow { remaining: 0, .. }
    ));
    match limiter.decide("c", 1).await.unwrap() {
        Outcome::Deny { retry_after } => assert!(retry_after <= Duration::from_millis(300)),
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
        Outcome::Allow { .. }
    ));
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
                    match (d.path, d.outcome) {
                        (DecisionPath::Redis, Outcome::Allow { .. }) => admitted += 1,
                        (DecisionPath::Redis, _) => {}
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
            assert_eq!(d.path, DecisionPath::Redis, "{:?}", d.error);
            assert!(matches!(d.outcome, Outcome::Allow { .. }));
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
                    assert!(matches!(d.outcome, Outcome::Allow { .. }));
                }
                FailureMode::Closed => {
                    assert_eq!(d.path, DecisionPath::FailClosed);
                    assert_eq!(
                        d.outcome,
                        Outcome::Deny {
                            retry_after: Duration::from_secs(2)
                        }
                    );
                }
                FailureMode::Local => {
                    assert_eq!(d.path, DecisionPath::Local);
                    local_admitted += usize::from(matches!(d.outcome, Outcome::Allow { .. }));
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
    assert_eq!(g.decide("c", 1).await.path, DecisionPath::Redis);
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
    let outcome = redis.decide("c", 1).await.unwrap();
    assert!(matches!(outcome, Outcome::Allow { remaining: 99, .. }));
    assert_eq!(
        redis.breaker().state(),
        BreakerState::Closed { failures: 0 }
    );
}
