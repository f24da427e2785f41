//! Metrics of `tcp` listeners: how each client connection ended and why a
//! session moved to another endpoint.

use std::fmt;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::metrics::buckets::{HistogramFamily, LatencyHistogram, latency_histogram};

/// How a client connection of a `tcp` listener ended (the `outcome` label
/// of `levee_tcp_sessions_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionOutcome {
    /// An endpoint took the connection and relayed it until one side
    /// closed.
    Served,
    /// The cluster had no endpoint to pick: the client connection was closed
    /// at once.
    NoEndpoint,
    /// Every attempt failed (connect failures, or endpoints that closed
    /// before answering) and no attempt or untried endpoint was left: the
    /// client connection was closed.
    AllFailed,
    /// The client failed or reset before any endpoint answered (replay mode
    /// only): says nothing about the endpoint.
    ClientGone,
    /// The endpoint closed before answering and the session's first bytes
    /// do not match `replay_first_bytes_match`: not moved, the client
    /// connection was closed.
    NotReplayed,
}

impl SessionOutcome {
    /// Every outcome, in label order (for pre-creating metric series).
    pub const ALL: [SessionOutcome; 5] = [
        SessionOutcome::Served,
        SessionOutcome::NoEndpoint,
        SessionOutcome::AllFailed,
        SessionOutcome::ClientGone,
        SessionOutcome::NotReplayed,
    ];

    /// Position in [`SessionOutcome::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Metric label and log spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionOutcome::Served => "served",
            SessionOutcome::NoEndpoint => "no-endpoint",
            SessionOutcome::AllFailed => "all-failed",
            SessionOutcome::ClientGone => "client-gone",
            SessionOutcome::NotReplayed => "not-replayed",
        }
    }
}

impl fmt::Display for SessionOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a session moved to another endpoint (the `reason` label of
/// `levee_tcp_reconnects_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReconnectReason {
    /// The connect was refused, timed out or failed: nothing had been sent.
    ConnectFailed,
    /// The endpoint closed or reset before sending anything back; the
    /// client's kept bytes go to the next endpoint first (replay mode).
    ClosedBeforeAnswer,
    /// The endpoint sent nothing within `first_byte_timeout`: a node that
    /// accepts but does not answer (stopped, stuck); the kept bytes go to the
    /// next endpoint.
    FirstByteTimeout,
    /// `tcp_hedge`: the endpoint was slower than the listener's p95 time to
    /// first byte; a second endpoint got the kept bytes too, and the first
    /// to answer keeps the session.
    Hedge,
}

impl ReconnectReason {
    /// Every reason, in label order (for pre-creating metric series).
    pub const ALL: [ReconnectReason; 4] = [
        ReconnectReason::ConnectFailed,
        ReconnectReason::ClosedBeforeAnswer,
        ReconnectReason::FirstByteTimeout,
        ReconnectReason::Hedge,
    ];

    /// Position in [`ReconnectReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Metric label and log spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconnectReason::ConnectFailed => "connect-failed",
            ReconnectReason::ClosedBeforeAnswer => "closed-before-answer",
            ReconnectReason::FirstByteTimeout => "first-byte-timeout",
            ReconnectReason::Hedge => "hedge",
        }
    }
}

impl fmt::Display for ReconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerOutcomeLabels {
    listener: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerReasonLabels {
    listener: String,
    reason: &'static str,
}

/// The TCP metric families, registered once.
pub struct TcpFamilies {
    sessions: Family<ListenerOutcomeLabels, Counter>,
    reconnects: Family<ListenerReasonLabels, Counter>,
    first_byte: HistogramFamily<ListenerLabels>,
}

impl Default for TcpFamilies {
    fn default() -> Self {
        TcpFamilies {
            sessions: Family::default(),
            reconnects: Family::default(),
            first_byte: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl TcpFamilies {
    /// Register the families in `registry`.
    pub fn register(registry: &mut Registry) -> TcpFamilies {
        let families = TcpFamilies::default();
        registry.register(
            "tcp_sessions",
            "Client connections of tcp listeners by how they ended: served (an endpoint took the connection), no-endpoint, all-failed (no attempt worked), client-gone (the client left before the endpoint answered), not-replayed (the endpoint closed before answering and the first bytes do not allow a replay)",
            families.sessions.clone(),
        );
        registry.register(
            "tcp_reconnects",
            "TCP sessions moved to another endpoint, by reason: connect-failed (nothing was sent), closed-before-answer or first-byte-timeout (the client's kept bytes were replayed), hedge (a second endpoint got the kept bytes too; the first to answer kept the session)",
            families.reconnects.clone(),
        );
        registry.register(
            "tcp_first_byte_seconds",
            "Time from the connect to an endpoint's first byte, for tcp listeners in replay mode (where levee waits for it)",
            families.first_byte.clone(),
        );
        families
    }

    /// Handles for one `tcp` listener, every series created at once.
    pub fn listener(&self, listener: &str) -> TcpListenerMetrics {
        TcpListenerMetrics {
            sessions: SessionOutcome::ALL.map(|outcome| {
                self.sessions.get_or_create_owned(&ListenerOutcomeLabels {
                    listener: listener.to_owned(),
                    outcome: outcome.as_str(),
                })
            }),
            reconnects: ReconnectReason::ALL.map(|reason| {
                self.reconnects.get_or_create_owned(&ListenerReasonLabels {
                    listener: listener.to_owned(),
                    reason: reason.as_str(),
                })
            }),
            first_byte: self.first_byte.get_or_create_owned(&ListenerLabels {
                listener: listener.to_owned(),
            }),
        }
    }
}

/// Pre-created TCP series of one `tcp` listener.
#[derive(Clone)]
pub struct TcpListenerMetrics {
    sessions: [Counter; SessionOutcome::ALL.len()],
    reconnects: [Counter; ReconnectReason::ALL.len()],
    first_byte: LatencyHistogram,
}

impl TcpListenerMetrics {
    /// Count a client connection that ended.
    pub fn record_session(&self, outcome: SessionOutcome) {
        self.sessions[outcome.index()].inc();
    }

    /// Count a session moved to another endpoint.
    pub fn record_reconnect(&self, reason: ReconnectReason) {
        self.reconnects[reason.index()].inc();
    }

    /// An endpoint's first byte came this long after its connect (replay
    /// mode, where levee waits for it).
    pub fn record_first_byte(&self, seconds: f64) {
        self.first_byte.observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn tcp_series_exist_before_anything_happens() {
        let metrics = Metrics::new();
        let tcp = metrics.tcp_listener("git");
        tcp.record_session(SessionOutcome::Served);
        tcp.record_reconnect(ReconnectReason::ClosedBeforeAnswer);
        let text = metrics.encode();
        for line in [
            r#"levee_tcp_sessions_total{listener="git",outcome="served"} 1"#,
            r#"levee_tcp_sessions_total{listener="git",outcome="all-failed"} 0"#,
            r#"levee_tcp_reconnects_total{listener="git",reason="closed-before-answer"} 1"#,
            r#"levee_tcp_reconnects_total{listener="git",reason="connect-failed"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
