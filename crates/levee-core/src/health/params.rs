//! Validated parameters of active health checking.

use std::fmt;
use std::time::Duration;

/// How often to check an endpoint and how many results in a row change its
/// health. Built by [`HealthCheckParams::new`], which rejects nonsense, so a
/// [`HealthTracker`](super::HealthTracker) never has to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HealthCheckParams {
    /// Passes in a row that turn an unhealthy endpoint healthy. More than one,
    /// so that a node which answers one check while still failing does not
    /// get traffic back and lose it again (flapping).
    rise: u32,
    /// Failures in a row that turn a healthy endpoint unhealthy. More than one,
    /// so that one lost packet or one slow check does not take a node out.
    fall: u32,
    /// Time between checks while the health is settled.
    interval: Duration,
    /// Time between checks while the health is changing (or still unknown), so
    /// that a node going down is taken out after `fall` fast checks rather
    /// than `fall` slow ones. Never slower than `interval`.
    transition_interval: Duration,
    /// How long one check may take before it counts as
    /// [`CheckFailure::Timeout`](super::CheckFailure::Timeout). Enforced by the
    /// prober; kept here so that every check setting lives in one place.
    timeout: Duration,
    /// Random spread of each delay, as a fraction of it (0.0 ..= 1.0), so that
    /// many levee instances started together do not check a node in lockstep.
    jitter: f64,
}

impl HealthCheckParams {
    /// Validated parameters. Rejects `rise` or `fall` of 0, a zero `interval`,
    /// `transition_interval` or `timeout`, and a `jitter` outside 0.0 ..= 1.0.
    ///
    /// A `timeout` as long as the `interval` or longer is allowed: the next
    /// check is scheduled after the previous one ends, so checks never overlap.
    pub fn new(
        rise: u32,
        fall: u32,
        interval: Duration,
        transition_interval: Duration,
        timeout: Duration,
        jitter: f64,
    ) -> Result<HealthCheckParams, BadHealthParams> {
        if rise == 0 {
            return Err(BadHealthParams::Rise);
        }
        if fall == 0 {
            return Err(BadHealthParams::Fall);
        }
        if interval.is_zero() {
            return Err(BadHealthParams::Interval);
        }
        if transition_interval.is_zero() {
            return Err(BadHealthParams::TransitionInterval);
        }
        if timeout.is_zero() {
            return Err(BadHealthParams::Timeout);
        }
        // Written so that NaN is rejected too.
        if !(0.0..=1.0).contains(&jitter) {
            return Err(BadHealthParams::Jitter(jitter));
        }
        Ok(HealthCheckParams {
            rise,
            fall,
            interval,
            transition_interval,
            timeout,
            jitter,
        })
    }

    /// Passes in a row that turn an unhealthy endpoint healthy.
    pub fn rise(&self) -> u32 {
        self.rise
    }

    /// Failures in a row that turn a healthy endpoint unhealthy.
    pub fn fall(&self) -> u32 {
        self.fall
    }

    /// Time between checks while the health is settled.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Time between checks while the health is changing or unknown, as
    /// configured (the tracker uses the shorter of this and `interval`).
    pub fn transition_interval(&self) -> Duration {
        self.transition_interval
    }

    /// How long one check may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Random spread of each delay, as a fraction of it.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }
}

impl Default for HealthCheckParams {
    /// rise 2, fall 2, every 5 s (1 s while changing), 2 s timeout, 10 % jitter.
    fn default() -> HealthCheckParams {
        HealthCheckParams {
            rise: 2,
            fall: 2,
            interval: Duration::from_secs(5),
            transition_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            jitter: 0.1,
        }
    }
}

/// A health-check parameter out of range. Each variant names the parameter
/// (its config key), so the config layer can point at the offending line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BadHealthParams {
    /// `rise` was 0.
    Rise,
    /// `fall` was 0.
    Fall,
    /// `interval` was zero.
    Interval,
    /// `transition_interval` was zero.
    TransitionInterval,
    /// `timeout` was zero.
    Timeout,
    /// `jitter` was outside 0.0 ..= 1.0 (or NaN).
    Jitter(f64),
}

impl BadHealthParams {
    /// The name of the offending parameter, as spelled in the config.
    pub fn param(&self) -> &'static str {
        match self {
            BadHealthParams::Rise => "rise",
            BadHealthParams::Fall => "fall",
            BadHealthParams::Interval => "interval",
            BadHealthParams::TransitionInterval => "transition_interval",
            BadHealthParams::Timeout => "timeout",
            BadHealthParams::Jitter(_) => "jitter",
        }
    }
}

impl fmt::Display for BadHealthParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let param = self.param();
        match self {
            BadHealthParams::Rise | BadHealthParams::Fall => {
                write!(f, "{param} must be at least 1")
            }
            BadHealthParams::Interval
            | BadHealthParams::TransitionInterval
            | BadHealthParams::Timeout => write!(f, "{param} must be greater than zero"),
            BadHealthParams::Jitter(jitter) => {
                write!(f, "{param} must be between 0.0 and 1.0, got {jitter}")
            }
        }
    }
}

impl std::error::Error for BadHealthParams {}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn params(
        rise: u32,
        fall: u32,
        interval: Duration,
        transition_interval: Duration,
        timeout: Duration,
        jitter: f64,
    ) -> Result<HealthCheckParams, String> {
        HealthCheckParams::new(rise, fall, interval, transition_interval, timeout, jitter)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn defaults_are_valid() {
        let defaults = HealthCheckParams::default();
        let rebuilt = HealthCheckParams::new(2, 2, 5 * S, S, 2 * S, 0.1);
        assert_eq!(rebuilt, Ok(defaults));
        assert_eq!(defaults.rise(), 2);
        assert_eq!(defaults.fall(), 2);
        assert_eq!(defaults.interval(), 5 * S);
        assert_eq!(defaults.transition_interval(), S);
        assert_eq!(defaults.timeout(), 2 * S);
        assert_eq!(defaults.jitter(), 0.1);
    }

    #[test]
    fn each_bad_parameter_is_named() {
        let cases = [
            (params(0, 2, S, S, S, 0.1), "rise must be at least 1"),
            (params(2, 0, S, S, S, 0.1), "fall must be at least 1"),
            (
                params(2, 2, Duration::ZERO, S, S, 0.1),
                "interval must be greater than zero",
            ),
            (
                params(2, 2, S, Duration::ZERO, S, 0.1),
                "transition_interval must be greater than zero",
            ),
            (
                params(2, 2, S, S, Duration::ZERO, 0.1),
                "timeout must be greater than zero",
            ),
            (
                params(2, 2, S, S, S, 1.5),
                "jitter must be between 0.0 and 1.0, got 1.5",
            ),
            (
                params(2, 2, S, S, S, -0.1),
                "jitter must be between 0.0 and 1.0, got -0.1",
            ),
            (
                params(2, 2, S, S, S, f64::NAN),
                "jitter must be between 0.0 and 1.0, got NaN",
            ),
        ];
        for (result, message) in cases {
            assert_eq!(result, Err(message.to_owned()));
        }
        assert_eq!(
            BadHealthParams::TransitionInterval.param(),
            "transition_interval"
        );
    }

    #[test]
    fn edge_values_are_allowed() {
        // A timeout as long as the interval or longer, no jitter, full jitter,
        // a transition interval slower than the interval: odd but harmless.
        assert!(params(1, 1, S, 2 * S, 3 * S, 0.0).is_ok());
        assert!(params(1, 1, S, S, S, 1.0).is_ok());
    }
}
