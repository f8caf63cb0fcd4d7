//! Route requirements: what the caller must hold, in one line of configuration.

use rampart_core::Identity;

/// Names the caller must hold: every one of `all_of`, and one of `any_of` unless it is
/// empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Need {
    /// All of these.
    pub all_of: Vec<String>,
    /// At least one of these (ignored when empty).
    pub any_of: Vec<String>,
}

impl Need {
    /// True when nothing is required.
    pub fn is_empty(&self) -> bool {
        self.all_of.is_empty() && self.any_of.is_empty()
    }

    /// `None` when `held` satisfies the need, otherwise which half failed (`all_of` or
    /// `any_of`).
    pub fn unmet(&self, held: &[String]) -> Option<&'static str> {
        let has = |n: &String| held.iter().any(|h| h == n);
        if !self.all_of.iter().all(has) {
            return Some("all_of");
        }
        if !self.any_of.is_empty() && !self.any_of.iter().any(has) {
            return Some("any_of");
        }
        None
    }

    /// The names for an RFC 6750 `scope` attribute: all of `all_of`, then `any_of`.
    pub fn names(&self) -> String {
        let mut v: Vec<&str> = self.all_of.iter().map(String::as_str).collect();
        v.extend(self.any_of.iter().map(String::as_str));
        v.join(" ")
    }
}

/// Which requirement refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmet {
    /// The identity comes from another provider.
    Provider,
    /// A scope is missing; the rule id (`scopes.all_of`).
    Scope(&'static str),
    /// A role is missing.
    Role(&'static str),
    /// A group is missing.
    Group(&'static str),
}

impl Unmet {
    /// The stable reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            Unmet::Provider => "provider_not_allowed",
            Unmet::Scope(_) => "insufficient_scope",
            Unmet::Role(_) => "role_required",
            Unmet::Group(_) => "group_required",
        }
    }

    /// The rule id: `providers`, `scopes.all_of`, `roles.any_of`, ...
    pub fn rule(&self) -> String {
        match self {
            Unmet::Provider => "providers".into(),
            Unmet::Scope(half) => format!("scopes.{half}"),
            Unmet::Role(half) => format!("roles.{half}"),
            Unmet::Group(half) => format!("groups.{half}"),
        }
    }
}

/// A route's requirements on the identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    /// Providers the identity must come from (`api_keys` for API keys); any when empty.
    pub providers: Vec<String>,
    /// Scopes.
    pub scopes: Need,
    /// Roles.
    pub roles: Need,
    /// Groups.
    pub groups: Need,
}

impl Requirements {
    /// True when nothing is required.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
            && self.scopes.is_empty()
            && self.roles.is_empty()
            && self.groups.is_empty()
    }

    /// Checks providers, then scopes, then roles, then groups.
    pub fn check(&self, id: &Identity) -> Result<(), Unmet> {
        if !self.providers.is_empty() && !self.providers.contains(&id.provider) {
            return Err(Unmet::Provider);
        }
        if let Some(half) = self.scopes.unmet(&id.scopes) {
            return Err(Unmet::Scope(half));
        }
        if let Some(half) = self.roles.unmet(&id.roles) {
            return Err(Unmet::Role(half));
        }
        if let Some(half) = self.groups.unmet(&id.groups) {
            return Err(Unmet::Group(half));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn all_of_and_any_of() {
        let need = Need {
            all_of: v(&["a", "b"]),
            any_of: v(&["x", "y"]),
        };
        assert_eq!(need.unmet(&v(&["a", "b", "y"])), None);
        assert_eq!(need.unmet(&v(&["a", "y"])), Some("all_of"));
        assert_eq!(need.unmet(&v(&["a", "b"])), Some("any_of"));
        assert_eq!(Need::default().unmet(&[]), None);
        assert_eq!(need.names(), "a b x y");
    }
}
