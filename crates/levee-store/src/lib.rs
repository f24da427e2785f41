//! Fleet-shared circuit breaker state: every levee instance (and worker)
//! sees the same breakers, one instance alone cannot trip them for
//! everyone, and an outage of the store itself is never hidden.
//!
//! # Data model
//!
//! Each instance reports, per breaker, its own local verdict
//! ([`LocalReport`]: open until when, why, failures and calls). The store
//! keeps the latest report of every instance with an expiry (the writer
//! refreshes it; a dead instance's report stops counting after the TTL)
//! and, beside them, an operator [`Override`] (force open, force closed,
//! reset). Every reader aggregates the same data with the same
//! [`FleetRules`] into a [`FleetState`] per breaker: open for the fleet
//! when at least `quorum` distinct instances report open (until the latest
//! of their `open_until`s, the reason naming them), closed otherwise,
//! unless an override says otherwise.
//!
//! Two stores implement [`StateStore`]: [`MemoryStore`] (one process, the
//! default) and [`RedisStore`] (a fleet; see its docs for the key layout).
//!
//! # Guarantees
//!
//! - **Never blocks the request path.** [`StateStore::report`] and
//!   [`StateStore::snapshot`] are synchronous: a report is queued (latest
//!   per breaker kept) and written by a background task; a snapshot is read
//!   from memory. Only [`StateStore::set_override`] (the admin path) waits
//!   for the store, bounded by a timeout.
//! - **Bounded staleness.** With Redis, every write is followed by a
//!   `PUBLISH` that makes other instances re-read that breaker, and a full
//!   resync runs every second, so a change reaches every connected instance
//!   within about 1 s even if a message is lost.
//! - **Loud degradation.** [`StoreHealth`] goes `Degraded { since, error }`
//!   on the first failure (one error log line), back to `Connected` on
//!   recovery (one info line) after a full resync and a re-publication of
//!   this instance's reports. While degraded, snapshots carry the last known
//!   state flagged stale ([`FleetSnapshot::is_stale`]): the caller applies
//!   its `on_unreachable` fallback; nothing reads "no failures" into it.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use levee_store::{FleetRules, LocalReport, MemoryStore, StateStore};
//!
//! // Two workers of one process; the breaker opens for both only when
//! // both see the upstream fail.
//! let rules = FleetRules::new().with_quorum(2).unwrap();
//! let worker_1 = MemoryStore::new("worker-1", rules);
//! let worker_2 = worker_1.as_instance("worker-2");
//! let now = SystemTime::now();
//! let open = LocalReport::open(now + Duration::from_secs(5), "5 consecutive failures", now);
//! worker_1.report("payments", open.clone());
//! assert!(!worker_2.snapshot().breakers["payments"].is_open());
//! worker_2.report("payments", open);
//! assert!(worker_1.snapshot().breakers["payments"].is_open());
//! ```
//!
//! # Library use
//!
//! [`FleetBreaker`] is the whole loop for any async Rust program, without
//! the proxy: `breaker.call(async { ... }, |result| result.is_err())` runs
//! the call through a local breaker (never waiting on the store), reports
//! the transitions it reaches on its own evidence, and applies the fleet's
//! verdicts in a background task. `examples/fleet_breaker.rs` wraps calls
//! to an HTTP service with one breaker shared by two instances.
//!
//! ```
//! # async fn demo() {
//! use std::sync::Arc;
//!
//! use levee_core::breaker::BreakerParams;
//! use levee_store::{FleetBreaker, FleetRules, MemoryStore};
//!
//! let store = MemoryStore::new("instance-a", FleetRules::new());
//! let a = FleetBreaker::new("inventory", BreakerParams::default(), Arc::new(store.clone()));
//! let b = FleetBreaker::new(
//!     "inventory",
//!     BreakerParams::default(),
//!     Arc::new(store.as_instance("instance-b")),
//! );
//! // Calls through `a` that fail open `b` too, within milliseconds.
//! let answer = b.call(async { Ok::<_, std::io::Error>("stock: 3") }, |r| r.is_err()).await;
//! assert_eq!(answer.expect("closed").expect("no error"), "stock: 3");
//! # drop(a);
//! # }
//! ```
//!
//! The proxy applies the fleet view to its local breakers with
//! [`FleetWatcher`] (what changed) and [`remote_breaker_state`] (whether a
//! change is to be adopted) into
//! [`Breaker::apply_remote`](levee_core::breaker::Breaker::apply_remote).
//! It reports only verdicts reached on local evidence: an open adopted
//! from the fleet reported back as this instance's own would count towards
//! the quorum and keep the fleet open on its own echo.

mod aggregate;
mod apply;
mod error;
mod fleet_breaker;
mod health;
mod mailbox;
mod memory;
mod model;
mod redis;
mod rules;
mod store;
mod watcher;

pub use aggregate::{BreakerRecord, aggregate, aggregate_all};
pub use apply::remote_breaker_state;
pub use error::StoreError;
pub use fleet_breaker::FleetBreaker;
pub use health::StoreHealth;
pub use memory::MemoryStore;
pub use model::{FleetState, FleetVerdict, LocalReport, Override, StoredReport};
pub use redis::{RedisStore, RedisStoreConfig, SentinelConfig};
pub use rules::{DEFAULT_REPORT_TTL, FleetRules};
pub use store::{BoxFuture, FleetMap, FleetSnapshot, SharedRate, StateStore};
pub use watcher::{FleetChange, FleetWatcher};
