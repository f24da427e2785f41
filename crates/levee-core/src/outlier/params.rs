//! Validated parameters of passive outlier detection.

use std::fmt;
use std::time::Duration;

/// How a cluster's outlier detector decides. Built with
/// [`OutlierParams::builder`], which rejects nonsense, so a value of this type
/// is always usable; [`Default`] gives the documented defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct OutlierParams {
    consecutive_failures: u32,
    failure_rate: Option<f64>,
    window: Duration,
    min_requests: u32,
    count_other_5xx: bool,
    latency_factor: Option<f64>,
    latency_floor: Duration,
    base_ejection: Duration,
    max_ejection: Duration,
    max_ejected_percent: u8,
}

impl OutlierParams {
    /// Default `consecutive_failures`: a hung or dead node is out after five
    /// requests (Envoy's default too).
    pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
    /// Default `failure_rate`: a node failing every other request is out even
    /// though it never fails five times in a row.
    pub const DEFAULT_FAILURE_RATE: Option<f64> = Some(0.5);
    /// Default `window` for the failure rate and latency.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
    /// Default `min_requests`: below it a rate is noise (2 of 3 is not 67%).
    pub const DEFAULT_MIN_REQUESTS: u32 = 20;
    /// Default `latency_factor`.
    pub const DEFAULT_LATENCY_FACTOR: Option<f64> = Some(3.0);
    /// Default `latency_floor`.
    pub const DEFAULT_LATENCY_FLOOR: Duration = Duration::from_millis(100);
    /// Default `base_ejection`.
    pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(10);
    /// Default `max_ejection`.
    pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);
    /// Default `max_ejected_percent`: ejecting more than half a cluster moves
    /// its whole load onto the other half.
    pub const DEFAULT_MAX_EJECTED_PERCENT: u8 = 50;
    /// Longest `max_ejection` accepted. An endpoint that should stay out for
    /// longer than a day should be taken out of the config; the bound also
    /// keeps `now + ejection` far from overflowing.
    pub const MAX_EJECTION_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);

    /// A builder starting from the defaults.
    pub fn builder() -> OutlierParamsBuilder {
        OutlierParamsBuilder {
            params: OutlierParams::default(),
        }
    }

    /// Failures in a row that eject an endpoint; 0 disables the rule.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Share of failed requests in `window` that ejects; `None` disables.
    pub fn failure_rate(&self) -> Option<f64> {
        self.failure_rate
    }

    /// Sliding window for the failure rate and the latency comparison.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Requests an endpoint needs in the window before its failure rate (and,
    /// with a floor of [`super::LATENCY_MIN_SAMPLES`], its latency) is judged.
    pub fn min_requests(&self) -> u32 {
        self.min_requests
    }

    /// Whether 5xx other than 502/503/504 count as failures.
    pub fn count_other_5xx(&self) -> bool {
        self.count_other_5xx
    }

    /// An endpoint whose mean latency exceeds this multiple of the median of
    /// the others is a latency outlier; `None` disables.
    pub fn latency_factor(&self) -> Option<f64> {
        self.latency_factor
    }

    /// Never a latency outlier at or below this latency.
    pub fn latency_floor(&self) -> Duration {
        self.latency_floor
    }

    /// Length of a first ejection; later ones are multiples of it.
    pub fn base_ejection(&self) -> Duration {
        self.base_ejection
    }

    /// Longest ejection.
    pub fn max_ejection(&self) -> Duration {
        self.max_ejection
    }

    /// Largest share of the cluster that may be ejected at once.
    pub fn max_ejected_percent(&self) -> u8 {
        self.max_ejected_percent
    }
}

impl Default for OutlierParams {
    fn default() -> OutlierParams {
        OutlierParams {
            consecutive_failures: OutlierParams::DEFAULT_CONSECUTIVE_FAILURES,
            failure_rate: OutlierParams::DEFAULT_FAILURE_RATE,
            window: OutlierParams::DEFAULT_WINDOW,
            min_requests: OutlierParams::DEFAULT_MIN_REQUESTS,
            count_other_5xx: true,
            latency_factor: OutlierParams::DEFAULT_LATENCY_FACTOR,
            latency_floor: OutlierParams::DEFAULT_LATENCY_FLOOR,
            base_ejection: OutlierParams::DEFAULT_BASE_EJECTION,
            max_ejection: OutlierParams::DEFAULT_MAX_EJECTION,
            max_ejected_percent: OutlierParams::DEFAULT_MAX_EJECTED_PERCENT,
        }
    }
}

/// Sets [`OutlierParams`] one key at a time; [`build`](Self::build) checks
/// them. Each setter is named after its config key.
#[derive(Clone, Debug)]
#[must_use]
pub struct OutlierParamsBuilder {
    params: OutlierParams,
}

impl OutlierParamsBuilder {
    /// Failures in a row that eject an endpoint; 0 disables the rule.
    pub fn consecutive_failures(mut self, count: u32) -> Self {
        self.params.consecutive_failures = count;
        self
    }

    /// Failure share that ejects, above 0 and at most 1; `None` disables.
    pub fn failure_rate(mut self, rate: Option<f64>) -> Self {
        self.params.failure_rate = rate;
        self
    }

    /// Sliding window for the failure rate and latency; above zero.
    pub fn window(mut self, window: Duration) -> Self {
        self.params.window = window;
        self
    }

    /// Requests needed in the window before a rate is judged; at least 1.
    pub fn min_requests(mut self, count: u32) -> Self {
        self.params.min_requests = count;
        self
    }

    /// Whether 5xx other than 502/503/504 count as failures.
    pub fn count_other_5xx(mut self, count: bool) -> Self {
        self.params.count_other_5xx = count;
        self
    }

