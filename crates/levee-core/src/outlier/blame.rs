//! Blame attribution: does an outcome say something about the endpoint?
//!
//! Only failures that are the node's doing count against it. A 404 or 400 is
//! the client's problem and never ejects a node; a client that hangs up while
//! uploading its body says nothing about the endpoint either. Getting this
//! wrong in the "blame" direction ejects healthy nodes during a client-side
//! storm (a crawler hammering missing pages), so when in doubt an outcome is
//! [`Blame::Neutral`].

use crate::outcome::{AttemptResult, FailureKind, Outcome};

/// What an outcome says about the endpoint that produced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Blame {
    /// The endpoint failed: counts towards consecutive failures and the
    /// failure rate.
    Failure,
    /// The endpoint answered: resets the consecutive-failure streak, counts
    /// as a request for the failure rate and as a latency sample.
    Success,
    /// Says nothing either way: ignored by every rule.
    Neutral,
}

impl Blame {
    /// Stable lower-case name for logs, metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Blame::Failure => "failure",
            Blame::Success => "success",
            Blame::Neutral => "neutral",
        }
    }
}

/// Whether `outcome` counts for or against its endpoint.
///
/// - Connect refused/timed out/failed, a name that does not resolve, reset
///   before the response, timeout,
///   protocol garbage, a body that breaks midway, and 502/503/504 are
///   [`Blame::Failure`]: each is the node (or its path) not doing its job.
/// - Any other 5xx (500, 501, 505, …, and nonsense codes above 599) is a
///   failure if `count_other_5xx`, else neutral. A 500 is usually a bug the
///   node hits on every request, but some services use it for "your input
///   broke me"; the cluster config decides.
/// - Every other status, including 4xx, is [`Blame::Success`]: the node
///   answered, and what it answered about is the client's business.
/// - [`FailureKind::ClientBody`] is neutral: the client went away or sent a
///   broken body.
/// - [`FailureKind::Other`] is neutral: it is what the proxy could not
///   classify, so it is not evidence against the node, and counting it would
///   let a levee bug eject healthy nodes. Every failure that is known to be the
///   node's has its own kind.
pub fn blame(outcome: &Outcome, count_other_5xx: bool) -> Blame {
    match outcome.result {
        AttemptResult::Response { status } => match status {
            502..=504 => Blame::Failure,
            500.. if count_other_5xx => Blame::Failure,
            500.. => Blame::Neutral,
            _ => Blame::Success,
        },
        AttemptResult::Failed(kind) => match kind {
            FailureKind::ConnectRefused
            | FailureKind::ConnectTimeout
            | FailureKind::ConnectFailed
            | FailureKind::Unresolved
            | FailureKind::TlsHandshake
            | FailureKind::ResetBeforeResponse
            | FailureKind::Timeout
            | FailureKind::Protocol
            | FailureKind::BodyInterrupted => Blame::Failure,
            // A refused stream is the endpoint saying "not now" (overload,
            // a graceful shutdown), and so is an idle connection it closed:
            // routing elsewhere is enough.
            FailureKind::ClientBody
            | FailureKind::Refused
            | FailureKind::ClosedIdle
            | FailureKind::Other => Blame::Neutral,
        },
    }
}

/// Plural words naming this kind of outcome, for reasons such as
/// "5 consecutive gateway failures".
pub fn blame_reason(outcome: &Outcome) -> &'static str {
    match outcome.result {
        AttemptResult::Response { status } => match status {
            502..=504 => "gateway failures",
            500.. => "server errors",
            400..=499 => "client errors",
            _ => "responses",
        },
        AttemptResult::Failed(kind) => match kind {
            FailureKind::ConnectRefused
            | FailureKind::ConnectTimeout
            | FailureKind::ConnectFailed => "connect failures",
            FailureKind::Unresolved => "failed name lookups",
            FailureKind::TlsHandshake => "failed TLS handshakes",
            FailureKind::Refused => "refused streams",
            FailureKind::ClosedIdle => "idle connections closed by the endpoint",
            FailureKind::ResetBeforeResponse => "connection resets",
            FailureKind::Timeout => "timeouts",
            FailureKind::Protocol => "protocol errors",
            FailureKind::BodyInterrupted => "interrupted responses",
            FailureKind::ClientBody => "client body failures",
            FailureKind::Other => "unclassified failures",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::EndpointId;
    use std::time::Duration;

    fn status(code: u16) -> Outcome {
        Outcome::response(EndpointId(0), code, Duration::ZERO)
    }

    fn failed(kind: FailureKind) -> Outcome {
        Outcome::failure(EndpointId(0), kind, Duration::ZERO)
    }

    #[test]
    fn node_failures_are_blamed() {
        for kind in [
            FailureKind::ConnectRefused,
            FailureKind::ConnectTimeout,
            FailureKind::ConnectFailed,
            FailureKind::TlsHandshake,
            FailureKind::ResetBeforeResponse,
            FailureKind::Timeout,
            FailureKind::Protocol,
            FailureKind::BodyInterrupted,
        ] {
            assert_eq!(blame(&failed(kind), false), Blame::Failure, "{kind}");
        }
        for code in [502, 503, 504] {
            assert_eq!(blame(&status(code), false), Blame::Failure, "{code}");
        }
    }

    #[test]
    fn client_errors_are_answers_not_failures() {
        for code in [200, 204, 301, 304, 400, 401, 404, 429, 499] {
            assert_eq!(blame(&status(code), true), Blame::Success, "{code}");
        }
    }

    #[test]
    fn other_5xx_count_only_when_configured() {
        for code in [500, 501, 505, 599, 600] {
            assert_eq!(blame(&status(code), true), Blame::Failure, "{code}");
            assert_eq!(blame(&status(code), false), Blame::Neutral, "{code}");
        }
    }

    #[test]
    fn client_body_and_unclassified_failures_are_neutral() {
        assert_eq!(
            blame(&failed(FailureKind::ClientBody), true),
            Blame::Neutral
        );
        assert_eq!(blame(&failed(FailureKind::Other), true), Blame::Neutral);
    }

    #[test]
    fn reasons_name_the_kind_of_failure() {
        assert_eq!(blame_reason(&status(503)), "gateway failures");
        assert_eq!(blame_reason(&status(500)), "server errors");
        assert_eq!(
            blame_reason(&failed(FailureKind::ConnectRefused)),
            "connect failures"
        );
        assert_eq!(blame_reason(&failed(FailureKind::Timeout)), "timeouts");
        assert_eq!(blame_reason(&status(404)), "client errors");
    }
}
