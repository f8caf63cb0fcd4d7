//! Authorization from configuration: the Cedar policies (read and validated on every
//! load, so a reload picks up edited policy files) and each route's `Authorize` defense.

use std::path::Path;
use std::sync::Arc;

use http::HeaderName;
use rampart_authz::audit::{self, AuditRoute, Row};
use rampart_authz::{
    Authorize, Case, CedarRoute, Need, OwnerRule, PolicyEngine, Requirements, Source,
};
use rampart_config::{CaseRule, Config, ConfigError, ConfigErrors, Route};
use rampart_core::Clock;

/// Reads and validates the top-level `policies`, when there are any. Unreadable files
/// and policies that do not validate are errors naming the file and line.
pub fn engine(
    config: &Config,
    file: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<Arc<PolicyEngine>> {
    let p = config.policies.as_ref()?;
    let mut read = |f: &rampart_config::Spanned<std::path::PathBuf>, what: &str| {
        match std::fs::read_to_string(&f.value) {
            Ok(text) => Some(Source {
                name: f.value.display().to_string(),
                text,
            }),
            Err(e) => {
                errors.push(ConfigError::at(
                    file,
                    f.referenced,
                    format!("cannot read {what} {}: {e}", f.value.display()),
                ));
                None
            }
        }
    };
    let schema = read(&p.schema, "the Cedar schema");
    let files: Vec<Source> = p
        .files
        .iter()
        .filter_map(|f| read(f, "the policy file"))
        .collect();
    let shadow: Vec<Source> = p
        .shadow_files
        .iter()
        .filter_map(|f| read(f, "the shadow policy file"))
        .collect();
    let complete = files.len() == p.files.len() && shadow.len() == p.shadow_files.len();
    let schema = schema.filter(|_| complete)?;
    match PolicyEngine::load(&schema, &files, &shadow) {
        Ok(engine) => Some(Arc::new(engine)),
        Err(problems) => {
            errors.extend(
                problems
                    .into_iter()
                    .map(|e| ConfigError::in_file(Path::new(&e.file), e.line, e.message)),
            );
            None
        }
    }
}

/// What a route's `authorize` compiles to, before it becomes a defense.
pub struct RouteAuthz {
    requirements: Requirements,
    owner: Vec<OwnerRule>,
    owner_exempt: Vec<String>,
    cedar: Option<CedarRoute>,
    methods: Vec<String>,
    params: Vec<String>,
}

/// Compiles a route's `authorize`. `engine` is the loaded policies (`None` when they
/// failed to load, which is already an error).
pub fn route(
    r: &Route,
    template: &str,
    engine: Option<&Arc<PolicyEngine>>,
    file: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<RouteAuthz> {
    let a = r.authorize.as_ref()?;
    let need = |n: &rampart_config::Requirement| Need {
        all_of: n.all_of.clone(),
        any_of: n.any_of.clone(),
    };
    let requirements = Requirements {
        providers: a.providers.iter().map(|p| p.value.clone()).collect(),
        scopes: need(&a.scopes),
        roles: need(&a.roles),
        groups: need(&a.groups),
    };
    let mut owner = Vec::new();
    for o in &a.owner_match {
        let source = match (&o.path, &o.query, &o.header) {
            (Some(p), None, None) => rampart_authz::owner::Source::Path(p.value.clone()),
            (None, Some(q), None) => rampart_authz::owner::Source::Query(q.value.clone()),
            (None, None, Some(h)) => match HeaderName::from_bytes(h.value.as_bytes()) {
                Ok(name) => rampart_authz::owner::Source::Header(name),
                Err(_) => continue, // reported by the config check
            },
            _ => continue,
        };
        owner.push(OwnerRule {
            source,
            claim: o.claim.clone(),
            case: match o.case {
                CaseRule::Sensitive => Case::Sensitive,
                CaseRule::Insensitive => Case::AsciiInsensitive,
            },
        });
    }
    let methods: Vec<String> = r.matcher.methods.clone();
    let params: Vec<String> = template
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_owned)
        .collect();
    let mut cedar = None;
    if a.cedar {
        if methods.is_empty() {
            errors.push(ConfigError::at(
                file,
                r.name.referenced,
                format!(
                    "route {:?}: a route decided by Cedar must list its methods (each is an action of the schema)",
                    r.name.value
                ),
            ));
        } else if let Some(engine) = engine {
            match engine.route(&r.name.value, template, &methods) {
                Ok(route) => {
                    cedar = Some(CedarRoute {
                        engine: engine.clone(),
                        route,
                    })
                }
                Err(e) => errors.push(ConfigError::at(
                    file,
                    r.name.referenced,
                    format!("route {:?}: {e}", r.name.value),
                )),
            }
        }
    }
    Some(RouteAuthz {
        requirements,
        owner,
        owner_exempt: a.owner_exempt_roles.clone(),
        cedar,
        methods,
        params,
    })
}

impl RouteAuthz {
    /// The defense.
    pub fn defense(self, clock: Arc<dyn Clock>) -> Authorize {
        Authorize::new(
            self.requirements,
            self.owner,
            self.owner_exempt,
            self.cedar,
            clock,
        )
    }
}

/// The role audit of a configuration: for every route with `authorize`, which roles may
/// call which of its methods on whose objects.
pub fn role_audit(config: &Config, file: &Path) -> Result<Vec<Row>, ConfigErrors> {
    let mut errors = Vec::new();
    let engine = engine(config, file, &mut errors);
    let mut compiled = Vec::new();
    for r in &config.routes {
        let Some(template) = r
            .matcher
            .path
            .as_ref()
            .map(|p| p.value.clone())
            .or_else(|| r.matcher.prefix.as_ref().map(|p| format!("{}*", p.value)))
        else {
            continue;
        };
        if let Some(c) = route(r, &template, engine.as_ref(), file, &mut errors) {
            compiled.push((r.name.value.clone(), template, c));
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let any_method = ["GET", "POST", "PUT", "PATCH", "DELETE"].map(str::to_owned);
    let routes: Vec<AuditRoute<'_>> = compiled
        .iter()
        .map(|(name, template, c)| AuditRoute {
            name,
            template,
            methods: if c.methods.is_empty() {
                any_method.to_vec()
            } else {
                c.methods.clone()
            },
            params: c.params.clone(),
            requirements: &c.requirements,
            owner: &c.owner,
            owner_exempt: &c.owner_exempt,
            cedar: c.cedar.as_ref().map(|c| &c.route),
        })
        .collect();
    let engine = engine.as_deref();
    let roles = audit::roles_to_audit(&routes, engine);
    Ok(audit::audit(&routes, engine, &roles))
}
