//! The process (`[runtime]`): its raw table, validation and settings.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::report::Report;
use super::table::{RawTable, Section};
use super::values::{Zero, duration};

/// `[runtime]`: the process.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRuntime {
    /// Number of worker threads, at least 1. Default: unset, one per CPU.
    pub worker_threads: Option<Spanned<usize>>,
    /// On shutdown, how long to wait for in-flight requests to finish before
    /// closing their connections. Default `"30s"`.
    pub drain_timeout: Option<Spanned<String>>,
    /// `true`: reload whenever the config file changes (looked at every
    /// second), as on SIGHUP. Default `false`.
    pub watch_config: Option<bool>,
    /// DNS servers endpoint names are looked up on, `"ip:port"` (`"ip"`:
    /// port 53), tried in order; answers are followed for as long as their
    /// TTL says (within each cluster's `resolve_interval`). Default: unset,
    /// the system resolver (`/etc/hosts`, `/etc/resolv.conf`, as other
    /// programs on the host see names; it gives no TTL).
    pub dns_servers: Option<Spanned<Vec<Spanned<String>>>>,
}

impl RawTable for RawRuntime {}
/// `[runtime]`: the process itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeSettings {
    /// Tokio worker threads; `None` means one per CPU.
    pub worker_threads: Option<usize>,
    /// On shutdown, how long to wait for in-flight requests before closing
    /// their connections.
    pub drain_timeout: Duration,
    /// Reload when the config file changes.
    pub watch_config: bool,
    /// DNS servers for endpoint names; empty: the system resolver.
    pub dns_servers: Vec<SocketAddr>,
}

impl RuntimeSettings {
    /// Default [`RuntimeSettings::drain_timeout`]: long enough for ordinary
    /// requests to finish, short enough for a deploy not to stall.
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
}

impl Default for RuntimeSettings {
    fn default() -> RuntimeSettings {
        RuntimeSettings {
            worker_threads: None,
            drain_timeout: RuntimeSettings::DEFAULT_DRAIN_TIMEOUT,
            watch_config: false,
            dns_servers: Vec::new(),
        }
    }
}

pub(super) fn runtime(
    section: Option<&Section<RawRuntime>>,
    report: &mut Report<'_>,
) -> RuntimeSettings {
    let Some(Section { raw, .. }) = section else {
        return RuntimeSettings::default();
    };
    let worker_threads = raw.worker_threads.as_ref().map(|threads| {
        if *threads.get_ref() == 0 {
            let message = "worker_threads: must be at least 1 (leave it unset for one per CPU)";
            report.error(threads.span(), message);
        }
        *threads.get_ref()
    });
    let drain_timeout = duration(
        raw.drain_timeout.as_ref(),
        "drain_timeout",
        RuntimeSettings::DEFAULT_DRAIN_TIMEOUT,
        Zero::Allowed,
        report,
    );
    let dns_servers = raw.dns_servers.as_ref().map_or_else(Vec::new, |servers| {
        servers
            .get_ref()
            .iter()
            .filter_map(|server| dns_server(server, report))
            .collect()
    });
    RuntimeSettings {
        worker_threads,
        drain_timeout: drain_timeout.unwrap_or(RuntimeSettings::DEFAULT_DRAIN_TIMEOUT),
        watch_config: raw.watch_config.unwrap_or(false),
        dns_servers,
    }
}

/// A DNS server, `"ip:port"` or `"ip"` (port 53).
pub(super) fn dns_server(text: &Spanned<String>, report: &mut Report<'_>) -> Option<SocketAddr> {
    const DNS_PORT: u16 = 53;
    let written = text.get_ref();
    if let Ok(ip) = written.parse::<std::net::IpAddr>() {
        return Some(SocketAddr::new(ip, DNS_PORT));
    }
    match written.parse::<SocketAddr>() {
        Ok(address) => Some(address),
        Err(_) => {
            let message = format!(
                "dns_servers: bad server {written:?}: expected an IP address, with a port if not 53, \
                 e.g. \"10.0.0.2\" or \"127.0.0.1:5353\""
            );
            report.error(text.span(), message);
            None
        }
    }
}
