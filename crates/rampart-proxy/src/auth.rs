//! Builds the token providers of a configuration: reads JWKS, secret and CA files, and
//! starts the key stores of providers whose keys are fetched.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use http::HeaderName;
use rampart_auth::apikeys::{ApiKey, ApiKeys, parse_digest};
use rampart_auth::introspect::{ClientAuth, IntrospectionSettings, Introspector};
use rampart_auth::jwks::{JwksOptions, KeySource, KeyStore};
use rampart_auth::{
    Alg, AlgSet, ClaimsPolicy, Family, KeySet, Provider, ProviderKeys, TokenFrom, Verification,
    Verifier,
};
use rampart_config::{AuthProvider, Config, ConfigError, IntrospectionAuth, Location};

use crate::runtime::Runtime;

/// The providers of `config` by name. A provider whose keys are fetched is taken over from
/// `previous` when its settings did not change, so its key store keeps its keys (and a
/// reload while the identity provider is down does not leave it without any).
pub(crate) fn providers(
    config: &Config,
    file: &Path,
    previous: Option<&Runtime>,
    errors: &mut Vec<ConfigError>,
) -> HashMap<String, (AuthProvider, Arc<Provider>)> {
    let mut out = HashMap::new();
    for (name, p) in &config.auth_providers {
        // Providers whose state is worth keeping: fetched keys, an introspection cache.
        let fetched =
            p.jwks.as_ref().is_some_and(|j| j.file.is_none()) || p.introspection.is_some();
        let reused = previous
            .and_then(|r| r.auth_providers.get(name))
            .filter(|(old, _)| fetched && unplaced(old) == unplaced(p))
            .map(|(_, provider)| provider.clone());
        let provider = match reused {
            Some(provider) => provider,
            None => match build(name, p) {
                Ok(provider) => Arc::new(provider),
                Err(e) => {
                    errors.push(ConfigError::at(
                        file,
                        p.issuer.referenced,
                        format!("auth_providers.{name}: {e}"),
                    ));
                    continue;
                }
            },
        };
        out.insert(name.clone(), (p.clone(), provider));
    }
    out
}

