//! IP allow and deny lists: the first defense on a route, before any parsing of
//! credentials or bodies.
//!
//! Deny wins over allow. With a non-empty allow list, every address outside it is denied.
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are checked as the IPv4 address they
//! carry, so a dual-stack listener cannot be used to step around an IPv4 rule.

use std::borrow::Cow;
use std::net::IpAddr;

use async_trait::async_trait;
use ipnet::IpNet;
use rampart_core::{Decision, DefenseError, Interruption, Outcome, RequestContext, Verdict};

/// The layer name in logs and metrics.
pub const LAYER: &str = "ipfilter";

/// An IP allow/deny filter.
#[derive(Debug, Clone, Default)]
pub struct IpFilter {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl IpFilter {
    /// A filter with these lists.
    pub fn new(allow: Vec<IpNet>, deny: Vec<IpNet>) -> Self {
        Self { allow, deny }
    }

    /// Decides for one address: `Err(rule)` names the rule that denies it.
    pub fn check(&self, ip: IpAddr) -> Result<(), Cow<'static, str>> {
        let ip = canonical(ip);
        if let Some(net) = self.deny.iter().find(|n| n.contains(&ip)) {
            return Err(format!("deny {net}").into());
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&ip)) {
            return Err(Cow::Borrowed("not in allow list"));
        }
        Ok(())
    }
}

#[async_trait]
impl rampart_core::Defense for IpFilter {
    fn name(&self) -> &'static str {
        LAYER
    }

    async fn request_head(
        &self,
        ctx: &mut RequestContext,
        _head: &mut http_parts::Parts,
    ) -> Result<Verdict, DefenseError> {
        match self.check(ctx.client.ip) {
            Ok(()) => {
                ctx.record(Decision {
                    layer: LAYER,
                    outcome: Outcome::Allow,
                    reason: Cow::Borrowed("ip_allowed"),
                    rule_id: None,
                });
                Ok(Verdict::Continue)
            }
            Err(rule) => Ok(Verdict::Deny(
                Interruption::new(http_parts::StatusCode::FORBIDDEN, "ip_denied").with_rule(rule),
            )),
        }
    }
}

/// The address as the filter compares it: IPv4-mapped IPv6 becomes IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

mod http_parts {
    pub use rampart_core::http_reexport::StatusCode;
    pub use rampart_core::http_reexport::request::Parts;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap_or_else(|e| unreachable!("{s}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| unreachable!("{s}: {e}"))
    }

    #[test]
    fn deny_wins_over_allow() {
        let f = IpFilter::new(vec![net("10.0.0.0/8")], vec![net("10.1.0.0/16")]);
        assert!(f.check(ip("10.2.3.4")).is_ok());
        assert_eq!(
            f.check(ip("10.1.2.3")).err().as_deref(),
            Some("deny 10.1.0.0/16")
        );
        assert_eq!(
            f.check(ip("192.168.1.1")).err().as_deref(),
            Some("not in allow list")
        );
    }

    #[test]
    fn mapped_ipv6_is_checked_as_ipv4() {
        let f = IpFilter::new(vec![], vec![net("203.0.113.0/24")]);
        assert!(f.check(ip("::ffff:203.0.113.9")).is_err());
        assert!(f.check(ip("2001:db8::1")).is_ok());
    }

    #[test]
    fn empty_filter_allows_everything() {
        assert!(IpFilter::default().check(ip("198.51.100.7")).is_ok());
    }
}
