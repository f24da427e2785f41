//! Counters for metrics: how `get`s were served and what the loader did.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a cache's counters (monotonic since creation) and gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// `get`s served a fresh stored value.
    pub hits: u64,
    /// `get`s served a freshly loaded value.
    pub misses: u64,
    /// `get`s served a stale value (revalidating, or the load failed).
    pub stale: u64,
    /// Loader calls (foreground fills and background refreshes).
    pub loads: u64,
    /// Loader calls that returned an error.
    pub load_errors: u64,
    /// `get`s that gave up waiting after `fill_wait`.
    pub fill_timeouts: u64,
    /// Entries evicted to stay within `max_size`.
    pub evictions: u64,
    /// Loaded values not stored because they alone weigh more than
    /// `max_size`.
    pub oversized: u64,
    /// Entries stored now.
    pub entries: u64,
    /// Total weight stored now.
    pub weight: u64,
}

/// The live counters; relaxed atomics, since they only feed metrics.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) stale: AtomicU64,
    pub(super) loads: AtomicU64,
    pub(super) load_errors: AtomicU64,
    pub(super) fill_timeouts: AtomicU64,
    pub(super) evictions: AtomicU64,
    pub(super) oversized: AtomicU64,
}

/// Adds `n` to a counter.
pub(super) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub(super) fn snapshot(&self, entries: u64, weight: u64) -> CacheStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            hits: read(&self.hits),
            misses: read(&self.misses),
            stale: read(&self.stale),
            loads: read(&self.loads),
            load_errors: read(&self.load_errors),
            fill_timeouts: read(&self.fill_timeouts),
            evictions: read(&self.evictions),
            oversized: read(&self.oversized),
            entries,
            weight,
        }
    }
}
