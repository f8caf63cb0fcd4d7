//! Human-readable quantities in the config: durations (`30s`), sizes (`1MiB`) and rates
//! (`100/m`, `10r/s`). Each parses at the edge into a typed value, so nothing downstream
//! handles strings.

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer};

/// A duration written as one or more `<number><unit>` parts: `500ms`, `30s`, `5m`, `1h30m`,
/// `365d`. Units: `ms`, `s`, `m`, `h`, `d`. A bare number is refused: it is ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

/// A size in bytes: `512`, `16KiB`, `1MiB`, `10MB`, or nginx style `8k`, `1m`
/// (`k`/`m`/`g` are binary multiples, as in nginx).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

/// A rate: a count per period, `100/m`, `10r/s` (nginx style), `5/min`, `1000/h`, `2/10s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// How many events are allowed per `period`.
    pub count: NonZeroU64,
    /// The period the count applies to.
    pub period: Duration,
}

/// Why a quantity did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(String);

impl FromStr for HumanDuration {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            UnitError(format!(
                "invalid duration {s:?}: expected a number with a unit (ms, s, m, h, d), like 30s or 1h30m"
            ))
        };
        let s_trim = s.trim();
        if s_trim.is_empty() {
            return Err(bad());
        }
        let mut total = Duration::ZERO;
        let mut rest = s_trim;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let (num, tail) = rest.split_at(digits);
            let n: u64 = num.parse().map_err(|_| bad())?;
            let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
            if unit_len == 0 {
                return Err(bad());
            }
            let (unit, tail) = tail.split_at(unit_len);
            let part = match unit {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
                "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
                "d" => Duration::from_secs(n.checked_mul(86_400).ok_or_else(bad)?),
                _ => return Err(bad()),
            };
            total = total.checked_add(part).ok_or_else(bad)?;
            rest = tail;
        }
        Ok(HumanDuration(total))
    }
}

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            UnitError(format!(
                "invalid size {s:?}: expected bytes with an optional unit (KiB, MiB, GiB, KB, MB, GB, k, m, g), like 16KiB"
            ))
        };
        let t = s.trim();
        let digits = t.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let (num, unit) = t.split_at(digits);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" => 1000,
            "MB" => 1000 * 1000,
            "GB" => 1000 * 1000 * 1000,
            "k" | "K" | "KiB" => 1024,
            "m" | "M" | "MiB" => 1024 * 1024,
            "g" | "G" | "GiB" => 1024 * 1024 * 1024,
            _ => return Err(bad()),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(bad)
    }
}

impl FromStr for Rate {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            UnitError(format!(
                "invalid rate {s:?}: expected a count per period, like 100/m, 10r/s or 5/10s"
            ))
        };
        let (count, period) = s.trim().split_once('/').ok_or_else(bad)?;
        let count = count.trim();
        let count = count.strip_suffix('r').unwrap_or(count);
        let count: u64 = count.parse().map_err(|_| bad())?;
        let count = NonZeroU64::new(count).ok_or_else(bad)?;
        let period = match period.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => other.parse::<HumanDuration>().map_err(|_| bad())?.0,
        };
        if period.is_zero() {
            return Err(bad());
        }
        Ok(Rate { count, period })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

macro_rules! string_backed {
    ($ty:ty, $name:literal, $pattern:literal, $desc:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", "pattern": $pattern, "description": $desc })
            }
        }
    };
}

string_backed!(
    HumanDuration,
    "Duration",
    "^([0-9]+(ms|s|m|h|d))+$",
    "A duration such as 500ms, 30s, 5m, 1h30m or 365d."
);
string_backed!(
    Rate,
    "Rate",
    "^[0-9]+r?/([0-9]*(ms|s|m|h|d)|sec|second|min|minute|hour|day)$",
    "A rate such as 100/m, 10r/s or 5/10s."
);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^[0-9]+ ?(B|KB|MB|GB|KiB|MiB|GiB|k|K|m|M|g|G)?$" }
            ],
            "description": "A size in bytes, such as 512, 16KiB, 1MiB or 8k."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |s: &str| s.parse::<HumanDuration>().map(|d| d.0);
        assert_eq!(d("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("365d"), Ok(Duration::from_secs(31_536_000)));
        for bad in [
            "",
            "30",
            "s",
            "3x",
            "1.5s",
            "-1s",
            "99999999999999999999d",
            "3 s",
        ] {
            assert!(d(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn sizes() {
        let b = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(b("512"), Ok(512));
        assert_eq!(b("16KiB"), Ok(16384));
        assert_eq!(b("8k"), Ok(8192));
        assert_eq!(b("1m"), Ok(1 << 20));
        assert_eq!(b("10MB"), Ok(10_000_000));
        assert!(b("1.5MiB").is_err());
        assert!(b("12 parsecs").is_err());
        assert!(b("99999999999999999999").is_err());
    }

    #[test]
    fn rates() {
        let r = |s: &str| {
            s.parse::<Rate>()
                .map(|r| (r.count.get(), r.period.as_secs()))
        };
        assert_eq!(r("100/m"), Ok((100, 60)));
        assert_eq!(r("10r/s"), Ok((10, 1)));
        assert_eq!(r("5/10s"), Ok((5, 10)));
        assert_eq!(r("1000/hour"), Ok((1000, 3600)));
        assert!(r("0/s").is_err());
        assert!(r("10").is_err());
        assert!(r("10/0s").is_err());
        assert!(r("ten/s").is_err());
    }
}
