//! The admin listener: `/metrics`, `/healthz`, `/readyz`. Loopback by default; it has no
//! authentication, so it must not be exposed.

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
