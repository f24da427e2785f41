//! `outlier` of a `[[cluster]]`: passive outlier detection, checked by
//! levee-core's [`OutlierParamsBuilder`], which lists every problem with the
//! key at fault.
//!
//! [`OutlierParamsBuilder`]: levee_core::outlier::OutlierParamsBuilder

use std::ops::Range;

use levee_core::outlier::OutlierParams;
use toml::Spanned;

use super::{Zero, duration, percent};
use crate::config::raw::RawOutlier;
use crate::config::report::Report;

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
