//! Latency recording: each worker buffers a few hundred samples and folds
//! them into shared histograms under a lock, so the per-request cost is a
//! push onto a vector and the memory does not grow with the concurrency.

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// Samples a worker keeps before taking the lock.
const BATCH: usize = 256;

/// Largest latency recorded exactly (an hour, in microseconds); larger ones
/// are clamped. The per-request deadline keeps real values far below it.
const MAX_MICROS: u64 = 3_600_000_000;

/// Three significant figures: p99.9 to within 0.1%.
const SIGNIFICANT_FIGURES: u8 = 3;

/// The run's latency histograms, in microseconds.
pub(crate) struct Histograms {
    /// Every completed request, errors included.
    pub(crate) all: Histogram<u64>,
    /// Successful requests only.
    pub(crate) successes: Histogram<u64>,
}

impl Histograms {
    pub(crate) fn new() -> Self {
        Self {
            all: new_histogram(),
            successes: new_histogram(),
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low,
    // sigfig <= 5): this cannot fail at run time.
    Histogram::new_with_bounds(1, MAX_MICROS, SIGNIFICANT_FIGURES)
        .expect("constant histogram bounds are valid")
}

/// One worker's pending samples.
pub(crate) struct LatencyBuffer {
    shared: Arc<Mutex<Histograms>>,
    /// `micros << 1 | success`.
    samples: Vec<u64>,
}

impl LatencyBuffer {
    pub(crate) fn new(shared: Arc<Mutex<Histograms>>) -> Self {
        Self {
            shared,
            samples: Vec::with_capacity(BATCH),
        }
    }

    pub(crate) fn record(&mut self, latency: Duration, success: bool) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        self.samples.push(micros << 1 | u64::from(success));
        if self.samples.len() >= BATCH {
            self.flush();
        }
    }

    pub(crate) fn flush(&mut self) {
        if self.samples.is_empty() {
            return;
        }
        let mut histograms = self.shared.lock();
        for &sample in &self.samples {
            let micros = sample >> 1;
            histograms.all.saturating_record(micros);
            if sample & 1 == 1 {
                histograms.successes.saturating_record(micros);
            }
        }
        drop(histograms);
        self.samples.clear();
    }
}

impl Drop for LatencyBuffer {
    fn drop(&mut self) {
        self.flush();
    }
}
