//! The admin listener: the dashboard, liveness, readiness, status and
//! metrics, on its own port so it stays reachable whatever the traffic
//! listeners are doing.

mod breakers;
mod cache;
mod dashboard;
mod status;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::json;

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
        .route("/breakers", get(breakers::list))
        .route("/breakers/{name}", get(breakers::one))
        .route("/breakers/{name}/{action}", post(breakers::act))
        .route("/drain", post(drain))
        .route("/undrain", post(undrain))
        .route("/reload", post(reload))
        .merge(dashboard::routes())
        .with_state(state)
}

/// The process is up and serving its admin port.
async fn live() -> &'static str {
    "live\n"
}

/// 200 when levee can take traffic (ready or degraded), 503 with the
/// reasons when not (starting, draining for shutdown, impaired). `failing`
/// lists every failing criterion, optional ones (degraded) included.
async fn ready(State(state): State<Arc<GatewayState>>) -> Response {
    let failing = state.health.failing();
    let readiness = state.readiness_state().as_str();
    match state.readiness() {
        Ok(()) => Json(json!({ "ready": true, "state": readiness, "failing": failing }))
            .into_response(),
        Err(reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "state": readiness, "reasons": reasons, "failing": failing })),
        )
            .into_response(),
    }
}

/// `POST /drain[?reason=...]` (or the reason as the body, plain text or
/// `{"reason": "..."}`): impaired until `POST /undrain`.
#[derive(serde::Deserialize)]
struct DrainQuery {
    reason: Option<String>,
}

async fn drain(
    State(state): State<Arc<GatewayState>>,
    Query(query): Query<DrainQuery>,
    body: String,
) -> Response {
    let from_body = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|value| {
            value
                .get("reason")
                .and_then(|r| r.as_str())
                .map(str::to_owned)
        })
        .or_else(|| Some(body.trim().to_owned()).filter(|text| !text.is_empty()));
    let newly = state.health.drain(query.reason.or(from_body));
    Json(json!({ "drained": true, "was_drained": !newly, "failing": state.health.failing() }))
        .into_response()
}

/// `POST /reload`: read the config file again and apply it. 200 with what
/// changed (and what takes a restart), or 400 with every problem: the
/// running config stays.
async fn reload(State(state): State<Arc<GatewayState>>) -> Response {
    match state.reload_from_file().await {
        Ok(reloaded) => Json(json!({ "reloaded": true, "result": reloaded })).into_response(),
        Err(error) => {
            let status = match error {
                crate::gateway::ReloadError::NoFile => StatusCode::CONFLICT,
                crate::gateway::ReloadError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            (
                status,
                Json(json!({ "reloaded": false, "errors": error.problems() })),
            )
                .into_response()
        }
    }
}

/// `POST /undrain`: end a drain.
async fn undrain(State(state): State<Arc<GatewayState>>) -> Response {
    let was = state.health.undrain();
    Json(json!({ "drained": false, "was_drained": was, "state": state.readiness_state().as_str() }))
        .into_response()
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
