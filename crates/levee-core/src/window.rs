//! Two counts over a sliding window of time, in ten buckets: old counts
//! fall out a tenth of a window at a time. What the retry budget (requests
//! and retries) and client-side throttling (requests and accepts) count.
//!
//! Counted with atomics, not under a lock: every request of a cluster
//! counts itself here, and a lock would make the requests of all worker
//! threads queue on it (issue 11). Each count is one `AtomicU64` holding the
//! bucket's index (high half) and the count (low half), so that starting a
//! new bucket and counting into it is one compare-and-swap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Buckets per window.
const BUCKETS: usize = 10;

/// Two counts over a sliding window, safe to share between threads.
#[derive(Debug)]
pub(crate) struct PairWindow {
    /// Bucket 0 starts here.
    origin: Instant,
    /// Length of one bucket, in nanoseconds (at least 1).
    bucket_ns: u128,
    /// Per bucket, the two counts, each packed with the index of the bucket
    /// of time it counts (see [`pack`]).
    buckets: [[AtomicU64; 2]; BUCKETS],
}

/// A bucket's index (its low 32 bits: they wrap after 2^32 buckets, over a
/// century of 1 s buckets) and a count (below 2^32 per bucket) in one word.
fn pack(index: u32, count: u64) -> u64 {
    (u64::from(index) << 32) | count
}

/// The bucket index a packed count belongs to.
fn index_of(packed: u64) -> u32 {
    (packed >> 32) as u32
}

impl PairWindow {
    /// Empty, over `window`, starting at `now`.
    pub(crate) fn new(window: Duration, now: Instant) -> PairWindow {
        PairWindow {
            origin: now,
            bucket_ns: (window.as_nanos() / BUCKETS as u128).max(1),
            buckets: Default::default(),
        }
    }

    /// Add `counts` at `now`.
    pub(crate) fn add(&self, now: Instant, counts: [u64; 2]) {
        let index = self.index(now);
        let slot = &self.buckets[index as usize % BUCKETS];
        for (packed, count) in slot.iter().zip(counts) {
            if count > 0 {
                add_to(packed, index, count);
            }
        }
    }

    /// Both counts over the window ending at `now`.
    pub(crate) fn totals(&self, now: Instant) -> [u64; 2] {
        let index = self.index(now);
        let mut totals = [0, 0];
        for slot in &self.buckets {
            for (total, packed) in totals.iter_mut().zip(slot) {
                let packed = packed.load(Ordering::Relaxed);
                // A bucket a window old or more is stale; one newer than
                // `now` (another thread's later clock reading) counts.
                let age = index.wrapping_sub(index_of(packed)) as i32;
                if age < BUCKETS as i32 {
                    *total += packed & u64::from(u32::MAX);
                }
            }
        }
        totals
    }

    /// Which bucket of time `now` falls in (its low 32 bits). An instant
    /// before the origin (a clock the caller read before creating the
    /// window) counts as the first.
    fn index(&self, now: Instant) -> u32 {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        (elapsed / self.bucket_ns) as u32
    }
}

/// Count `count` into the bucket `index` whose slot is `packed`: restart the
/// slot if it holds an older bucket. A caller whose clock reading lost a race
/// with a newer one counts into the newer bucket rather than wiping it.
fn add_to(packed: &AtomicU64, index: u32, count: u64) {
    let mut current = packed.load(Ordering::Relaxed);
    loop {
        let held = index_of(current);
        let next = if held == index || (held.wrapping_sub(index) as i32) > 0 {
            current.wrapping_add(count)
        } else {
            pack(index, count)
        };
        match packed.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_fall_out_a_tenth_of_a_window_at_a_time() {
        let start = Instant::now();
        let window = PairWindow::new(Duration::from_secs(10), start);
        window.add(start, [3, 1]);
        window.add(start + Duration::from_secs(5), [2, 2]);
        assert_eq!(window.totals(start + Duration::from_secs(9)), [5, 3]);
        // The first bucket is a window old: gone.
        assert_eq!(window.totals(start + Duration::from_secs(10)), [2, 2]);
        assert_eq!(window.totals(start + Duration::from_secs(20)), [0, 0]);
    }

    #[test]
    fn counts_from_many_threads_all_count() {
        let start = Instant::now();
        let window = PairWindow::new(Duration::from_secs(3600), start);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..10_000 {
                        window.add(start, [1, 2]);
                    }
                });
            }
        });
        assert_eq!(window.totals(start), [40_000, 80_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_clock_reading_counts_into_the_newer_bucket() {
        let start = Instant::now();
        let window = PairWindow::new(Duration::from_secs(10), start);
        window.add(start + Duration::from_secs(10), [1, 0]);
        // Read before the add above, counted after it: the slot is not
        // wiped back to the older bucket.
        window.add(start, [1, 0]);
        assert_eq!(window.totals(start + Duration::from_secs(10)), [2, 0]);
    }
}