/// `p` without source locations, to compare settings across reloads.
fn unplaced(p: &AuthProvider) -> AuthProvider {
    let mut p = p.clone();
    p.issuer.referenced = Location::UNKNOWN;
    p.issuer.defined = Location::UNKNOWN;
    for f in [&mut p.hmac_secret_file]
        .into_iter()
        .chain(
            p.jwks
                .iter_mut()
                .flat_map(|j| [&mut j.file, &mut j.ca_file]),
        )
        .chain(p.introspection.iter_mut().map(|i| &mut i.ca_file))
        .flatten()
    {
        f.referenced = Location::UNKNOWN;
        f.defined = Location::UNKNOWN;
    }
    if let Some(i) = &mut p.introspection {
        i.client_secret_file.referenced = Location::UNKNOWN;
        i.client_secret_file.defined = Location::UNKNOWN;
    }
    p
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

/// Builds one provider from its (checked) settings.
fn build(name: &str, p: &AuthProvider) -> Result<Provider, String> {
    let algs: Vec<Alg> = p
        .algorithms
        .iter()
        .filter_map(|a| Alg::from_name(a))
        .collect();
    let mut policy = ClaimsPolicy::new(p.issuer.value.clone())
        .and_then(|c| c.with_audiences(p.audiences.iter().cloned()))
        .and_then(|c| c.with_leeway(p.leeway.0))
        .map(|c| c.require_exp(p.require_exp))
        .and_then(|c| c.with_roles_claim(p.roles_claim.clone()))
        .and_then(|c| c.with_groups_claim(p.groups_claim.clone()))
        .map_err(|e| e.to_string())?;
    if let Some(typ) = &p.typ {
        policy = policy.with_typ(typ.clone()).map_err(|e| e.to_string())?;
    }
    if !p.required_claims.is_empty() {
        policy = policy
            .with_required_claims(p.required_claims.iter().cloned())
            .map_err(|e| e.to_string())?;
    }
    let verifier = Verifier::new(AlgSet::of(&algs), policy)
        .map_err(|e| e.to_string())?
        .with_max_token_bytes(usize::try_from(p.max_token_bytes.0).unwrap_or(usize::MAX));

    let mut keys = KeySet::new();
    if let Some(secret_file) = &p.hmac_secret_file {
        let mut secret = read(&secret_file.value, "hmac_secret_file")?;
        // A file written by `echo` ends in a newline that is not part of the secret.
        while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            secret.pop();
        }
        let hmac: Vec<Alg> = algs
            .iter()
            .copied()
            .filter(|a| a.family() == Family::Hmac)
            .collect();
        keys = KeySet::with_secret(None, &secret, &hmac).map_err(|e| e.to_string())?;
    }
    if let Some(i) = &p.introspection {
        let mut secret = read(&i.client_secret_file.value, "client_secret_file")?;
        while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            secret.pop();
        }
        let secret = String::from_utf8(secret)
            .map_err(|_| "the client secret is not UTF-8 text".to_string())?;
        let mut settings = IntrospectionSettings::new(
            i.url.clone(),
            p.issuer.value.clone(),
            i.client_id.clone(),
            secret,
        );
        settings.auth = match i.client_auth {
            IntrospectionAuth::Basic => ClientAuth::Basic,
            IntrospectionAuth::Post => ClientAuth::Post,
        };
        settings.timeout = i.timeout.0;
        settings.cache_max_ttl = i.cache_ttl.0;
        settings.audiences = p.audiences.clone();
        settings.leeway = p.leeway.0;
        settings.extra_ca_pem = match &i.ca_file {
            Some(ca) => Some(read(&ca.value, "ca_file")?),
            None => None,
        };
        let introspector = Introspector::new(settings).map_err(|e| e.to_string())?;
        return Ok(Provider::new(
            name,
            &p.issuer.value,
            Verification::Introspection(introspector),
            token_from(p)?,
            forward(p)?,
        ));
    }
    let keys = match &p.jwks {
        None => ProviderKeys::Static(Arc::new(keys)),
        Some(j) => {
            if let Some(f) = &j.file {
                let jwks = KeySet::from_jwks(&read(&f.value, "jwks file")?)
                    .map_err(|e| format!("jwks file {}: {e}", f.value.display()))?;
                keys.extend(jwks).map_err(|e| e.to_string())?;
                ProviderKeys::Static(Arc::new(keys))
            } else {
                if !keys.is_empty() {
                    return Err(
                        "an HMAC secret cannot be combined with fetched keys; use two providers"
                            .into(),
                    );
                }
                let source = match &j.url {
                    Some(url) => KeySource::Url(url.clone()),
                    None => KeySource::Discovery(p.issuer.value.clone()),
                };
                let options = JwksOptions {
                    timeout: j.timeout.0,
                    refresh_interval: j.refresh_interval.0,
                    refetch_cooldown: j.refetch_cooldown.0,
                    extra_ca_pem: match &j.ca_file {
                        Some(ca) => Some(read(&ca.value, "ca_file")?),
                        None => None,
                    },
                    ..JwksOptions::default()
                };
                let store = KeyStore::new(name, source, options).map_err(|e| e.to_string())?;
                ProviderKeys::Fetched(Arc::new(store))
            }
        }
    };
    Ok(Provider::new(
        name,
        &p.issuer.value,
        Verification::Jwt { verifier, keys },
        token_from(p)?,
        forward(p)?,
    ))
}

fn token_from(p: &AuthProvider) -> Result<TokenFrom, String> {
    Ok(
        match (
            &p.token_from.header,
            &p.token_from.cookie,
            &p.token_from.query,
        ) {
            (Some(h), _, _) => TokenFrom::Header(header_name(h)?),
            (None, Some(c), _) => TokenFrom::Cookie(c.clone()),
            (None, None, Some(q)) => TokenFrom::Query(q.clone()),
            (None, None, None) => TokenFrom::Bearer,
        },
    )
}

fn forward(p: &AuthProvider) -> Result<Vec<(String, HeaderName)>, String> {
    p.forward_claims
        .iter()
        .map(|(claim, header)| Ok((claim.clone(), header_name(header)?)))
        .collect()
}

fn header_name(h: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
        .map_err(|_| format!("{h:?} is not a header name"))
}

/// The API keys of `config` and the header that carries them.
pub(crate) fn api_keys(
    config: &Config,
    file: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<(HeaderName, Arc<ApiKeys>)> {
    let a = config.api_keys.as_ref()?;
    let header = match header_name(&a.header) {
        Ok(h) => h,
        Err(e) => {
            errors.push(ConfigError::at(
                file,
                Location::UNKNOWN,
                format!("api_keys: {e}"),
            ));
            return None;
        }
    };
    let mut keys = Vec::with_capacity(a.keys.len());
    for k in &a.keys {
        match parse_digest(&k.sha256.value.to_ascii_lowercase()) {
            Ok(sha256) => keys.push(ApiKey {
                sha256,
                subject: k.subject.clone(),
                tier: k.tier.clone(),
                scopes: k.scopes.clone(),
            }),
            Err(e) => errors.push(ConfigError::at(file, k.sha256.referenced, e)),
        }
    }
    match ApiKeys::new(keys) {
        Ok(keys) => Some((header, Arc::new(keys))),
        Err(e) => {
            errors.push(ConfigError::at(
                file,
                Location::UNKNOWN,
                format!("api_keys: {e}"),
            ));
            None
        }
    }
}
