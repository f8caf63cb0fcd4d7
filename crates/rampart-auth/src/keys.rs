//! Keys, and the algorithms each one may verify.
//!
//! RFC 8725 §3.1 asks that each key be used with exactly one algorithm family and that the
//! verifier, not the token, decide which. Here a [`Key`] carries the set of algorithms it
//! may verify, fixed when it is loaded:
//!
//! | key | may verify |
//! |---|---|
//! | RSA, at least 2048 bits | RS256/384/512 and PS256/384/512, or only the JWK's `alg` |
//! | EC P-256 | ES256 |
//! | EC P-384 | ES384 |
//! | OKP Ed25519 | EdDSA, and its RFC 9864 name Ed25519 |
//! | a configured secret | the HS* algorithms it was configured for |
//!
//! An HMAC secret never comes from a JWKS: a JWKS publishes public keys, and a symmetric
//! key in one means someone published a secret (or is trying to make the verifier use
//! public bytes as a MAC key, the classic key-confusion attack). Secrets come only from
//! configuration through [`KeySet::with_secret`], and must be at least as long as the hash
//! (RFC 7518 §3.2). Because public keys never verify HS* and secrets never verify anything
//! else, an HS256 token "signed" with an RSA public key is refused before any MAC is
//! computed.
//!
//! A JWKS (RFC 7517) is refused as a whole when it carries a symmetric key, a private key
//! part (`d`, `p`, `q`, ...), two usable keys with the same `kid`, or more than
//! [`MAX_JWKS_KEYS`] keys. Single keys that Rampart cannot or should not use are skipped,
//! as RFC 7517 §5 asks, and listed in [`KeySet::skipped`] with a reason: unknown `kty` or
//! curve (P-521, Ed448), an `alg` that does not fit the key, `use` other than `sig`,
//! `key_ops` without `verify`, RSA below 2048 bits, a bad exponent, a modulus with the
//! ROCA fingerprint (CVE-2017-15361), a point not on the curve.
//!
//! Lookup ([`KeySet::candidates`]): a token with a `kid` gets the key with that `kid`, or,
//! when none has it, the keys without a `kid` (a single configured PEM key, say) that may
//! verify the token's `alg`. A token without a `kid` gets the keys that may verify its
//! `alg`, at most [`MAX_CANDIDATES`] of them in set order, so a token cannot make the
//! verifier try every key of a large set.

use std::fmt;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, ParsedPublicKey,
    RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::DecodingKey;
use serde_json::{Map, Value};

use crate::alg::{Alg, AlgSet, Family};
use crate::json;
use crate::rejection::Rejection;
use crate::token::MAX_KID_BYTES;

/// The most keys a JWKS may hold. Identity providers publish a handful (current, next,
/// previous); a huge set is a mistake or an attack on memory and lookup time.
pub const MAX_JWKS_KEYS: usize = 100;

/// The most keys tried for one token that names no `kid`.
pub const MAX_CANDIDATES: usize = 4;

/// The smallest RSA modulus accepted, in bits (RFC 7518 §3.3, NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;

/// The largest RSA modulus accepted, in bits: the verifier's upper bound.
pub const MAX_RSA_BITS: usize = 8192;

/// A verification key and the algorithms it may verify.
#[derive(Clone, Debug)]
pub struct Key {
    kid: Option<String>,
    algorithms: AlgSet,
    kind: KeyKind,
    decoding: DecodingKey,
}

/// What kind of key a [`Key`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A configured HMAC secret.
    Secret,
    /// An RSA public key.
    Rsa {
        /// The modulus length in bits.
        bits: usize,
    },
    /// An ECDSA public key on P-256.
    P256,
    /// An ECDSA public key on P-384.
    P384,
    /// An Ed25519 public key.
    Ed25519,
}

/// The keys of one provider.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
    skipped: Vec<SkippedKey>,
}

/// A key of a JWKS that was left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedKey {
    /// Its `kid`, if it had a usable one.
    pub kid: Option<String>,
    /// Why it was left out.
    pub reason: SkipReason,
}

