//! Our own attack corpus: named tokens from RFC 8725 and published JWT attacks, each with
//! the rejection reason it must get. Zero false accepts: a case that verifies, or is refused
//! for another reason, fails the test. A few accepted controls keep the corpus honest (the
//! same keys and verifier do accept well-formed tokens).
//!
//! The key set holds, at once, an RSA key (`rsa-1`), a P-256 key (`ec-1`), a P-384 key
//! (`ec384-1`), an Ed25519 key (`ed-1`) and an HMAC secret (`hs-1`): mixing families in one
//! set is the hardest case for algorithm/key binding.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use rampart_auth::{Alg, AlgSet, ClaimsPolicy, KeyError, KeySet, Rejection, SkipReason, Verifier};
use serde_json::{Value, json};

/// Which verifier a case runs against.
#[derive(Clone, Copy, Debug)]
enum Provider {
    /// Every algorithm allowed, audiences configured, embedded keys ignored.
    Default,
    /// Only RS256 allowed.
    Rs256Only,
    /// Embedded keys (`jwk`, `jku`, `x5u`, `x5c`) refused.
    NoEmbeddedKeys,
    /// `typ` must be `at+jwt` (RFC 9068).
    AtJwt,
}

struct Case {
    name: &'static str,
    token: String,
    provider: Provider,
    /// A reason code, or `"accepted"` for the controls.
    expect: &'static str,
}

fn verifier(provider: Provider) -> Verifier {
    let policy = ClaimsPolicy::new(ISSUER)
        .unwrap()
        .with_audiences([AUDIENCE])
        .unwrap();
    let algorithms = match provider {
        Provider::Rs256Only => AlgSet::of(&[Alg::Rs256]),
        _ => AlgSet::all(),
    };
    let policy = match provider {
        Provider::AtJwt => policy.with_typ("at+jwt").unwrap(),
        _ => policy,
    };
    Verifier::new(algorithms, policy)
        .unwrap()
        .reject_embedded_keys(matches!(provider, Provider::NoEmbeddedKeys))
}

fn hdr(alg: &str, kid: Option<&str>) -> Value {
    match kid {
        Some(kid) => json!({"alg": alg, "kid": kid}),
        None => json!({"alg": alg}),
    }
}

