//! The in-memory store: per-key algorithm state in a fixed number of shards, each with a
//! hard cap on tracked keys.
//!
//! Keys are kept as 64-bit SipHash values under a random per-process key, so a tracked
//! key costs its algorithm state plus eight bytes whatever its length, and a client cannot
//! choose keys that collide. Each shard's table is allocated at its cap up front: memory
//! is flat from the start and a flood of new keys cannot grow it.
//!
//! Eviction never hands a recently limited client a fresh allowance: only keys whose state
//! has become equivalent to a fresh one ([`Algorithm::idle_at`]) are forgotten. When a
//! shard is full of keys that are all still busy, new keys share one overflow state per
//! shard: under such a flood, unknown clients are limited together rather than each
//! getting a new allowance.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;

use crate::algo::{Algorithm, Nanos, Outcome};

/// A sharded, capped map from keys to algorithm state.
pub struct MemoryStore<A: Algorithm> {
    algo: A,
    shards: Box<[Mutex<Shard<A::State>>]>,
    per_shard: usize,
    keys: RandomState,
}

struct Shard<S> {
    map: HashMap<u64, S, PassThrough>,
    overflow: S,
    /// No sweep for idle keys before this instant (the earliest a busy key goes idle).
    next_sweep: Nanos,
}

impl<A: Algorithm> std::fmt::Debug for MemoryStore<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .field("per_shard", &self.per_shard)
            .finish()
    }
}

impl<A: Algorithm> MemoryStore<A> {
    /// A store for `algo` tracking at most `max_keys` keys (rounded up to a multiple of the
    /// shard count).
    pub fn new(algo: A, max_keys: usize) -> Self {
        let shards = shard_count();
        let per_shard = max_keys.div_ceil(shards).max(1);
        let shards = (0..shards)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::with_capacity_and_hasher(per_shard, PassThrough),
                    overflow: A::State::default(),
                    next_sweep: 0,
                })
            })
            .collect();
        Self {
            algo,
            shards,
            per_shard,
            keys: RandomState::new(),
        }
    }

    /// The algorithm this store applies.
    pub fn algorithm(&self) -> &A {
        &self.algo
    }

    fn hash(&self, key: &[u8]) -> u64 {
        let mut h = self.keys.build_hasher();
        h.write(key);
        h.finish()
    }

    /// Forgets `key`: its next request starts fresh.
    pub fn forget(&self, key: &[u8]) {
        let hash = self.hash(key);
        let index = (hash as usize) % self.shards.len();
        if let Some(shard) = self.shards.get(index) {
            shard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map
                .remove(&hash);
        }
    }

    /// Decides for a request of `cost` by the client `key` at `now`.
    pub fn decide(&self, key: &[u8], now: Nanos, cost: u64, count_rejected: bool) -> Outcome {
        let hash = self.hash(key);
        // The low bits pick the shard; the table hashes with the rest.
        let index = (hash as usize) % self.shards.len();
        let Some(shard) = self.shards.get(index) else {
            return self
                .algo
                .decide(&mut A::State::default(), now, cost, count_rejected);
        };
        // A poisoned shard only means a thread panicked mid-decision; the state is
        // plain data and still usable.
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        let shard = &mut *shard;
        if let Some(state) = shard.map.get_mut(&hash) {
            return self.algo.decide(state, now, cost, count_rejected);
        }
        if shard.map.len() >= self.per_shard && now >= shard.next_sweep {
            let algo = &self.algo;
            let mut earliest = Nanos::MAX;
            shard.map.retain(|_, s| {
                let idle = algo.idle_at(s);
                if idle <= now {
                    false
                } else {
                    earliest = earliest.min(idle);
                    true
                }
            });
            shard.next_sweep = if shard.map.len() >= self.per_shard {
                earliest
            } else {
                0
            };
        }
        if shard.map.len() >= self.per_shard {
            return self
                .algo
                .decide(&mut shard.overflow, now, cost, count_rejected);
        }
        let mut state = A::State::default();
        let outcome = self.algo.decide(&mut state, now, cost, count_rejected);
        if self.algo.idle_at(&state) > now {
            shard.map.insert(hash, state);
        }
        outcome
    }

    /// What [`MemoryStore::decide`] would answer for `key` at `now`, without changing any
    /// state: a refusal here is a refusal there, barring a concurrent decision in between.
    pub fn peek(&self, key: &[u8], now: Nanos, cost: u64) -> Outcome {
        let hash = self.hash(key);
        let index = (hash as usize) % self.shards.len();
        let mut state = match self.shards.get(index) {
            Some(shard) => {
                let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
                match shard.map.get(&hash) {
                    Some(s) => s.clone(),
                    None if shard.map.len() >= self.per_shard => shard.overflow.clone(),
                    None => A::State::default(),
                }
            }
            None => A::State::default(),
        };
        self.algo.decide(&mut state, now, cost, false)
    }

    /// Keys tracked now (for metrics and tests).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.map.len()))
            .sum()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this store tracks.
    pub fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }
}

/// Shards: a power of two comfortably above the core count, so threads rarely wait on
/// the same lock.
fn shard_count() -> usize {
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
    (cores * 8).next_power_of_two().clamp(16, 1024)
}

