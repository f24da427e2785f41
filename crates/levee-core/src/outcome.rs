//! What one upstream attempt produced.
//!
//! The proxy turns every attempt into an [`Outcome`]; health, outlier
//! detection, breakers, retry budgets and latency estimators all consume the
//! same value, so none of them has to look at sockets or hyper errors.

use std::fmt;
use std::time::Duration;

/// Index of an endpoint within its cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(pub usize);

/// How far an attempt got before it ended. This decides whether it may be
/// retried: a request that was never sent cannot have been acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SendPhase {
    /// Nothing reached the endpoint (connect refused or timed out). Always safe
    /// to retry, whatever the method.
    NotSent,
    /// The request was (or may have been) sent, no response head arrived. The
    /// endpoint may have acted on it: only idempotent requests may be retried.
    SentNoResponse,
    /// Response bytes were already forwarded to the client. Never retried.
    ResponseStarted,
}

impl SendPhase {
    /// Stable lower-case name for logs, metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SendPhase::NotSent => "not-sent",
            SendPhase::SentNoResponse => "sent-no-response",
            SendPhase::ResponseStarted => "response-started",
        }
    }
}

impl fmt::Display for SendPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an attempt produced no (complete) response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The endpoint refused the TCP connection (nothing listening).
    ConnectRefused,
    /// The TCP connection was not established within the connect timeout.
    ConnectTimeout,
    /// Any other connect failure (unreachable network, reset during connect).
    ConnectFailed,
    /// The endpoint's name did not resolve to an address (no connection was
    /// tried).
    Unresolved,
    /// The TLS handshake with the endpoint failed (its certificate did not
    /// verify, no common version or cipher, reset during the handshake): no
    /// request byte was sent.
    TlsHandshake,
    /// The endpoint refused the request unprocessed on an established
    /// HTTP/2 connection (`REFUSED_STREAM`, or a stream above a graceful
    /// `GOAWAY`'s last id, RFC 9113 §8.7): not sent as far as the endpoint
    /// is concerned, and not a sign of a broken node.
    Refused,
    /// The endpoint closed a reused keep-alive connection before its kernel
    /// received any byte of the request (nothing of it was acknowledged):
    /// the idle-close race of a graceful shutdown or a keep-alive timeout.
    /// Not sent, so any method may go elsewhere.
    ClosedIdle,
    /// The connection was reset or closed before a response head arrived.
    ResetBeforeResponse,
    /// No response head within the request timeout (a hung endpoint).
    Timeout,
    /// The endpoint answered with something that is not valid HTTP.
    Protocol,
    /// The response had started but its body failed midway (reset, garbage).
    BodyInterrupted,
    /// The client's request body failed while being forwarded (the client
    /// went away or sent a malformed body): says nothing about the endpoint.
    ClientBody,
    /// A failure that fits none of the above.
    Other,
}

impl FailureKind {
    /// Stable lower-case name for logs, metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::ConnectRefused => "connect-refused",
            FailureKind::ConnectTimeout => "connect-timeout",
            FailureKind::ConnectFailed => "connect-failed",
            FailureKind::Unresolved => "unresolved",
            FailureKind::TlsHandshake => "tls-handshake",
            FailureKind::Refused => "refused-stream",
            FailureKind::ClosedIdle => "closed-idle",
            FailureKind::ResetBeforeResponse => "reset-before-response",
            FailureKind::Timeout => "timeout",
            FailureKind::Protocol => "protocol-error",
            FailureKind::BodyInterrupted => "body-interrupted",
            FailureKind::ClientBody => "client-body",
            FailureKind::Other => "other",
        }
    }

    /// The send phase an attempt had reached when it failed this way.
    pub fn phase(self) -> SendPhase {
        match self {
            FailureKind::ConnectRefused
            | FailureKind::ConnectTimeout
            | FailureKind::ConnectFailed
            | FailureKind::Unresolved
            | FailureKind::TlsHandshake
            | FailureKind::Refused
            | FailureKind::ClosedIdle => SendPhase::NotSent,
            FailureKind::ResetBeforeResponse
            | FailureKind::Timeout
            | FailureKind::Protocol
            | FailureKind::ClientBody
            | FailureKind::Other => SendPhase::SentNoResponse,
            FailureKind::BodyInterrupted => SendPhase::ResponseStarted,
        }
    }

    /// True for failures to establish a connection.
    pub fn is_connect(self) -> bool {
        self.phase() == SendPhase::NotSent
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status-class label used in metrics: `1xx` … `5xx`, or `error` when
/// there was no response at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusClass {
    /// 1xx informational.
    Informational,
    /// 2xx success.
    Success,
    /// 3xx redirection.
    Redirection,
    /// 4xx client error.
    ClientError,
    /// 5xx server error.
    ServerError,
    /// No usable response.
    Error,
}

