//! Validated parameters of a [`RefreshingCache`](super::RefreshingCache).

use std::fmt;
use std::time::Duration;

/// How a cache sizes itself and how long values live. Built with
/// [`CacheParams::builder`], which rejects nonsense, so a value of this type
/// is always usable; [`Default`] gives the documented defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheParams {
    /// Total weight (bytes, as the weigher counts them) the cache may hold;
    /// least recently used entries are evicted past it.
    max_size: u64,
    /// Freshness of a loaded value that brings no lifetime of its own.
    default_ttl: Duration,
    /// How long past freshness a value may still be served while one
    /// background refresh runs.
    stale_while_revalidate: Duration,
    /// How long past freshness a value may still be served when its refresh
    /// fails or does not finish within `fill_wait`.
    stale_if_error: Duration,
    /// The longest a `get` waits for a fill, its own or one another caller
    /// started; the fill itself goes on and stores its result.
    fill_wait: Duration,
}

impl CacheParams {
    /// Default `max_size`: 64 MiB.
    pub const DEFAULT_MAX_SIZE: u64 = 64 * 1024 * 1024;
    /// Default `default_ttl`.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
    /// Default `fill_wait`: a client waiting on someone else's upstream
    /// request should not wait longer than it would for its own.
    pub const DEFAULT_FILL_WAIT: Duration = Duration::from_secs(10);
    /// Longest duration accepted for any key: a day. Longer is a typo, and the
    /// bound keeps `stored_at + ttl + window` far from overflowing.
    pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

    /// A builder starting from the defaults.
    pub fn builder() -> CacheParamsBuilder {
        CacheParamsBuilder {
            params: CacheParams::default(),
        }
    }

    /// Total weight the cache may hold.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Freshness of a value loaded without a lifetime of its own.
    pub fn default_ttl(&self) -> Duration {
        self.default_ttl
    }

    /// Default stale-while-revalidate window (0 = off).
    pub fn stale_while_revalidate(&self) -> Duration {
        self.stale_while_revalidate
    }

    /// Default stale-if-error window (0 = off).
    pub fn stale_if_error(&self) -> Duration {
        self.stale_if_error
    }

    /// Longest wait for a fill.
    pub fn fill_wait(&self) -> Duration {
        self.fill_wait
    }
}

impl Default for CacheParams {
    /// 64 MiB, 60 s TTL, no stale windows, 10 s fill wait.
    fn default() -> CacheParams {
        CacheParams {
            max_size: CacheParams::DEFAULT_MAX_SIZE,
            default_ttl: CacheParams::DEFAULT_TTL,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            fill_wait: CacheParams::DEFAULT_FILL_WAIT,
        }
    }
}

/// Sets [`CacheParams`] one key at a time; [`build`](Self::build) checks
/// them. Each setter is named after its config key.
#[derive(Clone, Debug)]
#[must_use]
pub struct CacheParamsBuilder {
    params: CacheParams,
}

impl CacheParamsBuilder {
    /// Total weight; at least 1.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.params.max_size = bytes;
        self
    }

    /// Default freshness; above zero (a zero TTL caches nothing).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.params.default_ttl = ttl;
        self
    }

    /// Default stale-while-revalidate window; 0 disables it.
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.params.stale_while_revalidate = window;
        self
    }

    /// Default stale-if-error window; 0 disables it.
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.params.stale_if_error = window;
        self
    }

    /// Longest wait for a fill; above zero.
    pub fn fill_wait(mut self, wait: Duration) -> Self {
        self.params.fill_wait = wait;
        self
    }

    /// Every problem with the keys set so far, in key order.
    pub fn problems(&self) -> Vec<BadCacheParams> {
        let p = &self.params;
        let mut problems = Vec::new();
        let mut bad = |key, message: String| problems.push(BadCacheParams { key, message });
        if p.max_size == 0 {
            bad("max_size", "must be at least 1 byte, got 0".to_owned());
        }
        for (key, value, may_be_zero) in [
            ("default_ttl", p.default_ttl, false),
            ("stale_while_revalidate", p.stale_while_revalidate, true),
            ("stale_if_error", p.stale_if_error, true),
            ("fill_wait", p.fill_wait, false),
        ] {
            if value.is_zero() && !may_be_zero {
                bad(key, "must be above zero".to_owned());
            } else if value > CacheParams::MAX_DURATION {
                bad(
                    key,
                    format!(
                        "must be at most {:?}, got {value:?}",
                        CacheParams::MAX_DURATION
                    ),
                );
            }
        }
        problems
    }

    /// The parameters, or the first problem with them.
    pub fn build(self) -> Result<CacheParams, BadCacheParams> {
        match self.problems().into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(self.params),
        }
    }
}

/// A rejected cache parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadCacheParams {
    /// The config key at fault.
    pub key: &'static str,
    /// What is wrong with it, without the key.
    pub message: String,
}

impl fmt::Display for BadCacheParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, self.message)
    }
}

impl std::error::Error for BadCacheParams {}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(builder: CacheParamsBuilder) -> String {
        builder.build().expect_err("invalid").to_string()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(CacheParams::builder().build(), Ok(CacheParams::default()));
        let p = CacheParams::default();
        assert_eq!(p.max_size(), 64 * 1024 * 1024);
        assert_eq!(p.default_ttl(), Duration::from_secs(60));
        assert_eq!(p.stale_while_revalidate(), Duration::ZERO);
        assert_eq!(p.stale_if_error(), Duration::ZERO);
        assert_eq!(p.fill_wait(), Duration::from_secs(10));
    }

    #[test]
    fn messages_name_the_key() {
        let b = CacheParams::builder;
        assert_eq!(
            error(b().max_size(0)),
            "max_size must be at least 1 byte, got 0"
        );
        assert_eq!(
            error(b().default_ttl(Duration::ZERO)),
            "default_ttl must be above zero"
        );
        assert_eq!(
            error(b().fill_wait(Duration::ZERO)),
            "fill_wait must be above zero"
        );
        assert!(
            error(b().stale_if_error(Duration::from_secs(90_000)))
                .starts_with("stale_if_error must be at most")
        );
        assert!(b().stale_while_revalidate(Duration::ZERO).build().is_ok());
    }

    #[test]
    fn every_problem_is_listed() {
        let problems = CacheParams::builder()
            .max_size(0)
            .fill_wait(Duration::ZERO)
            .problems();
        let keys: Vec<_> = problems.iter().map(|p| p.key).collect();
        assert_eq!(keys, ["max_size", "fill_wait"]);
    }
}
