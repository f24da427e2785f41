//! `cache` of a `[[cluster]]`: sizes and windows, each checked at its key.

use toml::Spanned;

use super::{Zero, duration};
use crate::config::CacheSettings;
use crate::config::raw::RawCache;
use crate::config::report::Report;
use crate::config::units::parse_size;

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
