//! Request hygiene: framing and size checks that run before routing and every defense.
//!
//! hyper already refuses malformed heads (bad syntax, differing `Content-Length`s, a head
//! larger than its buffer). These checks add what a gateway must refuse although HTTP/1.1
//! parsers may accept it, because an upstream may frame the request differently and
//! smuggle a second request in the body: `Content-Length` with `Transfer-Encoding`, any
//! `Transfer-Encoding` other than a single `chunked`, and repeated `Content-Length`.
//! Every framing violation closes the connection: after it, the byte stream cannot be
//! trusted to be where we think it is.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, StatusCode, Version};

/// A request refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// The status to answer with.
    pub status: StatusCode,
    /// The reason code for logs and metrics.
    pub reason: &'static str,
}

/// Header limits.
#[derive(Debug, Clone, Copy)]
pub struct HeaderLimits {
    /// Most header fields.
    pub max_count: usize,
    /// Most bytes of the request line and header fields together.
    pub max_bytes: usize,
}

/// Checks the header count and size limits.
pub fn check_limits(
    request_line_len: usize,
    headers: &HeaderMap,
    limits: HeaderLimits,
) -> Result<(), Violation> {
    if headers.len() > limits.max_count {
        return Err(Violation {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            reason: "too_many_headers",
        });
    }
    let mut bytes = request_line_len;
    for (name, value) in headers {
        // name + ": " + value + CRLF, as on the wire.
        bytes += name.as_str().len() + value.len() + 4;
    }
    if bytes > limits.max_bytes {
        return Err(Violation {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            reason: "headers_too_large",
        });
    }
    Ok(())
}

/// Checks HTTP/1 framing on the headers as hyper passed them on. hyper drops a
/// `Content-Length` that came with `Transfer-Encoding`, so this cannot see that case;
/// [`crate::framing`] checks the raw bytes, and this is the fallback when it could not.
pub fn check_framing(version: Version, headers: &HeaderMap) -> Result<(), Violation> {
    let te: Vec<&[u8]> = headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let cl: Vec<&[u8]> = headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    framing(version == Version::HTTP_10, &te, &cl).map_err(|reason| Violation {
        status: StatusCode::BAD_REQUEST,
        reason,
    })
}

/// The framing rules on raw field values: at most one `Content-Length`, made of digits;
/// `Transfer-Encoding` only as a single `chunked`, never with `Content-Length`, never in
/// HTTP/1.0. `Err` carries the reason code.
pub fn framing(http10: bool, te: &[&[u8]], cl: &[&[u8]]) -> Result<(), &'static str> {
    if !te.is_empty() {
        if !cl.is_empty() {
            return Err("content_length_and_transfer_encoding");
        }
        let single_chunked = matches!(te, [v] if v.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        if !single_chunked || http10 {
            return Err("bad_transfer_encoding");
        }
    }
    if cl.len() > 1 || cl.iter().any(|v| !is_decimal(v.trim_ascii())) {
        return Err("bad_content_length");
    }
    Ok(())
}

fn is_decimal(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const LIMITS: HeaderLimits = HeaderLimits {
        max_count: 10,
        max_bytes: 200,
    };

    fn run(pairs: &[(&'static str, &'static str)]) -> Result<(), &'static str> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        check_limits(20, &h, LIMITS)
            .and_then(|()| check_framing(Version::HTTP_11, &h))
            .map_err(|v| v.reason)
    }

    #[test]
    fn framing_attacks_are_refused() {
        assert_eq!(run(&[("transfer-encoding", "chunked")]), Ok(()));
        assert_eq!(run(&[("transfer-encoding", "Chunked ")]), Ok(()));
        assert_eq!(run(&[("content-length", "5")]), Ok(()));
        assert_eq!(
            run(&[("content-length", "5"), ("transfer-encoding", "chunked")]),
            Err("content_length_and_transfer_encoding")
        );
        for te in [
            "xchunked",
            "chunked, identity",
            "gzip, chunked",
            "chunked\u{b}",
        ] {
            let v: &'static str = Box::leak(te.to_string().into_boxed_str());
            if HeaderValue::from_str(v).is_ok() {
                assert_eq!(
                    run(&[("transfer-encoding", v)]),
                    Err("bad_transfer_encoding"),
                    "{te}"
                );
            }
        }
        assert_eq!(
            run(&[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked")
            ]),
            Err("bad_transfer_encoding")
        );
        assert_eq!(
            run(&[("content-length", "5"), ("content-length", "6")]),
            Err("bad_content_length")
        );
        assert_eq!(run(&[("content-length", "+5")]), Err("bad_content_length"));
    }

    #[test]
    fn header_limits_give_431() {
        let many: Vec<(&'static str, &'static str)> = (0..11).map(|_| ("x-a", "1")).collect();
        assert_eq!(run(&many), Err("too_many_headers"));
        let long: &'static str = Box::leak("v".repeat(200).into_boxed_str());
        assert_eq!(run(&[("x-long", long)]), Err("headers_too_large"));
    }

    #[test]
    fn http10_may_not_use_chunked() {
        let mut h = HeaderMap::new();
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        assert!(check_framing(Version::HTTP_10, &h).is_err());
    }
}
