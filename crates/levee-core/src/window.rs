//! Two counts over a sliding window of time, in ten buckets: old counts
//! fall out a tenth of a window at a time. What the retry budget (requests
//! and retries) and client-side throttling (requests and accepts) count.

use std::time::Duration;

use tokio::time::Instant;

/// Buckets per window.
const BUCKETS: usize = 10;

/// Counts over one bucket of time.
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Which bucket of time (since the origin) these counts are for; a slot
    /// whose index is a window old or more holds stale counts.
    index: u64,
    counts: [u64; 2],
}

/// Two counts over a sliding window. Not synchronised: the owner locks.
#[derive(Debug)]
pub(crate) struct PairWindow {
    /// Bucket 0 starts here.
    origin: Instant,
    /// Length of one bucket, in nanoseconds (at least 1).
    bucket_ns: u128,
    buckets: [Bucket; BUCKETS],
}

impl PairWindow {
    /// Empty, over `window`, starting at `now`.
    pub(crate) fn new(window: Duration, now: Instant) -> PairWindow {
        PairWindow {
            origin: now,
            bucket_ns: (window.as_nanos() / BUCKETS as u128).max(1),
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    /// Add `counts` at `now`.
    pub(crate) fn add(&mut self, now: Instant, counts: [u64; 2]) {
        let bucket = self.current(self.index(now));
        bucket.counts[0] += counts[0];
        bucket.counts[1] += counts[1];
    }

    /// Both counts over the window ending at `now`.
    pub(crate) fn totals(&self, now: Instant) -> [u64; 2] {
        let index = self.index(now);
        self.buckets
            .iter()
            .filter(|bucket| index.saturating_sub(bucket.index) < BUCKETS as u64)
            .fold([0, 0], |[a, b], bucket| {
                [a + bucket.counts[0], b + bucket.counts[1]]
            })
    }

    /// Which bucket of time `now` falls in. An instant before the origin (a
    /// clock the caller read before creating the window) counts as the
    /// first.
    fn index(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(elapsed / self.bucket_ns).unwrap_or(u64::MAX)
    }

    /// The bucket for `index`, emptied first if it held an older bucket. A
    /// caller whose clock reading lost a race with a newer one counts into
    /// the newer bucket rather than wiping it.
    fn current(&mut self, index: u64) -> &mut Bucket {
        let bucket = &mut self.buckets[(index % BUCKETS as u64) as usize];
        if bucket.index < index {
            *bucket = Bucket {
                index,
                counts: [0, 0],
            };
        }
        bucket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_fall_out_a_tenth_of_a_window_at_a_time() {
        let start = Instant::now();
        let mut window = PairWindow::new(Duration::from_secs(10), start);
        window.add(start, [3, 1]);
        window.add(start + Duration::from_secs(5), [2, 2]);
        assert_eq!(window.totals(start + Duration::from_secs(9)), [5, 3]);
        // The first bucket is a window old: gone.
        assert_eq!(window.totals(start + Duration::from_secs(10)), [2, 2]);
        assert_eq!(window.totals(start + Duration::from_secs(20)), [0, 0]);
    }
}
