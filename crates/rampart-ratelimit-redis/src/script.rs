//! The Lua scripts and the parameters each one takes, derived from a
//! [`rampart_ratelimit::Spec`] with the same arithmetic as the pure constructors.

use std::time::Duration;

use rampart_ratelimit::{BanRule, Spec};

use crate::limiter::ConfigError;

/// Largest integer every Lua number below is exact up to (2^53), with room for sums.
const LUA_EXACT: u128 = 1 << 52;

const PRELUDE: &str = include_str!("lua/prelude.lua");
const BANS: &str = include_str!("lua/bans.lua");

/// One algorithm's script and parameters.
#[derive(Debug)]
pub(crate) struct Program {
    /// The key suffix naming the algorithm, so state of another algorithm is never misread.
    pub(crate) name: &'static str,
    pub(crate) script: redis::Script,
    pub(crate) code: String,
    pub(crate) params: Vec<u64>,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn fits(value: u128, what: &'static str) -> Result<(), ConfigError> {
    if value <= LUA_EXACT {
        Ok(())
    } else {
        Err(ConfigError::TooLarge(what))
    }
}

impl Program {
    pub(crate) fn new(spec: &Spec) -> Result<Self, ConfigError> {
        let (name, body, params) = match *spec {
            Spec::Gcra {
                count,
                period,
                burst,
            } => {
                // As `Gcra::new`.
                let interval = (ns(period) / count.max(1)).max(1);
                let tolerance = interval.saturating_mul(burst.max(1) - 1);
                fits(
                    u128::from(tolerance) + u128::from(interval),
                    "gcra burst * interval",
                )?;
                (
                    "gcra",
                    include_str!("lua/gcra.lua"),
                    vec![interval, tolerance, burst.max(1)],
                )
            }
            Spec::TokenBucket {
                count,
                period,
                capacity,
            } => {
                let period = ns(period).max(1);
                fits(
                    u128::from(capacity.max(1)) * u128::from(period),
                    "token bucket capacity * period",
                )?;
                (
                    "token_bucket",
                    include_str!("lua/token_bucket.lua"),
                    vec![capacity.max(1), count.max(1), period],
                )
            }
            Spec::FixedWindow { count, period } => {
                let window = ns(period).max(1);
                fits(u128::from(window), "fixed window length")?;
                (
                    "fixed_window",
                    include_str!("lua/fixed_window.lua"),
                    vec![count.max(1), window],
                )
            }
            Spec::SlidingWindow { count, period } => {
                let window = ns(period).max(1);
                fits(
                    u128::from(count.max(1)) * u128::from(window) * 2,
                    "sliding window limit * window",
                )?;
                (
                    "sliding_window",
                    include_str!("lua/sliding_window.lua"),
                    vec![count.max(1), window],
                )
            }
            Spec::LeakyBucket {
                count,
                per_minute,
                burst,
                delay,
            } => {
                // As `LeakyBucket::nginx`: thousandths of a request, and of a request per
                // second.
                let count = count.max(1);
                let rate = if per_minute {
                    count.saturating_mul(1000) / 60
                } else {
                    count.saturating_mul(1000)
                }
                .max(1);
                let burst_milli = burst.saturating_mul(1000);
                let delay_milli = delay.min(burst).saturating_mul(1000);
                // The script multiplies remainders below the rate by 1000.
                fits(u128::from(rate) * 1000, "leaky bucket rate")?;
                // The longest delay or reset, `burst` leaking at `rate`, in nanoseconds.
                fits(
                    u128::from(burst_milli) * 1000 / u128::from(rate) * 1_000_000,
                    "leaky bucket burst / rate",
                )?;
                (
                    "leaky_bucket",
                    include_str!("lua/leaky_bucket.lua"),
                    vec![rate, burst_milli, delay_milli],
                )
            }
            Spec::SlidingLog { count, period } => {
                let window = ns(period).max(1);
                fits(u128::from(window), "sliding log window")?;
                (
                    "sliding_log",
                    include_str!("lua/sliding_log.lua"),
                    vec![count.max(1), window],
                )
            }
        };
        // The algorithm's body becomes `decide`, which the ban wrapper calls between its
        // check and its count.
        let code = format!("{PRELUDE}\nlocal function decide()\n{body}\nend\n{BANS}");
        Ok(Self {
            name,
            script: redis::Script::new(&code),
            code,
            params,
        })
    }
}

/// The script that counts a refusal by another layer (a strike) towards a ban: the ban
/// wrapper around a `decide` that always refuses, so a strike counts and bans exactly as a
/// refused decision does, and a client already banned is not counted.
pub(crate) fn strike_program() -> (redis::Script, String) {
    let code = format!("{PRELUDE}\nlocal function decide()\nreturn {{2, 0}}\nend\n{BANS}");
    (redis::Script::new(&code), code)
}

/// The ban rule as the scripts' ARGV[5..8]: refusals that ban (0 for no rule), the counting
/// window, the first and the longest ban, in nanoseconds; with the same arithmetic as
/// [`rampart_ratelimit::Bans`].
pub(crate) fn ban_params(rule: Option<&BanRule>) -> Result<[u64; 4], ConfigError> {
    let Some(rule) = rule else {
        return Ok([0; 4]);
    };
    // As `FixedWindow::new`, which `Bans` counts refusals with.
    let within = ns(rule.within).max(1);
    let max = ns(rule.max_duration);
    // Strikes are remembered for the ban, one longest ban and one counting window.
    fits(
        2 * u128::from(max) + u128::from(within),
        "ban max_duration * 2 + within",
    )?;
    // `after` 0 and 1 both ban at the first refusal; 0 is kept for "no rule". A first ban
    // longer than the longest is the longest, so it is sent capped and stays exact.
    Ok([rule.after.max(1), within, ns(rule.duration).min(max), max])
}
