//! A listener's limits on its clients: how long a connection may take to
//! send a request head, how long it may sit idle, how many may be open.

use std::time::Duration;

/// What one listener allows its clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From accept (or from the first byte of a later request) until the
    /// request head is complete. Covers telling HTTP/1 from HTTP/2.
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after
    /// this long.
    pub idle_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Header fields a request head may have (431 past it).
    pub max_request_headers: usize,
}

impl ConnectionLimits {
    /// Default [`ConnectionLimits::header_read_timeout`] (nginx's and
    /// HAProxy's usual `timeout http-request` are of this order).
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default [`ConnectionLimits::idle_timeout`].
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// The admin listener's connections: enough for dashboards, scrapers
    /// and probes, few enough that a flood on the admin port cannot take the
    /// descriptors traffic needs.
    pub const ADMIN_MAX_CONNECTIONS: usize = 64;
    /// hyper's own limit, the one it parses without a heap allocation.
    pub const HYPER_MAX_HEADERS: usize = 100;

    /// The admin listener's limits.
    pub fn admin() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: ConnectionLimits::DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: ConnectionLimits::DEFAULT_IDLE_TIMEOUT,
            max_connections: ConnectionLimits::ADMIN_MAX_CONNECTIONS,
            max_request_headers: ConnectionLimits::HYPER_MAX_HEADERS,
        }
    }

    /// How long an HTTP/1 connection must be quiet before it is parked
    /// (its request buffers freed until the next request); also the period
    /// of the checks that catch a request head not received in time. A
    /// quarter of the header timeout at most, so that a late head is caught
    /// within a quarter of it.
    pub(crate) fn park_after(&self) -> Duration {
        (self.header_read_timeout / 4)
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(10))
    }
}

/// Descriptors kept for levee itself before client connections are
/// counted: admin connections, health checks, probes, the store, logs.
const RESERVED_DESCRIPTORS: u64 = 256;
/// A derived default never goes above this: past it, memory rather than
/// descriptors is what runs out.
const DEFAULT_MAX_CONNECTIONS_CAP: u64 = 65_536;
/// Nor below this, however low the descriptor limit.
const DEFAULT_MAX_CONNECTIONS_FLOOR: u64 = 16;

/// The process's soft limit on open file descriptors, if it can be read.
pub fn descriptor_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _hard)| soft)
}

/// The default `max_connections` of each of `listeners` listeners, given
/// the descriptor limit and the endpoints levee checks: each proxied client
/// connection may hold an upstream connection too, so half of what is left
/// after levee's own reserve, shared between the listeners.
pub fn default_max_connections(
    descriptor_limit: Option<u64>,
    listeners: usize,
    endpoints: usize,
) -> usize {
    let Some(limit) = descriptor_limit else {
        return 1024;
    };
    let reserve = RESERVED_DESCRIPTORS.min(limit / 4) + endpoints as u64;
    let per_listener = limit.saturating_sub(reserve) / 2 / listeners.max(1) as u64;
    let clamped = per_listener.clamp(DEFAULT_MAX_CONNECTIONS_FLOOR, DEFAULT_MAX_CONNECTIONS_CAP);
    usize::try_from(clamped).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_leaves_room_for_upstream_connections_and_levee_itself() {
        // systemd's default soft limit, one listener, three endpoints.
        assert_eq!(default_max_connections(Some(1024), 1, 3), 382);
        // Two listeners share it.
        assert_eq!(default_max_connections(Some(1024), 2, 3), 191);
        // A tiny limit keeps a quarter for levee.
        assert_eq!(default_max_connections(Some(256), 1, 0), 96);
        // Never absurd either way.
        assert_eq!(default_max_connections(Some(20), 1, 0), 16);
        assert_eq!(default_max_connections(Some(1 << 20), 1, 0), 65_536);
        assert_eq!(default_max_connections(None, 1, 0), 1024);
    }

    #[test]
    fn parking_waits_below_the_header_timeout() {
        let limits = |header| ConnectionLimits {
            header_read_timeout: Duration::from_millis(header),
            ..ConnectionLimits::admin()
        };
        assert_eq!(limits(10_000).park_after(), Duration::from_secs(1));
        assert_eq!(limits(500).park_after(), Duration::from_millis(125));
        assert_eq!(limits(1).park_after(), Duration::from_millis(10));
    }
}
