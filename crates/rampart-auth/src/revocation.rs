//! Revocation: refuse tokens that are still valid on their face.
//!
//! Two kinds of entry, both scoped to an issuer:
//! - a `jti` (one token), kept until the token would have expired anyway;
//! - a subject cut-off, "every token of subject S issued before T" (a stolen laptop, a
//!   password change), kept for the longest token lifetime after T, after which no token
//!   issued before T can still be valid.
//!
//! A token without `iat` cannot show it was issued after a cut-off, so a cut-off refuses
//! it. Entries expire by themselves, so the table only holds what can still matter; it is
//! also capped, and a full table refuses new entries (the admin API reports it) rather than
//! dropping old ones, which would un-revoke tokens silently.
//!
//! [`RevocationStore`] is the seam to a store shared by a fleet; [`MemoryRevocations`] is
//! the in-process implementation.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

pub use rampart_core::revocation::{
    RevocationError, RevocationStore, RevokedSubject, RevokedToken, TokenFacts,
};

#[derive(Debug, Default)]
struct Tables {
    tokens: HashMap<(String, String), u64>,
    subjects: HashMap<(String, String), (u64, u64)>,
}

impl Tables {
    fn len(&self) -> usize {
        self.tokens.len() + self.subjects.len()
    }

    fn sweep(&mut self, now: u64) {
        self.tokens.retain(|_, until| *until > now);
        self.subjects.retain(|_, (_, until)| *until > now);
    }
}

/// Revocations in this process's memory.
#[derive(Debug)]
pub struct MemoryRevocations {
    tables: Mutex<Tables>,
    cap: usize,
}

