//! Self-health at run time: measure every `[readiness]` criterion, judge
//! them with levee-core's [`evaluate`], and tell everyone who acts on the
//! verdict: `/ready`, the listeners (`when_impaired`), the log, metrics,
//! `/events` and webhooks.
//!
//! The verdict is recomputed every [`EVALUATE_EVERY`] and at once when a
//! probe changes state or the node is drained, so a listener set to `close`
//! stops accepting within a check cycle of the failure that caused it.

mod gate;
mod probes;

use std::sync::Arc;
use std::time::Duration;

use levee_core::health::{Health, HealthTracker};
use levee_core::readiness::{CriterionResult, Readiness, ReadinessTracker, Verdict, evaluate};
use levee_store::StoreHealth;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use gate::{ListenerGate, impaired_response};
pub use probes::spawn_probes;

use crate::cluster::Cluster;
use crate::config::{ProbeSettings, ReadinessSettings};
use crate::events::{EventLog, NewEvent, Severity};
use crate::metrics::Metrics;

/// How often the criteria are measured even when nothing wakes the
/// evaluator (endpoint health changes inside clusters are polled).
pub const EVALUATE_EVERY: Duration = Duration::from_millis(100);

/// One configured probe: its rise/fall state and latest failure.
pub(crate) struct ProbeState {
    pub settings: ProbeSettings,
    pub tracker: Mutex<HealthTracker>,
    /// The detailed reason of the latest failed run (`None` after a pass).
    pub last_error: Mutex<Option<String>>,
    pub up: prometheus_client::metrics::gauge::Gauge,
}

/// A probe as `/status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeStatus {
    /// Configured name.
    pub name: String,
    /// `memcached://127.0.0.1:11211`.
    pub target: String,
    /// Whether it impairs (true) or degrades (false) when failing.
    pub required: bool,
    /// `unknown`, `healthy` or `unhealthy`.
    pub state: &'static str,
    /// Why the state last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The latest failure, if the latest run failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A failing criterion as `/ready` and `/status` show it.
#[derive(Clone, Debug, Serialize)]
pub struct FailingCriterion {
    /// `min_healthy:app`, `endpoint:app/10.0.0.1:8000`, `probe:sessions`,
    /// `drain`.
    pub criterion: String,
    /// Whether it impairs the node (true) or only degrades it.
    pub required: bool,
    /// Why it fails.
    pub reason: String,
}

/// The node's self-health.
pub struct SelfHealth {
    /// The criteria and the clusters they measure, replaced by a reload.
    criteria: arc_swap::ArcSwap<Criteria>,
    pub(crate) probes: Vec<Arc<ProbeState>>,
    /// The reason of a manual drain, while drained.
    drain: Mutex<Option<String>>,
    tracker: Mutex<ReadinessTracker>,
    state: watch::Sender<Readiness>,
    /// Wakes the evaluator early (probe change, drain).
    pub(crate) wake: Notify,
    pub(crate) events: Arc<EventLog>,
    pub(crate) metrics: Arc<Metrics>,
    /// Names this levee in cache probe keys.
    pub(crate) instance: String,
    /// The shared breaker store's health, when a breaker is shared.
    store: std::sync::OnceLock<watch::Receiver<StoreHealth>>,
}

/// What readiness measures: the `[readiness]` criteria over the clusters.
struct Criteria {
    settings: ReadinessSettings,
    clusters: Vec<Arc<Cluster>>,
}

impl SelfHealth {
    /// Judge `settings` over `clusters` from now on (a config reload).
    /// Probes are started once, with the gateway: a change of them takes a
    /// restart.
    pub fn update(&self, settings: ReadinessSettings, clusters: Vec<Arc<Cluster>>) {
        self.criteria
            .store(Arc::new(Criteria { settings, clusters }));
        self.wake.notify_one();
    }

    /// The probes in force (to tell a reload that changes them).
    pub fn probe_settings(&self) -> Vec<ProbeSettings> {
        self.probes
            .iter()
            .map(|probe| probe.settings.clone())
            .collect()
    }