/// `claims()` with `changes` applied (`null` removes a claim).
fn claims_with(changes: Value) -> Value {
    let mut c = claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

/// A correctly signed RS256 token with header `h` and claims `c`.
fn rs(h: Value, c: Value) -> String {
    mint(&h, &c, rsa_key(), Alg::Rs256)
}

fn good_rs256() -> String {
    rs(hdr("RS256", Some("rsa-1")), claims())
}

fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

fn with_signature(token: &str, sig: &[u8]) -> String {
    let p = parts(token);
    format!("{}.{}.{}", p[0], p[1], b64(sig))
}

fn unsigned(h: Value) -> String {
    format!("{}.{}.", b64_json(&h), b64_json(&claims()))
}

/// `a` as a DER INTEGER body: no superfluous leading zeros, a zero added before a high bit.
fn der_int(a: &[u8]) -> Vec<u8> {
    let start = a.iter().position(|b| *b != 0).unwrap_or(a.len() - 1);
    let mut v = a[start..].to_vec();
    if v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    let mut out = vec![0x02, v.len() as u8];
    out.extend(v);
    out
}

/// An ECDSA `R || S` signature re-encoded as ASN.1 DER, as some libraries produce.
fn der_signature(fixed: &[u8]) -> Vec<u8> {
    let (r, s) = fixed.split_at(fixed.len() / 2);
    let body = [der_int(r), der_int(s)].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// The order of the P-256 group.
const P256_N: &str = "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Standard base64 (with `+` and `/`) of `bytes`, no padding.
fn std_b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// A correctly signed HS256 token whose payload segment is standard base64 containing `+`
/// or `/`.
fn standard_alphabet_payload() -> String {
    for pad in 0..64 {
        let c = claims_with(json!({"note": "?>".repeat(pad + 1)}));
        let payload = std_b64(&serde_json::to_vec(&c).unwrap());
        if payload.contains('+') || payload.contains('/') {
            return sign_segments(
                &b64_json(&hdr("HS256", Some("hs-1"))),
                &payload,
                hmac_key(),
                Alg::Hs256,
            );
        }
    }
    unreachable!()
}

/// A correctly signed ES256 token whose signature, in standard base64, has `+` or `/`.
fn standard_alphabet_signature() -> String {
    loop {
        let t = mint(
            &hdr("ES256", Some("ec-1")),
            &claims(),
            p256_key(),
            Alg::Es256,
        );
        let sig = unb64(&parts(&t)[2]);
        let std = std_b64(&sig);
        if std.contains('+') || std.contains('/') {
            let p = parts(&t);
            return format!("{}.{}.{std}", p[0], p[1]);
        }
    }
}

/// A correctly signed HS256 token whose last signature character has non-zero unused bits.
fn non_canonical_signature() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let t = mint(
        &hdr("HS256", Some("hs-1")),
        &claims(),
        hmac_key(),
        Alg::Hs256,
    );
    let mut bytes = t.into_bytes();
    // A 32-byte MAC is 43 characters; the last one carries 2 unused bits.
    let last = bytes.last_mut().unwrap();
    let index = ALPHABET.iter().position(|c| c == last).unwrap();
    *last = ALPHABET[(index & !3) | 1];
    String::from_utf8(bytes).unwrap()
}

fn cases() -> Vec<Case> {
    use Provider::*;
    let case = |name, token, expect| Case {
        name,
        token,
        provider: Default,
        expect,
    };
    let on = |provider, name, token, expect| Case {
        name,
        token,
        provider,
        expect,
    };
    let signed_with = |secret: &[u8], h: Value| {
        mint(&h, &claims(), &TestKey::Secret(secret.to_vec()), Alg::Hs256)
    };
    let rsa_pem = rsa_key().rsa_spki_pem();
    let attacker_jwk = attacker_p256_key().public_jwk(Some("ec-1"));
    let good = good_rs256();
    let other = rs(
        hdr("RS256", Some("rsa-1")),
        claims_with(json!({"sub": "admin"})),
    );
    let es = mint(
        &hdr("ES256", Some("ec-1")),
        &claims(),
        p256_key(),
        Alg::Es256,
    );
    let es_sig = unb64(&parts(&es)[2]);
    let n = hex(P256_N);
    let rs_sig = unb64(&parts(&good)[2]);
    let hs = mint(
        &hdr("HS256", Some("hs-1")),
        &claims(),
        hmac_key(),
        Alg::Hs256,
    );
    let hs_sig = unb64(&parts(&hs)[2]);
    let ed = mint(
        &hdr("EdDSA", Some("ed-1")),
        &claims(),
        ed25519_key(),
        Alg::EdDsa,
    );
    let mut ed_sig = unb64(&parts(&ed)[2]);
    ed_sig[10] ^= 0x01;
    let es384 = mint(
        &hdr("ES384", Some("ec384-1")),
        &claims(),
        p384_key(),
        Alg::Es384,
    );
    let g = parts(&good);

    vec![
        // --- alg none (RFC 8725 §2.1, §3.1; CVE-2015-9235 and friends) ---
        case("alg_none", unsigned(hdr("none", None)), "alg_none"),
        case("alg_None", unsigned(hdr("None", None)), "alg_none"),
        case("alg_NONE", unsigned(hdr("NONE", None)), "alg_none"),
        case("alg_nOnE", unsigned(hdr("nOnE", None)), "alg_none"),
        case("alg_NoNe", unsigned(hdr("NoNe", None)), "alg_none"),
        case("alg_nONE_with_kid", unsigned(hdr("nONE", Some("hs-1"))), "alg_none"),
        case(
            "alg_none_with_a_real_signature",
            mint(&hdr("none", Some("rsa-1")), &claims(), rsa_key(), Alg::Rs256),
            "alg_none",
        ),
        case("alg_missing", unsigned(json!({"kid": "rsa-1"})), "malformed"),
        case("alg_null", unsigned(json!({"alg": null})), "malformed"),
        case("alg_number", unsigned(json!({"alg": 256})), "malformed"),
        case("alg_array", unsigned(json!({"alg": ["RS256"]})), "malformed"),
        case("alg_unknown", unsigned(hdr("HS1", None)), "alg_not_allowed"),
        case("alg_lowercase", unsigned(hdr("rs256", None)), "alg_not_allowed"),
        case("alg_es512_unsupported", unsigned(hdr("ES512", None)), "alg_not_allowed"),
        on(Rs256Only, "alg_not_on_allow_list", es.clone(), "alg_not_allowed"),
        on(
            Rs256Only,
            "hs256_on_an_rs256_only_provider",
            signed_with(rsa_pem.as_bytes(), hdr("HS256", Some("rsa-1"))),
            "alg_not_allowed",
        ),
        // --- key confusion: HMAC with public key bytes (RFC 8725 §2.1, §3.1) ---
        case(
            "hs256_mac_keyed_with_rsa_public_pem",
            signed_with(rsa_pem.as_bytes(), hdr("HS256", Some("rsa-1"))),
            "key_alg_mismatch",
        ),
        case(
            "hs256_mac_keyed_with_rsa_spki_der",
            signed_with(&rsa_key().rsa_spki_der(), hdr("HS256", Some("rsa-1"))),
            "key_alg_mismatch",
        ),
        case(
            "hs256_mac_keyed_with_rsa_pkcs1_der",
            signed_with(&rsa_key().public_bytes(), hdr("HS256", Some("rsa-1"))),
            "key_alg_mismatch",
        ),
        case(
            "hs256_mac_keyed_with_rsa_jwk_json",
            signed_with(
                &serde_json::to_vec(&rsa_key().public_jwk(Some("rsa-1"))).unwrap(),
                hdr("HS256", Some("rsa-1")),
            ),
            "key_alg_mismatch",
        ),
        case(
            // Without a kid only the configured secret may verify HS256; the forgery fails.
            "hs256_mac_keyed_with_rsa_public_pem_no_kid",
            signed_with(rsa_pem.as_bytes(), hdr("HS256", None)),
            "bad_signature",
        ),
        case(
            "hs256_mac_keyed_with_ec_public_point",
            signed_with(&p256_key().public_bytes(), hdr("HS256", Some("ec-1"))),
            "key_alg_mismatch",
        ),
        case(
            "hs256_mac_keyed_with_ed25519_public_key",
            signed_with(&ed25519_key().public_bytes(), hdr("HS256", Some("ed-1"))),
            "key_alg_mismatch",
        ),
        case(
            "rs256_token_naming_an_ec_key",
            rs(hdr("RS256", Some("ec-1")), claims()),
            "key_alg_mismatch",
        ),
        case(
            "es256_token_naming_the_rsa_key",
            mint(&hdr("ES256", Some("rsa-1")), &claims(), p256_key(), Alg::Es256),
            "key_alg_mismatch",
        ),
        case(
            "es384_token_naming_a_p256_key",
            mint(&hdr("ES384", Some("ec-1")), &claims(), p384_key(), Alg::Es384),
            "key_alg_mismatch",
        ),
        case(
            "es256_token_naming_the_hmac_secret",
            mint(&hdr("ES256", Some("hs-1")), &claims(), p256_key(), Alg::Es256),
            "key_alg_mismatch",
        ),
        case(
            "eddsa_token_naming_an_ec_key",
            mint(&hdr("EdDSA", Some("ec-1")), &claims(), ed25519_key(), Alg::EdDsa),
            "key_alg_mismatch",
        ),
        // --- signatures (RFC 8725 §3.4; CVE-2022-21449) ---
        case(
            "es256_psychic_signature_r0_s0",
            with_signature(&es, &[0; 64]),
            "bad_signature",
        ),
        case(
            "es256_psychic_signature_no_kid",
            with_signature(
                &format!("{}.{}.x", b64_json(&hdr("ES256", None)), parts(&es)[1]),
                &[0; 64],
            ),
            "bad_signature",
        ),
        case(
            "es256_r_and_s_equal_the_group_order",
            with_signature(&es, &[n.clone(), n.clone()].concat()),
            "bad_signature",
        ),
        case(
            "es256_r0_with_a_real_s",
            with_signature(&es, &[&[0u8; 32][..], &es_sig[32..]].concat()),
            "bad_signature",
        ),
        case(
            "es256_der_encoded_signature",
            with_signature(&es, &der_signature(&es_sig)),
            "bad_signature",
        ),
        case(
            "es256_signature_with_a_trailing_zero",
            with_signature(&es, &[&es_sig[..], &[0]].concat()),
            "bad_signature",
        ),
        case(
            "es384_signature_truncated_to_p256_size",
            with_signature(&es384, &unb64(&parts(&es384)[2])[..64]),
            "bad_signature",
        ),
        case(
            "rs256_truncated_signature",
            with_signature(&good, &rs_sig[..rs_sig.len() - 1]),
            "bad_signature",
        ),
        case(
            "rs256_signature_with_a_leading_zero",
            with_signature(&good, &[&[0u8][..], &rs_sig].concat()),
            "bad_signature",
        ),
        case(
            "hs256_mac_truncated_to_16_bytes",
            with_signature(&hs, &hs_sig[..16]),
            "bad_signature",
        ),
        case("rs256_empty_signature", with_signature(&good, &[]), "bad_signature"),
        case("hs256_empty_signature", with_signature(&hs, &[]), "bad_signature"),
        case(
            "signature_of_another_token",
            with_signature(&good, &unb64(&parts(&other)[2])),
            "bad_signature",
        ),
        case(
            "signed_by_another_rsa_key_under_our_kid",
            mint(&hdr("RS256", Some("rsa-1")), &claims(), other_rsa_key(), Alg::Rs256),
            "bad_signature",
        ),
        case(
            "tampered_payload",
            format!("{}.{}.{}", g[0], b64_json(&claims_with(json!({"sub": "admin"}))), g[2]),
            "bad_signature",
        ),
        case(
            "tampered_header_added_member",
            format!(
                "{}.{}.{}",
                b64_json(&json!({"alg": "RS256", "kid": "rsa-1", "x": 1})),
                g[1],
                g[2]
            ),
            "bad_signature",
        ),
        case(
            "tampered_header_rs256_to_ps256",
            format!("{}.{}.{}", b64_json(&hdr("PS256", Some("rsa-1"))), g[1], g[2]),
            "bad_signature",
        ),
        case("eddsa_signature_bit_flip", with_signature(&ed, &ed_sig), "bad_signature"),
        // --- kid (RFC 8725 §3.10: a lookup key only) ---
        case(
            "kid_path_traversal_dev_null",
            signed_with(b"", hdr("HS256", Some("../../../../../../dev/null"))),
            "unknown_kid",
        ),
        case(
            "kid_sql_injection",
            signed_with(b"secret", hdr("HS256", Some("x' UNION SELECT 'secret' --"))),
            "unknown_kid",
        ),
        case(
            "kid_command_injection",
            signed_with(b"secret", hdr("HS256", Some("key|/usr/bin/id"))),
            "unknown_kid",
        ),
        case("kid_number", unsigned(json!({"alg": "RS256", "kid": 1})), "malformed"),
        case(
            "kid_object",
            unsigned(json!({"alg": "RS256", "kid": {"$ne": null}})),
            "malformed",
        ),
        case(
            "kid_too_long",
            rs(json!({"alg": "RS256", "kid": "k".repeat(300)}), claims()),
            "malformed",
        ),
        case(
            "kid_unknown",
            rs(hdr("RS256", Some("rotated-away")), claims()),
            "unknown_kid",
        ),
        case(
            "kid_case_variant",
            rs(hdr("RS256", Some("RSA-1")), claims()),
            "unknown_kid",
        ),
        case("kid_empty", rs(hdr("RS256", Some("")), claims()), "unknown_kid"),
        // --- embedded keys and key URLs (RFC 8725 §3.10; CVE-2018-0114) ---
        case(
            "embedded_jwk_attacker_key_under_our_kid",
            mint(
                &json!({"alg": "ES256", "kid": "ec-1", "jwk": attacker_jwk}),
                &claims(),
                attacker_p256_key(),
                Alg::Es256,
            ),
            "bad_signature",
        ),
        case(
            "embedded_jwk_attacker_key_no_kid",
            mint(
                &json!({"alg": "ES256", "jwk": attacker_jwk}),
                &claims(),
                attacker_p256_key(),
                Alg::Es256,
            ),
            "bad_signature",
        ),
        case(
            "embedded_jwk_attacker_kid",
            mint(
                &json!({"alg": "ES256", "kid": "attacker", "jwk": attacker_jwk}),
                &claims(),
                attacker_p256_key(),
                Alg::Es256,
            ),
            "unknown_kid",
        ),
        on(
            NoEmbeddedKeys,
            "embedded_jwk_refused_by_provider",
            mint(
                &json!({"alg": "ES256", "kid": "ec-1", "jwk": p256_key().public_jwk(None)}),
                &claims(),
                p256_key(),
                Alg::Es256,
            ),
            "unsupported_header",
        ),
        case(
            "jku_to_attacker_jwks_attacker_kid",
            mint(
                &json!({"alg": "RS256", "kid": "evil", "jku": "https://evil.example/jwks.json"}),
                &claims(),
                other_rsa_key(),
                Alg::Rs256,
            ),
            "unknown_kid",
        ),
        case(
            "jku_to_attacker_jwks_our_kid",
            mint(
                &json!({"alg": "RS256", "kid": "rsa-1", "jku": "https://evil.example/jwks.json"}),
                &claims(),
                other_rsa_key(),
                Alg::Rs256,
            ),
            "bad_signature",
        ),
        case(
            "x5u_to_attacker_certificate",
            mint(
                &json!({"alg": "RS256", "kid": "evil", "x5u": "https://evil.example/cert.pem"}),
                &claims(),
                other_rsa_key(),
                Alg::Rs256,
            ),
            "unknown_kid",
        ),
        case(
            "x5c_attacker_chain_no_kid",
            mint(
                &json!({"alg": "RS256", "x5c": [std_b64(&other_rsa_key().rsa_spki_der())]}),
                &claims(),
                other_rsa_key(),
                Alg::Rs256,
            ),
            "bad_signature",
        ),
        on(
            NoEmbeddedKeys,
            "x5c_refused_by_provider",
            rs(
                json!({"alg": "RS256", "kid": "rsa-1", "x5c": ["MIIB"]}),
                claims(),
            ),
            "unsupported_header",
        ),
        // --- crit, b64, nesting (RFC 7515 §4.1.11, RFC 7797, RFC 8725 §2.8) ---
        case(
            "crit_unknown_extension",
            rs(
                json!({"alg": "RS256", "kid": "rsa-1", "crit": ["urn:evil"], "urn:evil": 1}),
                claims(),
            ),
            "crit_unsupported",
        ),
        case(
            "crit_empty_array",
            rs(json!({"alg": "RS256", "kid": "rsa-1", "crit": []}), claims()),
            "crit_unsupported",
        ),
        case(
            "crit_not_an_array",
            rs(json!({"alg": "RS256", "kid": "rsa-1", "crit": "exp"}), claims()),
            "crit_unsupported",
        ),
        case(
            "crit_naming_a_registered_claim",
            rs(json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"]}), claims()),
            "crit_unsupported",
        ),
        case(
            "b64_false_with_crit",
            rs(
                json!({"alg": "RS256", "kid": "rsa-1", "b64": false, "crit": ["b64"]}),
                claims(),
            ),
            "crit_unsupported",
        ),
        case(
            "b64_false_without_crit",
            rs(json!({"alg": "RS256", "kid": "rsa-1", "b64": false}), claims()),
            "unsupported_header",
        ),
        case(
            "cty_jwt_nested_token",
            rs(json!({"alg": "RS256", "kid": "rsa-1", "cty": "JWT"}), claims()),
            "unsupported_header",
        ),
        case(
            "nested_jwt_as_payload_string",
            rs(hdr("RS256", Some("rsa-1")), json!(good.clone())),
            "malformed",
        ),
        // --- encoding (RFC 7515 §2: unpadded base64url, one spelling per token) ---
        case(
            "padding_in_header",
            format!("{}=.{}.{}", g[0], g[1], g[2]),
            "bad_encoding",
        ),
        case(
            "padding_in_payload",
            format!("{}.{}==.{}", g[0], g[1], g[2]),
            "bad_encoding",
        ),
        case(
            "padding_in_signature",
            format!("{}.{}.{}=", g[0], g[1], g[2]),
            "bad_encoding",
        ),
        case(
            "standard_alphabet_payload",
            standard_alphabet_payload(),
            "bad_encoding",
        ),
        case(
            "standard_alphabet_signature",
            standard_alphabet_signature(),
            "bad_encoding",
        ),
        case(
            "space_inside_payload",
            format!("{}.{} {}.{}", g[0], &g[1][..4], &g[1][4..], g[2]),
            "bad_encoding",
        ),
        case("trailing_newline", format!("{good}\n"), "bad_encoding"),
        case("leading_space", format!(" {good}"), "bad_encoding"),
        case(
            "non_canonical_trailing_bits",
            non_canonical_signature(),
            "bad_encoding",
        ),
        case(
            "non_ascii_in_payload",
            format!("{}.{}é.{}", g[0], g[1], g[2]),
            "bad_encoding",
        ),
        // --- shape and JSON (RFC 7515 §5.2, RFC 7519 §7.2) ---
        case("two_parts", format!("{}.{}", g[0], g[1]), "malformed"),
        case("four_parts", format!("{good}.{}", g[2]), "malformed"),
        case(
            "five_parts_jwe_shaped",
            format!("{}.{}.{}.{}.{}", g[0], g[1], g[2], g[1], g[2]),
            "malformed",
        ),
        case("one_part", g[0].clone(), "malformed"),
        case("empty_token", String::new(), "malformed"),
        case(
            "header_json_array",
            format!("{}.{}.{}", b64_json(&json!(["RS256"])), g[1], g[2]),
            "malformed",
        ),
        case(
            "header_json_string",
            format!("{}.{}.{}", b64_json(&json!("RS256")), g[1], g[2]),
            "malformed",
        ),
        case(
            "header_not_json",
            format!("{}.{}.{}", b64(b"alg=RS256"), g[1], g[2]),
            "malformed",
        ),
        case("header_empty", format!(".{}.{}", g[1], g[2]), "malformed"),
        case(
            "header_with_utf8_bom",
            format!("{}.{}.{}", b64(b"\xef\xbb\xbf{\"alg\":\"RS256\"}"), g[1], g[2]),
            "malformed",
        ),
        case(
            "payload_json_string",
            rs(hdr("RS256", Some("rsa-1")), json!("user-1234")),
            "malformed",
        ),
        case(
            "payload_json_array",
            rs(hdr("RS256", Some("rsa-1")), json!([claims()])),
            "malformed",
        ),
        case(
            "payload_not_utf8",
            sign_segments(&g[0], &b64(b"{\"sub\":\"\xff\"}"), rsa_key(), Alg::Rs256),
            "malformed",
        ),
        case(
            "duplicate_alg_member",
            sign_segments(
                &b64(br#"{"alg":"none","alg":"HS256","kid":"hs-1"}"#),
                &g[1],
                hmac_key(),
                Alg::Hs256,
            ),
            "malformed",
        ),
        case(
            "duplicate_alg_member_escaped",
            sign_segments(
                &b64(br#"{"alg":"HS256","\u0061lg":"none","kid":"hs-1"}"#),
                &g[1],
                hmac_key(),
                Alg::Hs256,
            ),
            "malformed",
        ),
        case(
            "duplicate_sub_in_payload",
            sign_segments(
                &g[0],
                &b64(
                    format!(
                        r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{},"sub":"user","sub":"admin"}}"#,
                        NOW + 600
                    )
                    .as_bytes(),
                ),
                rsa_key(),
                Alg::Rs256,
            ),
            "malformed",
        ),
        case(
            "duplicate_iss_in_payload",
            sign_segments(
                &g[0],
                &b64(
                    format!(
                        r#"{{"iss":"https://evil.example","iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{},"sub":"u"}}"#,
                        NOW + 600
                    )
                    .as_bytes(),
                ),
                rsa_key(),
                Alg::Rs256,
            ),
            "malformed",
        ),
        case(
            "oversized_token",
            rs(
                hdr("RS256", Some("rsa-1")),
                claims_with(json!({"pad": "x".repeat(9000)})),
            ),
            "too_large",
        ),
        // --- claims (RFC 7519 §4.1, RFC 8725 §3.8, §3.9, §3.11) ---
        case(
            "exp_as_string",
            rs(g_hdr(), claims_with(json!({"exp": (NOW + 600).to_string()}))),
            "bad_claim_type",
        ),
        case("exp_missing", rs(g_hdr(), claims_with(json!({"exp": null}))), "missing_claim"),
        case(
            "exp_null_value",
            rs(g_hdr(), claims_with(json!({"exp": [Value::Null]}))),
            "bad_claim_type",
        ),
        case("exp_boolean", rs(g_hdr(), claims_with(json!({"exp": true}))), "bad_claim_type"),
        case("exp_negative", rs(g_hdr(), claims_with(json!({"exp": -1}))), "bad_claim_type"),
        case(
            "exp_after_year_9999",
            rs(g_hdr(), claims_with(json!({"exp": 253_402_300_800_u64}))),
            "bad_claim_type",
        ),
        case("exp_1e300", rs(g_hdr(), claims_with(json!({"exp": 1e300}))), "bad_claim_type"),
        case(
            "expired_beyond_leeway",
            rs(g_hdr(), claims_with(json!({"exp": NOW - 61}))),
            "expired",
        ),
        case(
            "expired_exactly_at_leeway",
            rs(g_hdr(), claims_with(json!({"exp": NOW - 60}))),
            "expired",
        ),
        case(
            "nbf_beyond_leeway",
            rs(g_hdr(), claims_with(json!({"nbf": NOW + 61}))),
            "not_yet_valid",
        ),
        case(
            "nbf_as_string",
            rs(g_hdr(), claims_with(json!({"nbf": "0"}))),
            "bad_claim_type",
        ),
        case(
            "iat_beyond_leeway",
            rs(g_hdr(), claims_with(json!({"iat": NOW + 61}))),
            "iat_in_future",
        ),
        case(
            "iss_other_issuer",
            rs(g_hdr(), claims_with(json!({"iss": "https://evil.example"}))),
            "bad_issuer",
        ),
        case(
            "iss_prefix_trick",
            rs(g_hdr(), claims_with(json!({"iss": format!("{ISSUER}.evil.example")}))),
            "bad_issuer",
        ),
        case(
            "iss_trailing_slash",
            rs(g_hdr(), claims_with(json!({"iss": format!("{ISSUER}/")}))),
            "bad_issuer",
        ),
        case(
            "iss_case_variant",
            rs(g_hdr(), claims_with(json!({"iss": ISSUER.to_uppercase()}))),
            "bad_issuer",
        ),
        case("iss_missing", rs(g_hdr(), claims_with(json!({"iss": null}))), "missing_claim"),
        case(
            "iss_array",
            rs(g_hdr(), claims_with(json!({"iss": [ISSUER]}))),
            "bad_claim_type",
        ),
        case(
            "aud_other_audience",
            rs(g_hdr(), claims_with(json!({"aud": "api://other"}))),
            "bad_audience",
        ),
        case(
            "aud_array_without_ours",
            rs(g_hdr(), claims_with(json!({"aud": ["api://a", "api://b"]}))),
            "bad_audience",
        ),
        case(
            "aud_prefix_trick",
            rs(g_hdr(), claims_with(json!({"aud": format!("{AUDIENCE}-evil")}))),
            "bad_audience",
        ),
        case("aud_empty_array", rs(g_hdr(), claims_with(json!({"aud": []}))), "bad_audience"),
        case("aud_missing", rs(g_hdr(), claims_with(json!({"aud": null}))), "missing_claim"),
        case(
            "aud_array_with_a_non_string",
            rs(g_hdr(), claims_with(json!({"aud": [AUDIENCE, {"x": 1}]}))),
            "bad_claim_type",
        ),
        on(
            AtJwt,
            "typ_jwt_where_at_jwt_required",
            rs(json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}), claims()),
            "bad_typ",
        ),
        on(AtJwt, "typ_missing_where_required", good.clone(), "bad_typ"),
        case("sub_number", rs(g_hdr(), claims_with(json!({"sub": 1234}))), "bad_claim_type"),
        case("sub_empty", rs(g_hdr(), claims_with(json!({"sub": ""}))), "bad_claim_type"),
        case("sub_missing", rs(g_hdr(), claims_with(json!({"sub": null}))), "missing_claim"),
        case(
            "scope_as_array",
            rs(g_hdr(), claims_with(json!({"scope": ["admin"]}))),
            "bad_claim_type",
        ),
        case(
            "roles_as_string",
            rs(g_hdr(), claims_with(json!({"roles": "admin"}))),
            "bad_claim_type",
        ),
    ]
}

