//! The store of a single process: the default, and the reference the Redis
//! store must behave like.
//!
//! Clones share the state. [`MemoryStore::as_instance`] gives a handle
//! that reports under another instance id over the same state, which is
//! how tests (and a multi-worker process) exercise the quorum without a
//! network. A writer cannot vanish without the store vanishing too, so
//! reports written through [`StateStore::report`] do not expire; reports
//! inserted as another process would have written them
//! ([`MemoryStore::insert_report`]) do.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::aggregate::{BreakerRecord, aggregate_all};
use crate::health::HealthReporter;
use crate::model::StoredReport;
use crate::store::{BoxFuture, FleetMap, FleetSnapshot, StateStore};
use crate::{FleetRules, LocalReport, Override, StoreError, StoreHealth};

/// How often the fleet view is recomputed without writes, so open periods
/// that end and reports that expire show in `subscribe()`.
const TICK: Duration = Duration::from_secs(1);

/// Far enough that a report never expires (about 100 years).
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

struct Shared {
    rules: FleetRules,
    records: Mutex<HashMap<String, BreakerRecord>>,
    fleet: watch::Sender<FleetMap>,
    health: HealthReporter,
}

impl Shared {
    /// Recompute the fleet view and publish it if it changed.
    fn refresh(&self, now: SystemTime) -> FleetMap {
        let records = self.records.lock();
        let fleet = aggregate_all(
            &records,
            &HashMap::new(),
            "",
            |name| self.rules.quorum(name),
            now,
        );
        drop(records);
        self.fleet.send_if_modified(|current| {
            if **current == fleet {
                false
            } else {
                *current = Arc::new(fleet);
                true
            }
        });
        self.fleet.borrow().clone()
    }
}

/// Breaker state in this process's memory.
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
    instance_id: Arc<str>,
}

impl MemoryStore {
    /// An empty store, reporting as `instance_id`. Inside a tokio runtime,
    /// starts a once-a-second refresh of the fleet view that ends with the
    /// last clone.
    pub fn new(instance_id: impl Into<String>, rules: FleetRules) -> Self {
        let (fleet, _) = watch::channel(FleetMap::default());
        let shared = Arc::new(Shared {
            rules,
            records: Mutex::new(HashMap::new()),
            fleet,
            health: HealthReporter::connected("memory".to_owned()),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(tick(Arc::downgrade(&shared)));
        }
        MemoryStore {
            shared,
            instance_id: Arc::from(instance_id.into()),
        }
    }

    /// A handle over the same state that reports as `instance_id`.
    pub fn as_instance(&self, instance_id: impl Into<String>) -> Self {
        MemoryStore {
            shared: Arc::clone(&self.shared),
            instance_id: Arc::from(instance_id.into()),
        }
    }

    /// Store a report as another process would have written it, with its
    /// own expiry (for tests and for importing state).
    pub fn insert_report(&self, instance_id: &str, breaker: &str, stored: StoredReport) {
        self.shared
            .records
            .lock()
            .entry(breaker.to_owned())
            .or_default()
            .reports
            .insert(instance_id.to_owned(), stored);
        self.shared.refresh(SystemTime::now());
    }

    /// The fleet view at `now` (for tests under explicit times).
    pub fn snapshot_at(&self, now: SystemTime) -> FleetMap {
        self.shared.refresh(now)
    }
}

async fn tick(shared: Weak<Shared>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.refresh(SystemTime::now());
    }
}

impl StateStore for MemoryStore {
    fn instance_id(&self) -> &str {
        &self.instance_id
    }

    fn report(&self, breaker: &str, report: LocalReport) {
        let now = SystemTime::now();
        let stored = StoredReport {
            report,
            expires: now + NEVER,
        };
        self.insert_report(&self.instance_id, breaker, stored);
    }

    fn set_override<'a>(
        &'a self,
        breaker: &'a str,
        override_: Option<Override>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.shared
                .records
                .lock()
                .entry(breaker.to_owned())
                .or_default()
                .override_ = override_;
            self.shared.refresh(SystemTime::now());
            Ok(())
        })
    }

    fn snapshot(&self) -> FleetSnapshot {
        // The view as of the last write or tick: an `Arc` clone, so the
        // request path never aggregates.
        FleetSnapshot {
            breakers: self.shared.fleet.borrow().clone(),
            health: self.shared.health.current(),
        }
    }

    fn subscribe(&self) -> watch::Receiver<FleetMap> {
        self.shared.fleet.subscribe()
    }

    fn health(&self) -> watch::Receiver<StoreHealth> {
        self.shared.health.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FleetVerdict;

    fn open(reason: &str) -> LocalReport {
        let now = SystemTime::now();
        LocalReport::open(now + Duration::from_secs(30), reason, now)
    }

    #[tokio::test]
    async fn memory_store_opens_the_fleet_at_quorum_and_shows_it_to_subscribers() {
        let a = MemoryStore::new("a", FleetRules::new().with_quorum(2).unwrap());
        let b = a.as_instance("b");
        let mut fleet = b.subscribe();
        a.report("db", open("5 consecutive failures"));
        assert!(
            !b.snapshot().breakers["db"].is_open(),
            "one of two is not a quorum"
        );
        assert_eq!(b.snapshot().breakers["db"].open_instances, ["a"]);
        b.report("db", open("failure rate 80%"));
        assert!(fleet.has_changed().unwrap());
        let state = fleet.borrow_and_update()["db"].clone();
        assert!(state.is_open(), "{state:?}");
        assert!(!a.snapshot().is_stale());
        assert_eq!(*a.health().borrow(), StoreHealth::Connected);
    }

    #[tokio::test]
    async fn memory_store_overrides_apply_to_every_handle() {
        let a = MemoryStore::new("a", FleetRules::new());
        let b = a.as_instance("b");
        let at = SystemTime::now();
        a.set_override(
            "db",
            Some(Override::ForceOpen {
                reason: "maintenance".to_owned(),
                at,
            }),
        )
        .await
        .unwrap();
        assert!(b.snapshot().breakers["db"].is_open());
        b.report("db", open("x"));
        b.set_override(
            "db",
            Some(Override::ForceClosed {
                reason: "false alarm".to_owned(),
                at,
            }),
        )
        .await
        .unwrap();
        assert_eq!(
            a.snapshot().breakers["db"].verdict,
            FleetVerdict::Closed { forced: true }
        );
        // A reset forgets b's earlier report: the fleet is closed, unforced.
        a.set_override(
            "db",
            Some(Override::Reset {
                at: SystemTime::now() + Duration::from_millis(1),
            }),
        )
        .await
        .unwrap();
        assert_eq!(
            a.snapshot().breakers["db"].verdict,
            FleetVerdict::Closed { forced: false }
        );
        a.set_override("db", None).await.unwrap();
        assert!(
            a.snapshot().breakers["db"].is_open(),
            "cleared: b's report counts again"
        );
    }

    #[tokio::test]
    async fn memory_store_ignores_expired_reports() {
        let store = MemoryStore::new("a", FleetRules::new());
        let now = SystemTime::now();
        let stale = StoredReport {
            report: LocalReport::open(now + Duration::from_secs(60), "old", now),
            expires: now + Duration::from_secs(5),
        };
        store.insert_report("dead", "db", stale);
        assert!(store.snapshot_at(now + Duration::from_secs(1))["db"].is_open());
        let later = store.snapshot_at(now + Duration::from_secs(6));
        assert!(!later["db"].is_open());
        assert_eq!(later["db"].reporting_instances, 0);
    }
}
