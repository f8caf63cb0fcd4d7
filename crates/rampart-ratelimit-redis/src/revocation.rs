//! [`RedisRevocations`]: token revocations shared by a fleet of gateways through Redis, the
//! [`RevocationStore`] with the semantics of `rampart_auth::MemoryRevocations`.
//!
//! Two kinds of entry, both scoped to an issuer, one Redis string each:
//! - `rampart:revoked:{<issuer>}:jti:<jti>`, one revoked token; its value is `<until>`;
//! - `rampart:revoked:{<issuer>}:sub:<subject>`, a subject cut-off refusing the subject's
//!   tokens issued (`iat`) before `before`, and its tokens without `iat`; its value is
//!   `<before>:<until>`.
//!
//! Times are decimal seconds since the Unix epoch. Each key expires (`EXAT`) at its `until`,
//! so Redis holds only what can still matter; `until` is in the value as well, so that a
//! check at the caller's `now` answers exactly as the in-memory table does and a listing
//! shows the exact `until`, whatever Redis's clock says.
//!
//! The braces are a Redis Cluster hash tag: both keys a check reads live on the issuer's
//! slot, so a check is one `MGET`. In the tag the issuer's `%`, `{` and `}` are written
//! `%25`, `%7B` and `%7D`, so the tag always ends where the issuer does and every key names
//! one entry; the `jti` or subject after it is written as is.
//!
//! Revoking merges into an existing entry atomically (a short Lua script): a token keeps the
//! later `until`, a subject cut-off the later `before` and the later `until`. An entry whose
//! `until` is not after `now` is not stored. Times are capped at 2^52 s (some 140 million
//! years), where Lua numbers are still exact and `EXAT` cannot overflow.
//!
//! A check ([`RevocationStore::is_revoked`]) is a request's decision: one round trip, bounded
//! by the timeout and guarded by the circuit breaker, and any failure is an error (the caller
//! fails closed). Revoking, listing and unrevoking are an operator's requests: bounded by 2 s
//! and kept away from the breaker. A listing scans the keyspace (`SCAN`), so with Redis
//! Cluster it sees the node its connection reaches.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use rampart_core::revocation::{
    RevocationError, RevocationStore, RevokedSubject, RevokedToken, TokenFacts,
};

use crate::breaker::CircuitBreaker;
use crate::connection::{Connector, SCAN_COUNT};
use crate::limiter::{ConfigError, RedisError, RedisSettings};

/// Revocations in Redis, shared by every gateway that uses the same Redis.
#[derive(Debug)]
pub struct RedisRevocations {
    connector: Connector,
    merge: redis::Script,
}

/// Largest time stored (2^52 s): Lua numbers are exact below 2^53, and `EXAT` in
/// milliseconds stays far below 2^63.
const MAX_TIME: u64 = 1 << 52;

const PREFIX: &str = "rampart:revoked:";

/// Merges one revocation into KEYS[1]. ARGV: `before` (empty for a token), `until`, `now`.
/// Keeps the later `before` and the later `until` of the stored entry and the new one, and
/// stores nothing when the merged `until` is not after `now`. The numbers are compared as
/// numbers but written back as the strings they came in, so no float is ever formatted.
const MERGE: &str = r"
local before, till, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local cur = redis.call('GET', KEYS[1])
if cur then
  local b, u
  if before == '' then
    u = string.match(cur, '^(%d+)$')
  else
    b, u = string.match(cur, '^(%d+):(%d+)$')
    if b and tonumber(b) > tonumber(before) then before = b end
  end
  if u and tonumber(u) > tonumber(till) then till = u end
end
if tonumber(till) <= now then return 0 end
local value = till
if before ~= '' then value = before .. ':' .. till end
redis.call('SET', KEYS[1], value, 'EXAT', till)
return 1
";

impl RedisRevocations {
    /// Entries a listing reads at most: a listing holds them all in memory, and a list
    /// longer than this is refused (an error, not a truncated list that would hide
    /// revocations).
    pub const LIST_CAP: usize = 100_000;

