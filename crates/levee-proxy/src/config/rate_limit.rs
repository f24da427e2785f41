//! A cluster's rate limit (`[cluster.rate_limit]`): its raw table,
//! validation and settings.

use http::HeaderName;
use levee_core::ratelimit::RateParams;
use serde::Deserialize;
use toml::Spanned;

use super::report::Report;
use super::table::RawTable;

/// `rate_limit` in a `[[cluster]]`: a token bucket per client (or per value
/// of a header).
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRateLimit {
    /// `false` turns the limit off (the other keys are still checked).
    /// Default `true` once the table is written.
    pub enabled: Option<bool>,
    /// Requests per second sustained, per key; more than 0. Required.
    pub rate: Option<Spanned<f64>>,
    /// Requests allowed at once after a quiet period; at least 1. Default:
    /// `rate` rounded up (one second's worth).
    pub burst: Option<Spanned<i64>>,
    /// What a bucket is kept per: `"client"` (the client's IP address) or
    /// `"header:<name>"` (that request header's value; requests without it
    /// count per client). Default `"client"`.
    pub key: Option<Spanned<String>>,
    /// `true`: one limit for the whole fleet, kept in `[store]` (Redis).
    /// Default `false` (per levee process).
    pub shared: Option<bool>,
    /// The longest a request waits for the store's verdict before the
    /// local limit decides; more than 0. Default `"5ms"`.
    pub store_timeout: Option<Spanned<String>>,
}

impl RawTable for RawRateLimit {}

/// What a rate-limit bucket is kept per.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    /// The client's IP address.
    Client,
    /// A request header's value (an API key, a tenant).
    Header(HeaderName),
}

/// `rate_limit` of a `[[cluster]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitSettings {
    /// Rate and burst.
    pub params: RateParams,
    /// Per what.
    pub key: RateKey,
    /// One limit for the fleet, through `[store]`.
    pub shared: bool,
    /// The longest a request waits for the store before the local limit
    /// decides.
    pub store_timeout: std::time::Duration,
}

impl RateLimitSettings {
    /// Default [`RateLimitSettings::store_timeout`]: a round trip to a
    /// Redis nearby, with room.
    pub const DEFAULT_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(5);
}

/// The settings of a written `rate_limit` table: `Some(None)` if turned
/// off, `None` if anything in it is bad (reported).
pub(super) fn rate_limit(
    written: &Spanned<RawRateLimit>,
    report: &mut Report<'_>,
) -> Option<Option<RateLimitSettings>> {
    let raw = written.get_ref();
    let Some(rate) = &raw.rate else {
        report.error(
            written.span(),
            "rate_limit.rate: required (requests per second)",
        );
        return None;
    };
    let burst = match &raw.burst {
        Some(burst) => match u32::try_from(*burst.get_ref()) {
            Ok(burst) if burst >= 1 => burst,
            _ => {
                report.error(
                    burst.span(),
                    format!("rate_limit.burst: {} is not at least 1", burst.get_ref()),
                );
                return None;
            }
        },
        // One second's worth; `as` saturates, and the rate is checked below.
        None => (rate.get_ref().ceil() as u32).max(1),
    };
    let params = match RateParams::new(*rate.get_ref(), burst) {
        Ok(params) => params,
        Err(error) => {
            report.error(rate.span(), format!("rate_limit.{error}"));
            return None;
        }
    };
    let key = match &raw.key {
        None => RateKey::Client,
        Some(written) => match written.get_ref().as_str() {
            "client" => RateKey::Client,
            text => match text
                .strip_prefix("header:")
                .and_then(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            {
                Some(name) => RateKey::Header(name),
                None => {
                    report.error(
                        written.span(),
                        format!(
                            "rate_limit.key: {text:?}: expected \"client\" or \"header:<name>\""
                        ),
                    );
                    return None;
                }
            },
        },
    };
    let store_timeout = super::values::duration(
        raw.store_timeout.as_ref(),
        "rate_limit.store_timeout",
        RateLimitSettings::DEFAULT_STORE_TIMEOUT,
        super::values::Zero::Rejected { hint: "" },
        report,
    )?;
    Some(raw.enabled.unwrap_or(true).then_some(RateLimitSettings {
        params,
        key,
        shared: raw.shared.unwrap_or(false),
        store_timeout,
    }))
}
