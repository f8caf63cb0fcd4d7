//! API keys, stored only as SHA-256 hashes.
//!
//! The configuration holds `sha256:<hex>` of each key, never the key: a leaked config file
//! or backup does not leak credentials. A presented key is hashed once and looked up; keys
//! are long random strings (`rampart api-key new` makes 32 random bytes), so a fast hash is
//! the right tool (there is nothing to brute-force, unlike a password) and the lookup by
//! digest leaks nothing useful through timing.

use std::collections::HashMap;

/// What an API key stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The key's SHA-256.
    pub sha256: [u8; 32],
    /// The identity it authenticates.
    pub subject: String,
    /// Its service tier (rate-limit policies can tell tiers apart).
    pub tier: Option<String>,
    /// Its scopes.
    pub scopes: Vec<String>,
}

/// The configured keys, by digest.
#[derive(Debug, Default)]
pub struct ApiKeys {
    by_digest: HashMap<[u8; 32], ApiKey>,
}

/// SHA-256 of a presented key.
pub fn digest(key: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Parses `sha256:<64 hex digits>` (the prefix is required, so a raw key pasted by mistake
/// is refused rather than taken as a digest).
pub fn parse_digest(s: &str) -> Result<[u8; 32], String> {
    let hex = s
        .strip_prefix("sha256:")
        .ok_or_else(|| "an API key digest is written sha256:<64 hex digits>".to_string())?;
    if hex.len() != 64 {
        return Err(format!(
            "sha256 digest has {} hex digits, not 64",
            hex.len()
        ));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = hex.get(2 * i..2 * i + 2).unwrap_or("");
        *byte = u8::from_str_radix(pair, 16).map_err(|_| format!("{pair:?} is not hex"))?;
    }
    Ok(out)
}

/// Hex of a digest, `sha256:`-prefixed.
pub fn format_digest(d: &[u8; 32]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in d {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl ApiKeys {
    /// The key table; two entries with one digest are an error.
    pub fn new(keys: Vec<ApiKey>) -> Result<Self, String> {
        let mut by_digest = HashMap::with_capacity(keys.len());
        for k in keys {
            let d = k.sha256;
            if let Some(old) = by_digest.insert(d, k) {
                return Err(format!(
                    "two API keys have the digest {} (subject {:?})",
                    format_digest(&d),
                    old.subject
                ));
            }
        }
        Ok(Self { by_digest })
    }

    /// The key presented, if it is one of ours.
    pub fn lookup(&self, presented: &[u8]) -> Option<&ApiKey> {
        if self.by_digest.is_empty() {
            return None;
        }
        self.by_digest.get(&digest(presented))
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// True without keys.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_digest_only() {
        let key = b"rk_live_3b0f9c1e";
        let keys = ApiKeys::new(vec![ApiKey {
            sha256: digest(key),
            subject: "billing-service".into(),
            tier: Some("gold".into()),
            scopes: vec!["invoices:read".into()],
        }])
        .unwrap();
        assert_eq!(keys.lookup(key).unwrap().subject, "billing-service");
        assert!(keys.lookup(b"rk_live_3b0f9c1f").is_none());
        assert!(keys.lookup(b"").is_none());
    }

    #[test]
    fn digests_round_trip_and_raw_keys_are_refused() {
        let d = digest(b"abc");
        let text = format_digest(&d);
        assert_eq!(
            text,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_digest(&text).unwrap(), d);
        assert!(
            parse_digest("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
                .is_err()
        );
        assert!(parse_digest("sha256:zz").is_err());
        assert!(parse_digest(&text.replace('a', "g")).is_err());
    }

    #[test]
    fn duplicate_digests_are_refused() {
        let k = ApiKey {
            sha256: digest(b"k"),
            subject: "a".into(),
            tier: None,
            scopes: vec![],
        };
        assert!(ApiKeys::new(vec![k.clone(), k]).is_err());
    }
}
