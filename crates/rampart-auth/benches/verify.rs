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

/// Wall time fixed at the test tokens' `NOW`.
struct FixedClock;

impl rampart_core::Clock for FixedClock {
    fn now(&self) -> std::time::Instant {
        std::time::Instant::now()
    }
    fn wall(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW)
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// The whole `request_head` of the bearer-token defense: finding the token, the cache (hit,
/// or no cache at all), verification, identity and forwarded claims. A fresh request head
/// and context per iteration, built outside the measurement.
fn defense(c: &mut Criterion) {
    use std::sync::Arc;
    use std::time::Duration;

    use rampart_auth::{
        AuthSettings, Authenticate, Provider, ProviderKeys, TokenCache, TokenFrom, Verification,
    };
    use rampart_core::http_reexport::{HeaderName, Request};
    use rampart_core::{ClientInfo, Defense, RequestContext, Verdict};

    let policy = ClaimsPolicy::new(ISSUER)
        .unwrap()
        .with_audiences([AUDIENCE])
        .unwrap();
    let verifier = Verifier::new(AlgSet::all(), policy).unwrap();
    let provider = Arc::new(Provider::new(
        "corp",
        ISSUER,
        Verification::Jwt {
            verifier,
            keys: ProviderKeys::Static(Arc::new(test_key_set())),
        },
        TokenFrom::Bearer,
        vec![("sub".into(), HeaderName::from_static("x-user-id"))],
    ));
    let token = mint(
        &json!({"alg": "RS256", "kid": "rsa-1", "typ": "at+jwt"}),
        &claims(),
        rsa_key(),
        Alg::Rs256,
    );
    let authorization = format!("Bearer {token}");
    let make = |capacity: u64| {
        Authenticate::new(AuthSettings {
            providers: vec![provider.clone()],
            scopes: Vec::new(),
            optional: false,
            realm: "rampart".into(),
            cache: Arc::new(TokenCache::new(capacity, Duration::from_secs(300))),
            revocations: None,
            api_keys: None,
            clock: Arc::new(FixedClock),
        })
    };
    let request = || {
        let head = Request::get("/orders/1")
            .header("authorization", authorization.as_str())
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let ctx = RequestContext::new(
            "r".into(),
            ClientInfo {
                ip,
                peer: std::net::SocketAddr::new(ip, 1),
                tls: None,
            },
        );
        (ctx, head)
    };
    let mut group = c.benchmark_group("request_head");
    for (name, capacity) in [("cached_rs256", 1_000), ("uncached_rs256", 0)] {
        let auth = make(capacity);
        let (mut ctx, mut head) = request();
        let first = block_on(auth.request_head(&mut ctx, &mut head)).unwrap();
        assert!(matches!(first, Verdict::Continue), "{first:?}");
        group.bench_function(name, |b| {
            b.iter_batched(
                request,
                |(mut ctx, mut head)| block_on(auth.request_head(&mut ctx, &mut head)).unwrap(),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, verify, defense);
criterion_main!(benches);
