//! Client-side adaptive throttling (Google SRE book, "Handling Overload"):
//! when the upstream itself rejects requests (503, 429, gRPC
//! `RESOURCE_EXHAUSTED`), the client rejects some locally, with probability
//!
//! ```text
//! max(0, (requests − K × accepts) / (requests + 1))
//! ```
//!
//! over a sliding window, so that an overloaded upstream does not spend its
//! capacity refusing traffic. `requests` counts every request the client
//! meant to send, including those it rejected itself; `accepts` those the
//! upstream did not reject. With K = 2 the upstream still sees about twice
//! what it accepts (enough to notice it has recovered); a larger K throttles
//! later and less.

use std::time::Duration;

use tokio::time::Instant;

use crate::window::PairWindow;

/// Throttling settings, validated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThrottleParams {
    /// How many times what the upstream accepts may be sent (at least 1).
    k: f64,
    /// How far back requests and accepts are counted.
    window: Duration,
}

/// Invalid [`ThrottleParams`].
#[derive(Clone, Debug, PartialEq)]
pub enum BadThrottleParams {
    /// K below 1 would reject requests the upstream accepts.
    K(f64),
    /// An empty window counts nothing.
    Window,
}

impl std::fmt::Display for BadThrottleParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadThrottleParams::K(k) => write!(f, "k must be at least 1 (it is {k})"),
            BadThrottleParams::Window => f.write_str("window must be positive"),
        }
    }
}

impl std::error::Error for BadThrottleParams {}

impl ThrottleParams {
    /// Validated settings: `k` ≥ 1, `window` > 0.
    pub fn new(k: f64, window: Duration) -> Result<ThrottleParams, BadThrottleParams> {
        if k.is_nan() || k < 1.0 || !k.is_finite() {
            return Err(BadThrottleParams::K(k));
        }
        if window.is_zero() {
            return Err(BadThrottleParams::Window);
        }
        Ok(ThrottleParams { k, window })
    }

    /// The multiplier K.
    pub fn k(&self) -> f64 {
        self.k
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }
}

impl Default for ThrottleParams {
    /// K = 2 (the SRE book's), over 60 s.
    fn default() -> ThrottleParams {
        ThrottleParams {
            k: 2.0,
            window: Duration::from_secs(60),
        }
    }
}

/// What the throttle counts now, for `/status`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThrottleSnapshot {
    /// Requests over the window (locally rejected ones included).
    pub requests: u64,
    /// Requests the upstream accepted over the window.
    pub accepts: u64,
    /// The probability of rejecting the next request locally.
    pub reject_probability: f64,
}

/// One upstream's throttle, shared by every request to it.
#[derive(Debug)]
pub struct AdaptiveThrottle {
    params: ThrottleParams,
    /// Requests and accepts.
    counts: PairWindow,
}

impl AdaptiveThrottle {
    /// Nothing counted yet: nothing rejected.
    pub fn new(params: ThrottleParams, now: Instant) -> AdaptiveThrottle {
        AdaptiveThrottle {
            params,
            counts: PairWindow::new(params.window, now),
        }
    }

    /// The settings.
    pub fn params(&self) -> &ThrottleParams {
        &self.params
    }

    /// Whether to reject a request locally, given `draw`, uniform in
    /// [0, 1). A rejected request is counted (as not accepted) at once; a
    /// request let through is counted by [`AdaptiveThrottle::record`] when
    /// the upstream answers.
    pub fn reject(&self, now: Instant, draw: f64) -> bool {
        let probability = self.probability(self.counts.totals(now));
        let reject = draw < probability;
        if reject {
            self.counts.add(now, [1, 0]);
        }
        reject
    }

    /// The upstream answered a request: `accepted` unless it rejected it
    /// (overload, 503, 429).
    pub fn record(&self, accepted: bool, now: Instant) {
        self.counts.add(now, [1, u64::from(accepted)]);
    }

    /// What the throttle counts as of `now`.
    pub fn snapshot(&self, now: Instant) -> ThrottleSnapshot {
        let [requests, accepts] = self.counts.totals(now);
        ThrottleSnapshot {
            requests,
            accepts,
            reject_probability: self.probability([requests, accepts]),
        }
    }

    fn probability(&self, [requests, accepts]: [u64; 2]) -> f64 {
        let requests = requests as f64;
        ((requests - self.params.k * accepts as f64) / (requests + 1.0)).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(now: Instant) -> AdaptiveThrottle {
        AdaptiveThrottle::new(
            ThrottleParams::new(2.0, Duration::from_secs(10)).expect("valid"),
            now,
        )
    }

    #[test]
    fn params_are_validated() {
        assert!(ThrottleParams::new(2.0, Duration::from_secs(1)).is_ok());
        assert_eq!(
            ThrottleParams::new(0.5, Duration::from_secs(1)),
            Err(BadThrottleParams::K(0.5))
        );
        assert!(ThrottleParams::new(f64::NAN, Duration::from_secs(1)).is_err());
        assert_eq!(
            ThrottleParams::new(2.0, Duration::ZERO),
            Err(BadThrottleParams::Window)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_accepting_upstream_is_never_throttled() {
        let now = Instant::now();
        let throttle = throttle(now);
        for _ in 0..1_000 {
            assert!(!throttle.reject(now, 0.0));
            throttle.record(true, now);
        }
        assert_eq!(throttle.snapshot(now).reject_probability, 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_probability_follows_the_formula() {
        let now = Instant::now();
        let throttle = throttle(now);
        // 100 requests, 20 accepted: (100 - 2 × 20) / 101.
        for i in 0..100 {
            throttle.record(i < 20, now);
        }
        let snapshot = throttle.snapshot(now);
        assert_eq!((snapshot.requests, snapshot.accepts), (100, 20));
        assert!((snapshot.reject_probability - 60.0 / 101.0).abs() < 1e-12);
        // Half accepted or more (with K = 2): nothing rejected.
        let throttle = self::throttle(now);
        for i in 0..100 {
            throttle.record(i < 50, now);
        }
        assert_eq!(throttle.snapshot(now).reject_probability, 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_that_rejects_everything_gets_a_trickle_and_recovery_is_seen() {
        let start = Instant::now();
        let throttle = throttle(start);
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut draw = move || rng.random::<f64>();
        let mut sent = 0;
        // 1,000 requests over 5 s, every one the upstream sees rejected.
        for i in 0..1_000u64 {
            let now = start + Duration::from_millis(i * 5);
            if !throttle.reject(now, draw()) {
                sent += 1;
                throttle.record(false, now);
            }
        }
        assert!(sent < 50, "the upstream saw {sent} of 1000");
        // The upstream recovers: what goes through is accepted, and the
        // share let through doubles (K = 2) each window, so the probability
        // is back to 0 after about log2(requests per window) windows: the
        // price of counting local rejections, which keeps a trickle going.
        let mut now = start + Duration::from_secs(5);
        let mut rounds = 0;
        while throttle.snapshot(now).reject_probability > 0.0 {
            for _ in 0..100 {
                now += Duration::from_millis(5);
                if !throttle.reject(now, draw()) {
                    throttle.record(true, now);
                }
            }
            rounds += 1;
            assert!(rounds < 1_000, "no recovery in {:?}", now - start);
        }
        let recovered = now - start - Duration::from_secs(5);
        println!("recovered after {recovered:?}, the upstream saw {sent} of 1000 while rejecting");
        assert!(
            recovered < Duration::from_secs(150),
            "recovered after {recovered:?}"
        );
    }
}
