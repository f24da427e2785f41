//! Call counters over a sliding time window, for the rate policies.
//!
//! The same bucketed ring as the outlier detector's window (Hystrix's and
//! resilience4j's rolling counters): [`BUCKETS`] buckets each covering
//! 1/BUCKETS of the window, so recording and reading are O(BUCKETS) with no
//! allocation, and old calls fall out a bucket at a time (the window covers
//! between 9/10 and all of its length).

use std::time::Duration;

use tokio::time::Instant;

/// Buckets per window.
const BUCKETS: usize = 10;

/// Counts over one bucket of time.
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Which bucket of time (since the window's origin) these counts are for;
    /// a slot whose index is older than the window holds stale counts.
    index: u64,
    counts: Counts,
}

/// Calls in the window as of some instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counts {
    /// Calls recorded (failures and successes).
    pub calls: u32,
    /// Failures among them.
    pub failures: u32,
    /// Calls slower than the slow-call duration, failed or not.
    pub slow: u32,
}

/// Bucketed call counters over a sliding window.
#[derive(Clone, Debug)]
pub(super) struct CallWindow {
    /// Bucket 0 starts here.
    origin: Instant,
    /// Length of one bucket, in nanoseconds (at least 1).
    bucket_ns: u128,
    buckets: [Bucket; BUCKETS],
}

impl CallWindow {
    pub fn new(length: Duration, origin: Instant) -> CallWindow {
        CallWindow {
            origin,
            bucket_ns: (length.as_nanos() / BUCKETS as u128).max(1),
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    /// Count one call at `now`.
    pub fn record(&mut self, failure: bool, slow: bool, now: Instant) {
        self.add(
            Counts {
                calls: 1,
                failures: u32::from(failure),
                slow: u32::from(slow),
            },
            now,
        );
    }

    /// Count `count` calls at `now`, neither failed nor slow.
    pub fn record_calls(&mut self, count: u32, now: Instant) {
        self.add(
            Counts {
                calls: count,
                ..Counts::default()
            },
            now,
        );
    }

    fn add(&mut self, calls: Counts, now: Instant) {
        let index = self.index(now);
        let bucket = &mut self.buckets[(index % BUCKETS as u64) as usize];
        if index > bucket.index {
            *bucket = Bucket {
                index,
                ..Bucket::default()
            };
        } else if index < bucket.index {
            // Older than the window already reaches back: too old to count.
            return;
        }
        let counts = &mut bucket.counts;
        counts.calls = counts.calls.saturating_add(calls.calls);
        counts.failures = counts.failures.saturating_add(calls.failures);
        counts.slow = counts.slow.saturating_add(calls.slow);
    }

    /// Totals over the buckets still inside the window at `now`.
    pub fn counts(&self, now: Instant) -> Counts {
        let current = self.index(now);
        let mut total = Counts::default();
        for bucket in &self.buckets {
            if bucket.index <= current && bucket.index + (BUCKETS as u64) > current {
                total.calls = total.calls.saturating_add(bucket.counts.calls);
                total.failures = total.failures.saturating_add(bucket.counts.failures);
                total.slow = total.slow.saturating_add(bucket.counts.slow);
            }
        }
        total
    }

    /// Whether a failure or a slow call not older than the window at `now`
    /// is counted (also one recorded at a later instant than `now`).
    pub fn has_trouble(&self, now: Instant) -> bool {
        let current = self.index(now);
        self.buckets.iter().any(|bucket| {
            bucket.index + (BUCKETS as u64) > current
                && (bucket.counts.failures != 0 || bucket.counts.slow != 0)
        })
    }

    /// Forget everything (a fresh start after the breaker closes).
    pub fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }

    /// The bucket of time `now` falls in.
    fn index(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(elapsed / self.bucket_ns).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn breaker_window_counts_failures_and_slow_calls() {
        let start = Instant::now();
        let mut window = CallWindow::new(10 * SEC, start);
        window.record(false, false, start);
        window.record(true, false, start + SEC);
        window.record(false, true, start + 2 * SEC);
        window.record(true, true, start + 2 * SEC);
        let counts = window.counts(start + 2 * SEC);
        assert_eq!(
            counts,
            Counts {
                calls: 4,
                failures: 2,
                slow: 2
            }
        );
    }

    #[test]
    fn breaker_window_slides() {
        let start = Instant::now();
        let mut window = CallWindow::new(10 * SEC, start);
        window.record(true, false, start);
        window.record(true, false, start + 5 * SEC);
        assert_eq!(window.counts(start + 9 * SEC).failures, 2);
        assert_eq!(window.counts(start + 10 * SEC).failures, 1);
        assert_eq!(window.counts(start + 15 * SEC).failures, 0);
        window.record(false, false, start + 20 * SEC);
        assert_eq!(window.counts(start + 20 * SEC).calls, 1);
        // A late report older than the window is dropped.
        window.record(true, false, start + 2 * SEC);
        assert_eq!(window.counts(start + 20 * SEC).failures, 0);
        window.clear();
        assert_eq!(window.counts(start + 20 * SEC), Counts::default());
    }
}
