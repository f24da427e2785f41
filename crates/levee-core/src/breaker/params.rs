//! Validated parameters of a circuit breaker.

use std::fmt;
use std::time::Duration;

/// When a breaker trips and how long it stays open. Built with
/// [`BreakerParams::builder`], which rejects nonsense, so a value of this type
/// is always usable; [`Default`] gives the documented defaults.
///
/// The three trip policies (consecutive failures, failure rate, slow-call
/// rate) can be enabled in any combination; the first that fires trips the
/// breaker. With none enabled the breaker only opens when an operator forces
/// it (a kill switch).
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerParams {
    consecutive_failures: u32,
    failure_rate: Option<f64>,
    slow_call_rate: Option<f64>,
    slow_call_duration: Duration,
    window: Duration,
    min_calls: u32,
    open_for: Duration,
    open_multiplier: f64,
    max_open_for: Duration,
    half_open_trials: u32,
}

impl BreakerParams {
    /// Default `consecutive_failures`: a dead upstream is cut off after five
    /// calls (the outlier detector's default too, so the two agree on what
    /// "clearly broken" means).
    pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
    /// Default `failure_rate`: an upstream failing every other call is
    /// broken even though it never fails five times in a row.
    pub const DEFAULT_FAILURE_RATE: Option<f64> = Some(0.5);
    /// Default `slow_call_rate`: off, because what "slow" means depends on the
    /// service; enable it together with `slow_call_duration`.
    pub const DEFAULT_SLOW_CALL_RATE: Option<f64> = None;
    /// Default `slow_call_duration`: a call slower than this counts as slow.
    pub const DEFAULT_SLOW_CALL_DURATION: Duration = Duration::from_secs(1);
    /// Default `window` of the rate policies.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
    /// Default `min_calls`: below it a rate is noise (2 of 3 is not 67%).
    pub const DEFAULT_MIN_CALLS: u32 = 20;
    /// Default `open_for`: long enough for a restarting upstream to come
    /// back, short enough that users of a blip barely notice.
    pub const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(5);
    /// Default `open_multiplier`: each failed half-open probe doubles the
    /// next open period, so a dead upstream is probed less and less often.
    pub const DEFAULT_OPEN_MULTIPLIER: f64 = 2.0;
    /// Default `max_open_for`: a recovered upstream is noticed within a
    /// minute.
    pub const DEFAULT_MAX_OPEN_FOR: Duration = Duration::from_secs(60);
    /// Default `half_open_trials`: three successes in a row are evidence, one
    /// could be luck.
    pub const DEFAULT_HALF_OPEN_TRIALS: u32 = 3;
    /// Longest `open_for`, `max_open_for` and `window` accepted: a breaker
    /// that should stay open for more than a day should be forced open; the
    /// bound also keeps `now + open_for` far from overflowing.
    pub const MAX_DURATION_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);

    /// A builder starting from the defaults.
    pub fn builder() -> BreakerParamsBuilder {
        BreakerParamsBuilder {
            params: BreakerParams::default(),
        }
    }

    /// Failures in a row that trip the breaker; 0 disables the policy.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Share of failed calls in `window` that trips; `None` disables.
    pub fn failure_rate(&self) -> Option<f64> {
        self.failure_rate
    }

    /// Share of slow calls in `window` that trips; `None` disables.
    pub fn slow_call_rate(&self) -> Option<f64> {
        self.slow_call_rate
    }

    /// A call that takes longer than this is slow.
    pub fn slow_call_duration(&self) -> Duration {
        self.slow_call_duration
    }

    /// Sliding window of the rate policies.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Calls needed in the window before a rate is judged.
    pub fn min_calls(&self) -> u32 {
        self.min_calls
    }

    /// Length of the first open period.
    pub fn open_for(&self) -> Duration {
        self.open_for
    }

    /// Factor applied to the open period each time a half-open probe fails;
    /// 1 keeps it constant.
    pub fn open_multiplier(&self) -> f64 {
        self.open_multiplier
    }

    /// Longest open period, however often the breaker reopens.
    pub fn max_open_for(&self) -> Duration {
        self.max_open_for
    }

    /// Trial calls let through at once while half-open; all must succeed to
    /// close.
    pub fn half_open_trials(&self) -> u32 {
        self.half_open_trials
    }

    /// The open period after `reopens` failed half-open probes in a row:
    /// `open_for × open_multiplier^reopens`, capped at `max_open_for`.
    pub fn open_period(&self, reopens: u32) -> Duration {
        let base = self.open_for.as_secs_f64();
        // powi takes an i32; beyond a few dozen reopens the cap holds anyway.
        let exponent = i32::try_from(reopens).unwrap_or(i32::MAX);
        let grown = base * self.open_multiplier.powi(exponent);
        if !grown.is_finite() || grown >= self.max_open_for.as_secs_f64() {
            self.max_open_for
        } else {
            Duration::from_secs_f64(grown).max(self.open_for)
        }
    }
}

