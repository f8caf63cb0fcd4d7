//! Wycheproof JOSE vectors (C2SP/wycheproof, testvectors_v1, Apache-2.0), read from
//! `../shared/testdata/jose/wycheproof` beside the project.
//!
//! Every vector marked `invalid` must be rejected, whether by the key set refusing the
//! group's keys or by the verifier refusing the token. Every vector marked `valid` whose
//! algorithm Rampart supports must verify. What is not run is listed with a reason, and the
//! lists are asserted exactly, so a skip cannot appear (or a disagreement grow) silently.
//!
//! The payloads are not JWT claim sets (`foo`, empty, binary), so the vectors exercise the
//! JWS layer: [`verify_jws`] with every supported algorithm allowed.
//!
//! Keys: a group's `public` key (or key set) is loaded with [`KeySet::from_jwks`]. A group
//! with only a `private` key set made of symmetric keys stands for configured HMAC secrets,
//! so each is loaded with [`KeySet::add_secret`] for the algorithm its JWK names (a JWKS is
//! never a source of secrets); any other private-only group goes through
//! [`KeySet::from_jwks`], which refuses symmetric and private keys.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use rampart_auth::{
    Alg, AlgSet, KeyError, KeySet, ParseOptions, Rejection, SkipReason, verify_jws,
};
use serde_json::{Value, json};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/jose/wycheproof")
}

fn load(file: &str) -> Value {
    let path = dir().join(file);
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap()
}

/// What happened to one vector.
#[derive(Debug)]
enum Outcome {
    Accepted,
    Rejected(String),
    Skipped(String),
}

#[derive(Default)]
struct Tally {
    run: usize,
    valid_accepted: usize,
    invalid_rejected: usize,
    skipped: Vec<(String, String)>,
    /// Valid vectors we reject on purpose, with the reason code we reject them with.
    disagreements: Vec<(String, String)>,
    failures: Vec<String>,
    reasons: BTreeMap<String, usize>,
}

