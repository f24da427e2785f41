//! Endpoint health shared with the fleet (`share_health`): every instance
//! publishes its own verdict on each endpoint through the store, and an
//! endpoint that `health_quorum` distinct instances judge bad is taken out
//! on every instance, including those that have sent it nothing yet.
//!
//! Two proxies that disagree about a node is the failure users of every
//! other gateway report: one ejects it, the other keeps sending half the
//! traffic into timeouts. The quorum keeps the opposite failure away: one
//! instance's broken path to a node (a bad route from one host) takes the
//! node out for that instance only, by its own evidence, never for all.
//!
//! The verdicts travel as breaker reports named `health:{cluster}:{address}`
//! (open = judged bad), so they share the store's write queue, expiry and
//! resync; each instance also reports `health-members`, which counts the
//! fleet (the quorum is 1 while an instance is alone). Only verdicts reached
//! on local evidence (checks, ejections) are reported, never the fleet's:
//! an instance echoing the fleet would hold a node out on its own echo. The
//! request path reads only the routing view; this task does the rest.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use levee_store::{FleetSnapshot, LocalReport, StateStore};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Cluster;
use crate::events::{EventLog, NewEvent, Severity};

/// How often local verdicts are compared with what was reported, and the
/// fleet's applied (also at once on every change of the fleet state).
const SYNC_EVERY: Duration = Duration::from_millis(200);

/// The report every instance makes so that the fleet can be counted.
pub const MEMBERS: &str = "health-members";

/// "Bad until checks pass" has no end of its own: far enough.
const UNTIL_RECOVERY: Duration = Duration::from_secs(365 * 24 * 3600);

/// The report name of an endpoint's health.
pub fn report_name(cluster: &str, address: &str) -> String {
    format!("health:{cluster}:{address}")
}

/// An endpoint the fleet took out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetOut {
    /// The instances that judged it bad.
    pub voters: Vec<String>,
    /// Their reasons, in words.
    pub reason: String,
}

/// What the fleet says of an endpoint, for `/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FleetHealthView {
    /// `out` (taken out by the fleet), `in`, or `unknown` (store
    /// unreachable: each instance follows its own view).
    pub verdict: &'static str,
    /// Instances whose live verdict is "bad" (this one included).
    pub voters: Vec<String>,
    /// Distinct instances needed to take it out now.
    pub quorum: u32,
    /// Instances of the fleet.
    pub members: u32,
}

impl Cluster {
    /// This instance's verdict on every endpoint, as reports.
    fn local_reports(&self, now: Instant, wall_now: SystemTime) -> Vec<(String, LocalReport)> {
        let control = self.control();
        self.endpoints
            .iter()
            .enumerate()
            .map(|(index, endpoint)| {
                let name = report_name(&self.name, &endpoint.address);
                let report = match control.local_verdict(index, now) {
                    None => LocalReport::closed("healthy", 0, 0, wall_now),
                    Some((reason, until)) => {
                        let lasts = until
                            .map_or(UNTIL_RECOVERY, |until| until.saturating_duration_since(now));
                        LocalReport::open(wall_now + lasts, reason, wall_now)
                    }
                };
                (name, report)
            })
            .collect()
    }

