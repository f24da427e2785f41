//! The subscription the proxy drives its local breakers from: waits for a
//! change of the fleet view and hands over only the breakers that changed.
//!
//! Only changes, because [`Breaker::apply_remote`] compares instants and a
//! re-conversion of an unchanged wall-clock state gives slightly different
//! ones; and because a fleet of hundreds of breakers should not cost a lock
//! per breaker per update.
//!
//! [`Breaker::apply_remote`]: levee_core::breaker::Breaker::apply_remote

use std::collections::HashMap;

use tokio::sync::watch;

use crate::FleetState;
use crate::store::FleetMap;

/// One breaker whose fleet state changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetChange {
    /// The breaker's name.
    pub breaker: String,
    /// Its state before (`None`: not known before).
    pub previous: Option<FleetState>,
    /// Its state now (`None`: no longer known to the store).
    pub current: Option<FleetState>,
}

/// Follows a store's fleet view, yielding what changed.
pub struct FleetWatcher {
    rx: watch::Receiver<FleetMap>,
    seen: FleetMap,
}

impl FleetWatcher {
    /// Watch `rx` (from [`StateStore::subscribe`](crate::StateStore::subscribe)).
    /// The first [`changed`](Self::changed) yields every breaker already known.
    pub fn new(mut rx: watch::Receiver<FleetMap>) -> Self {
        rx.mark_changed();
        FleetWatcher {
            rx,
            seen: FleetMap::default(),
        }
    }

    /// Wait for the fleet view to change, then return the breakers whose
    /// state changed, by name. `None` when the store is gone.
    pub async fn changed(&mut self) -> Option<Vec<FleetChange>> {
        loop {
            self.rx.changed().await.ok()?;
            let current = self.rx.borrow_and_update().clone();
            let diff = diff(&self.seen, &current);
            self.seen = current;
            if !diff.is_empty() {
                return Some(diff);
            }
        }
    }
}

fn diff(old: &HashMap<String, FleetState>, new: &HashMap<String, FleetState>) -> Vec<FleetChange> {
    let mut changes: Vec<FleetChange> = new
        .iter()
        .filter(|(name, state)| old.get(*name) != Some(*state))
        .map(|(name, state)| FleetChange {
            breaker: name.clone(),
            previous: old.get(name).cloned(),
            current: Some(state.clone()),
        })
        .collect();
    changes.extend(
        old.iter()
            .filter(|(name, _)| !new.contains_key(*name))
            .map(|(name, state)| FleetChange {
                breaker: name.clone(),
                previous: Some(state.clone()),
                current: None,
            }),
    );
    changes.sort_by(|a, b| a.breaker.cmp(&b.breaker));
    changes
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::{FleetRules, LocalReport, MemoryStore, StateStore};

    #[tokio::test]
    async fn fleet_watcher_yields_only_the_breakers_that_changed() {
        let store = MemoryStore::new("a", FleetRules::new());
        let now = SystemTime::now();
        store.report("db", LocalReport::closed("ok", 0, 1, now));
        let mut watcher = FleetWatcher::new(store.subscribe());
        let first = tokio::time::timeout(Duration::from_secs(1), watcher.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.len(), 1);
        store.report(
            "cache",
            LocalReport::open(now + Duration::from_secs(9), "x", now),
        );
        let second = tokio::time::timeout(Duration::from_secs(1), watcher.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].breaker, "cache");
        assert_eq!(second[0].previous, None);
        assert!(second[0].current.as_ref().unwrap().is_open());
    }
}
