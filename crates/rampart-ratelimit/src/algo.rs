//! The algorithms. Each keeps its per-key state as small as the algorithm allows: GCRA one
//! `u64`, the buckets and windows two or three, the exact sliding log one timestamp per
//! admitted request.

use std::collections::VecDeque;
use std::num::NonZeroU64;
use std::time::Duration;

/// Nanoseconds since the caller's time origin.
pub type Nanos = u64;

const NS_PER_MS: u64 = 1_000_000;

/// What an algorithm decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Admit now. `remaining` is how many more requests of cost 1 would be admitted at this
    /// instant; `reset` is how long until the limiter is back to its full allowance.
    Allow {
        /// Requests of cost 1 still admissible right now.
        remaining: u64,
        /// Time until the full allowance is back.
        reset: Duration,
    },
    /// Admit after waiting this long (leaky bucket without `nodelay`).
    Delay(Duration),
    /// Refuse. `retry_after` is never shorter than the true wait before a request of the
    /// same cost would be admitted.
    Deny {
        /// Minimum wait before retrying.
        retry_after: Duration,
    },
}

/// A rate-limiting algorithm: a policy and the per-key state it updates.
pub trait Algorithm {
    /// The per-key state. `Default` is the state of a key never seen; `Clone` lets a store
    /// answer "what would you decide" without deciding (`MemoryStore::peek`).
    type State: Default + Clone;

    /// Decides for a request of `cost` at `now`, updating `state`. `count_rejected` makes
    /// a refused request use up allowance as an admitted one would (punishing clients
    /// that keep hammering); by default refusals are free.
    fn decide(
        &self,
        state: &mut Self::State,
        now: Nanos,
        cost: u64,
        count_rejected: bool,
    ) -> Outcome;

    /// The most requests of cost 1 the policy admits in any window of `window` (for
    /// property tests and documentation).
    fn max_admitted(&self, window: Duration) -> u64;

    /// The instant from which `state` decides exactly like a fresh state: a store may
    /// forget the key from then on without handing anyone a fresh allowance early.
    fn idle_at(&self, state: &Self::State) -> Nanos;
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn dur(n: u64) -> Duration {
    Duration::from_nanos(n)
}

/// Rounds `a / b` up.
fn div_ceil(a: u128, b: u128) -> u128 {
    if b == 0 { 0 } else { a.div_ceil(b) }
}

// ---------------------------------------------------------------------------------------
// GCRA
// ---------------------------------------------------------------------------------------

/// The generic cell rate algorithm: `count` per `period`, with bursts of up to `burst`
/// requests at once. One timestamp per key (the theoretical arrival time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Time between requests at the sustained rate.
    interval: u64,
    /// How far ahead of the schedule a client may run: `(burst - 1) * interval`.
    tolerance: u64,
    burst: u64,
}

impl Gcra {
    /// `count` requests per `period`, bursts up to `burst` (at least 1).
    pub fn new(count: NonZeroU64, period: Duration, burst: NonZeroU64) -> Self {
        let interval = (ns(period) / count.get()).max(1);
        Self {
            interval,
            tolerance: interval.saturating_mul(burst.get() - 1),
            burst: burst.get(),
        }
    }
}

impl Algorithm for Gcra {
    type State = u64;

    fn decide(&self, tat: &mut u64, now: Nanos, cost: u64, count_rejected: bool) -> Outcome {
        let increment = self.interval.saturating_mul(cost);
        let base = (*tat).max(now);
        let new_tat = base.saturating_add(increment);
        // Admit when the new arrival time is within burst of now.
        let allow_at = new_tat.saturating_sub(self.tolerance.saturating_add(self.interval));
        if allow_at <= now {
            *tat = new_tat;
            let ahead = new_tat - now;
            let used = div_ceil(u128::from(ahead), u128::from(self.interval)) as u64;
            Outcome::Allow {
                remaining: self.burst.saturating_sub(used),
                reset: dur(ahead),
            }
        } else {
            if count_rejected {
                *tat = new_tat;
            }
            Outcome::Deny {
                retry_after: dur(allow_at - now),
            }
        }
    }

    fn max_admitted(&self, window: Duration) -> u64 {
        self.burst + ns(window) / self.interval
    }

    fn idle_at(&self, tat: &u64) -> Nanos {
        *tat
    }
}

// ---------------------------------------------------------------------------------------
// Token bucket
// ---------------------------------------------------------------------------------------

/// A token bucket: holds up to `capacity` tokens, refilled at `count` per `period`; a
/// request takes `cost` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    capacity: u64,
    count: u64,
    period: u64,
}

