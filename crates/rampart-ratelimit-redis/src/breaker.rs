//! A circuit breaker: after a run of consecutive failures it opens for a cool-down, during
//! which calls fail at once without touching the network; then one trial call decides
//! whether it closes again.
//!
//! Time is passed in, so the state machine is tested tick by tick.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The breaker's state, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; `failures` consecutive calls have failed so far.
    Closed {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// Calls fail at once until `until`.
    Open {
        /// When the next call becomes the trial.
        until: Instant,
    },
    /// One trial call is in flight; other calls fail at once until it ends.
    HalfOpen,
}

/// Opens after `threshold` consecutive failures, for `cool_down`.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cool_down: Duration,
    state: Mutex<BreakerState>,
}

/// Leave to make one call. Report its result with [`Permit::succeeded`] or
/// [`Permit::failed`]; a permit dropped without a report (its call was cancelled) counts
/// as a failure, so a cancelled trial cannot leave the breaker half-open forever.
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    trial: bool,
    reported: bool,
}

impl CircuitBreaker {
    /// A closed breaker that opens after `threshold` (at least 1) consecutive failures and
    /// stays open for `cool_down`.
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cool_down,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        *self.lock()
    }

    /// How long the breaker stays open after tripping.
    pub fn cool_down(&self) -> Duration {
        self.cool_down
    }

    /// Leave to call at `now`, or `None` while the breaker is open (or half-open with its
    /// trial in flight). The first call after the cool-down is the trial.
    pub fn try_acquire(&self, now: Instant) -> Option<Permit<'_>> {
        let mut state = self.lock();
        let trial = match *state {
            BreakerState::Closed { .. } => false,
            BreakerState::Open { until } if now >= until => {
                *state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen => return None,
        };
        Some(Permit {
            breaker: self,
            trial,
            reported: false,
        })
    }

    fn record(&self, trial: bool, success: bool, now: Instant) {
        let mut state = self.lock();
        *state = match (*state, success) {
            // Any success shows Redis answers again.
            (_, true) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, false) => {
                let failures = failures.saturating_add(1);
                if failures >= self.threshold {
                    BreakerState::Open {
                        until: now + self.cool_down,
                    }
                } else {
                    BreakerState::Closed { failures }
                }
            }
            (BreakerState::HalfOpen, false) if trial => BreakerState::Open {
                until: now + self.cool_down,
            },
            // A call that started before the breaker opened: its failure is old news.
            (other, false) => other,
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        // The state is plain data: a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Permit<'_> {
    /// The call succeeded: the breaker closes.
    pub fn succeeded(mut self) {
        self.reported = true;
        self.breaker.record(self.trial, true, Instant::now());
    }

    /// The call failed at `now`.
    pub fn failed(mut self, now: Instant) {
        self.reported = true;
        self.breaker.record(self.trial, false, now);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.record(self.trial, false, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(2);

    fn fail(b: &CircuitBreaker, now: Instant) {
        b.try_acquire(now).map(|p| p.failed(now)).unwrap();
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let b = CircuitBreaker::new(3, COOL);
        let t0 = Instant::now();
        fail(&b, t0);
        fail(&b, t0);
        // A success in between resets the run.
        b.try_acquire(t0).unwrap().succeeded();
        fail(&b, t0);
        fail(&b, t0);
        assert_eq!(b.state(), BreakerState::Closed { failures: 2 });
        fail(&b, t0);
        assert_eq!(b.state(), BreakerState::Open { until: t0 + COOL });
        assert!(
            b.try_acquire(t0 + COOL - Duration::from_millis(1))
                .is_none()
        );
    }

    #[test]
    fn after_the_cool_down_one_trial_decides() {
        let b = CircuitBreaker::new(1, COOL);
        let t0 = Instant::now();
        fail(&b, t0);
        let t1 = t0 + COOL;
        let trial = b.try_acquire(t1).unwrap();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // Only one trial at a time.
        assert!(b.try_acquire(t1).is_none());
        trial.failed(t1);
        assert_eq!(b.state(), BreakerState::Open { until: t1 + COOL });
        let t2 = t1 + COOL;
        b.try_acquire(t2).unwrap().succeeded();
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
        assert!(b.try_acquire(t2).is_some());
    }

    #[test]
    fn a_cancelled_trial_counts_as_a_failure() {
        let b = CircuitBreaker::new(1, COOL);
        let t0 = Instant::now();
        fail(&b, t0);
        drop(b.try_acquire(t0 + COOL).unwrap());
        assert!(matches!(b.state(), BreakerState::Open { .. }));
    }

    #[test]
    fn a_late_failure_from_before_the_trip_does_not_extend_the_cool_down() {
        let b = CircuitBreaker::new(1, COOL);
        let t0 = Instant::now();
        let early = b.try_acquire(t0).unwrap();
        fail(&b, t0);
        early.failed(t0 + Duration::from_secs(1));
        assert_eq!(b.state(), BreakerState::Open { until: t0 + COOL });
    }
}
