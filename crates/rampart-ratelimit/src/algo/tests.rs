use std::num::NonZeroU64;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn nz(n: u64) -> NonZeroU64 {
    NonZeroU64::new(n).unwrap_or(NonZeroU64::MIN)
}

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

fn allowed(o: Outcome) -> bool {
    matches!(o, Outcome::Allow { .. } | Outcome::Delay(_))
}

#[test]
fn gcra_allows_a_burst_then_the_rate() {
    let g = Gcra::new(nz(10), Duration::from_secs(1), nz(3));
    let mut tat = 0;
    let t0 = 10 * S;
    for i in 0..3 {
        let o = g.decide(&mut tat, t0, 1, false);
        assert!(
            matches!(o, Outcome::Allow { remaining, .. } if remaining == 2 - i),
            "{i}: {o:?}"
        );
    }
    match g.decide(&mut tat, t0, 1, false) {
        Outcome::Deny { retry_after } => assert_eq!(retry_after, Duration::from_millis(100)),
        o => panic!("{o:?}"),
    }
    // 100 ms later exactly one more fits.
    assert!(allowed(g.decide(&mut tat, t0 + 100 * MS, 1, false)));
    assert!(!allowed(g.decide(&mut tat, t0 + 100 * MS, 1, false)));
}

#[test]
fn token_bucket_refills_and_reports_the_wait() {
    let b = TokenBucket::new(nz(2), Duration::from_secs(1), nz(4));
    let mut st = BucketState::default();
    for _ in 0..4 {
        assert!(allowed(b.decide(&mut st, 0, 1, false)));
    }
    match b.decide(&mut st, 0, 1, false) {
        Outcome::Deny { retry_after } => assert_eq!(retry_after, Duration::from_millis(500)),
        o => panic!("{o:?}"),
    }
    assert!(allowed(b.decide(&mut st, 500 * MS, 1, false)));
    // A cost larger than the bucket can never pass.
    assert!(matches!(
        b.decide(&mut st, 10 * S, 5, false),
        Outcome::Deny { .. }
    ));
    // Cost 2 takes two tokens.
    assert!(matches!(
        b.decide(&mut st, 10 * S, 2, false),
        Outcome::Allow { remaining: 2, .. }
    ));
}

#[test]
fn leaky_bucket_matches_nginx_burst_delay_and_nodelay() {
    // rate=10r/s burst=5: first passes, next five are queued with growing delays, then 503.
    let l = LeakyBucket::nginx(nz(10), false, 5, 0);
    let mut st = LeakyState::default();
    let t0 = 1_000 * S;
    assert!(matches!(
        l.decide(&mut st, t0, 1, false),
        Outcome::Allow { .. }
    ));
    for i in 1..=5u64 {
        match l.decide(&mut st, t0, 1, false) {
            Outcome::Delay(d) => assert_eq!(d, Duration::from_millis(100 * i)),
            o => panic!("{i}: {o:?}"),
        }
    }
    assert!(matches!(
        l.decide(&mut st, t0, 1, false),
        Outcome::Deny { .. }
    ));

    // nodelay: the same six pass at once, the seventh is refused.
    let l = LeakyBucket::nginx(nz(10), false, 5, 5);
    let mut st = LeakyState::default();
    for _ in 0..6 {
        assert!(matches!(
            l.decide(&mut st, t0, 1, false),
            Outcome::Allow { .. }
        ));
    }
    assert!(matches!(
        l.decide(&mut st, t0, 1, false),
        Outcome::Deny { .. }
    ));
    // 100 ms later one more fits (the bucket leaked one request).
    assert!(matches!(
        l.decide(&mut st, t0 + 100 * MS, 1, false),
        Outcome::Allow { .. }
    ));

    // delay=2: two pass at once, the rest of the burst waits.
    let l = LeakyBucket::nginx(nz(10), false, 5, 2);
    let mut st = LeakyState::default();
    let outcomes: Vec<_> = (0..7).map(|_| l.decide(&mut st, t0, 1, false)).collect();
    assert!(matches!(outcomes[2], Outcome::Allow { .. }));
    assert_eq!(outcomes[3], Outcome::Delay(Duration::from_millis(100)));
    assert!(matches!(outcomes[6], Outcome::Deny { .. }));
}

#[test]
fn leaky_bucket_per_minute_uses_nginx_integer_rate() {
    // 30r/m is 500 thousandths per second: one request per 2 s.
    let l = LeakyBucket::nginx(nz(30), true, 0, 0);
    let mut st = LeakyState::default();
    assert!(allowed(l.decide(&mut st, 0, 1, false)));
    assert!(!allowed(l.decide(&mut st, 1_999 * MS, 1, false)));
    assert!(allowed(l.decide(&mut st, 2_000 * MS, 1, false)));
}

#[test]
fn fixed_window_resets_on_the_boundary() {
    let f = FixedWindow::new(nz(2), Duration::from_secs(1));
    let mut st = WindowState::default();
    assert!(allowed(f.decide(&mut st, 5 * S, 1, false)));
    assert!(allowed(f.decide(&mut st, 5 * S + 10, 1, false)));
    match f.decide(&mut st, 5 * S + 400 * MS, 1, false) {
        Outcome::Deny { retry_after } => assert_eq!(retry_after, Duration::from_millis(600)),
        o => panic!("{o:?}"),
    }
    assert!(allowed(f.decide(&mut st, 6 * S, 1, false)));
}