/// Token-bucket state, in nano-tokens (tokens times the refill period) so refills are exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketState {
    /// Tokens, scaled by `period`; `None` for a key never seen (a full bucket).
    level: Option<u128>,
    last: Nanos,
}

impl TokenBucket {
    /// Refill `count` per `period`, hold at most `capacity`.
    pub fn new(count: NonZeroU64, period: Duration, capacity: NonZeroU64) -> Self {
        Self {
            capacity: capacity.get(),
            count: count.get(),
            period: ns(period).max(1),
        }
    }

    fn full(&self) -> u128 {
        u128::from(self.capacity) * u128::from(self.period)
    }
}

impl Algorithm for TokenBucket {
    type State = BucketState;

    fn decide(&self, s: &mut BucketState, now: Nanos, cost: u64, count_rejected: bool) -> Outcome {
        let full = self.full();
        let elapsed = now.saturating_sub(s.last);
        let refill = u128::from(elapsed) * u128::from(self.count);
        let level = s.level.map_or(full, |l| l.saturating_add(refill).min(full));
        let need = u128::from(cost) * u128::from(self.period);
        s.last = now.max(s.last);
        let rate = u128::from(self.count);
        if level >= need {
            let left = level - need;
            s.level = Some(left);
            Outcome::Allow {
                remaining: (left / u128::from(self.period)) as u64,
                reset: dur(div_ceil(full - left, rate) as u64),
            }
        } else {
            s.level = Some(if count_rejected { 0 } else { level });
            let missing = need.min(full) - level.min(need.min(full));
            let wait = if need > full {
                u64::MAX
            } else {
                div_ceil(missing, rate) as u64
            };
            Outcome::Deny {
                retry_after: dur(wait),
            }
        }
    }

    fn max_admitted(&self, window: Duration) -> u64 {
        self.capacity
            + (u128::from(ns(window)) * u128::from(self.count) / u128::from(self.period)) as u64
    }

