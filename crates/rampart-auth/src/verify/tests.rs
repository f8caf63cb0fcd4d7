use super::*;

#[test]
fn token_hash_is_sha256() {
    let h = token_hash("abc");
    assert_eq!(
        short_hex(&h),
        "ba7816bf8f01cfea",
        "SHA-256(\"abc\") starts ba7816bf8f01cfea"
    );
}

#[test]
fn an_empty_allow_list_is_refused() {
    let policy = ClaimsPolicy::new("https://idp.example").unwrap();
    assert_eq!(
        Verifier::new(AlgSet::empty(), policy).unwrap_err(),
        PolicyError::NoAlgorithms
    );
}
