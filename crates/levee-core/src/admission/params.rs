//! Validated parameters of admission control.

use std::fmt;
use std::time::Duration;

/// How a cluster admits requests. Built with [`AdmissionParams::builder`],
/// which rejects nonsense, so a value of this type is always usable;
/// [`Default`] gives the documented defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionParams {
    max_concurrency: usize,
    max_queue: usize,
    queue_timeout: Duration,
    codel_target: Duration,
    codel_interval: Duration,
}

impl AdmissionParams {
    /// Default `max_concurrency`.
    pub const DEFAULT_MAX_CONCURRENCY: usize = 256;
    /// Default `max_queue`.
    pub const DEFAULT_MAX_QUEUE: usize = 1024;
    /// Default `queue_timeout`: a request that has waited this long in a queue
    /// that keeps draining is better told "no" than served late.
    pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_millis(100);
    /// Default `codel_target`: the longest wait once a standing queue has
    /// formed (CoDel's 5 ms, also Facebook's "Fail at Scale" value).
    pub const DEFAULT_CODEL_TARGET: Duration = Duration::from_millis(5);
    /// Default `codel_interval`: how long the queue must stay non-empty before
    /// it counts as standing (CoDel's and "Fail at Scale"'s 100 ms).
    pub const DEFAULT_CODEL_INTERVAL: Duration = Duration::from_millis(100);
    /// Largest `max_queue` accepted. By Little's law a queue only helps while
    /// it drains within the timeout; a million waiters never does, and the
    /// bound keeps a typo from meaning "unbounded".
    pub const MAX_QUEUE_LIMIT: usize = 1 << 20;
    /// Longest `queue_timeout` and `codel_interval` accepted: no client waits
    /// an hour for a proxy, and the bound keeps `now + timeout` far from
    /// overflowing.
    pub const MAX_WAIT_LIMIT: Duration = Duration::from_secs(60 * 60);

    /// A builder starting from the defaults.
    pub fn builder() -> AdmissionParamsBuilder {
        AdmissionParamsBuilder {
            params: AdmissionParams::default(),
        }
    }

    /// Requests served at once; more wait in the queue.
    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    /// Requests that may wait for a slot; past it they are rejected at once.
    /// 0 means no queue at all.
    pub fn max_queue(&self) -> usize {
        self.max_queue
    }

    /// Longest wait while the queue keeps emptying.
    pub fn queue_timeout(&self) -> Duration {
        self.queue_timeout
    }

    /// Longest wait once a standing queue has formed.
    pub fn codel_target(&self) -> Duration {
        self.codel_target
    }

    /// How long the queue must stay non-empty to count as standing.
    pub fn codel_interval(&self) -> Duration {
        self.codel_interval
    }
}

impl Default for AdmissionParams {
    fn default() -> AdmissionParams {
        AdmissionParams {
            max_concurrency: AdmissionParams::DEFAULT_MAX_CONCURRENCY,
            max_queue: AdmissionParams::DEFAULT_MAX_QUEUE,
            queue_timeout: AdmissionParams::DEFAULT_QUEUE_TIMEOUT,
            codel_target: AdmissionParams::DEFAULT_CODEL_TARGET,
            codel_interval: AdmissionParams::DEFAULT_CODEL_INTERVAL,
        }
    }
}

/// Sets [`AdmissionParams`] one key at a time; [`build`](Self::build) checks
/// them. Each setter is named after its config key.
#[derive(Clone, Debug)]
#[must_use]
pub struct AdmissionParamsBuilder {
    params: AdmissionParams,
}

impl AdmissionParamsBuilder {
    /// Requests served at once; at least 1.
    pub fn max_concurrency(mut self, count: usize) -> Self {
        self.params.max_concurrency = count;
        self
    }

    /// Requests that may wait; 0 disables queueing.
    pub fn max_queue(mut self, count: usize) -> Self {
        self.params.max_queue = count;
        self
    }

