//! `GET /breakers`, `GET /breakers/{name}` and the operator overrides
//! `POST /breakers/{name}/force-open`, `/force-closed`, `/reset`.
//!
//! An endpoint's breaker is named `<cluster>/<host:port>`: clients
//! URL-encode it (`app%2F10.0.0.1%3A8000`) and the `Path` extractor decodes
//! it after routing, so the `/` does not split the path.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use levee_store::Override;
use serde_json::json;
use tokio::time::Instant;

use crate::cluster::{BreakerView, ClusterBreaker};
use crate::gateway::GatewayState;

/// Every breaker.
pub(super) async fn list(State(state): State<Arc<GatewayState>>) -> Json<Vec<BreakerView>> {
    let now = Instant::now();
    Json(
        state
            .breakers()
            .iter()
            .map(|breaker| breaker.view(now))
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
    let breaker = find(&state, &name);
    if let Some(link) = breaker.as_ref().and_then(|breaker| breaker.fleet()) {
        // A shared breaker: the override goes to the store, so that every
        // instance applies it; an operator must learn if it did not.
        let at = SystemTime::now();
        let reason = "by the admin API".to_owned();
        let override_ = match action.as_str() {
            "force-open" => Override::ForceOpen { reason, at },
            "force-closed" => Override::ForceClosed { reason, at },
            _ => Override::Reset { at },
        };
        let written =
            tokio::time::timeout(STORE_WAIT, link.store.set_override(&name, Some(override_))).await;
        let error = match written {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some(format!("no answer within {STORE_WAIT:?}")),
        };
        if let Some(error) = error {
            tracing::error!(breaker = %name, %action, %error, "breaker override not stored");
            let body = json!({
                "error": format!("breaker store unreachable: the override was not applied ({error})"),
                "breaker": name,
            });
            return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        }
    }
    with_breaker(&state, &name, |breaker| act(breaker, now))
}

/// The longest the admin API waits for the store to take an override (the
/// store's own I/O timeout is shorter; this bounds a store that hangs).
const STORE_WAIT: Duration = Duration::from_secs(2);

fn find(state: &GatewayState, name: &str) -> Option<Arc<ClusterBreaker>> {
    state
        .breakers()
        .into_iter()
        .find(|breaker| breaker.name() == name)
}

fn with_breaker(
    state: &GatewayState,
    name: &str,
    view: impl FnOnce(&ClusterBreaker) -> BreakerView,
) -> Response {
    match find(state, name) {
        Some(breaker) => Json(view(&breaker)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no breaker named {name:?}") })),
        )
            .into_response(),
    }
}
