//! Client address behind proxies, forwarding headers, and hop-by-hop stripping.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use rampart_config::ForwardedHeader;

/// Who is trusted to report the client address, and in which header.
#[derive(Debug, Clone, Default)]
pub struct ClientIpPolicy {
    /// Networks of trusted proxies.
    pub trusted: Vec<IpNet>,
    /// The header they use.
    pub header: ForwardedHeader,
}

impl ClientIpPolicy {
    /// True when `ip` belongs to a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client address: the TCP peer, unless the peer is a trusted proxy; then the
    /// right-most address in the forwarding header that is not a trusted proxy. An entry
    /// that does not parse stops the walk: the last address known good is used, since
    /// anything left of garbage cannot be vouched for.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        let hops = match self.header {
            ForwardedHeader::XForwardedFor => xff_hops(headers),
            ForwardedHeader::Forwarded => forwarded_hops(headers),
        };
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) => {
                    client = canonical(*ip);
                    if !self.is_trusted(client) {
                        return client;
                    }
                }
                None => return client,
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 becomes IPv4, so rules and logs see one form.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn xff_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("\u{0}").split(','))
        .map(|s| parse_node(s.trim()))
        .collect()
}

fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for v in headers.get_all(header::FORWARDED) {
        let Ok(v) = v.to_str() else {
            hops.push(None);
            continue;
        };
        for element in v.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (k, val) = pair.trim().split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then_some(val.trim())
            });
            hops.push(node.and_then(|n| parse_node(n.trim_matches('"'))));
        }
    }
    hops
}

/// Parses `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:80`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse().ok())
}

/// Header fields that describe one connection and must not be forwarded (RFC 9110
/// section 7.6.1), besides those named in `Connection`.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Removes hop-by-hop headers, and every header the `Connection` field names. `upgrade`
/// is kept only when `keep_upgrade` (a WebSocket handshake being passed through), and
/// then `Connection: upgrade` is restored.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if !(keep_upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// What the gateway tells the upstream about the original request.
pub struct ForwardFacts<'a> {
    /// The TCP peer.
    pub peer: IpAddr,
    /// True when the peer is a trusted proxy, so the forwarding headers it sent are kept.
    pub peer_trusted: bool,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The Host the client asked for.
    pub host: Option<&'a HeaderValue>,
}

/// Appends the peer to `X-Forwarded-For` and `Forwarded`, and sets `X-Forwarded-Proto`
/// and `X-Forwarded-Host`. Forwarding headers from an untrusted peer are replaced, not
/// appended to: nothing it claims about earlier hops can be checked.
pub fn set_forwarding_headers(headers: &mut HeaderMap, facts: &ForwardFacts<'_>) {
    let peer = canonical(facts.peer);
    let xff_prior = if facts.peer_trusted {
        joined(headers, "x-forwarded-for")
    } else {
        None
    };
    let fwd_prior = if facts.peer_trusted {
        joined(headers, "forwarded")
    } else {
        None
    };
    let xff = match xff_prior {
        Some(p) => format!("{p}, {peer}"),
        None => peer.to_string(),
    };
    let node = match peer {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let mut element = format!("for={node};proto={}", facts.scheme);
    if let Some(h) = facts
        .host
        .and_then(|h| h.to_str().ok())
        .filter(|h| is_token_safe(h))
    {
        element.push_str(";host=\"");
        element.push_str(h);
        element.push('"');
    }
    let fwd = match fwd_prior {
        Some(p) => format!("{p}, {element}"),
        None => element,
    };
    for (name, value) in [("x-forwarded-for", xff), ("forwarded", fwd)] {
        if let Ok(v) = HeaderValue::try_from(value) {
            headers.insert(name, v);
        }
    }
    let proto = if facts.scheme == "https" {
        HeaderValue::from_static("https")
    } else {
        HeaderValue::from_static("http")
    };
    headers.insert("x-forwarded-proto", proto);
    match facts.host {
        Some(v) => {
            headers.insert("x-forwarded-host", v.clone());
        }
        None => {
            headers.remove("x-forwarded-host");
        }
    }
}

fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn is_token_safe(h: &str) -> bool {
    h.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(nets: &[&str], header: ForwardedHeader) -> ClientIpPolicy {
        ClientIpPolicy {
            trusted: nets.iter().filter_map(|n| n.parse().ok()).collect(),
            header,
        }
    }

    fn hdrs(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        let p = policy(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let h = hdrs(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(p.client_ip(ip("203.0.113.5"), &h), ip("203.0.113.5"));
    }

    #[test]
    fn rightmost_untrusted_hop_wins() {
        let p = policy(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let h = hdrs(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        let all_trusted = hdrs(&[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &all_trusted), ip("10.1.1.1"));
        let garbage = hdrs(&[("x-forwarded-for", "6.6.6.6, bogus, 10.9.9.9")]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &garbage), ip("10.9.9.9"));
    }

    #[test]
    fn forwarded_header_with_ports_and_ipv6() {
        let p = policy(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        let h = hdrs(&[(
            "forwarded",
            "for=192.0.2.60;proto=http, for=\"[2001:db8::7]:4711\";by=10.0.0.1",
        )]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &h), ip("2001:db8::7"));
        let unknown = hdrs(&[("forwarded", "for=unknown")]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &unknown), ip("10.0.0.1"));
    }

    #[test]
    fn hop_by_hop_headers_and_connection_tokens_are_stripped() {
        let mut h = hdrs(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["x-kept"]);

        let mut ws = hdrs(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        strip_hop_by_hop(&mut ws, true);
        assert_eq!(
            ws.get("upgrade").map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert_eq!(
            ws.get("connection").map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
    }

    #[test]
    fn forwarding_headers_append_only_for_trusted_peers() {
        let mut h = hdrs(&[("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=6.6.6.6")]);
        let facts = ForwardFacts {
            peer: ip("203.0.113.5"),
            peer_trusted: false,
            scheme: "https",
            host: Some(&HeaderValue::from_static("api.example.com")),
        };
        set_forwarding_headers(&mut h, &facts);
        assert_eq!(h["x-forwarded-for"], "203.0.113.5");
        assert_eq!(
            h["forwarded"],
            "for=203.0.113.5;proto=https;host=\"api.example.com\""
        );
        assert_eq!(h["x-forwarded-proto"], "https");

        let mut h = hdrs(&[("x-forwarded-for", "198.51.100.7")]);
        let facts = ForwardFacts {
            peer: ip("::ffff:10.0.0.1"),
            peer_trusted: true,
            scheme: "http",
            host: None,
        };
        set_forwarding_headers(&mut h, &facts);
        assert_eq!(h["x-forwarded-for"], "198.51.100.7, 10.0.0.1");
        assert!(h.get("x-forwarded-host").is_none());
    }
}
