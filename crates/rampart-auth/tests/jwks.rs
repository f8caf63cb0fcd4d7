//! `rampart_auth::jwks` against the mock identity provider over real loopback sockets:
//! discovery, rotation, the unknown-`kid` flood, the provider down and back, and the refusals
//! (issuer mismatch, cleartext to a remote host, oversized or slow answers, untrusted TLS).

// Test helpers outside `#[test]` functions fail by panicking too.
#![allow(clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_auth::jwks::{FetchError, JwksError, JwksOptions, KeySource, KeyStore, Lookup};
use rampart_test_support::idp::{IdpConfig, KeyAlg, MockIdp};
use rampart_test_support::pki::TestPki;

/// Short settings so each test runs in well under a few seconds. ES256 keys: RSA key
/// generation would dominate the run time and tests nothing more here.
fn options(cooldown_ms: u64, refresh_ms: u64) -> JwksOptions {
    JwksOptions {
        timeout: Duration::from_secs(2),
        refresh_interval: Duration::from_millis(refresh_ms),
        refetch_cooldown: Duration::from_millis(cooldown_ms),
        ..JwksOptions::default()
    }
}

/// Cooldown 200 ms, no background refresh within a test.
fn quick() -> JwksOptions {
    options(200, 3_600_000)
}

async fn idp() -> MockIdp {
    MockIdp::start_alg(KeyAlg::Es256).await
}

async fn started(source: KeySource, options: JwksOptions) -> KeyStore {
    let (store, error) = KeyStore::start("test", source, options)
        .await
        .expect("valid configuration");
    assert_eq!(error, None, "first fetch");
    store
}

async fn start_error(source: KeySource, options: JwksOptions) -> (KeyStore, FetchError) {
    let (store, error) = KeyStore::start("test", source, options)
        .await
        .expect("valid configuration");
    (store, error.expect("the first fetch fails"))
}

fn found(lookup: &Lookup) -> bool {
    matches!(lookup, Lookup::Found(_))
}

/// Polls `condition` every 20 ms for up to 3 s.
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

#[tokio::test]
async fn url_source_fetches_the_keys() {
    let idp = idp().await;
    let store = started(KeySource::Url(idp.jwks_url()), quick()).await;
    let kid = idp.current_key().kid().to_owned();
    assert!(found(&store.key_for(&kid).await));
    assert_eq!(idp.jwks_fetches(), 1, "a known kid costs no fetch");
    assert_eq!(idp.discovery_fetches(), 0);
    let stats = store.stats();
    assert_eq!(
        (stats.fetches_ok, stats.fetches_failed, stats.keys),
        (1, 0, 1)
    );
    assert!(stats.last_success.is_some());
    assert_eq!(stats.last_error, None);
}

#[tokio::test]
async fn discovery_finds_the_jwks_uri() {
    let idp = idp().await;
    let store = started(KeySource::Discovery(idp.issuer().to_owned()), quick()).await;
    assert!(found(&store.key_for(idp.current_key().kid()).await));
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (1, 1));

    // A trailing slash on the issuer is dropped before appending the well-known path, and
    // the issuer is then compared exactly: the document says no slash, so it is refused.
    let (_, error) = start_error(KeySource::Discovery(format!("{}/", idp.issuer())), quick()).await;
    assert!(
        matches!(error, FetchError::IssuerMismatch { .. }),
        "{error:?}"
    );
    assert_eq!(idp.discovery_fetches(), 2);
}

#[tokio::test]
async fn first_lookup_waits_for_the_first_fetch() {
    let idp = idp().await;
    idp.set_delay(Duration::from_millis(200));
    let store = KeyStore::new("test", KeySource::Url(idp.jwks_url()), quick()).expect("store");
    assert!(found(&store.key_for(idp.current_key().kid()).await));
    assert_eq!(idp.jwks_fetches(), 1, "the lookup joined the first fetch");
}

