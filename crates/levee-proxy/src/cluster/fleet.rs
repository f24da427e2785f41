//! A cluster breaker shared with the fleet through a [`StateStore`]: what
//! the breaker needs to publish its local verdicts and to adopt the
//! fleet's, and the background tasks that feed it.
//!
//! The request path only reads the local breaker (and an atomic flag for
//! the store's health): it never waits on the store. Local verdicts are
//! handed to [`StateStore::report`], which queues them; fleet changes come
//! back through a [`FleetWatcher`] task, and store health through another.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use levee_store::{FleetState, FleetWatcher, StateStore, StoreHealth};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::task::JoinHandle;

use super::ClusterBreaker;
use crate::config::{FleetBreakerSettings, OnUnreachable, StoreKind};
use crate::events::{EventLog, NewEvent, Severity};

/// What a shared breaker knows of the fleet.
pub struct FleetLink {
    /// Where verdicts are published and the fleet's are read.
    pub(crate) store: Arc<dyn StateStore>,
    /// `shared`, `quorum`, `protect_locally`.
    pub(super) settings: FleetBreakerSettings,
    /// What to do while the store is unreachable.
    pub(super) on_unreachable: OnUnreachable,
    /// True while the store is unreachable; read on the request path, so an
    /// atomic rather than the store's `watch`.
    stale: AtomicBool,
    /// The fleet's latest state of this breaker (`None`: nothing reported
    /// yet), for `/status` and the quorum check of a local trip.
    pub(super) fleet: Mutex<Option<FleetState>>,
}

impl FleetLink {
    /// A link to `store`, stale until its health says otherwise.
    pub fn new(
        store: Arc<dyn StateStore>,
        settings: FleetBreakerSettings,
        on_unreachable: OnUnreachable,
    ) -> FleetLink {
        let stale = store.snapshot().is_stale();
        FleetLink {
            store,
            settings,
            on_unreachable,
            stale: AtomicBool::new(stale),
            fleet: Mutex::new(None),
        }
    }

    /// Whether the store is unreachable right now.
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// The `on_unreachable` fallback in force, if any: `None` while the
    /// store is reachable or when the fallback is the local breaker.
    pub(super) fn fallback(&self) -> Option<OnUnreachable> {
        (self.is_stale() && self.on_unreachable != OnUnreachable::Local)
            .then_some(self.on_unreachable)
    }

    /// Other instances whose report says open.
    pub(super) fn others_open(&self) -> usize {
        let own = self.store.instance_id();
        self.fleet.lock().as_ref().map_or(0, |state| {
            state
                .open_instances
                .iter()
                .filter(|id| id.as_str() != own)
                .count()
        })
    }
}

/// The store as `/status` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StoreStatus {
    /// `memory` or `redis`.
    pub kind: &'static str,
    /// This instance's id in the fleet.
    pub instance_id: String,
    /// `connected` or `degraded`.
    pub health: &'static str,
    /// When the store became unreachable (RFC 3339), while degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The first error of the degradation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What shared breakers do while it is unreachable.
    pub on_unreachable: &'static str,
    /// Commands this instance sent to the store per second, over the last
    /// 10 s (0 for `memory`).
    pub operations_per_second: f64,
    /// The server talked to, `host:port` (with Sentinel: the master of the
    /// moment).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Times the store came back on another server (Sentinel failovers).
    pub failovers: u64,
}

/// The store of a gateway whose breakers are shared.
pub struct FleetStore {
    /// The store itself.
    pub store: Arc<dyn StateStore>,
    /// `memory` or `redis`.
    pub kind: StoreKind,
    /// The fallback while unreachable.
    pub on_unreachable: OnUnreachable,
}

impl FleetStore {
    /// For `/status`.
    pub fn status(&self) -> StoreStatus {
        let health = self.store.health().borrow().clone();
        let (label, since, error) = match health {
            StoreHealth::Connected => ("connected", None, None),
            StoreHealth::Degraded { since, error } => (
                "degraded",
                Some(humantime::format_rfc3339_millis(since).to_string()),
                Some(error),
            ),
        };
        StoreStatus {
            kind: self.kind.as_str(),
            instance_id: self.store.instance_id().to_owned(),
            health: label,
            since,
            error,
            on_unreachable: self.on_unreachable.as_str(),
            operations_per_second: (self.store.operations_per_second() * 10.0).round() / 10.0,
            server: self.store.server(),
            failovers: self.store.failovers(),
        }
    }
}

