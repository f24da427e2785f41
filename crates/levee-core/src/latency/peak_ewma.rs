//! Peak-sensitive exponentially weighted moving average of response latency.
//!
//! The estimate jumps up at once to any sample above it (a node that just got
//! slow is penalised immediately) and decays smoothly otherwise, with time
//! constant `decay`. While no samples arrive it decays towards zero, so an
//! endpoint that was slow a while ago is eventually tried again. This is the
//! estimator of Finagle's and tower's P2C "peak EWMA" balancers.

use std::time::Duration;
use tokio::time::Instant;

/// A peak-EWMA latency estimate.
#[derive(Clone, Debug)]
pub struct PeakEwma {
    /// Time constant of the exponential decay.
    decay_ns: f64,
    /// Current estimate, in nanoseconds.
    estimate_ns: f64,
    /// When `estimate_ns` was last brought up to date.
    updated_at: Instant,
}

impl PeakEwma {
    /// A new estimator starting at `initial` (used until real samples arrive,
    /// so that a fresh endpoint neither looks free nor hopeless).
    pub fn new(decay: Duration, initial: Duration, now: Instant) -> PeakEwma {
        PeakEwma {
            // A zero decay would divide by zero; one nanosecond means "no memory".
            decay_ns: decay.as_nanos().max(1) as f64,
            estimate_ns: initial.as_nanos() as f64,
            updated_at: now,
        }
    }

    /// Record one observed latency.
    pub fn observe(&mut self, sample: Duration, now: Instant) {
        let sample_ns = sample.as_nanos() as f64;
        let weight = self.weight_since_update(now);
        self.estimate_ns = if sample_ns > self.estimate_ns {
            sample_ns
        } else {
            self.estimate_ns * weight + sample_ns * (1.0 - weight)
        };
        self.updated_at = self.updated_at.max(now);
    }

    /// The estimate as of `now` (decayed for the time since the last sample).
    pub fn estimate(&self, now: Instant) -> Duration {
        Duration::from_nanos((self.estimate_ns * self.weight_since_update(now)) as u64)
    }

    /// exp(-elapsed / decay): how much of the old estimate survives.
    fn weight_since_update(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated_at).as_nanos() as f64;
        decay_weight(elapsed / self.decay_ns)
    }
}

/// exp(-x) for x >= 0. Samples and picks come microseconds apart while the
/// decay is seconds, so x is tiny nearly always: there 1 - x + x²/2 is
/// exact to 2e-10 and costs a few instructions where `exp` costs ~100
/// (this runs for every response and twice per p2c pick).
fn decay_weight(x: f64) -> f64 {
    if x < 1e-3 {
        1.0 - x + 0.5 * x * x
    } else {
        (-x).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_decay_weight_is_exp_minus_x() {
        for x in [0.0_f64, 1e-9, 1e-6, 5e-4, 9.99e-4, 1e-3, 0.5, 1.0, 30.0] {
            let exact: f64 = (-x).exp();
            assert!((decay_weight(x) - exact).abs() <= 1e-9 * exact, "{x}");
        }
    }

    #[test]
    fn a_slow_sample_raises_the_estimate_at_once() {
        let now = Instant::now();
        let mut ewma = PeakEwma::new(Duration::from_secs(10), MS, now);
        ewma.observe(200 * MS, now);
        assert_eq!(ewma.estimate(now), 200 * MS);
    }

    #[test]
    fn fast_samples_pull_the_estimate_down_gradually() {
        let start = Instant::now();
        let mut ewma = PeakEwma::new(Duration::from_secs(1), MS, start);
        ewma.observe(100 * MS, start);
        let later = start + Duration::from_secs(1);
        ewma.observe(10 * MS, later);
        // weight e^-1 ≈ 0.37 on the old value: 100·0.37 + 10·0.63 ≈ 43 ms
        let estimate = ewma.estimate(later);
        assert!(estimate > 40 * MS && estimate < 46 * MS, "{estimate:?}");
    }

    #[test]
    fn an_idle_estimate_decays_towards_zero() {
        let start = Instant::now();
        let mut ewma = PeakEwma::new(Duration::from_secs(1), MS, start);
        ewma.observe(500 * MS, start);
        let estimate = ewma.estimate(start + Duration::from_secs(10));
        assert!(estimate < MS, "{estimate:?}");
    }

    #[test]
    fn zero_decay_does_not_divide_by_zero() {
        let now = Instant::now();
        let mut ewma = PeakEwma::new(Duration::ZERO, MS, now);
        ewma.observe(5 * MS, now + MS);
        assert_eq!(ewma.estimate(now + MS), 5 * MS);
    }
}
