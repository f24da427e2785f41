//! Metrics of TLS listeners: handshakes, failed handshakes by reason, and
//! certificate reloads.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Why a client's TLS handshake failed (the `reason` label of
/// `levee_tls_handshake_failures_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandshakeFailure {
    /// Not finished within `handshake_timeout`.
    Timeout,
    /// The client closed or reset the connection during the handshake.
    Closed,
    /// What the client sent is not TLS (often plain HTTP sent to a TLS
    /// port).
    NotTls,
    /// No TLS version, cipher suite, group or signature scheme in common.
    Incompatible,
    /// The client sent an alert, usually because it does not trust the
    /// certificate.
    ClientAlert,
    /// Anything else the TLS library reported.
    Other,
}

impl HandshakeFailure {
    /// Every reason, in label order.
    pub const ALL: [HandshakeFailure; 6] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::Closed,
        HandshakeFailure::NotTls,
        HandshakeFailure::Incompatible,
        HandshakeFailure::ClientAlert,
        HandshakeFailure::Other,
    ];

    /// Metric label and log spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Closed => "closed",
            HandshakeFailure::NotTls => "not-tls",
            HandshakeFailure::Incompatible => "incompatible",
            HandshakeFailure::ClientAlert => "client-alert",
            HandshakeFailure::Other => "other",
        }
    }
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerResultLabels {
    listener: String,
    result: &'static str,
}

/// The TLS metric families, registered once.
#[derive(Default)]
pub struct TlsFamilies {
    handshakes: Family<ListenerLabels, Counter>,
    failures: Family<ListenerReasonLabels, Counter>,
    reloads: Family<ListenerResultLabels, Counter>,
}

impl TlsFamilies {
    /// Register the families in `registry`.
    pub fn register(registry: &mut Registry) -> TlsFamilies {
        let families = TlsFamilies::default();
        registry.register(
            "tls_handshakes",
            "TLS handshakes completed with clients of TLS listeners",
            families.handshakes.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "Client TLS handshakes that failed, by reason: timeout, closed, not-tls (e.g. plain HTTP sent to a TLS port), incompatible (no version, cipher or group in common), client-alert (the client refused, e.g. an untrusted certificate), other",
            families.failures.clone(),
        );
        registry.register(
            "tls_certificate_reloads",
            "Certificates of TLS listeners read again after their files changed, by result: ok, or error (the previous certificates stay in use)",
            families.reloads.clone(),
        );
        families
    }

    /// Handles for one TLS listener, every series created at once.
    pub fn listener(&self, listener: &str) -> TlsListenerMetrics {
        TlsListenerMetrics {
            handshakes: self.handshakes.get_or_create_owned(&ListenerLabels {
                listener: listener.to_owned(),
            }),
            failures: HandshakeFailure::ALL.map(|reason| {
                self.failures.get_or_create_owned(&ListenerReasonLabels {
                    listener: listener.to_owned(),
                    reason: reason.as_str(),
                })
            }),
            reloads: ["ok", "error"].map(|result| {
                self.reloads.get_or_create_owned(&ListenerResultLabels {
                    listener: listener.to_owned(),
                    result,
                })
            }),
        }
    }
}

/// Pre-created TLS series of one listener.
#[derive(Clone)]
pub struct TlsListenerMetrics {
    handshakes: Counter,
    failures: [Counter; HandshakeFailure::ALL.len()],
    reloads: [Counter; 2],
}

impl TlsListenerMetrics {
    /// A handshake finished.
    pub fn record_handshake(&self) {
        self.handshakes.inc();
    }

    /// A handshake failed for `reason`.
    pub fn record_failure(&self, reason: HandshakeFailure) {
        self.failures[reason as usize].inc();
    }

    /// Changed certificate files were read: `ok`, or kept the old ones.
    pub fn record_reload(&self, ok: bool) {
        self.reloads[usize::from(!ok)].inc();
    }
}
