//! The health state machine of one endpoint, fed by active check results.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::{CheckFailure, CheckResult, Health, HealthCheckParams};

/// How many recent results [`HealthTracker::recent`] keeps for `/status`.
pub const RECENT_RESULTS: usize = 10;

/// A change of health, returned once, by the [`HealthTracker::record`] call
/// that caused it. The caller turns it into a log line, a metric and an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The health before.
    pub from: Health,
    /// The health after.
    pub to: Health,
    /// Why, in words: "check timed out 2 times in a row".
    pub reason: String,
    /// When the result that caused it was recorded.
    pub at: Instant,
}

/// "healthy -> unhealthy: check timed out 2 times in a row"
impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}: {}", self.from, self.to, self.reason)
    }
}

/// The latest results that disagree with the current health: a state change
/// in progress, if any. Only one kind can be in progress at a time (failures
/// while healthy, passes while unhealthy), so one value covers both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Streak {
    /// The latest result agrees with the current health (or there is none).
    Settled,
    /// Passes in a row while unhealthy.
    Passes(u32),
    /// Failures in a row while healthy.
    Failures {
        count: u32,
        /// The latest failure, named in the reason.
        last: CheckFailure,
        /// Whether every failure of the run was `last`, so the reason can say
        /// "timed out 3 times" rather than "failed 3 times".
        all_same: bool,
    },
}

/// The active-check health of one endpoint.
///
/// The prober runs a check, passes its result to [`record`](Self::record),
/// and sleeps for [`next_delay`](Self::next_delay) before the next one. The
/// tracker reads no clock and does no I/O: every decision uses the `now` it
/// is given. The rules:
///
/// - **The first result decides at once.** Before it the health is
///   [`Health::Unknown`]; a pass makes it healthy and a failure unhealthy.
///   Waiting for `fall` failures would send traffic to a node that is dead at
///   startup for `fall` × interval; waiting for `rise` passes would keep a
///   live node idle for `rise` × interval after every restart of levee.
/// - **Afterwards only a run flips it.** `fall` failures in a row turn a
///   healthy endpoint unhealthy; `rise` passes in a row turn an unhealthy one
///   healthy. One result that agrees with the current health resets the run,
///   so a node that drops one packet in a while is not taken out, and a node
///   that answers one check in a while is not put back only to fail again.
///   Failures of different kinds (a timeout, then a refusal) are one run: the
///   node is failing either way.
/// - **Each change is reported once**, as the [`Transition`] returned by the
///   `record` call that caused it, with a reason naming the latest failure
///   kind and the count ("check failed 3 times in a row (last: unexpected
///   status 503)").
/// - **Check faster while it matters.** While the health is unknown or a run
///   against it has begun, the next check comes after the transition interval
///   rather than the full interval, so a dying node is taken out after `fall`
///   quick checks. Every delay is jittered so that many levee instances do
///   not check a node in lockstep.
#[derive(Clone, Debug)]
pub struct HealthTracker {
    params: HealthCheckParams,
    /// Current health.
    health: Health,
    /// When `health` last changed (creation time while unknown).
    since: Instant,
    /// Why `health` last changed; `None` while unknown.
    reason: Option<String>,
    /// The change in progress, if any.
    streak: Streak,
    /// The last [`RECENT_RESULTS`] results, oldest first, for `/status`.
    recent: VecDeque<(Instant, CheckResult)>,
}

impl HealthTracker {
    /// A tracker for an endpoint no check has reached yet ([`Health::Unknown`]).
    pub fn new(params: HealthCheckParams, now: Instant) -> HealthTracker {
        HealthTracker {
            params,
            health: Health::Unknown,
            since: now,
            reason: None,
            streak: Streak::Settled,
            recent: VecDeque::with_capacity(RECENT_RESULTS),
        }
    }

