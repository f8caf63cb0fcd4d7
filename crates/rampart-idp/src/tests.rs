//! The mock identity provider exercised over real loopback sockets; signatures are checked
//! with aws-lc-rs against the published JWKS, independently of the code that signed them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
    UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{IdpConfig, KeyAlg, MockIdp, SigningKey};

/// Bound on one whole exchange, so a broken server fails the test instead of hanging it.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `request` over `io` as HTTP/1.1 (with `Host: host`) and collects the response.
async fn exchange<IO>(io: IO, host: &str, mut request: Request<Full<Bytes>>) -> Response<Bytes>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    request
        .headers_mut()
        .insert(http::header::HOST, host.parse().unwrap());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("HTTP/1.1 handshake");
    let conn = tokio::spawn(conn);
    let response = sender.send_request(request).await.expect("response head");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    conn.abort();
    Response::from_parts(parts, body)
}

/// Sends `request` to `addr` over a fresh plain connection.
async fn http1_request(addr: SocketAddr, request: Request<Full<Bytes>>) -> Response<Bytes> {
    let send = async {
        let stream = TcpStream::connect(addr).await.expect("connect");
        exchange(stream, &addr.to_string(), request).await
    };
    tokio::time::timeout(TIMEOUT, send)
        .await
        .expect("timely answer")
}

async fn http1_get(addr: SocketAddr, path: &str) -> Response<Bytes> {
    let request = Request::get(path).body(Full::new(Bytes::new())).unwrap();
    http1_request(addr, request).await
}

/// A self-signed certificate for `127.0.0.1`: the server config that presents it and a
/// client config that trusts only it.
fn loopback_tls() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

fn json_body(response: &Response<Bytes>) -> Value {
    serde_json::from_slice(response.body()).expect("JSON body")
}

/// POSTs `params` as a form to `path`, with HTTP Basic credentials if given.
async fn post_form(
    idp: &MockIdp,
    path: &str,
    params: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> Response<Bytes> {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let mut builder =
        Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    if let Some((id, secret)) = basic {
        builder = builder.header(
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
        );
    }
    let request = builder.body(Full::new(Bytes::from(body))).expect("request");
    http1_request(idp.addr, request).await
}

async fn fetch_token(idp: &MockIdp, params: &[(&str, &str)]) -> String {
    let response = post_form(idp, "/token", params, None).await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
    json_body(&response)["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

async fn introspect(idp: &MockIdp, token: &str) -> Value {
    let response = post_form(
        idp,
        "/introspect",
        &[("token", token)],
        Some((idp.client_id(), idp.client_secret())),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    json_body(&response)
}

fn b64_json(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

/// The token's header and claims.
fn decode(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS");
    (b64_json(parts[0]), b64_json(parts[1]))
}

/// Whether `token`'s signature verifies under the public key `jwk`.
fn verifies_with(jwk: &Value, token: &str) -> bool {
    let (input, signature) = token.rsplit_once('.').expect("signature part");
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .expect("signature base64url");
    let member = |name: &str| {
        URL_SAFE_NO_PAD
            .decode(jwk[name].as_str().expect("JWK member"))
            .expect("JWK base64url")
    };
    let input = input.as_bytes();
    match jwk["kty"].as_str().expect("kty") {
        "RSA" => RsaPublicKeyComponents {
            n: member("n"),
            e: member("e"),
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, input, &signature)
        .is_ok(),
        "EC" => {
            let mut point = vec![4u8];
            point.extend(member("x"));
            point.extend(member("y"));
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(input, &signature)
                .is_ok()
        }
        "OKP" => UnparsedPublicKey::new(&ED25519, member("x"))
            .verify(input, &signature)
            .is_ok(),
        other => panic!("unexpected kty {other}"),
    }
}

/// The JWK with `kid` in the provider's served JWKS.
async fn served_jwk(idp: &MockIdp, kid: &str) -> Option<Value> {
    let jwks = json_body(&http1_get(idp.addr, "/jwks").await);
    jwks["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .find(|k| k["kid"] == kid)
        .cloned()
}

async fn discovery_jwks_token_roundtrip(alg: KeyAlg, kty: &str) {
    let idp = MockIdp::start_alg(alg).await;

    let response = http1_get(idp.addr, "/.well-known/openid-configuration").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let discovery = json_body(&response);
    let issuer = format!("http://{}", idp.addr);
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert_eq!(idp.issuer(), issuer);
    assert_eq!(discovery["jwks_uri"], format!("{issuer}/jwks"));
    assert_eq!(discovery["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(
        discovery["introspection_endpoint"],
        format!("{issuer}/introspect")
    );

    let response = http1_get(idp.addr, "/jwks").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");
    let jwks = json_body(&response);
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], kty);
    assert_eq!(keys[0]["alg"], alg.name());
    assert_eq!(keys[0]["use"], "sig");
    assert!(keys[0].get("d").is_none(), "no private part published");

    let response = post_form(
        &idp,
        "/token",
        &[("sub", "alice"), ("scope", "orders:read orders:write")],
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = json_body(&response);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().expect("access_token");

    let (header, claims) = decode(token);
    assert_eq!(header["alg"], alg.name());
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], keys[0]["kid"]);
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "rampart");
    assert_eq!(claims["scope"], "orders:read orders:write");
    assert_eq!(claims["client_id"], "rampart");
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 3600);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));

    assert!(
        verifies_with(&keys[0], token),
        "signature verifies with the JWK"
    );
    let mut tampered = token.to_owned();
    tampered.insert(token.find('.').unwrap() + 1, 'A');
    assert!(!verifies_with(&keys[0], &tampered));

    assert_eq!(idp.discovery_fetches(), 1);
    assert_eq!(idp.jwks_fetches(), 1);
    assert_eq!(idp.token_requests(), 1);
}

