//! `DELETE /cache`: purge cached responses by key or by prefix.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

use crate::gateway::GatewayState;

/// `?key=HOST/PATH?QUERY` or `?prefix=HOST/PATH-PREFIX`, optionally
/// `&cluster=NAME` (default: every cluster with a cache).
#[derive(serde::Deserialize)]
pub(super) struct PurgeQuery {
    cluster: Option<String>,
    key: Option<String>,
    prefix: Option<String>,
}

/// Purge; answers `{"purged": N}`. A purge never removes a response stored
/// after it was asked for (the cache's generations see to that).
pub(super) async fn purge(
    State(state): State<Arc<GatewayState>>,
    Query(query): Query<PurgeQuery>,
) -> Response {
    let bad = |status: StatusCode, error: String| {
        (status, Json(json!({ "error": error }))).into_response()
    };
    let all = state.caches();
    let caches: Vec<_> = all
        .iter()
        .filter(|(cluster, _)| query.cluster.as_ref().is_none_or(|name| name == cluster))
        .collect();
    if caches.is_empty() {
        let what = match &query.cluster {
            Some(name) => format!("cluster {name:?} does not exist or has no cache"),
            None => "no cluster has a cache".to_owned(),
        };
        return bad(StatusCode::NOT_FOUND, what);
    }
    let purged: usize = match (&query.key, &query.prefix) {
        (Some(key), None) => caches.iter().map(|(_, cache)| cache.purge(key)).sum(),
        (None, Some(prefix)) => caches
            .iter()
            .map(|(_, cache)| cache.purge_prefix(prefix))
            .sum(),
        _ => {
            return bad(
                StatusCode::BAD_REQUEST,
                "give exactly one of key=HOST/PATH or prefix=HOST/PATH-PREFIX".to_owned(),
            );
        }
    };
    tracing::info!(key = ?query.key, prefix = ?query.prefix, purged, "cache purge");
    Json(json!({ "purged": purged })).into_response()
}
