//! The JWS algorithms Rampart verifies, and sets of them (a provider's allow-list, the
//! algorithms a key may verify).
//!
//! Names are matched exactly and case-sensitively, as RFC 7515 §4.1.1 says of `alg`. `none`
//! is not an [`Alg`] at all: there is no way to ask for unsigned tokens.

use std::fmt;

/// A JWS signature algorithm (RFC 7518 §3, RFC 8037, RFC 9864).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// HMAC with SHA-256.
    Hs256,
    /// HMAC with SHA-384.
    Hs384,
    /// HMAC with SHA-512.
    Hs512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384 and MGF1 with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512 and MGF1 with SHA-512.
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// EdDSA (RFC 8037); Rampart supports only the Ed25519 curve under it.
    EdDsa,
    /// Ed25519, the fully specified name RFC 9864 gives EdDSA on Ed25519.
    Ed25519,
}

/// The kind of key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A shared secret (HS*).
    Hmac,
    /// An RSA public key (RS*, PS*).
    Rsa,
    /// An elliptic-curve public key on P-256 or P-384 (ES*).
    Ec,
    /// An Ed25519 public key (EdDSA, Ed25519).
    Ed,
}

/// A set of algorithms: a provider's allow-list, or what one key may verify.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AlgSet(u16);

impl Alg {
    /// Every algorithm, in a fixed order.
    pub const ALL: [Alg; 13] = [
        Alg::Hs256,
        Alg::Hs384,
        Alg::Hs512,
        Alg::Rs256,
        Alg::Rs384,
        Alg::Rs512,
        Alg::Ps256,
        Alg::Ps384,
        Alg::Ps512,
        Alg::Es256,
        Alg::Es384,
        Alg::EdDsa,
        Alg::Ed25519,
    ];

    /// The algorithm registered under `name`, matched exactly (`"RS256"`, never `"rs256"`).
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The registered name (`"RS256"`).
    pub fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Hs384 => "HS384",
            Alg::Hs512 => "HS512",
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::EdDsa => "EdDSA",
            Alg::Ed25519 => "Ed25519",
        }
    }

    /// The kind of key the algorithm needs.
    pub fn family(self) -> Family {
        match self {
            Alg::Hs256 | Alg::Hs384 | Alg::Hs512 => Family::Hmac,
            Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512 => {
                Family::Rsa
            }
            Alg::Es256 | Alg::Es384 => Family::Ec,
            Alg::EdDsa | Alg::Ed25519 => Family::Ed,
        }
    }

    /// The length in bytes of a signature, for algorithms where it does not depend on the
    /// key (HMAC tags, fixed-size ECDSA `R || S`, Ed25519). RSA signatures are as long as
    /// the key's modulus.
    pub(crate) fn fixed_signature_len(self) -> Option<usize> {
        match self {
            Alg::Hs256 => Some(32),
            Alg::Hs384 => Some(48),
            Alg::Hs512 => Some(64),
            Alg::Es256 => Some(64),
            Alg::Es384 => Some(96),
            Alg::EdDsa | Alg::Ed25519 => Some(64),
            Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512 => None,
        }
    }

    /// The `jsonwebtoken` algorithm that computes this one.
    pub(crate) fn to_jwt(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as J;
        match self {
            Alg::Hs256 => J::HS256,
            Alg::Hs384 => J::HS384,
            Alg::Hs512 => J::HS512,
            Alg::Rs256 => J::RS256,
            Alg::Rs384 => J::RS384,
            Alg::Rs512 => J::RS512,
            Alg::Ps256 => J::PS256,
            Alg::Ps384 => J::PS384,
            Alg::Ps512 => J::PS512,
            Alg::Es256 => J::ES256,
            Alg::Es384 => J::ES384,
            Alg::EdDsa | Alg::Ed25519 => J::EdDSA,
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl AlgSet {
    /// No algorithm.
    pub const fn empty() -> AlgSet {
        AlgSet(0)
    }

    /// Every supported algorithm.
    pub fn all() -> AlgSet {
        AlgSet::of(&Alg::ALL)
    }

    /// The algorithms in `algs`.
    pub fn of(algs: &[Alg]) -> AlgSet {
        algs.iter().fold(AlgSet::empty(), |set, a| set.with(*a))
    }

    /// Every algorithm of `family`.
    pub fn family(family: Family) -> AlgSet {
        AlgSet::of(&Alg::ALL).filter(|a| a.family() == family)
    }

    /// This set with `alg` added.
    #[must_use]
    pub fn with(self, alg: Alg) -> AlgSet {
        AlgSet(self.0 | alg.bit())
    }

    /// Whether `alg` is in the set.
    pub fn contains(self, alg: Alg) -> bool {
        self.0 & alg.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The algorithms in both sets.
    #[must_use]
    pub fn intersect(self, other: AlgSet) -> AlgSet {
        AlgSet(self.0 & other.0)
    }

    /// The algorithms of this set that `keep` accepts.
    #[must_use]
    pub fn filter(self, keep: impl Fn(Alg) -> bool) -> AlgSet {
        self.iter()
            .filter(|a| keep(*a))
            .fold(AlgSet::empty(), AlgSet::with)
    }

    /// The algorithms in the set, in [`Alg::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Alg> {
        Alg::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

impl fmt::Debug for AlgSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(Alg::name)).finish()
    }
}

impl FromIterator<Alg> for AlgSet {
    fn from_iter<I: IntoIterator<Item = Alg>>(iter: I) -> Self {
        iter.into_iter().fold(AlgSet::empty(), AlgSet::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for alg in Alg::ALL {
            assert_eq!(Alg::from_name(alg.name()), Some(alg));
        }
        assert_eq!(Alg::from_name("rs256"), None);
        assert_eq!(Alg::from_name("none"), None);
        assert_eq!(Alg::from_name("ES512"), None);
        assert_eq!(Alg::from_name(""), None);
    }

    #[test]
    fn sets() {
        let s = AlgSet::of(&[Alg::Rs256, Alg::Es256]);
        assert!(s.contains(Alg::Rs256) && s.contains(Alg::Es256));
        assert!(!s.contains(Alg::Hs256));
        assert_eq!(AlgSet::family(Family::Hmac).iter().count(), 3);
        assert_eq!(AlgSet::family(Family::Rsa).iter().count(), 6);
        assert_eq!(AlgSet::all().iter().count(), 13);
        assert!(AlgSet::empty().is_empty());
        assert_eq!(
            s.intersect(AlgSet::family(Family::Ec)),
            AlgSet::of(&[Alg::Es256])
        );
    }
}
