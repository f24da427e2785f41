//! What an active health check can conclude about an endpoint, and what one
//! check run produced.

use std::fmt;
use std::time::Duration;

/// The health of one endpoint as active checks see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Health {
    /// No check has finished yet. Lasts only until the first result, which
    /// decides at once (see [`HealthTracker`](super::HealthTracker)).
    #[default]
    Unknown,
    /// Checks pass: the endpoint may receive traffic.
    Healthy,
    /// Checks fail: the endpoint should receive no traffic.
    Unhealthy,
}

impl Health {
    /// Every state, in label order (for pre-creating metric series).
    pub const ALL: [Health; 3] = [Health::Unknown, Health::Healthy, Health::Unhealthy];

    /// Stable lower-case name for logs, metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one health check failed. The probe (HTTP or TCP) maps its error to one
/// of these; the tracker only needs the kind, for counting and for reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckFailure {
    /// No answer within the check timeout (a hung endpoint).
    Timeout,
    /// The endpoint refused the TCP connection (nothing listening).
    ConnectRefused,
    /// Any other connect failure (unreachable network, TLS handshake failure).
    ConnectFailed,
    /// The connection was reset or closed before the check could finish.
    Reset,
    /// An HTTP check got a status other than the expected one.
    UnexpectedStatus(u16),
    /// An HTTP check got the expected status, but the body did not contain the
    /// expected text (an endpoint that answers 200 with an error page).
    BodyMismatch,
    /// An HTTP check got the expected status, but the body broke off before
    /// its end: a reset, or fewer bytes than its `content-length` (a node
    /// that breaks every response after the head).
    BodyInterrupted,
    /// The endpoint answered with something that is not valid for the protocol.
    Protocol,
    /// A dependency probe read back a miss, or another value than the one it
    /// had just written (a cache that drops writes or answers a default).
    ReadBack,
}

impl CheckFailure {
    /// Stable lower-case label for metrics and JSON. The status code of
    /// [`CheckFailure::UnexpectedStatus`] is left out so that label values stay
    /// few; [`Display`](fmt::Display) gives the full words for people.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckFailure::Timeout => "timeout",
            CheckFailure::ConnectRefused => "connect-refused",
            CheckFailure::ConnectFailed => "connect-failed",
            CheckFailure::Reset => "reset",
            CheckFailure::UnexpectedStatus(_) => "unexpected-status",
            CheckFailure::BodyMismatch => "body-mismatch",
            CheckFailure::BodyInterrupted => "body-interrupted",
            CheckFailure::Protocol => "protocol-error",
            CheckFailure::ReadBack => "read-back",
        }
    }
}

/// In words, for reasons and logs: "timed out", "connection refused",
/// "unexpected status 503", ...
impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckFailure::Timeout => f.write_str("timed out"),
            CheckFailure::ConnectRefused => f.write_str("connection refused"),
            CheckFailure::ConnectFailed => f.write_str("connection failed"),
            CheckFailure::Reset => f.write_str("connection reset"),
            CheckFailure::UnexpectedStatus(status) => write!(f, "unexpected status {status}"),
            CheckFailure::BodyMismatch => f.write_str("body did not contain the expected text"),
            CheckFailure::BodyInterrupted => f.write_str("response body broke off before its end"),
            CheckFailure::Protocol => f.write_str("invalid response"),
            CheckFailure::ReadBack => f.write_str("did not read back the value it wrote"),
        }
    }
}

/// What one health check produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// The check passed.
    Passed {
        /// How long the check took (shown in `/status`).
        latency: Duration,
    },
    /// The check failed.
    Failed(CheckFailure),
}

impl CheckResult {
    /// True if the check passed.
    pub fn passed(&self) -> bool {
        matches!(self, CheckResult::Passed { .. })
    }

    /// The failure, if the check failed.
    pub fn failure(&self) -> Option<CheckFailure> {
        match self {
            CheckResult::Passed { .. } => None,
            CheckResult::Failed(failure) => Some(*failure),
        }
    }
}

/// "passed in 12ms" or the failure in words.
impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Passed { latency } => write!(f, "passed in {latency:?}"),
            CheckResult::Failed(failure) => failure.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_names() {
        let names: Vec<String> = Health::ALL.iter().map(Health::to_string).collect();
        assert_eq!(names, ["unknown", "healthy", "unhealthy"]);
        assert_eq!(Health::default(), Health::Unknown);
    }

    #[test]
    fn failures_read_as_words() {
        let cases = [
            (CheckFailure::Timeout, "timed out", "timeout"),
            (
                CheckFailure::ConnectRefused,
                "connection refused",
                "connect-refused",
            ),
            (
                CheckFailure::ConnectFailed,
                "connection failed",
                "connect-failed",
            ),
            (CheckFailure::Reset, "connection reset", "reset"),
            (
                CheckFailure::UnexpectedStatus(503),
                "unexpected status 503",
                "unexpected-status",
            ),
            (
                CheckFailure::BodyMismatch,
                "body did not contain the expected text",
                "body-mismatch",
            ),
            (
                CheckFailure::BodyInterrupted,
                "response body broke off before its end",
                "body-interrupted",
            ),
            (CheckFailure::Protocol, "invalid response", "protocol-error"),
        ];
        for (failure, words, label) in cases {
            assert_eq!(failure.to_string(), words);
            assert_eq!(failure.as_str(), label);
        }
    }

    #[test]
    fn results() {
        let passed = CheckResult::Passed {
            latency: Duration::from_millis(12),
        };
        assert!(passed.passed());
        assert_eq!(passed.failure(), None);
        assert_eq!(passed.to_string(), "passed in 12ms");
        let failed = CheckResult::Failed(CheckFailure::Reset);
        assert!(!failed.passed());
        assert_eq!(failed.failure(), Some(CheckFailure::Reset));
        assert_eq!(failed.to_string(), "connection reset");
    }
}
