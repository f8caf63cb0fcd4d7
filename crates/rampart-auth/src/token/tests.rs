use super::*;

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

fn token(header: &str, payload: &str) -> String {
    format!("{}.{}.{}", b64(header), b64(payload), b64("sig"))
}

fn opts() -> ParseOptions {
    ParseOptions::new(AlgSet::all())
}

fn reason(t: &str) -> &'static str {
    parse(t, &opts()).unwrap_err().reason()
}

#[test]
fn a_well_formed_token_parses() {
    let t = token(
        r#"{"alg":"RS256","kid":"k1","typ":"at+jwt"}"#,
        r#"{"sub":"a"}"#,
    );
    let p = parse(&t, &opts()).unwrap();
    assert_eq!(p.alg, Alg::Rs256);
    assert_eq!(p.claims["sub"], "a");
    assert_eq!(p.signature, b"sig");
    let dot2 = t.rfind('.').unwrap();
    assert_eq!(p.signing_input, &t.as_bytes()[..dot2]);
    let j = parse_jws(&t, &opts()).unwrap();
    assert_eq!(j.kid(), Some("k1"));
    assert_eq!(j.typ(), Some("at+jwt"));
}

#[test]
fn size_is_checked_first() {
    let mut o = opts();
    o.max_token_bytes = 10;
    let err = parse("!!!!!!!!!!!", &o).unwrap_err();
    assert_eq!(err, Rejection::TooLarge { limit: 10 });
}

#[test]
fn alg_rules() {
    for none in ["none", "None", "NONE", "nOnE"] {
        let t = token(&format!(r#"{{"alg":"{none}"}}"#), "{}");
        assert_eq!(reason(&t), "alg_none", "{none}");
    }
    assert_eq!(reason(&token("{}", "{}")), "malformed");
    assert_eq!(reason(&token(r#"{"alg":5}"#, "{}")), "malformed");
    assert_eq!(
        reason(&token(r#"{"alg":"rs256"}"#, "{}")),
        "alg_not_allowed"
    );
    let o = ParseOptions::new(AlgSet::of(&[Alg::Es256]));
    let t = token(r#"{"alg":"RS256"}"#, "{}");
    assert_eq!(parse(&t, &o).unwrap_err(), Rejection::AlgNotAllowed);
}

#[test]
fn header_parameters() {
    let cases = [
        (r#"{"alg":"RS256","crit":["exp"]}"#, "crit_unsupported"),
        (r#"{"alg":"RS256","crit":[]}"#, "crit_unsupported"),
        (r#"{"alg":"RS256","crit":"b64"}"#, "crit_unsupported"),
        (r#"{"alg":"RS256","b64":false}"#, "unsupported_header"),
        (r#"{"alg":"RS256","b64":"false"}"#, "malformed"),
        (r#"{"alg":"RS256","kid":7}"#, "malformed"),
        (r#"{"alg":"RS256","typ":["JWT"]}"#, "malformed"),
        (r#"{"alg":"RS256","cty":"JWT"}"#, "unsupported_header"),
        (
            r#"{"alg":"RS256","cty":"application/jwt"}"#,
            "unsupported_header",
        ),
    ];
    for (h, want) in cases {
        assert_eq!(reason(&token(h, "{}")), want, "{h}");
    }
    let long = format!(r#"{{"alg":"RS256","kid":"{}"}}"#, "k".repeat(257));
    assert_eq!(reason(&token(&long, "{}")), "malformed");
    let ok = format!(r#"{{"alg":"RS256","kid":"{}"}}"#, "k".repeat(256));
    assert!(parse(&token(&ok, "{}"), &opts()).is_ok());
    assert!(parse(&token(r#"{"alg":"RS256","b64":true}"#, "{}"), &opts()).is_ok());
}

#[test]
fn embedded_keys_are_ignored_or_refused() {
    let t = token(r#"{"alg":"RS256","jku":"https://evil.example/jwks"}"#, "{}");
    assert!(parse(&t, &opts()).is_ok());
    let mut o = opts();
    o.reject_embedded_keys = true;
    assert_eq!(
        parse(&t, &o).unwrap_err(),
        Rejection::UnsupportedHeader("jku")
    );
}

#[test]
fn encodings() {
    let good = token(r#"{"alg":"RS256"}"#, "{}");
    let (h, rest) = good.split_once('.').unwrap();
    for bad in [
        format!("{h}=.{rest}"),
        format!("{h} .{rest}"),
        format!("{h}\n.{rest}"),
        format!("+{h}.{rest}"),
        format!("{h}.{rest}="),
    ] {
        assert_eq!(reason(&bad), "bad_encoding", "{bad}");
    }
    // "e30" is "{}"; "e31" decodes to the same bytes with a non-zero unused bit.
    let t = format!("{h}.e31.{}", b64("sig"));
    assert_eq!(reason(&t), "bad_encoding");
}

#[test]
fn shapes() {
    let good = token(r#"{"alg":"RS256"}"#, "{}");
    assert_eq!(reason(&good[..good.rfind('.').unwrap()]), "malformed");
    assert_eq!(reason(&format!("{good}.x")), "malformed");
    assert_eq!(reason(""), "malformed");
    assert_eq!(reason(&token(r#"["alg","RS256"]"#, "{}")), "malformed");
    assert_eq!(
        reason(&token(r#"{"alg":"RS256"}"#, r#""a.b.c""#)),
        "malformed"
    );
    assert_eq!(reason(&token(r#"{"alg":"RS256"}"#, r#"[]"#)), "malformed");
    assert_eq!(
        reason(&token(r#"{"alg":"none","alg":"RS256"}"#, "{}")),
        "malformed"
    );
    assert_eq!(
        reason(&token(r#"{"alg":"RS256"}"#, r#"{"sub":"a","sub":"b"}"#)),
        "malformed"
    );
    // Wrong bytes in the payload do not matter to the JWS layer.
    assert!(parse_jws(&token(r#"{"alg":"RS256"}"#, "foo"), &opts()).is_ok());
}

#[test]
fn media_types() {
    assert!(media_type_eq("at+jwt", "AT+JWT"));
    assert!(media_type_eq("application/at+jwt", "at+jwt"));
    assert!(media_type_eq("Application/AT+JWT", "application/at+jwt"));
    assert!(!media_type_eq("jwt", "at+jwt"));
    assert!(!media_type_eq("application/", "jwt"));
}
