//! Signing keys, their public JWKs, and compact JWS signing.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// The signature algorithm of a [`SigningKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit key.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519 (JOSE `EdDSA`, `crv` `Ed25519`).
    EdDsa,
}

/// Why a key could not be made or could not sign. aws-lc-rs reports no detail; in practice
/// these mean the system's randomness or the crypto library failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Generating a key pair failed.
    #[error("generating a {0} key failed")]
    GenerationFailed(KeyAlg),
    /// The generated key's public part did not have the expected encoding.
    #[error("the {0} public key has an unexpected encoding")]
    UnexpectedPublicKey(KeyAlg),
    /// Signing failed.
    #[error("signing with key {kid:?} failed")]
    SigningFailed {
        /// The key that failed.
        kid: String,
    },
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    RandomFailed,
}

/// A private signing key with its `kid`. Cheap to clone (the key material is shared).
#[derive(Clone)]
pub struct SigningKey {
    kid: Arc<str>,
    alg: KeyAlg,
    inner: Arc<Inner>,
}

/// Signs `claims` under `header` with `key` and returns the compact JWS
/// `b64url(header).b64url(claims).b64url(signature)`. The header is used exactly as given
/// (nothing is added or checked), so a test can put any `alg`, `kid` or `typ` in it.
pub fn sign_jwt(key: &SigningKey, header: &Value, claims: &Value) -> Result<String, KeyError> {
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = key.sign(signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", b64url(&signature)))
}

impl KeyAlg {
    /// The JOSE `alg` name: `RS256`, `ES256` or `EdDSA`.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlg::Rs256 => "RS256",
            KeyAlg::Es256 => "ES256",
            KeyAlg::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

struct Inner {
    material: Material,
    /// Computed once at generation, where a failure can still be reported.
    public_jwk: Value,
}

enum Material {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl SigningKey {
    /// Generates a key for `alg` with a fresh random `kid` (`key-` and 8 base64url
    /// characters). An RSA 2048 key takes tens of milliseconds; EC and Ed25519 keys are
    /// instant.
    pub fn try_generate(alg: KeyAlg) -> Result<SigningKey, KeyError> {
        Self::try_generate_with_kid(alg, &random_kid()?)
    }

    /// Generates a key for `alg` with the given `kid`.
    pub fn try_generate_with_kid(alg: KeyAlg, kid: &str) -> Result<SigningKey, KeyError> {
        let failed = |_| KeyError::GenerationFailed(alg);
        let material = match alg {
            KeyAlg::Rs256 => Material::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(failed)?),
            KeyAlg::Es256 => Material::Ec(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(failed)?,
            ),
            KeyAlg::EdDsa => Material::Ed(Ed25519KeyPair::generate().map_err(failed)?),
        };
        let public_jwk = public_jwk(&material, alg, kid)?;
        Ok(SigningKey {
            kid: kid.into(),
            alg,
            inner: Arc::new(Inner {
                material,
                public_jwk,
            }),
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> KeyAlg {
        self.alg
    }

    /// The public key as a JWK (RFC 7517): `kty`, `kid`, `use: sig`, `alg`, and `n`/`e`
    /// (RSA), `crv`/`x`/`y` (EC) or `crv`/`x` (OKP), all base64url without padding.
    pub fn public_jwk(&self) -> Value {
        self.inner.public_jwk.clone()
    }

    /// Signs `message` with this key's algorithm (RS256: PKCS#1 v1.5; ES256: the fixed-size
    /// `r || s` form JOSE uses; EdDSA: Ed25519).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let failed = |_| KeyError::SigningFailed {
            kid: self.kid.to_string(),
        };
        match &self.inner.material {
            Material::Rsa(pair) => {
                let mut signature = vec![0u8; pair.public_modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(failed)?;
                Ok(signature)
            }
            Material::Ec(pair) => Ok(pair
                .sign(&SystemRandom::new(), message)
                .map_err(failed)?
                .as_ref()
                .to_vec()),
            Material::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The public JWK of `material`, with `kid`, `use` and `alg`.
fn public_jwk(material: &Material, alg: KeyAlg, kid: &str) -> Result<Value, KeyError> {
    let mut jwk = Map::new();
    let mut member = |name: &str, value: String| jwk.insert(name.to_owned(), Value::from(value));
    match material {
        Material::Rsa(pair) => {
            let public = pair.public_key();
            member("kty", "RSA".to_owned());
            member(
                "n",
                b64url(public.modulus().big_endian_without_leading_zero()),
            );
            member(
                "e",
                b64url(public.exponent().big_endian_without_leading_zero()),
            );
        }
        Material::Ec(pair) => {
            // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
            let Some((x, y)) = (match pair.public_key().as_ref() {
                [0x04, coordinates @ ..] if coordinates.len() == 64 => {
                    coordinates.split_at_checked(32)
                }
                _ => None,
            }) else {
                return Err(KeyError::UnexpectedPublicKey(alg));
            };
            member("kty", "EC".to_owned());
            member("crv", "P-256".to_owned());
            member("x", b64url(x));
            member("y", b64url(y));
        }
        Material::Ed(pair) => {
            member("kty", "OKP".to_owned());
            member("crv", "Ed25519".to_owned());
            member("x", b64url(pair.public_key().as_ref()));
        }
    }
    member("kid", kid.to_owned());
    member("use", "sig".to_owned());
    member("alg", alg.name().to_owned());
    Ok(Value::Object(jwk))
}

pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `len` random bytes, base64url.
pub(crate) fn random_id(len: usize) -> Result<String, KeyError> {
    let mut bytes = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::RandomFailed)?;
    Ok(b64url(&bytes))
}

fn random_kid() -> Result<String, KeyError> {
    Ok(format!("key-{}", random_id(6)?))
}