impl StatusClass {
    /// Every class, in label order (for pre-creating metric series).
    pub const ALL: [StatusClass; 6] = [
        StatusClass::Informational,
        StatusClass::Success,
        StatusClass::Redirection,
        StatusClass::ClientError,
        StatusClass::ServerError,
        StatusClass::Error,
    ];

    /// Class of an HTTP status code.
    pub fn of_status(status: u16) -> StatusClass {
        match status {
            100..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirection,
            400..=499 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        }
    }

    /// Position in [`StatusClass::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusClass::Informational => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirection => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::Error => "error",
        }
    }
}

/// What an attempt ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// A response head arrived with this status (the body may still fail later,
    /// reported as a second outcome with [`FailureKind::BodyInterrupted`]).
    Response {
        /// HTTP status code.
        status: u16,
    },
    /// No usable response.
    Failed(FailureKind),
}

/// One upstream attempt, as every policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Which endpoint of the cluster was tried.
    pub endpoint: EndpointId,
    /// How far the attempt got.
    pub phase: SendPhase,
    /// Status or failure.
    pub result: AttemptResult,
    /// Time from the start of the attempt to the response head (or failure).
    pub latency: Duration,
}

impl Outcome {
    /// An attempt that received a response head.
    pub fn response(endpoint: EndpointId, status: u16, latency: Duration) -> Outcome {
        Outcome {
            endpoint,
            phase: SendPhase::ResponseStarted,
            result: AttemptResult::Response { status },
            latency,
        }
    }

    /// An attempt that failed; the phase follows from the kind of failure.
    pub fn failure(endpoint: EndpointId, kind: FailureKind, latency: Duration) -> Outcome {
        Outcome {
            endpoint,
            phase: kind.phase(),
            result: AttemptResult::Failed(kind),
            latency,
        }
    }

    /// Metric class of this outcome.
    pub fn status_class(&self) -> StatusClass {
        match self.result {
            AttemptResult::Response { status } => StatusClass::of_status(status),
            AttemptResult::Failed(_) => StatusClass::Error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_failures_were_never_sent() {
        for kind in [
            FailureKind::ConnectRefused,
            FailureKind::ConnectTimeout,
            FailureKind::ConnectFailed,
            FailureKind::Unresolved,
            FailureKind::TlsHandshake,
            FailureKind::Refused,
            FailureKind::ClosedIdle,
        ] {
            let outcome = Outcome::failure(EndpointId(0), kind, Duration::ZERO);
            assert_eq!(outcome.phase, SendPhase::NotSent, "{kind}");
            assert!(kind.is_connect());
        }
    }

    #[test]
    fn timeouts_and_resets_may_have_been_acted_on() {
        for kind in [
            FailureKind::Timeout,
            FailureKind::ResetBeforeResponse,
            FailureKind::Protocol,
        ] {
            assert_eq!(kind.phase(), SendPhase::SentNoResponse, "{kind}");
        }
        assert_eq!(
            FailureKind::BodyInterrupted.phase(),
            SendPhase::ResponseStarted
        );
    }

    #[test]
    fn status_classes() {
        assert_eq!(StatusClass::of_status(204).as_str(), "2xx");
        assert_eq!(StatusClass::of_status(404).as_str(), "4xx");
        assert_eq!(StatusClass::of_status(503).as_str(), "5xx");
        let failed = Outcome::failure(EndpointId(1), FailureKind::Timeout, Duration::ZERO);
        assert_eq!(failed.status_class(), StatusClass::Error);
        for (i, class) in StatusClass::ALL.iter().enumerate() {
            assert_eq!(class.index(), i);
        }
    }
}