    /// Revocations in the Redis of `settings`, checks bounded by its timeout and breaker.
    /// Does not connect: the first call does.
    pub fn new(settings: &RedisSettings) -> Result<Self, ConfigError> {
        Ok(Self {
            connector: Connector::new(settings).map_err(ConfigError::Url)?,
            merge: redis::Script::new(MERGE),
        })
    }

    /// The circuit breaker guarding the checks.
    pub fn breaker(&self) -> &CircuitBreaker {
        self.connector.breaker()
    }

    /// The per-check timeout.
    pub fn timeout(&self) -> Duration {
        self.connector.timeout()
    }

    /// The key of a revoked token: `rampart:revoked:{<issuer>}:jti:<jti>`.
    pub fn token_key(issuer: &str, jti: &str) -> String {
        format!("{PREFIX}{{{}}}:jti:{jti}", escape_issuer(issuer))
    }

    /// The key of a subject cut-off: `rampart:revoked:{<issuer>}:sub:<subject>`.
    pub fn subject_key(issuer: &str, subject: &str) -> String {
        format!("{PREFIX}{{{}}}:sub:{subject}", escape_issuer(issuer))
    }

    async fn store(
        &self,
        key: String,
        before: Option<u64>,
        until: u64,
        now: u64,
    ) -> Result<(), RevocationError> {
        let before = before.map_or_else(String::new, |b| b.min(MAX_TIME).to_string());
        let until = until.min(MAX_TIME);
        self.connector
            .admin(async {
                let mut conn = self.connector.connection().await?;
                let _stored: u8 = self
                    .merge
                    .key(&key)
                    .arg(before)
                    .arg(until)
                    .arg(now)
                    .invoke_async(&mut conn)
                    .await?;
                Ok(())
            })
            .await
            .map_err(store_error)
    }

    async fn delete(&self, key: String) -> Result<bool, RevocationError> {
        self.connector
            .admin(async {
                let mut conn = self.connector.connection().await?;
                let deleted: u64 = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
                Ok(deleted > 0)
            })
            .await
            .map_err(store_error)
    }

    /// Every key under [`PREFIX`], at most [`Self::LIST_CAP`] (`None` beyond).
    async fn scan(&self) -> Result<Option<Vec<Vec<u8>>>, RedisError> {
        let mut conn = self.connector.connection().await?;
        // SCAN may return a key more than once: a set counts each once.
        let mut keys = BTreeSet::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{PREFIX}*"))
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut conn)
                .await?;
            keys.extend(batch);
            if keys.len() > Self::LIST_CAP {
                return Ok(None);
            }
            if next == 0 {
                return Ok(Some(keys.into_iter().collect()));
            }
            cursor = next;
        }
    }

    async fn listing(&self, now: u64) -> Result<Option<Listing>, RedisError> {
        let Some(keys) = self.scan().await? else {
            return Ok(None);
        };
        let mut conn = self.connector.connection().await?;
        let mut listing = Listing::default();
        for chunk in keys.chunks(SCAN_COUNT as usize) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("GET").arg(key);
            }
            let values: Vec<Option<Vec<u8>>> = pipe.query_async(&mut conn).await?;
            for (key, value) in chunk.iter().zip(values) {
                // No value: expired between the scan and the read. A key or value that does
                // not parse is not ours to list.
                if let (Some(entry), Some(value)) = (Entry::parse(key), value) {
                    listing.add(entry, &value, now);
                }
            }
        }
        Ok(Some(listing))
    }
}

#[async_trait]
impl RevocationStore for RedisRevocations {
    async fn is_revoked(&self, token: TokenFacts<'_>, now: u64) -> Result<bool, RevocationError> {
        let subject_key = Self::subject_key(token.issuer, token.subject);
        let token_key = token.jti.map(|jti| Self::token_key(token.issuer, jti));
        let values: Vec<Option<String>> = self
            .connector
            .guarded(async {
                let mut conn = self.connector.connection().await?;
                let mut mget = redis::cmd("MGET");
                mget.arg(&subject_key);
                if let Some(key) = &token_key {
                    mget.arg(key);
                }
                Ok(mget.query_async(&mut conn).await?)
            })
            .await
            .map_err(store_error)?;
        let (subject, token_value) = match values.as_slice() {
            [subject] if token_key.is_none() => (subject, &None),
            [subject, token_value] if token_key.is_some() => (subject, token_value),
            _ => {
                return Err(RevocationError::Store(format!(
                    "MGET answered {} values",
                    values.len()
                )));
            }
        };
        if let (Some(key), Some(value)) = (&token_key, token_value) {
            let until = parse_token(value).ok_or_else(|| unreadable(key, value))?;
            if until > now {
                return Ok(true);
            }
        }
        if let Some(value) = subject {
            let (before, until) =
                parse_subject(value).ok_or_else(|| unreadable(&subject_key, value))?;
            return Ok(until > now && token.issued_at.is_none_or(|iat| iat < before));
        }
        Ok(false)
    }

