//! Object ownership: a value of the request must equal a claim of the caller.
//!
//! Broken object-level authorization (OWASP API1:2023) is a caller reaching records that
//! are not theirs by changing an id in the URL. An [`OwnerRule`] ties a path parameter,
//! query parameter or header to a claim (`/users/{user_id}` to `sub`). The comparison is
//! made on the value the upstream will act on, so that no spelling of another user's id
//! passes:
//!
//! * Path parameters come from the normalized path (dot segments resolved, encoded
//!   unreserved characters decoded) and are then percent-decoded once, as the upstream's
//!   router will. Decoding that is not UTF-8 refuses.
//! * Query parameters are split on `&` and `;` (some frameworks take either), and names
//!   and values are decoded (`+` is a space). The parameter must appear exactly once, with
//!   names compared after decoding and without ASCII case, so that `?user=me&USER=you` or
//!   `?user=me;user=you` cannot put a second value where a lenient upstream will read it.
//! * Headers must appear exactly once and be visible text.
//! * `case: insensitive` folds ASCII letters only: Unicode case folding would let the
//!   Kelvin sign `K` (U+212A) stand for `k`, and another user's id with it.
//! * Nothing else is folded: no Unicode normalization, no trimming, no leading-zero
//!   removal. A value that differs from the claim in any byte refuses.

use std::borrow::Cow;

use http::HeaderName;
use http::request::Parts;
use rampart_core::{ClaimValue, Identity, RequestContext};

/// Where a rule reads the request's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A parameter of the route's path template.
    Path(String),
    /// A query parameter.
    Query(String),
    /// A request header.
    Header(HeaderName),
}

/// How letter case is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Case {
    /// Byte for byte.
    #[default]
    Sensitive,
    /// ASCII letters without case; everything else byte for byte.
    AsciiInsensitive,
}

/// One ownership rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRule {
    /// The request value.
    pub source: Source,
    /// The claim (name or dotted path) it must equal.
    pub claim: String,
    /// How case is compared.
    pub case: Case,
}

/// Why an ownership rule refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerFailure {
    /// The request does not carry the value (or the route has no such parameter).
    Missing,
    /// The value appears more than once.
    Ambiguous,
    /// The value does not decode to text.
    Undecodable,
    /// The caller has no such claim, or it is of a kind that cannot match.
    NoClaim,
    /// The value is not the caller's.
    Mismatch,
}

impl OwnerFailure {
    /// The stable reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            OwnerFailure::Missing => "owner_missing",
            OwnerFailure::Ambiguous => "owner_ambiguous",
            OwnerFailure::Undecodable => "owner_undecodable",
            OwnerFailure::NoClaim => "owner_no_claim",
            OwnerFailure::Mismatch => "not_owner",
        }
    }
}

impl OwnerRule {
    /// A rule id for logs and metrics: `owner:path.user_id=sub`.
    pub fn id(&self) -> String {
        let (kind, name) = match &self.source {
            Source::Path(n) => ("path", n.as_str()),
            Source::Query(n) => ("query", n.as_str()),
            Source::Header(h) => ("header", h.as_str()),
        };
        format!("owner:{kind}.{name}={}", self.claim)
    }

    /// Checks the rule for a request.
    pub fn check(
        &self,
        ctx: &RequestContext,
        head: &Parts,
        identity: &Identity,
    ) -> Result<(), OwnerFailure> {
        let value = self.value(ctx, head)?;
        let claim = identity.claim(&self.claim).ok_or(OwnerFailure::NoClaim)?;
        if claim_matches(&claim, &value, self.case) {
            Ok(())
        } else if matches!(claim.as_ref(), ClaimValue::Bool(_) | ClaimValue::Map(_)) {
            Err(OwnerFailure::NoClaim)
        } else {
            Err(OwnerFailure::Mismatch)
        }
    }

    /// The request's value, decoded as the upstream will read it.
    fn value<'a>(
        &self,
        ctx: &'a RequestContext,
        head: &'a Parts,
    ) -> Result<Cow<'a, str>, OwnerFailure> {
        match &self.source {
            Source::Path(name) => {
                let raw = ctx.route_param(name).ok_or(OwnerFailure::Missing)?;
                percent_decode(raw, false).ok_or(OwnerFailure::Undecodable)
            }
            Source::Query(name) => {
                let query = head.uri.query().ok_or(OwnerFailure::Missing)?;
                query_value(query, name)
            }
            Source::Header(name) => {
                let mut values = head.headers.get_all(name).iter();
                let v = values.next().ok_or(OwnerFailure::Missing)?;
                if values.next().is_some() {
                    return Err(OwnerFailure::Ambiguous);
                }
                let text = v.to_str().map_err(|_| OwnerFailure::Undecodable)?;
                Ok(Cow::Borrowed(text))
            }
        }
    }
}