/// Loads the keys of a test group, or says why the group's keys were refused.
fn group_keys(group: &Value) -> Result<KeySet, String> {
    let as_set = |v: &Value| -> Value {
        if v.get("keys").is_some() {
            v.clone()
        } else {
            json!({ "keys": [v] })
        }
    };
    if let Some(public) = group.get("public") {
        let doc = serde_json::to_vec(&as_set(public)).unwrap();
        return KeySet::from_jwks(&doc).map_err(|e| format!("key set refused: {e}"));
    }
    let private = as_set(&group["private"]);
    let keys = private["keys"].as_array().unwrap();
    if keys.iter().all(|k| k["kty"] == "oct") {
        // Configured secrets are read leniently here (one of the vectors' secrets has
        // non-zero trailing bits), so the key set's own checks are what refuses them.
        let lenient = GeneralPurpose::new(
            &URL_SAFE,
            GeneralPurposeConfig::new()
                .with_decode_allow_trailing_bits(true)
                .with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let mut set = KeySet::new();
        for k in keys {
            let secret = lenient
                .decode(k["k"].as_str().unwrap())
                .map_err(|e| format!("secret is not base64url: {e}"))?;
            let alg = k["alg"]
                .as_str()
                .and_then(Alg::from_name)
                .ok_or_else(|| format!("secret for a non-HMAC alg {}", k["alg"]))?;
            set.add_secret(k["kid"].as_str(), &secret, &[alg])
                .map_err(|e: KeyError| format!("secret refused: {e}"))?;
        }
        return Ok(set);
    }
    let doc = serde_json::to_vec(&private).unwrap();
    KeySet::from_jwks(&doc).map_err(|e| format!("key set refused: {e}"))
}

fn header_alg(jws: &str) -> Option<String> {
    let header = URL_SAFE_NO_PAD.decode(jws.split('.').next()?).ok()?;
    let header: Value = serde_json::from_slice(&header).ok()?;
    header["alg"].as_str().map(str::to_owned)
}

fn run_file(file: &str, tally: &mut Tally) {
    let doc = load(file);
    let options = ParseOptions::new(AlgSet::all());
    let mut count = 0;
    for group in doc["testGroups"].as_array().unwrap() {
        let keys = group_keys(group);
        // Tokens of the group's valid vectors: an invalid vector with the same bytes and
        // the same keys contradicts one of them.
        let valid_tokens: BTreeMap<&str, &Value> = group["tests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["result"] == "valid")
            .filter_map(|t| Some((t["jws"].as_str()?, &t["tcId"])))
            .collect();
        for test in group["tests"].as_array().unwrap() {
            count += 1;
            let id = format!("{file}#{}", test["tcId"]);
            let valid = match test["result"].as_str().unwrap() {
                "valid" => true,
                "invalid" => false,
                other => panic!("{id}: result {other}"),
            };
            let twin = test["jws"].as_str().and_then(|t| valid_tokens.get(t));
            let outcome = if test.get("jwe").is_some() {
                Outcome::Skipped("JWE (encryption): Rampart verifies signatures only".into())
            } else if let (false, Some(twin)) = (valid, twin) {
                Outcome::Skipped(format!(
                    "defective: marked invalid, but the same bytes and keys as valid vector {twin}"
                ))
            } else {
                match &test["jws"] {
                    Value::String(jws) => match &keys {
                        Err(why) => Outcome::Rejected(why.clone()),
                        Ok(keys) => match verify_jws(jws, keys, &options) {
                            Ok(_) => Outcome::Accepted,
                            Err(r) => match header_alg(jws) {
                                Some(a) if valid && Alg::from_name(&a).is_none() => {
                                    Outcome::Skipped(format!("alg {a} is not supported"))
                                }
                                _ => Outcome::Rejected(r.reason().to_owned()),
                            },
                        },
                    },
                    // The JSON serialization given as a token: refused like any non-compact
                    // text. A valid one would be a skip; there are none.
                    json_form @ Value::Object(_) if !valid => {
                        let text = serde_json::to_string(json_form).unwrap();
                        match verify_jws(&text, keys.as_ref().unwrap(), &options) {
                            Ok(_) => Outcome::Accepted,
                            Err(r) => Outcome::Rejected(r.reason().to_owned()),
                        }
                    }
                    Value::Object(_) => {
                        Outcome::Skipped("JSON serialization is not supported".into())
                    }
                    other => panic!("{id}: jws {other}"),
                }
            };
            match (valid, outcome) {
                (_, Outcome::Skipped(why)) => tally.skipped.push((id, why)),
                (true, Outcome::Accepted) => {
                    tally.run += 1;
                    tally.valid_accepted += 1;
                }
                (false, Outcome::Rejected(why)) => {
                    tally.run += 1;
                    tally.invalid_rejected += 1;
                    *tally.reasons.entry(why).or_default() += 1;
                }
                (false, Outcome::Accepted) => {
                    tally.run += 1;
                    tally
                        .failures
                        .push(format!("{id} ({}): FALSE ACCEPT", test["comment"]));
                }
                (true, Outcome::Rejected(why)) => {
                    tally.run += 1;
                    tally.disagreements.push((id, why));
                }
            }
        }
    }
    assert_eq!(
        count,
        doc["numberOfTests"].as_u64().unwrap() as usize,
        "{file}"
    );
}

#[test]
fn wycheproof_jose_vectors() {
    let mut tally = Tally::default();
    for file in [
        "json_web_signature_test.json",
        "json_web_key_test.json",
        "json_web_crypto_test.json",
    ] {
        run_file(file, &mut tally);
    }

    println!(
        "wycheproof: {} run ({} valid accepted, {} invalid rejected), {} skipped, {} valid vectors rejected on purpose",
        tally.run,
        tally.valid_accepted,
        tally.invalid_rejected,
        tally.skipped.len(),
        tally.disagreements.len()
    );
    println!("rejection reasons of invalid vectors: {:?}", tally.reasons);
    let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, why) in &tally.skipped {
        by_reason.entry(why).or_default().push(id);
    }
    for (why, ids) in &by_reason {
        println!("skipped ({why}): {} vectors: {}", ids.len(), ids.join(" "));
    }
    for (id, why) in &tally.disagreements {
        println!("valid vector rejected on purpose: {id} ({why})");
    }

    assert!(
        tally.failures.is_empty(),
        "false accepts: {:#?}",
        tally.failures
    );

    // Valid vectors Wycheproof expects to verify, which Rampart rejects on purpose:
    // - #346 and #350 (RFC 7520 Figure 20) are PS384 tokens, but the group's JWK says
    //   `"alg": "PS256"`; a JWK's alg binds the key to that one algorithm (RFC 8725 §3.1).
    // - #372 and #373 have a `?` inserted into the header or payload segment: not base64url
    //   (RFC 7515 §2), and the signing input is the segments as sent, so accepting would
    //   mean verifying a signature over text that was never signed.
    let sig = |id: u32, why: &str| (format!("json_web_signature_test.json#{id}"), why.to_owned());
    assert_eq!(
        tally.disagreements,
        [
            sig(346, "key_alg_mismatch"),
            sig(350, "key_alg_mismatch"),
            sig(372, "bad_encoding"),
            sig(373, "bad_encoding"),
        ]
    );

    // Exactly these skips, so the count cannot grow silently.
    let skips: Vec<(&str, Vec<&str>)> = by_reason
        .iter()
        .map(|(why, ids)| (*why, ids.clone()))
        .collect();
    let jwe: Vec<String> = (50..=83)
        .map(|id| format!("json_web_crypto_test.json#{id}"))
        .collect();
    assert_eq!(
        skips,
        [
            (
                "JWE (encryption): Rampart verifies signatures only",
                jwe.iter().map(String::as_str).collect()
            ),
            (
                "alg ES512 is not supported",
                vec![
                    "json_web_signature_test.json#347",
                    "json_web_signature_test.json#351"
                ],
            ),
            (
                "defective: marked invalid, but the same bytes and keys as valid vector 357",
                vec![
                    "json_web_signature_test.json#367",
                    "json_web_signature_test.json#370"
                ],
            ),
        ]
    );
    assert_eq!(tally.run + tally.skipped.len(), 401 + 26 + 83);
}

/// What the two defective vectors (#367, #370) meant to test: base64 padding in the header
/// and in the payload of the valid HS256 vector #357. Both are refused as bad_encoding.
#[test]
fn padding_the_defective_vectors_meant() {
    let doc = load("json_web_signature_test.json");
    let group = doc["testGroups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["tests"][0]["tcId"] == 357)
        .unwrap();
    let keys = group_keys(group).unwrap();
    let options = ParseOptions::new(AlgSet::all());
    let valid = group["tests"][0]["jws"].as_str().unwrap();
    assert!(verify_jws(valid, &keys, &options).is_ok());
    let parts: Vec<&str> = valid.split('.').collect();
    // "VGVzdA" is "Test" without its "==" padding; the header needs none, so any "=" is
    // invalid there.
    for padded in [
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}==.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
    ] {
        assert_eq!(
            verify_jws(&padded, &keys, &options).unwrap_err().reason(),
            "bad_encoding",
            "{padded}"
        );
    }
}

#[test]
fn unsupported_algorithms_are_rejected_not_accepted() {
    // The ES512 vector Wycheproof marks valid: Rampart has no P-521, so it is refused
    // (alg_not_allowed), never accepted.
    let doc = load("json_web_signature_test.json");
    let test = doc["testGroups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["tests"].as_array().unwrap())
        .find(|t| t["tcId"] == 347)
        .unwrap();
    let keys = KeySet::new();
    let err = verify_jws(
        test["jws"].as_str().unwrap(),
        &keys,
        &ParseOptions::new(AlgSet::all()),
    )
    .unwrap_err();
    assert_eq!(err, Rejection::AlgNotAllowed);
}

/// The key-validation vectors are refused for the reason they test, not by accident.
#[test]
fn key_vectors_are_refused_for_their_reason() {
    let doc = load("json_web_key_test.json");
    let groups = doc["testGroups"].as_array().unwrap();
    let skip_of = |comment: &str, nth: usize| -> SkipReason {
        let group = groups
            .iter()
            .filter(|g| g["comment"] == comment)
            .nth(nth)
            .unwrap_or_else(|| panic!("{comment}"));
        let set = group_keys(group).unwrap();
        assert!(set.is_empty(), "{comment}");
        set.skipped()[0].reason
    };
    assert_eq!(skip_of("rs256", 1), SkipReason::NotForSignatures);
    assert_eq!(skip_of("jws_rsa_roca_key", 0), SkipReason::RsaRoca);
    assert_eq!(
        skip_of("keysize_too_small", 0),
        SkipReason::RsaTooSmall(1024)
    );
    assert_eq!(skip_of("exponentOne", 0), SkipReason::RsaBadExponent);
    assert_eq!(skip_of("wrong_algorithm", 0), SkipReason::UnsupportedAlg);
    assert_eq!(skip_of("invalid_algorithm", 0), SkipReason::UnsupportedAlg);
    assert_eq!(skip_of("invalid_use", 0), SkipReason::NotForSignatures);
    assert_eq!(skip_of("invalid_point", 0), SkipReason::InvalidKey);
    assert_eq!(
        skip_of("wrong_curve", 0),
        SkipReason::Malformed("coordinate length")
    );
    assert_eq!(skip_of("wrong_kty", 0), SkipReason::Malformed("n"));

    let refused = |comment: &str| -> String {
        let group = groups.iter().find(|g| g["comment"] == comment).unwrap();
        group_keys(group).unwrap_err()
    };
    assert!(refused("jws_mixedSymmetryKeyset").contains("symmetric key"));
    assert!(refused("jws_duplicate_kid").contains("two keys with kid"));
    assert!(refused("invalid_aes_gcm_key").contains("non-HMAC alg"));
    for short in ["HS256", "HS384", "HS512"] {
        let group = groups.iter().find(|g| g["comment"] == short).unwrap();
        assert!(
            group_keys(group).unwrap_err().contains("must be at least"),
            "{short}"
        );
    }
}

/// #346 and #350 are rejected only because their JWK says PS256: without the JWK's `alg`
/// the same key verifies the PS384 signature.
#[test]
fn figure_20_fails_only_on_the_jwk_alg() {
    let doc = load("json_web_signature_test.json");
    let group = doc["testGroups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["tests"][0]["tcId"] == 346)
        .unwrap();
    let token = group["tests"][0]["jws"].as_str().unwrap();
    let options = ParseOptions::new(AlgSet::all());
    let bound = group_keys(group).unwrap();
    assert_eq!(
        verify_jws(token, &bound, &options).unwrap_err(),
        Rejection::KeyAlgMismatch
    );
    let mut jwk = group["public"].clone();
    jwk.as_object_mut().unwrap().remove("alg");
    let unbound =
        KeySet::from_jwks(&serde_json::to_vec(&json!({ "keys": [jwk] })).unwrap()).unwrap();
    assert!(verify_jws(token, &unbound, &options).is_ok());
}
