//! `retry` of a `[[cluster]]`: attempts, timeouts, backoff, budget, replay
//! buffer and hedging, each checked with the key at fault.

use std::ops::Range;

use levee_core::retry::{Backoff, RetryBudgetParams, RetryPolicy};
use toml::Spanned;

use super::{Zero, duration, percent};
use crate::config::raw::RawRetry;
use crate::config::report::Report;
use crate::config::units::parse_size;
use crate::config::{HedgeSettings, RetrySettings};

/// The settings of a written `retry` table; `None` if anything in it is bad
/// (reported).
pub(super) fn retry(retry: &Spanned<RawRetry>, report: &mut Report<'_>) -> Option<RetrySettings> {
    let raw = retry.get_ref();
    let defaults = RetrySettings::default();

    let policy = match &raw.max_attempts {
        None => Some(defaults.policy),
        Some(written) => RetryPolicy::new(*written.get_ref())
            .map_err(|_| {
                let message = "retry.max_attempts: must be at least 1 (1: never retry)";
                report.error(written.span(), message);
            })
            .ok(),
    };
    let per_try_timeout = duration(
        raw.per_try_timeout.as_ref(),
        "retry.per_try_timeout",
        defaults.per_try_timeout,
        Zero::Rejected { hint: "" },
        report,
    );
    let backoff = backoff(raw, retry.span(), defaults.backoff, report);
    let budget = budget(raw, defaults.budget, report);
    let replay_buffer = match &raw.replay_buffer {
        None => Some(defaults.replay_buffer),
        Some(text) => match parse_size(text.get_ref()).map(usize::try_from) {
            Ok(Ok(size)) => Some(size),
            Ok(Err(_)) => {
                report.error(text.span(), "retry.replay_buffer: too large");
                None
            }
            Err(error) => {
                report.error(text.span(), format!("retry.replay_buffer: {error}"));
                None
            }
        },
    };
    let hedge = hedge(raw, retry.span(), report);
    // Every key above was checked (and reported) before any `?` below.
    Some(RetrySettings {
        policy: policy?,
        per_try_timeout: per_try_timeout?,
        backoff: backoff?,
        budget: budget?,
        replay_buffer: replay_buffer?,
        hedge: hedge?,
        idempotent: raw.idempotent.unwrap_or(defaults.idempotent),
    })
}

fn backoff(
    raw: &RawRetry,
    table: Range<usize>,
    default: Backoff,
    report: &mut Report<'_>,
) -> Option<Backoff> {
    let base = duration(
        raw.backoff_base.as_ref(),
        "retry.backoff_base",
        default.base(),
        Zero::Rejected { hint: "" },
        report,
    )?;
    let max = duration(
        raw.backoff_max.as_ref(),
        "retry.backoff_max",
        default.max(),
        Zero::Rejected { hint: "" },
        report,
    )?;
    Backoff::new(base, max)
        .map_err(|error| {
            let span = raw
                .backoff_max
                .as_ref()
                .or(raw.backoff_base.as_ref())
                .map_or(table, Spanned::span);
            report.error(span, format!("retry.backoff_max: {error}"));
        })
        .ok()
}

fn budget(
    raw: &RawRetry,
    default: RetryBudgetParams,
    report: &mut Report<'_>,
) -> Option<RetryBudgetParams> {
    let percent = match &raw.budget_percent {
        None => Some(default.percent()),
        Some(written) => percent(written, "retry.budget_percent", report).map(u32::from),
    };
    let window = duration(
        raw.budget_window.as_ref(),
        "retry.budget_window",
        default.window(),
        Zero::Rejected { hint: "" },
        report,
    );
    let min_per_second = raw
        .budget_min_per_second
        .as_ref()
        .map_or(default.min_per_second(), |written| *written.get_ref());
    // Cannot fail: the percent and window were checked above.
    RetryBudgetParams::new(percent?, min_per_second, window?).ok()
}

/// `Some(None)`: hedging off; `None`: bad (reported).
fn hedge(
    raw: &RawRetry,
    table: Range<usize>,
    report: &mut Report<'_>,
) -> Option<Option<HedgeSettings>> {
    let enabled = match &raw.hedge {
        None => Some(true),
        Some(text) => match text.get_ref().as_str() {
            "p95" => Some(true),
            "off" => Some(false),
            other => {
                let message =
                    format!("retry.hedge: unknown value {other:?}: expected \"p95\" or \"off\"");
                report.error(text.span(), message);
                None
            }
        },
    };
    let floor = duration(
        raw.hedge_floor.as_ref(),
        "retry.hedge_floor",
        HedgeSettings::DEFAULT_FLOOR,
        Zero::Allowed,
        report,
    );
    let ceiling = duration(
        raw.hedge_ceiling.as_ref(),
        "retry.hedge_ceiling",
        HedgeSettings::DEFAULT_CEILING,
        Zero::Rejected {
            hint: " (to turn hedging off, set hedge = \"off\")",
        },
        report,
    );
    let (enabled, floor, ceiling) = (enabled?, floor?, ceiling?);
    if floor > ceiling {
        let span = raw
            .hedge_ceiling
            .as_ref()
            .or(raw.hedge_floor.as_ref())
            .map_or(table, Spanned::span);
        report.error(
            span,
            format!(
                "retry.hedge_ceiling: must be at least hedge_floor ({} < {})",
                humantime::format_duration(ceiling),
                humantime::format_duration(floor)
            ),
        );
        return None;
    }
    Some(enabled.then_some(HedgeSettings { floor, ceiling }))
}