#[tokio::test]
async fn rs256_discovery_jwks_token_verifies() {
    discovery_jwks_token_roundtrip(KeyAlg::Rs256, "RSA").await;
}

#[tokio::test]
async fn es256_discovery_jwks_token_verifies() {
    discovery_jwks_token_roundtrip(KeyAlg::Es256, "EC").await;
}

#[tokio::test]
async fn eddsa_discovery_jwks_token_verifies() {
    discovery_jwks_token_roundtrip(KeyAlg::EdDsa, "OKP").await;
}

#[tokio::test]
async fn token_form_options() {
    let idp = MockIdp::start_alg(KeyAlg::Es256).await;
    let extra = SigningKey::generate(KeyAlg::EdDsa);
    idp.add_key(extra.clone());
    let token = fetch_token(
        &idp,
        &[
            ("sub", "bob"),
            ("aud", "orders"),
            ("ttl", "60"),
            ("kid", extra.kid()),
        ],
    )
    .await;
    let (header, claims) = decode(&token);
    assert_eq!(header["kid"], extra.kid());
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(claims["aud"], "orders");
    assert!(claims.get("scope").is_none(), "no scope asked, none given");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        60
    );
    let jwk = served_jwk(&idp, extra.kid())
        .await
        .expect("extra key published");
    assert!(verifies_with(&jwk, &token));
}