    /// Apply the fleet's verdicts: take out the endpoints a quorum judges
    /// bad, bring back the others; a stale snapshot (store unreachable)
    /// brings every endpoint back to this instance's own view.
    fn apply_fleet_health(&self, snapshot: &FleetSnapshot, events: &EventLog, now: Instant) {
        let stale = snapshot.is_stale();
        let members = snapshot
            .breakers
            .get(MEMBERS)
            .map_or(1, |state| state.reporting_instances.max(1));
        let quorum = self.settings.health_quorum.min(members);
        let mut control = self.control();
        let mut changed = false;
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            let name = report_name(&self.name, &endpoint.address);
            let voters = snapshot
                .breakers
                .get(&name)
                .map(|state| state.open_instances.clone())
                .unwrap_or_default();
            let votes = u32::try_from(voters.len()).unwrap_or(u32::MAX);
            let out = (!stale && votes >= quorum).then(|| FleetOut {
                voters: voters.clone(),
                reason: snapshot
                    .breakers
                    .get(&name)
                    .map_or_else(String::new, |state| match &state.verdict {
                        levee_store::FleetVerdict::Open { reason, .. } => instance_reasons(reason),
                        levee_store::FleetVerdict::Closed { .. } => String::new(),
                    }),
            });
            let state = &mut control.endpoints[index];
            state.fleet_seen = Some(FleetHealthView {
                verdict: match (&out, stale) {
                    (_, true) => "unknown",
                    (Some(_), false) => "out",
                    (None, false) => "in",
                },
                voters,
                quorum,
                members,
            });
            let was_out = state.fleet_out.is_some();
            if was_out == out.is_some() {
                state.fleet_out = out;
                continue;
            }
            changed = true;
            let (from, to, reason, severity) = match &out {
                Some(out) => (
                    "in",
                    "out",
                    format!(
                        "judged bad by {} of {members} instances (health_quorum {quorum}): {}",
                        out.voters.join(", "),
                        out.reason
                    ),
                    Severity::Error,
                ),
                None if stale => (
                    "out",
                    "in",
                    "store unreachable: this instance follows its own view".to_owned(),
                    Severity::Warning,
                ),
                None => (
                    "out",
                    "in",
                    format!(
                        "judged bad by {votes} of {members} instances, under the quorum of {quorum}"
                    ),
                    Severity::Info,
                ),
            };
            state.fleet_out = out;
            let available = control.is_available(index, now);
            endpoint.metrics.record_state(
                if to == "out" { "fleet-out" } else { "fleet-in" },
                available,
            );
            events.record(NewEvent {
                kind: "endpoint-fleet-health",
                cluster: self.name.clone(),
                endpoint: Some(endpoint.address.clone()),
                from: from.to_owned(),
                to: to.to_owned(),
                reason,
                severity,
            });
        }
        if changed {
            self.refresh_routing(&mut control, now);
        }
    }
}

/// "a: 5 consecutive failures; b: ..." out of the store's "open on 2 of 3
/// instances (quorum 1): a: ...; b: ...".
fn instance_reasons(reason: &str) -> String {
    reason
        .split_once("): ")
        .map_or(reason, |(_, each)| each)
        .to_owned()
}

/// Start the task that publishes this instance's verdicts on the endpoints
/// of every cluster that shares health, and applies the fleet's. `clusters`
/// gives the clusters in force that share health (a reload replaces them).
pub fn spawn_health_sync(
    store: Arc<dyn StateStore>,
    events: Arc<EventLog>,
    clusters: impl Fn() -> Vec<Arc<Cluster>> + Send + 'static,
) -> JoinHandle<()> {
    let mut fleet = store.subscribe();
    tokio::spawn(async move {
        store.report(
            MEMBERS,
            LocalReport::closed("member", 0, 0, SystemTime::now()),
        );
        // What was last reported per name: a report is queued (and written
        // to the store) only when the verdict changes.
        let mut reported: HashMap<String, (bool, String)> = HashMap::new();
        loop {
            let now = Instant::now();
            let wall_now = SystemTime::now();
            let snapshot = store.snapshot();
            for cluster in &clusters() {
                for (name, report) in cluster.local_reports(now, wall_now) {
                    let verdict = (report.open_until.is_some(), report.reason.clone());
                    if reported.get(&name) != Some(&verdict) {
                        reported.insert(name.clone(), verdict);
                        store.report(&name, report);
                    }
                }
                cluster.apply_fleet_health(&snapshot, &events, now);
            }
            tokio::select! {
                () = tokio::time::sleep(SYNC_EVERY) => {}
                changed = fleet.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    })
}
