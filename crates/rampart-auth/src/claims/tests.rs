use serde_json::json;

use super::*;

const NOW: u64 = 1_700_000_000;
const ISS: &str = "https://idp.example";

fn policy() -> ClaimsPolicy {
    ClaimsPolicy::new(ISS)
        .unwrap()
        .with_audiences(["api"])
        .unwrap()
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn good() -> Map<String, Value> {
    obj(json!({
        "iss": ISS, "sub": "alice", "aud": "api",
        "exp": NOW + 600, "iat": NOW - 10, "nbf": NOW - 10,
        "scope": "read  write", "roles": ["admin"], "client_id": "app", "jti": "j1",
    }))
}

fn with(changes: Value) -> Map<String, Value> {
    let mut c = good();
    for (k, v) in obj(changes) {
        if v.is_null() {
            c.remove(&k);
        } else {
            c.insert(k, v);
        }
    }
    c
}

fn check(p: &ClaimsPolicy, claims: &Map<String, Value>) -> Result<TokenIdentity, Rejection> {
    p.check(&Map::new(), claims, NOW)
}

fn reason(p: &ClaimsPolicy, claims: Map<String, Value>) -> &'static str {
    check(p, &claims).unwrap_err().reason()
}

#[test]
fn a_good_token_gives_its_identity() {
    let id = check(&policy(), &good()).unwrap();
    assert_eq!(
        id,
        TokenIdentity {
            issuer: ISS.into(),
            subject: "alice".into(),
            scopes: vec!["read".into(), "write".into()],
            roles: vec!["admin".into()],
            groups: vec![],
            claims: Arc::new(claim_values(&good())),
            client_id: Some("app".into()),
            jti: Some("j1".into()),
            expires_at: Some(NOW + 600),
            issued_at: Some(NOW - 10),
        }
    );
}

#[test]
fn times_with_leeway() {
    let p = policy();
    let at = |exp: i64| reason(&p, with(json!({"exp": exp})));
    assert_eq!(at(NOW as i64 - 61), "expired");
    assert_eq!(at(NOW as i64 - 60), "expired");
    assert!(check(&p, &with(json!({"exp": NOW - 59}))).is_ok());
    assert!(check(&p, &with(json!({"exp": (NOW - 59) as f64 + 0.5}))).is_ok());
    assert_eq!(reason(&p, with(json!({"nbf": NOW + 61}))), "not_yet_valid");
    assert!(check(&p, &with(json!({"nbf": NOW + 60}))).is_ok());
    assert_eq!(reason(&p, with(json!({"iat": NOW + 61}))), "iat_in_future");
    assert!(check(&p, &with(json!({"iat": NOW + 60}))).is_ok());
    assert_eq!(reason(&p, with(json!({"exp": null}))), "missing_claim");
    assert!(check(&p.clone().require_exp(false), &with(json!({"exp": null}))).is_ok());
    let strict = policy().with_leeway(Duration::ZERO).unwrap();
    assert_eq!(reason(&strict, with(json!({"exp": NOW}))), "expired");
    assert!(check(&strict, &with(json!({"exp": NOW + 1}))).is_ok());
}

#[test]
fn numeric_dates_must_be_numbers_in_range() {
    let p = policy();
    for bad in [
        json!("1700000600"),
        json!(true),
        json!([NOW + 600]),
        json!({"t": NOW}),
        json!(-1),
        json!(MAX_NUMERIC_DATE + 1),
        json!(1e300),
    ] {
        for claim in ["exp", "nbf", "iat"] {
            let c = with(json!({ claim: bad.clone() }));
            assert_eq!(reason(&p, c), "bad_claim_type", "{claim}: {bad}");
        }
    }
    let c = with(json!({"exp": Value::Null}));
    assert_eq!(reason(&p, c), "missing_claim");
}

