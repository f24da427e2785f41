//! Active health checks of a cluster (`[cluster.health]`): its raw tables,
//! validation and settings.
//!
//! `health` of a `[[cluster]]`: which check, what an HTTP check sends and
//! expects, and the timing, checked by levee-core's [`HealthCheckParams`].

use std::ops::Range;
use std::time::Duration;

use http::Method;
use http::uri::{Authority, PathAndQuery};
use levee_core::health::{BadHealthParams, HealthCheckParams};
use serde::Deserialize;
use toml::Spanned;

use super::keys::fields_of;
use super::report::Report;
use super::table::RawTable;
use super::table::Section;
use super::values::{Zero, duration};

/// `health` in a `[[cluster]]`: how each endpoint is checked. Exactly one of
/// `http` and `tcp = true`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawHealth {
    /// An HTTP check: the request to send and the answer that counts as
    /// healthy.
    pub http: Option<Spanned<RawHttpCheck>>,
    /// `true` for a TCP check: a connection that opens counts as healthy.
    pub tcp: Option<Spanned<bool>>,
    /// Time between checks while an endpoint's health is settled; more
    /// than 0. Default `"5s"`.
    pub interval: Option<Spanned<String>>,
    /// Time between checks while the health is changing or not yet known, so
    /// a failing node leaves rotation after `fall` quick checks; more than 0.
    /// Default `"1s"`.
    pub transition_interval: Option<Spanned<String>>,
    /// How long one check may take before it counts as failed; more than 0.
    /// Default `"2s"`.
    pub timeout: Option<Spanned<String>>,
    /// Passes in a row that bring an unhealthy endpoint back; at least 1.
    /// Default 2.
    pub rise: Option<Spanned<u32>>,
    /// Failures in a row that take a healthy endpoint out; at least 1.
    /// Default 2.
    pub fall: Option<Spanned<u32>>,
    /// Random spread of each delay as a fraction of it, 0.0 to 1.0, so many
    /// levee instances do not check a node in lockstep. Default 0.1.
    pub jitter: Option<Spanned<f64>>,
}

impl RawTable for RawHealth {
    fn keys_at(path: &[&str]) -> &'static [&'static str] {
        match path {
            [] => fields_of::<Self>(),
            ["http", rest @ ..] => RawHttpCheck::keys_at(rest),
            _ => &[],
        }
    }
}

/// `health.http` in a `[[cluster]]`: an HTTP health check.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawHttpCheck {
    /// Request path (and query), starting with `/`. Required.
    pub path: Option<Spanned<String>>,
    /// Request method, case-sensitive. Default `"GET"`.
    pub method: Option<Spanned<String>>,
    /// `Host` header of the check. Default: the endpoint's `host:port`.
    pub host: Option<Spanned<String>>,
    /// Response statuses that count as healthy, each 100 to 599. Default
    /// `[200]`.
    pub expect_status: Option<Spanned<Vec<Spanned<i64>>>>,
    /// Text the response body must contain to count as healthy. Default:
    /// any body.
    pub expect_body: Option<Spanned<String>>,
    /// Statuses that say the endpoint is going away (draining): it leaves
    /// rotation at the first such answer, not after `fall` checks. Default
    /// `[503]`; `[]`: none.
    pub draining_status: Option<Spanned<Vec<Spanned<i64>>>>,
}

impl RawTable for RawHttpCheck {}
/// `health` of a `[[cluster]]`: how levee actively checks each endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSettings {
    /// What one check does.
    pub check: HealthCheckKind,
    /// How often checks run and how many results in a row change an
    /// endpoint's health.
    pub params: HealthCheckParams,
}

/// What one active health check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// Open a TCP connection, then close it: the port accepts connections.
    /// Cheap, but a hung process whose kernel still accepts passes it.
    Tcp,
    /// Send an HTTP request and judge the response.
    Http(HttpCheckSettings),
}

