//! Whether the store can be trusted right now, published on a `watch`
//! channel and logged once per transition.
//!
//! An outage of the store must be loud (issue 5: "nothing silently assumes
//! no failures"): one error line when it starts, one info line when it
//! ends, and a state `/status` can show with its since-when. Not one line
//! per failed command, which would bury the logs during the outage.

use std::sync::atomic::{AtomicBool, Ordering};
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

/// The error of a store that has not tried to connect yet.
pub(crate) const NOT_CONNECTED_YET: &str = "not connected yet";

/// Owns the health `watch` and logs transitions.
pub(crate) struct HealthReporter {
    /// Names the store in log lines ("redis://10.0.0.5:6379 ns levee").
    store: String,
    tx: watch::Sender<StoreHealth>,
    /// Whether the current degradation was logged: the initial "not
    /// connected yet" state is not, until a real failure says why.
    logged: AtomicBool,
}

impl HealthReporter {
    /// A store not yet connected: degraded since now, without a log line
    /// (a first connection failure logs).
    pub(crate) fn connecting(store: String) -> Self {
        let (tx, _) = watch::channel(StoreHealth::Degraded {
            since: SystemTime::now(),
            error: NOT_CONNECTED_YET.to_owned(),
        });
        HealthReporter {
            store,
            tx,
            logged: AtomicBool::new(false),
        }
    }

    /// A store that cannot fail (memory).
    pub(crate) fn connected(store: String) -> Self {
        let (tx, _) = watch::channel(StoreHealth::Connected);
        HealthReporter {
            store,
            tx,
            logged: AtomicBool::new(false),
        }
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
        let first = !self.logged.swap(true, Ordering::Relaxed);
        self.tx.send_if_modified(|health| match health {
            StoreHealth::Connected => {
                *health = StoreHealth::Degraded {
                    since: SystemTime::now(),
                    error: error.to_owned(),
                };
                true
            }
            StoreHealth::Degraded {
                error: reported, ..
            } if first => {
                // Still degraded since start: now we know why.
                *reported = error.to_owned();
                true
            }
            StoreHealth::Degraded { .. } => false,
        });
        if first {
            tracing::error!(store = %store, error, "breaker state store unreachable: breakers fall back to on_unreachable; the fleet state is the last known one");
        }
    }

    /// The store answers again (and has been resynced).
    pub(crate) fn recovered(&self) {
        let store = &self.store;
        self.tx.send_if_modified(|health| match health {
            StoreHealth::Connected => false,
            StoreHealth::Degraded { since, .. } => {
                self.logged.store(false, Ordering::Relaxed);
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

    /// Log lines, captured.
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_transition_is_logged_once() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            // Another test thread may have hit these log callsites first,
            // with no subscriber, and had them cached as never enabled while
            // this one was being set up (a race in tracing's interest
            // cache): ask every callsite again now that it exists.
            tracing::callsite::rebuild_interest_cache();
            let health = HealthReporter::connecting("redis://x".to_owned());
            health.degraded("connection refused");
            health.degraded("connection refused");
            health.recovered();
            health.recovered();
            health.degraded("reset by peer");
            health.degraded("timeout");
        });
        let text = String::from_utf8(lines.0.lock().clone()).unwrap();
        let errors: Vec<&str> = text.lines().filter(|line| line.contains("ERROR")).collect();
        let infos: Vec<&str> = text.lines().filter(|line| line.contains("INFO")).collect();
        assert_eq!(errors.len(), 2, "{text}");
        assert!(errors[0].contains("connection refused") && errors[1].contains("reset by peer"));
        assert_eq!(infos.len(), 1, "{text}");
    }

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
