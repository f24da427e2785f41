//! Rate limits: a token bucket of `rate` per second and `burst`, computed
//! as GCRA (the generic cell rate algorithm): one timestamp per key, the
//! "theoretical arrival time" of the next request, instead of a token count
//! and a refill clock. The same arithmetic runs in Redis for a fleet-wide
//! limit (one `EVAL` per request, see the proxy's rate-limit stage), so a
//! limit means the same locally and fleet-wide.
//!
//! Written here rather than taken from a crate: the proxy needs the very
//! same decision in Rust and in a Redis script, with the headers of
//! draft-ietf-httpapi-ratelimit-headers from it.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// A rate and a burst, validated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateParams {
    /// Time between two requests at the sustained rate (1 / rate).
    interval: Duration,
    /// Requests allowed at once after a quiet period.
    burst: u32,
}

/// Invalid [`RateParams`].
#[derive(Clone, Debug, PartialEq)]
pub enum BadRateParams {
    /// The rate must be a positive, finite number of requests per second.
    Rate(f64),
    /// The burst must be at least 1.
    Burst,
}

impl std::fmt::Display for BadRateParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadRateParams::Rate(rate) => {
                write!(
                    f,
                    "rate must be a positive number of requests per second (it is {rate})"
                )
            }
            BadRateParams::Burst => f.write_str("burst must be at least 1"),
        }
    }
}

impl std::error::Error for BadRateParams {}

impl RateParams {
    /// `rate` requests per second sustained, `burst` at once.
    pub fn new(rate: f64, burst: u32) -> Result<RateParams, BadRateParams> {
        if rate.is_nan() || !rate.is_finite() || rate <= 0.0 {
            return Err(BadRateParams::Rate(rate));
        }
        if burst == 0 {
            return Err(BadRateParams::Burst);
        }
        Ok(RateParams {
            interval: Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1)),
            burst,
        })
    }

    /// Time between two requests at the sustained rate.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Requests allowed at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }
}

/// One request's verdict, with what the `RateLimit-*` headers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// The quota (the burst).
    pub limit: u32,
    /// Requests still allowed at once after this one.
    pub remaining: u32,
    /// Until the quota is whole again.
    pub reset: Duration,
    /// When rejected: until one request is allowed again.
    pub retry_after: Option<Duration>,
}

/// The GCRA step: the verdict at `now` for a key whose next theoretical
/// arrival is `tat` (`None`: never seen, or long quiet), and the `tat` to
/// keep (unchanged when rejected).
pub fn gcra(
    tat: Option<Instant>,
    now: Instant,
    params: &RateParams,
) -> (RateDecision, Option<Instant>) {
    let base = tat.map_or(now, |tat| tat.max(now));
    let next = base + params.interval;
    let window = params.interval * params.burst;
    let horizon = now + window;
    if next > horizon {
        let decision = RateDecision {
            allowed: false,
            limit: params.burst,
            remaining: 0,
            reset: base.saturating_duration_since(now),
            retry_after: Some(next.saturating_duration_since(horizon)),
        };
        return (decision, tat);
    }
    let slack = horizon.saturating_duration_since(next);
    let remaining = u32::try_from(slack.as_nanos() / params.interval.as_nanos().max(1))
        .unwrap_or(u32::MAX)
        .min(params.burst);
    let decision = RateDecision {
        allowed: true,
        limit: params.burst,
        remaining,
        reset: next.saturating_duration_since(now),
        retry_after: None,
    };
    (decision, Some(next))
}

/// Keys kept at most; past it, keys whose bucket is whole again are
/// forgotten (they are the same as unseen), then all if that is not enough.
const MAX_KEYS: usize = 100_000;

/// A rate limit per key (a client address, an API key), in this process.
#[derive(Debug)]
pub struct KeyedLimiter {
    params: RateParams,
    keys: Mutex<HashMap<String, Instant>>,
}

impl KeyedLimiter {
    /// No key seen yet.
    pub fn new(params: RateParams) -> KeyedLimiter {
        KeyedLimiter {
            params,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The settings.
    pub fn params(&self) -> &RateParams {
        &self.params
    }

    /// The verdict for one request of `key` at `now` (counted if allowed).
    pub fn check(&self, key: &str, now: Instant) -> RateDecision {
        let mut keys = self.keys.lock();
        let (decision, tat) = gcra(keys.get(key).copied(), now, &self.params);
        if let Some(tat) = tat
            && decision.allowed
        {
            // A key seen before is updated in place: no allocation.
            if let Some(slot) = keys.get_mut(key) {
                *slot = tat;
                return decision;
            }
            if keys.len() >= MAX_KEYS {
                keys.retain(|_, tat| *tat > now);
                if keys.len() >= MAX_KEYS {
                    keys.clear();
                }
            }
            keys.insert(key.to_owned(), tat);
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_validated() {
        assert!(RateParams::new(10.0, 5).is_ok());
        assert_eq!(RateParams::new(0.0, 5), Err(BadRateParams::Rate(0.0)));
        assert!(RateParams::new(f64::INFINITY, 5).is_err());
        assert_eq!(RateParams::new(1.0, 0), Err(BadRateParams::Burst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_sustained_rate() {
        let now = Instant::now();
        let limiter = KeyedLimiter::new(RateParams::new(10.0, 3).expect("valid"));
        let remaining: Vec<u32> = (0..3).map(|_| limiter.check("a", now).remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limiter.check("a", now);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Some(Duration::from_millis(100)));
        // Another key has its own bucket.
        assert!(limiter.check("b", now).allowed);
        // 100 ms later one request more; a second later the whole burst.
        assert!(limiter.check("a", now + Duration::from_millis(100)).allowed);
        assert!(!limiter.check("a", now + Duration::from_millis(100)).allowed);
        let later = now + Duration::from_secs(1);
        let whole = limiter.check("a", later);
        assert_eq!((whole.allowed, whole.remaining), (true, 2));
        assert_eq!(whole.reset, Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn over_a_long_run_the_rate_holds() {
        let start = Instant::now();
        let limiter = KeyedLimiter::new(RateParams::new(50.0, 10).expect("valid"));
        // 1,000 requests/s offered for 10 s.
        let allowed = (0..10_000u64)
            .filter(|i| {
                limiter
                    .check("k", start + Duration::from_millis(*i))
                    .allowed
            })
            .count();
        // 50/s for 10 s plus the burst.
        assert!((500..=511).contains(&allowed), "{allowed}");
    }
}