fn g_hdr() -> Value {
    hdr("RS256", Some("rsa-1"))
}

/// Well-formed tokens the same verifiers accept.
fn controls() -> Vec<Case> {
    use Provider::*;
    let accepted = |name, token| Case {
        name,
        token,
        provider: Default,
        expect: "accepted",
    };
    let mut out: Vec<Case> = [
        (Alg::Rs256, "rsa-1"),
        (Alg::Rs384, "rsa-1"),
        (Alg::Rs512, "rsa-1"),
        (Alg::Ps256, "rsa-1"),
        (Alg::Ps384, "rsa-1"),
        (Alg::Ps512, "rsa-1"),
        (Alg::Es256, "ec-1"),
        (Alg::Es384, "ec384-1"),
        (Alg::EdDsa, "ed-1"),
        (Alg::Ed25519, "ed-1"),
        (Alg::Hs256, "hs-1"),
    ]
    .into_iter()
    .map(|(alg, kid)| {
        let key = match kid {
            "rsa-1" => rsa_key(),
            "ec-1" => p256_key(),
            "ec384-1" => p384_key(),
            "ed-1" => ed25519_key(),
            _ => hmac_key(),
        };
        accepted(
            alg.name(),
            mint(&hdr(alg.name(), Some(kid)), &claims(), key, alg),
        )
    })
    .collect();
    out.extend([
        accepted(
            "es256_without_kid",
            mint(&hdr("ES256", None), &claims(), p256_key(), Alg::Es256),
        ),
        accepted(
            "exp_within_leeway",
            rs(g_hdr(), claims_with(json!({"exp": NOW - 59}))),
        ),
        accepted(
            "nbf_within_leeway",
            rs(g_hdr(), claims_with(json!({"nbf": NOW + 60}))),
        ),
        accepted(
            "aud_array_with_ours",
            rs(g_hdr(), claims_with(json!({"aud": ["api://other", AUDIENCE]}))),
        ),
        accepted(
            "embedded_jwk_ignored_by_default",
            mint(
                &json!({"alg": "ES256", "kid": "ec-1", "jwk": attacker_p256_key().public_jwk(None)}),
                &claims(),
                p256_key(),
                Alg::Es256,
            ),
        ),
        accepted(
            "fractional_exp",
            rs(g_hdr(), claims_with(json!({"exp": NOW as f64 + 0.5}))),
        ),
    ]);
    for typ in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        out.push(Case {
            name: "typ_at_jwt",
            token: rs(
                json!({"alg": "RS256", "kid": "rsa-1", "typ": typ}),
                claims(),
            ),
            provider: AtJwt,
            expect: "accepted",
        });
    }
    out
}