#[tokio::test]
async fn token_endpoint_rejects_bad_requests() {
    let idp = MockIdp::start_alg(KeyAlg::Es256).await;
    for params in [
        &[("scope", "a")][..],
        &[("sub", "")],
        &[("sub", "a"), ("ttl", "soon")],
        &[("sub", "a"), ("ttl", "0")],
        &[("sub", "a"), ("kid", "nope")],
        &[("sub", "a"), ("sub", "b")],
    ] {
        let response = post_form(&idp, "/token", params, None).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{params:?}");
        assert_eq!(json_body(&response)["error"], "invalid_request");
    }

    let request = Request::post("/token")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"sub\":\"a\"}")))
        .unwrap();
    let response = http1_request(idp.addr, request).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let request = Request::post("/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(vec![b'a'; 100_000])))
        .unwrap();
    let response = http1_request(idp.addr, request).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let response = http1_get(idp.addr, "/token").await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    let response = http1_get(idp.addr, "/nowhere").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn rotation_changes_kid() {
    let idp = MockIdp::start_alg(KeyAlg::Es256).await;
    let first = idp.current_key();
    let token_before = idp.token("alice", "");

    let second = idp.rotate(true);
    assert_ne!(second.kid(), first.kid());
    assert_eq!(idp.published_kids(), vec![first.kid(), second.kid()]);
    let token_after = fetch_token(&idp, &[("sub", "alice")]).await;
    assert_eq!(decode(&token_after).0["kid"], second.kid());
    let jwk = served_jwk(&idp, second.kid())
        .await
        .expect("new key served");
    assert!(verifies_with(&jwk, &token_after));
    let old = served_jwk(&idp, first.kid()).await.expect("old key kept");
    assert!(verifies_with(&old, &token_before));

    let third = idp.rotate(false);
    assert_eq!(idp.published_kids(), vec![third.kid()]);
    assert!(served_jwk(&idp, first.kid()).await.is_none());
    assert!(idp.remove_key(third.kid()));
    assert!(idp.published_kids().is_empty());
}

#[tokio::test]
async fn rs256_rotation_changes_kid() {
    let idp = MockIdp::start().await;
    let first = idp.current_key().kid().to_owned();
    let second = idp.rotate(false);
    assert_ne!(second.kid(), first);
    let token = idp.token("alice", "a");
    assert_eq!(decode(&token).0["kid"], second.kid());
    let jwk = served_jwk(&idp, second.kid()).await.expect("served");
    assert!(verifies_with(&jwk, &token));
}

#[tokio::test]
async fn unpublished_key_and_custom_header() {
    let idp = MockIdp::start_alg(KeyAlg::EdDsa).await;
    let rogue = SigningKey::generate_with_kid(KeyAlg::EdDsa, "rogue");
    let header = json!({ "alg": "EdDSA", "kid": idp.current_key().kid(), "typ": "JWT" });
    let token = idp.mint_with(&header, &idp.claims("mallory", "admin"), &rogue);
    let (got_header, claims) = decode(&token);
    assert_eq!(got_header, header, "header used exactly as given");
    assert_eq!(claims["sub"], "mallory");
    let published = served_jwk(&idp, idp.current_key().kid()).await.unwrap();
    assert!(!verifies_with(&published, &token));
    assert!(verifies_with(&rogue.public_jwk(), &token));
    assert!(served_jwk(&idp, "rogue").await.is_none());
}

#[tokio::test]
async fn down_answers_503_everywhere_until_up() {
    let idp = MockIdp::start_alg(KeyAlg::Es256).await;
    idp.set_down(true);
    for path in ["/.well-known/openid-configuration", "/jwks", "/nowhere"] {
        let response = http1_get(idp.addr, path).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(response.headers()["retry-after"], "1");
    }
    let response = post_form(&idp, "/token", &[("sub", "a")], None).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(idp.jwks_fetches(), 1, "attempts are counted while down");

    idp.set_down(false);
    let response = http1_get(idp.addr, "/jwks").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn delay_holds_answers_back() {
    let idp = MockIdp::start_alg(KeyAlg::Es256).await;
    idp.set_delay(Duration::from_millis(300));
    let started = Instant::now();
    let response = http1_get(idp.addr, "/jwks").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    idp.set_delay(Duration::ZERO);
}

#[tokio::test]
async fn introspection_answers_for_minted_and_registered_tokens() {
    let idp = MockIdp::start_alg(KeyAlg::Es256).await;
    let creds = Some((idp.client_id(), idp.client_secret()));

    let response = post_form(&idp, "/introspect", &[("token", "x")], None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Basic realm=\"mock-idp\""
    );
    assert_eq!(json_body(&response)["error"], "invalid_client");
    let wrong = Some((idp.client_id(), "wrong"));
    let response = post_form(&idp, "/introspect", &[("token", "x")], wrong).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = post_form(&idp, "/introspect", &[], creds).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["cache-control"], "no-store");

    let token = fetch_token(&idp, &[("sub", "alice"), ("scope", "read")]).await;
    let answer = introspect(&idp, &token).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["sub"], "alice");
    assert_eq!(answer["scope"], "read");
    assert_eq!(answer["iss"], idp.issuer());
    let minted = idp.token("carol", "");
    assert_eq!(introspect(&idp, &minted).await["sub"], "carol");
    idp.revoke(&minted);
    assert_eq!(introspect(&idp, &minted).await, json!({ "active": false }));

    assert_eq!(
        introspect(&idp, "never-issued").await,
        json!({ "active": false })
    );

    idp.register_opaque("opaque-1", json!({ "sub": "dave", "scope": "write" }), true);
    let answer = introspect(&idp, "opaque-1").await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["sub"], "dave");
    idp.register_opaque("opaque-2", json!({ "sub": "erin" }), false);
    assert_eq!(
        introspect(&idp, "opaque-2").await,
        json!({ "active": false })
    );
    idp.register_opaque("opaque-3", json!({ "sub": "frank", "exp": 1 }), true);
    assert_eq!(
        introspect(&idp, "opaque-3").await,
        json!({ "active": false })
    );

    assert_eq!(idp.introspections(), 10);
}

