//! The strict pre-parse: from the bytes a client sent to a typed JWS, before any key is
//! looked at.
//!
//! Everything here is cheap and refuses early. In order:
//!
//! 1. Size: a token longer than [`ParseOptions::max_token_bytes`] is refused before a
//!    single byte is decoded.
//! 2. Shape: exactly three dot-separated parts (compact serialization, RFC 7515 §7.1). Two
//!    parts, four, or five (a JWE) are malformed. The JSON serialization is not accepted.
//! 3. Encoding: every part is unpadded base64url, canonical (RFC 7515 §2, RFC 4648 §3.5):
//!    `=`, `+`, `/`, whitespace and non-zero unused trailing bits are refused, so one token
//!    has exactly one spelling and the signing input is exactly what was signed.
//! 4. Header: a JSON object without duplicate member names (see `json.rs`), with
//!    * `alg` a string; `none` in any case is [`Rejection::AlgNone`] (RFC 8725 §3.1); an
//!      unknown name or one outside the allow-list is [`Rejection::AlgNotAllowed`]
//!      (RFC 8725 §3.1: each key used with exactly one algorithm, the allow-list per
//!      provider);
//!    * no `crit` at all (RFC 7515 §4.1.11: we implement no extension, so any critical
//!      extension, and an empty or non-array `crit`, makes the token unusable);
//!    * no `b64: false` (RFC 7797: the payload would not be base64url and the signing input
//!      would differ);
//!    * `kid`, if present, a string of at most [`MAX_KID_BYTES`] bytes. It is only ever a
//!      lookup key into a key set held in memory: never a path, a URL or a query;
//!    * `typ` and `cty`, if present, strings; `cty: JWT` (a nested JWT, RFC 7519 §5.2) is
//!      refused: Rampart verifies one layer, and a nested token would need a second policy;
//!    * `jwk`, `jku`, `x5u`, `x5c`: never used as a key source (RFC 8725 §3.10 warns of
//!      exactly this). By default they are ignored, so a token carrying them verifies only
//!      against the configured keys; with [`ParseOptions::reject_embedded_keys`] they are
//!      refused outright.
//! 5. Payload: decoded bytes. For a JWT ([`parse`], [`parse_claims`]) the payload must be a
//!    JSON object without duplicate member names (RFC 7519 §7.2); a JSON string holding
//!    another JWT is not one.
//!
//! The verifier ([`crate::Verifier`]) checks the signature between steps 4 and 5, so the
//! claims are only read from a payload whose signature verified.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::alg::{Alg, AlgSet};
use crate::json::{self, Part};
use crate::rejection::{Rejection, Segment};

/// The default limit on a token's length: 8 KiB. Access tokens of real identity providers
/// are well under 4 KiB; a limit keeps decoding and JSON parsing bounded.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The longest `kid` accepted, in bytes. Real key ids are short (thumbprints, UUIDs); a
/// long one is an attack on whatever stores or logs it.
pub const MAX_KID_BYTES: usize = 256;

/// Header parameters that carry or point at a key (RFC 7515 §4.1.2-4.1.6). Never used.
const EMBEDDED_KEY_PARAMS: [&str; 4] = ["jwk", "jku", "x5u", "x5c"];

/// What the pre-parse accepts.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// Tokens longer than this are refused before decoding.
    pub max_token_bytes: usize,
    /// The provider's allow-list of `alg` values.
    pub algorithms: AlgSet,
    /// Refuse tokens whose header carries `jwk`, `jku`, `x5u` or `x5c`, instead of ignoring
    /// those parameters. Either way they are never used to find a key.
    pub reject_embedded_keys: bool,
}

/// A compact JWS that passed the pre-parse; its signature is not verified yet.
#[derive(Debug, Clone)]
pub struct Jws<'t> {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The header's `alg`, on the allow-list.
    pub alg: Alg,
    /// The decoded payload bytes.
    pub payload: Vec<u8>,
    /// The JWS signing input: the first two parts and the dot between them, as sent.
    pub signing_input: &'t [u8],
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// A JWT that passed the pre-parse: a [`Jws`] whose payload is a JSON object.
#[derive(Debug, Clone)]
pub struct Parsed<'t> {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The claims (the payload object).
    pub claims: Map<String, Value>,
    /// The header's `alg`, on the allow-list.
    pub alg: Alg,
    /// The JWS signing input, as sent.
    pub signing_input: &'t [u8],
    /// The decoded signature.
    pub signature: Vec<u8>,
}

impl ParseOptions {
    /// Options with the default size limit, allowing `algorithms`, ignoring embedded keys.
    pub fn new(algorithms: AlgSet) -> ParseOptions {
        ParseOptions {
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            algorithms,
            reject_embedded_keys: false,
        }
    }
}

impl Jws<'_> {
    /// The header's `kid`, if any (already checked to be a short string).
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// The header's `typ`, if any (already checked to be a string).
    pub fn typ(&self) -> Option<&str> {
        self.header.get("typ").and_then(Value::as_str)
    }
}

