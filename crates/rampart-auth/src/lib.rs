//! Rampart's token verification: JWT (RFC 7519) over compact JWS (RFC 7515), hardened as
//! RFC 8725 (JWT Best Current Practices) asks.
//!
//! The verification core ([`token`], [`keys`], [`claims`], [`verify`]) is pure: no I/O, no
//! clock, no network. Time is a parameter and keys are values, so every decision is
//! testable with fixed inputs. Keeping a provider's keys current (fetching JWKS, refresh,
//! rotation) is the [`jwks`] module's job, the only one that does I/O; it hands the core a
//! [`KeySet`].
//!
//! # Layers
//!
//! A token goes through four layers, each refusing with a [`Rejection`] whose
//! [`Rejection::reason`] is a stable code for logs and metrics:
//!
//! 1. **Pre-parse** ([`token`]): size limit before any decoding, exactly three parts,
//!    canonical unpadded base64url, header and payload JSON objects without duplicate
//!    member names, `alg` from the provider's allow-list and never `none`, no `crit`, no
//!    `b64: false`, `kid` a short string, embedded keys never used.
//! 2. **Keys** ([`keys`]): a [`KeySet`] from a JWKS, a PEM key or a configured secret, each
//!    [`Key`] bound at load time to the algorithms it may verify. The token's `kid` picks
//!    the key; the token's `alg` must be one the key may verify.
//! 3. **Signature** ([`verify`]): `jsonwebtoken`'s aws-lc-rs verifiers, after a length check
//!    that refuses DER-encoded or truncated signatures.
//! 4. **Claims** ([`claims`]): [`ClaimsPolicy`] checks `typ`, `iss`, `aud`, `exp`, `nbf`,
//!    `iat`, `sub` and required claims at an injected `now`, and yields a
//!    [`TokenIdentity`].
//!
//! [`Verifier::verify`] runs all four; [`verify_jws`] runs the first three for signed
//! payloads that are not claim sets.
//!
//! # Strictness, and why (RFC 8725 sections)
//!
//! * §2.1, §3.1 (algorithm verification): the verifier decides the algorithm. `alg` must be
//!   on the provider's allow-list, and the key must have been loaded for it. `none` in any
//!   capitalization is refused before anything else. An [`Alg`] cannot even express `none`.
//! * §2.2, §3.2 (weak or confused keys): HMAC secrets come only from configuration, never
//!   from a JWKS, and must be at least as long as the hash; a public key never verifies an
//!   HS* token, so the HMAC-with-the-RSA-public-key forgery fails at the binding check. RSA
//!   keys below 2048 bits, bad exponents and ROCA moduli are not loaded.
//! * §3.4 (cryptographic inputs): ECDSA signatures must be the fixed-size `R || S`; aws-lc-rs
//!   validates points on load and refuses zero `r`/`s` (CVE-2022-21449).
//! * §3.8, §3.9 (issuer and audience): exact `iss`; `aud` must name one of ours, and a
//!   token carrying an `aud` is refused by a policy without audiences.
//! * §3.10 (do not trust received claims): `kid` is only a key into an in-memory set (never
//!   a path, URL or query); `jwk`, `jku`, `x5u` and `x5c` are never used to find a key.
//! * §3.11 (explicit typing): an optional required `typ` (`at+jwt`, RFC 9068).
//! * §3.12 (multiple uses): `use` other than `sig` and `key_ops` without `verify` exclude a
//!   key from the set.
//! * RFC 7515 §5.2 and RFC 7519 §7.2: duplicate member names are refused rather than
//!   resolved, so no two parsers can read different values from one token. `crit` is
//!   refused because no extension is implemented (RFC 7515 §4.1.11). Non-canonical base64
//!   is refused so a token has exactly one spelling.
//!
//! [`token_hash`] gives the SHA-256 of a token, the only form in which a token should be
//! logged or used as a cache key.

pub mod alg;
pub mod apikeys;
pub mod claims;
pub mod defense;
pub mod introspect;
mod json;
pub mod jwks;
pub mod keys;
pub mod rejection;
pub mod revocation;
pub mod token;
pub mod verify;

pub use alg::{Alg, AlgSet, Family};
pub use claims::{ClaimsPolicy, PolicyError, TokenIdentity};
pub use defense::{
    AuthSettings, Authenticate, Provider, ProviderKeys, TokenCache, TokenFrom, Verification,
};
pub use keys::{Key, KeyError, KeyKind, KeySet, SkipReason, SkippedKey};
pub use rejection::{Rejection, Segment};
pub use token::{Jws, ParseOptions, Parsed};
pub use verify::{Verified, Verifier, short_hex, token_hash, verify_jws};