#[test]
fn issuer_is_exact() {
    let p = policy();
    for iss in [
        "https://idp.example/",
        "https://idp.example.evil",
        "HTTPS://IDP.EXAMPLE",
        "https://idp.exampl",
        "",
    ] {
        assert_eq!(
            reason(&p, with(json!({ "iss": iss }))),
            "bad_issuer",
            "{iss}"
        );
    }
    assert_eq!(reason(&p, with(json!({"iss": [ISS]}))), "bad_claim_type");
    assert_eq!(reason(&p, with(json!({"iss": null}))), "missing_claim");
}

#[test]
fn audiences() {
    let p = policy();
    assert!(check(&p, &with(json!({"aud": ["other", "api"]}))).is_ok());
    assert_eq!(reason(&p, with(json!({"aud": "API"}))), "bad_audience");
    assert_eq!(reason(&p, with(json!({"aud": ["other"]}))), "bad_audience");
    assert_eq!(reason(&p, with(json!({"aud": []}))), "bad_audience");
    assert_eq!(
        reason(&p, with(json!({"aud": ["api", 1]}))),
        "bad_claim_type"
    );
    assert_eq!(
        reason(&p, with(json!({"aud": {"api": true}}))),
        "bad_claim_type"
    );
    assert_eq!(reason(&p, with(json!({"aud": null}))), "missing_claim");
    let none = ClaimsPolicy::new(ISS).unwrap();
    assert_eq!(reason(&none, good()), "bad_audience", "RFC 7519 4.1.3");
    assert!(check(&none, &with(json!({"aud": null}))).is_ok());
}

#[test]
fn typ() {
    let p = policy().with_typ("at+jwt").unwrap();
    let hdr = |typ: Value| obj(json!({ "typ": typ }));
    for ok in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        assert!(p.check(&hdr(json!(ok)), &good(), NOW).is_ok(), "{ok}");
    }
    for bad in [json!("JWT"), json!("at+jwt "), json!(null)] {
        assert_eq!(
            p.check(&hdr(bad), &good(), NOW).unwrap_err(),
            Rejection::BadTyp
        );
    }
    assert_eq!(
        p.check(&Map::new(), &good(), NOW).unwrap_err(),
        Rejection::BadTyp
    );
}

#[test]
fn subject_and_required_claims() {
    let p = policy();
    assert_eq!(reason(&p, with(json!({"sub": 42}))), "bad_claim_type");
    assert_eq!(reason(&p, with(json!({"sub": ""}))), "bad_claim_type");
    assert_eq!(reason(&p, with(json!({"sub": null}))), "missing_claim");
    let p = policy().with_required_claims(["tenant"]).unwrap();
    assert_eq!(
        check(&p, &good()).unwrap_err(),
        Rejection::MissingClaim("tenant".into())
    );
    assert_eq!(
        reason(&p, with(json!({"tenant": Value::Null}))),
        "missing_claim"
    );
    let mut c = good();
    c.insert("tenant".into(), Value::Null);
    assert_eq!(reason(&p, c), "missing_claim");
    assert!(check(&p, &with(json!({"tenant": "t1"}))).is_ok());
}

#[test]
fn scopes_roles_and_client() {
    let p = policy();
    let id = check(&p, &with(json!({"scope": null, "scp": ["a", "b"]}))).unwrap();
    assert_eq!(id.scopes, ["a", "b"]);
    let id = check(&p, &with(json!({"scope": null, "scp": "a b"}))).unwrap();
    assert_eq!(id.scopes, ["a", "b"]);
    assert_eq!(reason(&p, with(json!({"scope": ["a"]}))), "bad_claim_type");
    assert_eq!(
        reason(&p, with(json!({"scope": null, "scp": [1]}))),
        "bad_claim_type"
    );
    assert_eq!(
        reason(&p, with(json!({"roles": "admin"}))),
        "bad_claim_type"
    );
    assert_eq!(
        reason(&p, with(json!({"roles": ["a", null]}))),
        "bad_claim_type"
    );
    let id = check(&p, &with(json!({"client_id": null, "azp": "spa"}))).unwrap();
    assert_eq!(id.client_id.as_deref(), Some("spa"));
    assert_eq!(reason(&p, with(json!({"client_id": 7}))), "bad_claim_type");
    assert_eq!(reason(&p, with(json!({"jti": 7}))), "bad_claim_type");

    let kc = policy().with_roles_claim("realm_access.roles").unwrap();
    let id = check(&kc, &with(json!({"realm_access": {"roles": ["r1", "r2"]}}))).unwrap();
    assert_eq!(id.roles, ["r1", "r2"]);
    assert_eq!(check(&kc, &good()).unwrap().roles, Vec::<String>::new());
    assert_eq!(
        reason(&kc, with(json!({"realm_access": {"roles": "r1"}}))),
        "bad_claim_type"
    );
    assert!(policy().with_roles_claim("a..b").is_err());
}

