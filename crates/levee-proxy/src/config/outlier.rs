//! Passive outlier detection of a cluster (`[cluster.outlier]`): its raw table
//! and validation (the settings are levee-core's `OutlierParams`).
//!
//! `outlier` of a `[[cluster]]`: passive outlier detection, checked by
//! levee-core's [`OutlierParamsBuilder`], which lists every problem with the
//! key at fault.
//!
//! [`OutlierParamsBuilder`]: levee_core::outlier::OutlierParamsBuilder

use std::ops::Range;

use levee_core::outlier::OutlierParams;
use serde::Deserialize;
use toml::Spanned;

use super::report::Report;
use super::table::RawTable;
use super::values::{Zero, duration, percent};

/// `outlier` in a `[[cluster]]`: passive outlier detection, which ejects an
/// endpoint that fails real requests.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawOutlier {
    /// `false` turns passive outlier detection off for the cluster. Default
    /// `true`.
    pub enabled: Option<bool>,
    /// Failures in a row that eject an endpoint; 0 disables the rule.
    /// Default 5.
    pub consecutive_failures: Option<Spanned<u32>>,
    /// Share of failed requests in `window` that ejects an endpoint, above 0
    /// and at most 1; 0 disables the rule. Default 0.5.
    pub failure_rate: Option<Spanned<f64>>,
    /// Sliding window for the failure rate and latency; more than 0.
    /// Default `"10s"`.
    pub window: Option<Spanned<String>>,
    /// Requests an endpoint needs in the window before its failure rate or
    /// latency is judged; at least 1. Default 20.
    pub min_requests: Option<Spanned<u32>>,
    /// Whether 5xx answers other than 502, 503 and 504 count as failures.
    /// Default `true`.
    pub count_other_5xx: Option<bool>,
    /// An endpoint whose mean latency exceeds this multiple of the median of
    /// the others is ejected; above 1; 0 disables the rule. Default 3.0.
    pub latency_factor: Option<Spanned<f64>>,
    /// Never a latency outlier at or below this latency. Default `"100ms"`.
    pub latency_floor: Option<Spanned<String>>,
    /// Length of a first ejection; later ones are multiples of it. More than
    /// 0. Default `"10s"`.
    pub base_ejection: Option<Spanned<String>>,
    /// Longest ejection; at least `base_ejection`. Default `"5m"`.
    pub max_ejection: Option<Spanned<String>>,
    /// Largest percent of the cluster's endpoints ejected at once, 0 to 100
    /// (0: never eject). Default 50.
    pub max_ejected_percent: Option<Spanned<i64>>,
}

impl RawTable for RawOutlier {}
/// The parameters of a written `outlier` table: `Some(None)` if it turns
/// detection off, `None` if anything in it is bad (reported; checked even
/// with `enabled = false`, so a mistake does not wait for the day it is
/// turned on).
pub(super) fn outlier(
    outlier: &Spanned<RawOutlier>,
    report: &mut Report<'_>,
) -> Option<Option<OutlierParams>> {
    let raw = outlier.get_ref();
    let mut all_valid = true;
    let mut builder = OutlierParams::builder();
    if let Some(count) = &raw.consecutive_failures {
        builder = builder.consecutive_failures(*count.get_ref());
    }
    if let Some(rate) = &raw.failure_rate {
        builder = builder.failure_rate(zero_disables(*rate.get_ref()));
    }
    if let Some(count) = &raw.min_requests {
        builder = builder.min_requests(*count.get_ref());
    }
    if let Some(count) = raw.count_other_5xx {
        builder = builder.count_other_5xx(count);
    }
    if let Some(factor) = &raw.latency_factor {
        builder = builder.latency_factor(zero_disables(*factor.get_ref()));
    }
    let defaults = OutlierParams::default();
    let mut duration_of = |text: Option<&Spanned<String>>, key: &str, default| {
        let parsed = duration(text, key, default, Zero::Allowed, report);
        all_valid &= parsed.is_some();
        parsed.unwrap_or(default)
    };
    let window = duration_of(raw.window.as_ref(), "outlier.window", defaults.window());
    let latency_floor = duration_of(
        raw.latency_floor.as_ref(),
        "outlier.latency_floor",
        defaults.latency_floor(),
    );
    let base_ejection = duration_of(
        raw.base_ejection.as_ref(),
        "outlier.base_ejection",
        defaults.base_ejection(),
    );
    let max_ejection = duration_of(
        raw.max_ejection.as_ref(),
        "outlier.max_ejection",
        defaults.max_ejection(),
    );
    builder = builder
        .window(window)
        .latency_floor(latency_floor)
        .base_ejection(base_ejection)
        .max_ejection(max_ejection);
    if let Some(percent_text) = &raw.max_ejected_percent {
        match percent(percent_text, "outlier.max_ejected_percent", report) {
            Some(percent) => builder = builder.max_ejected_percent(percent),
            None => all_valid = false,
        }
    }
    for problem in builder.problems() {
        let message = format!("outlier.{}: {}", problem.key, problem.message);
        match span_of(raw, problem.key) {
            Some(span) => report.error(span, message),
            // A default made wrong by another key (`base_ejection` above the
            // default `max_ejection`): say where the value comes from.
            None => report.error(outlier.span(), format!("{message} (its default)")),
        }
        all_valid = false;
    }
    if !all_valid {
        return None;
    }
    // Cannot fail: `problems` found none.
    let params = builder.build().ok()?;
    Some(raw.enabled.unwrap_or(true).then_some(params))
}

/// In the config, `0` turns a rate or factor rule off; levee-core says so
/// with `None`.
fn zero_disables(value: f64) -> Option<f64> {
    (value != 0.0).then_some(value)
}

/// Where the value of `key` is written, if it is.
fn span_of(raw: &RawOutlier, key: &str) -> Option<Range<usize>> {
    match key {
        "consecutive_failures" => raw.consecutive_failures.as_ref().map(Spanned::span),
        "min_requests" => raw.min_requests.as_ref().map(Spanned::span),
        "failure_rate" => raw.failure_rate.as_ref().map(Spanned::span),
        "latency_factor" => raw.latency_factor.as_ref().map(Spanned::span),
        "window" => raw.window.as_ref().map(Spanned::span),
        "latency_floor" => raw.latency_floor.as_ref().map(Spanned::span),
        "base_ejection" => raw.base_ejection.as_ref().map(Spanned::span),
        "max_ejection" => raw.max_ejection.as_ref().map(Spanned::span),
        "max_ejected_percent" => raw.max_ejected_percent.as_ref().map(Spanned::span),
        _ => None,
    }
}
