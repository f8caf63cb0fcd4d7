//! RFC 7520 ("Examples of Protecting Content Using JOSE") §4 signature examples, and the
//! RFC 8037 Ed25519 example, from the ietf-jose cookbook (public domain), read from
//! `../shared/testdata/jose/rfc7520` beside the project.
//!
//! Every compact serialization with an algorithm Rampart supports must verify with the
//! cookbook's keys (from `jwk/`, or the example's own key with its private part removed),
//! and must give back the example's payload and protected header. The cookbook payloads
//! are prose, not JWT claim sets, so the signature layer ([`verify_jws`]) is checked
//! separately from the claims layer (which refuses them as malformed).
//!
//! Not run, each with its reason (asserted exactly): JSON serializations (general and
//! flattened), detached content (§4.5), an unprotected-header-only signature (§4.7),
//! multiple signatures (§4.8), and ES512 (§4.3, P-521 is not supported; its compact form is
//! checked to be refused rather than accepted).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rampart_auth::{
    Alg, AlgSet, ClaimsPolicy, KeyError, KeySet, ParseOptions, Rejection, SkipReason, Verifier,
    verify_jws,
};
use serde_json::{Value, json};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/jose/rfc7520")
}

fn load(rel: &str) -> Value {
    let path = dir().join(rel);
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap()
}

fn jwks_of(jwk: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": [jwk] })).unwrap()
}

/// The verification keys for an example.
fn keys_for(example: &Value) -> KeySet {
    let key = &example["input"]["key"];
    match key["kty"].as_str().unwrap() {
        "RSA" => KeySet::from_jwks(&jwks_of(&load("jwk/3_3.rsa_public_key.json"))).unwrap(),
        "EC" => KeySet::from_jwks(&jwks_of(&load("jwk/3_1.ec_public_key.json"))).unwrap(),
        "oct" => {
            let jwk = load("jwk/3_5.symmetric_key_mac_computation.json");
            let secret = URL_SAFE_NO_PAD.decode(jwk["k"].as_str().unwrap()).unwrap();
            KeySet::with_secret(jwk["kid"].as_str(), &secret, &[Alg::Hs256]).unwrap()
        }
        "OKP" => {
            // The Ed25519 example has only its private JWK: publish the public half.
            let mut public = key.clone();
            public.as_object_mut().unwrap().remove("d");
            KeySet::from_jwks(&jwks_of(&public)).unwrap()
        }
        other => panic!("kty {other}"),
    }
}