    /// Self-health over `settings`, measuring `clusters`.
    pub fn new(
        settings: ReadinessSettings,
        clusters: Vec<Arc<Cluster>>,
        events: Arc<EventLog>,
        metrics: Arc<Metrics>,
    ) -> SelfHealth {
        let now = Instant::now();
        let probes = settings
            .probes
            .iter()
            .map(|probe| {
                let up = metrics.probe_up(&probe.name);
                Arc::new(ProbeState {
                    settings: probe.clone(),
                    tracker: Mutex::new(HealthTracker::new(probe.params, now)),
                    last_error: Mutex::new(None),
                    up,
                })
            })
            .collect();
        let (state, _) = watch::channel(Readiness::Ready);
        // `levee_ready` stays 0 until the gateway has bound every listener.
        metrics.record_readiness(Readiness::Ready, false, false);
        SelfHealth {
            criteria: arc_swap::ArcSwap::from_pointee(Criteria { settings, clusters }),
            probes,
            drain: Mutex::new(None),
            tracker: Mutex::new(ReadinessTracker::new(now)),
            state,
            wake: Notify::new(),
            events,
            metrics,
            instance: instance_name(),
            store: std::sync::OnceLock::new(),
        }
    }

    /// Judge the shared breaker store's reachability too (criterion
    /// `store`, optional: an unreachable store degrades the node, it does
    /// not impair it, since traffic keeps flowing on local state).
    pub fn watch_store(&self, health: watch::Receiver<StoreHealth>) {
        let _ = self.store.set(health);
    }

    /// Follow the readiness state (listeners do, for `when_impaired`).
    pub fn subscribe(&self) -> watch::Receiver<Readiness> {
        self.state.subscribe()
    }

    /// The latest verdict.
    pub fn verdict(&self) -> Verdict {
        self.tracker.lock().verdict().clone()
    }

    /// The failing criteria of the latest verdict.
    pub fn failing(&self) -> Vec<FailingCriterion> {
        self.verdict()
            .failing
            .into_iter()
            .map(|failing| FailingCriterion {
                criterion: failing.criterion,
                required: failing.required,
                reason: failing.reason,
            })
            .collect()
    }

    /// Every probe, for `/status`.
    pub fn probe_status(&self) -> Vec<ProbeStatus> {
        self.probes
            .iter()
            .map(|probe| {
                let tracker = probe.tracker.lock();
                ProbeStatus {
                    name: probe.settings.name.clone(),
                    target: probe.settings.target.to_string(),
                    required: probe.settings.required,
                    state: tracker.health().as_str(),
                    reason: tracker.reason().map(str::to_owned),
                    last_error: probe.last_error.lock().clone(),
                }
            })
            .collect()
    }

    /// Force the impaired state until [`undrain`](Self::undrain). Returns
    /// false if already drained (the reason is updated).
    pub fn drain(&self, reason: Option<String>) -> bool {
        let reason = reason
            .filter(|reason| !reason.trim().is_empty())
            .unwrap_or_else(|| "drained by POST /drain".to_owned());
        let was = self.drain.lock().replace(reason.clone());
        self.events.record(NewEvent {
            kind: "drain",
            cluster: String::new(),
            endpoint: None,
            from: if was.is_some() { "drained" } else { "serving" }.to_owned(),
            to: "drained".to_owned(),
            reason,
            severity: Severity::Warning,
        });
        self.evaluate(Instant::now());
        was.is_none()
    }

    /// End a drain. Returns false if the node was not drained.
    pub fn undrain(&self) -> bool {
        let was = self.drain.lock().take();
        if was.is_some() {
            self.events.record(NewEvent {
                kind: "drain",
                cluster: String::new(),
                endpoint: None,
                from: "drained".to_owned(),
                to: "serving".to_owned(),
                reason: "undrained by POST /undrain".to_owned(),
                severity: Severity::Info,
            });
        }
        self.evaluate(Instant::now());
        was.is_some()
    }

    /// Measure every criterion, judge, and report a change of state.
    pub fn evaluate(&self, now: Instant) {
        let criteria = self.measure(now);
        let drain = self.drain.lock().clone();
        let verdict = evaluate(&criteria, drain.as_deref());
        let mut tracker = self.tracker.lock();
        let Some(change) = tracker.update(verdict, now) else {
            return;
        };
        drop(tracker);
        self.metrics
            .record_readiness(change.to, change.to.is_ready(), true);
        self.events.record(NewEvent {
            kind: "readiness",
            cluster: String::new(),
            endpoint: None,
            from: change.from.to_string(),
            to: change.to.to_string(),
            reason: change.verdict.summary(),
            severity: match change.to {
                Readiness::Impaired => Severity::Error,
                Readiness::Degraded => Severity::Warning,
                Readiness::Ready => Severity::Info,
            },
        });
        self.state.send_replace(change.to);
    }

