//! `breaker` of a `[[cluster]]`: checked by levee-core's
//! [`BreakerParamsBuilder`], which lists every problem with the key at fault.
//!
//! [`BreakerParamsBuilder`]: levee_core::breaker::BreakerParamsBuilder

use std::ops::Range;

use levee_core::breaker::BreakerParams;
use toml::Spanned;

use super::{Zero, duration};
use crate::config::FleetBreakerSettings;
use crate::config::raw::RawBreaker;
use crate::config::report::Report;

/// The parameters of a written `breaker` table: `Some(None)` if it is turned
/// off, `None` if anything in it is bad (reported, even when turned off).
pub(super) fn breaker(
    breaker: &Spanned<RawBreaker>,
    report: &mut Report<'_>,
) -> Option<Option<BreakerParams>> {
    let raw = breaker.get_ref();
    let defaults = BreakerParams::default();
    let mut all_valid = true;
    let mut builder = BreakerParams::builder();
    if let Some(count) = &raw.consecutive_failures {
        builder = builder.consecutive_failures(*count.get_ref());
    }
    if let Some(rate) = &raw.failure_rate {
        builder = builder.failure_rate(zero_disables(*rate.get_ref()));
    }
    if let Some(rate) = &raw.slow_call_rate {
        builder = builder.slow_call_rate(zero_disables(*rate.get_ref()));
    }
    if let Some(count) = &raw.min_calls {
        builder = builder.min_calls(*count.get_ref());
    }
    if let Some(factor) = &raw.open_multiplier {
        builder = builder.open_multiplier(*factor.get_ref());
    }
    if let Some(count) = &raw.half_open_trials {
        builder = builder.half_open_trials(*count.get_ref());
    }
    let mut duration_of = |text: Option<&Spanned<String>>, key: &str, default| {
        // Zero is reported by the builder.
        let parsed = duration(text, key, default, Zero::Allowed, report);
        all_valid &= parsed.is_some();
        parsed.unwrap_or(default)
    };
    let slow_call_duration = duration_of(
        raw.slow_call_duration.as_ref(),
        "breaker.slow_call_duration",
        defaults.slow_call_duration(),
    );
    let window = duration_of(raw.window.as_ref(), "breaker.window", defaults.window());
    let open_for = duration_of(
        raw.open_for.as_ref(),
        "breaker.open_for",
        defaults.open_for(),
    );
    let max_open_for = duration_of(
        raw.max_open_for.as_ref(),
        "breaker.max_open_for",
        defaults.max_open_for(),
    );
    builder = builder
        .slow_call_duration(slow_call_duration)
        .window(window)
        .open_for(open_for)
        .max_open_for(max_open_for);
    for problem in builder.problems() {
        let message = format!("breaker.{}: {}", problem.key, problem.message);
        match span_of(raw, problem.key) {
            Some(span) => report.error(span, message),
            None => report.error(breaker.span(), format!("{message} (its default)")),
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

/// `shared`, `quorum` and `protect_locally`; `None` if any is bad (reported).
pub(super) fn fleet(
    breaker: &Spanned<RawBreaker>,
    report: &mut Report<'_>,
) -> Option<FleetBreakerSettings> {
    let raw = breaker.get_ref();
    let defaults = FleetBreakerSettings::default();
    let quorum = match &raw.quorum {
        Some(quorum) if *quorum.get_ref() == 0 => {
            report.error(
                quorum.span(),
                "breaker.quorum: must be at least 1 (an instance)",
            );
            return None;
        }
        Some(quorum) => *quorum.get_ref(),
        None => defaults.quorum,
    };
    Some(FleetBreakerSettings {
        shared: raw
            .shared
            .as_ref()
            .map_or(defaults.shared, |s| *s.get_ref()),
        quorum,
        protect_locally: raw
            .protect_locally
            .as_ref()
            .map_or(defaults.protect_locally, |p| *p.get_ref()),
    })
}

/// In the config, `0` turns a rate rule off; levee-core says so with `None`.
fn zero_disables(value: f64) -> Option<f64> {
    (value != 0.0).then_some(value)
}

/// Where the value of `key` is written, if it is.
fn span_of(raw: &RawBreaker, key: &str) -> Option<Range<usize>> {
    match key {
        "consecutive_failures" => raw.consecutive_failures.as_ref().map(Spanned::span),
        "failure_rate" => raw.failure_rate.as_ref().map(Spanned::span),
        "slow_call_rate" => raw.slow_call_rate.as_ref().map(Spanned::span),
        "slow_call_duration" => raw.slow_call_duration.as_ref().map(Spanned::span),
        "window" => raw.window.as_ref().map(Spanned::span),
        "min_calls" => raw.min_calls.as_ref().map(Spanned::span),
        "open_for" => raw.open_for.as_ref().map(Spanned::span),
        "open_multiplier" => raw.open_multiplier.as_ref().map(Spanned::span),
        "max_open_for" => raw.max_open_for.as_ref().map(Spanned::span),
        "half_open_trials" => raw.half_open_trials.as_ref().map(Spanned::span),
        _ => None,
    }
}
