//! A listener's routes (`[[listener.route]]`): their raw tables, validation and
//! settings.
//!
//! `[[listener.route]]`: what each route matches, the cluster it names and
//! what it replaces of that cluster's settings; routes that can never match
//! are warned about.

use std::time::Duration;

use http::Method;
use http::header::{HeaderName, HeaderValue};
use levee_core::retry::RetryPolicy;
use serde::Deserialize;
use toml::Spanned;

use super::RetrySettings;
use super::keys::fields_of;
use super::report::Report;
use super::table::RawTable;
use super::values::{Zero, duration};
use crate::route::matcher::{HeaderMatch, HostPattern, PathPattern, RouteMatch};

/// `[[listener.route]]`: which requests go to which cluster. A request
/// must meet every condition written; a route with none takes everything.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRoute {
    /// Name in logs, metrics and `/status`, unique in its listener. Default
    /// `"route-N"` (its position, from 1).
    pub name: Option<Spanned<String>>,
    /// Host(s) the request's `Host` (or HTTP/2 `:authority`) must be, port
    /// aside, case aside: a string or an array; `"*.example.com"` takes any
    /// subdomain. Default: any host.
    pub host: Option<Spanned<RawHosts>>,
    /// The path must be exactly this (the query aside), starting with `/`.
    /// Default: any path.
    pub path: Option<Spanned<String>>,
    /// The path must start with this, at a `/` boundary (`"/api"` takes
    /// `/api` and `/api/v1`, not `/apis`). Not with `path`. Default: any.
    pub path_prefix: Option<Spanned<String>>,
    /// Methods the request may have (`["GET", "HEAD"]`). Default: any.
    pub methods: Option<Spanned<Vec<Spanned<String>>>>,
    /// A header the request must carry: `{ name = "x-canary" }`, or with
    /// an exact value `{ name = "x-canary", value = "1" }`. Default: none.
    pub header: Option<Spanned<RawHeaderMatch>>,
    /// The `[[cluster]]` that serves these requests. Required.
    pub cluster: Option<Spanned<String>>,
    /// Replaces the cluster's `request_timeout` for these requests; more
    /// than 0. Default: the cluster's.
    pub request_timeout: Option<Spanned<String>>,
    /// Replaces parts of the cluster's `retry` for these requests.
    /// Default: the cluster's.
    pub retry: Option<Spanned<RawRouteRetry>>,
    /// `false`: these requests bypass the cluster's cache. Default `true`.
    pub cache: Option<Spanned<bool>>,
    /// The admission class of these requests (`critical`, `default`,
    /// `sheddable`), also the highest a request may claim with the
    /// cluster's `priority_header`. Default `"default"`.
    pub priority: Option<Spanned<String>>,
}

impl RawTable for RawRoute {
    fn keys_at(path: &[&str]) -> &'static [&'static str] {
        match path {
            [] => fields_of::<Self>(),
            ["header", rest @ ..] => RawHeaderMatch::keys_at(rest),
            ["retry", rest @ ..] => RawRouteRetry::keys_at(rest),
            _ => &[],
        }
    }
}
/// `host` of a route: one host or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawHosts {
    One(String),
    Many(Vec<String>),
}

/// `header` of a route.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawHeaderMatch {
    /// Header name. Required.
    pub name: Option<Spanned<String>>,
    /// Exact value it must have. Default: any value.
    pub value: Option<Spanned<String>>,
}

impl RawTable for RawHeaderMatch {}
/// `retry` of a route: what it replaces of its cluster's retry settings.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRouteRetry {
    /// Attempts in all, the first included, at least 1.
    pub max_attempts: Option<Spanned<u32>>,
    /// Limit on one attempt's wait for a response head; more than 0.
    pub per_try_timeout: Option<Spanned<String>>,
    /// `true`: every request of the route may be repeated safely.
    pub idempotent: Option<bool>,
    /// `"off"`: never hedge these requests; `"p95"`: hedge them as the
    /// cluster does (its `retry.hedge` must not be off).
    pub hedge: Option<Spanned<String>>,
}

impl RawTable for RawRouteRetry {}

/// `[[listener.route]]`: the requests a route takes, the cluster that
/// serves them, and what it changes of that cluster's settings for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSettings {
    /// Name in logs, metrics and `/status`: the `name` key, else
    /// `route-<n>` (1-based position in its listener).
    pub name: String,
    /// What a request must look like.
    pub matches: crate::route::matcher::RouteMatch,
    /// The cluster that serves it (always defined).
    pub cluster: String,
    /// Replaces the cluster's `request_timeout`.
    pub request_timeout: Option<Duration>,
    /// Replaces parts of the cluster's `retry`.
    pub retry: RouteRetry,
    /// `Some(false)`: the cluster's cache is not used for this route.
    pub cache: Option<bool>,
    /// The admission class of these requests, and the highest one a
    /// request may claim for itself; `None`: `default`.
    pub priority: Option<levee_core::admission::Priority>,
}

