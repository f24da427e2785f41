//! What a load run measured, as a table for people and JSON for scripts.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::error::ErrorKind;

/// The outcome of [`run`](super::run).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// Requests sent (each ends as a success or as one error).
    pub sent: u64,
    /// `2xx` and `3xx` responses whose body was read completely.
    pub successes: u64,
    /// Failed requests by kind; kinds that did not occur are absent.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Response heads received, by status code (a response whose body then
    /// failed is counted here and as an error).
    pub statuses: BTreeMap<u16, u64>,
    /// Wall time from the first request to the end of the last one.
    pub elapsed: Duration,
    /// Latency of every completed request, errors included: an error that
    /// takes the whole deadline is exactly what a user waits for.
    pub latency: LatencySummary,
    /// Latency of successful requests only.
    pub successes_latency: LatencySummary,
}

/// Percentiles of a latency distribution (microsecond resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencySummary {
    /// Number of samples; all other fields are zero when it is zero.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Slowest sample.
    pub max: Duration,
    /// Arithmetic mean.
    pub mean: Duration,
}

impl LatencySummary {
    /// Summarises a histogram of microseconds.
    pub(crate) fn from_histogram(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let at = |quantile: f64| Duration::from_micros(histogram.value_at_quantile(quantile));
        Self {
            count: histogram.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: Duration::from_micros(histogram.max()),
            mean: Duration::from_secs_f64(histogram.mean() / 1e6),
        }
    }

    fn to_json(self) -> serde_json::Value {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        serde_json::json!({
            "count": self.count,
            "p50": us(self.p50),
            "p90": us(self.p90),
            "p99": us(self.p99),
            "p999": us(self.p999),
            "max": us(self.max),
            "mean": us(self.mean),
        })
    }
}

impl LoadReport {
    /// Sent requests per second of wall time.
    pub fn requests_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.sent as f64 / secs
        } else {
            0.0
        }
    }

    /// Failed requests, all kinds together.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The report as one JSON object, for bench scripts. Latencies are in
    /// microseconds, under `latency_us` and `successes_latency_us`.
    pub fn to_json(&self) -> String {
        let errors: serde_json::Map<String, serde_json::Value> = self
            .errors
            .iter()
            .map(|(kind, n)| (kind.as_str().to_owned(), (*n).into()))
            .collect();
        let statuses: serde_json::Map<String, serde_json::Value> = self
            .statuses
            .iter()
            .map(|(status, n)| (status.to_string(), (*n).into()))
            .collect();
        serde_json::json!({
            "sent": self.sent,
            "successes": self.successes,
            "error_count": self.error_count(),
            "errors": errors,
            "statuses": statuses,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "requests_per_second": self.requests_per_second(),
            "latency_us": self.latency.to_json(),
            "successes_latency_us": self.successes_latency.to_json(),
        })
        .to_string()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sent        {} requests in {}, {:.1} req/s",
            self.sent,
            Short(self.elapsed),
            self.requests_per_second()
        )?;
        writeln!(f, "successes   {}", self.successes)?;
        write!(f, "errors      {}", self.error_count())?;
        for (i, (kind, n)) in self.errors.iter().enumerate() {
            let sep = if i == 0 { "  (" } else { ", " };
            write!(f, "{sep}{kind} {n}")?;
        }
        if !self.errors.is_empty() {
            f.write_str(")")?;
        }
        f.write_str("\nstatuses   ")?;
        if self.statuses.is_empty() {
            f.write_str(" none")?;
        }
        for (status, n) in &self.statuses {
            write!(f, " {status}: {n}")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "latency     {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "p50", "p90", "p99", "p99.9", "max", "mean"
        )?;
        for (label, summary) in [
            ("all", &self.latency),
            ("successes", &self.successes_latency),
        ] {
            writeln!(
                f,
                "  {label:<9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                Short(summary.p50),
                Short(summary.p90),
                Short(summary.p99),
                Short(summary.p999),
                Short(summary.max),
                Short(summary.mean),
            )?;
        }
        Ok(())
    }
}

/// A duration in the unit that keeps it short: `850µs`, `12.40ms`, `1.503s`.
struct Short(Duration);

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.as_micros();
        let text = if micros < 1_000 {
            format!("{micros}µs")
        } else if micros < 1_000_000 {
            format!("{:.2}ms", micros as f64 / 1e3)
        } else {
            format!("{:.3}s", self.0.as_secs_f64())
        };
        f.pad(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LoadReport {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for us in [100, 200, 300, 400, 5_000] {
            histogram.record(us).unwrap();
        }
        let summary = LatencySummary::from_histogram(&histogram);
        LoadReport {
            sent: 5,
            successes: 4,
            errors: BTreeMap::from([(ErrorKind::Deadline, 1)]),
            statuses: BTreeMap::from([(200, 4)]),
            elapsed: Duration::from_secs(2),
            latency: summary,
            successes_latency: summary,
        }
    }

    #[test]
    fn rates_and_counts() {
        let report = sample();
        assert_eq!(report.requests_per_second(), 2.5);
        assert_eq!(report.error_count(), 1);
        assert_eq!(report.latency.count, 5);
        assert_eq!(report.latency.max, Duration::from_micros(5_003));
    }

    #[test]
    fn json_has_what_bench_scripts_read() {
        let json: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(json["requests_per_second"], 2.5);
        assert_eq!(json["successes"], 4);
        assert_eq!(json["errors"]["deadline"], 1);
        assert_eq!(json["statuses"]["200"], 4);
        assert_eq!(json["latency_us"]["p50"], 300);
        assert!(json["latency_us"]["p99"].is_u64());
        assert!(json["latency_us"]["max"].is_u64());
    }

    #[test]
    fn table_mentions_errors_by_kind() {
        let text = sample().to_string();
        assert!(text.contains("deadline 1"), "{text}");
        assert!(text.contains("2.5 req/s"), "{text}");
    }
}