    /// Every criterion's current result.
    fn measure(&self, now: Instant) -> Vec<CriterionResult> {
        let measured = self.criteria.load();
        let cluster_named = |name: &str| {
            measured
                .clusters
                .iter()
                .find(|cluster| cluster.name == name)
        };
        let mut criteria = Vec::new();
        for (cluster_name, needed) in &measured.settings.min_healthy {
            let name = format!("min_healthy:{cluster_name}");
            let Some(cluster) = cluster_named(cluster_name) else {
                continue;
            };
            let available = cluster.available_count(now);
            criteria.push(if available >= *needed {
                CriterionResult::passing(name, true)
            } else {
                CriterionResult::failing(
                    name,
                    true,
                    format!(
                        "{available} of {} endpoints available, need {needed} (out: {})",
                        cluster.len(),
                        named(&cluster.unavailable_endpoints(now))
                    ),
                )
            });
        }
        for required in &measured.settings.required_endpoints {
            let name = format!("endpoint:{required}");
            let address = required.endpoint.to_string();
            let cluster = cluster_named(&required.cluster);
            let available = cluster
                .and_then(|cluster| cluster.is_endpoint_available(&address, now))
                .unwrap_or(false);
            criteria.push(if available {
                CriterionResult::passing(name, true)
            } else {
                // "endpoint is unresolved", "endpoint is ejected", ...
                let state = cluster
                    .and_then(|cluster| {
                        let prefix = format!("{address} ");
                        cluster
                            .unavailable_endpoints(now)
                            .into_iter()
                            .find_map(|out| out.strip_prefix(&prefix).map(str::to_owned))
                    })
                    .unwrap_or_else(|| "unavailable".to_owned());
                CriterionResult::failing(name, true, format!("endpoint is {state}"))
            });
        }
        for probe in &self.probes {
            let name = format!("probe:{}", probe.settings.name);
            let required = probe.settings.required;
            let tracker = probe.tracker.lock();
            criteria.push(match tracker.health() {
                Health::Healthy => CriterionResult::passing(name, required),
                Health::Unknown => CriterionResult::failing(name, required, "not probed yet"),
                Health::Unhealthy => {
                    let reason = match (&*probe.last_error.lock(), tracker.reason()) {
                        (Some(error), _) => format!("{}: {error}", probe.settings.target),
                        (None, Some(reason)) => reason.to_owned(),
                        (None, None) => "failing".to_owned(),
                    };
                    CriterionResult::failing(name, required, reason)
                }
            });
        }
        if let Some(store) = self.store.get() {
            criteria.push(match &*store.borrow() {
                StoreHealth::Connected => CriterionResult::passing("store", false),
                StoreHealth::Degraded { since, error } => CriterionResult::failing(
                    "store",
                    false,
                    format!(
                        "shared breaker store unreachable since {}: {error}",
                        humantime::format_rfc3339_millis(*since)
                    ),
                ),
            });
        }
        criteria
    }

    /// Whether every probe has a first result.
    pub(crate) fn probes_settled(&self) -> bool {
        self.probes
            .iter()
            .all(|probe| probe.tracker.lock().health() != Health::Unknown)
    }
}

/// Re-evaluate every [`EVALUATE_EVERY`], or sooner when woken, until aborted.
pub fn spawn_evaluator(health: &Arc<SelfHealth>) -> JoinHandle<()> {
    let health = Arc::clone(health);
    tokio::spawn(async move {
        loop {
            health.evaluate(Instant::now());
            let _ = tokio::time::timeout(EVALUATE_EVERY, health.wake.notified()).await;
        }
    })
}

/// This levee's name in probe keys: `HOSTNAME` if set, else `levee-<pid>`,
/// so that levee instances sharing a cache never read each other's keys.
fn instance_name() -> String {
    match std::env::var("HOSTNAME") {
        Ok(host) if !host.is_empty() => format!("{host}-{}", std::process::id()),
        _ => format!("levee-{}", std::process::id()),
    }
}

/// The first few of `endpoints`, joined: "a:80 unresolved, b:80 unhealthy
/// and 3 more".
fn named(endpoints: &[String]) -> String {
    const NAMED: usize = 3;
    let mut text = endpoints
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if endpoints.len() > NAMED {
        text.push_str(&format!(" and {} more", endpoints.len() - NAMED));
    }
    text
}
