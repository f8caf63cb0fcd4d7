//! Decisions per second: one hot key, and keys spread over a million clients.
//! Run: `cargo bench -p rampart-ratelimit --bench limiter`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::num::NonZeroU64;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_ratelimit::{Gcra, LeakyBucket, MemoryStore, SlidingLog, SlidingWindow};

fn nz(n: u64) -> NonZeroU64 {
    NonZeroU64::new(n).unwrap()
}

fn benches(c: &mut Criterion) {
    let gcra = MemoryStore::new(
        Gcra::new(nz(100), Duration::from_secs(1), nz(10)),
        1_000_000,
    );
    let mut now = 0u64;
    c.bench_function("store/gcra/hot_key", |b| {
        b.iter(|| {
            now += 1_000;
            gcra.decide(black_box(b"ip:203.0.113.9"), now, 1, false)
        })
    });

    let keys: Vec<[u8; 16]> = (0..1_000_000u128)
        .map(|i| (0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | (i << 64)).to_be_bytes())
        .collect();
    let mut i = 0usize;
    c.bench_function("store/gcra/1M_keys", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            now += 100;
            gcra.decide(black_box(&keys[i]), now, 1, false)
        })
    });

    let leaky = MemoryStore::new(LeakyBucket::nginx(nz(10), false, 5, 5), 1_000_000);
    c.bench_function("store/leaky_bucket/hot_key", |b| {
        b.iter(|| {
            now += 1_000;
            leaky.decide(black_box(b"ip:203.0.113.9"), now, 1, false)
        })
    });
    let window = MemoryStore::new(
        SlidingWindow::new(nz(100), Duration::from_secs(60)),
        1_000_000,
    );
    c.bench_function("store/sliding_window/hot_key", |b| {
        b.iter(|| {
            now += 1_000;
            window.decide(black_box(b"ip:203.0.113.9"), now, 1, false)
        })
    });
    let log = MemoryStore::new(SlidingLog::new(nz(5), Duration::from_secs(60)), 1_000_000);
    c.bench_function("store/sliding_log/hot_key", |b| {
        b.iter(|| {
            now += 1_000;
            log.decide(black_box(b"ip:203.0.113.9"), now, 1, false)
        })
    });
}

criterion_group!(limiter, benches);
criterion_main!(limiter);