    /// Record one check result, taken at `now`. Returns the change of health it
    /// caused, if any; `None` otherwise (most calls).
    pub fn record(&mut self, result: CheckResult, now: Instant) -> Option<Transition> {
        if self.recent.len() == RECENT_RESULTS {
            self.recent.pop_front();
        }
        self.recent.push_back((now, result));

        match (self.health, result) {
            (Health::Unknown, CheckResult::Passed { .. }) => {
                Some(self.change(Health::Healthy, "first check passed".to_owned(), now))
            }
            (Health::Unknown, CheckResult::Failed(failure)) => {
                Some(self.change(Health::Unhealthy, format!("first check: {failure}"), now))
            }
            (Health::Healthy, CheckResult::Passed { .. })
            | (Health::Unhealthy, CheckResult::Failed(_)) => {
                self.streak = Streak::Settled;
                None
            }
            (Health::Healthy, CheckResult::Failed(failure)) => {
                let (count, all_same) = match self.streak {
                    Streak::Failures {
                        count,
                        last,
                        all_same,
                    } => (count.saturating_add(1), all_same && last == failure),
                    Streak::Settled | Streak::Passes(_) => (1, true),
                };
                if count >= self.params.fall() {
                    let reason = failures_reason(failure, count, all_same);
                    return Some(self.change(Health::Unhealthy, reason, now));
                }
                self.streak = Streak::Failures {
                    count,
                    last: failure,
                    all_same,
                };
                None
            }
            (Health::Unhealthy, CheckResult::Passed { .. }) => {
                let count = match self.streak {
                    Streak::Passes(count) => count.saturating_add(1),
                    Streak::Settled | Streak::Failures { .. } => 1,
                };
                if count >= self.params.rise() {
                    let reason = format!("check passed {}", times(count));
                    return Some(self.change(Health::Healthy, reason, now));
                }
                self.streak = Streak::Passes(count);
                None
            }
        }
    }

    /// Current health.
    pub fn health(&self) -> Health {
        self.health
    }

    /// When the current health began (creation time while unknown).
    pub fn since(&self) -> Instant {
        self.since
    }

    /// Why the health last changed; `None` while unknown.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// How many of the latest results in a row disagree with the current
    /// health: progress towards `fall` (while healthy) or `rise` (while
    /// unhealthy). 0 when settled. For `/status`.
    pub fn streak(&self) -> u32 {
        match self.streak {
            Streak::Settled => 0,
            Streak::Passes(count) | Streak::Failures { count, .. } => count,
        }
    }

    /// True while the health is unknown or a run against it has begun: the
    /// times when checks come at the faster transition interval.
    pub fn is_changing(&self) -> bool {
        self.health == Health::Unknown || self.streak != Streak::Settled
    }

    /// The last [`RECENT_RESULTS`] results with the time each was recorded,
    /// oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &(Instant, CheckResult)> {
        self.recent.iter()
    }

    /// The parameters in force.
    pub fn params(&self) -> &HealthCheckParams {
        &self.params
    }

    /// How long to wait before the next check: the interval, or while
    /// [changing](Self::is_changing) the transition interval (never longer
    /// than the interval), each spread uniformly by ± jitter × itself.
    pub fn next_delay<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let interval = self.params.interval();
        let base = if self.is_changing() {
            self.params.transition_interval().min(interval)
        } else {
            interval
        };
        let jitter = self.params.jitter();
        if jitter <= 0.0 {
            return base;
        }
        // jitter ≤ 1 (validated), so the factor is never negative.
        let factor = 1.0 + rng.random_range(-jitter..=jitter);
        Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(Duration::MAX)
    }

    /// Switch to `to`, forget the run that caused it, and describe the change.
    fn change(&mut self, to: Health, reason: String, now: Instant) -> Transition {
        let from = self.health;
        self.health = to;
        self.since = now;
        self.reason = Some(reason.clone());
        self.streak = Streak::Settled;
        Transition {
            from,
            to,
            reason,
            at: now,
        }
    }
}

/// "check timed out 3 times in a row", or for mixed kinds "check failed 3
/// times in a row (last: unexpected status 503)".
fn failures_reason(last: CheckFailure, count: u32, all_same: bool) -> String {
    if all_same {
        format!("check {} {}", failed_how(last), times(count))
    } else {
        format!("check failed {} (last: {last})", times(count))
    }
}

/// What the check did, to follow "check": "check timed out", "check failed to
/// connect". The status is parenthesised where needed so that it never runs
/// into the count ("got status 503 (unexpected) 3 times").
fn failed_how(failure: CheckFailure) -> String {
    match failure {
        CheckFailure::Timeout => "timed out".to_owned(),
        CheckFailure::ConnectRefused => "had its connection refused".to_owned(),
        CheckFailure::ConnectFailed => "failed to connect".to_owned(),
        CheckFailure::Reset => "had its connection reset".to_owned(),
        CheckFailure::UnexpectedStatus(status) => format!("got status {status} (unexpected)"),
        CheckFailure::BodyMismatch => "got a body without the expected text".to_owned(),
        CheckFailure::BodyInterrupted => "got a response body that broke off".to_owned(),
        CheckFailure::Protocol => "got an invalid response".to_owned(),
        CheckFailure::ReadBack => "did not read back the value it wrote".to_owned(),
    }
}