/// Start the tasks that apply fleet changes to the shared ones of
/// `breakers` and follow the store's health (flags, `levee_store_up`, a
/// `store` event per transition).
pub fn spawn_fleet_sync(
    store: &FleetStore,
    breakers: &[Arc<ClusterBreaker>],
    events: &Arc<EventLog>,
    (store_up, store_failovers): (Gauge, Counter),
    on_health_change: impl Fn() + Send + 'static,
) -> Vec<JoinHandle<()>> {
    let shared: Vec<Arc<ClusterBreaker>> = breakers
        .iter()
        .filter(|breaker| breaker.fleet().is_some())
        .cloned()
        .collect();
    let mut watcher = FleetWatcher::new(store.store.subscribe());
    let changes_for = shared.clone();
    let changes = tokio::spawn(async move {
        while let Some(changes) = watcher.changed().await {
            for change in changes {
                let breaker = changes_for
                    .iter()
                    .find(|breaker| breaker.name() == change.breaker);
                if let Some(breaker) = breaker {
                    breaker.apply_fleet(change.previous.as_ref(), change.current.as_ref());
                }
            }
        }
    });

    let mut health = store.store.health();
    let events = Arc::clone(events);
    let describe = format!("{} store", store.kind.as_str());
    let fleet_store = Arc::clone(&store.store);
    let health_task = tokio::spawn(async move {
        // Whether the store was degraded at the previous change: an event
        // per transition, not per update of the error.
        let mut was_stale: Option<bool> = None;
        let mut failovers = fleet_store.failovers();
        loop {
            let current = health.borrow_and_update().clone();
            let stale = current.is_degraded();
            for breaker in &shared {
                if let Some(link) = breaker.fleet() {
                    link.stale.store(stale, Ordering::Release);
                }
            }
            store_up.set(i64::from(!stale));
            if was_stale.is_some_and(|was| was != stale) {
                let (from, to, reason, severity) = match &current {
                    StoreHealth::Connected => {
                        let now = fleet_store.failovers();
                        let moved = now > failovers;
                        store_failovers.inc_by(now.saturating_sub(failovers));
                        failovers = now;
                        let server = fleet_store.server().unwrap_or_default();
                        (
                            "degraded",
                            "connected",
                            if moved {
                                format!(
                                    "{describe} failed over: reachable again on {server}; state resynced"
                                )
                            } else {
                                format!("{describe} reachable again; state resynced")
                            },
                            if moved {
                                Severity::Warning
                            } else {
                                Severity::Info
                            },
                        )
                    }
                    StoreHealth::Degraded { since, error } => (
                        "connected",
                        "degraded",
                        format!(
                            "{describe} unreachable since {}: {error}",
                            humantime::format_rfc3339_millis(*since)
                        ),
                        // levee-store already logs the degradation at
                        // error level, once: the event's own log line stays
                        // at warning so an outage is one error line.
                        Severity::Warning,
                    ),
                };
                events.record(NewEvent {
                    kind: "store",
                    cluster: String::new(),
                    endpoint: None,
                    from: from.to_owned(),
                    to: to.to_owned(),
                    reason,
                    severity,
                });
            }
            was_stale = Some(stale);
            on_health_change();
            if health.changed().await.is_err() {
                return;
            }
        }
    });
    vec![changes, health_task]
}

/// Wall-clock time of a local instant.
pub(super) fn wall_of(at: tokio::time::Instant, now: tokio::time::Instant) -> SystemTime {
    let wall = SystemTime::now();
    if at >= now {
        wall + (at - now)
    } else {
        wall.checked_sub(now - at).unwrap_or(wall)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use levee_core::breaker::{BreakerParams, CallOutcome, StateName};
    use levee_store::{FleetRules, MemoryStore};
    use tokio::time::Instant;

    use super::*;
    use crate::cluster::ClusterBreaker;
    use crate::metrics::Metrics;

    fn shared_breaker(
        quorum: u32,
        protect_locally: bool,
        on_unreachable: OnUnreachable,
    ) -> (ClusterBreaker, Arc<EventLog>) {
        let events = Arc::new(EventLog::default());
        let params = BreakerParams::builder()
            .consecutive_failures(2)
            .build()
            .expect("params");
        let breaker = ClusterBreaker::new(
            "app",
            None,
            params,
            Metrics::new().breaker("app"),
            Arc::clone(&events),
            Instant::now(),
        );
        let rules = FleetRules::new().with_quorum(quorum).expect("rules");
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new("gw-a", rules));
        let settings = FleetBreakerSettings {
            shared: true,
            quorum,
            protect_locally,
        };
        breaker.share(FleetLink::new(store, settings, on_unreachable));
        (breaker, events)
    }

    fn fail(breaker: &ClusterBreaker) {
        let call = breaker.acquire(Instant::now()).expect("let through");
        call.finish(Some(CallOutcome::failure(Duration::from_millis(1))));
    }

    #[tokio::test]
    async fn below_the_quorum_without_protect_locally_a_local_trip_is_undone() {
        let (breaker, events) = shared_breaker(2, false, OnUnreachable::Local);
        fail(&breaker);
        fail(&breaker);
        let view = breaker.view(Instant::now());
        assert_eq!(view.state, StateName::Closed.as_str(), "{view:?}");
        let reasons: Vec<String> = events
            .since(0, 100)
            .into_iter()
            .map(|event| event.reason)
            .collect();
        assert!(
            reasons
                .iter()
                .any(|reason| reason.contains("below the quorum of 2")),
            "{reasons:?}"
        );
    }

    #[tokio::test]
    async fn below_the_quorum_with_protect_locally_the_instance_stays_open() {
        let (breaker, _events) = shared_breaker(2, true, OnUnreachable::Local);
        fail(&breaker);
        fail(&breaker);
        assert!(breaker.view(Instant::now()).is_open);
    }

    #[tokio::test]
    async fn while_the_store_is_unreachable_the_fallback_applies() {
        let (open, _) = shared_breaker(1, true, OnUnreachable::Open);
        let link = open.fleet().expect("shared");
        link.stale.store(true, Ordering::Release);
        let rejected = open.acquire(Instant::now()).err().expect("fails fast");
        assert!(rejected.reason.contains("store unreachable"), "{rejected}");
        link.stale.store(false, Ordering::Release);
        assert!(open.acquire(Instant::now()).is_ok());

        let (closed, _) = shared_breaker(1, true, OnUnreachable::Closed);
        closed.force_open(Instant::now());
        let link = closed.fleet().expect("shared");
        link.stale.store(true, Ordering::Release);
        let call = closed.acquire(Instant::now()).expect("let through");
        call.finish(Some(CallOutcome::failure(Duration::from_millis(1))));
    }
}