#[test]
fn construction_limits() {
    assert_eq!(ClaimsPolicy::new("").unwrap_err(), PolicyError::EmptyIssuer);
    assert_eq!(
        policy().with_leeway(Duration::from_secs(301)).unwrap_err(),
        PolicyError::LeewayTooLong
    );
    assert_eq!(policy().with_leeway(MAX_LEEWAY).unwrap().leeway_secs(), 300);
    assert_eq!(policy().leeway_secs(), 60);
    assert!(policy().with_audiences([""]).is_err());
    assert!(policy().with_typ("").is_err());
    assert!(policy().with_required_claims([""]).is_err());
}

#[test]
fn claims_as_strings() {
    let c = obj(json!({"s": "x", "n": 5, "b": true, "a": ["x", 1], "o": {}, "z": null}));
    assert_eq!(claim_as_string(&c, "s").as_deref(), Some("x"));
    assert_eq!(claim_as_string(&c, "n").as_deref(), Some("5"));
    assert_eq!(claim_as_string(&c, "b").as_deref(), Some("true"));
    assert_eq!(claim_as_string(&c, "a").as_deref(), Some("x,1"));
    assert_eq!(claim_as_string(&c, "o"), None);
    assert_eq!(claim_as_string(&c, "z"), None);
    assert_eq!(claim_as_string(&c, "missing"), None);
}

#[test]
fn groups_come_from_their_claim_and_every_claim_is_kept_for_policies() {
    let id = check(
        &policy(),
        &with(json!({"groups": ["eng", "oncall"], "tenant": "acme", "level": 3})),
    )
    .unwrap();
    assert_eq!(id.groups, vec!["eng".to_string(), "oncall".to_string()]);
    assert_eq!(
        id.claims.get("tenant"),
        Some(&ClaimValue::String("acme".into()))
    );
    assert_eq!(id.claims.get("level"), Some(&ClaimValue::Int(3)));

    let nested = policy().with_groups_claim("org.teams").unwrap();
    let id = check(&nested, &with(json!({"org": {"teams": ["red"]}}))).unwrap();
    assert_eq!(id.groups, vec!["red".to_string()]);
    assert_eq!(
        check(&nested, &with(json!({"org": {"teams": "red"}}))).unwrap_err(),
        Rejection::BadClaimType("org.teams".into())
    );
    assert!(policy().with_groups_claim("").is_err());
}

#[test]
fn claim_values_leave_out_what_policies_cannot_hold() {
    let values = claim_values(&obj(json!({
        "n": null, "f": 1.5, "big": u64::MAX, "i": -4, "b": true,
        "list": [1, null, "x", 2.5], "map": {"k": "v", "z": null}
    })));
    let keys: Vec<&str> = values.keys().map(String::as_str).collect();
    assert_eq!(keys, ["b", "i", "list", "map"]);
    assert_eq!(
        values.get("list"),
        Some(&ClaimValue::List(vec![
            ClaimValue::Int(1),
            ClaimValue::String("x".into())
        ]))
    );
    let ClaimValue::Map(m) = values.get("map").unwrap() else {
        unreachable!()
    };
    assert_eq!(m.len(), 1);
}