    async fn revoke_token(&self, entry: RevokedToken, now: u64) -> Result<(), RevocationError> {
        let key = Self::token_key(&entry.issuer, &entry.jti);
        self.store(key, None, entry.until, now).await
    }

    async fn revoke_subject(&self, entry: RevokedSubject, now: u64) -> Result<(), RevocationError> {
        let key = Self::subject_key(&entry.issuer, &entry.subject);
        self.store(key, Some(entry.before), entry.until, now).await
    }

    async fn list(
        &self,
        now: u64,
    ) -> Result<(Vec<RevokedToken>, Vec<RevokedSubject>), RevocationError> {
        let Some(mut listing) = self
            .connector
            .admin(self.listing(now))
            .await
            .map_err(store_error)?
        else {
            return Err(RevocationError::Store(format!(
                "more than {} revocation entries: too many to list",
                Self::LIST_CAP
            )));
        };
        listing
            .tokens
            .sort_by(|a, b| (&a.issuer, &a.jti).cmp(&(&b.issuer, &b.jti)));
        listing
            .subjects
            .sort_by(|a, b| (&a.issuer, &a.subject).cmp(&(&b.issuer, &b.subject)));
        Ok((listing.tokens, listing.subjects))
    }

    async fn unrevoke_token(&self, issuer: &str, jti: &str) -> Result<bool, RevocationError> {
        self.delete(Self::token_key(issuer, jti)).await
    }

    async fn unrevoke_subject(&self, issuer: &str, subject: &str) -> Result<bool, RevocationError> {
        self.delete(Self::subject_key(issuer, subject)).await
    }
}

/// The entries in force, as read by a listing.
#[derive(Debug, Default)]
struct Listing {
    tokens: Vec<RevokedToken>,
    subjects: Vec<RevokedSubject>,
}

impl Listing {
    fn add(&mut self, entry: Entry, value: &[u8], now: u64) {
        let Ok(value) = std::str::from_utf8(value) else {
            return;
        };
        match entry {
            Entry::Token { issuer, jti } => {
                if let Some(until) = parse_token(value).filter(|until| *until > now) {
                    self.tokens.push(RevokedToken { issuer, jti, until });
                }
            }
            Entry::Subject { issuer, subject } => {
                if let Some((before, until)) =
                    parse_subject(value).filter(|(_, until)| *until > now)
                {
                    self.subjects.push(RevokedSubject {
                        issuer,
                        subject,
                        before,
                        until,
                    });
                }
            }
        }
    }
}

/// What a key names.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Token { issuer: String, jti: String },
    Subject { issuer: String, subject: String },
}

impl Entry {
    /// The entry `key` names, if it is one of ours.
    fn parse(key: &[u8]) -> Option<Self> {
        let key = std::str::from_utf8(key).ok()?;
        let (tag, rest) = key
            .strip_prefix(PREFIX)?
            .strip_prefix('{')?
            .split_once('}')?;
        let issuer = unescape_issuer(tag)?;
        if let Some(jti) = rest.strip_prefix(":jti:") {
            Some(Self::Token {
                issuer,
                jti: jti.to_string(),
            })
        } else {
            rest.strip_prefix(":sub:").map(|subject| Self::Subject {
                issuer,
                subject: subject.to_string(),
            })
        }
    }
}

