//! Slow start: an endpoint back in service takes a growing share of traffic.
//!
//! A node that just came back (ejection over, checks passing again) often has
//! cold caches, a cold JIT, an empty connection pool, or the same fault that
//! got it ejected. Giving it a full share at once can knock it straight back
//! over; ramping it up lets it warm and lets the detector see trouble on a few
//! requests rather than many.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::params::BadOutlierParams;

/// A linear ramp of an endpoint's weight from `min_weight` to 1 over
/// `window`, starting when it returned to service.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlowStart {
    window: Duration,
    min_weight: f64,
}

impl SlowStart {
    /// Default ramp length: long enough for a cold cache or JIT to warm on a
    /// share of the traffic, short enough that a recovered node is fully back
    /// within one outlier window. The proxy's `slow_start` default uses it.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
    /// Default starting weight (Envoy's `min_weight_percent` default, 10%).
    pub const DEFAULT_MIN_WEIGHT: f64 = 0.1;

    /// A ramp over `window` (zero disables slow start) from `min_weight`
    /// (0–1) to full weight.
    pub fn new(window: Duration, min_weight: f64) -> Result<SlowStart, BadOutlierParams> {
        // NaN fails the range test too.
        if !(0.0..=1.0).contains(&min_weight) {
            return Err(BadOutlierParams {
                key: "min_weight",
                message: format!("must be between 0 and 1, got {min_weight}"),
            });
        }
        Ok(SlowStart { window, min_weight })
    }

    /// The ramp length.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The weight at the start of the ramp.
    pub fn min_weight(&self) -> f64 {
        self.min_weight
    }

    /// The weight of an endpoint that returned at `returned_at`, at `now`:
    /// `min_weight` at the return, 1 at the end of the window and after.
    pub fn weight(&self, returned_at: Instant, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(returned_at);
        if elapsed >= self.window {
            return 1.0;
        }
        let progress = elapsed.as_secs_f64() / self.window.as_secs_f64();
        self.min_weight + (1.0 - self.min_weight) * progress
    }

    /// Whether the endpoint is still on its ramp.
    pub fn is_ramping(&self, returned_at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(returned_at) < self.window
    }
}

impl Default for SlowStart {
    fn default() -> SlowStart {
        SlowStart {
            window: SlowStart::DEFAULT_WINDOW,
            min_weight: SlowStart::DEFAULT_MIN_WEIGHT,
        }
    }
}

/// Accept a pick of an endpoint with probability `weight` (1 or more: always;
/// 0, less or NaN: never).
///
/// The balancer picks without weights; the proxy asks `admit` with the picked
/// endpoint's slow-start weight and, if refused, picks again, a few times at
/// most, then keeps the last pick so that a cluster whose endpoints are all
/// ramping still serves. The ramping endpoint's share is then about
/// weight × its unweighted share.
pub fn admit<R: Rng + ?Sized>(weight: f64, rng: &mut R) -> bool {
    if weight >= 1.0 {
        true
    } else if weight > 0.0 {
        rng.random::<f64>() < weight
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn the_weight_ramps_linearly_from_min_to_one() {
        let back = Instant::now();
        let ramp = SlowStart::new(10 * SEC, 0.1).expect("valid");
        let at = |secs: u32| ramp.weight(back, back + secs * SEC);
        assert!((at(0) - 0.1).abs() < 1e-9);
        assert!((at(5) - 0.55).abs() < 1e-9);
        assert!((at(9) - 0.91).abs() < 1e-9);
        assert_eq!(at(10), 1.0);
        assert_eq!(at(60), 1.0);
        assert!(ramp.is_ramping(back, back + 9 * SEC));
        assert!(!ramp.is_ramping(back, back + 10 * SEC));
        // A `now` before the return (a racing caller) is the start of the ramp.
        assert!((ramp.weight(back + SEC, back) - 0.1).abs() < 1e-9);
    }

    #[test]
    fn a_zero_window_disables_the_ramp() {
        let now = Instant::now();
        let ramp = SlowStart::new(Duration::ZERO, 0.1).expect("valid");
        assert_eq!(ramp.weight(now, now), 1.0);
        assert!(!ramp.is_ramping(now, now));
    }

    #[test]
    fn min_weight_must_be_a_share() {
        for bad in [-0.1, 1.5, f64::NAN] {
            let error = SlowStart::new(SEC, bad).expect_err("invalid");
            assert!(
                error
                    .to_string()
                    .starts_with("min_weight must be between 0 and 1")
            );
        }
        assert_eq!(SlowStart::default().min_weight(), 0.1);
    }

    #[test]
    fn admit_accepts_about_weight_of_the_picks() {
        let mut rng = SmallRng::seed_from_u64(3);
        let accepted = (0..10_000).filter(|_| admit(0.25, &mut rng)).count();
        assert!((2300..2700).contains(&accepted), "{accepted}");
        assert!((0..100).all(|_| admit(1.0, &mut rng)));
        assert!((0..100).all(|_| !admit(0.0, &mut rng)));
        assert!(!admit(f64::NAN, &mut rng));
    }
}
