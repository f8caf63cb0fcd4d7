//! Escalation: clients that keep getting refused are banned for a while, longer each time.
//!
//! A policy with a ban rule counts each client's refusals in a fixed window; the refusal
//! that makes `after` within `within` bans the client for `duration`, doubled for each
//! earlier ban still remembered (up to `max_duration`). While banned, every request of that
//! client on the policy's routes is refused at once, before the rate is even consulted. Bans
//! are listed and lifted through the admin API.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::algo::{FixedWindow, Nanos, Outcome};
use crate::store::MemoryStore;

/// When refusals turn into a ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanRule {
    /// Refusals that trigger a ban...
    pub after: u64,
    /// ...within this long.
    pub within: Duration,
    /// The first ban's length.
    pub duration: Duration,
    /// The longest ban (repeat offenders double up to this).
    pub max_duration: Duration,
}

/// A ban in force, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanInfo {
    /// The client, as the policy keys it (`ip:203.0.113.9`).
    pub client: String,
    /// Time left.
    pub remaining: Duration,
    /// How many times this client was banned (1 for a first ban).
    pub strikes: u32,
}

/// The bans of one policy.
pub struct Bans {
    rule: BanRule,
    refusals: MemoryStore<FixedWindow>,
    active: Mutex<HashMap<String, Ban>>,
    max_bans: usize,
}

#[derive(Debug, Clone, Copy)]
struct Ban {
    until: Nanos,
    strikes: u32,
    /// Strikes are forgotten after this (a long quiet time resets escalation).
    forget_at: Nanos,
}

impl std::fmt::Debug for Bans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bans").field("rule", &self.rule).finish()
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Bans {
    /// Bans under `rule`, remembering at most `max_bans` clients (the oldest expired bans
    /// make room first).
    pub fn new(rule: BanRule, max_keys: usize) -> Self {
        // The window admits `after - 1` refusals; the one it refuses is the `after`th.
        let before = std::num::NonZeroU64::new(rule.after.saturating_sub(1))
            .unwrap_or(std::num::NonZeroU64::MIN);
        Self {
            rule,
            refusals: MemoryStore::new(FixedWindow::new(before, rule.within), max_keys),
            active: Mutex::new(HashMap::new()),
            max_bans: max_keys.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ban>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The time left on `client`'s ban, if banned at `now`.
    pub fn banned(&self, client: &str, now: Nanos) -> Option<Duration> {
        let bans = self.lock();
        let ban = bans.get(client)?;
        (ban.until > now).then(|| Duration::from_nanos(ban.until - now))
    }

    /// Records a refusal of `client`; returns the ban's length when this refusal bans it.
    pub fn refused(&self, client: &str, now: Nanos) -> Option<Duration> {
        let over = self.rule.after <= 1
            || matches!(
                self.refusals.decide(client.as_bytes(), now, 1, true),
                Outcome::Deny { .. }
            );
        if !over {
            return None;
        }
        let mut bans = self.lock();
        if bans.len() >= self.max_bans {
            bans.retain(|_, b| b.until > now || b.forget_at > now);
            if bans.len() >= self.max_bans {
                // Full of live bans: this client is refused by its rate limit anyway.
                return None;
            }
        }
        let strikes = bans
            .get(client)
            .filter(|b| b.forget_at > now)
            .map_or(1, |b| b.strikes.saturating_add(1));
        let factor = 1u32.checked_shl(strikes - 1).unwrap_or(u32::MAX);
        let length = self
            .rule
            .duration
            .saturating_mul(factor)
            .min(self.rule.max_duration);
        let until = now.saturating_add(ns(length));
        bans.insert(
            client.to_string(),
            Ban {
                until,
                strikes,
                // Escalation is remembered for one more counting window and one max-length
                // ban after this ban ends.
                forget_at: until
                    .saturating_add(ns(self.rule.max_duration))
                    .saturating_add(ns(self.rule.within)),
            },
        );
        Some(length)
    }

    /// Lifts `client`'s ban, its escalation and its recent refusals; true if it was banned.
    pub fn lift(&self, client: &str) -> bool {
        self.refusals.forget(client.as_bytes());
        self.lock().remove(client).is_some()
    }

    /// Bans in force at `now`.
    pub fn list(&self, now: Nanos) -> Vec<BanInfo> {
        let mut out: Vec<BanInfo> = self
            .lock()
            .iter()
            .filter(|(_, b)| b.until > now)
            .map(|(client, b)| BanInfo {
                client: client.clone(),
                remaining: Duration::from_nanos(b.until - now),
                strikes: b.strikes,
            })
            .collect();
        out.sort_by(|a, b| a.client.cmp(&b.client));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn rule() -> BanRule {
        BanRule {
            after: 3,
            within: Duration::from_secs(60),
            duration: Duration::from_secs(10),
            max_duration: Duration::from_secs(25),
        }
    }

    #[test]
    fn the_nth_refusal_bans_and_repeat_offenders_wait_longer() {
        let bans = Bans::new(rule(), 100);
        assert_eq!(bans.refused("ip:1", S), None);
        assert_eq!(bans.refused("ip:1", S), None);
        assert_eq!(bans.refused("ip:1", S), Some(Duration::from_secs(10)));
        assert_eq!(bans.banned("ip:1", S + 5 * S), Some(Duration::from_secs(5)));
        assert_eq!(bans.banned("ip:1", 11 * S), None);
        assert_eq!(bans.banned("ip:2", S), None);
        // Next window: three more refusals ban again, twice as long, then capped.
        let t = 70 * S;
        for _ in 0..2 {
            assert_eq!(bans.refused("ip:1", t), None);
        }
        assert_eq!(bans.refused("ip:1", t), Some(Duration::from_secs(20)));
        let t = 140 * S;
        for _ in 0..2 {
            bans.refused("ip:1", t);
        }
        assert_eq!(bans.refused("ip:1", t), Some(Duration::from_secs(25)));
        assert_eq!(bans.list(t).len(), 1);
        assert_eq!(bans.list(t)[0].strikes, 3);
        assert!(bans.lift("ip:1"));
        assert_eq!(bans.banned("ip:1", t), None);
    }
}
