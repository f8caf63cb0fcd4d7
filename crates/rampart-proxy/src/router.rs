//! The compiled route table: host, path (exact, template, prefix) and method matching.
//!
//! Routes are tried most specific first: an exact host before a wildcard host before any
//! host; then an exact path before a template before a prefix (longer prefixes first);
//! ties keep the file's order. The table is a sorted list scanned in order: route counts
//! in an API gateway are small (tens to hundreds), and a scan over pre-split segments costs
//! less than a request's header parsing.

use std::sync::Arc;

use http::Method;

/// What the router found for a request.
#[derive(Debug)]
pub enum Lookup<'a, T> {
    /// A route took the request; the template parameters in order.
    Found(&'a T, Vec<(Arc<str>, String)>),
    /// Routes match the path but not the method: answer 405 with this `Allow` list.
    MethodNotAllowed(Vec<Method>),
    /// No route matches.
    NotFound,
}

/// A route table over route payloads `T`.
#[derive(Debug)]
pub struct Router<T> {
    entries: Vec<Entry<T>>,
}

/// How a route matches requests.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The host rule.
    pub host: HostMatch,
    /// The path rule.
    pub path: PathMatch,
    /// Allowed methods; empty means any.
    pub methods: Vec<Method>,
}

/// A host rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Any host.
    Any,
    /// Exactly this host (lowercase, no port).
    Exact(String),
    /// Any subdomain of this suffix (stored as `.example.com`).
    Wildcard(String),
}

/// A path rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Exactly this path.
    Exact(String),
    /// A template: literal segments and `{param}` segments.
    Template(Vec<Segment>),
    /// This prefix, on whole segments.
    Prefix(String),
}

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A literal segment.
    Literal(String),
    /// A parameter: any non-empty segment.
    Param(Arc<str>),
}

/// Why a path pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatternError(String);

#[derive(Debug)]
struct Entry<T> {
    matcher: Matcher,
    value: T,
}

impl PathMatch {
    /// Parses a `path:` value: a template when it has `{`, otherwise exact.
    pub fn parse_path(p: &str) -> Result<Self, PatternError> {
        if !p.contains('{') && !p.contains('}') {
            return Ok(PathMatch::Exact(p.to_string()));
        }
        let mut segments = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for seg in p.split('/').skip(1) {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let valid = name
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    return Err(PatternError(format!(
                        "{p:?}: parameter {{{name}}} must be a name like {{user_id}}"
                    )));
                }
                if names.contains(&name) {
                    return Err(PatternError(format!(
                        "{p:?}: parameter {{{name}}} appears twice"
                    )));
                }
                names.push(name);
                segments.push(Segment::Param(name.into()));
            } else if seg.contains('{') || seg.contains('}') {
                return Err(PatternError(format!(
                    "{p:?}: a parameter must be a whole segment, like /users/{{id}}"
                )));
            } else {
                segments.push(Segment::Literal(seg.to_string()));
            }
        }
        Ok(PathMatch::Template(segments))
    }

    /// A prefix rule; a trailing `/` is ignored (`/api/` is `/api`).
    pub fn prefix(p: &str) -> Self {
        let trimmed = p.trim_end_matches('/');
        PathMatch::Prefix(trimmed.to_string())
    }

    fn rank(&self) -> (u8, usize) {
        match self {
            PathMatch::Exact(_) => (0, 0),
            // More literal segments first: /users/me before /users/{id}.
            PathMatch::Template(s) => (
                1,
                usize::MAX
                    - s.iter()
                        .filter(|s| matches!(s, Segment::Literal(_)))
                        .count(),
            ),
            PathMatch::Prefix(p) => (2, usize::MAX - p.len()),
        }
    }

    /// True when `path` matches; allocates nothing.
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) => {
                p.is_empty()
                    || path
                        .strip_prefix(p.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
            PathMatch::Template(segments) => {
                let mut parts = path.split('/').skip(1);
                for seg in segments {
                    let Some(part) = parts.next() else {
                        return false;
                    };
                    match seg {
                        Segment::Literal(l) if l == part => {}
                        Segment::Literal(_) => return false,
                        Segment::Param(_) if part.is_empty() => return false,
                        Segment::Param(_) => {}
                    }
                }
                // One trailing slash is the same resource to most upstream frameworks:
                // `/users/bob/orders/` must not escape the route (and its owner check)
                // for a catch-all prefix route.
                match parts.next() {
                    None => true,
                    Some("") => parts.next().is_none(),
                    Some(_) => false,
                }
            }
        }
    }

    /// The template parameters of a path that [`PathMatch::matches`].
    fn params(&self, path: &str) -> Vec<(Arc<str>, String)> {
        let PathMatch::Template(segments) = self else {
            return Vec::new();
        };
        segments
            .iter()
            .zip(path.split('/').skip(1))
            .filter_map(|(seg, part)| match seg {
                Segment::Param(name) => Some((name.clone(), part.to_string())),
                Segment::Literal(_) => None,
            })
            .collect()
    }
}

impl HostMatch {
    /// Parses a `host:` value: `*.example.com` is a wildcard, anything else exact.
    pub fn parse(h: Option<&str>) -> Self {
        match h {
            None => HostMatch::Any,
            Some(h) => match h.strip_prefix('*') {
                Some(suffix) if suffix.starts_with('.') => {
                    HostMatch::Wildcard(suffix.to_ascii_lowercase())
                }
                _ => HostMatch::Exact(h.to_ascii_lowercase()),
            },
        }
    }