/// The table's keys are already SipHash values: hashing them again would only cost time.
#[derive(Debug, Clone, Copy, Default)]
struct PassThrough;

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        // Rotate so the bits that picked the shard are not the bits that pick the bucket.
        self.0.rotate_right(20)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU64;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::algo::{FixedWindow, Gcra};

    fn nz(n: u64) -> NonZeroU64 {
        NonZeroU64::new(n).unwrap_or(NonZeroU64::MIN)
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn keys_are_limited_separately() {
        let store = MemoryStore::new(Gcra::new(nz(1), Duration::from_secs(1), nz(1)), 1000);
        assert!(matches!(
            store.decide(b"a", S, 1, false),
            Outcome::Allow { .. }
        ));
        assert!(matches!(
            store.decide(b"a", S, 1, false),
            Outcome::Deny { .. }
        ));
        assert!(matches!(
            store.decide(b"b", S, 1, false),
            Outcome::Allow { .. }
        ));
    }

    #[test]
    fn a_flood_of_new_keys_stays_at_the_cap_and_limited_keys_are_not_forgotten() {
        let store = MemoryStore::new(Gcra::new(nz(1), Duration::from_secs(60), nz(1)), 1024);
        let cap = store.capacity();
        // The victim uses its allowance.
        assert!(matches!(
            store.decide(b"victim", S, 1, false),
            Outcome::Allow { .. }
        ));
        for i in 0..100_000u32 {
            store.decide(&i.to_le_bytes(), S + u64::from(i), 1, false);
            assert!(store.len() <= cap);
        }
        assert_eq!(store.len(), cap);
        // Everyone tracked is still busy: the victim is still limited, not fresh again.
        assert!(matches!(
            store.decide(b"victim", 2 * S, 1, false),
            Outcome::Deny { .. }
        ));
        // Once keys go idle they make room again.
        assert!(matches!(
            store.decide(b"late", 120 * S, 1, false),
            Outcome::Allow { .. }
        ));
    }

    /// Eight threads hammer one key with clock readings that arrive out of order (as real
    /// threads do: each reads the clock, then waits for the key's lock); for every algorithm,
    /// no window admits more than the policy allows.
    #[test]
    fn threads_with_out_of_order_clocks_never_exceed_any_algorithms_bound() {
        use crate::algo::{LeakyBucket, SlidingLog, SlidingWindow, TokenBucket};
        fn hammer<A>(algo: A)
        where
            A: Algorithm + Send + Sync + 'static,
            A::State: Send,
        {
            // A reading may be up to 7 ms older than one already decided, so a window of
            // 1 s in reading order can hold what the policy allows in 1.007 s.
            let window = Duration::from_secs(1);
            let bound = algo.max_admitted(window + Duration::from_millis(7)) as usize;
            let store = Arc::new(MemoryStore::new(algo, 64));
            let admitted = Arc::new(Mutex::new(Vec::new()));
            let handles: Vec<_> = (0..8u64)
                .map(|t| {
                    let (store, admitted) = (store.clone(), admitted.clone());
                    std::thread::spawn(move || {
                        for i in 0..400u64 {
                            // Each thread's clock runs 0-7 ms behind the others'.
                            let now = 1_000 * S + i * 5_000_000 - t * 1_000_000;
                            if !matches!(store.decide(b"hot", now, 1, false), Outcome::Deny { .. })
                            {
                                admitted.lock().unwrap_or_else(|e| e.into_inner()).push(now);
                            }
                        }
                    })
                })
                .collect();
            for h in handles {
                let _ = h.join();
            }
            let mut times = admitted.lock().unwrap_or_else(|e| e.into_inner()).clone();
            times.sort_unstable();
            let w = 1_000_000_000u64;
            for (i, start) in times.iter().enumerate() {
                let n = times[i..].iter().take_while(|t| **t < start + w).count();
                // Out-of-order readings can shift an admission by at most the 7 ms skew.
                let n_skewed = times[i..]
                    .iter()
                    .take_while(|t| **t < start + w + 7_000_000)
                    .count();
                assert!(
                    n <= bound || n_skewed <= bound + bound / 10 + 1,
                    "{n} admitted in 1s, bound {bound}"
                );
            }
        }
        hammer(Gcra::new(nz(20), Duration::from_secs(1), nz(5)));
        hammer(TokenBucket::new(nz(20), Duration::from_secs(1), nz(5)));
        hammer(LeakyBucket::nginx(nz(20), false, 5, 5));
        hammer(FixedWindow::new(nz(20), Duration::from_secs(1)));
        hammer(SlidingWindow::new(nz(20), Duration::from_secs(1)));
        hammer(SlidingLog::new(nz(20), Duration::from_secs(1)));
    }

    #[test]
    fn threads_hammering_one_key_never_exceed_the_limit() {
        let store = Arc::new(MemoryStore::new(
            FixedWindow::new(nz(100), Duration::from_secs(3600)),
            64,
        ));
        let admitted: usize = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|_| {
                            matches!(store.decide(b"hot", S, 1, false), Outcome::Allow { .. })
                        })
                        .count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap_or(usize::MAX))
            .sum();
        assert_eq!(admitted, 100);
    }
}
