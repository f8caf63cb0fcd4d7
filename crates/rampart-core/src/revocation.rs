//! The revocation seam: what a store of revoked tokens answers, so that the token defense
//! (in `rampart-auth`) and a store shared by a fleet (Redis, in `rampart-ratelimit-redis`)
//! meet here without depending on each other. Times are seconds since the Unix epoch.

use async_trait::async_trait;

/// One revoked token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedToken {
    /// The issuer (`iss`).
    pub issuer: String,
    /// The token's `jti`.
    pub jti: String,
    /// Kept until then (seconds since the Unix epoch): the token's `exp`.
    pub until: u64,
}

/// A subject cut-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSubject {
    /// The issuer (`iss`).
    pub issuer: String,
    /// The subject (`sub`).
    pub subject: String,
    /// Tokens issued (`iat`) before this are refused (seconds since the Unix epoch).
    pub before: u64,
    /// Kept until then: `before` plus the longest token lifetime.
    pub until: u64,
}

/// What a revocation check needs from a verified token.
#[derive(Debug, Clone, Copy)]
pub struct TokenFacts<'a> {
    /// `iss`.
    pub issuer: &'a str,
    /// `sub`.
    pub subject: &'a str,
    /// `jti`, when present.
    pub jti: Option<&'a str>,
    /// `iat`, when present.
    pub issued_at: Option<u64>,
}

/// Why a revocation could not be recorded or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    /// The table is at its cap.
    #[error("the revocation list is full ({0} entries)")]
    Full(usize),
    /// The shared store failed.
    #[error("revocation store: {0}")]
    Store(String),
}

/// Revocations kept where every gateway sees them.
#[async_trait]
pub trait RevocationStore: Send + Sync + std::fmt::Debug {
    /// Whether `token` is revoked at `now`. An error means "cannot tell": the caller
    /// fails closed.
    async fn is_revoked(&self, token: TokenFacts<'_>, now: u64) -> Result<bool, RevocationError>;
    /// Revokes one token until `until`.
    async fn revoke_token(&self, entry: RevokedToken, now: u64) -> Result<(), RevocationError>;
    /// Revokes a subject's tokens issued before `entry.before`.
    async fn revoke_subject(&self, entry: RevokedSubject, now: u64) -> Result<(), RevocationError>;
    /// The entries in force, tokens then subjects, sorted.
    async fn list(
        &self,
        now: u64,
    ) -> Result<(Vec<RevokedToken>, Vec<RevokedSubject>), RevocationError>;
    /// Removes a token entry; true if there was one.
    async fn unrevoke_token(&self, issuer: &str, jti: &str) -> Result<bool, RevocationError>;
    /// Removes a subject cut-off; true if there was one.
    async fn unrevoke_subject(&self, issuer: &str, subject: &str) -> Result<bool, RevocationError>;
}