impl MemoryRevocations {
    /// An empty list holding at most `cap` entries.
    pub fn new(cap: usize) -> Self {
        Self {
            tables: Mutex::new(Tables::default()),
            cap: cap.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn room(&self, t: &mut Tables, now: u64) -> Result<(), RevocationError> {
        if t.len() >= self.cap {
            t.sweep(now);
        }
        if t.len() >= self.cap {
            return Err(RevocationError::Full(self.cap));
        }
        Ok(())
    }

    /// As [`RevocationStore::is_revoked`], synchronously.
    pub fn check(&self, token: TokenFacts<'_>, now: u64) -> bool {
        let t = self.lock();
        if t.tokens.is_empty() && t.subjects.is_empty() {
            return false;
        }
        if let Some(jti) = token.jti
            && t.tokens
                .get(&(token.issuer.to_string(), jti.to_string()))
                .is_some_and(|until| *until > now)
        {
            return true;
        }
        t.subjects
            .get(&(token.issuer.to_string(), token.subject.to_string()))
            .is_some_and(|(before, until)| {
                *until > now && token.issued_at.is_none_or(|iat| iat < *before)
            })
    }
}

#[async_trait]
impl RevocationStore for MemoryRevocations {
    async fn is_revoked(&self, token: TokenFacts<'_>, now: u64) -> Result<bool, RevocationError> {
        Ok(self.check(token, now))
    }

    async fn revoke_token(&self, e: RevokedToken, now: u64) -> Result<(), RevocationError> {
        let mut t = self.lock();
        let key = (e.issuer, e.jti);
        if !t.tokens.contains_key(&key) {
            self.room(&mut t, now)?;
        }
        let until = t.tokens.get(&key).map_or(e.until, |u| (*u).max(e.until));
        t.tokens.insert(key, until);
        Ok(())
    }

    async fn revoke_subject(&self, e: RevokedSubject, now: u64) -> Result<(), RevocationError> {
        let mut t = self.lock();
        let key = (e.issuer, e.subject);
        if !t.subjects.contains_key(&key) {
            self.room(&mut t, now)?;
        }
        // A later cut-off covers an earlier one; keep the longer life.
        let merged = match t.subjects.get(&key) {
            Some((before, until)) => ((*before).max(e.before), (*until).max(e.until)),
            None => (e.before, e.until),
        };
        t.subjects.insert(key, merged);
        Ok(())
    }

    async fn list(
        &self,
        now: u64,
    ) -> Result<(Vec<RevokedToken>, Vec<RevokedSubject>), RevocationError> {
        let t = self.lock();
        let mut tokens: Vec<RevokedToken> = t
            .tokens
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|((issuer, jti), until)| RevokedToken {
                issuer: issuer.clone(),
                jti: jti.clone(),
                until: *until,
            })
            .collect();
        let mut subjects: Vec<RevokedSubject> = t
            .subjects
            .iter()
            .filter(|(_, (_, until))| *until > now)
            .map(|((issuer, subject), (before, until))| RevokedSubject {
                issuer: issuer.clone(),
                subject: subject.clone(),
                before: *before,
                until: *until,
            })
            .collect();
        tokens.sort_by(|a, b| (&a.issuer, &a.jti).cmp(&(&b.issuer, &b.jti)));
        subjects.sort_by(|a, b| (&a.issuer, &a.subject).cmp(&(&b.issuer, &b.subject)));
        Ok((tokens, subjects))
    }

    async fn unrevoke_token(&self, issuer: &str, jti: &str) -> Result<bool, RevocationError> {
        Ok(self
            .lock()
            .tokens
            .remove(&(issuer.to_string(), jti.to_string()))
            .is_some())
    }

    async fn unrevoke_subject(&self, issuer: &str, subject: &str) -> Result<bool, RevocationError> {
        Ok(self
            .lock()
            .subjects
            .remove(&(issuer.to_string(), subject.to_string()))
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    fn facts<'a>(sub: &'a str, jti: Option<&'a str>, iat: Option<u64>) -> TokenFacts<'a> {
        TokenFacts {
            issuer: "https://id",
            subject: sub,
            jti,
            issued_at: iat,
        }
    }

    #[test]
    fn a_revoked_jti_is_refused_until_the_token_would_have_expired() {
        let r = MemoryRevocations::new(10);
        let e = RevokedToken {
            issuer: "https://id".into(),
            jti: "t1".into(),
            until: 2_000,
        };
        block_on(r.revoke_token(e, 1_000)).unwrap();
        assert!(r.check(facts("alice", Some("t1"), Some(900)), 1_500));
        assert!(!r.check(facts("alice", Some("t2"), Some(900)), 1_500));
        // Another issuer's token with the same jti is not affected.
        let other = TokenFacts {
            issuer: "https://other",
            ..facts("alice", Some("t1"), Some(900))
        };
        assert!(!r.check(other, 1_500));
        assert!(
            !r.check(facts("alice", Some("t1"), Some(900)), 2_000),
            "expired entry"
        );
        assert!(block_on(r.list(2_000)).unwrap().0.is_empty());
        assert!(block_on(r.unrevoke_token("https://id", "t1")).unwrap());
    }

    #[test]
    fn a_subject_cut_off_refuses_older_tokens_and_tokens_without_iat() {
        let r = MemoryRevocations::new(10);
        let e = RevokedSubject {
            issuer: "https://id".into(),
            subject: "bob".into(),
            before: 1_000,
            until: 1_000 + 86_400,
        };
        block_on(r.revoke_subject(e, 1_000)).unwrap();
        assert!(r.check(facts("bob", None, Some(999)), 1_001));
        assert!(
            r.check(facts("bob", None, None), 1_001),
            "no iat: cannot prove it is newer"
        );
        assert!(!r.check(facts("bob", None, Some(1_000)), 1_001));
        assert!(!r.check(facts("carol", None, Some(1)), 1_001));
        let (_, subjects) = block_on(r.list(1_001)).unwrap();
        assert_eq!(subjects.len(), 1);
        assert!(block_on(r.unrevoke_subject("https://id", "bob")).unwrap());
        assert!(!r.check(facts("bob", None, Some(999)), 1_001));
    }

    #[test]
    fn a_full_list_refuses_new_entries_instead_of_forgetting_old_ones() {
        let r = MemoryRevocations::new(2);
        for (i, until) in [(1, 5_000), (2, 1_500)] {
            let e = RevokedToken {
                issuer: "i".into(),
                jti: format!("t{i}"),
                until,
            };
            block_on(r.revoke_token(e, 1_000)).unwrap();
        }
        let third = RevokedToken {
            issuer: "i".into(),
            jti: "t3".into(),
            until: 9_000,
        };
        assert_eq!(
            block_on(r.revoke_token(third.clone(), 1_000)),
            Err(RevocationError::Full(2))
        );
        // Once an entry has expired, there is room again.
        assert_eq!(block_on(r.revoke_token(third, 1_600)), Ok(()));
    }
}