fn outcome(case: &Case, keys: &KeySet) -> String {
    match verifier(case.provider).verify(&case.token, keys, NOW) {
        Ok(_) => "accepted".to_owned(),
        Err(r) => r.reason().to_owned(),
    }
}

#[test]
fn attack_corpus_has_zero_false_accepts() {
    let keys = test_key_set();
    let cases = cases();
    let mut wrong = Vec::new();
    let mut false_accepts = Vec::new();
    for case in &cases {
        let got = outcome(case, &keys);
        println!("{:<48} {:<20} {got}", case.name, case.expect);
        if got == "accepted" {
            false_accepts.push(case.name);
        } else if got != case.expect {
            wrong.push(format!(
                "{}: expected {}, got {got}",
                case.name, case.expect
            ));
        }
    }
    assert!(false_accepts.is_empty(), "FALSE ACCEPTS: {false_accepts:?}");
    assert!(wrong.is_empty(), "wrong reasons: {wrong:#?}");
    let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    assert!(cases.len() >= 40);
    // Every reason code the corpus can reach, it does reach. `revoked` and `inactive` come
    // from the revocation list and introspection, not from the verifier; the end-to-end
    // tests of the defense reach them.
    for reason in Rejection::REASONS
        .into_iter()
        .filter(|r| !["revoked", "inactive"].contains(r))
    {
        assert!(
            cases.iter().any(|c| c.expect == reason),
            "no case for {reason}"
        );
    }
    println!("attack corpus: {} cases, 0 false accepts", cases.len());
}