    fn idle_at(&self, s: &BucketState) -> Nanos {
        match s.level {
            None => 0,
            Some(level) => {
                let missing = self.full().saturating_sub(level);
                s.last
                    .saturating_add(div_ceil(missing, u128::from(self.count)) as u64)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Leaky bucket, nginx `limit_req` semantics
// ---------------------------------------------------------------------------------------

/// A leaky bucket with nginx `limit_req` semantics and arithmetic: the bucket leaks at
/// `rate`; a request that finds more than `burst` queued is refused; the first `delay`
/// excess requests pass at once (`nodelay` is `delay = burst`), later ones wait until the
/// bucket has leaked down to them. All arithmetic is in whole milliseconds and
/// thousandths of a request, as in nginx, so decisions match nginx's request for request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeakyBucket {
    /// Thousandths of a request per second (nginx: `10r/s` is 10000, `30r/m` is 500).
    rate: u64,
    /// Thousandths of a request.
    burst: u64,
    /// Thousandths of a request.
    delay: u64,
}

/// Leaky-bucket state: the excess in thousandths of a request, and when it was last set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeakyState {
    excess: u64,
    last_ms: Option<u64>,
}

impl LeakyBucket {
    /// `count` per second or per minute (`per_minute`), `burst` queued requests, and
    /// `delay` of them passed without waiting (`nodelay`: `delay = burst`).
    pub fn nginx(count: NonZeroU64, per_minute: bool, burst: u64, delay: u64) -> Self {
        let rate = if per_minute {
            count.get().saturating_mul(1000) / 60
        } else {
            count.get().saturating_mul(1000)
        };
        Self {
            rate: rate.max(1),
            burst: burst.saturating_mul(1000),
            delay: delay.min(burst).saturating_mul(1000),
        }
    }
}

impl Algorithm for LeakyBucket {
    type State = LeakyState;

    fn decide(&self, s: &mut LeakyState, now: Nanos, cost: u64, count_rejected: bool) -> Outcome {
        let now_ms = now / NS_PER_MS;
        let weight = i128::from(cost.saturating_mul(1000));
        let (excess, elapsed) = match s.last_ms {
            // A key never seen starts empty: its first request leaves no excess.
            None => ((weight - 1000).max(0), 0),
            Some(last) => {
                let elapsed = now_ms.saturating_sub(last);
                let leaked = i128::from(self.rate) * i128::from(elapsed) / 1000;
                ((i128::from(s.excess) - leaked + weight).max(0), elapsed)
            }
        };
        let excess = u64::try_from(excess).unwrap_or(u64::MAX);
        if excess > self.burst {
            if count_rejected {
                s.excess = excess;
                s.last_ms = Some(now_ms);
            }
            // The excess must leak down to `burst` before a request fits again.
            let wait_ms = div_ceil(
                u128::from(excess - self.burst) * 1000,
                u128::from(self.rate),
            ) as u64;
            return Outcome::Deny {
                retry_after: Duration::from_millis(wait_ms.max(1)),
            };
        }
        s.excess = excess;
        if elapsed > 0 || s.last_ms.is_none() {
            s.last_ms = Some(now_ms);
        }
        if excess > self.delay {
            let wait_ms = u128::from(excess - self.delay) * 1000 / u128::from(self.rate);
            // A delay that rounds down to 0 ms is no delay: nginx passes the request at
            // once and reports it as PASSED, not DELAYED.
            if wait_ms > 0 {
                return Outcome::Delay(Duration::from_millis(wait_ms as u64));
            }
        }
        Outcome::Allow {
            remaining: (self.burst - excess) / 1000,
            reset: Duration::from_millis(
                (u128::from(excess) * 1000 / u128::from(self.rate)) as u64,
            ),
        }
    }

    fn max_admitted(&self, window: Duration) -> u64 {
        let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        1 + self.burst / 1000 + self.rate.saturating_mul(ms) / 1_000_000
    }

    fn idle_at(&self, s: &LeakyState) -> Nanos {
        match s.last_ms {
            None => 0,
            Some(last) => {
                // Fresh means the next request leaves no excess: the bucket must have
                // leaked the excess and one more request's worth (nginx adds 1000 first).
                let drain_ms =
                    div_ceil(u128::from(s.excess + 1000) * 1000, u128::from(self.rate)) as u64;
                last.saturating_add(drain_ms).saturating_mul(NS_PER_MS)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Fixed window
// ---------------------------------------------------------------------------------------

/// At most `limit` per aligned window of `window`. Cheap, but a client may send `2 * limit`
/// across a window boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedWindow {
    limit: u64,
    window: u64,
}

/// Fixed-window state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowState {
    start: Nanos,
    count: u64,
    prev: u64,
}

impl FixedWindow {
    /// `limit` per `window`.
    pub fn new(limit: NonZeroU64, window: Duration) -> Self {
        Self {
            limit: limit.get(),
            window: ns(window).max(1),
        }
    }
}

impl Algorithm for FixedWindow {
    type State = WindowState;

    fn decide(&self, s: &mut WindowState, now: Nanos, cost: u64, count_rejected: bool) -> Outcome {
        // Threads read the clock before they take the key's lock, so a decision may come
        // in slightly older than the last one: never let that move the window back.
        let now = now.max(s.start);
        let start = now - now % self.window;
        if start != s.start {
            *s = WindowState {
                start,
                count: 0,
                prev: 0,
            };
        }
        let end = start.saturating_add(self.window);
        let after = s.count.saturating_add(cost);
        if after <= self.limit {
            s.count = after;
            Outcome::Allow {
                remaining: self.limit - after,
                reset: dur(end - now),
            }
        } else {
            if count_rejected {
                s.count = after;
            }
            let wait = if cost > self.limit {
                u64::MAX
            } else {
                end - now
            };
            Outcome::Deny {
                retry_after: dur(wait),
            }
        }
    }

    fn max_admitted(&self, window: Duration) -> u64 {
        // Each aligned window the interval touches can be full.
        self.limit * (ns(window) / self.window + 2)
    }

    fn idle_at(&self, s: &WindowState) -> Nanos {
        if s.count == 0 {
            0
        } else {
            s.start.saturating_add(self.window)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sliding window counter
// ---------------------------------------------------------------------------------------

/// The sliding window counter (as Cloudflare and Kong use): the previous window's count,
/// weighted by how much of it still overlaps the sliding window, plus the current count.
/// Two counters per key; an approximation that never admits more than `limit` in the
/// estimate, and close to the exact log in practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindow {
    limit: u64,
    window: u64,
}

impl SlidingWindow {
    /// `limit` per sliding `window`.
    pub fn new(limit: NonZeroU64, window: Duration) -> Self {
        Self {
            limit: limit.get(),
            window: ns(window).max(1),
        }
    }

    /// How long until a request of `cost` fits: later in this window as the previous
    /// window's weight fades, or in the next window, where this window's count becomes
    /// the fading one.
    fn wait(&self, s: &WindowState, now: Nanos, cost: u64) -> u64 {
        let w = u128::from(self.window);
        let limit = u128::from(self.limit) * w;
        let into = u128::from(now - s.start);
        let need_now = u128::from(s.count.saturating_add(cost)) * w;
        if need_now <= limit && s.prev > 0 {
            // prev * (w - into') <= limit - need_now
            let fade = (limit - need_now) / u128::from(s.prev);
            let at = w.saturating_sub(fade);
            if at < w {
                return at.saturating_sub(into) as u64;
            }
        }
        let cost_scaled = u128::from(cost) * w;
        if cost_scaled > limit {
            return u64::MAX;
        }
        let x = if s.count == 0 {
            0
        } else {
            w.saturating_sub((limit - cost_scaled) / u128::from(s.count))
        };
        (w - into + x.min(w)) as u64
    }

    /// The weighted estimate, scaled by `window`.
    fn estimate(&self, s: &WindowState, now: Nanos) -> u128 {
        let into = now - s.start;
        let overlap = self.window - into.min(self.window);
        u128::from(s.prev) * u128::from(overlap) + u128::from(s.count) * u128::from(self.window)
    }
}

impl Algorithm for SlidingWindow {
    type State = WindowState;

    fn decide(&self, s: &mut WindowState, now: Nanos, cost: u64, count_rejected: bool) -> Outcome {
        // Threads read the clock before they take the key's lock, so a decision may come
        // in slightly older than the last one: never let that move the window back.
        let now = now.max(s.start);
        let start = now - now % self.window;
        if start != s.start {
            let prev = if start.saturating_sub(s.start) == self.window {
                s.count
            } else {
                0
            };
            *s = WindowState {
                start,
                count: 0,
                prev,
            };
        }
        let w = u128::from(self.window);
        let limit = u128::from(self.limit) * w;
        let after = self.estimate(s, now) + u128::from(cost) * w;
        if after <= limit {
            s.count = s.count.saturating_add(cost);
            Outcome::Allow {
                remaining: ((limit - after) / w) as u64,
                reset: dur(start + self.window - now + if s.count > 0 { self.window } else { 0 }),
            }
        } else {
            if count_rejected {
                s.count = s.count.saturating_add(cost);
            }
            let wait = self.wait(s, now, cost);
            Outcome::Deny {
                retry_after: dur(wait),
            }
        }
    }

    fn max_admitted(&self, window: Duration) -> u64 {
        // The estimate can undercount the exact log by up to one window's worth.
        self.limit * (ns(window) / self.window + 2)
    }

    fn idle_at(&self, s: &WindowState) -> Nanos {
        // This window's count weighs on the next window too.
        if s.count > 0 {
            s.start.saturating_add(self.window.saturating_mul(2))
        } else if s.prev > 0 {
            s.start.saturating_add(self.window)
        } else {
            0
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sliding window log
// ---------------------------------------------------------------------------------------

/// The exact sliding window: at most `limit` requests in any `window`, by remembering the
/// time of each admitted request. Exact, and the most memory per key (up to `limit`
/// timestamps): choose it for small limits where exactness matters (login attempts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingLog {
    limit: u64,
    window: u64,
}

impl SlidingLog {
    /// `limit` per sliding `window`.
    pub fn new(limit: NonZeroU64, window: Duration) -> Self {
        Self {
            limit: limit.get(),
            window: ns(window).max(1),
        }
    }
}

impl Algorithm for SlidingLog {
    /// Times of the admitted requests still in the window, oldest first (a request of cost
    /// `n` is `n` entries).
    type State = VecDeque<Nanos>;

    fn decide(
        &self,
        log: &mut VecDeque<Nanos>,
        now: Nanos,
        cost: u64,
        count_rejected: bool,
    ) -> Outcome {
        let horizon = now.saturating_sub(self.window);
        while log
            .front()
            .is_some_and(|t| *t <= horizon && now >= self.window)
        {
            log.pop_front();
        }
        let used = log.len() as u64;
        if used.saturating_add(cost) <= self.limit {
            for _ in 0..cost {
                log.push_back(now);
            }
            let oldest = log.front().copied().unwrap_or(now);
            Outcome::Allow {
                remaining: self.limit - used - cost,
                reset: dur(oldest + self.window - now),
            }
        } else {
            if count_rejected {
                // Bounded: the log never holds more than `limit` entries.
                for _ in 0..cost.min(self.limit) {
                    log.pop_front();
                    log.push_back(now);
                }
            }
            let wait = if cost > self.limit {
                u64::MAX
            } else {
                // The request fits once enough old entries have left the window.
                let must_leave = (used + cost - self.limit) as usize;
                log.get(must_leave - 1)
                    .map_or(self.window, |t| t + self.window - now)
            };
            Outcome::Deny {
                retry_after: dur(wait),
            }
        }
    }

    fn max_admitted(&self, window: Duration) -> u64 {
        self.limit * ns(window).div_ceil(self.window).max(1)
    }

    fn idle_at(&self, log: &VecDeque<Nanos>) -> Nanos {
        log.back().map_or(0, |t| t.saturating_add(self.window))
    }
}

#[cfg(test)]
mod tests;
