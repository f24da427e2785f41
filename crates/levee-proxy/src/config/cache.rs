//! A cluster's response cache (`[cluster.cache]`): its raw table, validation
//! and settings.
//!
//! `cache` of a `[[cluster]]`: sizes and windows, each checked at its key.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::report::Report;
use super::table::RawTable;
use super::units::parse_size;
use super::values::{Zero, duration};

/// `cache` in a `[[cluster]]`: a shared response cache for GET and HEAD that
/// never stampedes the upstream.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawCache {
    /// `false` turns the cache off (the other keys are still checked).
    /// Default `true` once the table is written.
    pub enabled: Option<bool>,
    /// Bytes of stored responses at most; at least 1 KiB. Default `"64MiB"`.
    pub max_size: Option<Spanned<String>>,
    /// A larger response body is passed through, not stored; at most
    /// `max_size`. Default `"1MiB"`.
    pub max_entry_size: Option<Spanned<String>>,
    /// Freshness of a response without `max-age`, `s-maxage` or `Expires`;
    /// `"0s"`: such responses are not stored. Default `"0s"`.
    pub default_ttl: Option<Spanned<String>>,
    /// Past freshness, serve the stale copy while one background request
    /// refreshes it, for at least this long: the origin's own
    /// `stale-while-revalidate` may ask for longer, and `must-revalidate`,
    /// `proxy-revalidate` or `s-maxage` for none. Default `"0s"`: only what
    /// the origin allows (RFC 9111 §4.2.4).
    pub stale_while_revalidate: Option<Spanned<String>>,
    /// Past freshness, serve the stale copy while the upstream fails, for
    /// at least this long (same rules as `stale_while_revalidate`, with the
    /// origin's `stale-if-error`). Default `"0s"`.
    pub stale_if_error: Option<Spanned<String>>,
    /// Longest wait for another request's fill of the same key; more than 0.
    /// Default `"5s"`.
    pub fill_wait: Option<Spanned<String>>,
}

impl RawTable for RawCache {}
/// `cache` of a `[[cluster]]`: a shared response cache for GET and HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Bytes of stored responses (bodies and headers) at most.
    pub max_size: u64,
    /// A response body larger than this is passed through, not stored.
    pub max_entry_size: u64,
    /// Freshness of a response that gives none (`Cache-Control: max-age`,
    /// `s-maxage`, `Expires`); zero: such responses are not stored.
    pub default_ttl: Duration,
    /// Past freshness, the stale copy is served while one background
    /// request refreshes it, for this long (unless the response says).
    pub stale_while_revalidate: Duration,
    /// Past freshness, the stale copy is served while the upstream fails,
    /// for this long (unless the response says).
    pub stale_if_error: Duration,
    /// The longest a request waits for another request's fill of the same
    /// key before it is answered 504.
    pub fill_wait: Duration,
}

impl CacheSettings {
    /// Default [`CacheSettings::max_size`]: 64 MiB.
    pub const DEFAULT_MAX_SIZE: u64 = 64 * 1024 * 1024;
    /// Default [`CacheSettings::max_entry_size`]: 1 MiB.
    pub const DEFAULT_MAX_ENTRY_SIZE: u64 = 1024 * 1024;
    /// Default [`CacheSettings::stale_while_revalidate`].
    pub const DEFAULT_STALE_WHILE_REVALIDATE: Duration = Duration::ZERO;
    /// Default [`CacheSettings::stale_if_error`].
    pub const DEFAULT_STALE_IF_ERROR: Duration = Duration::ZERO;
    /// Default [`CacheSettings::fill_wait`].
    pub const DEFAULT_FILL_WAIT: Duration = Duration::from_secs(5);
}

impl Default for CacheSettings {
    fn default() -> CacheSettings {
        CacheSettings {
            max_size: CacheSettings::DEFAULT_MAX_SIZE,
            max_entry_size: CacheSettings::DEFAULT_MAX_ENTRY_SIZE,
            default_ttl: Duration::ZERO,
            stale_while_revalidate: CacheSettings::DEFAULT_STALE_WHILE_REVALIDATE,
            stale_if_error: CacheSettings::DEFAULT_STALE_IF_ERROR,
            fill_wait: CacheSettings::DEFAULT_FILL_WAIT,
        }
    }
}

/// Smallest `max_size` accepted: a cache that cannot hold one small
/// response is a typo.
const MIN_MAX_SIZE: u64 = 1024;

/// The settings of a written `cache` table: `Some(None)` if it is turned
/// off, `None` if anything in it is bad (reported, even when turned off).
pub(super) fn cache(
    cache: &Spanned<RawCache>,
    report: &mut Report<'_>,
) -> Option<Option<CacheSettings>> {
    let raw = cache.get_ref();
    let defaults = CacheSettings::default();
    let mut size = |text: Option<&Spanned<String>>, key: &str, default: u64| {
        let Some(text) = text else {
            return Some(default);
        };
        parse_size(text.get_ref())
            .map_err(|error| report.error(text.span(), format!("cache.{key}: {error}")))
            .ok()
    };
    let max_size = size(raw.max_size.as_ref(), "max_size", defaults.max_size);
    let max_entry_size = size(
        raw.max_entry_size.as_ref(),
        "max_entry_size",
        defaults.max_entry_size,
    );
    let mut window = |text: Option<&Spanned<String>>, key: &str, default, zero| {
        duration(text, &format!("cache.{key}"), default, zero, report)
    };
    let default_ttl = window(
        raw.default_ttl.as_ref(),
        "default_ttl",
        defaults.default_ttl,
        Zero::Allowed,
    );
    let stale_while_revalidate = window(
        raw.stale_while_revalidate.as_ref(),
        "stale_while_revalidate",
        defaults.stale_while_revalidate,
        Zero::Allowed,
    );
    let stale_if_error = window(
        raw.stale_if_error.as_ref(),
        "stale_if_error",
        defaults.stale_if_error,
        Zero::Allowed,
    );
    let fill_wait = window(
        raw.fill_wait.as_ref(),
        "fill_wait",
        defaults.fill_wait,
        Zero::Rejected { hint: "" },
    );
    let (max_size, max_entry_size) = (max_size?, max_entry_size?);
    let mut sizes_valid = true;
    if max_size < MIN_MAX_SIZE {
        let span = raw.max_size.as_ref().map_or(cache.span(), Spanned::span);
        report.error(
            span,
            format!("cache.max_size: must be at least 1KiB, got {max_size} bytes"),
        );
        sizes_valid = false;
    }
    if max_entry_size > max_size {
        let span = raw
            .max_entry_size
            .as_ref()
            .map_or(cache.span(), Spanned::span);
        report.error(
            span,
            format!(
                "cache.max_entry_size: must be at most max_size ({max_size} bytes), got {max_entry_size} bytes"
            ),
        );
        sizes_valid = false;
    }
    let settings = CacheSettings {
        max_size,
        max_entry_size,
        default_ttl: default_ttl?,
        stale_while_revalidate: stale_while_revalidate?,
        stale_if_error: stale_if_error?,
        fill_wait: fill_wait?,
    };
    sizes_valid.then(|| raw.enabled.unwrap_or(true).then_some(settings))
}
