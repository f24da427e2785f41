//! One loop per distinct probe target: configured probes that resolve to
//! the same kind and target run once and report under every name.

use std::collections::BTreeMap;
use std::sync::Arc;

use levee_core::Health;
use levee_probe::ProbeTarget;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{ProbeState, SelfHealth};
use crate::events::{NewEvent, Severity};

/// Start probing. Addresses are resolved once, at start (as for endpoint
/// health checks), and probes whose kind and resolved address are equal run
/// once: two names for one cache must not double its probe load. A target
/// probed under several names runs on the schedule and timeout of the first
/// of them; each name keeps its own rise/fall. A name that does not resolve
/// is probed by name (and fails to connect until it resolves).
pub async fn spawn_probes(health: &Arc<SelfHealth>) -> Vec<JoinHandle<()>> {
    let mut groups: BTreeMap<ProbeTarget, Vec<Arc<ProbeState>>> = BTreeMap::new();
    for probe in &health.probes {
        let written = &probe.settings.target;
        let resolved = tokio::net::lookup_host(written.address.as_str())
            .await
            .ok()
            .and_then(|mut addresses| addresses.next());
        let target = ProbeTarget {
            kind: written.kind.clone(),
            address: resolved.map_or_else(|| written.address.clone(), |a| a.to_string()),
        };
        groups.entry(target).or_default().push(Arc::clone(probe));
    }
    groups
        .into_iter()
        .map(|(target, members)| tokio::spawn(probe_loop(Arc::clone(health), target, members)))
        .collect()
}

async fn probe_loop(health: Arc<SelfHealth>, target: ProbeTarget, members: Vec<Arc<ProbeState>>) {
    let timeout = members[0].settings.params.timeout();
    loop {
        let outcome = levee_probe::run(&target, &health.instance, timeout).await;
        let now = Instant::now();
        let detail = outcome.error.as_ref().map(ToString::to_string);
        let mut changed = false;
        for member in &members {
            *member.last_error.lock() = detail.clone();
            let transition = member.tracker.lock().record(outcome.result, now);
            let Some(transition) = transition else {
                continue;
            };
            changed = true;
            member.up.set(i64::from(transition.to == Health::Healthy));
            let reason = match &detail {
                Some(detail) => format!("{target}: {detail} ({})", transition.reason),
                None => format!("{target}: {}", transition.reason),
            };
            health.events.record(NewEvent {
                kind: "probe-health",
                cluster: String::new(),
                endpoint: Some(format!("probe:{}", member.settings.name)),
                from: transition.from.to_string(),
                to: transition.to.to_string(),
                reason,
                severity: match (transition.to, member.settings.required) {
                    (Health::Unhealthy, true) => Severity::Error,
                    (Health::Unhealthy, false) => Severity::Warning,
                    _ => Severity::Info,
                },
            });
        }
        if changed {
            health.wake.notify_one();
        }
        let delay = members[0].tracker.lock().next_delay(&mut rand::rng());
        tokio::time::sleep(delay).await;
    }
}
