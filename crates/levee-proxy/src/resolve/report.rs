//! What a round of lookups changed, told: counted, logged and recorded as
//! `endpoint-resolution` events (one per cluster using the name).

use super::metrics::NameFamilies;
use super::{NameChange, NameState, Refreshed};
use crate::events::{EventLog, NewEvent, Severity};

/// Count, log and report what a round of lookups found. A name that starts
/// or stops having addresses is reported by the clusters rebuilt for it
/// (one event per cluster, with the endpoint's state); here: addresses that
/// change, lookups that fail while the last addresses stay in use, and
/// their recovery.
pub fn report(refreshed: &Refreshed, metrics: &NameFamilies, events: &EventLog) {
    for name in &refreshed.failed {
        metrics.record_failure(&name.to_string());
    }
    for change in &refreshed.changes {
        let name = change.name.to_string();
        metrics.set_addresses(&name, change.after.1.len());
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
                humantime::format_duration(super::RETRY_FAILED)
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