/// Pre-parses a compact JWS: size, shape, encoding and header (steps 1-4 of the module
/// docs), and decodes the payload without interpreting it.
pub fn parse_jws<'t>(token: &'t str, options: &ParseOptions) -> Result<Jws<'t>, Rejection> {
    if token.len() > options.max_token_bytes {
        return Err(Rejection::TooLarge {
            limit: options.max_token_bytes,
        });
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed(
            "not three dot-separated parts (compact JWS)",
        ));
    };

    let header_bytes = decode(header_b64, Segment::Header)?;
    let header = json::parse_object(&header_bytes)
        .map_err(|e| Rejection::Malformed(e.describe(Part::Header)))?;
    let alg = check_header(&header, options)?;

    let payload = decode(payload_b64, Segment::Payload)?;
    let signature = decode(signature_b64, Segment::Signature)?;
    // The signing input is the text up to the second dot, exactly as sent.
    let signing_input = token
        .as_bytes()
        .get(..header_b64.len() + 1 + payload_b64.len())
        .unwrap_or_default();
    Ok(Jws {
        header,
        alg,
        payload,
        signing_input,
        signature,
    })
}

/// Pre-parses a JWT: [`parse_jws`], then the payload as a JSON object of claims.
pub fn parse<'t>(token: &'t str, options: &ParseOptions) -> Result<Parsed<'t>, Rejection> {
    let jws = parse_jws(token, options)?;
    let claims = parse_claims(&jws.payload)?;
    Ok(Parsed {
        header: jws.header,
        claims,
        alg: jws.alg,
        signing_input: jws.signing_input,
        signature: jws.signature,
    })
}

/// Reads a JWS payload as a JWT claim set: a JSON object without duplicate member names.
pub fn parse_claims(payload: &[u8]) -> Result<Map<String, Value>, Rejection> {
    json::parse_object(payload).map_err(|e| Rejection::Malformed(e.describe(Part::Claims)))
}

/// Decodes canonical unpadded base64url. The engine refuses padding, characters outside
/// the URL-safe alphabet (so `+`, `/` and whitespace) and non-zero trailing bits.
pub(crate) fn decode(part: &str, segment: Segment) -> Result<Vec<u8>, Rejection> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Rejection::BadEncoding(segment))
}

/// Checks the header parameters (step 4 of the module docs) and returns the `alg`.
fn check_header(header: &Map<String, Value>, options: &ParseOptions) -> Result<Alg, Rejection> {
    let alg = match header.get("alg") {
        None => return Err(Rejection::Malformed("alg missing")),
        Some(Value::String(name)) => name,
        Some(_) => return Err(Rejection::Malformed("alg is not a string")),
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(Rejection::AlgNone);
    }
    let alg = Alg::from_name(alg).ok_or(Rejection::AlgNotAllowed)?;
    if !options.algorithms.contains(alg) {
        return Err(Rejection::AlgNotAllowed);
    }

    if header.contains_key("crit") {
        return Err(Rejection::CritUnsupported);
    }
    match header.get("b64") {
        None | Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Err(Rejection::UnsupportedHeader("b64")),
        Some(_) => return Err(Rejection::Malformed("b64 is not a boolean")),
    }
    match header.get("kid") {
        None => {}
        Some(Value::String(kid)) if kid.len() <= MAX_KID_BYTES => {}
        Some(Value::String(_)) => return Err(Rejection::Malformed("kid too long")),
        Some(_) => return Err(Rejection::Malformed("kid is not a string")),
    }
    match header.get("typ") {
        None | Some(Value::String(_)) => {}
        Some(_) => return Err(Rejection::Malformed("typ is not a string")),
    }
    match header.get("cty") {
        None => {}
        Some(Value::String(cty)) if is_jwt_media_type(cty) => {
            return Err(Rejection::UnsupportedHeader("cty"));
        }
        Some(Value::String(_)) => {}
        Some(_) => return Err(Rejection::Malformed("cty is not a string")),
    }
    if options.reject_embedded_keys
        && let Some(param) = EMBEDDED_KEY_PARAMS
            .into_iter()
            .find(|p| header.contains_key(*p))
    {
        return Err(Rejection::UnsupportedHeader(param));
    }
    Ok(alg)
}

/// Whether a `typ`/`cty` value names the JWT media type (RFC 7519 §5.1: compared without
/// case, with the `application/` prefix optional).
fn is_jwt_media_type(value: &str) -> bool {
    media_type_eq(value, "jwt")
}

/// Compares two media types as RFC 7515 §4.1.9 says `typ` is compared: case-insensitively,
/// with the `application/` prefix optional on either side.
pub(crate) fn media_type_eq(a: &str, b: &str) -> bool {
    fn bare(s: &str) -> &str {
        const PREFIX: &str = "application/";
        match s.get(..PREFIX.len()) {
            Some(p) if p.eq_ignore_ascii_case(PREFIX) => s.get(PREFIX.len()..).unwrap_or(s),
            _ => s,
        }
    }
    bare(a).eq_ignore_ascii_case(bare(b))
}

#[cfg(test)]
mod tests;
