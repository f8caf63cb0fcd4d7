//! Rampart's configuration: the YAML model ([`Config`]), its parsing with locations, its
//! checks, and its JSON Schema.
//!
//! This is the only crate that derives `Deserialize`. It reads no files: the binary hands
//! it the text and the file name, so every error can say `file:line:column: what`.

mod model;
pub mod units;

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

pub use model::*;
pub use serde_saphyr::{Location, Spanned};
pub use units::{ByteSize, HumanDuration, Rate};

/// One problem in a config file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as the user named it.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// What is wrong, in a sentence.
    pub message: String,
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// An error at `location` in `file`.
    /// An error about another file than the config (a policy file), at a line if known.
    pub fn in_file(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: line.and_then(|l| u64::try_from(l).ok()),
            column: None,
            message: message.into(),
        }
    }

    /// An error at `location` of `file`.
    pub fn at(file: &Path, location: Location, message: impl Into<String>) -> Self {
        let known = location != Location::UNKNOWN;
        Self {
            file: file.to_path_buf(),
            line: known.then(|| location.line()),
            column: known.then(|| location.column()),
            message: message.into(),
        }
    }
}

/// Parses and checks a config. `file` is used only in error messages.
///
/// Syntax and type errors stop parsing at the first one (the YAML parser cannot go on
/// meaningfully); the checks that follow report every problem they find.
pub fn parse(source: &str, file: &Path) -> Result<Config, ConfigErrors> {
    let config: Config = serde_saphyr::from_str(source).map_err(|e| {
        let location = e.location().unwrap_or(Location::UNKNOWN);
        ConfigErrors(vec![ConfigError::at(file, location, plain_message(&e))])
    })?;
    let errors = check(&config, file);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The JSON Schema of the config file (draft 2020-12), as published in
/// `docs/config.schema.json`.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Config);
    serde_json::to_value(&schema).unwrap_or(serde_json::Value::Null)
}

/// The parser's message without its own location (we print `file:line:col:` first).
fn plain_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let mut msg = full.lines().next().unwrap_or("invalid YAML").trim();
    msg = msg.strip_prefix("error: ").unwrap_or(msg);
    // serde-saphyr starts with "line N column M: "; drop it.
    if msg.starts_with("line ")
        && let Some((head, rest)) = msg.split_once(": ")
        && head.contains(" column ")
    {
        msg = rest;
    }
    msg.to_string()
}