impl Default for BreakerParams {
    fn default() -> BreakerParams {
        BreakerParams {
            consecutive_failures: BreakerParams::DEFAULT_CONSECUTIVE_FAILURES,
            failure_rate: BreakerParams::DEFAULT_FAILURE_RATE,
            slow_call_rate: BreakerParams::DEFAULT_SLOW_CALL_RATE,
            slow_call_duration: BreakerParams::DEFAULT_SLOW_CALL_DURATION,
            window: BreakerParams::DEFAULT_WINDOW,
            min_calls: BreakerParams::DEFAULT_MIN_CALLS,
            open_for: BreakerParams::DEFAULT_OPEN_FOR,
            open_multiplier: BreakerParams::DEFAULT_OPEN_MULTIPLIER,
            max_open_for: BreakerParams::DEFAULT_MAX_OPEN_FOR,
            half_open_trials: BreakerParams::DEFAULT_HALF_OPEN_TRIALS,
        }
    }
}

/// Sets [`BreakerParams`] one key at a time; [`build`](Self::build) checks
/// them. Each setter is named after its config key.
#[derive(Clone, Debug)]
#[must_use]
pub struct BreakerParamsBuilder {
    params: BreakerParams,
}

impl BreakerParamsBuilder {
    /// Failures in a row that trip the breaker; 0 disables the policy.
    pub fn consecutive_failures(mut self, count: u32) -> Self {
        self.params.consecutive_failures = count;
        self
    }

    /// Failure share that trips, above 0 and at most 1; `None` disables.
    pub fn failure_rate(mut self, rate: Option<f64>) -> Self {
        self.params.failure_rate = rate;
        self
    }

    /// Slow-call share that trips, above 0 and at most 1; `None` disables.
    pub fn slow_call_rate(mut self, rate: Option<f64>) -> Self {
        self.params.slow_call_rate = rate;
        self
    }

    /// A call longer than this is slow; above zero.
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.params.slow_call_duration = duration;
        self
    }

    /// Sliding window of the rate policies; above zero, at most a day.
    pub fn window(mut self, window: Duration) -> Self {
        self.params.window = window;
        self
    }

    /// Calls needed in the window before a rate is judged; at least 1.
    pub fn min_calls(mut self, count: u32) -> Self {
        self.params.min_calls = count;
        self
    }

    /// Length of the first open period; above zero, at most a day.
    pub fn open_for(mut self, duration: Duration) -> Self {
        self.params.open_for = duration;
        self
    }

    /// Growth of the open period per failed probe; at least 1 (1 = no
    /// growth).
    pub fn open_multiplier(mut self, factor: f64) -> Self {
        self.params.open_multiplier = factor;
        self
    }

    /// Longest open period; at least `open_for`, at most a day.
    pub fn max_open_for(mut self, duration: Duration) -> Self {
        self.params.max_open_for = duration;
        self
    }

    /// Trial calls while half-open; at least 1.
    pub fn half_open_trials(mut self, count: u32) -> Self {
        self.params.half_open_trials = count;
        self
    }

    /// Every problem with the values set, in key order (empty when
    /// [`build`](Self::build) would succeed). For config validation that
    /// reports all problems at once, each at the location of its key.
    pub fn problems(&self) -> Vec<BadBreakerParams> {
        let p = &self.params;
        let mut problems = Vec::new();
        let mut bad = |key: &'static str, message: String| {
            problems.push(BadBreakerParams { key, message });
        };
        for (key, rate) in [
            ("failure_rate", p.failure_rate),
            ("slow_call_rate", p.slow_call_rate),
        ] {
            if let Some(rate) = rate {
                // NaN fails the range test too.
                if !(rate > 0.0 && rate <= 1.0) {
                    bad(
                        key,
                        format!("must be between 0 and 1 (0 excluded), got {rate}"),
                    );
                }
            }
        }
        if p.slow_call_duration.is_zero() {
            bad("slow_call_duration", "must be greater than zero".to_owned());
        }
        let limit = BreakerParams::MAX_DURATION_LIMIT;
        for (key, duration) in [("window", p.window), ("open_for", p.open_for)] {
            if duration.is_zero() {
                bad(key, "must be greater than zero".to_owned());
            } else if duration > limit {
                bad(key, format!("must be at most 24h, got {duration:?}"));
            }
        }
        if p.min_calls == 0 {
            bad("min_calls", "must be at least 1".to_owned());
        }
        if !(p.open_multiplier >= 1.0 && p.open_multiplier.is_finite()) {
            bad(
                "open_multiplier",
                format!(
                    "must be at least 1 (1 = no growth), got {}",
                    p.open_multiplier
                ),
            );
        }
        if p.max_open_for < p.open_for {
            bad(
                "max_open_for",
                format!(
                    "must be at least open_for ({:?}), got {:?}",
                    p.open_for, p.max_open_for
                ),
            );
        } else if p.max_open_for > limit {
            bad(
                "max_open_for",
                format!(
                    "must be at most 24h (force the breaker open instead), got {:?}",
                    p.max_open_for
                ),
            );
        }
        if p.half_open_trials == 0 {
            bad("half_open_trials", "must be at least 1".to_owned());
        }
        problems
    }

    /// The parameters, or the first problem (see [`problems`](Self::problems)
    /// for all of them).
    pub fn build(self) -> Result<BreakerParams, BadBreakerParams> {
        match self.problems().into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(self.params),
        }
    }
}

