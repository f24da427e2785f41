//! `GET /breakers`, `GET /breakers/{name}` and the operator overrides
//! `POST /breakers/{name}/force-open`, `/force-closed`, `/reset`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;
use tokio::time::Instant;

use crate::cluster::{BreakerView, ClusterBreaker};
use crate::gateway::GatewayState;

/// Every breaker.
pub(super) async fn list(State(state): State<Arc<GatewayState>>) -> Json<Vec<BreakerView>> {
    let now = Instant::now();
    Json(
        state
            .clusters
            .iter()
            .filter_map(|cluster| Some(cluster.breaker.as_ref()?.view(now)))
            .collect(),
    )
}

/// One breaker: `{"state":"open","is_open":true,"since":...,"reason":...}`.
pub(super) async fn one(
    State(state): State<Arc<GatewayState>>,
    Path(name): Path<String>,
) -> Response {
    with_breaker(&state, &name, |breaker| breaker.view(Instant::now()))
}

/// `force-open`, `force-closed` or `reset`.
pub(super) async fn act(
    State(state): State<Arc<GatewayState>>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let now = Instant::now();
    let act: fn(&ClusterBreaker, Instant) -> BreakerView = match action.as_str() {
        "force-open" => ClusterBreaker::force_open,
        "force-closed" => ClusterBreaker::force_closed,
        "reset" => ClusterBreaker::reset,
        _ => {
            let error =
                format!("unknown action {action:?}: expected force-open, force-closed or reset");
            return (StatusCode::NOT_FOUND, Json(json!({ "error": error }))).into_response();
        }
    };
    tracing::info!(breaker = %name, %action, "breaker override by the admin API");
    with_breaker(&state, &name, |breaker| act(breaker, now))
}

fn with_breaker(
    state: &GatewayState,
    name: &str,
    view: impl FnOnce(&ClusterBreaker) -> BreakerView,
) -> Response {
    let breaker = state
        .clusters
        .iter()
        .find_map(|cluster| cluster.breaker.as_ref().filter(|b| b.name() == name));
    match breaker {
        Some(breaker) => Json(view(breaker)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no breaker named {name:?}") })),
        )
            .into_response(),
    }
}
