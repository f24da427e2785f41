//! An adaptive concurrency limit from round-trip times, as Netflix
//! concurrency-limits' Gradient2: the gradient between a long-term and a
//! short-term average RTT.
//!
//! When the short-term RTT matches the long-term one the upstream keeps up
//! and the limit grows by a little headroom; when it rises above it,
//! requests are queueing somewhere and the limit shrinks in proportion
//! (Little's law). Averages, not a minimum: a limiter built on the minimum
//! RTT (Gradient1, Vegas) must re-measure it now and then by dropping its
//! limit, and produces 503s while it does (envoy#8337, #18152); and after a
//! long slow period the long-term average has followed the new latency, so
//! the limit comes back up smoothly instead of staying at the floor until a
//! minimum window expires. Pure: the proxy feeds each sample and sets the
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
    /// Averages of the RTT in seconds, over about [`Self::SHORT_WINDOW`]
    /// and [`Self::LONG_WINDOW`] samples.
    short_rtt: Option<f64>,
    long_rtt: Option<f64>,
}

impl GradientLimit {
    /// Default `initial_limit`: modest, so a cold start does not flood.
    pub const DEFAULT_INITIAL_LIMIT: usize = 20;
    /// Default `min_limit`: never throttle a cluster to nothing.
    pub const DEFAULT_MIN_LIMIT: usize = 1;
    /// Default `max_limit`.
    pub const DEFAULT_MAX_LIMIT: usize = 1000;
    /// The short-term RTT may reach this multiple of the long-term one
    /// before the limit shrinks: jitter alone must not throttle.
    pub const TOLERANCE: f64 = 1.5;
    /// Weight of a new estimate; smooths single slow samples away.
    pub const SMOOTHING: f64 = 0.2;
    /// Samples the short-term average spans (Gradient2's default).
    pub const SHORT_WINDOW: f64 = 10.0;
    /// Samples the long-term average spans (Gradient2's default): a slower
    /// upstream becomes the new normal over this many requests.
    pub const LONG_WINDOW: f64 = 600.0;

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
            short_rtt: None,
            long_rtt: None,
        })
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        (self.limit as usize).clamp(self.min_limit, self.max_limit)
    }

    /// Records one request's round-trip time; returns the new limit. (`now`
    /// is kept for callers; the averages count samples, not time.)
    pub fn update(&mut self, rtt: Duration, _now: Instant) -> usize {
        let sample = rtt.as_secs_f64().max(1e-9);
        let average = |current: Option<f64>, window: f64| {
            let weight = 2.0 / (window + 1.0);
            current.map_or(sample, |current| current + weight * (sample - current))
        };
        let short = average(self.short_rtt, Self::SHORT_WINDOW);
        let mut long = average(self.long_rtt, Self::LONG_WINDOW);
        // Recovering from a slow period (the short-term RTT far below the
        // long-term one): forget the slow past faster, as Gradient2 does,
        // so the limit is not held high by it.
        if long / short > 2.0 {
            long *= 0.95;
        }
        self.short_rtt = Some(short);
        self.long_rtt = Some(long);
        // 1 while the short-term RTT is within the tolerance; below once it
        // rises past it. Floored at 0.5: one slow spell cuts the estimate by
        // at most half per sample.
        let gradient = (Self::TOLERANCE * long / short).clamp(0.5, 1.0);
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
    fn shrinks_when_latency_climbs() {
        let t0 = Instant::now();
        let mut g = GradientLimit::new(100, 5, 100).expect("valid");
        for i in 0..50 {
            g.update(ms(10), t0 + ms(i));
        }
        let before = g.limit();
        let mut after = before;
        for i in 50..70 {
            after = g.update(ms(40), t0 + ms(i));
        }
        assert!(after < before / 2, "{after} < {before} / 2");
    }

    #[test]
    fn jitter_within_tolerance_does_not_shrink() {
        let t0 = Instant::now();
        let mut g = GradientLimit::new(50, 1, 1000).expect("valid");
        g.update(ms(10), t0);
        let before = g.limit();
        assert!(g.update(ms(14), t0 + ms(1)) >= before);
    }

    /// The node's service time doubles for a long while: the limit dips,
    /// never to the floor, and comes back up while the node is still slow
    /// (the long-term average follows), then recovers with it.
    #[test]
    fn a_long_slow_period_lowers_the_limit_smoothly_not_to_the_floor() {
        let t0 = Instant::now();
        let mut g = GradientLimit::new(20, 1, 200).expect("valid");
        for i in 0..2_000 {
            g.update(ms(20), t0 + ms(i));
        }
        let fast = g.limit();
        let mut lowest = fast;
        let mut slow_end = fast;
        for i in 0..4_000 {
            slow_end = g.update(ms(40), t0 + ms(2_000 + i));
            lowest = lowest.min(slow_end);
        }
        println!(
            "limit {fast} fast, lowest {lowest} while slow, {slow_end} after 4,000 slow samples"
        );
        assert!(
            lowest >= 20,
            "dipped to {lowest} of {fast}: not to the floor"
        );
        assert!(
            slow_end > lowest,
            "came back up while slow: {lowest} -> {slow_end}"
        );
        let mut back = slow_end;
        for i in 0..4_000 {
            back = g.update(ms(20), t0 + ms(6_000 + i));
        }
        assert_eq!(back, 200, "whole again once fast");
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