/// An HTTP health check: the request sent and the answer that counts as
/// healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheckSettings {
    /// Request method (a valid method token).
    pub method: Method,
    /// Path and query, starting with `/`.
    pub path: String,
    /// `Host` header; `None`: the endpoint's `host:port`.
    pub host: Option<String>,
    /// Statuses that count as healthy, each 100 to 599; never empty.
    pub expect_status: Vec<u16>,
    /// Text the response body must contain; `None`: any body. Never empty.
    pub expect_body: Option<String>,
    /// Statuses that say "going away": the endpoint leaves rotation at the
    /// first one, until a check passes (no `fall` count).
    pub draining_status: Vec<u16>,
}

impl HttpCheckSettings {
    /// Default [`HttpCheckSettings::method`].
    pub const DEFAULT_METHOD: Method = Method::GET;
    /// Default [`HttpCheckSettings::expect_status`].
    pub const DEFAULT_EXPECT_STATUS: [u16; 1] = [200];
    /// Default [`HttpCheckSettings::draining_status`]: what a server that
    /// shuts down gracefully answers its health checks (RFC 9110 §15.6.4).
    pub const DEFAULT_DRAINING_STATUS: [u16; 1] = [503];

    /// A check of `path` with every other setting at its default: `GET`,
    /// expecting 200, any body.
    pub fn new(path: impl Into<String>) -> HttpCheckSettings {
        HttpCheckSettings {
            method: HttpCheckSettings::DEFAULT_METHOD,
            path: path.into(),
            host: None,
            expect_status: HttpCheckSettings::DEFAULT_EXPECT_STATUS.to_vec(),
            expect_body: None,
            draining_status: HttpCheckSettings::DEFAULT_DRAINING_STATUS.to_vec(),
        }
    }
}

/// The settings of a written `health` table of the cluster `section`; `None`
/// if anything in it is bad (reported).
pub(super) fn health<T>(
    section: &Section<T>,
    health: &Spanned<RawHealth>,
    report: &mut Report<'_>,
) -> Option<HealthSettings> {
    let raw = health.get_ref();
    // Validated even next to `tcp = true`, so its problems show up too.
    let http = raw
        .http
        .as_ref()
        .map(|http| http_check(section, http, report));
    let tcp = raw.tcp.as_ref().is_some_and(|tcp| *tcp.get_ref());
    let check = match (http, tcp) {
        (Some(_), true) => {
            let message = "health: set one check, not both http and tcp = true";
            report.error(health.span(), message);
            None
        }
        (None, false) => {
            // An unreadable `http` was reported already.
            if !section.is_unreadable("health.http") && !section.is_unreadable("health.tcp") {
                let message = "health: set the check: http = { path = \"/...\" } or tcp = true";
                report.error(health.span(), message);
            }
            None
        }
        (Some(http), false) => http.map(HealthCheckKind::Http),
        (None, true) => Some(HealthCheckKind::Tcp),
    };
    let params = params(raw, &health.span(), report);
    Some(HealthSettings {
        check: check?,
        params: params?,
    })
}