#[tokio::test]
async fn rotated_key_is_found_on_first_use_with_one_fetch() {
    let idp = idp().await;
    let store = started(KeySource::Discovery(idp.issuer().to_owned()), quick()).await;
    tokio::time::sleep(Duration::from_millis(250)).await; // past the cooldown

    let new = idp.rotate(false);
    assert!(found(&store.key_for(new.kid()).await));
    assert_eq!(idp.jwks_fetches(), 2, "exactly one refetch");
    assert_eq!(
        idp.discovery_fetches(),
        1,
        "the discovered jwks_uri is reused"
    );
    assert!(found(&store.key_for(new.kid()).await));
    assert_eq!(idp.jwks_fetches(), 2);
    assert_eq!(
        store.stats().keys,
        1,
        "the old key is gone with the rotation"
    );
}

#[tokio::test]
async fn a_flood_of_random_kids_costs_at_most_one_fetch_per_cooldown() {
    const COOLDOWN_MS: u64 = 600;
    let idp = idp().await;
    let store = Arc::new(
        started(
            KeySource::Url(idp.jwks_url()),
            options(COOLDOWN_MS, 3_600_000),
        )
        .await,
    );
    assert_eq!(idp.jwks_fetches(), 1);
    // Slow answers make the 200 lookups overlap the fetch they share.
    idp.set_delay(Duration::from_millis(100));

    let flood = |round: u32| {
        let store = store.clone();
        async move {
            let mut lookups = tokio::task::JoinSet::new();
            for i in 0..200 {
                let store = store.clone();
                lookups.spawn(async move { store.key_for(&format!("random-{round}-{i}")).await });
            }
            let mut unknown = 0;
            while let Some(lookup) = lookups.join_next().await {
                if matches!(lookup.expect("lookup task"), Lookup::Unknown) {
                    unknown += 1;
                }
            }
            unknown
        }
    };

    // Right after the first fetch: the first unknown kids are worth one fetch (the first
    // fetch is not an unknown-kid fetch, so it starts no cooldown: a key rotated in just
    // after it is found at once), shared by all 200.
    assert_eq!(flood(0).await, 200);
    assert_eq!(
        idp.jwks_fetches(),
        2,
        "one shared fetch for 200 unknown kids"
    );
    assert_eq!(flood(1).await, 200);
    assert_eq!(idp.jwks_fetches(), 2, "none within the cooldown");

    tokio::time::sleep(Duration::from_millis(COOLDOWN_MS + 50)).await;
    assert_eq!(flood(2).await, 200);
    assert_eq!(idp.jwks_fetches(), 3, "one again after the cooldown");
    assert_eq!(flood(3).await, 200);
    assert_eq!(idp.jwks_fetches(), 3, "none within the cooldown");
    assert!(store.stats().refetches_suppressed >= 200);
    assert_eq!(store.stats().keys, 1, "the good key survived the flood");
}

#[tokio::test]
async fn provider_down_keeps_the_last_good_keys() {
    let idp = idp().await;
    // Refresh every 150 ms; failures retried after the 100 ms cooldown.
    let store = started(KeySource::Url(idp.jwks_url()), options(100, 150)).await;
    let kid = idp.current_key().kid().to_owned();

    idp.set_down(true);
    assert!(
        eventually(|| store.stats().fetches_failed >= 2).await,
        "background refreshes fail while down"
    );
    let stats = store.stats();
    assert_eq!(
        stats.last_error,
        Some(FetchError::Status {
            url: idp.jwks_url(),
            status: 503
        })
    );
    assert_eq!(stats.keys, 1);
    assert!(found(&store.key_for(&kid).await), "last good keys serve");
    let error = store.refresh().await.expect_err("down");
    assert!(matches!(error, FetchError::Status { status: 503, .. }));
    assert!(found(&store.key_for(&kid).await));

    // Back up, with a rotated key: the background refresh installs it.
    idp.set_down(false);
    let new = idp.rotate(true);
    assert!(eventually(|| store.current().len() == 2).await, "recovered");
    assert!(found(&store.key_for(new.kid()).await));
    assert_eq!(store.stats().last_error, None);
}

