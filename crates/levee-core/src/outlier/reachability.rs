//! Evidence that an endpoint takes no connections at all, which panic mode
//! does not overrule (see [`Standing`](super::Standing)).
//!
//! Panic mode sends traffic to endpoints that fail their checks because
//! checks can be wrong (a shared dependency blip fails every probe). A name
//! that does not resolve, or a connection refused by the endpoint's own
//! kernel, is not a check being wrong: a request sent there fails at once.
//! With 490 of 500 endpoints refusing, spreading over all of them failed
//! almost every request.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::health::{CheckFailure, CheckResult};
use crate::outcome::{AttemptResult, FailureKind, Outcome};

/// How long a connection refused to a real request keeps its endpoint out
/// of panic routing (unless a check passes sooner). Long enough to matter
/// between checks, short enough that an endpoint without checks is tried
/// again soon after it restarts.
pub const REFUSAL_MEMORY: Duration = Duration::from_secs(10);

/// Why an endpoint is known to take no connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unreachable {
    /// Its name does not resolve to an address.
    Unresolved,
    /// Its latest health check had its connection refused.
    CheckRefused,
    /// A request's connection was refused within [`REFUSAL_MEMORY`].
    TrafficRefused,
}

impl Unreachable {
    /// Stable lower-case label for JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Unreachable::Unresolved => "unresolved",
            Unreachable::CheckRefused => "check-refused",
            Unreachable::TrafficRefused => "traffic-refused",
        }
    }
}

/// In words, after the endpoint's address: "does not resolve".
impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unreachable::Unresolved => f.write_str("does not resolve"),
            Unreachable::CheckRefused => f.write_str("refused the connection of its last check"),
            Unreachable::TrafficRefused => write!(
                f,
                "refused a request's connection in the last {}s",
                REFUSAL_MEMORY.as_secs()
            ),
        }
    }
}

/// What is known of one endpoint's reachability. Pure: the caller feeds
/// resolutions, check results and outcomes with the time.
#[derive(Clone, Debug, Default)]
pub struct Reachability {
    /// The latest lookup of its name failed.
    unresolved: bool,
    /// The latest check had its connection refused.
    check_refused: bool,
    /// When a request's connection was last refused.
    traffic_refused_at: Option<Instant>,
}

impl Reachability {
    /// The latest lookup of the endpoint's name succeeded (`true`) or failed.
    /// Returns whether that changed anything.
    pub fn record_resolution(&mut self, resolved: bool) -> bool {
        let changed = self.unresolved == resolved;
        self.unresolved = !resolved;
        changed
    }

    /// Whether the latest lookup of the endpoint's name failed.
    pub fn is_unresolved(&self) -> bool {
        self.unresolved
    }

    /// A check result. A passing check also forgets a refusal seen by
    /// traffic: the endpoint accepts connections again.
    pub fn record_check(&mut self, result: CheckResult) {
        self.check_refused = result.failure() == Some(CheckFailure::ConnectRefused);
        if result.passed() {
            self.traffic_refused_at = None;
        }
    }

    /// An attempt's outcome; only a refused connection is remembered.
    /// Returns true when the endpoint was not known to refuse before.
    pub fn record_outcome(&mut self, outcome: &Outcome, now: Instant) -> bool {
        if outcome.result != AttemptResult::Failed(FailureKind::ConnectRefused) {
            return false;
        }
        let new = !self.refused_recently(now);
        self.traffic_refused_at = Some(now);
        new
    }

    /// Why the endpoint takes no connections, if it is known not to: the
    /// name first (nothing else can be tried without an address), then the
    /// latest check, then recent traffic.
    pub fn unreachable(&self, now: Instant) -> Option<Unreachable> {
        if self.unresolved {
            Some(Unreachable::Unresolved)
        } else if self.check_refused {
            Some(Unreachable::CheckRefused)
        } else if self.refused_recently(now) {
            Some(Unreachable::TrafficRefused)
        } else {
            None
        }
    }

    fn refused_recently(&self, now: Instant) -> bool {
        self.traffic_refused_at
            .is_some_and(|at| now.saturating_duration_since(at) < REFUSAL_MEMORY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::EndpointId;

    const PASSED: CheckResult = CheckResult::Passed {
        latency: Duration::from_millis(1),
    };

    fn refused() -> Outcome {
        Outcome::failure(EndpointId(0), FailureKind::ConnectRefused, Duration::ZERO)
    }

    #[test]
    fn a_name_that_does_not_resolve_is_unreachable_until_it_does() {
        let now = Instant::now();
        let mut reach = Reachability::default();
        assert_eq!(reach.unreachable(now), None);
        assert!(reach.record_resolution(false), "a change");
        assert!(!reach.record_resolution(false), "no change");
        assert!(reach.is_unresolved());
        assert_eq!(reach.unreachable(now), Some(Unreachable::Unresolved));
        // Passing checks say nothing about the name.
        reach.record_check(PASSED);
        assert_eq!(reach.unreachable(now), Some(Unreachable::Unresolved));
        assert!(reach.record_resolution(true));
        assert_eq!(reach.unreachable(now), None);
    }

    #[test]
    fn the_latest_check_decides_whether_checks_are_refused() {
        let now = Instant::now();
        let mut reach = Reachability::default();
        reach.record_check(CheckResult::Failed(CheckFailure::ConnectRefused));
        assert_eq!(reach.unreachable(now), Some(Unreachable::CheckRefused));
        // A timeout or a 503 is not a refusal: checks can be wrong.
        reach.record_check(CheckResult::Failed(CheckFailure::Timeout));
        assert_eq!(reach.unreachable(now), None);
        reach.record_check(CheckResult::Failed(CheckFailure::ConnectRefused));
        reach.record_check(CheckResult::Failed(CheckFailure::UnexpectedStatus(503)));
        assert_eq!(reach.unreachable(now), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_request_is_remembered_for_a_while() {
        let start = Instant::now();
        let mut reach = Reachability::default();
        let response = Outcome::response(EndpointId(0), 503, Duration::ZERO);
        assert!(!reach.record_outcome(&response, start));
        assert!(reach.record_outcome(&refused(), start));
        assert!(!reach.record_outcome(&refused(), start), "already known");
        assert_eq!(reach.unreachable(start), Some(Unreachable::TrafficRefused));
        tokio::time::advance(REFUSAL_MEMORY - Duration::from_millis(1)).await;
        assert_eq!(
            reach.unreachable(Instant::now()),
            Some(Unreachable::TrafficRefused)
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(reach.unreachable(Instant::now()), None);
        // A new refusal counts again; a passing check forgets it.
        assert!(reach.record_outcome(&refused(), Instant::now()));
        reach.record_check(PASSED);
        assert_eq!(reach.unreachable(Instant::now()), None);
    }

    #[test]
    fn reasons_read_as_words() {
        assert_eq!(Unreachable::Unresolved.to_string(), "does not resolve");
        assert_eq!(
            Unreachable::CheckRefused.to_string(),
            "refused the connection of its last check"
        );
        assert_eq!(
            Unreachable::TrafficRefused.to_string(),
            "refused a request's connection in the last 10s"
        );
        assert_eq!(Unreachable::TrafficRefused.as_str(), "traffic-refused");
    }
}