/// The single value of query parameter `name`: absent, present twice (under any spelling
/// of the name) or undecodable refuses.
pub fn query_value<'a>(query: &'a str, name: &str) -> Result<Cow<'a, str>, OwnerFailure> {
    let mut found = None;
    for pair in query.split(['&', ';']) {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(key) = percent_decode(k, true) else {
            // An undecodable name could be ours under a lenient decoder.
            return Err(OwnerFailure::Undecodable);
        };
        if !key.trim().eq_ignore_ascii_case(name) {
            continue;
        }
        if found.is_some() {
            return Err(OwnerFailure::Ambiguous);
        }
        found = Some(v);
    }
    let raw = found.ok_or(OwnerFailure::Missing)?;
    percent_decode(raw, true).ok_or(OwnerFailure::Undecodable)
}

/// Percent-decodes `s` once (and `+` as a space when `plus`), as UTF-8. `None` for a
/// malformed escape or bytes that are not UTF-8.
pub fn percent_decode(s: &str, plus: bool) -> Option<Cow<'_, str>> {
    if !(s.contains('%') || (plus && s.contains('+'))) {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
                let (hi, lo) = (hex(i + 1)?, hex(i + 2)?);
                out.push(u8::try_from(hi * 16 + lo).ok()?);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// True when the claim holds `value`: a string equal to it, an integer whose decimal text
/// is it, or an array with such an item.
fn claim_matches(claim: &ClaimValue, value: &str, case: Case) -> bool {
    let eq = |s: &str| match case {
        Case::Sensitive => s == value,
        Case::AsciiInsensitive => s.eq_ignore_ascii_case(value),
    };
    match claim {
        ClaimValue::String(s) => !s.is_empty() && eq(s),
        ClaimValue::Int(n) => eq(&n.to_string()),
        ClaimValue::List(items) => items
            .iter()
            .any(|i| !matches!(i, ClaimValue::List(_)) && claim_matches(i, value, case)),
        ClaimValue::Bool(_) | ClaimValue::Map(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%41b", false).as_deref(), Some("aAb"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%4", false), None);
        assert_eq!(percent_decode("%C1%A1", false), None);
        assert_eq!(percent_decode("jos%C3%A9", false).as_deref(), Some("josé"));
    }

    #[test]
    fn query_values() {
        assert_eq!(query_value("user=al%69ce", "user").as_deref(), Ok("alice"));
        assert_eq!(query_value("a=1&user=x", "user").as_deref(), Ok("x"));
        assert_eq!(query_value("a=1", "user"), Err(OwnerFailure::Missing));
        assert_eq!(
            query_value("user=a&user=b", "user"),
            Err(OwnerFailure::Ambiguous)
        );
        assert_eq!(
            query_value("user=a;user=b", "user"),
            Err(OwnerFailure::Ambiguous)
        );
        assert_eq!(
            query_value("user=a&USER=b", "user"),
            Err(OwnerFailure::Ambiguous)
        );
        assert_eq!(
            query_value("user=a&us%65r=b", "user"),
            Err(OwnerFailure::Ambiguous)
        );
        assert_eq!(query_value("user", "user").as_deref(), Ok(""));
    }

    #[test]
    fn claims() {
        let s = |v: &str| ClaimValue::String(v.into());
        assert!(claim_matches(&s("alice"), "alice", Case::Sensitive));
        assert!(!claim_matches(&s("alice"), "Alice", Case::Sensitive));
        assert!(claim_matches(&s("alice"), "ALICE", Case::AsciiInsensitive));
        assert!(!claim_matches(
            &s("kate"),
            "\u{212A}ate",
            Case::AsciiInsensitive
        ));
        assert!(!claim_matches(&s(""), "", Case::Sensitive));
        assert!(claim_matches(&ClaimValue::Int(42), "42", Case::Sensitive));
        assert!(!claim_matches(&ClaimValue::Int(42), "042", Case::Sensitive));
        let list = ClaimValue::List(vec![s("a"), ClaimValue::Int(7)]);
        assert!(claim_matches(&list, "7", Case::Sensitive));
        assert!(!claim_matches(&list, "b", Case::Sensitive));
        assert!(!claim_matches(
            &ClaimValue::Bool(true),
            "true",
            Case::Sensitive
        ));
    }
}