#[test]
fn cookbook_signatures() {
    let files = [
        "jws/4_1.rsa_v15_signature.json",
        "jws/4_2.rsa-pss_signature.json",
        "jws/4_3.ecdsa_signature.json",
        "jws/4_4.hmac-sha2_integrity_protection.json",
        "jws/4_5.signature_with_detached_content.json",
        "jws/4_6.protecting_specific_header_fields.json",
        "jws/4_7.protecting_content_only.json",
        "jws/4_8.multiple_signatures.json",
        "curve25519/jws.json",
    ];
    let options = ParseOptions::new(AlgSet::all());
    let mut verified = Vec::new();
    let mut skipped: Vec<(String, &str)> = Vec::new();

    for file in files {
        let example = load(file);
        let output = &example["output"];
        for form in ["json", "json_flat"] {
            if output.get(form).is_some() {
                skipped.push((
                    format!("{file} {form}"),
                    "JSON serialization is not supported",
                ));
            }
        }
        let Some(compact) = output.get("compact").and_then(Value::as_str) else {
            continue;
        };
        let id = format!("{file} compact");
        let payload = example["input"]["payload"].as_str().unwrap().as_bytes();
        let alg = example["input"]["alg"].as_str().unwrap();

        if file.contains("4_5") {
            // Detached content (RFC 7515 Appendix F): the payload is not in the token, so
            // the signature cannot verify over what is there.
            assert!(compact.contains(".."), "{id}");
            let keys = keys_for(&example);
            assert_eq!(
                verify_jws(compact, &keys, &options).unwrap_err(),
                Rejection::BadSignature,
                "{id}"
            );
            skipped.push((id, "detached content is not supported"));
            continue;
        }
        if Alg::from_name(alg).is_none() {
            let keys = KeySet::new();
            assert_eq!(
                verify_jws(compact, &keys, &options).unwrap_err(),
                Rejection::AlgNotAllowed,
                "{id}"
            );
            skipped.push((id, "ES512 (P-521) is not supported"));
            continue;
        }

        let keys = keys_for(&example);
        let jws = verify_jws(compact, &keys, &options)
            .unwrap_or_else(|r| panic!("{id}: {r} ({})", r.reason()));
        assert_eq!(jws.payload, payload, "{id}");
        assert_eq!(jws.alg.name(), alg, "{id}");
        assert_eq!(
            Value::Object(jws.header.clone()),
            example["signing"]["protected"],
            "{id}"
        );
        // One flipped payload byte, re-encoded canonically, fails.
        let mut tampered = payload.to_vec();
        tampered[0] ^= 1;
        let parts: Vec<&str> = compact.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(&tampered),
            parts[2]
        );
        assert_eq!(
            verify_jws(&forged, &keys, &options).unwrap_err(),
            Rejection::BadSignature,
            "{id}"
        );
        verified.push(id);
    }

    println!("rfc7520: verified {}: {verified:?}", verified.len());
    for (id, why) in &skipped {
        println!("rfc7520: skipped {id}: {why}");
    }
    assert_eq!(
        verified,
        [
            "jws/4_1.rsa_v15_signature.json compact",
            "jws/4_2.rsa-pss_signature.json compact",
            "jws/4_4.hmac-sha2_integrity_protection.json compact",
            "curve25519/jws.json compact",
        ]
    );
    let json_forms = skipped
        .iter()
        .filter(|(_, why)| *why == "JSON serialization is not supported")
        .count();
    // 4.1-4.7 and the Ed25519 example have both JSON forms; 4.8 has only the general one.
    assert_eq!(json_forms, 8 * 2 + 1);
    assert_eq!(skipped.len(), json_forms + 2);
}

#[test]
fn cookbook_payloads_are_not_claim_sets() {
    let example = load("jws/4_1.rsa_v15_signature.json");
    let compact = example["output"]["compact"].as_str().unwrap();
    let keys = keys_for(&example);
    let verifier = Verifier::new(
        AlgSet::of(&[Alg::Rs256]),
        ClaimsPolicy::new("https://idp.example").unwrap(),
    )
    .unwrap();
    assert_eq!(
        verifier.verify(compact, &keys, 0).unwrap_err(),
        Rejection::Malformed("payload is not JSON")
    );
}

#[test]
fn cookbook_key_files() {
    let set = |rel: &str| KeySet::from_jwks(&jwks_of(&load(rel)));
    // 3.1: P-521 is not supported, so the key is skipped (not an error: RFC 7517 §5).
    let ec = set("jwk/3_1.ec_public_key.json").unwrap();
    assert!(ec.is_empty());
    assert_eq!(ec.skipped()[0].reason, SkipReason::UnsupportedCurve);
    // 3.2 and 3.4: private keys never belong in a JWKS.
    for private in [
        "jwk/3_2.ec_private_key.json",
        "jwk/3_4.rsa_private_key.json",
    ] {
        assert!(
            matches!(set(private), Err(KeyError::PrivateKeyInJwks(Some(_)))),
            "{private}"
        );
    }
    // 3.3: a 2048-bit RSA public key, for all RSA algorithms.
    let rsa = set("jwk/3_3.rsa_public_key.json").unwrap();
    assert_eq!(rsa.len(), 1);
    assert_eq!(
        rsa.keys()[0].algorithms(),
        AlgSet::family(rampart_auth::Family::Rsa)
    );
    // 3.5 and 3.6: symmetric keys are refused from a JWKS.
    for oct in [
        "jwk/3_5.symmetric_key_mac_computation.json",
        "jwk/3_6.symmetric_key_encryption.json",
    ] {
        assert!(
            matches!(set(oct), Err(KeyError::SymmetricKeyInJwks(Some(_)))),
            "{oct}"
        );
    }
}
