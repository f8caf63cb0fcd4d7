//! Injected time. Limiters and token checks read time through [`Clock`], so tests drive
//! them with a [`ManualClock`] and production uses [`SystemClock`].

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// A source of time for defenses.
pub trait Clock: Send + Sync + 'static {
    /// A monotonic instant, for measuring intervals (rate windows, timeouts).
    fn now(&self) -> Instant;
    /// Wall-clock time, for comparing with timestamps that come from outside (JWT `exp`).
    fn wall(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to; for tests of time-dependent decisions.
#[derive(Debug)]
pub struct ManualClock {
    state: Mutex<(Instant, SystemTime)>,
}

impl ManualClock {
    /// A clock frozen at the current real time.
    pub fn new() -> Self {
        Self {
            state: Mutex::new((Instant::now(), SystemTime::now())),
        }
    }

    /// Moves both the monotonic and the wall clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut state = self.lock();
        state.0 += by;
        state.1 += by;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Instant, SystemTime)> {
        // A poisoned lock only means a test thread panicked while holding it; the
        // timestamps inside are still valid.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.lock().0
    }

    fn wall(&self) -> SystemTime {
        self.lock().1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new();
        let (t0, w0) = (clock.now(), clock.wall());
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::from_secs(5));
        assert_eq!(clock.now() - t0, Duration::from_secs(5));
        assert_eq!(
            clock.wall().duration_since(w0).ok(),
            Some(Duration::from_secs(5))
        );
    }
}
