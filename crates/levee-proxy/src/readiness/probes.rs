//! One loop per distinct probe target: configured probes that resolve to
//! the same kind and target run once and report under every name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use levee_core::Health;
use levee_probe::ProbeTarget;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{ProbeState, SelfHealth};
use crate::events::{NewEvent, Severity};
use crate::resolve::{Lookup, NameTable};

/// Start probing. Probes whose kind and address are equal at start run
/// once: two names for one cache must not double its probe load. A target
/// probed under several names runs on the schedule and timeout of the first
/// of them; each name keeps its own rise/fall. A name is looked up again
/// before every probe (on the resolver endpoint names use), so a dependency
/// that moves is followed; one that does not resolve is probed by name (and
/// fails to connect until it resolves).
pub async fn spawn_probes(health: &Arc<SelfHealth>, names: &Arc<NameTable>) -> Vec<JoinHandle<()>> {
    let mut groups: BTreeMap<ProbeTarget, Vec<Arc<ProbeState>>> = BTreeMap::new();
    for probe in &health.probes {
        let written = &probe.settings.target;
        let target = ProbeTarget {
            kind: written.kind.clone(),
            address: current_address(names, &written.address).await,
        };
        groups.entry(target).or_default().push(Arc::clone(probe));
    }
    groups
        .into_iter()
        .map(|(target, members)| {
            tokio::spawn(probe_loop(
                Arc::clone(health),
                Arc::clone(names),
                target,
                members,
            ))
        })
        .collect()
}

/// `written` (`host:port`) with its name looked up: the first address
/// found, or `written` itself if it is an address or does not resolve.
async fn current_address(names: &NameTable, written: &str) -> String {
    if written.parse::<SocketAddr>().is_ok() {
        return written.to_owned();
    }
    let Some((host, port)) = written
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
    else {
        return written.to_owned();
    };
    match names.lookup(host, port).await {
        Lookup::Resolved(addresses, _) => addresses
            .first()
            .map_or_else(|| written.to_owned(), ToString::to_string),
        Lookup::Failed(_) => written.to_owned(),
    }
}

async fn probe_loop(
    health: Arc<SelfHealth>,
    names: Arc<NameTable>,
    mut target: ProbeTarget,
    members: Vec<Arc<ProbeState>>,
) {
    let timeout = members[0].settings.params.timeout();
    let written = members[0].settings.target.address.clone();
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            target.address = current_address(&names, &written).await;
        }
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