#[test]
fn sliding_window_weights_the_previous_window() {
    let w = SlidingWindow::new(nz(10), Duration::from_secs(1));
    let mut st = WindowState::default();
    for _ in 0..10 {
        assert!(allowed(w.decide(&mut st, 5 * S + 900 * MS, 1, false)));
    }
    // 25% into the next window, 75% of the previous 10 still count: 2 more fit.
    let t = 6 * S + 250 * MS;
    assert!(allowed(w.decide(&mut st, t, 1, false)));
    assert!(allowed(w.decide(&mut st, t, 1, false)));
    assert!(!allowed(w.decide(&mut st, t, 1, false)));
}

#[test]
fn sliding_log_is_exact() {
    let l = SlidingLog::new(nz(3), Duration::from_secs(1));
    let mut st = Default::default();
    for t in [0, 100, 200] {
        assert!(allowed(l.decide(&mut st, 10 * S + t * MS, 1, false)));
    }
    match l.decide(&mut st, 10 * S + 500 * MS, 1, false) {
        Outcome::Deny { retry_after } => assert_eq!(retry_after, Duration::from_millis(500)),
        o => panic!("{o:?}"),
    }
    assert!(allowed(l.decide(&mut st, 11 * S, 1, false)));
}

#[test]
fn counting_rejections_punishes_hammering() {
    let f = FixedWindow::new(nz(2), Duration::from_secs(10));
    let (mut free, mut counted) = (WindowState::default(), WindowState::default());
    for _ in 0..5 {
        f.decide(&mut free, 0, 1, false);
        f.decide(&mut counted, 0, 1, true);
    }
    assert_eq!(free.count, 2);
    assert_eq!(counted.count, 5);
}

/// Replays arrivals through `algo` and checks every window of `window` length that starts at
/// an arrival admits at most `algo.max_admitted(window)`, and that a denial's `retry_after`
/// is honest (a retry just before it would also be denied).
fn check_bound<A: Algorithm>(algo: &A, gaps: &[u64], window: Duration) -> Result<(), TestCaseError>
where
    A::State: Clone,
{
    let mut state = A::State::default();
    let mut now = 1_000 * S;
    let mut admitted = Vec::new();
    for gap in gaps {
        now += gap;
        let before = state.clone();
        match algo.decide(&mut state, now, 1, false) {
            Outcome::Allow { .. } | Outcome::Delay(_) => admitted.push(now),
            Outcome::Deny { retry_after } => {
                let r = u64::try_from(retry_after.as_nanos()).unwrap_or(u64::MAX);
                if r < 3600 * S {
                    // Never shorter than the true wait: retrying then succeeds.
                    let mut probe = before.clone();
                    let retry = algo.decide(&mut probe, now + r, 1, false);
                    prop_assert!(
                        allowed(retry),
                        "retry after {retry_after:?} still refused: {retry:?}"
                    );
                    // And not much longer (1 ms: the leaky bucket counts whole milliseconds).
                    if r > MS {
                        let mut probe = before;
                        let early = algo.decide(&mut probe, now + r - MS, 1, false);
                        prop_assert!(
                            !allowed(early),
                            "retry_after {retry_after:?} longer than needed"
                        );
                    }
                }
            }
        }
    }
    // From `idle_at` on, the state decides exactly like a fresh one (a store may forget it).
    let idle = algo.idle_at(&state).max(now);
    let (mut used, mut fresh) = (state.clone(), A::State::default());
    prop_assert_eq!(
        algo.decide(&mut used, idle, 1, false),
        algo.decide(&mut fresh, idle, 1, false),
        "state at idle_at differs from a fresh one"
    );
    let w = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
    let bound = algo.max_admitted(window) as usize;
    for (i, start) in admitted.iter().enumerate() {
        let in_window = admitted[i..].iter().take_while(|t| **t < start + w).count();
        prop_assert!(
            in_window <= bound,
            "{in_window} admitted in {window:?}, bound {bound}"
        );
    }
    Ok(())
}

fn gaps() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(
        prop_oneof![Just(0u64), 0..5 * MS, 0..200 * MS, 0..2 * S],
        1..300,
    )
}

proptest! {
    #[test]
    fn gcra_never_exceeds_its_bound(g in gaps(), n in 1u64..20, burst in 1u64..10, w in 1u64..5) {
        check_bound(&Gcra::new(nz(n), Duration::from_secs(1), nz(burst)), &g, Duration::from_secs(w))?;
    }

    #[test]
    fn token_bucket_never_exceeds_its_bound(g in gaps(), n in 1u64..20, cap in 1u64..10, w in 1u64..5) {
        check_bound(&TokenBucket::new(nz(n), Duration::from_secs(1), nz(cap)), &g, Duration::from_secs(w))?;
    }

    #[test]
    fn leaky_bucket_never_exceeds_its_bound(g in gaps(), n in 1u64..20, burst in 0u64..10, nodelay in any::<bool>(), w in 1u64..5) {
        let delay = if nodelay { burst } else { 0 };
        check_bound(&LeakyBucket::nginx(nz(n), false, burst, delay), &g, Duration::from_secs(w))?;
    }

    #[test]
    fn fixed_window_never_exceeds_its_bound(g in gaps(), n in 1u64..20, w in 1u64..5) {
        check_bound(&FixedWindow::new(nz(n), Duration::from_secs(1)), &g, Duration::from_secs(w))?;
    }

    #[test]
    fn sliding_window_never_exceeds_its_bound(g in gaps(), n in 1u64..20, w in 1u64..5) {
        check_bound(&SlidingWindow::new(nz(n), Duration::from_secs(1)), &g, Duration::from_secs(w))?;
    }

    #[test]
    fn sliding_log_never_exceeds_its_bound(g in gaps(), n in 1u64..20, w in 1u64..5) {
        check_bound(&SlidingLog::new(nz(n), Duration::from_secs(1)), &g, Duration::from_secs(w))?;
    }
}
