//! JSON objects without duplicate member names.
//!
//! RFC 7515 §5.2 and RFC 7519 §7.2 tell a recipient to reject JSON with duplicate member
//! names or to use the last one. serde_json silently keeps the last, so two parsers (ours
//! and, say, an upstream's or a logging pipeline's) could read different values from the
//! same token: `{"alg":"none","alg":"RS256"}`. We reject, at every nesting level.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why bytes are not a strict JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// Not JSON (or not UTF-8, or trailing bytes, or nested too deep).
    Syntax,
    /// A member name appears twice in one object.
    DuplicateMember,
    /// Valid JSON, but not an object.
    NotAnObject,
}

impl JsonError {
    /// A fixed description, for rejection details.
    pub(crate) fn describe(self, what: Part) -> &'static str {
        match (what, self) {
            (Part::Header, JsonError::Syntax) => "header is not JSON",
            (Part::Header, JsonError::DuplicateMember) => "duplicate member name in header",
            (Part::Header, JsonError::NotAnObject) => "header is not a JSON object",
            (Part::Claims, JsonError::Syntax) => "payload is not JSON",
            (Part::Claims, JsonError::DuplicateMember) => "duplicate member name in payload",
            (Part::Claims, JsonError::NotAnObject) => "payload is not a JSON object",
        }
    }
}

/// Which part of a token a JSON error is about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Part {
    Header,
    Claims,
}

/// Parses `bytes` as a JSON object, refusing duplicate member names at any depth.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictSeed.deserialize(&mut de).map_err(classify)?;
    de.end().map_err(classify)?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::NotAnObject),
    }
}

const DUPLICATE: &str = "rampart: duplicate member name";

fn classify(e: serde_json::Error) -> JsonError {
    if e.is_data() && e.to_string().starts_with(DUPLICATE) {
        JsonError::DuplicateMember
    } else {
        JsonError::Syntax
    }
}

/// Deserializes any JSON value into a [`Value`], failing on duplicate member names.
struct StrictSeed;

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictSeed)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(DUPLICATE));
            }
            let value = map.next_value_seed(StrictSeed)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests;