    /// Longest wait while the queue drains; above zero.
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.params.queue_timeout = timeout;
        self
    }

    /// Longest wait in a standing queue; above zero, at most `queue_timeout`.
    pub fn codel_target(mut self, target: Duration) -> Self {
        self.params.codel_target = target;
        self
    }

    /// Non-empty time after which the queue is standing; above zero.
    pub fn codel_interval(mut self, interval: Duration) -> Self {
        self.params.codel_interval = interval;
        self
    }

    /// Every problem with the keys set so far, in key order.
    pub fn problems(&self) -> Vec<BadAdmissionParams> {
        let p = &self.params;
        let mut problems = Vec::new();
        let mut bad = |key, message: String| problems.push(BadAdmissionParams { key, message });
        if p.max_concurrency == 0 {
            // Zero would reject every request; remove the route instead.
            bad("max_concurrency", "must be at least 1, got 0".to_owned());
        }
        if p.max_queue > AdmissionParams::MAX_QUEUE_LIMIT {
            bad(
                "max_queue",
                format!(
                    "must be at most {}, got {}",
                    AdmissionParams::MAX_QUEUE_LIMIT,
                    p.max_queue
                ),
            );
        }
        for (key, value) in [
            ("queue_timeout", p.queue_timeout),
            ("codel_target", p.codel_target),
            ("codel_interval", p.codel_interval),
        ] {
            if value.is_zero() {
                bad(
                    key,
                    "must be above zero (set max_queue = 0 to disable queueing)".to_owned(),
                );
            } else if value > AdmissionParams::MAX_WAIT_LIMIT {
                bad(
                    key,
                    format!(
                        "must be at most {:?}, got {value:?}",
                        AdmissionParams::MAX_WAIT_LIMIT
                    ),
                );
            }
        }
        if p.codel_target > p.queue_timeout && !p.queue_timeout.is_zero() {
            // A standing queue must be stricter than a draining one, or the
            // controlled delay never cuts anything.
            bad(
                "codel_target",
                format!(
                    "must not exceed queue_timeout ({:?}), got {:?}",
                    p.queue_timeout, p.codel_target
                ),
            );
        }
        problems
    }

    /// The parameters, or the first problem with them.
    pub fn build(self) -> Result<AdmissionParams, BadAdmissionParams> {
        match self.problems().into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(self.params),
        }
    }
}

/// A rejected admission parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadAdmissionParams {
    /// The config key at fault.
    pub key: &'static str,
    /// What is wrong with it, without the key.
    pub message: String,
}

impl fmt::Display for BadAdmissionParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, self.message)
    }
}

impl std::error::Error for BadAdmissionParams {}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(builder: AdmissionParamsBuilder) -> String {
        builder.build().expect_err("invalid").to_string()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(
            AdmissionParams::builder().build(),
            Ok(AdmissionParams::default())
        );
        let p = AdmissionParams::default();
        assert_eq!(p.max_concurrency(), 256);
        assert_eq!(p.max_queue(), 1024);
        assert_eq!(p.queue_timeout(), Duration::from_millis(100));
        assert_eq!(p.codel_target(), Duration::from_millis(5));
        assert_eq!(p.codel_interval(), Duration::from_millis(100));
    }

    #[test]
    fn messages_name_the_key() {
        let b = AdmissionParams::builder;
        assert_eq!(
            error(b().max_concurrency(0)),
            "max_concurrency must be at least 1, got 0"
        );
        assert!(error(b().max_queue(usize::MAX)).starts_with("max_queue must be at most"));
        assert!(error(b().queue_timeout(Duration::ZERO)).starts_with("queue_timeout "));
        assert!(error(b().codel_target(Duration::ZERO)).starts_with("codel_target "));
        assert!(error(b().codel_interval(Duration::ZERO)).starts_with("codel_interval "));
        assert!(
            error(b().codel_interval(Duration::from_secs(7200)))
                .starts_with("codel_interval must be at most")
        );
        assert_eq!(
            error(b().queue_timeout(Duration::from_millis(2))),
            "codel_target must not exceed queue_timeout (2ms), got 5ms"
        );
    }

    #[test]
    fn no_queue_is_valid() {
        assert!(AdmissionParams::builder().max_queue(0).build().is_ok());
    }

    #[test]
    fn every_problem_is_listed() {
        let problems = AdmissionParams::builder()
            .max_concurrency(0)
            .codel_interval(Duration::ZERO)
            .problems();
        let keys: Vec<_> = problems.iter().map(|p| p.key).collect();
        assert_eq!(keys, ["max_concurrency", "codel_interval"]);
    }
}
