//! Admin routes that switch the demo backends between modes.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use levee_testkit::backend::{Backend, Mode};
use serde::Serialize;
use serde_json::json;

use super::traffic::{Traffic, TrafficSummary};

type Backends = Arc<Vec<Backend>>;

/// `GET /demo/backends`, `POST /demo/backends/{name}/{mode}`, `GET /demo/traffic`.
pub(super) fn router(backends: Backends, traffic: Arc<Traffic>) -> axum::Router {
    Router::new()
        .route("/demo/backends", get(list))
        .route("/demo/backends/{name}/{mode}", post(set_mode))
        .with_state(backends)
        .route(
            "/demo/traffic",
            get(|State(traffic): State<Arc<Traffic>>| async move {
                Json::<TrafficSummary>(traffic.summary())
            })
            .with_state(traffic),
        )
}

#[derive(Serialize)]
struct BackendView {
    name: String,
    address: String,
    mode: String,
    requests_received: u64,
}

fn view(backend: &Backend) -> BackendView {
    BackendView {
        name: backend.name().to_owned(),
        address: backend.addr().to_string(),
        mode: backend.mode().to_string(),
        requests_received: backend.requests_received(),
    }
}

async fn list(State(backends): State<Backends>) -> Json<Vec<BackendView>> {
    Json(backends.iter().map(view).collect())
}

async fn set_mode(
    State(backends): State<Backends>,
    Path((name, mode)): Path<(String, String)>,
) -> Response {
    let Some(backend) = backends.iter().find(|b| b.name() == name) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no demo backend named {name:?}") })),
        )
            .into_response();
    };
    let mode: Mode = match mode.parse() {
        Ok(mode) => mode,
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": error.to_string() })),
            )
                .into_response();
        }
    };
    match backend.set_mode(mode).await {
        // The backend logs the change itself.
        Ok(()) => Json(view(backend)).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": format!("cannot switch {name} to {mode}: {error}") })),
        )
            .into_response(),
    }
}
