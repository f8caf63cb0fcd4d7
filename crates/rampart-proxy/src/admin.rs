//! The admin listener: `/metrics`, `/healthz`, `/readyz`, rate-limit bans (`/bans`) and
//! token revocations (`/revocations`). Loopback by default; it has no authentication, so it
//! must not be exposed.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::service::Shared;

/// Serves the admin API until `stop` turns true.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/bans", get(list_bans).delete(lift_ban))
        .route(
            "/revocations",
            get(list_revocations).post(revoke).delete(unrevoke),
        )
        .with_state(shared);
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "admin listener failed");
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
}

/// `GET /bans`: the bans in force, by policy. A policy whose shared store cannot be read
/// shows `{"error": "..."}` instead of its list, and the answer is then 503.
async fn list_bans(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let rt = shared.runtime.load_full();
    let now = rt.rate_now();
    let mut out = serde_json::Map::new();
    let mut status = StatusCode::OK;
    let mut names: Vec<&String> = rt.rate_policies.keys().collect();
    names.sort();
    for name in names {
        let Some((_, policy)) = rt.rate_policies.get(name).filter(|(_, p)| p.has_bans()) else {
            continue;
        };
        let entry = match policy.list_bans(now).await {
            Ok(list) => serde_json::Value::Array(
                list.into_iter()
                    .map(|b| {
                        serde_json::json!({
                            "client": b.client,
                            "remaining_seconds": b.remaining.as_secs_f64().ceil() as u64,
                            "strikes": b.strikes,
                        })
                    })
                    .collect(),
            ),
            Err(e) => {
                status = StatusCode::SERVICE_UNAVAILABLE;
                serde_json::json!({ "error": e })
            }
        };
        out.insert(name.clone(), entry);
    }
    (status, axum::Json(serde_json::Value::Object(out)))
}

/// Which ban to lift.
#[derive(Debug, serde::Deserialize)]
struct LiftBan {
    policy: String,
    client: String,
}

/// `DELETE /bans?policy=P&client=C`: lifts a ban (and forgets the client's strikes), in
/// the shared store for a shared policy, so every gateway of the fleet lets the client in.
async fn lift_ban(
    State(shared): State<Arc<Shared>>,
    axum::extract::Query(q): axum::extract::Query<LiftBan>,
) -> (StatusCode, String) {
    let rt = shared.runtime.load_full();
    let Some((_, policy)) = rt
        .rate_policies
        .get(&q.policy)
        .filter(|(_, p)| p.has_bans())
    else {
        return (StatusCode::NOT_FOUND, "no such policy with bans\n".into());
    };
    match policy.lift_ban(&q.client).await {
        Ok(true) => {
            tracing::info!(policy = %q.policy, client = %q.client, "ban lifted");
            (StatusCode::OK, "lifted\n".into())
        }
        Ok(false) => (StatusCode::NOT_FOUND, "no such ban\n".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

/// How long a revocation is kept when the request does not say: the longest token lifetime
/// we assume (a token issued before a cut-off cannot be valid longer than this after it).
const DEFAULT_REVOCATION_LIFETIME: u64 = 86_400;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `GET /revocations`: revoked tokens and subject cut-offs in force.
async fn list_revocations(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let rt = shared.runtime.load_full();
    match rt.revocations.list(unix_now()).await {
        Ok((tokens, subjects)) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({
                "tokens": tokens.iter().map(|t| serde_json::json!({
                    "issuer": t.issuer, "jti": t.jti, "until": t.until,
                })).collect::<Vec<_>>(),
                "subjects": subjects.iter().map(|s| serde_json::json!({
                    "issuer": s.issuer, "subject": s.subject, "before": s.before, "until": s.until,
                })).collect::<Vec<_>>(),
            })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "error": e.to_string() })),
        ),
    }
}

/// A revocation: of one token (`jti`) or of a subject's tokens issued before `before`.
/// The issuer is given as `issuer` or as the name of a configured `provider`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Revoke {
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    /// Seconds since the Unix epoch; default now (subject cut-offs only).
    #[serde(default)]
    before: Option<u64>,
    /// Seconds since the Unix epoch; default a day after `before` (or now).
    #[serde(default)]
    until: Option<u64>,
}

impl Revoke {
    fn issuer(&self, rt: &crate::runtime::Runtime) -> Result<String, String> {
        match (&self.issuer, &self.provider) {
            (Some(i), None) => Ok(i.clone()),
            (None, Some(p)) => rt
                .auth_providers
                .get(p)
                .map(|(_, provider)| provider.issuer().to_string())
                .ok_or_else(|| format!("no auth provider {p:?}")),
            _ => Err("give exactly one of issuer and provider".into()),
        }
    }
}

/// `POST /revocations` with a JSON [`Revoke`].
async fn revoke(
    State(shared): State<Arc<Shared>>,
    body: Result<axum::Json<Revoke>, axum::extract::rejection::JsonRejection>,
) -> (StatusCode, String) {
    use rampart_auth::revocation::{RevokedSubject, RevokedToken};
    let axum::Json(r) = match body {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let rt = shared.runtime.load_full();
    let issuer = match r.issuer(&rt) {
        Ok(i) => i,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let now = unix_now();
    let result = match (&r.jti, &r.subject) {
        (Some(jti), None) => {
            let until = r.until.unwrap_or(now + DEFAULT_REVOCATION_LIFETIME);
            rt.revocations
                .revoke_token(
                    RevokedToken {
                        issuer: issuer.clone(),
                        jti: jti.clone(),
                        until,
                    },
                    now,
                )
                .await
        }
        (None, Some(subject)) => {
            let before = r.before.unwrap_or(now);
            let until = r.until.unwrap_or(before + DEFAULT_REVOCATION_LIFETIME);
            rt.revocations
                .revoke_subject(
                    RevokedSubject {
                        issuer: issuer.clone(),
                        subject: subject.clone(),
                        before,
                        until,
                    },
                    now,
                )
                .await
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "give exactly one of jti and subject\n".into(),
            );
        }
    };
    match result {
        Ok(()) => {
            tracing::info!(issuer = %issuer, jti = ?r.jti, subject = ?r.subject, "revoked");
            (StatusCode::OK, "revoked\n".into())
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

/// Which revocation to remove: `issuer` or `provider`, and `jti` or `subject`.
#[derive(Debug, serde::Deserialize)]
struct Unrevoke {
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    subject: Option<String>,
}

/// `DELETE /revocations?provider=P&jti=J` (or `issuer=`, `subject=`).
async fn unrevoke(
    State(shared): State<Arc<Shared>>,
    axum::extract::Query(q): axum::extract::Query<Unrevoke>,
) -> (StatusCode, String) {
    let rt = shared.runtime.load_full();
    let as_revoke = Revoke {
        issuer: q.issuer,
        provider: q.provider,
        jti: None,
        subject: None,
        before: None,
        until: None,
    };
    let issuer = match as_revoke.issuer(&rt) {
        Ok(i) => i,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let result = match (&q.jti, &q.subject) {
        (Some(jti), None) => rt.revocations.unrevoke_token(&issuer, jti).await,
        (None, Some(subject)) => rt.revocations.unrevoke_subject(&issuer, subject).await,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "give exactly one of jti and subject\n".into(),
            );
        }
    };
    match result {
        Ok(true) => (StatusCode::OK, "removed\n".into()),
        Ok(false) => (StatusCode::NOT_FOUND, "no such revocation\n".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(shared): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    if shared.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}
