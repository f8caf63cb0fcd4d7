//! The demo's policies (examples/policies), loaded for the tests and the benchmark.

#![allow(dead_code, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;

use rampart_authz::{LoadError, PolicyEngine, Source};

/// The demo's schema.
pub const SCHEMA_TEXT: &str = include_str!("../../../../examples/policies/rampart.cedarschema");

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies")
}

/// A file of examples/policies.
pub fn source(name: &str) -> Source {
    let path = examples().join(name);
    Source {
        name: name.to_owned(),
        text: std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}")),
    }
}

/// The demo's schema and enforced policies, and its shadow candidate when `shadow`.
pub fn engine(shadow: bool) -> Arc<PolicyEngine> {
    let shadow = if shadow {
        vec![source("candidate.cedar")]
    } else {
        vec![]
    };
    Arc::new(
        PolicyEngine::load(
            &source("rampart.cedarschema"),
            &[source("demo.cedar")],
            &shadow,
        )
        .unwrap_or_else(|e| panic!("{e:?}")),
    )
}

/// `schema` (as `schema.cedarschema`) with one policy file `policies/main.cedar`.
pub fn load_with(schema: &str, policies: &str) -> Result<PolicyEngine, Vec<LoadError>> {
    PolicyEngine::load(
        &Source {
            name: "schema.cedarschema".into(),
            text: schema.into(),
        },
        &[Source {
            name: "policies/main.cedar".into(),
            text: policies.into(),
        }],
        &[],
    )
}