/// Why a key was left out of a set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// A required member is missing or has the wrong type or encoding.
    #[error("malformed key: {0}")]
    Malformed(&'static str),
    /// A `kty` Rampart does not verify with.
    #[error("unsupported key type")]
    UnsupportedKeyType,
    /// A curve Rampart does not verify with (P-521, Ed448, X25519).
    #[error("unsupported curve")]
    UnsupportedCurve,
    /// An `alg` Rampart does not know or does not verify (RSA1_5, ES512).
    #[error("unsupported alg")]
    UnsupportedAlg,
    /// The `alg` does not fit the key (ES256 on a P-384 key, PS256 on an EC key).
    #[error("alg does not fit the key")]
    AlgMismatch,
    /// `use` other than `sig`, or `key_ops` without `verify`.
    #[error("key is not for verifying signatures")]
    NotForSignatures,
    /// An RSA modulus below [`MIN_RSA_BITS`].
    #[error("RSA key too small ({0} bits)")]
    RsaTooSmall(usize),
    /// An RSA modulus above [`MAX_RSA_BITS`].
    #[error("RSA key too large ({0} bits)")]
    RsaTooLarge(usize),
    /// An RSA public exponent that is even, below 3 or above 2^33.
    #[error("bad RSA public exponent")]
    RsaBadExponent,
    /// An RSA modulus with the ROCA fingerprint (CVE-2017-15361): its private key can be
    /// computed from the public key.
    #[error("RSA key has the ROCA fingerprint")]
    RsaRoca,
    /// The cryptographic library refused the key (an EC point not on the curve).
    #[error("invalid public key")]
    InvalidKey,
}

