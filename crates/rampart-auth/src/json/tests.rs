use super::*;

#[test]
fn objects_parse() {
    let m =
        parse_object(br#"{ "a" : 1, "b": [true, null, "x", 1.5, -2], "c": {"d": {}} }"#).unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(m["b"][3], 1.5);
}

#[test]
fn duplicates_are_refused_at_any_depth() {
    assert_eq!(
        parse_object(br#"{"alg":"none","alg":"RS256"}"#),
        Err(JsonError::DuplicateMember)
    );
    assert_eq!(
        parse_object(br#"{"a":{"b":1,"b":2}}"#),
        Err(JsonError::DuplicateMember)
    );
    assert_eq!(
        parse_object(br#"{"a":[{"b":1,"b":1}]}"#),
        Err(JsonError::DuplicateMember)
    );
    // Escapes that spell the same name are the same name.
    assert_eq!(
        parse_object(br#"{"alg":"x","\u0061lg":"y"}"#),
        Err(JsonError::DuplicateMember)
    );
}

#[test]
fn non_objects_and_garbage_are_refused() {
    assert_eq!(parse_object(b"[]"), Err(JsonError::NotAnObject));
    assert_eq!(parse_object(br#""eyJ""#), Err(JsonError::NotAnObject));
    assert_eq!(parse_object(b"{} x"), Err(JsonError::Syntax));
    assert_eq!(parse_object(b"\xef\xbb\xbf{}"), Err(JsonError::Syntax));
    assert_eq!(parse_object(b"{\"a\":\"\xff\"}"), Err(JsonError::Syntax));
    assert_eq!(parse_object(b""), Err(JsonError::Syntax));
    assert_eq!(parse_object(b"{\"a\":1e400}"), Err(JsonError::Syntax));
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert_eq!(
        parse_object(format!("{{\"a\":{deep}}}").as_bytes()),
        Err(JsonError::Syntax)
    );
}
