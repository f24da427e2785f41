//! A cluster's client requests as the dashboard charts them: a count, the
//! server errors among them, and a coarse latency histogram, all plain
//! atomics that the request path bumps once per request and a sampler
//! reads once a second.
//!
//! Written by hand rather than read back from the Prometheus histograms:
//! `prometheus-client` does not expose bucket counts, and the dashboard
//! needs quantiles over the last second, not since start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency buckets: bucket 0 holds requests under 16 µs, bucket `i` those
/// from 16 µs × 2^(i-1) to 16 µs × 2^i, the last one everything above
/// (about 2 minutes).
const BUCKETS: usize = 24;
/// The first bucket's upper bound, in microseconds.
const FIRST_BOUND_MICROS: u64 = 16;

/// Counters of one cluster's requests.
#[derive(Debug, Default)]
pub struct Traffic {
    requests: AtomicU64,
    server_errors: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Traffic {
    /// One request answered with `status` after `elapsed`.
    pub fn record(&self, status: u16, elapsed: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        let scaled = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX) / FIRST_BOUND_MICROS;
        let bucket = (u64::BITS - scaled.leading_zeros()) as usize;
        self.buckets[bucket.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// Everything counted so far.
    pub fn totals(&self) -> TrafficTotals {
        TrafficTotals {
            requests: self.requests.load(Ordering::Relaxed),
            server_errors: self.server_errors.load(Ordering::Relaxed),
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
        }
    }
}

/// A reading of [`Traffic`], or the difference of two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficTotals {
    /// Requests.
    pub requests: u64,
    /// Requests answered 5xx (levee's own included).
    pub server_errors: u64,
    buckets: [u64; BUCKETS],
}

impl TrafficTotals {
    /// What was counted between `earlier` and this reading (zero if the
    /// counters started over, as a rebuilt cluster's do).
    pub fn since(&self, earlier: &TrafficTotals) -> TrafficTotals {
        if self.requests < earlier.requests {
            return TrafficTotals::default();
        }
        TrafficTotals {
            requests: self.requests - earlier.requests,
            server_errors: self.server_errors.saturating_sub(earlier.server_errors),
            buckets: std::array::from_fn(|i| self.buckets[i].saturating_sub(earlier.buckets[i])),
        }
    }

    /// The `q` quantile (0 to 1) of the latencies, in milliseconds,
    /// interpolated within its bucket; `None` without requests.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut below = 0u64;
        for (i, &count) in self.buckets.iter().enumerate() {
            if count > 0 && (below + count) as f64 >= rank {
                let low = if i == 0 {
                    0.0
                } else {
                    (FIRST_BOUND_MICROS << (i - 1)) as f64
                };
                let high = (FIRST_BOUND_MICROS << i) as f64;
                let within = (rank - below as f64) / count as f64;
                return Some((low + (high - low) * within) / 1000.0);
            }
            below += count;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_in_the_right_bucket() {
        let traffic = Traffic::default();
        for _ in 0..98 {
            traffic.record(200, Duration::from_millis(2));
        }
        traffic.record(503, Duration::from_millis(100));
        traffic.record(200, Duration::from_millis(100));
        let totals = traffic.totals();
        assert_eq!((totals.requests, totals.server_errors), (100, 1));
        let p50 = totals.quantile_ms(0.5).expect("p50");
        assert!((1.0..=4.1).contains(&p50), "{p50}");
        let p99 = totals.quantile_ms(0.99).expect("p99");
        assert!((65.0..=131.1).contains(&p99), "{p99}");
        assert_eq!(TrafficTotals::default().quantile_ms(0.5), None);
    }

    #[test]
    fn a_difference_is_what_happened_between_two_readings() {
        let traffic = Traffic::default();
        traffic.record(200, Duration::from_millis(1));
        let first = traffic.totals();
        traffic.record(500, Duration::from_secs(1));
        let delta = traffic.totals().since(&first);
        assert_eq!((delta.requests, delta.server_errors), (1, 1));
        assert!(delta.quantile_ms(0.5).expect("p50") > 500.0);
        // Counters that started over give nothing rather than garbage.
        assert_eq!(first.since(&traffic.totals()), TrafficTotals::default());
    }
}
