//! Against a real redis-server: revocations made by one gateway are seen by another, the
//! Redis store answers exactly as `MemoryRevocations` over the same operations, entries
//! expire at their `until`, a later cut-off wins a merge, and a check fails (closed) within
//! the timeout when Redis dies or hangs.

// Test helpers outside `#[test]` functions fail by panicking too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rampart_auth::revocation::MemoryRevocations;
use rampart_core::revocation::{
    RevocationError, RevocationStore, RevokedSubject, RevokedToken, TokenFacts,
};
use rampart_ratelimit_redis::{BreakerState, RedisRevocations, RedisSettings};
use rampart_test_support::redis::RedisServer;
use redis::aio::MultiplexedConnection;

const TIMEOUT: Duration = Duration::from_millis(100);

fn gateway(server: &RedisServer) -> RedisRevocations {
    RedisRevocations::new(&RedisSettings {
        timeout: TIMEOUT,
        breaker_failures: 3,
        breaker_cool_down: Duration::from_millis(300),
        ..RedisSettings::new(server.url())
    })
    .unwrap()
}

async fn raw(server: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(issuer: &str, jti: &str, until: u64) -> RevokedToken {
    RevokedToken {
        issuer: issuer.into(),
        jti: jti.into(),
        until,
    }
}

fn subject(issuer: &str, subject: &str, before: u64, until: u64) -> RevokedSubject {
    RevokedSubject {
        issuer: issuer.into(),
        subject: subject.into(),
        before,
        until,
    }
}

fn facts<'a>(
    issuer: &'a str,
    subject: &'a str,
    jti: Option<&'a str>,
    issued_at: Option<u64>,
) -> TokenFacts<'a> {
    TokenFacts {
        issuer,
        subject,
        jti,
        issued_at,
    }
}

