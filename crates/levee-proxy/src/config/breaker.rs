//! A cluster's circuit breaker (`[cluster.breaker]`): its raw table, validation
//! and settings.
//!
//! `breaker` of a `[[cluster]]`: checked by levee-core's
//! [`BreakerParamsBuilder`], which lists every problem with the key at fault.
//!
//! [`BreakerParamsBuilder`]: levee_core::breaker::BreakerParamsBuilder

use std::ops::Range;

use levee_core::breaker::BreakerParams;
use serde::Deserialize;
use toml::Spanned;

use super::report::Report;
use super::table::RawTable;
use super::values::{Zero, duration};

/// `breaker` in a `[[cluster]]`: stop sending requests to a failing cluster
/// for a while, then let a few trial requests decide.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawBreaker {
    /// `false` turns the breaker off (the other keys are still checked).
    /// Default `true` once the table is written.
    pub enabled: Option<bool>,
    /// Failed requests in a row that open it; 0 disables the rule. Default 5.
    pub consecutive_failures: Option<Spanned<u32>>,
    /// Share of failed requests in `window` that opens it, above 0 and at
    /// most 1; 0 disables the rule. Default 0.5.
    pub failure_rate: Option<Spanned<f64>>,
    /// Share of slow requests in `window` that opens it, above 0 and at most
    /// 1; 0 disables the rule. Default 0 (off).
    pub slow_call_rate: Option<Spanned<f64>>,
    /// A request slower than this to its response head is slow. Default
    /// `"1s"`.
    pub slow_call_duration: Option<Spanned<String>>,
    /// Sliding window of the rate rules; more than 0. Default `"10s"`.
    pub window: Option<Spanned<String>>,
    /// Requests the window must hold before a rate is judged; at least 1.
    /// Default 20.
    pub min_calls: Option<Spanned<u32>>,
    /// How long it stays open the first time; more than 0. Default `"5s"`.
    pub open_for: Option<Spanned<String>>,
    /// Each reopening after a failed trial multiplies the open period by
    /// this, at least 1. Default 2.0.
    pub open_multiplier: Option<Spanned<f64>>,
    /// The open period never grows past this. Default `"60s"`.
    pub max_open_for: Option<Spanned<String>>,
    /// Trial requests let through while half-open, all of which must succeed
    /// to close it; at least 1. Default 3.
    pub half_open_trials: Option<Spanned<u32>>,
    /// `true` shares the breaker's state with every levee using the same
    /// `[store]`. Default `false`.
    pub shared: Option<Spanned<bool>>,
    /// Distinct instances that must trip before the breaker opens for the
    /// fleet; at least 1. Default 1.
    pub quorum: Option<Spanned<u32>>,
    /// An instance that trips alone, below the quorum, still opens its own
    /// breaker. Default `true`.
    pub protect_locally: Option<Spanned<bool>>,
    /// `true` also gives every endpoint its own breaker, with the same
    /// parameters, named `<cluster>/<host:port>`; always local to the
    /// process. Default `false`.
    pub per_endpoint: Option<Spanned<bool>>,
}

impl RawTable for RawBreaker {}
/// `shared`, `quorum` and `protect_locally` of a cluster's `breaker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetBreakerSettings {
    /// Share the breaker's state with every levee using the same `[store]`
    /// namespace.
    pub shared: bool,
    /// Distinct instances that must trip before the breaker opens for the
    /// fleet; at least 1.
    pub quorum: u32,
    /// An instance that trips alone, below the quorum, still opens its own
    /// breaker (and says so in `/status`).
    pub protect_locally: bool,
}

impl Default for FleetBreakerSettings {
    fn default() -> Self {
        FleetBreakerSettings {
            shared: false,
            quorum: 1,
            protect_locally: true,
        }
    }
}

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