    /// Latency multiple of the cluster median that ejects, above 1; `None`
    /// disables.
    pub fn latency_factor(mut self, factor: Option<f64>) -> Self {
        self.params.latency_factor = factor;
        self
    }

    /// Never a latency outlier at or below this.
    pub fn latency_floor(mut self, floor: Duration) -> Self {
        self.params.latency_floor = floor;
        self
    }

    /// Length of a first ejection; above zero.
    pub fn base_ejection(mut self, duration: Duration) -> Self {
        self.params.base_ejection = duration;
        self
    }

    /// Longest ejection; at least `base_ejection`, at most
    /// [`OutlierParams::MAX_EJECTION_LIMIT`].
    pub fn max_ejection(mut self, duration: Duration) -> Self {
        self.params.max_ejection = duration;
        self
    }

    /// Largest share of the cluster ejected at once, 0–100 (0 disables
    /// ejection altogether).
    pub fn max_ejected_percent(mut self, percent: u8) -> Self {
        self.params.max_ejected_percent = percent;
        self
    }

    /// Every problem with the values set, in key order (empty when
    /// [`build`](Self::build) would succeed). For config validation that
    /// reports all problems at once, each at the location of its key.
    pub fn problems(&self) -> Vec<BadOutlierParams> {
        let p = &self.params;
        let mut problems = Vec::new();
        let mut bad = |key: &'static str, message: String| {
            problems.push(BadOutlierParams { key, message });
        };
        if let Some(rate) = p.failure_rate {
            // NaN fails the range test too.
            if !(rate > 0.0 && rate <= 1.0) {
                bad(
                    "failure_rate",
                    format!("must be between 0 and 1 (0 excluded), got {rate}"),
                );
            }
        }
        if p.window.is_zero() {
            bad("window", "must be greater than zero".to_owned());
        }
        if p.min_requests == 0 {
            bad("min_requests", "must be at least 1".to_owned());
        }
        if let Some(factor) = p.latency_factor {
            // A factor of 1 or less would call half of any cluster slow.
            if !(factor > 1.0 && factor.is_finite()) {
                bad(
                    "latency_factor",
                    format!("must be greater than 1, got {factor}"),
                );
            }
        }
        if p.base_ejection.is_zero() {
            bad("base_ejection", "must be greater than zero".to_owned());
        }
        if p.max_ejection < p.base_ejection {
            bad(
                "max_ejection",
                format!(
                    "must be at least base_ejection ({:?}), got {:?}",
                    p.base_ejection, p.max_ejection
                ),
            );
        }
        if p.max_ejection > OutlierParams::MAX_EJECTION_LIMIT {
            bad(
                "max_ejection",
                format!(
                    "must be at most 24h (remove the endpoint from the config instead), got {:?}",
                    p.max_ejection
                ),
            );
        }
        if p.max_ejected_percent > 100 {
            bad(
                "max_ejected_percent",
                format!("must be at most 100, got {}", p.max_ejected_percent),
            );
        }
        problems
    }

    /// The parameters, or the first problem (see [`problems`](Self::problems)
    /// for all of them).
    pub fn build(self) -> Result<OutlierParams, BadOutlierParams> {
        match self.problems().into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(self.params),
        }
    }
}

/// A parameter value that makes no sense. Displays as `key message`, e.g.
/// "max_ejected_percent must be at most 100, got 120".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadOutlierParams {
    /// The config key at fault.
    pub key: &'static str,
    /// What is wrong with it, without the key.
    pub message: String,
}

impl fmt::Display for BadOutlierParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, self.message)
    }
}

impl std::error::Error for BadOutlierParams {}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(builder: OutlierParamsBuilder) -> String {
        builder.build().expect_err("invalid").to_string()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(
            OutlierParams::builder().build(),
            Ok(OutlierParams::default())
        );
        let p = OutlierParams::default();
        assert_eq!(p.consecutive_failures(), 5);
        assert_eq!(p.max_ejected_percent(), 50);
        assert!(p.count_other_5xx());
    }

    #[test]
    fn messages_name_the_key() {
        let b = OutlierParams::builder;
        assert_eq!(
            error(b().failure_rate(Some(1.5))),
            "failure_rate must be between 0 and 1 (0 excluded), got 1.5"
        );
        assert!(error(b().failure_rate(Some(0.0))).starts_with("failure_rate "));
        assert!(error(b().failure_rate(Some(f64::NAN))).starts_with("failure_rate "));
        assert_eq!(
            error(b().max_ejected_percent(120)),
            "max_ejected_percent must be at most 100, got 120"
        );
        assert!(error(b().window(Duration::ZERO)).starts_with("window "));
        assert!(error(b().min_requests(0)).starts_with("min_requests "));
        assert!(error(b().latency_factor(Some(1.0))).starts_with("latency_factor "));
        assert!(error(b().base_ejection(Duration::ZERO)).starts_with("base_ejection "));
        assert!(error(b().max_ejection(Duration::from_secs(1))).starts_with("max_ejection "));
        assert!(error(b().max_ejection(Duration::MAX)).starts_with("max_ejection "));
    }

    #[test]
    fn disabled_rules_are_valid() {
        let params = OutlierParams::builder()
            .consecutive_failures(0)
            .failure_rate(None)
            .latency_factor(None)
            .max_ejected_percent(0)
            .build()
            .expect("valid");
        assert_eq!(params.failure_rate(), None);
    }

    #[test]
    fn every_problem_is_listed() {
        let problems = OutlierParams::builder()
            .failure_rate(Some(2.0))
            .max_ejected_percent(101)
            .problems();
        let keys: Vec<&str> = problems.iter().map(|p| p.key).collect();
        assert_eq!(keys, ["failure_rate", "max_ejected_percent"]);
    }
}
