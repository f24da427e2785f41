//! The interface the proxy (or a library user) talks to, the same for the
//! memory and Redis stores.
//!
//! Split by who calls it. The request path calls [`StateStore::report`] and
//! [`StateStore::snapshot`]: both are synchronous, so the type system, not
//! a convention, guarantees they never wait on the network. The admin path
//! calls [`StateStore::set_override`], which does wait for the store (an
//! operator must learn whether the fleet heard them), bounded by a timeout.
//! Futures are boxed so the trait stays object-safe: the proxy holds an
//! `Arc<dyn StateStore>` chosen by configuration.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;

use crate::{FleetState, LocalReport, Override, StoreError, StoreHealth};

/// A boxed future, so [`StateStore`] is object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The fleet view of every breaker.
pub type FleetMap = Arc<HashMap<String, FleetState>>;

/// What [`StateStore::snapshot`] returns: the fleet state and whether it
/// can be trusted.
#[derive(Clone, Debug)]
pub struct FleetSnapshot {
    /// Per breaker, the fleet state (the last known one when degraded).
    pub breakers: FleetMap,
    /// The store's health when the snapshot was taken.
    pub health: StoreHealth,
}

impl FleetSnapshot {
    /// True when the store is unreachable: `breakers` is the last known
    /// state, and the caller must apply its `on_unreachable` fallback
    /// rather than read "no failures" into it.
    pub fn is_stale(&self) -> bool {
        self.health.is_degraded()
    }
}

/// A fleet-shared breaker state store.
pub trait StateStore: Send + Sync + 'static {
    /// This instance's id: the field its reports are stored under.
    fn instance_id(&self) -> &str;

    /// Record this instance's verdict on `breaker`. Never waits: the
    /// report is queued (only the latest per breaker is kept) and written
    /// by a background task, which also adds it to this instance's own
    /// view without waiting for the store (so it counts even while the
    /// store is unreachable).
    fn report(&self, breaker: &str, report: LocalReport);

    /// Set (`Some`) or clear (`None`) the operator override of `breaker`
    /// for the whole fleet. Waits for the store, at most its I/O timeout.
    fn set_override<'a>(
        &'a self,
        breaker: &'a str,
        override_: Option<Override>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The current fleet state, from memory. Never waits.
    fn snapshot(&self) -> FleetSnapshot;

    /// The fleet state, updated on every change: what the proxy applies to
    /// its local breakers (see [`FleetWatcher`](crate::FleetWatcher)).
    fn subscribe(&self) -> watch::Receiver<FleetMap>;

    /// The store's health, updated on every transition.
    fn health(&self) -> watch::Receiver<StoreHealth>;

    /// Commands this instance sent to the store per second, over the last
    /// 10 s: what the fleet costs the store (0 for a store in memory).
    fn operations_per_second(&self) -> f64 {
        0.0
    }

    /// The server this instance talks to (`host:port`), when there is one:
    /// with Redis Sentinel, the master of the moment.
    fn server(&self) -> Option<String> {
        None
    }

    /// How many times the store came back on another server than the one
    /// before (a Sentinel failover).
    fn failovers(&self) -> u64 {
        0
    }

    /// One request of a fleet-wide rate limit on `key` (GCRA in the store,
    /// one round trip, in the store's clock): allowed or not, and what the
    /// `RateLimit-*` headers say. Bounded by the store's I/O timeout; the
    /// caller bounds it tighter. Not supported by a store in memory.
    fn rate_limit<'a>(
        &'a self,
        key: &'a str,
        interval: std::time::Duration,
        burst: u32,
    ) -> BoxFuture<'a, Result<SharedRate, StoreError>> {
        let _ = (key, interval, burst);
        Box::pin(async {
            Err(StoreError::Unreachable {
                address: "memory".to_owned(),
                detail: "a fleet-wide rate limit needs [store] kind = \"redis\"".to_owned(),
            })
        })
    }
}

/// A fleet-wide rate limit's verdict on one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedRate {
    /// Whether the request may go on.
    pub allowed: bool,
    /// Requests still allowed at once after this one.
    pub remaining: u32,
    /// Until the quota is whole again.
    pub reset: std::time::Duration,
    /// When rejected: until one request is allowed again.
    pub retry_after: std::time::Duration,
}
