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

/// `GET /bans`: the bans in force, by policy.
async fn list_bans(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let rt = shared.runtime.load();
    let now = rt.rate_now();
    let mut out = serde_json::Map::new();
    let mut names: Vec<&String> = rt.rate_policies.keys().collect();
    names.sort();
    for name in names {
        let Some(bans) = rt.rate_policies.get(name).and_then(|(_, p)| p.bans()) else {
            continue;
        };
        let list: Vec<serde_json::Value> = bans
            .list(now)
            .into_iter()
            .map(|b| {
                serde_json::json!({
                    "client": b.client,
                    "remaining_seconds": b.remaining.as_secs_f64().ceil() as u64,
                    "strikes": b.strikes,
                })
            })
            .collect();
        out.insert(name.clone(), serde_json::Value::Array(list));
    }
    axum::Json(serde_json::Value::Object(out))
}

/// Which ban to lift.
#[derive(Debug, serde::Deserialize)]
struct LiftBan {
    policy: String,
    client: String,
}

/// `DELETE /bans?policy=P&client=C`: lifts a ban (and forgets the client's strikes).
async fn lift_ban(
    State(shared): State<Arc<Shared>>,
    axum::extract::Query(q): axum::extract::Query<LiftBan>,
) -> (StatusCode, &'static str) {
    let rt = shared.runtime.load();
    match rt.rate_policies.get(&q.policy).and_then(|(_, p)| p.bans()) {
        None => (StatusCode::NOT_FOUND, "no such policy with bans\n"),
        Some(bans) if bans.lift(&q.client) => {
            tracing::info!(policy = %q.policy, client = %q.client, "ban lifted");
            (StatusCode::OK, "lifted\n")
        }
        Some(_) => (StatusCode::NOT_FOUND, "no such ban\n"),
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