/// Why a key set could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The JWKS is not a JSON object with a `keys` array (or has duplicate member names).
    #[error("not a JWKS: {0}")]
    NotAJwks(&'static str),
    /// The JWKS holds a symmetric (`oct`) key; secrets come only from configuration.
    #[error("JWKS holds a symmetric key (kid {0:?}); HMAC secrets come only from configuration")]
    SymmetricKeyInJwks(Option<String>),
    /// The JWKS holds a private key part; a JWKS publishes public keys only.
    #[error("JWKS holds private key material (kid {0:?})")]
    PrivateKeyInJwks(Option<String>),
    /// Two usable keys have the same `kid`, so a token's `kid` would be ambiguous.
    #[error("two keys with kid {0:?}")]
    DuplicateKid(String),
    /// The JWKS holds more than [`MAX_JWKS_KEYS`] keys.
    #[error("JWKS holds more than {0} keys")]
    TooManyKeys(usize),
    /// A secret shorter than the hash of an algorithm it is meant for (RFC 7518 §3.2).
    #[error("secret for {alg} must be at least {min} bytes, got {got}")]
    WeakSecret {
        /// The algorithm that needs the longer secret.
        alg: Alg,
        /// Its minimum length in bytes.
        min: usize,
        /// The secret's length.
        got: usize,
    },
    /// A secret was configured for no algorithm, or for a non-HMAC one.
    #[error("a secret verifies only HS256, HS384 and HS512")]
    NotHmac,
    /// A `kid` that is empty or longer than [`MAX_KID_BYTES`].
    #[error("kid must be 1 to {MAX_KID_BYTES} bytes")]
    BadKid,
    /// The PEM text is not a single public key Rampart can read.
    #[error("PEM: {0}")]
    Pem(&'static str),
    /// The single key given is unusable.
    #[error(transparent)]
    Unusable(#[from] SkipReason),
}

/// The keys a lookup found for one token; at most [`MAX_CANDIDATES`].
#[derive(Debug)]
pub struct Candidates<'k> {
    keys: [Option<&'k Key>; MAX_CANDIDATES],
}

impl Key {
    /// The key id, if the key has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithms this key may verify.
    pub fn algorithms(&self) -> AlgSet {
        self.algorithms
    }

    /// What kind of key this is.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Whether this key may verify `alg`.
    pub fn allows(&self, alg: Alg) -> bool {
        self.algorithms.contains(alg)
    }

    /// The length a signature by this key under `alg` must have.
    pub(crate) fn signature_len(&self, alg: Alg) -> usize {
        match (alg.fixed_signature_len(), self.kind) {
            (Some(n), _) => n,
            (None, KeyKind::Rsa { bits }) => bits.div_ceil(8),
            // An RSA algorithm on a non-RSA key never gets here (binding); no length fits.
            (None, _) => 0,
        }
    }

    /// The `jsonwebtoken` key that computes the signature check.
    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

impl KeySet {
    /// An empty set.
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// The public keys of a JWKS document (RFC 7517 §5). See the module docs for what is
    /// refused and what is skipped.
    pub fn from_jwks(document: &[u8]) -> Result<KeySet, KeyError> {
        let doc = json::parse_object(document)
            .map_err(|_| KeyError::NotAJwks("not a JSON object without duplicate members"))?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err(KeyError::NotAJwks("no keys array"));
        };
        if entries.len() > MAX_JWKS_KEYS {
            return Err(KeyError::TooManyKeys(MAX_JWKS_KEYS));
        }
        let mut set = KeySet::new();
        for entry in entries {
            let Value::Object(jwk) = entry else {
                set.skipped.push(SkippedKey {
                    kid: None,
                    reason: SkipReason::Malformed("not a JSON object"),
                });
                continue;
            };
            let kid = jwk
                .get("kid")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .filter(|k| !k.is_empty() && k.len() <= MAX_KID_BYTES);
            refuse_secrets(jwk, &kid)?;
            match public_key_from_jwk(jwk, kid.clone()) {
                Ok(key) => set.push(key)?,
                Err(reason) => set.skipped.push(SkippedKey { kid, reason }),
            }
        }
        Ok(set)
    }

    /// A single public key from PEM: `PUBLIC KEY` (SubjectPublicKeyInfo) holding an RSA,
    /// P-256, P-384 or Ed25519 key, or `RSA PUBLIC KEY` (PKCS #1). `alg`, when given,
    /// narrows the key to that one algorithm, as a JWK's `alg` would.
    pub fn from_pem(kid: Option<&str>, pem: &str, alg: Option<Alg>) -> Result<KeySet, KeyError> {
        let kid = checked_kid(kid)?;
        let key = pem_public_key(pem, kid, alg)?;
        let mut set = KeySet::new();
        set.push(key)?;
        Ok(set)
    }

    /// A set holding one HMAC secret that may verify `algorithms` (HS256, HS384, HS512).
    pub fn with_secret(
        kid: Option<&str>,
        secret: &[u8],
        algorithms: &[Alg],
    ) -> Result<KeySet, KeyError> {
        let mut set = KeySet::new();
        set.add_secret(kid, secret, algorithms)?;
        Ok(set)
    }

    /// Adds an HMAC secret that may verify `algorithms`. The secret must be at least as
    /// long as the largest hash among them: 32 bytes for HS256, 48 for HS384, 64 for HS512.
    pub fn add_secret(
        &mut self,
        kid: Option<&str>,
        secret: &[u8],
        algorithms: &[Alg],
    ) -> Result<(), KeyError> {
        let kid = checked_kid(kid)?;
        if algorithms.is_empty() || algorithms.iter().any(|a| a.family() != Family::Hmac) {
            return Err(KeyError::NotHmac);
        }
        for &alg in algorithms {
            let min = alg.fixed_signature_len().unwrap_or(usize::MAX);
            if secret.len() < min {
                return Err(KeyError::WeakSecret {
                    alg,
                    min,
                    got: secret.len(),
                });
            }
        }
        // Fails only on an empty secret, which the length check above already refused.
        let decoding = DecodingKey::from_secret(secret).map_err(|_| KeyError::WeakSecret {
            alg: Alg::Hs256,
            min: 32,
            got: 0,
        })?;
        self.push(Key {
            kid,
            algorithms: AlgSet::of(algorithms),
            kind: KeyKind::Secret,
            decoding,
        })
    }

    /// Adds every key of `other` (its skipped keys too), refusing a `kid` both hold.
    pub fn extend(&mut self, other: KeySet) -> Result<(), KeyError> {
        for key in other.keys {
            self.push(key)?;
        }
        self.skipped.extend(other.skipped);
        Ok(())
    }

    /// The usable keys, in the order they were added.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The keys of a JWKS that were left out, with the reason for each.
    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }

    /// The number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys to try for a token with this `kid` and `alg` (see the module docs).
    ///
    /// Refuses with [`Rejection::KeyAlgMismatch`] when the key the token names (or, with
    /// no `kid`, every key) may not verify `alg`, and with [`Rejection::UnknownKid`] when
    /// there is no key to try at all.
    pub fn candidates(&self, kid: Option<&str>, alg: Alg) -> Result<Candidates<'_>, Rejection> {
        if let Some(kid) = kid {
            if let Some(key) = self.keys.iter().find(|k| k.kid() == Some(kid)) {
                return if key.allows(alg) {
                    Ok(Candidates::one(key))
                } else {
                    Err(Rejection::KeyAlgMismatch)
                };
            }
            let found = Candidates::first(
                self.keys
                    .iter()
                    .filter(|k| k.kid.is_none() && k.allows(alg)),
            );
            return if found.is_empty() {
                Err(Rejection::UnknownKid)
            } else {
                Ok(found)
            };
        }
        let found = Candidates::first(self.keys.iter().filter(|k| k.allows(alg)));
        if !found.is_empty() {
            Ok(found)
        } else if self.keys.is_empty() {
            Err(Rejection::UnknownKid)
        } else {
            Err(Rejection::KeyAlgMismatch)
        }
    }

    fn push(&mut self, key: Key) -> Result<(), KeyError> {
        if let Some(kid) = key.kid()
            && self.keys.iter().any(|k| k.kid() == Some(kid))
        {
            return Err(KeyError::DuplicateKid(kid.to_owned()));
        }
        self.keys.push(key);
        Ok(())
    }
}