/// The parts of a cluster's retry settings a route may replace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteRetry {
    /// Attempts in all, the first included.
    pub max_attempts: Option<RetryPolicy>,
    /// One attempt's limit on its response head.
    pub per_try_timeout: Option<Duration>,
    /// Every request of the route may be repeated safely.
    pub idempotent: Option<bool>,
    /// `Some(false)`: never hedge; `Some(true)`: hedge as the cluster does
    /// (which must hedge).
    pub hedge: Option<bool>,
}

impl RouteRetry {
    /// The cluster's retry settings with this route's replacements.
    pub fn apply(&self, cluster: &RetrySettings) -> RetrySettings {
        let mut retry = cluster.clone();
        if let Some(policy) = self.max_attempts {
            retry.policy = policy;
        }
        if let Some(timeout) = self.per_try_timeout {
            retry.per_try_timeout = timeout;
        }
        if let Some(idempotent) = self.idempotent {
            retry.idempotent = idempotent;
        }
        if self.hedge == Some(false) {
            retry.hedge = None;
        }
        retry
    }
}

/// The routes of a listener labelled `listener`; `None` if any is bad
/// (reported). Also returns each route's `cluster` for the cross-section
/// check that it is defined.
pub(in crate::config) fn routes<'r>(
    routes: &'r [Spanned<RawRoute>],
    listener: &str,
    report: &mut Report<'_>,
) -> (Option<Vec<RouteSettings>>, Vec<&'r Spanned<String>>) {
    let mut settings = Vec::with_capacity(routes.len());
    let mut clusters = Vec::new();
    let mut ok = true;
    let mut names: Vec<&str> = Vec::new();
    for (index, route) in routes.iter().enumerate() {
        let raw = route.get_ref();
        let label = match &raw.name {
            Some(name) => format!("route {:?} of {listener}", name.get_ref()),
            None => format!("route #{} of {listener}", index + 1),
        };
        let name = match &raw.name {
            Some(name) if name.get_ref().trim().is_empty() => {
                report.error(name.span(), format!("name: must not be empty ({label})"));
                ok = false;
                String::new()
            }
            Some(name) if names.contains(&name.get_ref().as_str()) => {
                report.error(
                    name.span(),
                    format!("name: {listener} has two routes named {:?}", name.get_ref()),
                );
                ok = false;
                String::new()
            }
            Some(name) => {
                names.push(name.get_ref());
                name.get_ref().clone()
            }
            None => format!("route-{}", index + 1),
        };
        let cluster = match &raw.cluster {
            Some(cluster) => {
                clusters.push(cluster);
                Some(cluster.get_ref().clone())
            }
            None => {
                report.error(route.span(), format!("missing key \"cluster\" in {label}"));
                None
            }
        };
        let matches = route_match(raw, &label, report);
        let request_timeout = match &raw.request_timeout {
            None => Some(None),
            Some(_) => duration(
                raw.request_timeout.as_ref(),
                "request_timeout",
                std::time::Duration::ZERO,
                Zero::Rejected { hint: "" },
                report,
            )
            .map(Some),
        };
        let retry = match &raw.retry {
            None => Some(RouteRetry::default()),
            Some(retry) => route_retry(retry.get_ref(), report),
        };
        if let Some(matches) = &matches {
            for (earlier_index, (earlier_name, earlier)) in settings_so_far(&settings).enumerate() {
                if matches.shadowed_by(earlier) {
                    let message = format!(
                        "{label} can never match: {} before it (#{}) takes every request it would",
                        earlier_name,
                        earlier_index + 1
                    );
                    report.warning(route.span(), message);
                    break;
                }
            }
        }
        let priority = match &raw.priority {
            None => Some(None),
            Some(written) => match written.get_ref().parse() {
                Ok(priority) => Some(Some(priority)),
                Err(error) => {
                    report.error(written.span(), format!("priority: {error}"));
                    None
                }
            },
        };
        match (cluster, matches, request_timeout, retry, priority) {
            (Some(cluster), Some(matches), Some(request_timeout), Some(retry), Some(priority)) => {
                settings.push(RouteSettings {
                    name,
                    matches,
                    cluster,
                    request_timeout,
                    retry,
                    cache: raw.cache.as_ref().map(|cache| *cache.get_ref()),
                    priority,
                });
            }
            _ => ok = false,
        }
    }
    (ok.then_some(settings), clusters)
}

fn settings_so_far(settings: &[RouteSettings]) -> impl Iterator<Item = (String, &RouteMatch)> {
    settings
        .iter()
        .map(|route| (format!("route {:?}", route.name), &route.matches))
}

