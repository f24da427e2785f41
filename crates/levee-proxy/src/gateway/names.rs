//! Following endpoint names: once a second, the names whose interval (or
//! TTL) is up are looked up again; when one resolves to other addresses,
//! the clusters using it are rebuilt (`reload::apply_names`), so traffic and
//! health checks move to the new addresses, and endpoints of addresses that
//! disappeared drain.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{GatewayState, Live, reload};
use crate::events::{EventLog, NewEvent, Severity};
use crate::metrics::Metrics;
use crate::resolve::{NameChange, NameState, Refreshed};

/// How often the table is looked at.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Follow the names of the config in force until the gateway stops.
pub(super) fn spawn_follower(
    state: &Arc<GatewayState>,
    live: &Arc<tokio::sync::Mutex<Live>>,
) -> JoinHandle<()> {
    let state = Arc::downgrade(state);
    let live = Arc::downgrade(live);
    tokio::spawn(follow(state, live))
}

async fn follow(state: Weak<GatewayState>, live: Weak<tokio::sync::Mutex<Live>>) {
    let mut ticks = tokio::time::interval(LOOK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let refreshed = state.names.refresh_due(Instant::now()).await;
        report(&refreshed, &state.metrics, &state.events);
        if !refreshed.addresses_changed() {
            continue;
        }
        let Some(live) = live.upgrade() else {
            return;
        };
        let mut live = live.lock().await;
        if let Err(error) = reload::apply_names(&state, &mut live).await {
            tracing::error!(%error, "endpoint names changed but the clusters could not be rebuilt; the previous addresses stay in use");
        }
    }
}

/// Count, log and report what a round of lookups found. A name that starts
/// or stops having addresses is reported by the clusters rebuilt for it
/// (one event per cluster, with the endpoint's state); here: addresses that
/// change, lookups that fail while the last addresses stay in use, and
/// their recovery.
pub(super) fn report(refreshed: &Refreshed, metrics: &Metrics, events: &EventLog) {
    for name in &refreshed.failed {
        metrics.names().record_failure(&name.to_string());
    }
    for change in &refreshed.changes {
        let name = change.name.to_string();
        metrics.names().set_addresses(&name, change.after.1.len());
        let Some((from, to, reason, severity)) = describe(change) else {
            continue;
        };
        match severity {
            Severity::Info => tracing::info!(endpoint = %name, from, to, %reason, "endpoint name"),
            _ => tracing::warn!(endpoint = %name, from, to, %reason, "endpoint name"),
        }
        for cluster in &change.clusters {
            events.record(NewEvent {
                kind: "endpoint-resolution",
                cluster: cluster.clone(),
                endpoint: Some(name.clone()),
                from: from.clone(),
                to: to.clone(),
                reason: reason.clone(),
                severity,
            });
        }
    }
}

/// The event for a change the clusters do not report themselves.
fn describe(change: &NameChange) -> Option<(String, String, String, Severity)> {
    let (before_state, before) = &change.before;
    let (after_state, after) = &change.after;
    if before.is_empty() || after.is_empty() {
        // Starts or stops having addresses: the rebuilt clusters say so.
        return None;
    }
    let list = |addresses: &[std::net::SocketAddr]| {
        addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if before != after {
        let added = after.iter().filter(|a| !before.contains(a)).count();
        let gone = before.iter().filter(|a| !after.contains(a)).count();
        return Some((
            list(before),
            list(after),
            format!(
                "the name resolves to other addresses: {added} new endpoint(s) in slow start, {gone} draining"
            ),
            Severity::Info,
        ));
    }
    match (before_state, after_state) {
        (_, NameState::Failing(why)) => Some((
            "resolved".to_owned(),
            "stale".to_owned(),
            format!(
                "lookup failed ({why}); the last {} address(es) stay in use, looked up again within {}",
                after.len(),
                humantime::format_duration(crate::resolve::RETRY_FAILED)
            ),
            Severity::Warning,
        )),
        (NameState::Failing(_), NameState::Resolved) => Some((
            "stale".to_owned(),
            "resolved".to_owned(),
            "lookups succeed again, with the same addresses".to_owned(),
            Severity::Info,
        )),
        _ => None,
    }
}