impl<'k> Candidates<'k> {
    fn one(key: &'k Key) -> Self {
        Candidates::first(std::iter::once(key))
    }

    fn first(found: impl Iterator<Item = &'k Key>) -> Self {
        let mut keys = [None; MAX_CANDIDATES];
        for (slot, key) in keys.iter_mut().zip(found) {
            *slot = Some(key);
        }
        Candidates { keys }
    }

    fn is_empty(&self) -> bool {
        self.keys.iter().all(Option::is_none)
    }

    /// The keys, in the order they should be tried.
    pub fn iter(&self) -> impl Iterator<Item = &'k Key> + '_ {
        self.keys.iter().flatten().copied()
    }
}

impl fmt::Display for SkippedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kid {
            Some(kid) => write!(f, "key {kid:?}: {}", self.reason),
            None => write!(f, "key without kid: {}", self.reason),
        }
    }
}

impl SkipReason {
    /// A stable code for logs (`rsa_too_small`, `unsupported_curve`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::Malformed(_) => "malformed",
            SkipReason::UnsupportedKeyType => "unsupported_kty",
            SkipReason::UnsupportedCurve => "unsupported_curve",
            SkipReason::UnsupportedAlg => "unsupported_alg",
            SkipReason::AlgMismatch => "alg_mismatch",
            SkipReason::NotForSignatures => "not_for_signatures",
            SkipReason::RsaTooSmall(_) => "rsa_too_small",
            SkipReason::RsaTooLarge(_) => "rsa_too_large",
            SkipReason::RsaBadExponent => "rsa_bad_exponent",
            SkipReason::RsaRoca => "rsa_roca",
            SkipReason::InvalidKey => "invalid_key",
        }
    }
}

/// Members that only a private or symmetric JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4;
/// RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

fn refuse_secrets(jwk: &Map<String, Value>, kid: &Option<String>) -> Result<(), KeyError> {
    if jwk.get("kty").and_then(Value::as_str) == Some("oct") || jwk.contains_key("k") {
        return Err(KeyError::SymmetricKeyInJwks(kid.clone()));
    }
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(KeyError::PrivateKeyInJwks(kid.clone()));
    }
    Ok(())
}

fn checked_kid(kid: Option<&str>) -> Result<Option<String>, KeyError> {
    match kid {
        None => Ok(None),
        Some(k) if !k.is_empty() && k.len() <= MAX_KID_BYTES => Ok(Some(k.to_owned())),
        Some(_) => Err(KeyError::BadKid),
    }
}

