//! Why a token was refused.
//!
//! A rejection is a value, not an error: the token layer worked, the token did not. Each
//! variant has a stable [`Rejection::reason`] code for the security-event log and the
//! `reason` label of metrics; the codes never change meaning once released. The `Display`
//! text adds a short detail for operators and is not part of any contract; it never
//! contains the token or a claim value.

/// Why a token was refused. See [`Rejection::reason`] for the stable codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The token is longer than the configured limit (checked before any decoding).
    #[error("token longer than {limit} bytes")]
    TooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// Not a compact JWS of JSON objects: wrong number of parts, a part that is not a JSON
    /// object, a duplicate member name, a missing `alg`, a header parameter of the wrong
    /// type.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// A part is not unpadded base64url (RFC 7515 §2): padding, `+`, `/`, whitespace, any
    /// other byte, or non-zero unused trailing bits.
    #[error("{0} is not canonical unpadded base64url")]
    BadEncoding(Segment),
    /// `alg` is `none` in some spelling (RFC 8725 §3.1, §3.2).
    #[error("alg none is never accepted")]
    AlgNone,
    /// `alg` is unknown or not on this provider's allow-list.
    #[error("alg not allowed")]
    AlgNotAllowed,
    /// The header has a `crit` parameter; Rampart understands no JWS extension, so any
    /// `crit` (RFC 7515 §4.1.11) makes the token unusable.
    #[error("crit header parameter: no extension is supported")]
    CritUnsupported,
    /// A header parameter Rampart refuses to process: `b64: false` (RFC 7797), a nested
    /// JWT (`cty: JWT`), or an embedded key (`jwk`, `jku`, `x5u`, `x5c`) when the provider
    /// refuses them.
    #[error("unsupported header parameter {0}")]
    UnsupportedHeader(&'static str),
    /// No key of the set has the token's `kid` (and no key without a `kid` can stand in).
    #[error("no key for this kid")]
    UnknownKid,
    /// The key the token names may not verify the token's `alg` (an HMAC token against a
    /// public key, an ES384 token against a P-256 key, a JWK whose `alg` says otherwise).
    #[error("key may not verify this alg")]
    KeyAlgMismatch,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// `exp` is past, beyond the leeway.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future, beyond the leeway.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future, beyond the leeway.
    #[error("token issued in the future")]
    IatInFuture,
    /// `iss` is not the provider's issuer.
    #[error("issuer does not match")]
    BadIssuer,
    /// `aud` names none of the provider's audiences.
    #[error("audience does not match")]
    BadAudience,
    /// The header `typ` is not the one the provider requires.
    #[error("typ does not match")]
    BadTyp,
    /// A claim the policy requires is absent.
    #[error("missing claim {0}")]
    MissingClaim(String),
    /// A claim has the wrong JSON type (a string `exp`, a numeric `sub`, a date past year
    /// 9999).
    #[error("claim {0} has the wrong type or range")]
    BadClaimType(String),
    /// The token, or every token of its subject issued before a cut-off, was revoked.
    #[error("token revoked")]
    Revoked,
    /// The introspection endpoint says the token is not active.
    #[error("token not active")]
    Inactive,
}

/// A part of a compact JWS, for [`Rejection::BadEncoding`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// The protected header.
    Header,
    /// The payload.
    Payload,
    /// The signature.
    Signature,
}

impl Rejection {
    /// Every stable reason code, in declaration order.
    pub const REASONS: [&'static str; 20] = [
        "too_large",
        "malformed",
        "bad_encoding",
        "alg_none",
        "alg_not_allowed",
        "crit_unsupported",
        "unsupported_header",
        "unknown_kid",
        "key_alg_mismatch",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "iat_in_future",
        "bad_issuer",
        "bad_audience",
        "bad_typ",
        "missing_claim",
        "bad_claim_type",
        "revoked",
        "inactive",
    ];

    /// The stable reason code (`expired`, `bad_signature`, ...), one of [`Self::REASONS`].
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::TooLarge { .. } => "too_large",
            Rejection::Malformed(_) => "malformed",
            Rejection::BadEncoding(_) => "bad_encoding",
            Rejection::AlgNone => "alg_none",
            Rejection::AlgNotAllowed => "alg_not_allowed",
            Rejection::CritUnsupported => "crit_unsupported",
            Rejection::UnsupportedHeader(_) => "unsupported_header",
            Rejection::UnknownKid => "unknown_kid",
            Rejection::KeyAlgMismatch => "key_alg_mismatch",
            Rejection::BadSignature => "bad_signature",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::IatInFuture => "iat_in_future",
            Rejection::BadIssuer => "bad_issuer",
            Rejection::BadAudience => "bad_audience",
            Rejection::BadTyp => "bad_typ",
            Rejection::MissingClaim(_) => "missing_claim",
            Rejection::BadClaimType(_) => "bad_claim_type",
            Rejection::Revoked => "revoked",
            Rejection::Inactive => "inactive",
        }
    }
}

impl std::fmt::Display for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Segment::Header => "header",
            Segment::Payload => "payload",
            Segment::Signature => "signature",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_listed_and_distinct() {
        let all = [
            Rejection::TooLarge { limit: 1 },
            Rejection::Malformed("x"),
            Rejection::BadEncoding(Segment::Header),
            Rejection::AlgNone,
            Rejection::AlgNotAllowed,
            Rejection::CritUnsupported,
            Rejection::UnsupportedHeader("b64"),
            Rejection::UnknownKid,
            Rejection::KeyAlgMismatch,
            Rejection::BadSignature,
            Rejection::Expired,
            Rejection::NotYetValid,
            Rejection::IatInFuture,
            Rejection::BadIssuer,
            Rejection::BadAudience,
            Rejection::BadTyp,
            Rejection::MissingClaim("sub".into()),
            Rejection::BadClaimType("exp".into()),
            Rejection::Revoked,
            Rejection::Inactive,
        ];
        let codes: Vec<_> = all.iter().map(Rejection::reason).collect();
        assert_eq!(codes, Rejection::REASONS);
        let mut dedup = codes.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), codes.len());
    }
}
