//! Whether the store can be trusted right now, published on a `watch`
//! channel and logged once per transition.
//!
//! An outage of the store must be loud (issue 5: "nothing silently assumes
//! no failures"): one error line when it starts, one info line when it
//! ends, and a state `/status` can show with its since-when. Not one line
//! per failed command, which would bury the logs during the outage.

use std::time::SystemTime;

use tokio::sync::watch;

/// The store's reachability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreHealth {
    /// Reads and writes reach the store; snapshots are fresh within the
    /// resync interval.
    Connected,
    /// The store cannot be reached: snapshots hold the last known state,
    /// and the caller applies its `on_unreachable` fallback.
    Degraded {
        /// When the store was first found unreachable.
        since: SystemTime,
        /// The first error, in words.
        error: String,
    },
}

impl StoreHealth {
    /// True unless connected.
    pub fn is_degraded(&self) -> bool {
        matches!(self, StoreHealth::Degraded { .. })
    }
}

/// Owns the health `watch` and logs transitions.
pub(crate) struct HealthReporter {
    /// Names the store in log lines ("redis://10.0.0.5:6379 ns levee").
    store: String,
    tx: watch::Sender<StoreHealth>,
}

impl HealthReporter {
    /// A store not yet connected: degraded since now, without a log line
    /// (a first connection failure logs).
    pub(crate) fn connecting(store: String) -> Self {
        let (tx, _) = watch::channel(StoreHealth::Degraded {
            since: SystemTime::now(),
            error: "not connected yet".to_owned(),
        });
        HealthReporter { store, tx }
    }

    /// A store that cannot fail (memory).
    pub(crate) fn connected(store: String) -> Self {
        let (tx, _) = watch::channel(StoreHealth::Connected);
        HealthReporter { store, tx }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<StoreHealth> {
        self.tx.subscribe()
    }

    pub(crate) fn current(&self) -> StoreHealth {
        self.tx.borrow().clone()
    }

    /// The store failed. Logs at error level on the first failure after a
    /// connection (or at start), and keeps the first `since`.
    pub(crate) fn degraded(&self, error: &str) {
        let store = &self.store;
        self.tx.send_if_modified(|health| match health {
            StoreHealth::Connected => {
                tracing::error!(store = %store, error, "breaker state store unreachable: breakers fall back to on_unreachable; last known fleet state is stale");
                *health = StoreHealth::Degraded {
                    since: SystemTime::now(),
                    error: error.to_owned(),
                };
                true
            }
            StoreHealth::Degraded { error: first, .. } if first == "not connected yet" => {
                tracing::error!(store = %store, error, "breaker state store unreachable at start: breakers fall back to on_unreachable");
                *first = error.to_owned();
                true
            }
            StoreHealth::Degraded { .. } => false,
        });
    }

    /// The store answers again (and has been resynced).
    pub(crate) fn recovered(&self) {
        let store = &self.store;
        self.tx.send_if_modified(|health| match health {
            StoreHealth::Connected => false,
            StoreHealth::Degraded { since, .. } => {
                let down_for = SystemTime::now().duration_since(*since).unwrap_or_default();
                tracing::info!(store = %store, ?down_for, "breaker state store connected; fleet state resynced");
                *health = StoreHealth::Connected;
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degradation_keeps_its_first_since_and_error_until_recovery() {
        let health = HealthReporter::connecting("test".to_owned());
        let mut rx = health.subscribe();
        health.degraded("connection refused");
        let StoreHealth::Degraded { since, error } = health.current() else {
            panic!("expected degraded");
        };
        assert_eq!(error, "connection refused");
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        health.degraded("still refused");
        assert!(!rx.has_changed().unwrap(), "one transition, one change");
        assert_eq!(
            health.current(),
            StoreHealth::Degraded {
                since,
                error: "connection refused".to_owned()
            }
        );
        health.recovered();
        assert_eq!(health.current(), StoreHealth::Connected);
        health.degraded("reset by peer");
        assert!(health.current().is_degraded());
    }
}