/// One public JWK (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2) to a [`Key`].
fn public_key_from_jwk(jwk: &Map<String, Value>, kid: Option<String>) -> Result<Key, SkipReason> {
    if let Some(k) = jwk.get("kid") {
        match k.as_str() {
            Some(s) if !s.is_empty() && s.len() <= MAX_KID_BYTES => {}
            _ => return Err(SkipReason::Malformed("kid")),
        }
    }
    match jwk.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(Value::String(_)) => return Err(SkipReason::NotForSignatures),
        Some(_) => return Err(SkipReason::Malformed("use")),
    }
    match jwk.get("key_ops") {
        None => {}
        Some(Value::Array(ops)) => {
            if ops.iter().any(|o| !o.is_string()) {
                return Err(SkipReason::Malformed("key_ops"));
            }
            if !ops.iter().any(|o| o.as_str() == Some("verify")) {
                return Err(SkipReason::NotForSignatures);
            }
        }
        Some(_) => return Err(SkipReason::Malformed("key_ops")),
    }
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(name)) => Some(Alg::from_name(name).ok_or(SkipReason::UnsupportedAlg)?),
        Some(_) => return Err(SkipReason::Malformed("alg")),
    };
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .ok_or(SkipReason::Malformed("kty"))?;
    match kty {
        "RSA" => {
            let n = b64_member(jwk, "n")?;
            let e = b64_member(jwk, "e")?;
            rsa_key(kid, &n, &e, alg)
        }
        "EC" => {
            let crv = jwk
                .get("crv")
                .and_then(Value::as_str)
                .ok_or(SkipReason::Malformed("crv"))?;
            let kind = match crv {
                "P-256" => KeyKind::P256,
                "P-384" => KeyKind::P384,
                _ => return Err(SkipReason::UnsupportedCurve),
            };
            let x = b64_member(jwk, "x")?;
            let y = b64_member(jwk, "y")?;
            let mut point = Vec::with_capacity(1 + x.len() + y.len());
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            ec_key(kid, kind, &point, alg)
        }
        "OKP" => {
            let crv = jwk
                .get("crv")
                .and_then(Value::as_str)
                .ok_or(SkipReason::Malformed("crv"))?;
            if crv != "Ed25519" {
                return Err(SkipReason::UnsupportedCurve);
            }
            ed25519_key(kid, &b64_member(jwk, "x")?, alg)
        }
        _ => Err(SkipReason::UnsupportedKeyType),
    }
}

fn b64_member(jwk: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, SkipReason> {
    let text = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or(SkipReason::Malformed(name))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| SkipReason::Malformed(name))
}

/// An RSA public key from its modulus and exponent (big-endian, leading zeros allowed).
fn rsa_key(kid: Option<String>, n: &[u8], e: &[u8], alg: Option<Alg>) -> Result<Key, SkipReason> {
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    let bits = bit_length(n);
    if bits < MIN_RSA_BITS {
        return Err(SkipReason::RsaTooSmall(bits));
    }
    if bits > MAX_RSA_BITS {
        return Err(SkipReason::RsaTooLarge(bits));
    }
    // Odd, at least 3, below 2^33 (the range the verifier accepts; 65537 in practice).
    let e_odd = e.last().is_some_and(|b| b & 1 == 1);
    if !e_odd || e.len() > 5 || bit_length(e) > 33 || e == [1] {
        return Err(SkipReason::RsaBadExponent);
    }
    if has_roca_fingerprint(n) {
        return Err(SkipReason::RsaRoca);
    }
    RsaPublicKeyComponents { n, e }
        .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
        .map_err(|_| SkipReason::InvalidKey)?;
    let family = AlgSet::family(Family::Rsa);
    let algorithms = narrow(family, alg)?;
    Ok(Key {
        kid,
        algorithms,
        kind: KeyKind::Rsa { bits },
        decoding: DecodingKey::from_rsa_raw_components(n, e),
    })
}

/// An ECDSA public key from its uncompressed point `04 || x || y`.
fn ec_key(
    kid: Option<String>,
    kind: KeyKind,
    point: &[u8],
    alg: Option<Alg>,
) -> Result<Key, SkipReason> {
    let (coordinate_len, verification, own_alg) = match kind {
        KeyKind::P256 => (32, &ECDSA_P256_SHA256_FIXED, Alg::Es256),
        KeyKind::P384 => (48, &ECDSA_P384_SHA384_FIXED, Alg::Es384),
        _ => return Err(SkipReason::UnsupportedCurve),
    };
    // RFC 7518 §6.2.1.2-3: each coordinate is exactly the field size.
    if point.len() != 1 + 2 * coordinate_len {
        return Err(SkipReason::Malformed("coordinate length"));
    }
    ParsedPublicKey::new(verification, point).map_err(|_| SkipReason::InvalidKey)?;
    let algorithms = narrow(AlgSet::of(&[own_alg]), alg)?;
    Ok(Key {
        kid,
        algorithms,
        kind,
        decoding: DecodingKey::from_ec_der(point),
    })
}

/// An Ed25519 public key from its 32 bytes.
fn ed25519_key(kid: Option<String>, x: &[u8], alg: Option<Alg>) -> Result<Key, SkipReason> {
    if x.len() != 32 {
        return Err(SkipReason::Malformed("x length"));
    }
    ParsedPublicKey::new(&ED25519, x).map_err(|_| SkipReason::InvalidKey)?;
    // EdDSA on Ed25519 and Ed25519 are one algorithm under two names (RFC 9864 §2.2), so
    // either name in the JWK allows both.
    let both = AlgSet::of(&[Alg::EdDsa, Alg::Ed25519]);
    match alg {
        Some(a) if !both.contains(a) => return Err(SkipReason::AlgMismatch),
        _ => {}
    }
    Ok(Key {
        kid,
        algorithms: both,
        kind: KeyKind::Ed25519,
        decoding: DecodingKey::from_ed_der(x),
    })
}

