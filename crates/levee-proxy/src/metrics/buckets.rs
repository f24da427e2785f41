//! The latency buckets every histogram of levee uses.

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// A histogram `Family` whose series all use [`latency_histogram`].
pub type HistogramFamily<L> =
    prometheus_client::metrics::family::Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets: 250 µs doubling up to ~16 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 17))
}