/// `health.http`; `None` if anything in it is bad (reported).
fn http_check<T>(
    section: &Section<T>,
    http: &Spanned<RawHttpCheck>,
    report: &mut Report<'_>,
) -> Option<HttpCheckSettings> {
    let raw = http.get_ref();
    let path = match &raw.path {
        Some(path) => request_path(path, report),
        None => {
            if !section.is_unreadable("health.http.path") {
                let message = format!("missing key \"health.http.path\" in {}", section.label);
                report.error(http.span(), message);
            }
            None
        }
    };
    let method = match &raw.method {
        Some(method) => request_method(method, report),
        None => Some(HttpCheckSettings::DEFAULT_METHOD),
    };
    let host = match &raw.host {
        Some(host) => host_header(host, report).map(Some),
        None => Some(None),
    };
    let expect_status = match &raw.expect_status {
        Some(statuses) => expected_statuses(statuses, report),
        None => Some(HttpCheckSettings::DEFAULT_EXPECT_STATUS.to_vec()),
    };
    let expect_body = match &raw.expect_body {
        Some(body) if body.get_ref().is_empty() => {
            let message =
                "health.http.expect_body: must not be empty (leave it out to accept any body)";
            report.error(body.span(), message);
            None
        }
        Some(body) => Some(Some(body.get_ref().clone())),
        None => Some(None),
    };
    let draining_status = match &raw.draining_status {
        Some(statuses) => draining_statuses(statuses, report),
        None => Some(HttpCheckSettings::DEFAULT_DRAINING_STATUS.to_vec()),
    };
    Some(HttpCheckSettings {
        method: method?,
        path: path?,
        host: host?,
        expect_status: expect_status?,
        expect_body: expect_body?,
        draining_status: draining_status?,
    })
}

/// Something that can go in a request line after the method.
fn request_path(path: &Spanned<String>, report: &mut Report<'_>) -> Option<String> {
    let text = path.get_ref();
    // `#` would start a fragment, which is never sent: the check would
    // request less than it says.
    let problem = if !text.starts_with('/') {
        format!("must start with \"/\", got {text:?}")
    } else if text.parse::<PathAndQuery>().is_err() || text.contains('#') {
        format!(
            "{text:?} is not a valid request path (percent-encode spaces and other special characters)"
        )
    } else {
        return Some(text.clone());
    };
    report.error(path.span(), format!("health.http.path: {problem}"));
    None
}

fn request_method(method: &Spanned<String>, report: &mut Report<'_>) -> Option<Method> {
    let text = method.get_ref();
    let upper = text.to_ascii_uppercase();
    let problem = match Method::from_bytes(text.as_bytes()) {
        // `get` is a valid (extension) method that no server knows: methods
        // are case-sensitive.
        Ok(_) if upper != *text && Method::from_bytes(upper.as_bytes()).is_ok_and(is_standard) => {
            format!("methods are case-sensitive: write {upper:?}, not {text:?}")
        }
        Ok(parsed) => return Some(parsed),
        Err(_) => format!("{text:?} is not a valid HTTP method"),
    };
    report.error(method.span(), format!("health.http.method: {problem}"));
    None
}

/// One of the methods of RFC 9110 and RFC 5789 (`PATCH`).
fn is_standard(method: Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ]
    .contains(&method)
}

fn host_header(host: &Spanned<String>, report: &mut Report<'_>) -> Option<String> {
    let text = host.get_ref();
    // A `Host` header is an authority: a name or address and an optional
    // port, no user info.
    if !text.is_empty() && !text.contains('@') && text.parse::<Authority>().is_ok() {
        return Some(text.clone());
    }
    let message = format!(
        "health.http.host: {text:?} is not a valid Host header: expected e.g. \"app.internal\" or \"app.internal:8080\""
    );
    report.error(host.span(), message);
    None
}

/// `draining_status`: HTTP statuses, possibly none.
fn draining_statuses(
    statuses: &Spanned<Vec<Spanned<i64>>>,
    report: &mut Report<'_>,
) -> Option<Vec<u16>> {
    http_statuses(statuses, "health.http.draining_status", report)
}

/// Each of `statuses` an HTTP status (100 to 599), reported under `key`.
fn http_statuses(
    statuses: &Spanned<Vec<Spanned<i64>>>,
    key: &str,
    report: &mut Report<'_>,
) -> Option<Vec<u16>> {
    let mut valid = Vec::new();
    let mut all_valid = true;
    for status in statuses.get_ref() {
        match u16::try_from(*status.get_ref()) {
            Ok(code @ 100..=599) => valid.push(code),
            _ => {
                let message = format!(
                    "{key}: {} is not an HTTP status (100 to 599)",
                    status.get_ref()
                );
                report.error(status.span(), message);
                all_valid = false;
            }
        }
    }
    all_valid.then_some(valid)
}

