//! What the detector decided and why, in words a log reader understands.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// Why an endpoint was ejected. Displays as a short phrase for logs, events
/// and `/status`: "5 consecutive gateway failures", "failure rate 80% over 25
/// requests in 10s", "latency 1.5s is 30× the cluster median 50ms".
#[derive(Clone, Debug, PartialEq)]
pub enum EjectionReason {
    /// `count` blamed failures in a row.
    ConsecutiveFailures {
        /// Length of the streak.
        count: u32,
        /// What the failures were, plural ("connect failures", "timeouts");
        /// "failures" when the streak mixed kinds.
        what: &'static str,
    },
    /// Too large a share of the requests in the window failed.
    FailureRate {
        /// Failures / requests, 0–1.
        rate: f64,
        /// Requests in the window.
        requests: u32,
        /// The window's length.
        window: Duration,
    },
    /// Answers, but much more slowly than the rest of the cluster.
    LatencyOutlier {
        /// The endpoint's mean latency over the window.
        latency: Duration,
        /// Median of the other endpoints' mean latencies.
        cluster_median: Duration,
    },
}

impl EjectionReason {
    /// Stable lower-case name of the rule, for metric labels and JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            EjectionReason::ConsecutiveFailures { .. } => "consecutive-failures",
            EjectionReason::FailureRate { .. } => "failure-rate",
            EjectionReason::LatencyOutlier { .. } => "latency",
        }
    }
}

impl fmt::Display for EjectionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EjectionReason::ConsecutiveFailures { count, what } => {
                write!(f, "{count} consecutive {what}")
            }
            EjectionReason::FailureRate {
                rate,
                requests,
                window,
            } => write!(
                f,
                "failure rate {:.0}% over {requests} requests in {}",
                rate * 100.0,
                Human(window)
            ),
            EjectionReason::LatencyOutlier {
                latency,
                cluster_median,
            } => {
                write!(f, "latency {} is ", Human(latency))?;
                if cluster_median.is_zero() {
                    f.write_str("far above")?;
                } else {
                    let ratio = latency.as_secs_f64() / cluster_median.as_secs_f64();
                    if ratio >= 10.0 {
                        write!(f, "{ratio:.0}×")?;
                    } else {
                        write!(f, "{}×", Trimmed(ratio, 1))?;
                    }
                }
                write!(f, " the cluster median {}", Human(cluster_median))
            }
        }
    }
}

/// The detector took an endpoint out of service.
#[derive(Clone, Debug, PartialEq)]
pub struct Ejection {
    /// Index of the endpoint in its cluster.
    pub endpoint: usize,
    /// The rule that fired.
    pub reason: EjectionReason,
    /// When the ejection ends (reported by a later `tick` as a [`Return`]).
    pub until: Instant,
    /// How long it lasts: `base_ejection × count`, capped at `max_ejection`.
    pub duration: Duration,
    /// How many recent ejections this endpoint has, counting this one.
    pub count: u32,
}

impl fmt::Display for Ejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "endpoint {} ejected for {} (ejection #{}): {}",
            self.endpoint,
            Human(self.duration),
            self.count,
            self.reason
        )
    }
}

/// An ejection ran out: the endpoint is back in service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Return {
    /// Index of the endpoint in its cluster.
    pub endpoint: usize,
    /// When the ejection ended (its `until`, not when the tick noticed): the
    /// start of a slow-start ramp.
    pub at: Instant,
}

/// A duration written the way config files write them: "50ms", "1.5s", "10s",
/// "5m".
pub(crate) struct Human(pub Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let secs = d.as_secs();
        if d.is_zero() {
            f.write_str("0s")
        } else if d.subsec_nanos() == 0 && secs >= 60 && secs % 60 == 0 {
            write!(f, "{}m", secs / 60)
        } else if secs >= 1 {
            write!(f, "{}s", Trimmed(d.as_secs_f64(), 3))
        } else if d.as_micros() >= 1000 {
            write!(f, "{}ms", Trimmed(d.as_secs_f64() * 1e3, 1))
        } else if d.as_nanos() >= 1000 {
            write!(f, "{}µs", Trimmed(d.as_secs_f64() * 1e6, 1))
        } else {
            write!(f, "{}ns", d.as_nanos())
        }
    }
}

/// `value` with at most `decimals` decimals and no trailing zeros.
struct Trimmed(f64, usize);

impl fmt::Display for Trimmed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = format!("{:.*}", self.1, self.0);
        let text = if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.')
        } else {
            &text
        };
        f.write_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn reasons_read_like_sentences() {
        let consecutive = EjectionReason::ConsecutiveFailures {
            count: 5,
            what: "gateway failures",
        };
        assert_eq!(consecutive.to_string(), "5 consecutive gateway failures");
        let rate = EjectionReason::FailureRate {
            rate: 0.8,
            requests: 25,
            window: Duration::from_secs(10),
        };
        assert_eq!(rate.to_string(), "failure rate 80% over 25 requests in 10s");
        let latency = EjectionReason::LatencyOutlier {
            latency: 1500 * MS,
            cluster_median: 50 * MS,
        };
        assert_eq!(
            latency.to_string(),
            "latency 1.5s is 30× the cluster median 50ms"
        );
        let close = EjectionReason::LatencyOutlier {
            latency: 350 * MS,
            cluster_median: 100 * MS,
        };
        assert_eq!(
            close.to_string(),
            "latency 350ms is 3.5× the cluster median 100ms"
        );
    }

    #[test]
    fn durations_are_written_like_config() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(500), "500ns"),
            (Duration::from_micros(250), "250µs"),
            (Duration::from_micros(1500), "1.5ms"),
            (50 * MS, "50ms"),
            (1500 * MS, "1.5s"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(300), "5m"),
        ];
        for (duration, text) in cases {
            assert_eq!(Human(duration).to_string(), text);
        }
    }

    #[test]
    fn ejection_display_says_everything() {
        let ejection = Ejection {
            endpoint: 2,
            reason: EjectionReason::ConsecutiveFailures {
                count: 5,
                what: "timeouts",
            },
            until: Instant::now(),
            duration: Duration::from_secs(20),
            count: 2,
        };
        assert_eq!(
            ejection.to_string(),
            "endpoint 2 ejected for 20s (ejection #2): 5 consecutive timeouts"
        );
    }
}
