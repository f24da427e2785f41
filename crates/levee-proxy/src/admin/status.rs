//! `GET /status`: the gateway's state as JSON.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Json;
use serde::Serialize;

use crate::cluster::ClusterStatus;
use crate::gateway::{GatewayState, ListenerStatus};

#[derive(Serialize)]
pub(crate) struct StatusDocument {
    ready: bool,
    not_ready_reasons: Vec<String>,
    /// `ready`, `degraded` or `impaired`.
    readiness: &'static str,
    /// Every failing criterion, optional ones included.
    failing: Vec<crate::readiness::FailingCriterion>,
    probes: Vec<crate::readiness::ProbeStatus>,
    uptime_seconds: f64,
    /// The config in force: its generation and when it was loaded.
    config: crate::gateway::ConfigStatus,
    listeners: Vec<ListenerStatus>,
    clusters: Vec<ClusterStatus>,
    /// Endpoint names and the addresses they resolve to (absent when every
    /// endpoint is an IP address).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    names: Vec<crate::resolve::NameStatus>,
    /// The shared breaker store, when a breaker is shared.
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<crate::cluster::StoreStatus>,
}

pub(super) async fn status(State(state): State<Arc<GatewayState>>) -> Json<StatusDocument> {
    Json(document(&state))
}

/// The gateway's state as `/status` and the dashboard show it.
pub(crate) fn document(state: &GatewayState) -> StatusDocument {
    let readiness = state.readiness();
    StatusDocument {
        ready: readiness.is_ok(),
        not_ready_reasons: readiness.err().unwrap_or_default(),
        readiness: state.readiness_state().as_str(),
        failing: state.health.failing(),
        probes: state.health.probe_status(),
        uptime_seconds: state.started_at.elapsed().as_secs_f64(),
        config: state.config_status(),
        listeners: state.listener_status(),
        clusters: state.cluster_status(),
        names: state.name_status(),
        store: state.store.as_ref().map(crate::cluster::FleetStore::status),
    }
}
