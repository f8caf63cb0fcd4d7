//! Path normalization before routing, so `/api/../admin` or `/%61dmin` cannot reach a
//! route that the plain path would not.
//!
//! Steps, in order: percent-encoded unreserved characters (RFC 3986 section 2.3) are
//! decoded, since they are equivalent to the plain ones; repeated slashes are merged;
//! dot segments are removed (section 5.2.4), including encoded ones (`%2e%2e`). Encoded
//! slashes and backslashes (`%2F`, `%5C`) stay encoded: they are data inside a segment.
//! The normalized path is what routes see and what is sent upstream.

use std::borrow::Cow;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The path is not origin-form (`/...`).
    NotAbsolute,
    /// A `%` not followed by two hex digits, or an encoded NUL.
    BadEscape,
}

/// Normalizes a request path (without the query).
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if !needs_work(path) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            "" if i != last => {}
            "" => trailing_slash = true,
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for s in &out {
        result.push('/');
        result.push_str(s);
    }
    if trailing_slash || result.is_empty() {
        result.push('/');
    }
    Ok(Cow::Owned(result))
}

fn needs_work(path: &str) -> bool {
    path.contains('%') || path.contains("//") || path.contains("/.")
}

fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16));
            let lo = bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadEscape);
            };
            let v = (hi * 16 + lo) as u8;
            if v == 0 {
                return Err(PathError::BadEscape);
            }
            if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
                out.push(v as char);
            } else {
                // Keep the escape, in uppercase (RFC 3986 section 6.2.2.1).
                out.push('%');
                out.push_str(&format!("{v:02X}"));
            }
            i += 3;
        } else {
            out.push(b as char);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize(p)
            .map(|c| c.into_owned())
            .unwrap_or_else(|e| format!("{e:?}"))
    }

    #[test]
    fn plain_paths_are_untouched() {
        assert!(matches!(normalize("/api/v1/users"), Ok(Cow::Borrowed(_))));
        assert_eq!(n("/"), "/");
        assert_eq!(n("/a/"), "/a/");
    }

    #[test]
    fn dot_segments_and_slashes() {
        assert_eq!(n("/api/../admin"), "/admin");
        assert_eq!(n("/api/%2e%2e/admin"), "/admin");
        assert_eq!(n("/api/%2E%2e/%2e/admin/"), "/admin/");
        assert_eq!(n("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(n("//admin///x"), "/admin/x");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a/."), "/a/");
        assert_eq!(n("/.."), "/");
    }

    #[test]
    fn escapes() {
        assert_eq!(n("/%61dmin"), "/admin");
        assert_eq!(n("/a%2fb"), "/a%2Fb");
        assert_eq!(n("/a%5c..%5cb"), "/a%5C..%5Cb");
        assert_eq!(n("/a%zz"), "BadEscape");
        assert_eq!(n("/a%00"), "BadEscape");
        assert_eq!(n("/a%2"), "BadEscape");
        assert_eq!(n("*"), "NotAbsolute");
    }
}
