//! Token verification per algorithm: the full [`Verifier::verify`] (pre-parse, key lookup,
//! signature, claims) of a typical access token, plus the pre-parse alone and the token
//! hash. Run: `cargo bench -p rampart-auth --bench verify` (add `-- --quick` for a short
//! run).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use common::*;
use criterion::{Criterion, criterion_group, criterion_main};
use rampart_auth::{Alg, AlgSet, ClaimsPolicy, ParseOptions, Verifier, token, token_hash};
use serde_json::json;

fn verify(c: &mut Criterion) {
    let keys = test_key_set();
    let policy = ClaimsPolicy::new(ISSUER)
        .unwrap()
        .with_audiences([AUDIENCE])
        .unwrap();
    let verifier = Verifier::new(AlgSet::all(), policy).unwrap();
    let cases = [
        (Alg::Rs256, "rsa-1", rsa_key()),
        (Alg::Ps256, "rsa-1", rsa_key()),
        (Alg::Es256, "ec-1", p256_key()),
        (Alg::Es384, "ec384-1", p384_key()),
        (Alg::EdDsa, "ed-1", ed25519_key()),
        (Alg::Hs256, "hs-1", hmac_key()),
    ];
    let mut group = c.benchmark_group("verify");
    for (alg, kid, key) in cases {
        let header = json!({"alg": alg.name(), "kid": kid, "typ": "at+jwt"});
        let token = mint(&header, &claims(), key, alg);
        verifier.verify(&token, &keys, NOW).unwrap();
        group.bench_function(alg.name(), |b| {
            b.iter(|| verifier.verify(black_box(&token), &keys, NOW).unwrap())
        });
    }
    group.finish();

    let token = mint(
        &json!({"alg": "ES256", "kid": "ec-1"}),
        &claims(),
        p256_key(),
        Alg::Es256,
    );
    let options = ParseOptions::new(AlgSet::all());
    c.bench_function("pre_parse", |b| {
        b.iter(|| token::parse(black_box(&token), &options).unwrap())
    });
    let none = format!(
        "{}.{}.",
        b64_json(&json!({"alg": "none"})),
        b64_json(&claims())
    );
    c.bench_function("reject_alg_none", |b| {
        b.iter(|| verifier.verify(black_box(&none), &keys, NOW).unwrap_err())
    });
    c.bench_function("token_hash", |b| b.iter(|| token_hash(black_box(&token))));
}

criterion_group!(benches, verify);
criterion_main!(benches);
