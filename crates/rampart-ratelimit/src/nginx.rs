//! nginx `limit_req` with several zones on one location.
//!
//! A location may carry several `limit_req` directives, each naming a zone with its own
//! key, rate, burst and delay (the nginx documentation's example limits per client address
//! and per virtual server at once). [`Zones`] decides one request against all of them the
//! way nginx 1.15.7 and later does (`delay=` parameter; checked against 1.22 by
//! `tests/nginx_conformance.rs`):
//!
//! - The zones are checked in configuration order. A zone whose key is empty for this
//!   request (nginx: the key variable evaluates to `""`) is skipped.
//! - The first zone whose bucket would overflow (excess above `burst`) refuses the request.
//!   Nothing is charged anywhere: neither the refusing zone, nor the zones before it that
//!   were only checked, nor the zones after it, which nginx does not look at. A refused
//!   request therefore costs nothing, whichever zone refused it. (For a key a zone has
//!   never seen, nginx does create its record during the check, but as one that has
//!   leaked empty; that is indistinguishable from no record, which is what we keep.)
//! - When no zone refuses, every zone is charged exactly as a lone zone would be, and the
//!   request waits for the longest of the zones' delays. A delay that rounds down to 0 ms
//!   is no delay: the request passes at once.
//! - nginx names one zone in its error log: the zone that refused, or the zone with the
//!   longest delay (on a tie, the later one in configuration order). [`ZonesDecision::zone`]
//!   is that zone.
//!
//! Two things nginx does not report and we do: a refusal's `retry_after` is the wait until
//! every zone would admit the request (the longest of the zones' waits, so it is never
//! shorter than the true wait), and an admission's `remaining`/`reset` are the tightest of
//! the zones'.
//!
//! Which directives apply to a location (nginx inherits them from the enclosing level only
//! when the location has none of its own) is the configuration's business, not this
//! module's.

use std::time::Duration;

use crate::algo::{Algorithm, LeakyBucket, LeakyState, Nanos, Outcome};

/// The `limit_req` directives of one nginx location, in configuration order, decided
/// together as nginx does (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zones {
    limits: Vec<LeakyBucket>,
}

/// What [`Zones::decide`] decided, and which zone nginx would blame for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZonesDecision {
    /// The combined outcome: `Deny` if any zone refused, else `Delay` with the longest
    /// delay, else `Allow`.
    pub outcome: Outcome,
    /// The index (in configuration order) of the zone nginx names in its error log: the
    /// first zone that refused, or the zone with the longest delay, the later one on a tie.
    /// `None` when the request passed at once.
    pub zone: Option<usize>,
}

impl Zones {
    /// The zones of one location, in the order of its `limit_req` directives.
    pub fn new(limits: impl IntoIterator<Item = LeakyBucket>) -> Self {
        Self {
            limits: limits.into_iter().collect(),
        }
    }

    /// The zones, in configuration order.
    pub fn limits(&self) -> &[LeakyBucket] {
        &self.limits
    }

    /// How many zones.
    pub fn len(&self) -> usize {
        self.limits.len()
    }

