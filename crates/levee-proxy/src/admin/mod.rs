//! The admin listener: liveness, readiness, status and metrics, on its own
//! port so it stays reachable whatever the traffic listeners are doing.

mod cache;
mod status;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::gateway::GatewayState;

/// Routes of the admin API.
pub fn router(state: Arc<GatewayState>) -> Router {
    Router::new()
        .route("/live", get(live))
        .route("/ready", get(ready))
        .route("/status", get(status::status))
        .route("/metrics", get(metrics))
        .route("/events", get(events))
        .route("/cache", axum::routing::delete(cache::purge))
        .with_state(state)
}

/// Serve the admin API until shutdown.
pub async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async move { crate::listener::stop_requested(&mut shutdown).await })
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "admin listener failed");
    }
}

/// The process is up and serving its admin port.
async fn live() -> &'static str {
    "live\n"
}

/// 200 when levee can take traffic, 503 with the reasons when not.
async fn ready(State(state): State<Arc<GatewayState>>) -> Response {
    match state.readiness() {
        Ok(()) => Json(json!({ "ready": true })).into_response(),
        Err(reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reasons": reasons })),
        )
            .into_response(),
    }
}

/// `GET /events?after=ID&limit=N`: recent state changes, oldest first.
#[derive(serde::Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: u64,
    #[serde(default = "default_event_limit")]
    limit: usize,
}

fn default_event_limit() -> usize {
    100
}

async fn events(
    State(state): State<Arc<GatewayState>>,
    Query(query): Query<EventsQuery>,
) -> Json<Vec<crate::events::Event>> {
    Json(state.events.since(query.after, query.limit))
}

/// Prometheus text exposition.
async fn metrics(State(state): State<Arc<GatewayState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
