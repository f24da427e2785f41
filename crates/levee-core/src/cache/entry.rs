//! A stored value and its lifetime: when it is fresh, servable stale, or gone.
//!
//! Both stale windows are measured from the end of freshness, as in RFC 5861:
//! a value 5 s past its TTL is within `stale-while-revalidate = 10s` and also
//! within `stale-if-error = 60s`. While both hold, revalidation wins (serve
//! at once, refresh behind); past it, stale-if-error alone means "try the
//! loader, fall back to this". Past both, a value the loader may revalidate
//! (an HTTP response with a validator) is kept a while longer, never served,
//! only handed to the next load as the previous value.

use std::time::Duration;

use tokio::time::Instant;

use super::Generation;

/// How long a value lives, resolved against the cache's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Lifetime {
    pub(super) ttl: Duration,
    pub(super) stale_while_revalidate: Duration,
    pub(super) stale_if_error: Duration,
    /// Past both windows, how long the value is kept for the next load to
    /// revalidate (zero: dropped).
    pub(super) keep_for_revalidation: Duration,
}

/// Where a stored value stands at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Freshness {
    /// Serve it; no load.
    Fresh,
    /// Serve it at once and refresh it once in the background.
    StaleWhileRevalidate,
    /// Load; serve it only if the load fails or runs past `fill_wait`.
    StaleIfError,
    /// Not servable; load, handing the value to the loader to revalidate.
    Kept,
    /// Treat it as missing.
    Expired,
}

/// A stored value.
#[derive(Clone, Debug)]
pub(super) struct Entry<V> {
    pub(super) value: V,
    /// Strictly greater than every generation issued before it was stored,
    /// so a purge that read an older generation cannot remove it.
    pub(super) generation: Generation,
    pub(super) stored_at: Instant,
    pub(super) lifetime: Lifetime,
}

impl<V> Entry<V> {
    /// Where the value stands at `now`. A lifetime so long that it overflows
    /// the clock counts as fresh forever.
    pub(super) fn freshness(&self, now: Instant) -> Freshness {
        let Some(expires) = self.stored_at.checked_add(self.lifetime.ttl) else {
            return Freshness::Fresh;
        };
        let Some(staleness) = now.checked_duration_since(expires) else {
            return Freshness::Fresh;
        };
        // `expires` itself is the first stale instant.
        if staleness < self.lifetime.stale_while_revalidate {
            Freshness::StaleWhileRevalidate
        } else if staleness < self.lifetime.stale_if_error {
            Freshness::StaleIfError
        } else if staleness
            < self
                .lifetime
                .stale_while_revalidate
                .max(self.lifetime.stale_if_error)
                .saturating_add(self.lifetime.keep_for_revalidation)
        {
            Freshness::Kept
        } else {
            Freshness::Expired
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ttl: u64, swr: u64, sie: u64) -> Entry<()> {
        Entry {
            value: (),
            generation: Generation(1),
            stored_at: Instant::now(),
            lifetime: Lifetime {
                ttl: Duration::from_secs(ttl),
                stale_while_revalidate: Duration::from_secs(swr),
                stale_if_error: Duration::from_secs(sie),
                keep_for_revalidation: Duration::ZERO,
            },
        }
    }

    fn at(entry: &Entry<()>, secs: u64) -> Freshness {
        entry.freshness(entry.stored_at + Duration::from_secs(secs))
    }

    #[tokio::test(start_paused = true)]
    async fn windows_run_from_the_end_of_freshness() {
        let e = entry(10, 5, 30);
        assert_eq!(at(&e, 0), Freshness::Fresh);
        assert_eq!(at(&e, 9), Freshness::Fresh);
        assert_eq!(at(&e, 10), Freshness::StaleWhileRevalidate);
        assert_eq!(at(&e, 14), Freshness::StaleWhileRevalidate);
        assert_eq!(at(&e, 15), Freshness::StaleIfError);
        assert_eq!(at(&e, 39), Freshness::StaleIfError);
        assert_eq!(at(&e, 40), Freshness::Expired);
    }

    #[tokio::test(start_paused = true)]
    async fn revalidation_wins_while_both_windows_hold() {
        let e = entry(10, 30, 5);
        assert_eq!(at(&e, 12), Freshness::StaleWhileRevalidate);
        assert_eq!(at(&e, 39), Freshness::StaleWhileRevalidate);
        assert_eq!(at(&e, 40), Freshness::Expired);
    }

    #[tokio::test(start_paused = true)]
    async fn no_windows_means_expired_at_the_ttl() {
        let e = entry(10, 0, 0);
        assert_eq!(at(&e, 9), Freshness::Fresh);
        assert_eq!(at(&e, 10), Freshness::Expired);
        let zero = entry(0, 0, 0);
        assert_eq!(at(&zero, 0), Freshness::Expired);
    }

    #[tokio::test(start_paused = true)]
    async fn a_revalidatable_value_is_kept_past_both_windows() {
        let mut e = entry(10, 5, 30);
        e.lifetime.keep_for_revalidation = Duration::from_secs(60);
        assert_eq!(at(&e, 39), Freshness::StaleIfError);
        assert_eq!(at(&e, 40), Freshness::Kept);
        assert_eq!(at(&e, 99), Freshness::Kept);
        assert_eq!(at(&e, 100), Freshness::Expired);
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_ttl_never_expires() {
        let mut e = entry(0, 0, 0);
        e.lifetime.ttl = Duration::MAX;
        assert_eq!(at(&e, 1_000_000), Freshness::Fresh);
    }
}
