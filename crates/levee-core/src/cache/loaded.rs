//! What a loader hands the cache, and what `get` hands back.

use std::fmt;
use std::time::Duration;

/// A value fresh from the loader, with its own lifetime. An HTTP layer sets
/// the TTL from `max-age` and the windows from `stale-while-revalidate` /
/// `stale-if-error`; what it leaves unset falls back to the cache's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded<V> {
    pub(super) value: V,
    pub(super) ttl: Option<Duration>,
    pub(super) stale_while_revalidate: Option<Duration>,
    pub(super) stale_if_error: Option<Duration>,
    pub(super) keep_for_revalidation: Duration,
}

impl<V> Loaded<V> {
    /// A value that lives for the cache's default TTL and windows.
    pub fn new(value: V) -> Loaded<V> {
        Loaded {
            value,
            ttl: None,
            stale_while_revalidate: None,
            stale_if_error: None,
            keep_for_revalidation: Duration::ZERO,
        }
    }

    /// Fresh for `ttl` (e.g. `max-age`). Zero is allowed: the value is then
    /// stale at once and only the stale windows keep it.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Servable for `window` past freshness while one refresh runs.
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.stale_while_revalidate = Some(window);
        self
    }

    /// Servable for `window` past freshness when the refresh fails.
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = Some(window);
        self
    }

    /// Past both windows, keep the value `window` longer, unserved, for the
    /// next load to revalidate: [`RefreshingCache::get_with`] hands it to
    /// the loader (an HTTP cache asks the origin "has it changed?" and keeps
    /// the stored body if not).
    ///
    /// [`RefreshingCache::get_with`]: super::RefreshingCache::get_with
    pub fn keep_for_revalidation(mut self, window: Duration) -> Self {
        self.keep_for_revalidation = window;
        self
    }

    /// The value.
    pub fn value(&self) -> &V {
        &self.value
    }
}

/// How a `get` was served; `as_str` is the `x-levee-cache` header value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// A fresh stored value; the loader was not called.
    Hit,
    /// The value came from a load (this caller's or one it shared).
    Miss,
    /// A stale stored value: served during a background refresh
    /// (stale-while-revalidate) or because the refresh failed or ran past
    /// `fill_wait` (stale-if-error).
    Stale,
}

impl CacheStatus {
    /// `hit`, `miss` or `stale`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale => "stale",
        }
    }
}

impl fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value returned by `get` and how it was served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served<V> {
    /// The value.
    pub value: V,
    /// Hit, miss or stale.
    pub status: CacheStatus,
}