/// Writes the issuer's `%`, `{` and `}` as `%25`, `%7B` and `%7D`.
fn escape_issuer(issuer: &str) -> String {
    let mut out = String::with_capacity(issuer.len());
    for c in issuer.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

/// The inverse of [`escape_issuer`]; `None` for anything it never writes.
fn unescape_issuer(tag: &str) -> Option<String> {
    let mut out = String::with_capacity(tag.len());
    let mut rest = tag;
    while let Some(at) = rest.find(['%', '{']) {
        let (plain, escaped) = rest.split_at(at);
        out.push_str(plain);
        let (c, tail) = if let Some(tail) = escaped.strip_prefix("%25") {
            ('%', tail)
        } else if let Some(tail) = escaped.strip_prefix("%7B") {
            ('{', tail)
        } else if let Some(tail) = escaped.strip_prefix("%7D") {
            ('}', tail)
        } else {
            return None;
        };
        out.push(c);
        rest = tail;
    }
    out.push_str(rest);
    Some(out)
}

/// A token entry's value: `<until>`.
fn parse_token(value: &str) -> Option<u64> {
    parse_time(value)
}

/// A subject cut-off's value: `<before>:<until>`.
fn parse_subject(value: &str) -> Option<(u64, u64)> {
    let (before, until) = value.split_once(':')?;
    Some((parse_time(before)?, parse_time(until)?))
}

/// Decimal digits only, as the merge script writes them (no sign, no spaces).
fn parse_time(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A value the merge script never writes: the check cannot tell, so it fails (closed).
fn unreadable(key: &str, value: &str) -> RevocationError {
    RevocationError::Store(format!("unreadable revocation entry {key}: {value:?}"))
}

fn store_error(e: RedisError) -> RevocationError {
    RevocationError::Store(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Cluster hash tag of `key`: between the first `{` and the first `}` after it.
    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').unwrap();
        let len = key[open + 1..].find('}').unwrap();
        &key[open + 1..open + 1 + len]
    }

    #[test]
    fn keys_tag_the_issuer_so_a_check_reads_one_slot() {
        assert_eq!(
            RedisRevocations::token_key("https://id.example", "t-1"),
            "rampart:revoked:{https://id.example}:jti:t-1"
        );
        assert_eq!(
            RedisRevocations::subject_key("https://id.example", "alice"),
            "rampart:revoked:{https://id.example}:sub:alice"
        );
        let issuer = "https://id/{tenant}%";
        let token = RedisRevocations::token_key(issuer, "j}{");
        let subject = RedisRevocations::subject_key(issuer, "s}");
        assert_eq!(hash_tag(&token), "https://id/%7Btenant%7D%25");
        assert_eq!(hash_tag(&token), hash_tag(&subject));
    }

    #[test]
    fn every_key_names_one_entry() {
        for (issuer, name) in [
            ("i", "j"),
            ("", ""),
            ("a}:jti:b", "c"),
            ("a", "b}:sub:c"),
            ("%7D", "%"),
            ("{%}", "{}"),
            ("é", "ü:"),
        ] {
            let token = RedisRevocations::token_key(issuer, name);
            assert_eq!(
                Entry::parse(token.as_bytes()),
                Some(Entry::Token {
                    issuer: issuer.into(),
                    jti: name.into()
                })
            );
            let subject = RedisRevocations::subject_key(issuer, name);
            assert_eq!(
                Entry::parse(subject.as_bytes()),
                Some(Entry::Subject {
                    issuer: issuer.into(),
                    subject: name.into()
                })
            );
        }
        for foreign in [
            "rampart:revoked:x",
            "rampart:revoked:{i}:ban:x",
            "rampart:revoked:{%41}:jti:x",
            "rampart:revoked:{a{b}:jti:x",
            "rampart:{p:c}:gcra",
        ] {
            assert_eq!(Entry::parse(foreign.as_bytes()), None, "{foreign}");
        }
        assert_eq!(Entry::parse(b"rampart:revoked:{\xff}:jti:x"), None);
    }

    #[test]
    fn values_are_plain_decimal_times() {
        assert_eq!(parse_token("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_subject("10:20"), Some((10, 20)));
        for bad in ["", "+1", "-1", " 1", "1.5", "99999999999999999999"] {
            assert_eq!(parse_token(bad), None, "{bad:?}");
        }
        for bad in ["10", "10:", ":20", "10:20:30", "a:b"] {
            assert_eq!(parse_subject(bad), None, "{bad:?}");
        }
    }
}