fn expected_statuses(
    statuses: &Spanned<Vec<Spanned<i64>>>,
    report: &mut Report<'_>,
) -> Option<Vec<u16>> {
    if statuses.get_ref().is_empty() {
        let message = "health.http.expect_status: must list at least one status";
        report.error(statuses.span(), message);
        return None;
    }
    http_statuses(statuses, "health.http.expect_status", report)
}

/// The timing, checked by [`HealthCheckParams::new`]. It names only the
/// first bad parameter, so each one it names is reported at its value and
/// replaced by its default until it accepts the rest: every bad parameter is
/// reported, in levee-core's words.
fn params(
    raw: &RawHealth,
    table: &Range<usize>,
    report: &mut Report<'_>,
) -> Option<HealthCheckParams> {
    let defaults = HealthCheckParams::default();
    let mut all_valid = true;
    let mut duration_of = |text: Option<&Spanned<String>>, key: &str, default: Duration| {
        let parsed = duration(text, key, default, Zero::Allowed, report);
        all_valid &= parsed.is_some();
        parsed.unwrap_or(default)
    };
    let mut interval = duration_of(
        raw.interval.as_ref(),
        "health.interval",
        defaults.interval(),
    );
    let mut transition_interval = duration_of(
        raw.transition_interval.as_ref(),
        "health.transition_interval",
        defaults.transition_interval(),
    );
    let mut timeout = duration_of(raw.timeout.as_ref(), "health.timeout", defaults.timeout());
    let value = |written: &Option<Spanned<u32>>, default: u32| {
        written.as_ref().map_or(default, |value| *value.get_ref())
    };
    let mut rise = value(&raw.rise, defaults.rise());
    let mut fall = value(&raw.fall, defaults.fall());
    let mut jitter = raw
        .jitter
        .as_ref()
        .map_or(defaults.jitter(), |jitter| *jitter.get_ref());
    loop {
        let error = match HealthCheckParams::new(
            rise,
            fall,
            interval,
            transition_interval,
            timeout,
            jitter,
        ) {
            Ok(params) => return all_valid.then_some(params),
            Err(error) => error,
        };
        let span = match error {
            BadHealthParams::Rise => {
                rise = defaults.rise();
                raw.rise.as_ref().map(Spanned::span)
            }
            BadHealthParams::Fall => {
                fall = defaults.fall();
                raw.fall.as_ref().map(Spanned::span)
            }
            BadHealthParams::Interval => {
                interval = defaults.interval();
                raw.interval.as_ref().map(Spanned::span)
            }
            BadHealthParams::TransitionInterval => {
                transition_interval = defaults.transition_interval();
                raw.transition_interval.as_ref().map(Spanned::span)
            }
            BadHealthParams::Timeout => {
                timeout = defaults.timeout();
                raw.timeout.as_ref().map(Spanned::span)
            }
            BadHealthParams::Jitter(_) => {
                jitter = defaults.jitter();
                raw.jitter.as_ref().map(Spanned::span)
            }
        };
        report.error(
            span.unwrap_or_else(|| table.clone()),
            format!("health.{}: {}", error.param(), without_param(&error)),
        );
        all_valid = false;
    }
}

/// `rise must be at least 1` → `must be at least 1`: the message names the
/// key with its path already.
fn without_param(error: &BadHealthParams) -> String {
    let message = error.to_string();
    match message.strip_prefix(error.param()) {
        Some(rest) => rest.trim_start().to_owned(),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_lose_only_the_parameter_name() {
        assert_eq!(without_param(&BadHealthParams::Rise), "must be at least 1");
        assert_eq!(
            without_param(&BadHealthParams::TransitionInterval),
            "must be greater than zero"
        );
        assert_eq!(
            without_param(&BadHealthParams::Jitter(1.5)),
            "must be between 0.0 and 1.0, got 1.5"
        );
    }
}