    fn rank(&self) -> u8 {
        match self {
            HostMatch::Exact(_) => 0,
            HostMatch::Wildcard(_) => 1,
            HostMatch::Any => 2,
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => h.eq_ignore_ascii_case(host),
            HostMatch::Wildcard(suffix) => {
                host.len() > suffix.len()
                    && host
                        .get(host.len() - suffix.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
            }
        }
    }
}

impl<T> Router<T> {
    /// Builds the table; routes keep their relative order among equals.
    pub fn new(routes: Vec<(Matcher, T)>) -> Self {
        let mut entries: Vec<Entry<T>> = routes
            .into_iter()
            .map(|(matcher, value)| Entry { matcher, value })
            .collect();
        entries.sort_by_key(|e| (e.matcher.host.rank(), e.matcher.path.rank()));
        Self { entries }
    }

    /// Finds the route for `host` (without port), normalized `path` and `method`.
    pub fn lookup(&self, host: &str, path: &str, method: &Method) -> Lookup<'_, T> {
        let mut allowed: Vec<Method> = Vec::new();
        for e in &self.entries {
            if !e.matcher.host.matches(host) || !e.matcher.path.matches(path) {
                continue;
            }
            if e.matcher.methods.is_empty() || e.matcher.methods.contains(method) {
                return Lookup::Found(&e.value, e.matcher.path.params(path));
            }
            for m in &e.matcher.methods {
                if !allowed.contains(m) {
                    allowed.push(m.clone());
                }
            }
        }
        if allowed.is_empty() {
            Lookup::NotFound
        } else {
            Lookup::MethodNotAllowed(allowed)
        }
    }

    /// Every route payload, in match order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|e| &e.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(host: Option<&str>, path: PathMatch, methods: &[Method]) -> Matcher {
        Matcher {
            host: HostMatch::parse(host),
            path,
            methods: methods.to_vec(),
        }
    }

    fn table() -> Router<&'static str> {
        let t = |p: &str| PathMatch::parse_path(p).unwrap_or_else(|e| unreachable!("{e}"));
        Router::new(vec![
            (m(None, PathMatch::prefix("/"), &[]), "catch-all"),
            (m(None, PathMatch::prefix("/api"), &[]), "api"),
            (m(None, t("/users/{id}"), &[Method::GET]), "user"),
            (m(None, t("/users/me"), &[Method::GET]), "me"),
            (m(None, t("/users/{id}/orders/{order}"), &[]), "order"),
            (m(None, t("/login"), &[Method::POST]), "login"),
            (
                m(Some("admin.example.com"), PathMatch::prefix("/"), &[]),
                "admin",
            ),
            (
                m(Some("*.example.com"), PathMatch::prefix("/"), &[]),
                "tenant",
            ),
        ])
    }

    fn found(r: &Router<&'static str>, host: &str, path: &str, method: Method) -> String {
        match r.lookup(host, path, &method) {
            Lookup::Found(v, params) => {
                let p: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(
                    "{v}{}",
                    if p.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", p.join(","))
                    }
                )
            }
            Lookup::MethodNotAllowed(a) => format!("405 {a:?}"),
            Lookup::NotFound => "404".into(),
        }
    }

    #[test]
    fn most_specific_route_wins() {
        let r = table();
        assert_eq!(found(&r, "x", "/users/me", Method::GET), "me");
        assert_eq!(found(&r, "x", "/users/42", Method::GET), "user id=42");
        assert_eq!(
            found(&r, "x", "/users/42/orders/7", Method::PUT),
            "order id=42,order=7"
        );
        assert_eq!(found(&r, "x", "/api/products", Method::GET), "api");
        assert_eq!(found(&r, "x", "/apix", Method::GET), "catch-all");
        assert_eq!(
            found(&r, "admin.example.com", "/users/me", Method::GET),
            "admin"
        );
        assert_eq!(found(&r, "ADMIN.example.com", "/", Method::GET), "admin");
        assert_eq!(found(&r, "a.example.com", "/", Method::GET), "tenant");
        assert_eq!(found(&r, "example.com", "/", Method::GET), "catch-all");
    }

    #[test]
    fn wrong_method_on_a_matching_path_falls_through_then_405() {
        let r = table();
        // /login matches only POST; the catch-all prefix still takes GET.
        assert_eq!(found(&r, "x", "/login", Method::GET), "catch-all");
        let strict = Router::new(vec![(
            m(None, PathMatch::Exact("/login".into()), &[Method::POST]),
            "login",
        )]);
        assert_eq!(found(&strict, "x", "/login", Method::GET), "405 [POST]");
        assert_eq!(found(&strict, "x", "/other", Method::GET), "404");
    }

    #[test]
    fn templates_need_every_segment() {
        let r = Router::new(vec![(
            m(
                None,
                PathMatch::parse_path("/users/{id}").unwrap_or_else(|e| unreachable!("{e}")),
                &[],
            ),
            "user",
        )]);
        assert_eq!(found(&r, "x", "/users/", Method::GET), "404");
        assert_eq!(found(&r, "x", "/users", Method::GET), "404");
        assert_eq!(found(&r, "x", "/users/1/x", Method::GET), "404");
        // One trailing slash is the same resource; two segments' worth is not.
        assert_eq!(found(&r, "x", "/users/1/", Method::GET), "user id=1");
        assert_eq!(found(&r, "x", "/users/1//", Method::GET), "404");
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(PathMatch::parse_path("/users/{id").is_err());
        assert!(PathMatch::parse_path("/users/x{id}").is_err());
        assert!(PathMatch::parse_path("/a/{id}/b/{id}").is_err());
        assert!(PathMatch::parse_path("/a/{1x}").is_err());
    }
}