fn check(config: &Config, file: &Path) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut err = |loc: Location, msg: String| errors.push(ConfigError::at(file, loc, msg));

    if config.listeners.is_empty() {
        err(
            Location::UNKNOWN,
            "no listeners: add at least one under `listeners`".into(),
        );
    }
    let mut names = HashSet::new();
    let mut binds = HashSet::new();
    binds.insert(config.admin.bind.value);
    for l in &config.listeners {
        if !names.insert(l.name.as_str()) {
            err(
                l.bind.referenced,
                format!("listener name {:?} is used twice", l.name),
            );
        }
        // Port 0 asks the OS for a free port: never a clash.
        if l.bind.value.port() != 0 && !binds.insert(l.bind.value) {
            err(
                l.bind.referenced,
                format!(
                    "address {} is bound twice (listeners and admin must differ)",
                    l.bind.value
                ),
            );
        }
        if let Some(r) = &l.redirect_https {
            if l.tls.is_some() {
                err(
                    l.bind.referenced,
                    format!(
                        "listener {:?}: redirect_https is for cleartext listeners, this one has tls",
                        l.name
                    ),
                );
            }
            if r.status != 301 && r.status != 308 {
                err(
                    l.bind.referenced,
                    format!(
                        "listener {:?}: redirect_https.status must be 301 or 308, not {}",
                        l.name, r.status
                    ),
                );
            }
        }
    }

    let lim = &config.limits;
    if lim.max_header_count == 0 || lim.max_header_count > 10_000 {
        err(
            Location::UNKNOWN,
            "limits.max_header_count must be between 1 and 10000".into(),
        );
    }
    if lim.max_header_bytes.0 < 1024 || lim.max_header_bytes.0 > 1024 * 1024 {
        err(
            Location::UNKNOWN,
            "limits.max_header_bytes must be between 1KiB and 1MiB".into(),
        );
    }
    if lim.h2_max_concurrent_streams == 0 {
        err(
            Location::UNKNOWN,
            "limits.h2_max_concurrent_streams must be at least 1".into(),
        );
    }
    for (what, d) in [
        ("limits.header_read_timeout", lim.header_read_timeout),
        ("limits.idle_timeout", lim.idle_timeout),
    ] {
        if d.0.is_zero() {
            err(Location::UNKNOWN, format!("{what} must be longer than 0s"));
        }
    }

    for (name, value) in &config.security_headers.set {
        if http_header_name_invalid(name) {
            err(
                Location::UNKNOWN,
                format!("security_headers.set: {name:?} is not a valid header name"),
            );
        }
        if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
            err(
                Location::UNKNOWN,
                format!("security_headers.set.{name}: the value has control characters"),
            );
        }
    }
    if config.access_log.output.trim().is_empty() {
        err(
            Location::UNKNOWN,
            "access_log.output must be stdout, stderr, off or a file path".into(),
        );
    }

    for (name, up) in &config.upstreams {
        if up.targets.is_empty() {
            err(
                Location::UNKNOWN,
                format!("upstream {name:?} has no targets"),
            );
        }
        for t in &up.targets {
            if let Err(why) = check_target(&t.value) {
                err(t.referenced, format!("upstream {name:?}: {why}"));
            }
        }
        if up.connect_timeout.0.is_zero() || up.response_timeout.0.is_zero() {
            err(
                Location::UNKNOWN,
                format!("upstream {name:?}: timeouts must be longer than 0s"),
            );
        }
    }

    if let Some(r) = &config.redis {
        let url = &r.url.value;
        let scheme_ok = url.starts_with("redis://") || url.starts_with("unix://");
        if !scheme_ok || url.len() <= "redis://".len() {
            err(
                r.url.referenced,
                // The URL is not echoed: it may hold a password.
                "redis.url must be redis://[user:password@]host:port[/db] or unix:///path".into(),
            );
        }
        if r.timeout.0.is_zero() || r.breaker_cool_down.0.is_zero() || r.breaker_failures == 0 {
            err(
                r.url.referenced,
                "redis: timeout, breaker_failures and breaker_cool_down must be above 0".into(),
            );
        }
    }

    for (name, p) in &config.rate_limits {
        let at = p.rate.referenced;
        let mut bad = |msg: String| err(at, format!("rate_limits.{name}: {msg}"));
        if p.store == StoreKind::Redis && config.redis.is_none() {
            bad("store: redis needs the top-level redis section (its url)".into());
        }
        if p.store == StoreKind::Memory && p.on_store_failure != StoreFailure::Local {
            bad("on_store_failure applies to store: redis only".into());
        }
        if p.key.is_empty() {
            bad("key needs at least one part (ip, subject, route, header:<name>)".into());
        }
        for part in &p.key {
            let ok = matches!(part.as_str(), "ip" | "subject" | "route")
                || part
                    .strip_prefix("header:")
                    .is_some_and(|h| !http_header_name_invalid(h));
            if !ok {
                bad(format!(
                    "key part {part:?} is not ip, subject, route or header:<name>"
                ));
            }
        }
        if p.ipv6_prefix == 0 || p.ipv6_prefix > 128 {
            bad("ipv6_prefix must be between 1 and 128".into());
        }
        if p.cost == 0 {
            bad("cost must be at least 1".into());
        }
        if !(400..=599).contains(&p.status) {
            bad(format!("status {} is not an error status", p.status));
        }
        if p.max_keys == 0 {
            bad("max_keys must be at least 1".into());
        }
        if let Some(ban) = &p.ban {
            if ban.after == 0 || ban.within.0.is_zero() || ban.duration.0.is_zero() {
                bad("ban needs after >= 1 and non-zero within and duration".into());
            }
            if ban.max_duration < ban.duration {
                bad("ban.max_duration is shorter than ban.duration".into());
            }
        }
        let leaky = p.algorithm == RateAlgorithm::LeakyBucket;
        if !leaky && (p.delay.is_some() || p.nodelay) {
            bad("delay and nodelay apply to the leaky_bucket algorithm only".into());
        }
        if leaky {
            let secs = p.rate.value.period.as_secs();
            if p.rate.value.period.subsec_nanos() != 0 || (secs != 1 && secs != 60) {
                bad("leaky_bucket (nginx limit_req) rates are per second or per minute: 10r/s, 30r/m".into());
            }
            if p.nodelay && p.delay.is_some() {
                bad("use either delay or nodelay, not both".into());
            }
            if p.delay.unwrap_or(0) > p.burst.unwrap_or(0) {
                bad("delay cannot exceed burst".into());
            }
        }
        if matches!(
            p.algorithm,
            RateAlgorithm::Gcra | RateAlgorithm::TokenBucket
        ) && p.burst == Some(0)
        {
            bad("burst must be at least 1 (1 means no burst)".into());
        }
    }

    for (name, p) in &config.auth_providers {
        let at = p.issuer.referenced;
        let mut bad = |msg: String| err(at, format!("auth_providers.{name}: {msg}"));
        if p.issuer.value.is_empty() {
            bad("issuer must not be empty".into());
        }
        if p.algorithms.is_empty() {
            bad("algorithms must name at least one algorithm".into());
        }
        let mut hmac = false;
        let mut public = false;
        for alg in &p.algorithms {
            match alg.as_str() {
                "HS256" | "HS384" | "HS512" => hmac = true,
                "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384"
                | "EdDSA" | "Ed25519" => public = true,
                other if other.eq_ignore_ascii_case("none") => {
                    bad("alg none is never accepted (RFC 8725 §3.1)".into());
                }
                other => bad(format!(
                    "algorithm {other:?} is not one of RS256/384/512, PS256/384/512, ES256, ES384, EdDSA, Ed25519, HS256/384/512"
                )),
            }
        }
        if hmac && p.hmac_secret_file.is_none() {
            bad("HS* algorithms need hmac_secret_file".into());
        }
        if !hmac && p.hmac_secret_file.is_some() {
            bad("hmac_secret_file is set but no HS* algorithm is allowed".into());
        }
        if let Some(i) = &p.introspection {
            if p.jwks.is_some() || p.hmac_secret_file.is_some() {
                bad("a provider uses introspection or keys (jwks, hmac_secret_file), not both; use two providers".into());
            }
            if !(i.url.starts_with("https://") || i.url.starts_with("http://")) {
                bad(format!(
                    "introspection.url {:?} is not an http(s) URL",
                    i.url
                ));
            }
            if i.client_id.is_empty() {
                bad("introspection.client_id must not be empty".into());
            }
            if i.timeout.0.is_zero() {
                bad("introspection.timeout must be above 0".into());
            }
        }
        match &p.jwks {
            None if p.introspection.is_some() => {}
            None if public => {
                bad("public-key algorithms need jwks (file, url or discovery)".into())
            }
            None => {}
            Some(j) => {
                let sources = usize::from(j.file.is_some())
                    + usize::from(j.url.is_some())
                    + usize::from(j.discovery);
                if sources != 1 {
                    bad("jwks needs exactly one of file, url and discovery: true".into());
                }
                if let Some(u) = &j.url
                    && !(u.starts_with("https://") || u.starts_with("http://"))
                {
                    bad(format!("jwks.url {u:?} is not an http(s) URL"));
                }
                if j.timeout.0.is_zero()
                    || j.refetch_cooldown.0.is_zero()
                    || j.refresh_interval.0.is_zero()
                {
                    bad(
                        "jwks timeout, refetch_cooldown and refresh_interval must be above 0"
                            .into(),
                    );
                }
            }
        }
        if p.leeway.0 > std::time::Duration::from_secs(300) {
            bad("leeway is at most 300s".into());
        }
        if p.max_token_bytes.0 == 0 || p.max_token_bytes.0 > 64 * 1024 {
            bad("max_token_bytes must be between 1 and 64KiB".into());
        }
        let t = &p.token_from;
        let sources = usize::from(t.header.is_some())
            + usize::from(t.cookie.is_some())
            + usize::from(t.query.is_some());
        if sources > 1 {
            bad("token_from takes at most one of header, cookie and query".into());
        }
        if t.header.as_deref().is_some_and(http_header_name_invalid) {
            bad("token_from.header is not a valid header name".into());
        }
        for header in p.forward_claims.values() {
            if http_header_name_invalid(header) {
                bad(format!(
                    "forward_claims: {header:?} is not a valid header name"
                ));
            }
        }
    }

    if config.revocations.store == StoreKind::Redis && config.redis.is_none() {
        err(
            Location::UNKNOWN,
            "revocations: store: redis needs the top-level redis section (its url)".into(),
        );
    }
    if let Some(a) = &config.api_keys {
        if http_header_name_invalid(&a.header) {
            err(
                Location::UNKNOWN,
                format!("api_keys.header {:?} is not a valid header name", a.header),
            );
        }
        let mut seen = HashSet::new();
        for k in &a.keys {
            let hex = k.sha256.value.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                err(
                    k.sha256.referenced,
                    "api key digests are written sha256:<64 hex digits> (the key itself never goes in the file)".into(),
                );
            } else if !seen.insert(hex.to_ascii_lowercase()) {
                err(
                    k.sha256.referenced,
                    "this api key digest is listed twice".into(),
                );
            }
            if k.subject.is_empty() {
                err(k.sha256.referenced, "an api key needs a subject".into());
            }
        }
    }

    for (name, p) in &config.auth_providers {
        for (what, claim) in [
            ("roles_claim", &p.roles_claim),
            ("groups_claim", &p.groups_claim),
        ] {
            if !valid_claim_path(claim) {
                err(
                    p.issuer.referenced,
                    format!(
                        "auth provider {name:?}: {what} {claim:?} is not a claim name or dotted path"
                    ),
                );
            }
        }
    }
    if let Some(p) = &config.policies
        && p.files.is_empty()
    {
        err(
            p.schema.referenced,
            "policies: files needs at least one policy file".into(),
        );
    }

    let mut route_names = BTreeSet::new();
    for r in &config.routes {
        if let Some(auth) = &r.auth {
            if auth.providers.is_empty() && !auth.api_keys {
                err(
                    r.name.referenced,
                    format!(
                        "route {:?}: auth needs providers, api_keys: true, or both",
                        r.name.value
                    ),
                );
            }
            if auth.api_keys && config.api_keys.is_none() {
                err(
                    r.name.referenced,
                    format!(
                        "route {:?}: api_keys: true needs the top-level api_keys section",
                        r.name.value
                    ),
                );
            }
            for p in &auth.providers {
                if !config.auth_providers.contains_key(&p.value) {
                    err(
                        p.referenced,
                        format!(
                            "route {:?}: unknown auth provider {:?}",
                            r.name.value, p.value
                        ),
                    );
                }
            }
        }
        if let Some(a) = &r.authorize {
            check_authorize(config, r, a, &mut err);
        }
        let loc = r.name.referenced;
        if !route_names.insert(r.name.value.as_str()) {
            err(loc, format!("route name {:?} is used twice", r.name.value));
        }
        for p in &r.rate_limit {
            if !config.rate_limits.contains_key(&p.value) {
                err(
                    p.referenced,
                    format!("route {:?}: unknown rate limit {:?}", r.name.value, p.value),
                );
            }
        }
        if !config.upstreams.contains_key(&r.upstream.value) {
            let known: Vec<&str> = config.upstreams.keys().map(String::as_str).collect();
            err(
                r.upstream.referenced,
                format!(
                    "route {:?}: unknown upstream {:?} (defined: {})",
                    r.name.value,
                    r.upstream.value,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        if r.matcher.path.is_some() == r.matcher.prefix.is_some() {
            err(
                loc,
                format!(
                    "route {:?}: match needs exactly one of `path` and `prefix`",
                    r.name.value
                ),
            );
        }
        for p in [&r.matcher.path, &r.matcher.prefix].into_iter().flatten() {
            if !p.value.starts_with('/') {
                err(
                    p.referenced,
                    format!("route {:?}: {:?} must start with /", r.name.value, p.value),
                );
            }
        }
        for m in &r.matcher.methods {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase() || b == b'-') {
                err(
                    loc,
                    format!(
                        "route {:?}: method {m:?} must be an uppercase token like GET",
                        r.name.value
                    ),
                );
            }
        }
        if let Some(h) = &r.matcher.host {
            if h.is_empty() || h.contains('/') || h.contains(' ') {
                err(
                    loc,
                    format!("route {:?}: host {h:?} is not a host name", r.name.value),
                );
            } else if h.contains(':') && !h.starts_with('[') {
                err(
                    loc,
                    format!(
                        "route {:?}: host {h:?} has a port; hosts are matched without their port",
                        r.name.value
                    ),
                );
            }
        }
    }
    errors
}

fn http_header_name_invalid(name: &str) -> bool {
    name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks an upstream target: `host:port`, where host is a name, IPv4 or `[IPv6]`.
/// The template parameters of a route's `path` (`user_id` for `/users/{user_id}`).
fn template_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

fn valid_claim_path(p: &str) -> bool {
    !p.is_empty() && !p.split('.').any(str::is_empty)
}

fn check_authorize(
    config: &Config,
    r: &Route,
    a: &Authorize,
    err: &mut impl FnMut(Location, String),
) {
    let name = &r.name.value;
    let loc = r.name.referenced;
    let Some(auth) = &r.auth else {
        err(
            loc,
            format!("route {name:?}: authorize needs auth on the route (who the caller is)"),
        );
        return;
    };
    for p in &a.providers {
        let accepted = if p.value == "api_keys" {
            auth.api_keys
        } else {
            auth.providers.iter().any(|q| q.value == p.value)
        };
        if !accepted {
            err(
                p.referenced,
                format!(
                    "route {name:?}: authorize.providers names {:?}, which the route's auth does not accept",
                    p.value
                ),
            );
        }
    }
    for (what, req) in [
        ("scopes", &a.scopes),
        ("roles", &a.roles),
        ("groups", &a.groups),
    ] {
        if req.all_of.iter().chain(&req.any_of).any(String::is_empty) {
            err(
                loc,
                format!("route {name:?}: authorize.{what} has an empty name"),
            );
        }
    }
    let params = r
        .matcher
        .path
        .as_ref()
        .map(|p| template_params(&p.value))
        .unwrap_or_default();
    for o in &a.owner_match {
        let sources: Vec<&Spanned<String>> = [&o.path, &o.query, &o.header]
            .into_iter()
            .flatten()
            .collect();
        let [source] = sources.as_slice() else {
            let at = sources.first().map_or(loc, |s| s.referenced);
            err(
                at,
                format!(
                    "route {name:?}: an owner_match rule needs exactly one of path, query and header"
                ),
            );
            continue;
        };
        if let Some(p) = &o.path
            && !params.contains(&p.value.as_str())
        {
            err(
                p.referenced,
                format!(
                    "route {name:?}: owner_match path {:?} is not a parameter of the route's path template{}",
                    p.value,
                    if params.is_empty() {
                        " (it has none)".to_string()
                    } else {
                        format!(" ({})", params.join(", "))
                    }
                ),
            );
        }
        if let Some(h) = &o.header
            && http_header_name_invalid(&h.value)
        {
            err(
                h.referenced,
                format!("route {name:?}: {:?} is not a valid header name", h.value),
            );
        }
        if source.value.is_empty() {
            err(
                source.referenced,
                format!("route {name:?}: owner_match names an empty parameter"),
            );
        }
        if !valid_claim_path(&o.claim) {
            err(
                source.referenced,
                format!(
                    "route {name:?}: owner_match claim {:?} is not a claim name or dotted path",
                    o.claim
                ),
            );
        }
    }
    if !a.owner_exempt_roles.is_empty() && a.owner_match.is_empty() {
        err(
            loc,
            format!("route {name:?}: owner_exempt_roles without owner_match exempts from nothing"),
        );
    }
    if a.cedar && config.policies.is_none() {
        err(
            loc,
            format!(
                "route {name:?}: authorize.cedar needs the top-level policies section (schema and files)"
            ),
        );
    }
}

fn check_target(t: &str) -> Result<(), String> {
    let (host, port) = t
        .rsplit_once(':')
        .ok_or_else(|| format!("target {t:?} must be host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("target {t:?}: {port:?} is not a port number"))?;
    if port == 0 {
        return Err(format!("target {t:?}: port 0 is not allowed"));
    }
    if host.is_empty() || host.contains('/') || host.contains(' ') {
        return Err(format!("target {t:?}: {host:?} is not a host"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!("target {t:?}: write IPv6 addresses as [addr]:port"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
