use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair as _,
};
use serde_json::json;

use super::*;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa() -> RsaKeyPair {
    RsaKeyPair::generate(KeySize::Rsa2048).unwrap()
}

fn rsa_jwk(pair: &RsaKeyPair, extra: Value) -> Value {
    let c = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
    let mut jwk = json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)});
    merge(&mut jwk, extra);
    jwk
}

fn ec_jwk(curve: &'static str, extra: Value) -> Value {
    let (alg, len) = match curve {
        "P-256" => (&ECDSA_P256_SHA256_FIXED_SIGNING, 32),
        _ => (&ECDSA_P384_SHA384_FIXED_SIGNING, 48),
    };
    let pair = EcdsaKeyPair::generate(alg).unwrap();
    let point = pair.public_key().as_ref();
    let mut jwk = json!({
        "kty": "EC", "crv": curve,
        "x": b64(&point[1..1 + len]), "y": b64(&point[1 + len..]),
    });
    merge(&mut jwk, extra);
    jwk
}

fn ed_jwk(extra: Value) -> Value {
    let pair = Ed25519KeyPair::generate().unwrap();
    let mut jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())});
    merge(&mut jwk, extra);
    jwk
}

fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, extra) {
        a.extend(b);
    }
}

fn jwks(keys: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

fn only_skip(keys: Vec<Value>) -> SkipReason {
    let set = KeySet::from_jwks(&jwks(keys)).unwrap();
    assert!(set.is_empty(), "{set:?}");
    assert_eq!(set.skipped().len(), 1);
    set.skipped()[0].reason
}

#[test]
fn public_keys_load_with_their_bindings() {
    let set = KeySet::from_jwks(&jwks(vec![
        rsa_jwk(&rsa(), json!({"kid": "r"})),
        rsa_jwk(&rsa(), json!({"kid": "r-ps", "alg": "PS256", "use": "sig"})),
        ec_jwk("P-256", json!({"kid": "e256", "key_ops": ["verify"]})),
        ec_jwk("P-384", json!({"kid": "e384", "alg": "ES384"})),
        ed_jwk(json!({"kid": "ed", "alg": "Ed25519"})),
    ]))
    .unwrap();
    assert_eq!(set.len(), 5, "{:?}", set.skipped());
    let by = |kid: &str| set.keys().iter().find(|k| k.kid() == Some(kid)).unwrap();
    assert_eq!(by("r").algorithms(), AlgSet::family(Family::Rsa));
    assert_eq!(by("r").kind(), KeyKind::Rsa { bits: 2048 });
    assert_eq!(by("r-ps").algorithms(), AlgSet::of(&[Alg::Ps256]));
    assert_eq!(by("e256").algorithms(), AlgSet::of(&[Alg::Es256]));
    assert_eq!(by("e384").algorithms(), AlgSet::of(&[Alg::Es384]));
    assert_eq!(
        by("ed").algorithms(),
        AlgSet::of(&[Alg::EdDsa, Alg::Ed25519])
    );
    for key in set.keys() {
        assert!(!key.allows(Alg::Hs256), "a public key never verifies HMAC");
    }
}

#[test]
fn secrets_and_private_parts_refuse_the_whole_set() {
    let oct = json!({"kty": "oct", "kid": "s", "k": b64(&[7; 32])});
    assert_eq!(
        KeySet::from_jwks(&jwks(vec![ec_jwk("P-256", json!({})), oct])).unwrap_err(),
        KeyError::SymmetricKeyInJwks(Some("s".into()))
    );
    let private = ec_jwk("P-256", json!({"kid": "p", "d": b64(&[1; 32])}));
    assert_eq!(
        KeySet::from_jwks(&jwks(vec![private])).unwrap_err(),
        KeyError::PrivateKeyInJwks(Some("p".into()))
    );
    let dup = vec![
        ec_jwk("P-256", json!({"kid": "same"})),
        ed_jwk(json!({"kid": "same"})),
    ];
    assert_eq!(
        KeySet::from_jwks(&jwks(dup)).unwrap_err(),
        KeyError::DuplicateKid("same".into())
    );
    let many = (0..=MAX_JWKS_KEYS).map(|_| json!({"kty": "x"})).collect();
    assert_eq!(
        KeySet::from_jwks(&jwks(many)).unwrap_err(),
        KeyError::TooManyKeys(MAX_JWKS_KEYS)
    );
    assert!(matches!(
        KeySet::from_jwks(br#"{"keys":{}}"#),
        Err(KeyError::NotAJwks(_))
    ));
    assert!(matches!(
        KeySet::from_jwks(br#"{"keys":[],"keys":[]}"#),
        Err(KeyError::NotAJwks(_))
    ));
}

#[test]
fn unusable_keys_are_skipped_with_a_reason() {
    let cases = [
        (
            ec_jwk("P-256", json!({"use": "enc"})),
            SkipReason::NotForSignatures,
        ),
        (
            ec_jwk("P-256", json!({"key_ops": ["encrypt"]})),
            SkipReason::NotForSignatures,
        ),
        (
            ec_jwk("P-256", json!({"alg": "ES384"})),
            SkipReason::AlgMismatch,
        ),
        (
            ec_jwk("P-256", json!({"alg": "ES512"})),
            SkipReason::UnsupportedAlg,
        ),
        (
            ec_jwk("P-256", json!({"crv": "P-521"})),
            SkipReason::UnsupportedCurve,
        ),
        (
            ec_jwk("P-256", json!({"crv": "P-384"})),
            SkipReason::Malformed("coordinate length"),
        ),
        (
            rsa_jwk(&rsa(), json!({"alg": "ES256"})),
            SkipReason::AlgMismatch,
        ),
        (
            rsa_jwk(&rsa(), json!({"e": "AQ"})),
            SkipReason::RsaBadExponent,
        ),
        (
            rsa_jwk(&rsa(), json!({"e": "AQAA"})),
            SkipReason::RsaBadExponent,
        ),
        (
            rsa_jwk(&rsa(), json!({"n": b64(&[0xc5; 128])})),
            SkipReason::RsaTooSmall(1024),
        ),
        (
            rsa_jwk(&rsa(), json!({"n": "a+b/"})),
            SkipReason::Malformed("n"),
        ),
        (ed_jwk(json!({"alg": "ES256"})), SkipReason::AlgMismatch),
        (
            ed_jwk(json!({"crv": "Ed448"})),
            SkipReason::UnsupportedCurve,
        ),
        (
            json!({"kty": "OKP", "crv": "X25519", "x": b64(&[9; 32])}),
            SkipReason::UnsupportedCurve,
        ),
        (json!({"kty": "EC2"}), SkipReason::UnsupportedKeyType),
        (json!({"n": "AQAB"}), SkipReason::Malformed("kty")),
        (
            json!("not an object"),
            SkipReason::Malformed("not a JSON object"),
        ),
    ];
    for (jwk, want) in cases {
        assert_eq!(only_skip(vec![jwk.clone()]), want, "{jwk}");
    }
    // A point off the curve: flip a bit of y.
    let mut jwk = ec_jwk("P-256", json!({}));
    let mut y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
    y[31] ^= 1;
    jwk["y"] = json!(b64(&y));
    assert_eq!(only_skip(vec![jwk]), SkipReason::InvalidKey);
}

#[test]
fn secrets_need_the_hash_length() {
    let s = KeySet::with_secret(Some("h"), &[1; 32], &[Alg::Hs256]).unwrap();
    assert_eq!(s.keys()[0].algorithms(), AlgSet::of(&[Alg::Hs256]));
    assert_eq!(s.keys()[0].kind(), KeyKind::Secret);
    assert_eq!(
        KeySet::with_secret(None, &[1; 31], &[Alg::Hs256]).unwrap_err(),
        KeyError::WeakSecret {
            alg: Alg::Hs256,
            min: 32,
            got: 31
        }
    );
    assert_eq!(
        KeySet::with_secret(None, &[1; 48], &[Alg::Hs256, Alg::Hs512]).unwrap_err(),
        KeyError::WeakSecret {
            alg: Alg::Hs512,
            min: 64,
            got: 48
        }
    );
    assert!(matches!(
        KeySet::with_secret(None, &[], &[Alg::Hs256]),
        Err(KeyError::WeakSecret { .. })
    ));
    assert_eq!(
        KeySet::with_secret(None, &[1; 64], &[Alg::Rs256]).unwrap_err(),
        KeyError::NotHmac
    );
    assert_eq!(
        KeySet::with_secret(None, &[1; 64], &[]).unwrap_err(),
        KeyError::NotHmac
    );
    assert_eq!(
        KeySet::with_secret(Some(""), &[1; 64], &[Alg::Hs256]).unwrap_err(),
        KeyError::BadKid
    );
    let mut s = KeySet::with_secret(Some("a"), &[1; 32], &[Alg::Hs256]).unwrap();
    assert_eq!(
        s.add_secret(Some("a"), &[2; 32], &[Alg::Hs256])
            .unwrap_err(),
        KeyError::DuplicateKid("a".into())
    );
}

#[test]
fn lookup_by_kid_and_without() {
    let mut set = KeySet::from_jwks(&jwks(vec![
        ec_jwk("P-256", json!({"kid": "e1"})),
        ec_jwk("P-256", json!({"kid": "e2"})),
        rsa_jwk(&rsa(), json!({"kid": "r1"})),
    ]))
    .unwrap();
    fn kids(c: Candidates<'_>) -> Vec<String> {
        c.iter()
            .map(|k| k.kid().unwrap_or("-").to_owned())
            .collect()
    }

    assert_eq!(
        kids(set.candidates(Some("e2"), Alg::Es256).unwrap()),
        ["e2"]
    );
    assert_eq!(
        set.candidates(Some("e2"), Alg::Rs256).unwrap_err(),
        Rejection::KeyAlgMismatch
    );
    assert_eq!(
        set.candidates(Some("e2"), Alg::Hs256).unwrap_err(),
        Rejection::KeyAlgMismatch
    );
    assert_eq!(
        set.candidates(Some("nope"), Alg::Es256).unwrap_err(),
        Rejection::UnknownKid
    );
    assert_eq!(
        kids(set.candidates(None, Alg::Es256).unwrap()),
        ["e1", "e2"]
    );
    assert_eq!(kids(set.candidates(None, Alg::Ps384).unwrap()), ["r1"]);
    assert_eq!(
        set.candidates(None, Alg::Hs256).unwrap_err(),
        Rejection::KeyAlgMismatch
    );
    assert_eq!(
        KeySet::new().candidates(None, Alg::Hs256).unwrap_err(),
        Rejection::UnknownKid
    );

    // A key without kid stands in for unknown kids, for its algorithms only.
    let pem = KeySet::from_jwks(&jwks(vec![ed_jwk(json!({}))])).unwrap();
    set.extend(pem).unwrap();
    assert_eq!(
        kids(set.candidates(Some("nope"), Alg::EdDsa).unwrap()),
        ["-"]
    );
    assert_eq!(
        set.candidates(Some("nope"), Alg::Es256).unwrap_err(),
        Rejection::UnknownKid
    );

    // No kid: at most MAX_CANDIDATES keys are tried.
    let many: Vec<_> = (0..6)
        .map(|i| ec_jwk("P-256", json!({"kid": format!("k{i}")})))
        .collect();
    let set = KeySet::from_jwks(&jwks(many)).unwrap();
    assert_eq!(
        kids(set.candidates(None, Alg::Es256).unwrap()),
        ["k0", "k1", "k2", "k3"]
    );
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

#[test]
fn pem_public_keys() {
    let pair = rsa();
    let spki = pair.public_key().as_der().unwrap();
    let set = KeySet::from_pem(Some("r"), &pem("PUBLIC KEY", spki.as_ref()), None).unwrap();
    assert_eq!(set.keys()[0].kind(), KeyKind::Rsa { bits: 2048 });
    let pkcs1 = pem("RSA PUBLIC KEY", pair.public_key().as_ref());
    let set = KeySet::from_pem(None, &pkcs1, Some(Alg::Ps512)).unwrap();
    assert_eq!(set.keys()[0].algorithms(), AlgSet::of(&[Alg::Ps512]));

    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let der = [SPKI_P256, ec.public_key().as_ref()].concat();
    let set = KeySet::from_pem(None, &pem("PUBLIC KEY", &der), None).unwrap();
    assert_eq!(set.keys()[0].kind(), KeyKind::P256);
    assert_eq!(
        KeySet::from_pem(None, &pem("PUBLIC KEY", &der), Some(Alg::Es384)).unwrap_err(),
        KeyError::Unusable(SkipReason::AlgMismatch)
    );

    let ec = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
    let der = [SPKI_P384, ec.public_key().as_ref()].concat();
    let set = KeySet::from_pem(None, &pem("PUBLIC KEY", &der), None).unwrap();
    assert_eq!(set.keys()[0].kind(), KeyKind::P384);

    let ed = Ed25519KeyPair::generate().unwrap();
    let der = [SPKI_ED25519, ed.public_key().as_ref()].concat();
    let set = KeySet::from_pem(None, &pem("PUBLIC KEY", &der), None).unwrap();
    assert_eq!(set.keys()[0].kind(), KeyKind::Ed25519);

    assert!(matches!(
        KeySet::from_pem(None, &pem("PRIVATE KEY", &der), None),
        Err(KeyError::Pem(_))
    ));
    assert!(matches!(
        KeySet::from_pem(None, "-----BEGIN PUBLIC KEY-----\nAAAA\n", None),
        Err(KeyError::Pem(_))
    ));
    assert!(matches!(
        KeySet::from_pem(None, &pem("PUBLIC KEY", b"garbage"), None),
        Err(KeyError::Pem(_))
    ));
    let two = format!("{}{}", pem("PUBLIC KEY", &der), pem("PUBLIC KEY", &der));
    assert!(matches!(
        KeySet::from_pem(None, &two, None),
        Err(KeyError::Pem(_))
    ));
}

#[test]
fn roca_fingerprint() {
    let pair = rsa();
    let c = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
    assert!(!has_roca_fingerprint(&c.n));
    // 65537^k mod every prime passes; 0 never does.
    assert!(has_roca_fingerprint(&[1]));
    assert!(!has_roca_fingerprint(&[0]));
}

#[test]
fn helpers() {
    assert_eq!(bit_length(&[]), 0);
    assert_eq!(bit_length(&[1]), 1);
    assert_eq!(bit_length(&[0x80, 0]), 16);
    assert_eq!(strip_leading_zeros(&[0, 0, 1, 0]), [1, 0]);
    assert_eq!(strip_leading_zeros(&[0, 0]), [] as [u8; 0]);
}