/// "once" or "3 times in a row".
fn times(count: u32) -> String {
    if count == 1 {
        "once".to_owned()
    } else {
        format!("{count} times in a row")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    const S: Duration = Duration::from_secs(1);
    const PASS: CheckResult = CheckResult::Passed {
        latency: Duration::from_millis(3),
    };
    const TIMEOUT: CheckResult = CheckResult::Failed(CheckFailure::Timeout);
    const REFUSED: CheckResult = CheckResult::Failed(CheckFailure::ConnectRefused);
    const STATUS_503: CheckResult = CheckResult::Failed(CheckFailure::UnexpectedStatus(503));

    /// A tracker with the given thresholds, 5 s interval, 1 s while changing,
    /// no jitter; and the instant it was made.
    fn tracker(rise: u32, fall: u32) -> (HealthTracker, Instant) {
        let params = HealthCheckParams::new(rise, fall, 5 * S, S, 2 * S, 0.0).expect("valid");
        let start = Instant::now();
        (HealthTracker::new(params, start), start)
    }

    /// Feed `results` one second apart, starting one second after `start`;
    /// return the transitions, with the index of the result that caused each.
    fn feed(
        tracker: &mut HealthTracker,
        start: Instant,
        results: &[CheckResult],
    ) -> Vec<(usize, Transition)> {
        results
            .iter()
            .enumerate()
            .filter_map(|(i, result)| {
                let now = start + S * (i as u32 + 1);
                tracker.record(*result, now).map(|t| (i, t))
            })
            .collect()
    }

    #[test]
    fn starts_unknown() {
        let (tracker, start) = tracker(2, 2);
        assert_eq!(tracker.health(), Health::Unknown);
        assert_eq!(tracker.since(), start);
        assert_eq!(tracker.reason(), None);
        assert_eq!(tracker.recent().count(), 0);
        assert!(tracker.is_changing());
    }

    #[test]
    fn first_pass_makes_it_healthy_at_once() {
        let (mut tracker, start) = tracker(3, 3);
        let at = start + S;
        let transition = tracker.record(PASS, at).expect("first result decides");
        assert_eq!(
            transition,
            Transition {
                from: Health::Unknown,
                to: Health::Healthy,
                reason: "first check passed".to_owned(),
                at,
            }
        );
        assert_eq!(tracker.health(), Health::Healthy);
        assert_eq!(tracker.since(), at);
        assert_eq!(tracker.reason(), Some("first check passed"));
        assert!(!tracker.is_changing());
    }

    #[test]
    fn first_failure_makes_it_unhealthy_at_once() {
        let (mut tracker, start) = tracker(3, 3);
        let transition = tracker.record(REFUSED, start + S).expect("decides");
        assert_eq!(
            (transition.from, transition.to),
            (Health::Unknown, Health::Unhealthy)
        );
        assert_eq!(transition.reason, "first check: connection refused");
        assert_eq!(
            transition.to_string(),
            "unknown -> unhealthy: first check: connection refused"
        );
        assert_eq!(tracker.health(), Health::Unhealthy);
    }

    #[test]
    fn healthy_turns_unhealthy_at_exactly_fall_failures() {
        let (mut tracker, start) = tracker(2, 3);
        let transitions = feed(&mut tracker, start, &[PASS, TIMEOUT, TIMEOUT]);
        assert_eq!(transitions.len(), 1, "only the first check changed it");
        assert_eq!(tracker.health(), Health::Healthy);
        assert_eq!(tracker.streak(), 2);

        let at = start + 10 * S;
        let transition = tracker.record(TIMEOUT, at).expect("third failure");
        assert_eq!(
            transition.to_string(),
            "healthy -> unhealthy: check timed out 3 times in a row"
        );
        assert_eq!(transition.at, at);
        assert_eq!(tracker.since(), at);
        assert_eq!(tracker.reason(), Some("check timed out 3 times in a row"));
        assert_eq!(tracker.streak(), 0);

        // Reported once: more failures change nothing.
        assert_eq!(tracker.record(TIMEOUT, at + S), None);
        assert_eq!(tracker.since(), at);
    }

    #[test]
    fn unhealthy_turns_healthy_at_exactly_rise_passes() {
        let (mut tracker, start) = tracker(3, 2);
        let transitions = feed(&mut tracker, start, &[REFUSED, PASS, PASS, PASS, PASS]);
        let summary: Vec<(usize, Health, &str)> = transitions
            .iter()
            .map(|(i, t)| (*i, t.to, t.reason.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (0, Health::Unhealthy, "first check: connection refused"),
                (3, Health::Healthy, "check passed 3 times in a row"),
            ]
        );
        assert_eq!(tracker.since(), start + 4 * S);
    }

    #[test]
    fn one_opposite_result_resets_the_run() {
        let (mut tracker, start) = tracker(3, 3);
        // Healthy; two failures, a pass, two failures: never three in a row.
        let results = [PASS, TIMEOUT, TIMEOUT, PASS, TIMEOUT, TIMEOUT];
        assert_eq!(feed(&mut tracker, start, &results).len(), 1);
        assert_eq!(tracker.health(), Health::Healthy);
        let transition = tracker.record(TIMEOUT, start + 10 * S).expect("third");
        assert_eq!(transition.to, Health::Unhealthy);

        // Unhealthy; two passes, a failure, two passes: still unhealthy.
        let later = start + 10 * S;
        let results = [PASS, PASS, REFUSED, PASS, PASS];
        assert!(feed(&mut tracker, later, &results).is_empty());
        assert_eq!(tracker.health(), Health::Unhealthy);
        assert!(tracker.record(PASS, later + 10 * S).is_some());
        assert_eq!(tracker.health(), Health::Healthy);
    }

    #[test]
    fn mixed_failures_are_one_run_named_by_the_latest() {
        let (mut tracker, start) = tracker(2, 3);
        let transitions = feed(&mut tracker, start, &[PASS, TIMEOUT, REFUSED, STATUS_503]);
        let (index, transition) = transitions.last().expect("transitions");
        assert_eq!(*index, 3);
        assert_eq!(
            transition.reason,
            "check failed 3 times in a row (last: unexpected status 503)"
        );
    }

    #[test]
    fn different_statuses_are_different_kinds() {
        let (mut tracker, start) = tracker(2, 2);
        let other_5xx = CheckResult::Failed(CheckFailure::UnexpectedStatus(500));
        let transitions = feed(&mut tracker, start, &[PASS, other_5xx, STATUS_503]);
        assert_eq!(
            transitions[1].1.reason,
            "check failed 2 times in a row (last: unexpected status 503)"
        );
    }

    #[test]
    fn same_kind_reasons_read_as_sentences() {
        let cases = [
            (CheckFailure::Timeout, "check timed out 2 times in a row"),
            (
                CheckFailure::ConnectRefused,
                "check had its connection refused 2 times in a row",
            ),
            (
                CheckFailure::ConnectFailed,
                "check failed to connect 2 times in a row",
            ),
            (
                CheckFailure::Reset,
                "check had its connection reset 2 times in a row",
            ),
            (
                CheckFailure::UnexpectedStatus(503),
                "check got status 503 (unexpected) 2 times in a row",
            ),
            (
                CheckFailure::BodyMismatch,
                "check got a body without the expected text 2 times in a row",
            ),
            (
                CheckFailure::Protocol,
                "check got an invalid response 2 times in a row",
            ),
        ];
        for (failure, reason) in cases {
            let (mut tracker, start) = tracker(2, 2);
            let failed = CheckResult::Failed(failure);
            let transitions = feed(&mut tracker, start, &[PASS, failed, failed]);
            assert_eq!(transitions[1].1.reason, reason, "{failure:?}");
        }
    }

    #[test]
    fn thresholds_of_one_flip_on_a_single_result() {
        let (mut tracker, start) = tracker(1, 1);
        let transitions = feed(&mut tracker, start, &[PASS, TIMEOUT, PASS]);
        let reasons: Vec<&str> = transitions.iter().map(|(_, t)| t.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "first check passed",
                "check timed out once",
                "check passed once"
            ]
        );
    }

    #[test]
    fn recent_keeps_the_last_ten_oldest_first() {
        let (mut tracker, start) = tracker(2, 2);
        let results: Vec<CheckResult> = (0..13)
            .map(|i| if i % 2 == 0 { PASS } else { TIMEOUT })
            .collect();
        feed(&mut tracker, start, &results);
        let recent: Vec<(Instant, CheckResult)> = tracker.recent().copied().collect();
        assert_eq!(recent.len(), RECENT_RESULTS);
        let expected: Vec<(Instant, CheckResult)> = (3..13)
            .map(|i| (start + S * (i as u32 + 1), results[i]))
            .collect();
        assert_eq!(recent, expected);
    }

    #[test]
    fn checks_come_faster_while_the_health_is_changing() {
        let (mut tracker, start) = tracker(2, 2);
        let mut rng = SmallRng::seed_from_u64(1);
        // Unknown: the transition interval.
        assert_eq!(tracker.next_delay(&mut rng), S);
        tracker.record(PASS, start);
        assert_eq!(tracker.next_delay(&mut rng), 5 * S);
        // One failure: a change has begun.
        tracker.record(TIMEOUT, start + S);
        assert!(tracker.is_changing());
        assert_eq!(tracker.next_delay(&mut rng), S);
        // A pass ends it.
        tracker.record(PASS, start + 2 * S);
        assert!(!tracker.is_changing());
        assert_eq!(tracker.next_delay(&mut rng), 5 * S);
        // Unhealthy and settled, then one pass towards healthy.
        tracker.record(TIMEOUT, start + 3 * S);
        tracker.record(TIMEOUT, start + 4 * S);
        assert_eq!(tracker.health(), Health::Unhealthy);
        assert_eq!(tracker.next_delay(&mut rng), 5 * S);
        tracker.record(PASS, start + 5 * S);
        assert_eq!(tracker.next_delay(&mut rng), S);
    }

    #[test]
    fn transition_interval_is_never_slower_than_interval() {
        let params = HealthCheckParams::new(2, 2, S, 3 * S, S, 0.0).expect("valid");
        let tracker = HealthTracker::new(params, Instant::now());
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(tracker.next_delay(&mut rng), S);
    }

    /// Smallest and largest of many delays.
    fn delay_range(tracker: &HealthTracker) -> (Duration, Duration) {
        let mut rng = SmallRng::seed_from_u64(42);
        let delays: Vec<Duration> = (0..2000).map(|_| tracker.next_delay(&mut rng)).collect();
        let min = delays.iter().min().copied().expect("delays");
        let max = delays.iter().max().copied().expect("delays");
        (min, max)
    }

    #[test]
    fn delays_are_jittered_within_bounds() {
        let params = HealthCheckParams::new(2, 2, 10 * S, 2 * S, S, 0.2).expect("valid");
        let start = Instant::now();
        let mut tracker = HealthTracker::new(params, start);

        // Unknown: 2 s ± 20 %.
        let (min, max) = delay_range(&tracker);
        assert!(min >= Duration::from_millis(1600), "{min:?}");
        assert!(max <= Duration::from_millis(2400), "{max:?}");
        assert!(min < Duration::from_millis(1650) && max > Duration::from_millis(2350));

        // Settled: 10 s ± 20 %, and actually spread over that range.
        tracker.record(PASS, start);
        let (min, max) = delay_range(&tracker);
        assert!(min >= 8 * S && max <= 12 * S, "{min:?}..{max:?}");
        assert!(min < Duration::from_millis(8200), "{min:?}");
        assert!(max > Duration::from_millis(11800), "{max:?}");
    }

    #[test]
    fn full_jitter_never_goes_negative() {
        let params = HealthCheckParams::new(2, 2, S, S, S, 1.0).expect("valid");
        let tracker = HealthTracker::new(params, Instant::now());
        let (_, max) = delay_range(&tracker);
        assert!(max <= 2 * S, "{max:?}");
    }

    #[test]
    fn results_at_the_same_instant_are_fine() {
        // The caller's clock is all the tracker knows; paused time can hand it
        // the same instant many times.
        let (mut tracker, start) = tracker(2, 2);
        tracker.record(PASS, start);
        tracker.record(TIMEOUT, start);
        let transition = tracker.record(TIMEOUT, start).expect("fall reached");
        assert_eq!(transition.at, start);
        assert_eq!(tracker.since(), start);
    }
}