/// What a route matches; `None` if a condition is bad (reported).
fn route_match(raw: &RawRoute, label: &str, report: &mut Report<'_>) -> Option<RouteMatch> {
    let mut ok = true;
    let hosts = match &raw.host {
        None => Vec::new(),
        Some(hosts) => {
            let written: Vec<&String> = match hosts.get_ref() {
                RawHosts::One(host) => vec![host],
                RawHosts::Many(hosts) => hosts.iter().collect(),
            };
            if written.is_empty() {
                report.error(
                    hosts.span(),
                    "host: an empty list matches no request; leave the key out to match any host",
                );
                ok = false;
            }
            written
                .into_iter()
                .filter_map(|host| {
                    let pattern = HostPattern::parse(host);
                    if pattern.is_none() {
                        let message = format!(
                            "host: {host:?} is not a host name or \"*.\" followed by one (no port, no path)"
                        );
                        report.error(hosts.span(), message);
                        ok = false;
                    }
                    pattern
                })
                .collect()
        }
    };
    let path = match (&raw.path, &raw.path_prefix) {
        (Some(_), Some(prefix)) => {
            report.error(
                prefix.span(),
                format!("path_prefix: {label} sets path already; write one of them"),
            );
            ok = false;
            None
        }
        (Some(path), None) => path_pattern(path, "path", report).map(PathPattern::Exact),
        (None, Some(prefix)) => {
            path_pattern(prefix, "path_prefix", report).map(PathPattern::Prefix)
        }
        (None, None) => None,
    };
    if (raw.path.is_some() || raw.path_prefix.is_some()) && path.is_none() {
        ok = false;
    }
    let methods = match &raw.methods {
        None => Vec::new(),
        Some(methods) => {
            if methods.get_ref().is_empty() {
                report.error(methods.span(), "methods: an empty list matches no request; leave the key out to match any method");
                ok = false;
            }
            methods
                .get_ref()
                .iter()
                .filter_map(|method| {
                    let text = method.get_ref();
                    let parsed = (!text.is_empty()
                        && text.bytes().all(|b| b.is_ascii_uppercase() || b == b'-'))
                    .then(|| Method::from_bytes(text.as_bytes()).ok())
                    .flatten();
                    if parsed.is_none() {
                        let message = format!(
                            "methods: {text:?} is not a method name (upper case, e.g. \"GET\")"
                        );
                        report.error(method.span(), message);
                        ok = false;
                    }
                    parsed
                })
                .collect()
        }
    };
    let header = match &raw.header {
        None => None,
        Some(header) => {
            let raw_header = header.get_ref();
            let name = match &raw_header.name {
                None => {
                    report.error(
                        header.span(),
                        format!("missing key \"header.name\" in {label}"),
                    );
                    None
                }
                Some(name) => {
                    let parsed = HeaderName::from_bytes(name.get_ref().as_bytes()).ok();
                    if parsed.is_none() {
                        let message =
                            format!("header.name: {:?} is not a header name", name.get_ref());
                        report.error(name.span(), message);
                    }
                    parsed
                }
            };
            let value = match &raw_header.value {
                None => Some(None),
                Some(value) => match HeaderValue::from_str(value.get_ref()) {
                    Ok(parsed) => Some(Some(parsed)),
                    Err(_) => {
                        let message = "header.value: not a valid header value (visible ASCII, spaces and tabs)";
                        report.error(value.span(), message);
                        None
                    }
                },
            };
            match (name, value) {
                (Some(name), Some(value)) => Some(HeaderMatch { name, value }),
                _ => {
                    ok = false;
                    None
                }
            }
        }
    };
    ok.then_some(RouteMatch {
        hosts,
        path,
        methods,
        header,
    })
}

fn path_pattern(text: &Spanned<String>, key: &str, report: &mut Report<'_>) -> Option<String> {
    let path = text.get_ref();
    let valid = path.starts_with('/')
        && !path.contains(['?', '#'])
        && path.bytes().all(|b| b.is_ascii_graphic());
    if !valid {
        let message = format!(
            "{key}: {path:?} must start with \"/\" and hold no query, fragment, space or control character"
        );
        report.error(text.span(), message);
        return None;
    }
    Some(path.clone())
}

/// `retry` of a route; `None` if a key is bad (reported).
fn route_retry(raw: &RawRouteRetry, report: &mut Report<'_>) -> Option<RouteRetry> {
    let max_attempts = match &raw.max_attempts {
        None => Some(None),
        Some(written) => match RetryPolicy::new(*written.get_ref()) {
            Ok(policy) => Some(Some(policy)),
            Err(_) => {
                report.error(
                    written.span(),
                    "retry.max_attempts: must be at least 1 (1: never retry)",
                );
                None
            }
        },
    };
    let per_try_timeout = match &raw.per_try_timeout {
        None => Some(None),
        Some(_) => duration(
            raw.per_try_timeout.as_ref(),
            "retry.per_try_timeout",
            std::time::Duration::ZERO,
            Zero::Rejected { hint: "" },
            report,
        )
        .map(Some),
    };
    let hedge = match &raw.hedge {
        None => Some(None),
        Some(text) => match text.get_ref().as_str() {
            "off" => Some(Some(false)),
            "p95" => Some(Some(true)),
            other => {
                let message =
                    format!("retry.hedge: unknown value {other:?}: expected \"p95\" or \"off\"");
                report.error(text.span(), message);
                None
            }
        },
    };
    Some(RouteRetry {
        max_attempts: max_attempts?,
        per_try_timeout: per_try_timeout?,
        idempotent: raw.idempotent,
        hedge: hedge?,
    })
}