#[tokio::test]
async fn starting_while_down_fails_closed_then_recovers() {
    let idp = idp().await;
    idp.set_down(true);
    let (store, error) = start_error(KeySource::Url(idp.jwks_url()), options(100, 150)).await;
    assert!(matches!(error, FetchError::Status { status: 503, .. }));
    let kid = idp.current_key().kid().to_owned();
    assert_eq!(store.stats().keys, 0);
    assert!(
        !found(&store.key_for(&kid).await),
        "no keys: every kid is unknown"
    );

    idp.set_down(false);
    assert!(eventually(|| store.stats().keys == 1).await, "recovered");
    assert!(found(&store.key_for(&kid).await));
    assert!(store.stats().fetches_failed >= 1);
}

#[tokio::test]
async fn issuer_mismatch_in_discovery_is_refused() {
    let idp = idp().await;
    let mut document = idp.discovery_document();
    document["issuer"] = serde_json::json!("https://evil.example");
    idp.set_discovery_override(Some(document));
    let (store, error) = start_error(KeySource::Discovery(idp.issuer().to_owned()), quick()).await;
    assert_eq!(
        error,
        FetchError::IssuerMismatch {
            expected: idp.issuer().to_owned(),
            found: "https://evil.example".to_owned(),
        }
    );
    assert_eq!(
        idp.jwks_fetches(),
        0,
        "the JWKS of a mismatched issuer is not fetched"
    );
    assert_eq!(store.stats().keys, 0);
}

