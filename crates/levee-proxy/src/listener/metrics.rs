//! Metrics of client connections, per listener (the admin listener
//! included, as `admin`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why levee closed a client connection itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// No complete request head within `header_read_timeout` (a silent
    /// connection, or one sending its head too slowly).
    HeaderTimeout,
    /// No request for `idle_timeout` on a keep-alive connection.
    IdleTimeout,
    /// Closed to make room for a new connection at `max_connections`.
    Evicted,
    /// A new connection at `max_connections` with no idle one to replace.
    OverLimit,
    /// A new connection closed at once because the process was out of file
    /// descriptors.
    OutOfDescriptors,
}

impl CloseReason {
    /// Every reason, in label order.
    pub const ALL: [CloseReason; 5] = [
        CloseReason::HeaderTimeout,
        CloseReason::IdleTimeout,
        CloseReason::Evicted,
        CloseReason::OverLimit,
        CloseReason::OutOfDescriptors,
    ];

    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::HeaderTimeout => "header-timeout",
            CloseReason::IdleTimeout => "idle-timeout",
            CloseReason::Evicted => "evicted",
            CloseReason::OverLimit => "over-limit",
            CloseReason::OutOfDescriptors => "out-of-descriptors",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    listener: String,
    reason: &'static str,
}

/// The connection metric families, registered once.
#[derive(Default)]
pub struct ConnectionFamilies {
    open: Family<ListenerLabels, Gauge>,
    parked: Family<ListenerLabels, Gauge>,
    limit: Family<ListenerLabels, Gauge>,
    closed: Family<CloseLabels, Counter>,
}

impl ConnectionFamilies {
    /// Register the families in `registry`.
    pub fn register(registry: &mut Registry) -> ConnectionFamilies {
        let families = ConnectionFamilies::default();
        registry.register(
            "connections_open",
            "Client connections open, by listener",
            families.open.clone(),
        );
        registry.register(
            "connections_parked",
            "Idle HTTP/1 client connections parked (kept without a task until their next request), by listener",
            families.parked.clone(),
        );
        registry.register(
            "connections_max",
            "max_connections of each listener: at this many, a new connection replaces an idle one or is closed",
            families.limit.clone(),
        );
        registry.register(
            "connections_closed",
            "Client connections levee closed itself, by reason: header-timeout, idle-timeout, evicted (room made at max_connections), over-limit (no room), out-of-descriptors",
            families.closed.clone(),
        );
        families
    }

    /// Handles for one listener.
    pub fn listener(&self, listener: &str) -> ConnectionMetrics {
        let labels = ListenerLabels {
            listener: listener.to_owned(),
        };
        ConnectionMetrics {
            open: self.open.get_or_create_owned(&labels),
            parked: self.parked.get_or_create_owned(&labels),
            limit: self.limit.get_or_create_owned(&labels),
            closed: CloseReason::ALL.map(|reason| {
                self.closed.get_or_create_owned(&CloseLabels {
                    listener: listener.to_owned(),
                    reason: reason.as_str(),
                })
            }),
        }
    }
}

/// One listener's connection series.
#[derive(Clone)]
pub struct ConnectionMetrics {
    open: Gauge,
    parked: Gauge,
    limit: Gauge,
    closed: [Counter; CloseReason::ALL.len()],
}

impl ConnectionMetrics {
    /// Count a connection levee closed itself.
    pub fn record_close(&self, reason: CloseReason) {
        self.closed[reason as usize].inc();
    }

    pub(crate) fn set_open(&self, open: usize) {
        self.open.set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// The gauge of parked connections, which the listener's parked set
    /// keeps up to date.
    pub(crate) fn parked(&self) -> Gauge {
        self.parked.clone()
    }

    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.set(i64::try_from(limit).unwrap_or(i64::MAX));
    }
}
