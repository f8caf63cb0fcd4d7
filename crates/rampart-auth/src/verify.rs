//! The verifier: pre-parse, key, signature, claims, in that order, each step refusing with
//! a [`Rejection`].
//!
//! 1. [`token::parse_jws`]: size, shape, encoding, header, `alg` on the allow-list.
//! 2. [`KeySet::candidates`]: the key the `kid` names (or the keys that may verify the
//!    `alg` when there is no `kid`), and the binding check: a key verifies only the
//!    algorithms it was loaded for.
//! 3. The signature, through `jsonwebtoken`'s aws-lc-rs verifiers. Its length is checked
//!    first against what the algorithm and key produce: a fixed-size `R || S` for ECDSA
//!    (a DER-encoded ECDSA signature has another length and is refused), the modulus
//!    length for RSA, the hash length for HMAC. aws-lc-rs refuses `r` or `s` equal to zero
//!    or not below the group order, so the all-zero "psychic signature" (CVE-2022-21449)
//!    fails, and compares MACs in constant time.
//! 4. [`token::parse_claims`] and [`ClaimsPolicy::check`], only on a payload whose
//!    signature verified.
//!
//! The key set is an argument of [`Verifier::verify`], not a field: a provider swaps in a
//! new set when keys rotate, while the verifier (allow-list, limits, policy) stays.

use aws_lc_rs::digest;
use jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
use serde_json::{Map, Value};

use crate::alg::{Alg, AlgSet};
use crate::claims::{self, ClaimsPolicy, PolicyError, TokenIdentity};
use crate::keys::{Key, KeySet};
use crate::rejection::Rejection;
use crate::token::{self, Jws, ParseOptions};

/// Verifies tokens of one provider: its allow-list, limits and claim policy.
#[derive(Debug, Clone)]
pub struct Verifier {
    options: ParseOptions,
    policy: ClaimsPolicy,
}

/// A token that verified: its signature, and its claims against the policy.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The algorithm that verified it.
    pub alg: Alg,
    /// The key id the token named, if any.
    pub kid: Option<String>,
    /// The protected header.
    pub header: Map<String, Value>,
    /// All claims, for forwarding selected ones upstream.
    pub claims: Map<String, Value>,
    /// The identity the claims give.
    pub identity: TokenIdentity,
}

impl Verifier {
    /// A verifier that accepts `algorithms`, with the default size limit (8 KiB), ignoring
    /// embedded keys, and checking claims with `policy`.
    pub fn new(algorithms: AlgSet, policy: ClaimsPolicy) -> Result<Verifier, PolicyError> {
        if algorithms.is_empty() {
            return Err(PolicyError::NoAlgorithms);
        }
        Ok(Verifier {
            options: ParseOptions::new(algorithms),
            policy,
        })
    }

    /// Refuse tokens longer than `bytes`.
    #[must_use]
    pub fn with_max_token_bytes(mut self, bytes: usize) -> Verifier {
        self.options.max_token_bytes = bytes;
        self
    }

    /// Refuse tokens whose header carries `jwk`, `jku`, `x5u` or `x5c` (by default those
    /// parameters are ignored; they are never used to find a key either way).
    #[must_use]
    pub fn reject_embedded_keys(mut self, reject: bool) -> Verifier {
        self.options.reject_embedded_keys = reject;
        self
    }

    /// The pre-parse options (allow-list, size limit).
    pub fn options(&self) -> &ParseOptions {
        &self.options
    }

    /// The claim policy.
    pub fn policy(&self) -> &ClaimsPolicy {
        &self.policy
    }

    /// Verifies `token` against `keys` at time `now` (seconds since the Unix epoch).
    pub fn verify(&self, token: &str, keys: &KeySet, now: u64) -> Result<Verified, Rejection> {
        let jws = verify_jws(token, keys, &self.options)?;
        let claims = token::parse_claims(&jws.payload)?;
        let identity = self.policy.check(&jws.header, &claims, now)?;
        Ok(Verified {
            alg: jws.alg,
            kid: jws.kid().map(str::to_owned),
            header: jws.header,
            claims,
            identity,
        })
    }
}

impl Verified {
    /// A claim as text for forwarding upstream (see [`claims::claim_as_string`]).
    pub fn claim_str(&self, name: &str) -> Option<String> {
        claims::claim_as_string(&self.claims, name)
    }
}

/// The JWS layer alone: pre-parse, key lookup and signature, with no claim checks. For
/// signed payloads that are not JWT claim sets (test vectors, detached uses); tokens
/// go through [`Verifier::verify`].
pub fn verify_jws<'t>(
    token: &'t str,
    keys: &KeySet,
    options: &ParseOptions,
) -> Result<Jws<'t>, Rejection> {
    let jws = token::parse_jws(token, options)?;
    let candidates = keys.candidates(jws.kid(), jws.alg)?;
    if candidates.iter().any(|key| signature_verifies(key, &jws)) {
        Ok(jws)
    } else {
        Err(Rejection::BadSignature)
    }
}

/// SHA-256 of a token: the only form in which a token may be logged or used as a cache
/// key.
pub fn token_hash(token: &str) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, token.as_bytes());
    // A SHA-256 digest is always 32 bytes.
    digest.as_ref().try_into().unwrap_or_default()
}

/// The first 8 bytes of a [`token_hash`] as 16 lowercase hex digits: enough to correlate
/// log lines about one token.
pub fn short_hex(hash: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    hash.iter()
        .take(8)
        .fold(String::with_capacity(16), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn signature_verifies(key: &Key, jws: &Jws<'_>) -> bool {
    if jws.signature.len() != key.signature_len(jws.alg) {
        return false;
    }
    // The aws-lc-rs provider by name, not the process default, so no other crate's
    // `install_default` can change which code checks our signatures.
    match (DEFAULT_PROVIDER.verifier_factory)(&jws.alg.to_jwt(), key.decoding_key()) {
        Ok(verifier) => verifier.verify(jws.signing_input, &jws.signature).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
