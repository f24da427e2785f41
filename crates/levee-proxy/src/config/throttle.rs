//! Client-side adaptive throttling of a cluster (`[cluster.throttle]`): its
//! raw table, validation and settings.

use levee_core::throttle::ThrottleParams;
use serde::Deserialize;
use toml::Spanned;

use super::report::Report;
use super::table::RawTable;
use super::values::{Zero, duration};

/// `throttle` in a `[[cluster]]`: when the upstream rejects requests (503,
/// 429, gRPC `RESOURCE_EXHAUSTED`), reject a share of them locally.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawThrottle {
    /// `false` turns throttling off (the other keys are still checked).
    /// Default `true` once the table is written.
    pub enabled: Option<bool>,
    /// Send up to K times what the upstream accepts; at least 1. Default 2.
    pub k: Option<Spanned<f64>>,
    /// How far back requests and accepts are counted; more than 0. Default
    /// `"10s"`.
    pub window: Option<Spanned<String>>,
}

impl RawTable for RawThrottle {}

/// `throttle` of a `[[cluster]]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleSettings {
    /// K and the window.
    pub params: ThrottleParams,
}

impl ThrottleSettings {
    /// Default window: the retry budget's, so that the two react alike.
    pub const DEFAULT_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
    /// Default K (the SRE book's).
    pub const DEFAULT_K: f64 = 2.0;
}

/// The settings of a written `throttle` table: `Some(None)` if turned off,
/// `None` if anything in it is bad (reported).
pub(super) fn throttle(
    written: &Spanned<RawThrottle>,
    report: &mut Report<'_>,
) -> Option<Option<ThrottleSettings>> {
    let raw = written.get_ref();
    let window = duration(
        raw.window.as_ref(),
        "throttle.window",
        ThrottleSettings::DEFAULT_WINDOW,
        Zero::Rejected {
            hint: " (leave the table out to turn throttling off)",
        },
        report,
    );
    let k = raw
        .k
        .as_ref()
        .map_or(ThrottleSettings::DEFAULT_K, |k| *k.get_ref());
    let params = match window.map(|window| ThrottleParams::new(k, window)) {
        Some(Ok(params)) => params,
        Some(Err(error)) => {
            let span = raw.k.as_ref().map_or_else(|| written.span(), Spanned::span);
            report.error(span, format!("throttle.{error}"));
            return None;
        }
        None => return None,
    };
    Some(
        raw.enabled
            .unwrap_or(true)
            .then_some(ThrottleSettings { params }),
    )
}
