//! What one call tells the breaker, and how levee's [`Outcome`]s become that.
//!
//! The breaker uses the outlier detector's blame rules, so the two never
//! disagree about what a failure is: connect failures, resets, timeouts,
//! protocol garbage and 502/503/504 count; a 404 is an answer (a success); a
//! client that hangs up and what levee cannot classify say nothing. levee's
//! own load shedding happens before an attempt exists, so it never reaches a
//! breaker at all; a caller that took a permit and then shed the request
//! returns it with [`Breaker::release`](super::Breaker::release).

use std::time::Duration;

use crate::outcome::Outcome;
use crate::outlier::{Blame, blame};

/// One finished call, as the breaker counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallOutcome {
    /// The call failed in a way that blames the protected service.
    pub failure: bool,
    /// How long the call took (compared with `slow_call_duration`).
    pub duration: Duration,
}

impl CallOutcome {
    /// A call that succeeded after `duration`.
    pub fn success(duration: Duration) -> CallOutcome {
        CallOutcome {
            failure: false,
            duration,
        }
    }

    /// A call that failed after `duration`.
    pub fn failure(duration: Duration) -> CallOutcome {
        CallOutcome {
            failure: true,
            duration,
        }
    }

    /// The breaker's view of an upstream attempt, or `None` when it says
    /// nothing about the upstream (then release the permit instead of
    /// recording). `count_other_5xx` is the cluster's setting for 500, 501,
    /// 505…, as in [`blame`]. The duration is the time to the response head.
    pub fn from_outcome(outcome: &Outcome, count_other_5xx: bool) -> Option<CallOutcome> {
        match blame(outcome, count_other_5xx) {
            Blame::Failure => Some(CallOutcome::failure(outcome.latency)),
            Blame::Success => Some(CallOutcome::success(outcome.latency)),
            Blame::Neutral => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{EndpointId, FailureKind};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn breaker_outcomes_follow_outlier_blame() {
        let status = |code| Outcome::response(EndpointId(0), code, 20 * MS);
        let failed = |kind| Outcome::failure(EndpointId(0), kind, 30 * MS);
        assert_eq!(
            CallOutcome::from_outcome(&status(503), false),
            Some(CallOutcome::failure(20 * MS))
        );
        assert_eq!(
            CallOutcome::from_outcome(&failed(FailureKind::ConnectRefused), false),
            Some(CallOutcome::failure(30 * MS))
        );
        // A 404 or 429 is the upstream answering: a success, never a failure.
        for code in [200, 404, 429] {
            assert_eq!(
                CallOutcome::from_outcome(&status(code), true),
                Some(CallOutcome::success(20 * MS)),
                "{code}"
            );
        }
        assert_eq!(
            CallOutcome::from_outcome(&status(500), true),
            Some(CallOutcome::failure(20 * MS))
        );
        assert_eq!(CallOutcome::from_outcome(&status(500), false), None);
        assert_eq!(
            CallOutcome::from_outcome(&failed(FailureKind::ClientBody), true),
            None
        );
        assert_eq!(
            CallOutcome::from_outcome(&failed(FailureKind::Other), true),
            None
        );
    }
}
