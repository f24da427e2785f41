//! Self-health: whether the node levee protects can take traffic.
//!
//! The proxy measures each criterion (healthy endpoints of a cluster, a
//! required endpoint, a dependency probe) and hands the results here with the
//! manual drain, if any; [`evaluate`] turns them into one [`Readiness`] and
//! the list of what fails and why. [`ReadinessTracker`] remembers the current
//! state and reports each change once, so the caller can log it, count it
//! and send it to webhooks. No I/O, no clock of its own.

use std::fmt;

use tokio::time::Instant;

/// What the node can do, worst last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Readiness {
    /// Every criterion holds.
    #[default]
    Ready,
    /// Only optional criteria fail: the node serves, but something it uses
    /// is down (an optional probe). Still ready for an outer load balancer.
    Degraded,
    /// A required criterion fails or the node is drained: an outer load
    /// balancer should route elsewhere, and listeners do their
    /// `when_impaired`.
    Impaired,
}

impl Readiness {
    /// Every state, for pre-creating metric series.
    pub const ALL: [Readiness; 3] = [Readiness::Ready, Readiness::Degraded, Readiness::Impaired];

    /// Stable lower-case name for logs, metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Ready => "ready",
            Readiness::Degraded => "degraded",
            Readiness::Impaired => "impaired",
        }
    }

    /// Whether `/ready` answers 200: ready or degraded.
    pub fn is_ready(self) -> bool {
        self != Readiness::Impaired
    }
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One measured criterion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriterionResult {
    /// Stable name: `min_healthy:app`, `endpoint:app/10.0.0.1:8000`,
    /// `probe:sessions`.
    pub name: String,
    /// A required criterion that fails impairs the node; an optional one
    /// only degrades it.
    pub required: bool,
    /// `None` when it holds; otherwise why not, in words.
    pub failure: Option<String>,
}

impl CriterionResult {
    /// A criterion that holds.
    pub fn passing(name: impl Into<String>, required: bool) -> CriterionResult {
        CriterionResult {
            name: name.into(),
            required,
            failure: None,
        }
    }

    /// A criterion that fails, and why.
    pub fn failing(
        name: impl Into<String>,
        required: bool,
        reason: impl Into<String>,
    ) -> CriterionResult {
        CriterionResult {
            name: name.into(),
            required,
            failure: Some(reason.into()),
        }
    }
}

/// A criterion that does not hold, as `/ready` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failing {
    /// The criterion's name (`drain` for a manual drain).
    pub criterion: String,
    /// Whether it impairs (true) or only degrades (false).
    pub required: bool,
    /// Why it fails.
    pub reason: String,
}

/// The verdict over every criterion.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The state.
    pub state: Readiness,
    /// What fails, required ones first, then in the order given.
    pub failing: Vec<Failing>,
}

