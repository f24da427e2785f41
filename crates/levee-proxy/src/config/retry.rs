//! Retries, the retry budget and hedging of a cluster (`[cluster.retry]`): its
//! raw table, validation and settings.
//!
//! `retry` of a `[[cluster]]`: attempts, timeouts, backoff, budget, replay
//! buffer and hedging, each checked with the key at fault.

use std::ops::Range;
use std::time::Duration;

use levee_core::retry::{Backoff, RetryBudgetParams, RetryPolicy};
use serde::Deserialize;
use toml::Spanned;

use super::report::Report;
use super::table::RawTable;
use super::units::parse_size;
use super::values::{Zero, duration, percent};

/// `retry` in a `[[cluster]]`: trying a failed or slow request again on
/// another endpoint, only where that cannot do anything twice.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRetry {
    /// Attempts in all, the first included, at least 1 (1: never retry).
    /// Default 3.
    pub max_attempts: Option<Spanned<u32>>,
    /// Limit on one attempt's wait for a response head; more than 0. The
    /// whole request is still bounded by `request_timeout`. Default `"5s"`.
    pub per_try_timeout: Option<Spanned<String>>,
    /// Ceiling of the random wait before the first retry; doubles for each
    /// further one. More than 0. Default `"25ms"`.
    pub backoff_base: Option<Spanned<String>>,
    /// The wait's ceiling never grows past this; at least `backoff_base`.
    /// Default `"250ms"`.
    pub backoff_max: Option<Spanned<String>>,
    /// Retries and hedges allowed as a percent of recent requests, 0 to 100.
    /// Default 20.
    pub budget_percent: Option<Spanned<i64>>,
    /// Retries and hedges allowed per second on top of `budget_percent`, so
    /// a quiet cluster can still step around a dead node. Default 10.
    pub budget_min_per_second: Option<Spanned<u32>>,
    /// How far back the budget counts requests and retries; more than 0.
    /// Default `"10s"`.
    pub budget_window: Option<Spanned<String>>,
    /// Request bodies up to this size are held so they can be sent again; a
    /// larger one streams through and is not retried once sent. `"0B"`
    /// holds none. Default `"64KiB"`.
    pub replay_buffer: Option<Spanned<String>>,
    /// `"p95"`: an idempotent request still unanswered after the cluster's
    /// p95 latency is sent to a second endpoint too, first answer wins;
    /// `"off"`: never. Default `"p95"`.
    pub hedge: Option<Spanned<String>>,
    /// Never hedge sooner than this. Default `"20ms"`.
    pub hedge_floor: Option<Spanned<String>>,
    /// Never wait longer than this to hedge (also used while the cluster has
    /// too few latencies for a p95); at least `hedge_floor`. Default `"1s"`.
    pub hedge_ceiling: Option<Spanned<String>>,
    /// `true` declares every request to the cluster safe to repeat, whatever
    /// its method (the service deduplicates on its own). Default `false`.
    pub idempotent: Option<bool>,
    /// `true`: a request on a reused keep-alive connection that the endpoint
    /// closed cleanly before answering is sent elsewhere whatever its
    /// method, even when the endpoint may have received it. Default `false`.
    pub idle_close: Option<bool>,
}

impl RawTable for RawRetry {}
/// `retry` of a `[[cluster]]`: when a failed or slow attempt is tried again
/// on another endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    /// Attempts in all, the first included (1: never retry).
    pub policy: RetryPolicy,
    /// Limit on one attempt's wait for a response head, from the moment its
    /// body has been sent whole; the request's own deadline is
    /// [`ClusterSettings::request_timeout`](super::ClusterSettings::request_timeout).
    pub per_try_timeout: Duration,
    /// Full-jitter wait between attempts.
    pub backoff: Backoff,
    /// How many retries and hedges the cluster may take.
    pub budget: RetryBudgetParams,
    /// Request bodies up to this many bytes are held so they can be sent
    /// again; a larger body streams through and is not retried once sent.
    pub replay_buffer: usize,
    /// Hedging of idempotent requests; `None`: off.
    pub hedge: Option<HedgeSettings>,
    /// Every request to this cluster may be repeated safely, whatever its
    /// method (the service deduplicates on its own).
    pub idempotent: bool,
    /// A request on a reused connection that the endpoint closed cleanly
    /// (FIN) before answering may go to another endpoint whatever its
    /// method: the idle-close race of a graceful shutdown, where the
    /// endpoint may have read the request and discarded it. Without it,
    /// only a request the endpoint provably never received is.
    pub idle_close: bool,
}

impl RetrySettings {
    /// Default [`RetrySettings::per_try_timeout`].
    pub const DEFAULT_PER_TRY_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default [`RetrySettings::replay_buffer`]: 64 KiB.
    pub const DEFAULT_REPLAY_BUFFER: usize = 64 * 1024;
}

impl Default for RetrySettings {
    fn default() -> RetrySettings {
        RetrySettings {
            policy: RetryPolicy::default(),
            per_try_timeout: RetrySettings::DEFAULT_PER_TRY_TIMEOUT,
            backoff: Backoff::default(),
            budget: RetryBudgetParams::default(),
            replay_buffer: RetrySettings::DEFAULT_REPLAY_BUFFER,
            hedge: Some(HedgeSettings::default()),
            idempotent: false,
            idle_close: false,
        }
    }
}

/// `retry.hedge`: a second copy of a slow idempotent request, sent to another
/// endpoint once the first has waited longer than the cluster's p95.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HedgeSettings {
    /// Never hedge sooner than this, so a fast cluster is not hedged on
    /// every hiccup.
    pub floor: Duration,
    /// Never wait longer than this before hedging (also the delay while too
    /// few latencies are known for a p95).
    pub ceiling: Duration,
}

impl HedgeSettings {
    /// Default [`HedgeSettings::floor`].
    pub const DEFAULT_FLOOR: Duration = Duration::from_millis(20);
    /// Default [`HedgeSettings::ceiling`].
    pub const DEFAULT_CEILING: Duration = Duration::from_secs(1);
}

impl Default for HedgeSettings {
    fn default() -> HedgeSettings {
        HedgeSettings {
            floor: HedgeSettings::DEFAULT_FLOOR,
            ceiling: HedgeSettings::DEFAULT_CEILING,
        }
    }
}

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
        idle_close: raw.idle_close.unwrap_or(defaults.idle_close),
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