#[test]
fn controls_are_accepted() {
    let keys = test_key_set();
    for case in controls() {
        let got = outcome(&case, &keys);
        assert_eq!(got, case.expect, "{}", case.name);
    }
}

#[test]
fn identity_of_an_accepted_token() {
    let keys = test_key_set();
    let v = verifier(Provider::Default)
        .verify(&good_rs256(), &keys, NOW)
        .unwrap();
    assert_eq!(v.alg, Alg::Rs256);
    assert_eq!(v.kid.as_deref(), Some("rsa-1"));
    assert_eq!(v.identity.subject, "user-1234");
    assert_eq!(v.identity.issuer, ISSUER);
    assert_eq!(
        v.identity.scopes,
        ["orders:read", "orders:write", "profile"]
    );
    assert_eq!(v.identity.roles, ["customer"]);
    assert_eq!(v.identity.client_id.as_deref(), Some("web-app"));
    assert_eq!(v.identity.expires_at, Some(NOW + 600));
    assert_eq!(v.claim_str("client_id").as_deref(), Some("web-app"));
    assert_eq!(v.claim_str("roles").as_deref(), Some("customer"));
}

/// Keys refused when a key set is built: the other half of the corpus.
#[test]
fn weak_and_misused_keys_are_refused_at_construction() {
    let secret = |len: usize, algs: &[Alg]| KeySet::with_secret(Some("s"), &vec![7; len], algs);
    let jwks =
        |jwk: Value| KeySet::from_jwks(&serde_json::to_vec(&json!({"keys": [jwk]})).unwrap());
    let skipped = |jwk: Value| {
        let set = jwks(jwk).unwrap();
        assert!(set.is_empty());
        set.skipped()[0].reason
    };
    let rsa = rsa_key().public_jwk(Some("r"));
    let ec = p256_key().public_jwk(Some("e"));
    let with = |mut jwk: Value, k: &str, v: Value| {
        jwk[k] = v;
        jwk
    };

    let cases: Vec<(&str, bool)> = vec![
        (
            "hs256_secret_of_31_bytes",
            secret(31, &[Alg::Hs256]).err()
                == Some(KeyError::WeakSecret {
                    alg: Alg::Hs256,
                    min: 32,
                    got: 31,
                }),
        ),
        (
            "hs384_secret_of_32_bytes",
            matches!(secret(32, &[Alg::Hs384]), Err(KeyError::WeakSecret { .. })),
        ),
        (
            "hs512_secret_of_48_bytes",
            matches!(secret(48, &[Alg::Hs512]), Err(KeyError::WeakSecret { .. })),
        ),
        (
            "empty_secret",
            matches!(secret(0, &[Alg::Hs256]), Err(KeyError::WeakSecret { .. })),
        ),
        (
            "secret_for_rs256",
            secret(64, &[Alg::Rs256]).err() == Some(KeyError::NotHmac),
        ),
        (
            "rsa_1024_bit_key",
            skipped(with(rsa.clone(), "n", json!(b64(&[0xc5; 128]))))
                == SkipReason::RsaTooSmall(1024),
        ),
        (
            "rsa_exponent_1",
            skipped(with(rsa.clone(), "e", json!("AQ"))) == SkipReason::RsaBadExponent,
        ),
        (
            "rsa_even_exponent",
            skipped(with(rsa.clone(), "e", json!("AQAA"))) == SkipReason::RsaBadExponent,
        ),
        (
            "oct_key_in_jwks",
            matches!(
                jwks(json!({"kty": "oct", "k": b64(&[7; 32]), "alg": "HS256"})),
                Err(KeyError::SymmetricKeyInJwks(None))
            ),
        ),
        (
            "private_rsa_key_in_jwks",
            matches!(
                jwks(with(rsa.clone(), "d", json!(b64(&[1; 256])))),
                Err(KeyError::PrivateKeyInJwks(_))
            ),
        ),
        (
            "private_ec_key_in_jwks",
            matches!(
                jwks(with(ec.clone(), "d", json!(b64(&[1; 32])))),
                Err(KeyError::PrivateKeyInJwks(_))
            ),
        ),
        (
            "ec_point_not_on_curve",
            skipped(with(ec.clone(), "y", json!(b64(&[1; 32])))) == SkipReason::InvalidKey,
        ),
        (
            "ec_p521_key",
            skipped(with(ec.clone(), "crv", json!("P-521"))) == SkipReason::UnsupportedCurve,
        ),
        (
            "key_for_encryption",
            skipped(with(ec.clone(), "use", json!("enc"))) == SkipReason::NotForSignatures,
        ),
        (
            "key_ops_without_verify",
            skipped(with(ec.clone(), "key_ops", json!(["encrypt"])))
                == SkipReason::NotForSignatures,
        ),
        (
            "jwk_alg_rs256_on_an_ec_key",
            skipped(with(ec.clone(), "alg", json!("RS256"))) == SkipReason::AlgMismatch,
        ),
        (
            "duplicate_kid",
            matches!(
                KeySet::from_jwks(
                    &serde_json::to_vec(
                        &json!({"keys": [ec.clone(), with(rsa.clone(), "kid", json!("e"))]})
                    )
                    .unwrap()
                ),
                Err(KeyError::DuplicateKid(_))
            ),
        ),
    ];
    let failed: Vec<_> = cases
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| *n)
        .collect();
    assert!(failed.is_empty(), "not refused as expected: {failed:?}");
    println!("key corpus: {} cases refused", cases.len());
}
