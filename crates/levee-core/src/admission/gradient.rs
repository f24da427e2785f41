//! An adaptive concurrency limit: the gradient between the lowest and the
//! current round-trip time (Netflix concurrency-limits, "Gradient").
//!
//! When latency sits at its minimum the upstream has spare capacity and the
//! limit grows by a little headroom; when latency rises above the minimum
//! requests are queueing somewhere, so the limit shrinks in proportion
//! (Little's law: at a fixed throughput, more in flight only means more
//! waiting). Pure: the proxy feeds each sample and the time, and sets the
//! limit it gets back with [`Admission::set_limit`](super::Admission::set_limit).

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// Estimates a concurrency limit from round-trip times.
#[derive(Clone, Debug)]
pub struct GradientLimit {
    min_limit: usize,
    max_limit: usize,
    /// Kept fractional so that small steps add up.
    limit: f64,
    /// The lowest RTT in the current window, and when the window began.
    min_rtt: Option<(Duration, Instant)>,
}

impl GradientLimit {
    /// Default `initial_limit`: modest, so a cold start does not flood.
    pub const DEFAULT_INITIAL_LIMIT: usize = 20;
    /// Default `min_limit`: never throttle a cluster to nothing.
    pub const DEFAULT_MIN_LIMIT: usize = 1;
    /// Default `max_limit`.
    pub const DEFAULT_MAX_LIMIT: usize = 1000;
    /// RTT may reach this multiple of the minimum before the limit shrinks:
    /// jitter alone must not throttle.
    pub const TOLERANCE: f64 = 1.5;
    /// Weight of a new estimate; smooths single slow samples away.
    pub const SMOOTHING: f64 = 0.2;
    /// The minimum RTT is forgotten after this long, so that an upstream that
    /// became slower for good (a new region, a bigger payload) is accepted
    /// rather than throttled forever.
    pub const MIN_RTT_WINDOW: Duration = Duration::from_secs(30);

    /// A limit starting at `initial_limit`, kept within
    /// `[min_limit, max_limit]`.
    pub fn new(
        initial_limit: usize,
        min_limit: usize,
        max_limit: usize,
    ) -> Result<GradientLimit, BadGradientParams> {
        let bad = |key, message: String| Err(BadGradientParams { key, message });
        if min_limit == 0 {
            return bad("min_limit", "must be at least 1, got 0".to_owned());
        }
        if max_limit < min_limit {
            return bad(
                "max_limit",
                format!("must be at least min_limit ({min_limit}), got {max_limit}"),
            );
        }
        if !(min_limit..=max_limit).contains(&initial_limit) {
            return bad(
                "initial_limit",
                format!("must be between {min_limit} and {max_limit}, got {initial_limit}"),
            );
        }
        Ok(GradientLimit {
            min_limit,
            max_limit,
            limit: initial_limit as f64,
            min_rtt: None,
        })
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        (self.limit as usize).clamp(self.min_limit, self.max_limit)
    }

    /// Records one request's round-trip time at `now`; returns the new limit.
    pub fn update(&mut self, rtt: Duration, now: Instant) -> usize {
        let min_rtt = match self.min_rtt {
            Some((min, since))
                if min <= rtt && now.saturating_duration_since(since) < Self::MIN_RTT_WINDOW =>
            {
                min
            }
            _ => {
                self.min_rtt = Some((rtt, now));
                rtt
            }
        };
        let rtt_secs = rtt.as_secs_f64().max(1e-9);
        // 1 at the minimum; below 1 once RTT passes the tolerance. Floored at
        // 0.5: one slow sample cuts the estimate by at most half.
        let gradient = (Self::TOLERANCE * min_rtt.as_secs_f64() / rtt_secs).clamp(0.5, 1.0);
        // Headroom grows with the limit but sublinearly, as in Netflix's
        // default (square root of the limit).
        let headroom = self.limit.sqrt();
        let estimate = self.limit * gradient + headroom;
        let smoothed = self.limit * (1.0 - Self::SMOOTHING) + estimate * Self::SMOOTHING;
        self.limit = smoothed.clamp(self.min_limit as f64, self.max_limit as f64);
        self.limit()
    }
}

/// A rejected adaptive-limit parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadGradientParams {
    /// The config key at fault.
    pub key: &'static str,
    /// What is wrong with it, without the key.
    pub message: String,
}

impl fmt::Display for BadGradientParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, self.message)
    }
}

impl std::error::Error for BadGradientParams {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn grows_while_latency_stays_at_its_minimum() {
        let t0 = Instant::now();
        let mut g = GradientLimit::new(20, 1, 100).expect("valid");
        let mut last = g.limit();
        for i in 0..200 {
            let limit = g.update(ms(10), t0 + ms(i));
            assert!(limit >= last, "never shrinks at the minimum RTT");
            last = limit;
        }
        assert_eq!(last, 100, "up to max_limit");
    }

    #[test]
    fn shrinks_when_latency_climbs_and_stops_at_min_limit() {
        let t0 = Instant::now();
        let mut g = GradientLimit::new(100, 5, 100).expect("valid");
        g.update(ms(10), t0);
        let before = g.limit();
        let after = g.update(ms(40), t0 + ms(1));
        assert!(after < before, "{after} < {before}");
        for i in 2..500 {
            g.update(ms(100), t0 + ms(i));
        }
        assert_eq!(g.limit(), 5);
    }

    #[test]
    fn jitter_within_tolerance_does_not_shrink() {
        let t0 = Instant::now();
        let mut g = GradientLimit::new(50, 1, 1000).expect("valid");
        g.update(ms(10), t0);
        let before = g.limit();
        assert!(g.update(ms(14), t0 + ms(1)) >= before);
    }

    #[test]
    fn forgets_an_old_minimum() {
        let t0 = Instant::now();
        let mut g = GradientLimit::new(50, 1, 1000).expect("valid");
        g.update(ms(10), t0);
        // The upstream is now 50 ms for good: after the window that is the
        // new normal and the limit grows again.
        let later = t0 + GradientLimit::MIN_RTT_WINDOW;
        let rebased = g.update(ms(50), later);
        assert!(g.update(ms(50), later + ms(1)) >= rebased);
    }

    #[test]
    fn messages_name_the_key() {
        let err = |r: Result<GradientLimit, BadGradientParams>| r.expect_err("bad").to_string();
        assert_eq!(
            err(GradientLimit::new(1, 0, 10)),
            "min_limit must be at least 1, got 0"
        );
        assert_eq!(
            err(GradientLimit::new(5, 5, 4)),
            "max_limit must be at least min_limit (5), got 4"
        );
        assert_eq!(
            err(GradientLimit::new(50, 1, 10)),
            "initial_limit must be between 1 and 10, got 50"
        );
    }
}
