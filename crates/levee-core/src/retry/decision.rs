//! May this request be tried again, and if not, why not.
//!
//! The rule is the send phase: a request that never left levee can go
//! anywhere; one that reached an endpoint may have been acted on, so only an
//! idempotent request whose body levee still holds may be resent; once
//! response bytes have reached the client, a second response cannot be
//! spliced in. Every "no" carries a [`NotRetried`] reason that levee puts in
//! its JSON error body, so a client (and an operator reading logs) sees which
//! rule fired instead of a bare 502.

use std::fmt;
use std::time::Duration;

use crate::outcome::{AttemptResult, FailureKind, Outcome, SendPhase};

use super::BadRetryParams;
use super::poison::PoisonClass;

/// Validated per-cluster retry settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included. Bounded because every retry
    /// is extra load on a cluster that is already failing; 3 is enough to
    /// step around one or two dead nodes.
    max_attempts: u32,
}

impl RetryPolicy {
    /// Validated settings. Rejects `max_attempts = 0` (a request must be
    /// tried once); `max_attempts = 1` means "never retry".
    pub fn new(max_attempts: u32) -> Result<RetryPolicy, BadRetryParams> {
        if max_attempts == 0 {
            return Err(BadRetryParams::MaxAttempts);
        }
        Ok(RetryPolicy { max_attempts })
    }

    /// Attempts in all, the first one included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
}

impl Default for RetryPolicy {
    /// At most 3 attempts.
    fn default() -> RetryPolicy {
        RetryPolicy { max_attempts: 3 }
    }
}

/// What the retry rules need to know about the client's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestFacts {
    /// Whether resending it is harmless; see
    /// [`is_idempotent`](super::is_idempotent).
    pub idempotent: bool,
    /// Whether levee still holds the whole body, so it can send it again. A
    /// body larger than the replay buffer streams through and is gone once
    /// sent.
    pub body_replayable: bool,
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again, on another endpoint, after a backoff, if the retry budget
    /// allows it.
    Retry,
    /// Give the client this attempt's result (or levee's error saying why).
    Stop(NotRetried),
}

/// Why a request was not tried again. [`Display`](fmt::Display) gives the
/// words levee puts in its JSON error body; [`NotRetried::as_str`] a stable
/// label for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotRetried {
    /// The upstream answered with a status that is its final word (a 2xx,
    /// a 4xx, a 500 …): passed to the client as is.
    FinalResponse {
        /// The status it answered with.
        status: u16,
    },
    /// The request reached an endpoint, which may have acted on it, and
    /// doing it twice could do harm.
    NotIdempotent,
    /// Response bytes were already forwarded to the client.
    ResponseStarted,
    /// The client's own request body failed; another endpoint would see the
    /// same broken body.
    ClientBody,
    /// The request body was larger than the replay buffer and was consumed
    /// by the failed attempt.
    BodyTooLarge,
    /// `max_attempts` attempts were made.
    AttemptsExhausted {
        /// Attempts made.
        attempts: u32,
        /// The configured maximum.
        max_attempts: u32,
    },
    /// Every endpoint of the cluster was already tried (retries go to a
    /// different endpoint).
    NoOtherEndpoint,
    /// The cluster's retry budget is spent: the cluster is failing broadly
    /// and retries would only multiply its load.
    BudgetExhausted,
    /// The request failed the same way on several endpoints: it is the
    /// request, not the nodes.
    Poison {
        /// The failure it produced everywhere.
        class: PoisonClass,
        /// On how many endpoints.
        endpoints: u32,
    },
    /// The time left before the request's deadline could not cover another
    /// attempt (less than the cluster's typical latency, or less than the
    /// backoff before it): starting one would only be wasted work.
    NoTimeLeft {
        /// Time left when the decision was made.
        left: Duration,
        /// What another attempt needs at least.
        needs: Duration,
        /// What `needs` is: `"the cluster's p50"` or `"the backoff"`.
        what: &'static str,
    },
}

impl NotRetried {
    /// Stable lower-case label for metrics and JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            NotRetried::FinalResponse { .. } => "final-response",
            NotRetried::NotIdempotent => "not-idempotent",
            NotRetried::ResponseStarted => "response-started",
            NotRetried::ClientBody => "client-body",
            NotRetried::BodyTooLarge => "body-too-large",
            NotRetried::AttemptsExhausted { .. } => "attempts-exhausted",
            NotRetried::NoOtherEndpoint => "no-other-endpoint",
            NotRetried::BudgetExhausted => "budget-exhausted",
            NotRetried::Poison { .. } => "poison",
            NotRetried::NoTimeLeft { .. } => "no-time-left",
        }
    }
}

