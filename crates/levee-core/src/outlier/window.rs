//! Per-endpoint counters over a sliding time window.
//!
//! The window is a ring of [`BUCKETS`] buckets, each covering 1/BUCKETS of the
//! window: recording and reading are O(BUCKETS) with no allocation, and old
//! observations fall out a bucket at a time (the window covers between 9/10
//! and all of its length), as in Hystrix's and resilience4j's rolling counters.

use std::time::Duration;

use tokio::time::Instant;

use super::Blame;

/// Buckets per window.
pub(super) const BUCKETS: usize = 10;

/// Counts over one bucket of time.
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Which bucket of time (since the window's origin) these counts are for;
    /// a slot whose index is older than the window holds stale counts.
    index: u64,
    /// Blamed outcomes: successes and failures (neutral ones are not counted).
    requests: u32,
    /// Failures among `requests`.
    failures: u32,
    /// Sum of the latencies of successes, in nanoseconds.
    latency_ns: u64,
    /// Successes whose latency is in `latency_ns`.
    latency_samples: u32,
}

/// What the window holds as of some instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Totals {
    pub requests: u32,
    pub failures: u32,
    /// Mean latency of successes, if there were any.
    pub mean_latency: Option<Duration>,
    pub latency_samples: u32,
}

/// Bucketed counters over a sliding window.
#[derive(Clone, Debug)]
pub(super) struct Window {
    /// Bucket 0 starts here.
    origin: Instant,
    /// Length of one bucket, in nanoseconds (at least 1).
    bucket_ns: u128,
    buckets: [Bucket; BUCKETS],
}

impl Window {
    pub fn new(length: Duration, origin: Instant) -> Window {
        Window {
            origin,
            bucket_ns: (length.as_nanos() / BUCKETS as u128).max(1),
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    /// Whether this window covers `length` (as built by `new(length, ..)`).
    pub fn covers(&self, length: Duration) -> bool {
        self.bucket_ns == (length.as_nanos() / BUCKETS as u128).max(1)
    }

    /// Count one outcome at `now`.
    pub fn record(&mut self, blame: Blame, latency: Duration, now: Instant) {
        if blame == Blame::Neutral {
            return;
        }
        let Some(bucket) = self.bucket_at(now) else {
            return;
        };
        bucket.requests = bucket.requests.saturating_add(1);
        match blame {
            Blame::Failure => bucket.failures = bucket.failures.saturating_add(1),
            Blame::Success => {
                let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
                bucket.latency_ns = bucket.latency_ns.saturating_add(ns);
                bucket.latency_samples = bucket.latency_samples.saturating_add(1);
            }
            Blame::Neutral => {}
        }
    }

    /// Count `count` successes at `now` whose latencies add up to
    /// `latency_ns` (successes tallied elsewhere and handed over at once).
    pub fn record_successes(&mut self, count: u32, latency_ns: u64, now: Instant) {
        if count == 0 {
            return;
        }
        let Some(bucket) = self.bucket_at(now) else {
            return;
        };
        bucket.requests = bucket.requests.saturating_add(count);
        bucket.latency_ns = bucket.latency_ns.saturating_add(latency_ns);
        bucket.latency_samples = bucket.latency_samples.saturating_add(count);
    }

    /// The bucket counting `now`, emptied first if it held an older slice
    /// of time; `None` when `now` is older than the window already reaches
    /// back (a late report from another task): too old to count.
    fn bucket_at(&mut self, now: Instant) -> Option<&mut Bucket> {
        let index = self.index(now);
        let bucket = &mut self.buckets[(index % BUCKETS as u64) as usize];
        if index > bucket.index {
            *bucket = Bucket {
                index,
                ..Bucket::default()
            };
        } else if index < bucket.index {
            return None;
        }
        Some(bucket)
    }

    /// Totals over the buckets still inside the window at `now`.
    pub fn totals(&self, now: Instant) -> Totals {
        let current = self.index(now);
        let mut totals = Totals::default();
        let mut latency_ns: u64 = 0;
        for bucket in &self.buckets {
            if bucket.index <= current && bucket.index + (BUCKETS as u64) > current {
                totals.requests = totals.requests.saturating_add(bucket.requests);
                totals.failures = totals.failures.saturating_add(bucket.failures);
                totals.latency_samples = totals
                    .latency_samples
                    .saturating_add(bucket.latency_samples);
                latency_ns = latency_ns.saturating_add(bucket.latency_ns);
            }
        }
        if totals.latency_samples > 0 {
            totals.mean_latency = Some(Duration::from_nanos(
                latency_ns / u64::from(totals.latency_samples),
            ));
        }
        totals
    }

    /// Forget everything (a fresh start after an ejection).
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
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn successes_handed_over_at_once_count_like_one_by_one() {
        let start = Instant::now();
        let mut one_by_one = Window::new(10 * SEC, start);
        let mut at_once = Window::new(10 * SEC, start);
        for latency in [10 * MS, 20 * MS, 30 * MS] {
            one_by_one.record(Blame::Success, latency, start + SEC);
        }
        at_once.record_successes(3, (60 * MS).as_nanos() as u64, start + SEC);
        at_once.record_successes(0, 0, start + SEC);
        assert_eq!(at_once.totals(start + SEC), one_by_one.totals(start + SEC));
        assert_eq!(at_once.totals(start + SEC).mean_latency, Some(20 * MS));
    }

    #[test]
    fn counts_failures_successes_and_success_latency() {
        let start = Instant::now();
        let mut window = Window::new(10 * SEC, start);
        window.record(Blame::Success, 10 * MS, start);
        window.record(Blame::Success, 30 * MS, start + SEC);
        window.record(Blame::Failure, 5 * SEC, start + 2 * SEC);
        window.record(Blame::Neutral, SEC, start + 2 * SEC);
        let totals = window.totals(start + 2 * SEC);
        assert_eq!(totals.requests, 3);
        assert_eq!(totals.failures, 1);
        assert_eq!(totals.latency_samples, 2);
        assert_eq!(totals.mean_latency, Some(20 * MS));
    }

    #[test]
    fn old_buckets_slide_out() {
        let start = Instant::now();
        let mut window = Window::new(10 * SEC, start);
        window.record(Blame::Failure, MS, start);
        window.record(Blame::Failure, MS, start + 5 * SEC);
        assert_eq!(window.totals(start + 9 * SEC).failures, 2);
        // Bucket 0 ([0, 1s)) leaves the window once bucket 10 begins.
        assert_eq!(window.totals(start + 10 * SEC).failures, 1);
        assert_eq!(window.totals(start + 15 * SEC).failures, 0);
        // A slot is reused for a newer bucket without the old counts.
        window.record(Blame::Success, MS, start + 20 * SEC);
        assert_eq!(window.totals(start + 20 * SEC).requests, 1);
    }

    #[test]
    fn late_reports_older_than_the_window_are_dropped() {
        let start = Instant::now();
        let mut window = Window::new(10 * SEC, start);
        window.record(Blame::Success, MS, start + 12 * SEC);
        window.record(Blame::Failure, MS, start + 2 * SEC);
        let totals = window.totals(start + 12 * SEC);
        assert_eq!((totals.requests, totals.failures), (1, 0));
    }

    #[test]
    fn clear_forgets() {
        let start = Instant::now();
        let mut window = Window::new(10 * SEC, start);
        window.record(Blame::Failure, MS, start);
        window.clear();
        assert_eq!(window.totals(start), Totals::default());
    }
}