impl Verdict {
    /// "probe:sessions: did not read back ...; min_healthy:app: 1 of 3 ..."
    pub fn summary(&self) -> String {
        if self.failing.is_empty() {
            return "every criterion holds".to_owned();
        }
        self.failing
            .iter()
            .map(|failing| format!("{}: {}", failing.criterion, failing.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Judge `criteria` and the manual `drain` (its reason, if drained).
///
/// A drain impairs whatever the criteria say: it is how an operator takes a
/// healthy node out before maintenance.
pub fn evaluate(criteria: &[CriterionResult], drain: Option<&str>) -> Verdict {
    let mut failing: Vec<Failing> = Vec::new();
    if let Some(reason) = drain {
        failing.push(Failing {
            criterion: "drain".to_owned(),
            required: true,
            reason: reason.to_owned(),
        });
    }
    for criterion in criteria {
        if let Some(reason) = &criterion.failure {
            failing.push(Failing {
                criterion: criterion.name.clone(),
                required: criterion.required,
                reason: reason.clone(),
            });
        }
    }
    // Stable: required ones first, otherwise in the order given.
    failing.sort_by_key(|failing| !failing.required);
    let state = if failing.iter().any(|failing| failing.required) {
        Readiness::Impaired
    } else if failing.is_empty() {
        Readiness::Ready
    } else {
        Readiness::Degraded
    };
    Verdict { state, failing }
}

/// A change of readiness, reported once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadinessChange {
    /// State before.
    pub from: Readiness,
    /// State after.
    pub to: Readiness,
    /// The verdict that caused it.
    pub verdict: Verdict,
    /// When.
    pub at: Instant,
}

/// The current readiness and since when.
#[derive(Clone, Debug)]
pub struct ReadinessTracker {
    verdict: Verdict,
    since: Instant,
}

impl ReadinessTracker {
    /// Starts ready: the caller evaluates at once after creating it.
    pub fn new(now: Instant) -> ReadinessTracker {
        ReadinessTracker {
            verdict: Verdict::default(),
            since: now,
        }
    }

    /// Take a new verdict; returns the change of state, if any. The failing
    /// list is always updated (reasons change while the state does not).
    pub fn update(&mut self, verdict: Verdict, now: Instant) -> Option<ReadinessChange> {
        let from = self.verdict.state;
        let to = verdict.state;
        self.verdict = verdict;
        if from == to {
            return None;
        }
        self.since = now;
        Some(ReadinessChange {
            from,
            to,
            verdict: self.verdict.clone(),
            at: now,
        })
    }

    /// The latest verdict.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// When the current state began.
    pub fn since(&self) -> Instant {
        self.since
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn all_passing_is_ready() {
        let verdict = evaluate(
            &[
                CriterionResult::passing("min_healthy:app", true),
                CriterionResult::passing("probe:cache", false),
            ],
            None,
        );
        assert_eq!(verdict.state, Readiness::Ready);
        assert!(verdict.failing.is_empty());
        assert!(verdict.state.is_ready());
    }

    #[test]
    fn an_optional_failure_only_degrades() {
        let verdict = evaluate(
            &[
                CriterionResult::passing("min_healthy:app", true),
                CriterionResult::failing("probe:cache", false, "timed out"),
            ],
            None,
        );
        assert_eq!(verdict.state, Readiness::Degraded);
        assert!(verdict.state.is_ready());
        assert_eq!(verdict.failing.len(), 1);
        assert_eq!(verdict.summary(), "probe:cache: timed out");
    }

    #[test]
    fn a_required_failure_impairs_and_is_listed_first() {
        let verdict = evaluate(
            &[
                CriterionResult::failing("probe:cache", false, "timed out"),
                CriterionResult::failing("min_healthy:app", true, "1 of 3 healthy, need 2"),
            ],
            None,
        );
        assert_eq!(verdict.state, Readiness::Impaired);
        assert!(!verdict.state.is_ready());
        let names: Vec<&str> = verdict
            .failing
            .iter()
            .map(|f| f.criterion.as_str())
            .collect();
        assert_eq!(names, ["min_healthy:app", "probe:cache"]);
    }

    #[test]
    fn a_drain_impairs_a_healthy_node() {
        let verdict = evaluate(
            &[CriterionResult::passing("min_healthy:app", true)],
            Some("maintenance"),
        );
        assert_eq!(verdict.state, Readiness::Impaired);
        assert_eq!(verdict.failing[0].criterion, "drain");
        assert_eq!(verdict.failing[0].reason, "maintenance");
    }

    #[tokio::test(start_paused = true)]
    async fn the_tracker_reports_each_change_once() {
        let start = Instant::now();
        let mut tracker = ReadinessTracker::new(start);
        let ready = evaluate(&[CriterionResult::passing("a", true)], None);
        assert_eq!(tracker.update(ready.clone(), start), None);

        tokio::time::advance(Duration::from_secs(1)).await;
        let impaired = evaluate(&[CriterionResult::failing("a", true, "down")], None);
        let change = tracker
            .update(impaired.clone(), Instant::now())
            .expect("a change");
        assert_eq!(
            (change.from, change.to),
            (Readiness::Ready, Readiness::Impaired)
        );
        assert_eq!(tracker.since(), start + Duration::from_secs(1));

        // Same state, new reason: no change reported, but the reason is kept.
        let still = evaluate(&[CriterionResult::failing("a", true, "still down")], None);
        assert_eq!(tracker.update(still, Instant::now()), None);
        assert_eq!(tracker.verdict().failing[0].reason, "still down");
        assert_eq!(tracker.since(), start + Duration::from_secs(1));

        tokio::time::advance(Duration::from_secs(1)).await;
        let change = tracker.update(ready, Instant::now()).expect("healed");
        assert_eq!(change.to, Readiness::Ready);
        assert!(change.verdict.failing.is_empty());
    }
}