impl fmt::Display for NotRetried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not retried: ")?;
        match self {
            NotRetried::FinalResponse { status } => write!(f, "upstream answered {status}"),
            NotRetried::NotIdempotent => f.write_str("request was sent and is not idempotent"),
            NotRetried::ResponseStarted => f.write_str("response already started"),
            NotRetried::ClientBody => f.write_str("client request body failed"),
            NotRetried::BodyTooLarge => f.write_str("request body too large to replay"),
            NotRetried::AttemptsExhausted {
                attempts,
                max_attempts,
            } => write!(f, "attempts exhausted ({attempts} of {max_attempts})"),
            NotRetried::NoOtherEndpoint => f.write_str("no other endpoint to try"),
            NotRetried::BudgetExhausted => f.write_str("retry budget exhausted"),
            NotRetried::Poison { endpoints, .. } => write!(
                f,
                "poison request (failed the same way on {endpoints} endpoints)"
            ),
            NotRetried::NoTimeLeft { left, needs, what } => write!(
                f,
                "{} ms left before the deadline, less than {what} ({} ms)",
                left.as_millis(),
                needs.as_millis()
            ),
        }
    }
}

/// Whether to try `request` again after `last`, its latest attempt.
/// `attempts_so_far` counts every attempt made, `last` included.
///
/// The rules, in the order they are checked (the first that says no is the
/// reason given):
///
/// 1. A response with a status is retried only for 502, 503 and 504: the
///    node (or its path) did not do its job, and another node may. Any other
///    status (2xx, 4xx, 500, …) is the upstream's answer and goes to the
///    client. This assumes the decision is made on the response head,
///    before any of it is forwarded.
/// 2. [`FailureKind::ClientBody`]: never; the client's body is the problem.
/// 3. [`SendPhase::ResponseStarted`] (a body broke midway): never; the
///    client already has part of a response.
/// 4. [`SendPhase::SentNoResponse`] and 502/503/504: the endpoint may have
///    acted on the request, so only if it is idempotent, and only if levee
///    still holds its body.
/// 5. [`SendPhase::NotSent`]: any method, any body (nothing was read from
///    the body yet).
/// 6. At most [`RetryPolicy::max_attempts`] attempts.
///
/// The caller then applies what needs state beyond one request: another
/// endpoint left to try ([`NotRetried::NoOtherEndpoint`]), the
/// [`PoisonTracker`](super::PoisonTracker) ([`NotRetried::Poison`]), and
/// last the [`RetryBudget`](super::RetryBudget)
/// ([`NotRetried::BudgetExhausted`]), last because withdrawing spends it.
pub fn decide(
    policy: &RetryPolicy,
    request: &RequestFacts,
    attempts_so_far: u32,
    last: &Outcome,
) -> RetryDecision {
    let phase = match last.result {
        AttemptResult::Response {
            status: 502..=504, ..
        } => SendPhase::SentNoResponse,
        AttemptResult::Response { status } => {
            return RetryDecision::Stop(NotRetried::FinalResponse { status });
        }
        AttemptResult::Failed(FailureKind::ClientBody) => {
            return RetryDecision::Stop(NotRetried::ClientBody);
        }
        AttemptResult::Failed(_) => last.phase,
    };
    match phase {
        SendPhase::ResponseStarted => return RetryDecision::Stop(NotRetried::ResponseStarted),
        SendPhase::SentNoResponse if !request.idempotent => {
            return RetryDecision::Stop(NotRetried::NotIdempotent);
        }
        SendPhase::SentNoResponse if !request.body_replayable => {
            return RetryDecision::Stop(NotRetried::BodyTooLarge);
        }
        SendPhase::SentNoResponse | SendPhase::NotSent => {}
    }
    if attempts_so_far >= policy.max_attempts {
        return RetryDecision::Stop(NotRetried::AttemptsExhausted {
            attempts: attempts_so_far,
            max_attempts: policy.max_attempts,
        });
    }
    RetryDecision::Retry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::EndpointId;
    use std::time::Duration;

    const GET: RequestFacts = RequestFacts {
        idempotent: true,
        body_replayable: true,
    };
    const POST: RequestFacts = RequestFacts {
        idempotent: false,
        body_replayable: true,
    };
    const BIG_PUT: RequestFacts = RequestFacts {
        idempotent: true,
        body_replayable: false,
    };
    const BIG_POST: RequestFacts = RequestFacts {
        idempotent: false,
        body_replayable: false,
    };

    fn failed(kind: FailureKind) -> Outcome {
        Outcome::failure(EndpointId(0), kind, Duration::ZERO)
    }

    fn status(code: u16) -> Outcome {
        Outcome::response(EndpointId(0), code, Duration::ZERO)
    }

    fn after_first(request: RequestFacts, last: Outcome) -> RetryDecision {
        decide(&RetryPolicy::default(), &request, 1, &last)
    }

    fn stop(reason: NotRetried) -> RetryDecision {
        RetryDecision::Stop(reason)
    }

    #[test]
    fn never_sent_is_retried_whatever_the_request() {
        for kind in [
            FailureKind::ConnectRefused,
            FailureKind::ConnectTimeout,
            FailureKind::ConnectFailed,
            FailureKind::TlsHandshake,
        ] {
            for request in [GET, POST, BIG_PUT, BIG_POST] {
                assert_eq!(
                    after_first(request, failed(kind)),
                    RetryDecision::Retry,
                    "{kind} {request:?}"
                );
            }
        }
    }

    #[test]
    fn sent_without_answer_is_retried_only_when_idempotent_and_replayable() {
        for kind in [
            FailureKind::ResetBeforeResponse,
            FailureKind::Timeout,
            FailureKind::Protocol,
            FailureKind::Other,
        ] {
            assert_eq!(after_first(GET, failed(kind)), RetryDecision::Retry);
            assert_eq!(
                after_first(POST, failed(kind)),
                stop(NotRetried::NotIdempotent)
            );
            assert_eq!(
                after_first(BIG_PUT, failed(kind)),
                stop(NotRetried::BodyTooLarge)
            );
            // Not idempotent is the more fundamental reason.
            assert_eq!(
                after_first(BIG_POST, failed(kind)),
                stop(NotRetried::NotIdempotent)
            );
        }
    }

    #[test]
    fn gateway_errors_follow_the_sent_rules() {
        for code in [502, 503, 504] {
            assert_eq!(after_first(GET, status(code)), RetryDecision::Retry);
            assert_eq!(
                after_first(POST, status(code)),
                stop(NotRetried::NotIdempotent)
            );
            assert_eq!(
                after_first(BIG_PUT, status(code)),
                stop(NotRetried::BodyTooLarge)
            );
        }
    }

    #[test]
    fn other_statuses_are_final() {
        for code in [200, 204, 301, 400, 404, 429, 500, 501, 505] {
            assert_eq!(
                after_first(GET, status(code)),
                stop(NotRetried::FinalResponse { status: code })
            );
        }
    }

    #[test]
    fn started_responses_and_client_bodies_are_never_retried() {
        for request in [GET, POST] {
            assert_eq!(
                after_first(request, failed(FailureKind::BodyInterrupted)),
                stop(NotRetried::ResponseStarted)
            );
            assert_eq!(
                after_first(request, failed(FailureKind::ClientBody)),
                stop(NotRetried::ClientBody)
            );
        }
    }

    #[test]
    fn attempts_are_bounded() {
        let policy = RetryPolicy::default();
        let refused = failed(FailureKind::ConnectRefused);
        assert_eq!(decide(&policy, &GET, 2, &refused), RetryDecision::Retry);
        let exhausted = decide(&policy, &GET, 3, &refused);
        assert_eq!(
            exhausted,
            stop(NotRetried::AttemptsExhausted {
                attempts: 3,
                max_attempts: 3
            })
        );

        let once = RetryPolicy::new(1).expect("1 attempt is valid");
        assert!(matches!(
            decide(&once, &GET, 1, &refused),
            RetryDecision::Stop(NotRetried::AttemptsExhausted { .. })
        ));
    }

    #[test]
    fn policy_is_validated() {
        assert_eq!(RetryPolicy::new(0), Err(BadRetryParams::MaxAttempts));
        assert_eq!(
            BadRetryParams::MaxAttempts.to_string(),
            "max_attempts must be at least 1"
        );
        assert_eq!(RetryPolicy::new(3), Ok(RetryPolicy::default()));
        assert_eq!(RetryPolicy::default().max_attempts(), 3);
    }

    #[test]
    fn reasons_read_as_levee_reports_them() {
        let cases = [
            (
                NotRetried::NotIdempotent,
                "not retried: request was sent and is not idempotent",
            ),
            (
                NotRetried::ResponseStarted,
                "not retried: response already started",
            ),
            (
                NotRetried::AttemptsExhausted {
                    attempts: 3,
                    max_attempts: 3,
                },
                "not retried: attempts exhausted (3 of 3)",
            ),
            (
                NotRetried::BodyTooLarge,
                "not retried: request body too large to replay",
            ),
            (
                NotRetried::BudgetExhausted,
                "not retried: retry budget exhausted",
            ),
            (
                NotRetried::Poison {
                    class: PoisonClass::Status(503),
                    endpoints: 2,
                },
                "not retried: poison request (failed the same way on 2 endpoints)",
            ),
            (
                NotRetried::FinalResponse { status: 404 },
                "not retried: upstream answered 404",
            ),
            (
                NotRetried::ClientBody,
                "not retried: client request body failed",
            ),
            (
                NotRetried::NoOtherEndpoint,
                "not retried: no other endpoint to try",
            ),
        ];
        for (reason, words) in cases {
            assert_eq!(reason.to_string(), words);
        }
        assert_eq!(NotRetried::BudgetExhausted.as_str(), "budget-exhausted");
    }
}
