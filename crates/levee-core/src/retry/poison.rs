//! Poison requests: a request that breaks every node it reaches.
//!
//! Some requests crash or hang the upstream by themselves (a malformed
//! payload, a query that never ends). Retrying one spreads the damage across
//! the cluster, and counting its failures against node health can eject
//! healthy nodes one by one (the "query of death"). When a request has failed
//! the same way on [`POISON_ENDPOINTS`] different endpoints, it is the
//! request's fault: levee stops retrying it, does not blame those endpoints
//! for it, and reports it.

use std::fmt;

use crate::outcome::{AttemptResult, FailureKind, Outcome, SendPhase};

/// Different endpoints that must fail the same way before a request is
/// declared poison. Two: one failure may be the node's, the same failure on
/// a second node is a pattern, and a third attempt would be one node too many.
pub const POISON_ENDPOINTS: u32 = 2;

/// A failure that the upstream produced in response to the request itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoisonClass {
    /// The attempt failed this way after the request was sent.
    Failure(FailureKind),
    /// The upstream answered with this 5xx status.
    Status(u16),
}

impl PoisonClass {
    /// The class of `outcome`, or `None` when the outcome cannot say anything
    /// about the request:
    ///
    /// - connect failures: the request never reached the node;
    /// - [`FailureKind::ClientBody`]: the client's own doing;
    /// - [`FailureKind::Other`]: levee could not classify it, so two of them
    ///   need not be the same failure;
    /// - any status below 500: the node answered.
    pub fn of(outcome: &Outcome) -> Option<PoisonClass> {
        match outcome.result {
            AttemptResult::Response { status } if (500..=599).contains(&status) => {
                Some(PoisonClass::Status(status))
            }
            AttemptResult::Response { .. } => None,
            AttemptResult::Failed(FailureKind::ClientBody | FailureKind::Other) => None,
            AttemptResult::Failed(kind) if kind.phase() == SendPhase::NotSent => None,
            AttemptResult::Failed(kind) => Some(PoisonClass::Failure(kind)),
        }
    }
}

impl fmt::Display for PoisonClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoisonClass::Failure(kind) => f.write_str(kind.as_str()),
            PoisonClass::Status(status) => write!(f, "status {status}"),
        }
    }
}

/// The failures of one request's attempts, to spot a poison request. One
/// per request, dropped with it; a few attempts at most, so a plain list.
#[derive(Clone, Debug, Default)]
pub struct PoisonTracker {
    /// Each failure class seen and the endpoint it was seen on.
    seen: Vec<(PoisonClass, usize)>,
    /// The class that made the request poison, once it is.
    poisoned: Option<PoisonClass>,
}

impl PoisonTracker {
    /// A tracker for a request with no attempts yet.
    pub fn new() -> PoisonTracker {
        PoisonTracker::default()
    }

    /// Note the outcome of an attempt on `endpoint`. Returns true if the
    /// request is poison: this or an earlier failure class has now been seen
    /// on [`POISON_ENDPOINTS`] different endpoints. Once poison, always
    /// poison.
    pub fn record(&mut self, endpoint: usize, outcome: &Outcome) -> bool {
        if self.poisoned.is_some() {
            return true;
        }
        let Some(class) = PoisonClass::of(outcome) else {
            return false;
        };
        if !self.seen.contains(&(class, endpoint)) {
            self.seen.push((class, endpoint));
        }
        let endpoints = self.seen.iter().filter(|(seen, _)| *seen == class).count();
        if endpoints >= POISON_ENDPOINTS as usize {
            self.poisoned = Some(class);
        }
        self.poisoned.is_some()
    }

    /// The failure class that made the request poison, if it is: for the
    /// metric, the event, and
    /// [`NotRetried::Poison`](super::NotRetried::Poison).
    pub fn poisoned(&self) -> Option<PoisonClass> {
        self.poisoned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::EndpointId;
    use std::time::Duration;

    fn failed(endpoint: usize, kind: FailureKind) -> Outcome {
        Outcome::failure(EndpointId(endpoint), kind, Duration::ZERO)
    }

    fn status(endpoint: usize, code: u16) -> Outcome {
        Outcome::response(EndpointId(endpoint), code, Duration::ZERO)
    }

    #[test]
    fn same_failure_on_two_endpoints_is_poison() {
        let mut tracker = PoisonTracker::new();
        assert!(!tracker.record(0, &failed(0, FailureKind::ResetBeforeResponse)));
        assert_eq!(tracker.poisoned(), None);
        assert!(tracker.record(1, &failed(1, FailureKind::ResetBeforeResponse)));
        let class = PoisonClass::Failure(FailureKind::ResetBeforeResponse);
        assert_eq!(tracker.poisoned(), Some(class));
        assert_eq!(class.to_string(), "reset-before-response");
    }

    #[test]
    fn same_5xx_on_two_endpoints_is_poison() {
        let mut tracker = PoisonTracker::new();
        assert!(!tracker.record(0, &status(0, 500)));
        assert!(tracker.record(2, &status(2, 500)));
        assert_eq!(tracker.poisoned(), Some(PoisonClass::Status(500)));
        assert_eq!(PoisonClass::Status(500).to_string(), "status 500");
    }

    #[test]
    fn the_same_endpoint_twice_is_not_poison() {
        let mut tracker = PoisonTracker::new();
        assert!(!tracker.record(0, &failed(0, FailureKind::Timeout)));
        assert!(!tracker.record(0, &failed(0, FailureKind::Timeout)));
        assert_eq!(tracker.poisoned(), None);
    }

    #[test]
    fn different_failures_are_not_poison() {
        let mut tracker = PoisonTracker::new();
        assert!(!tracker.record(0, &failed(0, FailureKind::Timeout)));
        assert!(!tracker.record(1, &failed(1, FailureKind::ResetBeforeResponse)));
        assert!(!tracker.record(2, &status(2, 502)));
        assert!(!tracker.record(3, &status(3, 503)));
        // A repeat of an earlier class on a new endpoint is.
        assert!(tracker.record(4, &failed(4, FailureKind::Timeout)));
    }

    #[test]
    fn failures_that_say_nothing_about_the_request_never_count() {
        let mut tracker = PoisonTracker::new();
        for endpoint in 0..4 {
            for outcome in [
                failed(endpoint, FailureKind::ConnectRefused),
                failed(endpoint, FailureKind::ConnectTimeout),
                failed(endpoint, FailureKind::ConnectFailed),
                failed(endpoint, FailureKind::ClientBody),
                failed(endpoint, FailureKind::Other),
                status(endpoint, 200),
                status(endpoint, 404),
                status(endpoint, 429),
            ] {
                assert!(!tracker.record(endpoint, &outcome), "{outcome:?}");
            }
        }
        assert_eq!(tracker.poisoned(), None);
    }

    #[test]
    fn poison_is_sticky() {
        let mut tracker = PoisonTracker::new();
        tracker.record(0, &status(0, 504));
        assert!(tracker.record(1, &status(1, 504)));
        assert!(tracker.record(2, &status(2, 200)));
    }
}