#[tokio::test]
async fn plain_http_to_a_remote_host_is_refused() {
    for source in [
        KeySource::Url("http://idp.example/jwks".to_owned()),
        KeySource::Discovery("http://idp.example".to_owned()),
        KeySource::Url("http://10.1.2.3/jwks".to_owned()),
    ] {
        let error = KeyStore::new("test", source.clone(), quick()).expect_err("refused");
        assert!(
            matches!(error, JwksError::InsecureUrl { .. }),
            "{source:?}: {error:?}"
        );
    }
    let error = KeyStore::new(
        "test",
        KeySource::Url("ftp://idp.example/jwks".into()),
        quick(),
    )
    .expect_err("refused");
    assert!(matches!(error, JwksError::InvalidUrl { .. }));

    // A discovery document pointing at cleartext elsewhere: refused before any request to it.
    let idp = idp().await;
    let mut document = idp.discovery_document();
    document["jwks_uri"] = serde_json::json!("http://idp.example/jwks");
    idp.set_discovery_override(Some(document));
    let (_, error) = start_error(KeySource::Discovery(idp.issuer().to_owned()), quick()).await;
    assert!(
        matches!(
            error,
            FetchError::InvalidJwksUri(JwksError::InsecureUrl { .. })
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn oversized_jwks_is_refused() {
    let idp = idp().await;
    let kid = idp.current_key().kid().to_owned();
    let mut huge = b"{\"keys\":[],\"padding\":\"".to_vec();
    huge.resize(600 * 1024, b'x');
    huge.extend_from_slice(b"\"}");
    idp.set_jwks_override(Some(huge));
    let (store, error) = start_error(KeySource::Url(idp.jwks_url()), quick()).await;
    assert_eq!(
        error,
        FetchError::TooLarge {
            url: idp.jwks_url(),
            limit: 512 * 1024
        }
    );
    assert_eq!(store.stats().keys, 0);

    // A smaller limit applies to a normal key set too.
    idp.set_jwks_override(None);
    let small = JwksOptions {
        max_bytes: 64,
        ..quick()
    };
    let (_, error) = start_error(KeySource::Url(idp.jwks_url()), small).await;
    assert!(matches!(error, FetchError::TooLarge { limit: 64, .. }));

    // And a good store is not spoiled by an oversized answer later.
    let store = started(KeySource::Url(idp.jwks_url()), quick()).await;
    idp.set_jwks_override(Some(vec![b' '; 600 * 1024]));
    assert!(matches!(
        store.refresh().await,
        Err(FetchError::TooLarge { .. })
    ));
    assert!(found(&store.key_for(&kid).await));
}

#[tokio::test]
async fn malformed_jwks_and_bad_status_keep_the_keys() {
    let idp = idp().await;
    let kid = idp.current_key().kid().to_owned();
    let store = started(KeySource::Url(idp.jwks_url()), quick()).await;
    idp.set_jwks_override(Some(b"not json".to_vec()));
    assert!(matches!(
        store.refresh().await,
        Err(FetchError::InvalidJwks { .. })
    ));
    assert!(found(&store.key_for(&kid).await));

    let (_, error) =
        start_error(KeySource::Url(format!("{}/nowhere", idp.issuer())), quick()).await;
    assert!(matches!(error, FetchError::Status { status: 404, .. }));
}

#[tokio::test]
async fn a_slow_provider_is_bounded_by_the_timeout() {
    let idp = idp().await;
    idp.set_delay(Duration::from_secs(3));
    let timeout = Duration::from_millis(300);
    let options = JwksOptions { timeout, ..quick() };
    let started_at = Instant::now();
    let (store, error) = start_error(KeySource::Url(idp.jwks_url()), options).await;
    let elapsed = started_at.elapsed();
    assert_eq!(
        error,
        FetchError::Timeout {
            url: idp.jwks_url(),
            timeout
        }
    );
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "bounded: {elapsed:?}");
    assert_eq!(store.stats().keys, 0);
}

#[tokio::test]
async fn https_with_the_test_pki_ca() {
    let pki = TestPki::new();
    let idp = MockIdp::start_tls(
        IdpConfig {
            alg: KeyAlg::Es256,
            ..IdpConfig::default()
        },
        pki.server_tls_config(false, &[]),
    )
    .await;
    assert!(idp.issuer().starts_with("https://127.0.0.1:"));

    let trusted = JwksOptions {
        extra_ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        ..quick()
    };
    let store = started(KeySource::Discovery(idp.issuer().to_owned()), trusted).await;
    assert!(found(&store.key_for(idp.current_key().kid()).await));

    // Without the CA the certificate is not trusted.
    let (_, error) = start_error(KeySource::Discovery(idp.issuer().to_owned()), quick()).await;
    let FetchError::Request { error, .. } = error else {
        panic!("expected a TLS failure, got {error:?}");
    };
    assert!(error.contains("UnknownIssuer"), "{error}");

    let error = KeyStore::new(
        "test",
        KeySource::Url(idp.jwks_url()),
        JwksOptions {
            extra_ca_pem: Some(b"no PEM here".to_vec()),
            ..quick()
        },
    )
    .expect_err("bad CA");
    assert!(matches!(error, JwksError::InvalidCa(_)));
}

#[tokio::test]
async fn inline_keys_never_fetch() {
    let idp = idp().await;
    let jwks = idp.jwks().to_string().into_bytes();
    let store = KeyStore::new("test", KeySource::Inline(jwks), quick()).expect("store");
    assert!(found(&store.key_for(idp.current_key().kid()).await));
    assert!(!found(&store.key_for("other").await));
    assert_eq!(store.refresh().await, Ok(1));
    assert_eq!(idp.jwks_fetches(), 0);

    let error =
        KeyStore::new("test", KeySource::Inline(b"{}".to_vec()), quick()).expect_err("not a JWKS");
    assert!(matches!(error, JwksError::InvalidJwks(_)));
}

#[tokio::test]
async fn refresh_follows_a_shorter_max_age_and_stops_on_drop() {
    let idp = idp().await;
    idp.set_jwks_max_age(0); // clamped up to the 100 ms cooldown
    let store = started(KeySource::Url(idp.jwks_url()), options(100, 3_600_000)).await;
    assert!(
        eventually(|| idp.jwks_fetches() >= 3).await,
        "refreshed at the cooldown"
    );

    drop(store);
    tokio::time::sleep(Duration::from_millis(150)).await; // a fetch in flight ends
    let after_drop = idp.jwks_fetches();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        idp.jwks_fetches(),
        after_drop,
        "no refresh after the store is dropped"
    );
}
