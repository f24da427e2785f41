//! Overload protection of a cluster (`[cluster.admission]`): its raw table,
//! validation and settings.
//!
//! `admission` of a `[[cluster]]`: checked by levee-core's
//! [`AdmissionParamsBuilder`], which lists every problem with the key at
//! fault, plus the adaptive limit's bounds.
//!
//! [`AdmissionParamsBuilder`]: levee_core::admission::AdmissionParamsBuilder

use std::ops::Range;

use levee_core::admission::AdmissionParams;
use serde::Deserialize;
use toml::Spanned;

use super::report::Report;
use super::table::RawTable;
use super::values::{Zero, duration};

/// `admission` in a `[[cluster]]`: a concurrency limit with a bounded queue,
/// so that a stall upstream turns into fast 503s, not into every client
/// timing out.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAdmission {
    /// `false` turns admission control off (the other keys are still
    /// checked). Default `true` once the table is written.
    pub enabled: Option<bool>,
    /// Requests in flight to the cluster at once; at least 1. With
    /// `adaptive = true`, the highest the limit may go. Default 256.
    pub max_concurrency: Option<Spanned<usize>>,
    /// Requests that may wait for a slot; 0: none wait. Default 1024.
    pub max_queue: Option<Spanned<usize>>,
    /// Longest wait for a slot while the queue keeps emptying; more than 0.
    /// Default `"100ms"`.
    pub queue_timeout: Option<Spanned<String>>,
    /// Longest wait once a standing queue has formed; more than 0, at most
    /// `queue_timeout`. Default `"5ms"`.
    pub codel_target: Option<Spanned<String>>,
    /// How long the queue must stay non-empty to count as standing; more
    /// than 0. Default `"100ms"`.
    pub codel_interval: Option<Spanned<String>>,
    /// `true`: the limit adapts to upstream latency (gradient between its
    /// long- and short-term averages) between `min_concurrency` and
    /// `max_concurrency`.
    /// Default `false`.
    pub adaptive: Option<bool>,
    /// With `adaptive = true`, the lowest the limit may go; at least 1, at
    /// most `max_concurrency`. Default 1.
    pub min_concurrency: Option<Spanned<usize>>,
    /// A request header naming the request's priority class (`critical`,
    /// `default`, `sheddable`), capped at its route's `priority`. Default:
    /// none (the route's class).
    pub priority_header: Option<Spanned<String>>,
}

impl RawTable for RawAdmission {}
/// `admission` of a `[[cluster]]`: how many requests may be in flight to the
/// cluster, and what happens to the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionSettings {
    /// Limit, queue size and queue deadlines.
    pub params: AdmissionParams,
    /// Adaptive limit; `None`: `params.max_concurrency` is fixed.
    pub adaptive: Option<AdaptiveLimitSettings>,
    /// The header a request names its priority class in (capped at its
    /// route's); `None`: every request has its route's class.
    pub priority_header: Option<http::HeaderName>,
}

/// An adaptive concurrency limit between bounds: the limit follows the
/// gradient between the lowest and the current upstream latency, up to
/// `max_concurrency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptiveLimitSettings {
    /// The limit never falls below this.
    pub min_concurrency: usize,
}

impl AdaptiveLimitSettings {
    /// Default [`AdaptiveLimitSettings::min_concurrency`].
    pub const DEFAULT_MIN_CONCURRENCY: usize = 1;
}

/// The settings of a written `admission` table: `Some(None)` if it is turned
/// off, `None` if anything in it is bad (reported, even when turned off).
pub(super) fn admission(
    admission: &Spanned<RawAdmission>,
    report: &mut Report<'_>,
) -> Option<Option<AdmissionSettings>> {
    let raw = admission.get_ref();
    let defaults = AdmissionParams::default();
    let mut all_valid = true;
    let mut builder = AdmissionParams::builder();
    if let Some(count) = &raw.max_concurrency {
        builder = builder.max_concurrency(*count.get_ref());
    }
    if let Some(count) = &raw.max_queue {
        builder = builder.max_queue(*count.get_ref());
    }
    let mut duration_of = |text: Option<&Spanned<String>>, key: &str, default| {
        // Zero is reported by the builder, with its own hint.
        let parsed = duration(text, key, default, Zero::Allowed, report);
        all_valid &= parsed.is_some();
        parsed.unwrap_or(default)
    };
    let queue_timeout = duration_of(
        raw.queue_timeout.as_ref(),
        "admission.queue_timeout",
        defaults.queue_timeout(),
    );
    let codel_target = duration_of(
        raw.codel_target.as_ref(),
        "admission.codel_target",
        defaults.codel_target(),
    );
    let codel_interval = duration_of(
        raw.codel_interval.as_ref(),
        "admission.codel_interval",
        defaults.codel_interval(),
    );
    builder = builder
        .queue_timeout(queue_timeout)
        .codel_target(codel_target)
        .codel_interval(codel_interval);
    for problem in builder.problems() {
        let message = format!("admission.{}: {}", problem.key, problem.message);
        let span = span_of(raw, problem.key).unwrap_or_else(|| admission.span());
        report.error(span, message);
        all_valid = false;
    }
    let max_concurrency = raw
        .max_concurrency
        .as_ref()
        .map_or(defaults.max_concurrency(), |count| *count.get_ref());
    let min_concurrency = raw
        .min_concurrency
        .as_ref()
        .map_or(AdaptiveLimitSettings::DEFAULT_MIN_CONCURRENCY, |count| {
            *count.get_ref()
        });
    if let Some(written) = &raw.min_concurrency
        && !(1..=max_concurrency.max(1)).contains(&min_concurrency)
    {
        let message = format!(
            "admission.min_concurrency: must be between 1 and max_concurrency ({max_concurrency}), got {min_concurrency}"
        );
        report.error(written.span(), message);
        all_valid = false;
    }
    let priority_header = raw.priority_header.as_ref().and_then(|written| {
        let parsed = http::HeaderName::from_bytes(written.get_ref().as_bytes()).ok();
        if parsed.is_none() {
            report.error(
                written.span(),
                format!(
                    "admission.priority_header: {:?} is not a header name (e.g. \"x-priority\")",
                    written.get_ref()
                ),
            );
            all_valid = false;
        }
        parsed
    });
    if !all_valid {
        return None;
    }
    // Cannot fail: `problems` found none.
    let params = builder.build().ok()?;
    let adaptive = raw
        .adaptive
        .unwrap_or(false)
        .then_some(AdaptiveLimitSettings { min_concurrency });
    Some(raw.enabled.unwrap_or(true).then_some(AdmissionSettings {
        params,
        adaptive,
        priority_header,
    }))
}

/// Where the value of `key` is written, if it is.
fn span_of(raw: &RawAdmission, key: &str) -> Option<Range<usize>> {
    match key {
        "max_concurrency" => raw.max_concurrency.as_ref().map(Spanned::span),
        "max_queue" => raw.max_queue.as_ref().map(Spanned::span),
        "queue_timeout" => raw.queue_timeout.as_ref().map(Spanned::span),
        "codel_target" => raw.codel_target.as_ref().map(Spanned::span),
        "codel_interval" => raw.codel_interval.as_ref().map(Spanned::span),
        _ => None,
    }
}
