//! A refreshing cache for any async loader: no stampede, no stale purge.
//!
//! A cache in front of a slow or failing upstream turns a short stall into an
//! outage in three classic ways, and each rule here exists for one of them:
//!
//! - **Stampede.** When a hot key expires, every concurrent request misses
//!   and goes upstream at once, exactly when the upstream is slowest. Fills
//!   are single-flight: N concurrent misses make one loader call, the others
//!   wait for it (at most `fill_wait`) and share its value or its error.
//! - **Latency cliff at expiry.** With `stale-while-revalidate` (RFC 5861) a
//!   value just past its TTL is served at once while one background refresh
//!   per key replaces it; clients never wait for the refill.
//! - **Errors when the upstream fails.** With `stale-if-error` a failed (or
//!   too slow) refill serves the old value, tagged [`CacheStatus::Stale`],
//!   instead of an error.
//! - **Purge races.** Invalidation is generation-checked (see
//!   [`Generation`]): a fill that started before a purge never stores its
//!   older result after it, and a purge aimed at generation `g` never removes
//!   a value stored after `g`.
//!
//! Memory is bounded: entries are weighed by a caller-supplied weigher and
//! the least recently used are evicted so the total never exceeds
//! `max_size`. Nothing in a `get` waits on I/O except the fill it asked for;
//! expiry and eviction are map operations under a lock that is never held
//! across an await.
//!
//! The freshness rules are pure functions of a [`tokio::time::Instant`]
//! (`entry.rs`), the LRU store is plain data (`store.rs`), and the async
//! parts (`refreshing.rs`, `flight.rs`) only wire them to tasks and channels, so
//! every rule is tested under paused time.

mod entry;
mod error;
mod flight;
mod generation;
mod loaded;
mod params;
mod refreshing;
mod stats;
mod store;

#[cfg(test)]
mod tests;

pub use error::{CacheError, LoadError};
pub use generation::Generation;
pub use loaded::{CacheStatus, Loaded, Served};
pub use params::{BadCacheParams, CacheParams, CacheParamsBuilder};
pub use refreshing::RefreshingCache;
pub use stats::CacheStats;