/// The algorithms a key may verify: all of `fits`, or only `alg` if the key names one.
fn narrow(fits: AlgSet, alg: Option<Alg>) -> Result<AlgSet, SkipReason> {
    match alg {
        None => Ok(fits),
        Some(a) if fits.contains(a) => Ok(AlgSet::of(&[a])),
        Some(_) => Err(SkipReason::AlgMismatch),
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

fn bit_length(big_endian: &[u8]) -> usize {
    match big_endian.first() {
        None => 0,
        Some(top) => big_endian.len() * 8 - top.leading_zeros() as usize,
    }
}

/// The small primes of the ROCA fingerprint test (Nemec et al., CCS 2017, and the authors'
/// detector). A vulnerable modulus `n` has, for every one of them, `n mod p` in the
/// subgroup generated by 65537; a random modulus almost never does.
const ROCA_PRIMES: [u32; 38] = [
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
    101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
];

fn has_roca_fingerprint(n: &[u8]) -> bool {
    ROCA_PRIMES.iter().all(|&p| {
        let residue = n
            .iter()
            .fold(0u32, |acc, &b| (acc * 256 + u32::from(b)) % p);
        // Walk the cyclic subgroup <65537 mod p> (at most p - 1 steps).
        let g = 65537 % p;
        let mut x = 1;
        loop {
            if x == residue {
                return true;
            }
            x = x * g % p;
            if x == 1 {
                return false;
            }
        }
    })
}

/// DER prefixes of SubjectPublicKeyInfo for the curves we accept, each followed by the
/// raw public key (an uncompressed point, or the 32 Ed25519 bytes).
const SPKI_P256: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const SPKI_P384: &[u8] = &[
    0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
    0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
];
const SPKI_ED25519: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

fn pem_public_key(pem: &str, kid: Option<String>, alg: Option<Alg>) -> Result<Key, KeyError> {
    let (label, der) = pem_block(pem)?;
    if label == "RSA PUBLIC KEY" {
        return rsa_from_der(&der, kid, alg);
    }
    if label != "PUBLIC KEY" {
        return Err(KeyError::Pem(
            "expected a PUBLIC KEY or RSA PUBLIC KEY block",
        ));
    }
    if let Some(point) = der.strip_prefix(SPKI_P256) {
        return Ok(ec_key(kid, KeyKind::P256, point, alg)?);
    }
    if let Some(point) = der.strip_prefix(SPKI_P384) {
        return Ok(ec_key(kid, KeyKind::P384, point, alg)?);
    }
    if let Some(x) = der.strip_prefix(SPKI_ED25519) {
        return Ok(ed25519_key(kid, x, alg)?);
    }
    rsa_from_der(&der, kid, alg)
}

fn rsa_from_der(der: &[u8], kid: Option<String>, alg: Option<Alg>) -> Result<Key, KeyError> {
    let public = aws_lc_rs::rsa::PublicKey::from_der(der)
        .map_err(|_| KeyError::Pem("not an RSA, P-256, P-384 or Ed25519 public key"))?;
    let parts = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(&public);
    Ok(rsa_key(kid, &parts.n, &parts.e, alg)?)
}

/// The label and decoded body of the one PEM block in `text`.
fn pem_block(text: &str) -> Result<(&str, Vec<u8>), KeyError> {
    let mut lines = text.lines().map(str::trim).skip_while(|l| l.is_empty());
    let label = lines
        .next()
        .and_then(|l| l.strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or(KeyError::Pem("no BEGIN line"))?;
    let mut body = String::new();
    let mut ended = false;
    for line in lines.by_ref() {
        if let Some(end) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            if end != label {
                return Err(KeyError::Pem("END label differs from BEGIN"));
            }
            ended = true;
            break;
        }
        body.push_str(line);
    }
    if !ended {
        return Err(KeyError::Pem("no END line"));
    }
    if lines.any(|l| !l.is_empty()) {
        return Err(KeyError::Pem("more than one block"));
    }
    let der = STANDARD
        .decode(body)
        .map_err(|_| KeyError::Pem("body is not base64"))?;
    Ok((label, der))
}

#[cfg(test)]
mod tests;