/// A parameter value that makes no sense. Displays as `key message`, e.g.
/// "half_open_trials must be at least 1".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadBreakerParams {
    /// The config key at fault.
    pub key: &'static str,
    /// What is wrong with it, without the key.
    pub message: String,
}

impl fmt::Display for BadBreakerParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, self.message)
    }
}

impl std::error::Error for BadBreakerParams {}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn error(builder: BreakerParamsBuilder) -> String {
        builder.build().expect_err("invalid").to_string()
    }

    #[test]
    fn breaker_params_defaults_are_valid() {
        assert_eq!(
            BreakerParams::builder().build(),
            Ok(BreakerParams::default())
        );
        let p = BreakerParams::default();
        assert_eq!(p.consecutive_failures(), 5);
        assert_eq!(p.half_open_trials(), 3);
        assert_eq!(p.slow_call_rate(), None);
        assert_eq!(p.open_for(), 5 * SEC);
    }

    #[test]
    fn breaker_params_messages_name_the_key() {
        let b = BreakerParams::builder;
        assert_eq!(
            error(b().failure_rate(Some(1.5))),
            "failure_rate must be between 0 and 1 (0 excluded), got 1.5"
        );
        assert!(error(b().failure_rate(Some(f64::NAN))).starts_with("failure_rate "));
        assert!(error(b().slow_call_rate(Some(0.0))).starts_with("slow_call_rate "));
        assert!(error(b().slow_call_duration(Duration::ZERO)).starts_with("slow_call_duration "));
        assert!(error(b().window(Duration::ZERO)).starts_with("window "));
        assert!(error(b().min_calls(0)).starts_with("min_calls "));
        assert!(error(b().open_for(Duration::ZERO)).starts_with("open_for "));
        assert!(error(b().open_multiplier(0.5)).starts_with("open_multiplier "));
        assert!(error(b().open_multiplier(f64::INFINITY)).starts_with("open_multiplier "));
        assert!(error(b().max_open_for(SEC)).starts_with("max_open_for "));
        assert!(error(b().max_open_for(Duration::MAX)).starts_with("max_open_for "));
        assert_eq!(
            error(b().half_open_trials(0)),
            "half_open_trials must be at least 1"
        );
    }

    #[test]
    fn breaker_params_list_every_problem() {
        let problems = BreakerParams::builder()
            .failure_rate(Some(2.0))
            .min_calls(0)
            .half_open_trials(0)
            .problems();
        let keys: Vec<&str> = problems.iter().map(|p| p.key).collect();
        assert_eq!(keys, ["failure_rate", "min_calls", "half_open_trials"]);
    }

    #[test]
    fn breaker_params_with_no_policy_are_a_kill_switch() {
        let params = BreakerParams::builder()
            .consecutive_failures(0)
            .failure_rate(None)
            .build()
            .expect("valid");
        assert_eq!(params.failure_rate(), None);
    }

    #[test]
    fn breaker_open_period_grows_and_is_capped() {
        let p = BreakerParams::builder()
            .open_for(5 * SEC)
            .open_multiplier(2.0)
            .max_open_for(30 * SEC)
            .build()
            .expect("valid");
        let periods: Vec<Duration> = (0..5).map(|n| p.open_period(n)).collect();
        assert_eq!(periods, [5 * SEC, 10 * SEC, 20 * SEC, 30 * SEC, 30 * SEC]);
        assert_eq!(p.open_period(u32::MAX), 30 * SEC);
        let flat = BreakerParams::builder()
            .open_multiplier(1.0)
            .build()
            .expect("valid");
        assert_eq!(flat.open_period(7), flat.open_for());
    }
}