/// `EXPIRETIME key`: when Redis will drop it (-2: no such key).
async fn expire_time(conn: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("EXPIRETIME")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
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

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

#[tokio::test]
async fn two_gateways_see_each_others_revocations() {
    let server = RedisServer::start();
    let (a, b) = (gateway(&server), gateway(&server));
    let now = epoch_now();
    let iss = "https://id.example";
    let t1 = facts(iss, "alice", Some("t1"), Some(now - 10));
    let bob = facts(iss, "bob", Some("t9"), Some(now - 10));
    assert!(!b.is_revoked(t1, now).await.unwrap());

    a.revoke_token(token(iss, "t1", now + 600), now)
        .await
        .unwrap();
    b.revoke_subject(subject(iss, "bob", now, now + 3600), now)
        .await
        .unwrap();
    for g in [&a, &b] {
        assert!(g.is_revoked(t1, now).await.unwrap());
        assert!(g.is_revoked(bob, now).await.unwrap());
        // Another token of the subject, another issuer: untouched.
        let t2 = facts(iss, "alice", Some("t2"), Some(now - 10));
        assert!(!g.is_revoked(t2, now).await.unwrap());
        let elsewhere = facts("https://other", "bob", Some("t1"), Some(now - 10));
        assert!(!g.is_revoked(elsewhere, now).await.unwrap());
        // Bob's tokens issued at or after the cut-off pass.
        let fresh = facts(iss, "bob", None, Some(now));
        assert!(!g.is_revoked(fresh, now).await.unwrap());
    }
    assert_eq!(a.list(now).await.unwrap(), b.list(now).await.unwrap());

    assert!(b.unrevoke_token(iss, "t1").await.unwrap());
    assert!(a.unrevoke_subject(iss, "bob").await.unwrap());
    assert!(!a.is_revoked(t1, now).await.unwrap());
    assert!(!b.is_revoked(bob, now).await.unwrap());
    assert_eq!(a.list(now).await.unwrap(), (vec![], vec![]));
}

/// Random revocations, checks, unrevocations and listings, through two gateways in turn
/// and through `MemoryRevocations`: every answer must be the same. The injected `now`
/// runs ahead of the real clock (up to an hour and a half) so that entries expire by `now`
/// while Redis still holds them (they end at least 100 s after the real time). Times are
/// drawn on a grid of 100 s so that the boundaries (`iat == before`, a check at `until`)
/// come up often.
#[tokio::test]
async fn answers_exactly_as_memory_revocations() {
    let server = RedisServer::start();
    let gateways = [gateway(&server), gateway(&server)];
    let memory = MemoryRevocations::new(1_000_000);
    let issuers = ["https://a.example", "https://b.example/{t}%*"];
    let subjects = ["alice", "bob", "carol", "d}ave*"];
    let jtis = ["t1", "t2", "t3", "t[4]?"];
    let mut rng = Lcg(0x5eed);
    let mut now = epoch_now();
    let (mut checks, mut refused, mut listed) = (0, 0, 0);
    for step in 0..600 {
        now += rng.next() % 15;
        // On the grid, at most 100 s before `now`.
        let grid = |rng: &mut Lcg, from: u64, steps: u64| {
            now - now % 100 + from + rng.next() % steps * 100
        };
        let g = &gateways[step % 2];
        let issuer = rng.pick(&issuers);
        match rng.next() % 12 {
            0..=2 => {
                let e = token(issuer, rng.pick(&jtis), grid(&mut rng, 200, 9));
                memory.revoke_token(e.clone(), now).await.unwrap();
                g.revoke_token(e, now).await.unwrap();
            }
            3..=5 => {
                let before = grid(&mut rng, 0, 12) - 600;
                let e = subject(issuer, rng.pick(&subjects), before, grid(&mut rng, 200, 9));
                memory.revoke_subject(e.clone(), now).await.unwrap();
                g.revoke_subject(e, now).await.unwrap();
            }
            6 => {
                let jti = rng.pick(&jtis);
                assert_eq!(
                    g.unrevoke_token(issuer, jti).await.unwrap(),
                    memory.unrevoke_token(issuer, jti).await.unwrap(),
                    "step {step}: unrevoke {issuer} {jti}"
                );
            }
            7 => {
                let sub = rng.pick(&subjects);
                assert_eq!(
                    g.unrevoke_subject(issuer, sub).await.unwrap(),
                    memory.unrevoke_subject(issuer, sub).await.unwrap(),
                    "step {step}: unrevoke {issuer} {sub}"
                );
            }
            _ => {
                for _ in 0..4 {
                    // A quarter without `jti`, a fifth without `iat`.
                    let jti = (!rng.next().is_multiple_of(4)).then(|| rng.pick(&jtis));
                    let iat = (!rng.next().is_multiple_of(5)).then(|| grid(&mut rng, 0, 12) - 600);
                    let f = facts(issuer, rng.pick(&subjects), jti, iat);
                    let at = grid(&mut rng, 0, 10);
                    let expected = memory.is_revoked(f, at).await.unwrap();
                    for g in &gateways {
                        assert_eq!(
                            g.is_revoked(f, at).await.unwrap(),
                            expected,
                            "step {step}: {f:?} at {at}"
                        );
                    }
                    checks += 1;
                    refused += usize::from(expected);
                }
            }
        }
        if step % 20 == 0 {
            let expected = memory.list(now).await.unwrap();
            listed += expected.0.len() + expected.1.len();
            for g in &gateways {
                assert_eq!(g.list(now).await.unwrap(), expected, "step {step}");
            }
        }
    }
    // The trace exercised both answers and non-empty listings.
    assert!(refused > 20 && checks - refused > 20, "{refused}/{checks}");
    assert!(listed > 30, "{listed}");
}

#[tokio::test]
async fn a_subject_cut_off_refuses_older_tokens_and_tokens_without_iat() {
    let server = RedisServer::start();
    let g = gateway(&server);
    let memory = MemoryRevocations::new(10);
    let now = epoch_now();
    let e = subject("https://id", "bob", now - 100, now + 3600);
    g.revoke_subject(e.clone(), now).await.unwrap();
    memory.revoke_subject(e, now).await.unwrap();
    for (f, revoked) in [
        (facts("https://id", "bob", None, Some(now - 101)), true),
        (facts("https://id", "bob", Some("x"), None), true),
        (facts("https://id", "bob", None, Some(now - 100)), false),
        (facts("https://id", "carol", None, Some(1)), false),
    ] {
        assert_eq!(g.is_revoked(f, now).await.unwrap(), revoked, "{f:?}");
        assert_eq!(memory.is_revoked(f, now).await.unwrap(), revoked, "{f:?}");
    }
}

#[tokio::test]
async fn entries_expire_at_their_until() {
    let server = RedisServer::start();
    let g = gateway(&server);
    let mut conn = raw(&server).await;
    let now = epoch_now();
    let until = now + 2;
    g.revoke_token(token("https://id", "t1", until), now)
        .await
        .unwrap();
    g.revoke_subject(subject("https://id", "bob", now, until), now)
        .await
        .unwrap();
    let token_key = RedisRevocations::token_key("https://id", "t1");
    let subject_key = RedisRevocations::subject_key("https://id", "bob");
    assert_eq!(expire_time(&mut conn, &token_key).await, until as i64);
    assert_eq!(expire_time(&mut conn, &subject_key).await, until as i64);
    let t1 = facts("https://id", "alice", Some("t1"), Some(now));
    let bob = facts("https://id", "bob", None, Some(now - 1));
    assert!(g.is_revoked(t1, now).await.unwrap());
    assert!(g.is_revoked(bob, now).await.unwrap());
    // At `until` the entries are over, by the stored time as by Redis's expiry.
    assert!(!g.is_revoked(t1, until).await.unwrap());
    assert!(!g.is_revoked(bob, until).await.unwrap());
    assert_eq!(g.list(until).await.unwrap(), (vec![], vec![]));

    // Once Redis's clock passes `until`, the keys are gone: the same check at the old
    // `now` passes, so the answer no longer comes from the stored time.
    let deadline = UNIX_EPOCH + Duration::from_secs(until) + Duration::from_millis(50);
    if let Ok(wait) = deadline.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    assert!(!g.is_revoked(t1, now).await.unwrap());
    assert!(!g.is_revoked(bob, now).await.unwrap());
    assert_eq!(g.list(now).await.unwrap(), (vec![], vec![]));
    assert_eq!(expire_time(&mut conn, &token_key).await, -2);
    assert_eq!(expire_time(&mut conn, &subject_key).await, -2);
    assert!(!g.unrevoke_token("https://id", "t1").await.unwrap());
}

#[tokio::test]
async fn entries_already_over_are_not_stored() {
    let server = RedisServer::start();
    let g = gateway(&server);
    let memory = MemoryRevocations::new(10);
    let mut conn = raw(&server).await;
    let now = epoch_now();
    for until in [now - 10, now] {
        let t = token("https://id", "t1", until);
        let s = subject("https://id", "bob", now, until);
        g.revoke_token(t.clone(), now).await.unwrap();
        g.revoke_subject(s.clone(), now).await.unwrap();
        memory.revoke_token(t, now).await.unwrap();
        memory.revoke_subject(s, now).await.unwrap();
    }
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("rampart:revoked:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, Vec::<String>::new());
    assert_eq!(g.list(now).await.unwrap(), memory.list(now).await.unwrap());
    let f = facts("https://id", "bob", Some("t1"), None);
    assert!(!g.is_revoked(f, now).await.unwrap());
    assert!(!memory.is_revoked(f, now).await.unwrap());
}

#[tokio::test]
async fn a_merge_keeps_the_later_cut_off_and_the_later_end() {
    let server = RedisServer::start();
    let (a, b) = (gateway(&server), gateway(&server));
    let memory = MemoryRevocations::new(10);
    let mut conn = raw(&server).await;
    let now = epoch_now();
    let cut = now - 1000;
    let ops = [
        (subject("https://id", "bob", cut, now + 100), &a),
        // Earlier cut-off, longer life: the life is kept, not the cut-off.
        (subject("https://id", "bob", cut - 50, now + 200), &b),
        // Later cut-off, shorter life: the cut-off is kept, not the life.
        (subject("https://id", "bob", cut + 50, now + 50), &a),
    ];
    for (e, g) in ops {
        memory.revoke_subject(e.clone(), now).await.unwrap();
        g.revoke_subject(e, now).await.unwrap();
    }
    for (e, g) in [
        (token("https://id", "t1", now + 300), &b),
        (token("https://id", "t1", now + 100), &a),
    ] {
        memory.revoke_token(e.clone(), now).await.unwrap();
        g.revoke_token(e, now).await.unwrap();
    }
    let listed = a.list(now).await.unwrap();
    assert_eq!(listed, memory.list(now).await.unwrap());
    assert_eq!(
        listed,
        (
            vec![token("https://id", "t1", now + 300)],
            vec![subject("https://id", "bob", cut + 50, now + 200)]
        )
    );
    let subject_key = RedisRevocations::subject_key("https://id", "bob");
    let token_key = RedisRevocations::token_key("https://id", "t1");
    assert_eq!(
        expire_time(&mut conn, &subject_key).await,
        (now + 200) as i64
    );
    assert_eq!(expire_time(&mut conn, &token_key).await, (now + 300) as i64);
    let at = |iat| facts("https://id", "bob", None, Some(iat));
    assert!(b.is_revoked(at(cut + 49), now).await.unwrap());
    assert!(!b.is_revoked(at(cut + 50), now).await.unwrap());

    // Gateways racing each other: the merge is atomic, the latest cut-off wins.
    let a = Arc::new(a);
    let b = Arc::new(b);
    let mut tasks = Vec::new();
    for i in 0..40u64 {
        let g = Arc::clone(if i % 2 == 0 { &a } else { &b });
        let before = cut + 100 + (i * 37) % 40;
        tasks.push(tokio::spawn(async move {
            let e = subject("https://id", "eve", before, now + 100 + i);
            g.revoke_subject(e, now).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (_, subjects) = a.list(now).await.unwrap();
    assert!(
        subjects.contains(&subject("https://id", "eve", cut + 139, now + 139)),
        "{subjects:?}"
    );
}

#[tokio::test]
async fn a_check_is_one_mget() {
    let server = RedisServer::start();
    let g = gateway(&server);
    let mut conn = raw(&server).await;
    let now = epoch_now();
    let f = facts("https://id", "bob", Some("t1"), Some(now));
    // Connect first: the connection's handshake is not the check.
    g.is_revoked(f, now).await.unwrap();
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    g.is_revoked(f, now).await.unwrap();
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let calls: Vec<&str> = stats
        .lines()
        .filter(|l| l.starts_with("cmdstat_"))
        .filter(|l| !l.starts_with("cmdstat_info") && !l.starts_with("cmdstat_config"))
        .collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].starts_with("cmdstat_mget:calls=1,"), "{calls:?}");
}

#[tokio::test]
async fn listing_and_unrevoking_handle_any_names() {
    let server = RedisServer::start();
    let (a, b) = (gateway(&server), gateway(&server));
    let memory = MemoryRevocations::new(100);
    let mut conn = raw(&server).await;
    let now = epoch_now();
    let issuers = ["https://id", "https://id/{tenant}%", "*", ""];
    let names = ["*", "t?", "[a-z]", "x}:sub:y", "plain", "é"];
    for (i, issuer) in issuers.iter().enumerate() {
        for (j, name) in names.iter().enumerate() {
            let until = now + 100 + (i * 10 + j) as u64;
            let t = token(issuer, name, until);
            let s = subject(issuer, name, now - j as u64, until);
            memory.revoke_token(t.clone(), now).await.unwrap();
            memory.revoke_subject(s.clone(), now).await.unwrap();
            a.revoke_token(t, now).await.unwrap();
            a.revoke_subject(s, now).await.unwrap();
        }
    }
    // Keys under the prefix that are not entries are not listed.
    for (key, value) in [
        ("rampart:revoked:garbage", "1"),
        ("rampart:revoked:{i}:ban:x", "99999999999"),
        ("rampart:revoked:{%41}:jti:x", "99999999999"),
    ] {
        let () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let listed = b.list(now).await.unwrap();
    assert_eq!(listed.0.len(), issuers.len() * names.len());
    assert_eq!(listed, memory.list(now).await.unwrap());

    // Unrevoking a name with glob characters removes that entry only.
    assert!(b.unrevoke_token("*", "*").await.unwrap());
    assert!(!b.unrevoke_token("*", "*").await.unwrap());
    assert!(
        b.unrevoke_subject("https://id/{tenant}%", "t?")
            .await
            .unwrap()
    );
    assert!(
        !a.unrevoke_subject("https://id/{tenant}%", "t?")
            .await
            .unwrap()
    );
    memory.unrevoke_token("*", "*").await.unwrap();
    memory
        .unrevoke_subject("https://id/{tenant}%", "t?")
        .await
        .unwrap();
    assert_eq!(a.list(now).await.unwrap(), memory.list(now).await.unwrap());
    assert!(
        a.is_revoked(facts("*", "x", Some("t?"), None), now)
            .await
            .unwrap()
    );
    assert!(
        !a.is_revoked(facts("*", "nobody", Some("*"), Some(now)), now)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn an_unreadable_entry_fails_the_check() {
    let server = RedisServer::start();
    let g = gateway(&server);
    let mut conn = raw(&server).await;
    let now = epoch_now();
    let () = redis::cmd("SET")
        .arg(RedisRevocations::subject_key("https://id", "bob"))
        .arg("not a time")
        .query_async(&mut conn)
        .await
        .unwrap();
    let f = facts("https://id", "bob", None, Some(now));
    assert!(matches!(
        g.is_revoked(f, now).await,
        Err(RevocationError::Store(_))
    ));
    // The merge replaces it with a readable entry.
    g.revoke_subject(subject("https://id", "bob", now, now + 60), now)
        .await
        .unwrap();
    assert!(!g.is_revoked(f, now).await.unwrap());
}

#[tokio::test]
async fn when_redis_dies_checks_fail_within_the_timeout_and_recover() {
    let mut server = RedisServer::start();
    let port = server.port;
    let g = gateway(&server);
    let now = epoch_now();
    let f = facts("https://id", "bob", Some("t1"), Some(now));
    g.revoke_token(token("https://id", "t1", now + 60), now)
        .await
        .unwrap();
    assert!(g.is_revoked(f, now).await.unwrap());
    server.kill();
    for i in 0..5 {
        let started = Instant::now();
        let result = g.is_revoked(f, now).await;
        let took = started.elapsed();
        assert!(
            matches!(result, Err(RevocationError::Store(_))),
            "check {i}: {result:?}"
        );
        assert!(took < 4 * TIMEOUT, "check {i} took {took:?}");
    }
    assert!(matches!(g.breaker().state(), BreakerState::Open { .. }));
    // An operator is told too.
    assert!(matches!(
        g.revoke_token(token("https://id", "t2", now + 60), now)
            .await,
        Err(RevocationError::Store(_))
    ));
    assert!(g.list(now).await.is_err());
    assert!(g.unrevoke_token("https://id", "t1").await.is_err());

    // A new server (empty: no persistence): after the cool-down the trial closes the breaker.
    let _server = RedisServer::start_on(port);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(!g.is_revoked(f, now).await.unwrap());
    assert_eq!(g.breaker().state(), BreakerState::Closed { failures: 0 });
}

#[tokio::test]
async fn when_redis_hangs_checks_time_out() {
    let server = RedisServer::start();
    let g = gateway(&server);
    let now = epoch_now();
    let f = facts("https://id", "bob", Some("t1"), Some(now));
    assert!(!g.is_revoked(f, now).await.unwrap());
    server.pause();
    for i in 0..3 {
        let started = Instant::now();
        let result = g.is_revoked(f, now).await;
        let took = started.elapsed();
        assert!(
            matches!(&result, Err(RevocationError::Store(m)) if m.contains("did not answer")),
            "check {i}: {result:?}"
        );
        assert!(took >= TIMEOUT && took < 4 * TIMEOUT, "took {took:?}");
    }
    // The breaker is open: the next check fails at once.
    let started = Instant::now();
    assert!(g.is_revoked(f, now).await.is_err());
    assert!(started.elapsed() < TIMEOUT);
}
