//! Bytes per tracked key, and memory under a flood of distinct IPv6 sources.
//! Run: `cargo bench -p rampart-ratelimit --bench memory` (prints a table; not criterion).
//! FLOOD=10000000 (default) sources, CAP=1000000 (default) tracked keys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use rampart_ratelimit::{Gcra, MemoryStore, Outcome};

/// Resident set size in bytes, from /proc/self/statm.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this without it, as a
    // smoke test: keep that run small.
    let quick = !std::env::args().any(|a| a == "--bench");
    let cap = if quick {
        10_000
    } else {
        env("CAP", 1_000_000) as usize
    };
    let flood = if quick {
        100_000
    } else {
        env("FLOOD", 10_000_000)
    };
    let before = rss();
    let store = MemoryStore::new(
        Gcra::new(
            NonZeroU64::new(10).unwrap(),
            Duration::from_secs(60),
            NonZeroU64::new(5).unwrap(),
        ),
        cap,
    );
    let started = Instant::now();
    let mut refused = 0u64;
    let mut peak = before;
    let mut at_cap: Option<(u64, u64)> = None;
    for i in 0..flood {
        // Every source its own /64: the worst case for per-client state.
        let addr = (0x2001_0db8u128 << 96) | (u128::from(i) << 64) | 1;
        let key = format!("ip:{}/64", std::net::Ipv6Addr::from(addr));
        if let Outcome::Deny { .. } = store.decide(key.as_bytes(), i * 1_000, 1, false) {
            refused += 1;
        }
        if at_cap.is_none() && i % 10_000 == 0 && store.len() >= store.capacity() {
            at_cap = Some((i, rss()));
        }
        if i % 1_000_000 == 0 {
            peak = peak.max(rss());
        }
    }
    let after = rss().max(peak);
    let elapsed = started.elapsed();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| tracked-key cap | {} |", store.capacity());
    println!("| keys tracked after the flood | {} |", store.len());
    println!("| distinct IPv6 /64 sources | {flood} |");
    let (cap_at, cap_rss) = at_cap.unwrap_or((flood, after));
    println!(
        "| RSS growth once the store is full | {:.1} MiB |",
        cap_rss.saturating_sub(before) as f64 / 1048576.0
    );
    println!(
        "| bytes per tracked key (that growth / cap) | {:.1} |",
        cap_rss.saturating_sub(before) as f64 / store.capacity() as f64
    );
    println!("| sources seen when the cap was reached | {cap_at} |");
    println!(
        "| RSS growth from then to the end of the flood | {:.1} MiB |",
        after.saturating_sub(cap_rss) as f64 / 1048576.0
    );
    println!(
        "| decisions per second during the flood | {:.0} |",
        flood as f64 / elapsed.as_secs_f64()
    );
    println!("| refused (overflow state shared by untracked keys) | {refused} |");
}