#[tokio::test]
async fn overrides_and_max_age() {
    let idp = MockIdp::start_alg(KeyAlg::Es256).await;
    idp.set_jwks_max_age(7);
    idp.set_jwks_override(Some(b"{\"keys\": 1}".to_vec()));
    let response = http1_get(idp.addr, "/jwks").await;
    assert_eq!(response.headers()["cache-control"], "public, max-age=7");
    assert_eq!(&response.body()[..], b"{\"keys\": 1}");
    idp.set_jwks_override(None);
    assert_eq!(json_body(&http1_get(idp.addr, "/jwks").await), idp.jwks());

    let mut document = idp.discovery_document();
    document["issuer"] = json!("https://elsewhere.example");
    idp.set_discovery_override(Some(document));
    let response = http1_get(idp.addr, "/.well-known/openid-configuration").await;
    assert_eq!(json_body(&response)["issuer"], "https://elsewhere.example");
}

#[tokio::test]
async fn serves_over_tls() {
    let (server, client) = loopback_tls();
    let idp = MockIdp::start_tls(IdpConfig::default(), server).await;
    assert_eq!(idp.issuer(), format!("https://{}", idp.addr));
    let get = async {
        let tcp = TcpStream::connect(idp.addr).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        let request = Request::get("/.well-known/openid-configuration")
            .body(Full::new(Bytes::new()))
            .unwrap();
        exchange(tls, &idp.addr.to_string(), request).await
    };
    let response = tokio::time::timeout(TIMEOUT, get).await.expect("timely");
    let discovery: Value = serde_json::from_slice(response.body()).expect("JSON");
    assert_eq!(discovery["jwks_uri"], format!("https://{}/jwks", idp.addr));
}

#[tokio::test]
async fn jtis_are_unique_within_and_across_providers() {
    let (a, b) = (
        MockIdp::start_alg(KeyAlg::EdDsa).await,
        MockIdp::start_alg(KeyAlg::EdDsa).await,
    );
    let jti = |token: &str| decode(token).1["jti"].as_str().unwrap().to_owned();
    let first = jti(&fetch_token(&a, &[("sub", "alice")]).await);
    let second = jti(&a.token("alice", ""));
    let other = jti(&b.token("alice", ""));
    assert_ne!(first, second);
    assert_ne!(first, other);
    assert_ne!(second, other);
}

#[tokio::test]
async fn bind_reports_a_taken_port_instead_of_panicking() {
    let first = MockIdp::start_alg(KeyAlg::EdDsa).await;
    let config = IdpConfig {
        bind: first.addr,
        alg: KeyAlg::EdDsa,
        ..IdpConfig::default()
    };
    let error = MockIdp::bind(config, None).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
}