    /// Whether there are no zones (every request then passes).
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// Decides one request at `now`. `states[i]` is zone `i`'s state for this request's
    /// key in that zone, or `None` when the key is empty and nginx skips the zone; a zone
    /// with no entry in `states` is skipped too. The states are updated only when the
    /// request is admitted (passed or delayed), and then all of them.
    ///
    /// When no zone applies, the request passes with `remaining: u64::MAX`.
    pub fn decide(&self, states: &mut [Option<&mut LeakyState>], now: Nanos) -> ZonesDecision {
        // Check every zone on a copy of its state, as nginx checks before it charges.
        // nginx stops at the first refusing zone; we look at the rest too, without
        // charging them, only to report an honest `retry_after`.
        let mut checked: Vec<Option<(LeakyState, Outcome)>> = Vec::with_capacity(self.len());
        let mut refused_by = None;
        let mut retry_after = Duration::ZERO;
        for (i, (limit, state)) in self.limits.iter().zip(states.iter()).enumerate() {
            let Some(state) = state else {
                checked.push(None);
                continue;
            };
            let mut next = **state;
            let outcome = limit.decide(&mut next, now, 1, false);
            if let Outcome::Deny { retry_after: wait } = outcome {
                refused_by.get_or_insert(i);
                retry_after = retry_after.max(wait);
            }
            checked.push(Some((next, outcome)));
        }
        if refused_by.is_some() {
            return ZonesDecision {
                outcome: Outcome::Deny { retry_after },
                zone: refused_by,
            };
        }

        // Admitted: charge every zone and wait for the longest delay.
        let mut delay = Duration::ZERO;
        let mut delayed_by = None;
        let mut remaining = u64::MAX;
        let mut reset = Duration::ZERO;
        for (i, (state, next)) in states.iter_mut().zip(checked).enumerate() {
            let (Some(state), Some((next, outcome))) = (state, next) else {
                continue;
            };
            **state = next;
            match outcome {
                Outcome::Allow {
                    remaining: left,
                    reset: full_in,
                } => {
                    remaining = remaining.min(left);
                    reset = reset.max(full_in);
                }
                Outcome::Delay(wait) => {
                    // `>=`: on a tie nginx names the later zone.
                    if wait > Duration::ZERO && wait >= delay {
                        delay = wait;
                        delayed_by = Some(i);
                    }
                    // A zone that delays has no allowance left to pass at once.
                    remaining = 0;
                }
                Outcome::Deny { .. } => {}
            }
        }
        let outcome = if delayed_by.is_some() {
            Outcome::Delay(delay)
        } else {
            Outcome::Allow { remaining, reset }
        };
        ZonesDecision {
            outcome,
            zone: delayed_by,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU64;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    const MS: u64 = 1_000_000;
    const T0: u64 = 1_000_000 * MS;

    fn nz(n: u64) -> NonZeroU64 {
        NonZeroU64::new(n).unwrap_or(NonZeroU64::MIN)
    }

    /// `count` per second, `burst`, `delay` (nginx `nodelay` is `delay = burst`).
    fn zone(count: u64, burst: u64, delay: u64) -> LeakyBucket {
        LeakyBucket::nginx(nz(count), false, burst, delay)
    }

    /// Decides with every zone applying, on owned states.
    fn decide(zones: &Zones, states: &mut [LeakyState], now: Nanos) -> ZonesDecision {
        let mut refs: Vec<Option<&mut LeakyState>> = states.iter_mut().map(Some).collect();
        zones.decide(&mut refs, now)
    }

    fn is_deny(o: Outcome) -> bool {
        matches!(o, Outcome::Deny { .. })
    }

    #[test]
    fn a_refusal_charges_no_zone() {
        // perip-style 10r/s burst=3 nodelay, then a stricter 5r/s burst=2 nodelay.
        let zones = Zones::new([zone(10, 3, 3), zone(5, 2, 2)]);
        let mut s = [LeakyState::default(); 2];
        for _ in 0..3 {
            assert!(matches!(
                decide(&zones, &mut s, T0).outcome,
                Outcome::Allow { .. }
            ));
        }
        let before = s;
        // The second zone is full: refused, and the first zone (only checked) keeps its state.
        let d = decide(&zones, &mut s, T0);
        assert!(is_deny(d.outcome), "{d:?}");
        assert_eq!(d.zone, Some(1));
        assert_eq!(s, before);

        // With a fresh key in the second zone, the first zone still has room for exactly
        // one more: it was not charged for the refusal.
        let mut fresh = [s[0], LeakyState::default()];
        assert!(!is_deny(decide(&zones, &mut fresh, T0).outcome));
        let before = fresh;
        let d = decide(&zones, &mut fresh, T0);
        assert!(is_deny(d.outcome));
        assert_eq!(d.zone, Some(0), "the first zone refuses now");
        assert_eq!(fresh, before, "the later zone was not charged either");
    }

    #[test]
    fn the_longest_delay_wins_and_nginx_names_its_zone() {
        // 10r/s burst=8 delay=1 and 2r/s burst=5 delay=4, same key, a burst of 7 at once.
        let zones = Zones::new([zone(10, 8, 1), zone(2, 5, 4)]);
        let mut s = [LeakyState::default(); 2];
        let got: Vec<_> = (0..7).map(|_| decide(&zones, &mut s, T0)).collect();
        let ms = |n| Outcome::Delay(Duration::from_millis(n));
        assert!(matches!(got[0].outcome, Outcome::Allow { .. }));
        assert!(matches!(got[1].outcome, Outcome::Allow { .. }));
        // The first zone delays (excess - 1) / 10 r/s; the second only past 4 in excess.
        assert_eq!((got[2].outcome, got[2].zone), (ms(100), Some(0)));
        assert_eq!((got[3].outcome, got[3].zone), (ms(200), Some(0)));
        assert_eq!((got[4].outcome, got[4].zone), (ms(300), Some(0)));
        // Excess 5: 400 ms in the first zone, (5 - 4) / 2 r/s = 500 ms in the second.
        assert_eq!((got[5].outcome, got[5].zone), (ms(500), Some(1)));
        assert!(is_deny(got[6].outcome));
        assert_eq!(got[6].zone, Some(1));
    }

    #[test]
    fn equal_delays_name_the_later_zone() {
        let zones = Zones::new([zone(10, 5, 0), zone(10, 5, 0)]);
        let mut s = [LeakyState::default(); 2];
        decide(&zones, &mut s, T0);
        let d = decide(&zones, &mut s, T0);
        assert_eq!(d.outcome, Outcome::Delay(Duration::from_millis(100)));
        assert_eq!(d.zone, Some(1));
    }

    #[test]
    fn an_empty_key_skips_its_zone() {
        let zones = Zones::new([zone(10, 0, 0), zone(10, 0, 0)]);
        let mut first = LeakyState::default();
        let mut second = LeakyState::default();
        for i in 0..3 {
            // Only the first zone applies, and it allows one request per 100 ms.
            let d = zones.decide(&mut [Some(&mut first), None], T0 + i * 100 * MS);
            assert!(matches!(d.outcome, Outcome::Allow { .. }), "{i}: {d:?}");
        }
        assert_eq!(second, LeakyState::default());
        let d = zones.decide(&mut [Some(&mut first), Some(&mut second)], T0 + 200 * MS);
        assert!(is_deny(d.outcome));
        assert_eq!(d.zone, Some(0));
        // No zone applies: nothing limits the request.
        assert_eq!(
            zones.decide(&mut [None, None], T0).outcome,
            Outcome::Allow {
                remaining: u64::MAX,
                reset: Duration::ZERO
            }
        );
        assert_eq!(
            zones.decide(&mut [], T0).outcome,
            Outcome::Allow {
                remaining: u64::MAX,
                reset: Duration::ZERO
            }
        );
    }

    #[test]
    fn retry_after_waits_for_every_zone() {
        // Both zones full at once; the slower one needs 500 ms, the faster 100 ms.
        let zones = Zones::new([zone(10, 1, 1), zone(2, 1, 1)]);
        let mut s = [LeakyState::default(); 2];
        decide(&zones, &mut s, T0);
        decide(&zones, &mut s, T0);
        let d = decide(&zones, &mut s, T0);
        assert_eq!(
            d.outcome,
            Outcome::Deny {
                retry_after: Duration::from_millis(500)
            }
        );
        assert_eq!(d.zone, Some(0), "nginx names the first zone that refused");
        assert!(is_deny(decide(&zones, &mut s, T0 + 499 * MS).outcome));
        assert!(!is_deny(decide(&zones, &mut s, T0 + 500 * MS).outcome));
    }

    #[test]
    fn a_delay_that_rounds_to_zero_passes_at_once() {
        // 3r/s is 3000 thousandths per second: after 333 ms an excess of 2 requests has
        // leaked 999 thousandths, so the next request leaves 2.001 in excess, 0.001 past
        // delay=2, which is 1000 / 3000 = 0 ms of delay: nginx passes it (PASSED).
        let limit = zone(3, 5, 2);
        let mut s = LeakyState::default();
        for _ in 0..3 {
            assert!(matches!(
                limit.decide(&mut s, T0, 1, false),
                Outcome::Allow { .. }
            ));
        }
        let mut alone = s;
        assert!(matches!(
            limit.decide(&mut alone, T0 + 333 * MS, 1, false),
            Outcome::Allow { .. }
        ));
        let zones = Zones::new([limit]);
        let d = decide(&zones, &mut [s], T0 + 333 * MS);
        assert!(matches!(d.outcome, Outcome::Allow { .. }), "{d:?}");
        assert_eq!(d.zone, None);
    }

    fn arb_zone() -> impl Strategy<Value = LeakyBucket> {
        (1u64..20, any::<bool>(), 0u64..6, 0u64..7).prop_map(|(n, per_minute, burst, delay)| {
            LeakyBucket::nginx(nz(n), per_minute, burst, delay)
        })
    }

    fn arb_gaps() -> impl Strategy<Value = Vec<u64>> {
        prop::collection::vec(prop_oneof![Just(0u64), 0..5 * MS, 0..400 * MS], 1..60)
    }

    proptest! {
        /// One zone is exactly the lone leaky bucket.
        #[test]
        fn one_zone_is_the_leaky_bucket(limit in arb_zone(), gaps in arb_gaps()) {
            let zones = Zones::new([limit]);
            let (mut alone, mut zoned) = (LeakyState::default(), [LeakyState::default()]);
            let mut now = T0;
            for gap in gaps {
                now += gap;
                let expected = limit.decide(&mut alone, now, 1, false);
                let got = decide(&zones, &mut zoned, now);
                prop_assert_eq!(got.outcome, expected);
                prop_assert_eq!(zoned[0], alone);
            }
        }

        /// Several zones: refused iff some zone alone would refuse; a refusal changes no
        /// state; an admission charges each zone as it would be charged alone, with the
        /// longest of their delays.
        #[test]
        fn zones_combine_as_nginx(
            limits in prop::collection::vec(arb_zone(), 1..4),
            gaps in arb_gaps(),
        ) {
            let zones = Zones::new(limits.clone());
            let mut s = vec![LeakyState::default(); limits.len()];
            let mut now = T0;
            for gap in gaps {
                now += gap;
                let alone: Vec<(LeakyState, Outcome)> = limits
                    .iter()
                    .zip(&s)
                    .map(|(l, st)| {
                        let mut st = *st;
                        let o = l.decide(&mut st, now, 1, false);
                        (st, o)
                    })
                    .collect();
                let before = s.clone();
                let got = decide(&zones, &mut s, now);
                let first_refusal = alone.iter().position(|(_, o)| is_deny(*o));
                if let Some(i) = first_refusal {
                    prop_assert!(is_deny(got.outcome));
                    prop_assert_eq!(got.zone, Some(i));
                    prop_assert_eq!(&s, &before);
                } else {
                    let after: Vec<LeakyState> = alone.iter().map(|(st, _)| *st).collect();
                    prop_assert_eq!(&s, &after);
                    let longest = alone
                        .iter()
                        .filter_map(|(_, o)| match o {
                            Outcome::Delay(d) => Some(*d),
                            _ => None,
                        })
                        .max();
                    match longest {
                        Some(d) => prop_assert_eq!(got.outcome, Outcome::Delay(d)),
                        None => prop_assert!(
                            matches!(got.outcome, Outcome::Allow { .. }),
                            "{:?}",
                            got
                        ),
                    }
                }
            }
        }
    }
}
