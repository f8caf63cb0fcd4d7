//! Test keys and token minting, shared by the integration tests and the benchmark.
//!
//! Keys are generated once per test binary with aws-lc-rs; tokens are signed with aws-lc-rs
//! directly (not through the crate under test), so a bug in the verifier cannot hide a bug
//! in the minting.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::OnceLock;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rampart_auth::{Alg, KeySet};
use serde_json::{Value, json};

/// A private key that can sign test tokens.
pub enum TestKey {
    Rsa(RsaKeyPair),
    P256(EcdsaKeyPair),
    P384(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Secret(Vec<u8>),
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64_json(v: &Value) -> String {
    b64(&serde_json::to_vec(v).unwrap())
}

pub fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

pub fn rsa_key() -> &'static TestKey {
    static K: OnceLock<TestKey> = OnceLock::new();
    K.get_or_init(|| TestKey::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap()))
}

pub fn other_rsa_key() -> &'static TestKey {
    static K: OnceLock<TestKey> = OnceLock::new();
    K.get_or_init(|| TestKey::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap()))
}

pub fn p256_key() -> &'static TestKey {
    static K: OnceLock<TestKey> = OnceLock::new();
    K.get_or_init(|| {
        TestKey::P256(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
    })
}

pub fn attacker_p256_key() -> &'static TestKey {
    static K: OnceLock<TestKey> = OnceLock::new();
    K.get_or_init(|| {
        TestKey::P256(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
    })
}

pub fn p384_key() -> &'static TestKey {
    static K: OnceLock<TestKey> = OnceLock::new();
    K.get_or_init(|| {
        TestKey::P384(EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap())
    })
}

pub fn ed25519_key() -> &'static TestKey {
    static K: OnceLock<TestKey> = OnceLock::new();
    K.get_or_init(|| TestKey::Ed25519(Ed25519KeyPair::generate().unwrap()))
}

pub fn hmac_key() -> &'static TestKey {
    static K: OnceLock<TestKey> = OnceLock::new();
    K.get_or_init(|| TestKey::Secret(b"an HMAC secret of at least 32 bytes, for tests".to_vec()))
}

impl TestKey {
    /// Signs `input` as `alg` would.
    pub fn sign(&self, alg: Alg, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            TestKey::Rsa(pair) => {
                let padding: &'static dyn signature::RsaEncoding = match alg {
                    Alg::Rs256 => &signature::RSA_PKCS1_SHA256,
                    Alg::Rs384 => &signature::RSA_PKCS1_SHA384,
                    Alg::Rs512 => &signature::RSA_PKCS1_SHA512,
                    Alg::Ps256 => &signature::RSA_PSS_SHA256,
                    Alg::Ps384 => &signature::RSA_PSS_SHA384,
                    Alg::Ps512 => &signature::RSA_PSS_SHA512,
                    other => panic!("RSA cannot sign {other}"),
                };
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(padding, &rng, input, &mut sig).unwrap();
                sig
            }
            TestKey::P256(pair) | TestKey::P384(pair) => {
                pair.sign(&rng, input).unwrap().as_ref().to_vec()
            }
            TestKey::Ed25519(pair) => pair.sign(input).as_ref().to_vec(),
            TestKey::Secret(secret) => {
                let h = match alg {
                    Alg::Hs256 => hmac::HMAC_SHA256,
                    Alg::Hs384 => hmac::HMAC_SHA384,
                    Alg::Hs512 => hmac::HMAC_SHA512,
                    other => panic!("a secret cannot sign {other}"),
                };
                hmac::sign(&hmac::Key::new(h, secret), input)
                    .as_ref()
                    .to_vec()
            }
        }
    }

    /// The public JWK (no `d`), with `kid` when given.
    pub fn public_jwk(&self, kid: Option<&str>) -> Value {
        let mut jwk = match self {
            TestKey::Rsa(pair) => {
                let c = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)})
            }
            TestKey::P256(pair) | TestKey::P384(pair) => {
                let point = pair.public_key().as_ref();
                let (crv, len) = if point.len() == 65 {
                    ("P-256", 32)
                } else {
                    ("P-384", 48)
                };
                json!({"kty": "EC", "crv": crv,
                       "x": b64(&point[1..1 + len]), "y": b64(&point[1 + len..])})
            }
            TestKey::Ed25519(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())})
            }
            TestKey::Secret(_) => panic!("secrets have no public JWK"),
        };
        if let Some(kid) = kid {
            jwk["kid"] = json!(kid);
        }
        jwk
    }

    /// The public key as SubjectPublicKeyInfo DER (RSA only).
    pub fn rsa_spki_der(&self) -> Vec<u8> {
        match self {
            TestKey::Rsa(pair) => pair.public_key().as_der().unwrap().as_ref().to_vec(),
            _ => panic!("not RSA"),
        }
    }

    /// The public key as PEM (RSA only), the text an attacker would HMAC with.
    pub fn rsa_spki_pem(&self) -> String {
        let body = STANDARD.encode(self.rsa_spki_der());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    /// The raw public key bytes (EC point, Ed25519 key, RSA PKCS #1 DER).
    pub fn public_bytes(&self) -> Vec<u8> {
        match self {
            TestKey::Rsa(pair) => pair.public_key().as_ref().to_vec(),
            TestKey::P256(pair) | TestKey::P384(pair) => pair.public_key().as_ref().to_vec(),
            TestKey::Ed25519(pair) => pair.public_key().as_ref().to_vec(),
            TestKey::Secret(s) => s.clone(),
        }
    }
}

/// A compact JWS over the given encoded header and payload segments.
pub fn sign_segments(header_b64: &str, payload_b64: &str, key: &TestKey, alg: Alg) -> String {
    let input = format!("{header_b64}.{payload_b64}");
    let sig = key.sign(alg, input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// A compact JWS of `header` and `claims` (JSON), signed by `key` as `alg`.
pub fn mint(header: &Value, claims: &Value, key: &TestKey, alg: Alg) -> String {
    sign_segments(&b64_json(header), &b64_json(claims), key, alg)
}

/// The set the attack corpus and the benchmark verify against: an RSA key (`rsa-1`), a
/// P-256 key (`ec-1`), a P-384 key (`ec384-1`), an Ed25519 key (`ed-1`) from a JWKS, and an
/// HMAC secret (`hs-1`, HS256 only) from configuration.
pub fn test_key_set() -> KeySet {
    let jwks = json!({"keys": [
        rsa_key().public_jwk(Some("rsa-1")),
        p256_key().public_jwk(Some("ec-1")),
        p384_key().public_jwk(Some("ec384-1")),
        ed25519_key().public_jwk(Some("ed-1")),
    ]});
    let mut set = KeySet::from_jwks(&serde_json::to_vec(&jwks).unwrap()).unwrap();
    let TestKey::Secret(secret) = hmac_key() else {
        unreachable!()
    };
    set.add_secret(Some("hs-1"), secret, &[Alg::Hs256]).unwrap();
    set
}

pub const ISSUER: &str = "https://idp.example";
pub const AUDIENCE: &str = "api://rampart";
pub const NOW: u64 = 1_700_000_000;

/// A typical access-token claim set.
pub fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "sub": "user-1234",
        "aud": AUDIENCE,
        "exp": NOW + 600,
        "iat": NOW - 5,
        "nbf": NOW - 5,
        "jti": "3f1c2a9e-5b7d-4e2a-9c1f-0a6b8d4e2f10",
        "client_id": "web-app",
        "scope": "orders:read orders:write profile",
        "roles": ["customer"],
    })
}
