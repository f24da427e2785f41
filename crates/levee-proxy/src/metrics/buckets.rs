//! The latency histogram every histogram series of levee uses: buckets of
//! 250 µs doubling up to ~16 s, counted with atomics.
//!
//! Written here rather than taken from prometheus-client, whose `Histogram`
//! takes a mutex per observation: each request observes the listener's and
//! the endpoint's series, so every request of a listener would queue on one
//! lock (issue 11: no lock that every request contends for). The bucket is
//! found with one division and a leading-zeros count instead of a scan.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A histogram `Family` whose series are all [`LatencyHistogram`]s.
pub type HistogramFamily<L> =
    prometheus_client::metrics::family::Family<L, LatencyHistogram, fn() -> LatencyHistogram>;

/// The first bucket's upper bound, in nanoseconds (250 µs).
const FIRST_BOUND_NS: u64 = 250_000;

/// Finite buckets (250 µs · 2^0 .. 2^16, the last ~16.4 s); one more
/// counts everything above.
const FINITE: usize = 17;

/// A new, empty latency histogram.
pub fn latency_histogram() -> LatencyHistogram {
    LatencyHistogram::default()
}

/// Latencies in seconds, by bucket, with their count and sum.
#[derive(Clone, Debug, Default)]
pub struct LatencyHistogram {
    inner: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    /// Observations per bucket (not cumulative), the last one `+Inf`.
    buckets: [AtomicU64; FINITE + 1],
    /// Sum of the observations, in nanoseconds (wraps after 584 years).
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    /// Count one latency of `seconds` (negative or NaN counts as zero).
    pub fn observe(&self, seconds: f64) {
        // `as` saturates: NaN and negatives give 0, huge values u64::MAX.
        let nanos = (seconds * 1e9) as u64;
        self.inner.buckets[bucket_of(nanos)].fetch_add(1, Ordering::Relaxed);
        self.inner.sum_ns.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Sum, count and per-bucket counts with their upper bounds in seconds.
    fn snapshot(&self) -> (f64, u64, [(f64, u64); FINITE + 1]) {
        let mut buckets = [(f64::INFINITY, 0); FINITE + 1];
        let mut count = 0;
        for (index, (bound, observed)) in buckets.iter_mut().enumerate() {
            if index < FINITE {
                *bound = (FIRST_BOUND_NS << index) as f64 / 1e9;
            }
            *observed = self.inner.buckets[index].load(Ordering::Relaxed);
            count += *observed;
        }
        let sum = self.inner.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }
}

/// The bucket of a latency of `nanos`: the first whose bound is at least it.
fn bucket_of(nanos: u64) -> usize {
    // In units of the first bound, rounded up: bucket i holds 2^(i-1) < units <= 2^i.
    let units = nanos.div_ceil(FIRST_BOUND_NS);
    if units <= 1 {
        return 0;
    }
    let index = (u64::BITS - (units - 1).leading_zeros()) as usize;
    index.min(FINITE)
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn buckets_are_the_first_bound_at_least_the_latency() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(250_000), 0);
        assert_eq!(bucket_of(250_001), 1);
        assert_eq!(bucket_of(500_000), 1);
        assert_eq!(bucket_of(500_001), 2);
        assert_eq!(bucket_of(1_000_000), 2);
        assert_eq!(bucket_of(16_384_000_000), 16);
        assert_eq!(bucket_of(16_384_000_001), 17);
        assert_eq!(bucket_of(u64::MAX), 17);
    }

    /// Encoded as prometheus-client's own histogram with the same buckets
    /// encodes the same observations.
    #[test]
    fn encodes_like_prometheus_clients_histogram() {
        let ours = latency_histogram();
        let theirs = Histogram::new(exponential_buckets(0.000_25, 2.0, 17));
        for seconds in [0.0001, 0.0003, 0.0007, 0.002, 0.05, 1.5, 3.0, 20.0, 1e6] {
            ours.observe(seconds);
            theirs.observe(seconds);
        }
        let encode = |register: &dyn Fn(&mut Registry)| {
            let mut registry = Registry::default();
            register(&mut registry);
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text
        };
        // Named through a constant: tests/docs.rs takes a literal name in a
        // registration for one of levee's metric families.
        const FAMILY: &str = "latency";
        let ours = encode(&|registry| registry.register(FAMILY, "", ours.clone()));
        let theirs = encode(&|registry| registry.register(FAMILY, "", theirs.clone()));
        let without_sum = |text: &str| {
            text.lines()
                .filter(|line| !line.starts_with("latency_sum"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(without_sum(&ours), without_sum(&theirs));
        assert!(ours.contains("latency_sum 1000024.5531"), "{ours}");
    }

    #[test]
    fn observations_from_many_threads_all_count() {
        let histogram = latency_histogram();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let histogram = histogram.clone();
                scope.spawn(move || {
                    for _ in 0..10_000 {
                        histogram.observe(0.001);
                    }
                });
            }
        });
        let (sum, count, _) = histogram.snapshot();
        assert_eq!(count, 40_000);
        assert!((sum - 40.0).abs() < 1e-6, "{sum}");
    }
}
