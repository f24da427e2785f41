use super::*;
use crate::outcome::{EndpointId, FailureKind};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn ok() -> CallOutcome {
    CallOutcome::success(10 * MS)
}

fn failed() -> CallOutcome {
    CallOutcome::failure(10 * MS)
}

/// Only the consecutive-failure policy (5), open 5 s doubling up to 20 s,
/// 3 trials.
fn consecutive_only() -> BreakerParams {
    BreakerParams::builder()
        .failure_rate(None)
        .open_for(5 * SEC)
        .open_multiplier(2.0)
        .max_open_for(20 * SEC)
        .build()
        .expect("valid")
}

/// Acquire and record one call; the transition it caused.
fn call(breaker: &mut Breaker, outcome: CallOutcome, now: Instant) -> Option<Transition> {
    let permit = breaker.try_acquire(now).expect("admitted");
    breaker.record(permit, outcome, now)
}

/// `count` calls with `outcome`; every transition they caused.
fn calls(
    breaker: &mut Breaker,
    outcome: CallOutcome,
    count: usize,
    now: Instant,
) -> Vec<Transition> {
    (0..count)
        .filter_map(|_| call(breaker, outcome, now))
        .collect()
}

/// A breaker tripped by 5 consecutive failures at `now`.
fn tripped(params: BreakerParams, now: Instant) -> Breaker {
    let mut breaker = Breaker::new(params, now);
    let transitions = calls(&mut breaker, failed(), 5, now);
    assert_eq!(transitions.len(), 1);
    breaker
}

#[test]
fn breaker_starts_closed_and_admits() {
    let now = Instant::now();
    let mut breaker = Breaker::new(BreakerParams::default(), now);
    assert_eq!(breaker.state(), &BreakerState::Closed { forced: false });
    let permit = breaker.try_acquire(now).expect("closed admits");
    assert!(!permit.is_trial());
    assert_eq!(breaker.record(permit, ok(), now), None);
    let snapshot = breaker.snapshot(now);
    assert_eq!(snapshot.state, StateName::Closed);
    assert!(!snapshot.is_open);
    assert_eq!(snapshot.reason, "initial state");
    assert_eq!(snapshot.calls, 1);
}

#[test]
fn breaker_consecutive_failures_trip_at_exactly_the_threshold() {
    let now = Instant::now();
    let mut breaker = Breaker::new(consecutive_only(), now);
    assert!(calls(&mut breaker, failed(), 4, now).is_empty());
    // A success breaks the streak.
    assert_eq!(call(&mut breaker, ok(), now), None);
    assert!(calls(&mut breaker, failed(), 4, now).is_empty());
    let transition = call(&mut breaker, failed(), now).expect("fifth failure");
    assert_eq!(transition.from, StateName::Closed);
    assert_eq!(transition.to, StateName::Open);
    assert_eq!(transition.reason, "5 consecutive failures");
    assert_eq!(transition.open_for, Some(5 * SEC));
    assert_eq!(transition.at, now);
    assert_eq!(
        breaker.state(),
        &BreakerState::Open {
            since: now,
            until: Some(now + 5 * SEC),
            reason: "5 consecutive failures".to_owned(),
        }
    );
    let snapshot = breaker.snapshot(now);
    assert!(snapshot.is_open);
    assert_eq!(snapshot.since, now);
    assert_eq!(snapshot.until, Some(now + 5 * SEC));
    assert_eq!(snapshot.reason, "5 consecutive failures");
}

#[test]
fn breaker_failure_rate_needs_min_calls() {
    let now = Instant::now();
    let params = BreakerParams::builder()
        .consecutive_failures(0)
        .failure_rate(Some(0.5))
        .min_calls(20)
        .window(10 * SEC)
        .build()
        .expect("valid");
    let mut breaker = Breaker::new(params, now);
    // 100% failures, but only 19 calls: not judged yet.
    assert!(calls(&mut breaker, failed(), 19, now).is_empty());
    assert_eq!(breaker.snapshot(now).failures, 19);
    // The 20th call brings the window to min_calls; even a success then
    // finds 19 of 20 failed.
    let transition = call(&mut breaker, ok(), now + SEC).expect("20th call");
    assert_eq!(
        transition.reason,
        "failure rate 95% over 10s (min 20 calls)"
    );
}

#[test]
fn breaker_failure_rate_trips_at_the_threshold_share() {
    let now = Instant::now();
    let params = BreakerParams::builder()
        .consecutive_failures(0)
        .failure_rate(Some(0.6))
        .min_calls(20)
        .build()
        .expect("valid");
    let mut breaker = Breaker::new(params, now);
    // The consecutive policy is off, so only the share matters: 12 failures
    // in 20 calls is exactly 60%.
    assert!(calls(&mut breaker, ok(), 8, now).is_empty());
    assert!(calls(&mut breaker, failed(), 11, now).is_empty());
    // 11 of 19: over 50% but below min_calls; the 20th makes 12/20 = 60%.
    let transition = call(&mut breaker, failed(), now).expect("60%");
    assert_eq!(
        transition.reason,
        "failure rate 60% over 10s (min 20 calls)"
    );
}

#[test]
fn breaker_successes_never_trip_the_rate() {
    let now = Instant::now();
    let params = BreakerParams::builder()
        .consecutive_failures(0)
        .min_calls(4)
        .build()
        .expect("valid");
    let mut breaker = Breaker::new(params, now);
    // 1 failure in 4 calls is 25%, below 50%.
    assert!(calls(&mut breaker, ok(), 3, now).is_empty());
    assert_eq!(call(&mut breaker, failed(), now), None);
}

#[test]
fn breaker_slow_calls_trip_the_slow_call_policy() {
    let now = Instant::now();
    let params = BreakerParams::builder()
        .consecutive_failures(0)
        .failure_rate(None)
        .slow_call_rate(Some(0.8))
        .slow_call_duration(SEC)
        .min_calls(10)
        .build()
        .expect("valid");
    let mut breaker = Breaker::new(params, now);
    let slow = CallOutcome::success(1500 * MS);
    // Exactly the threshold is not slow.
    assert!(calls(&mut breaker, CallOutcome::success(SEC), 2, now).is_empty());
    assert!(calls(&mut breaker, slow, 7, now).is_empty());
    assert_eq!(breaker.snapshot(now).slow_calls, 7);
    let transition = call(&mut breaker, slow, now).expect("8 of 10 slow");
    assert_eq!(transition.reason, "slow calls 80% over 10s (> 1s)");
}

#[test]
fn breaker_slow_calls_do_not_count_when_the_policy_is_off() {
    let now = Instant::now();
    let params = BreakerParams::builder()
        .consecutive_failures(0)
        .min_calls(2)
        .build()
        .expect("valid");
    let mut breaker = Breaker::new(params, now);
    assert!(calls(&mut breaker, CallOutcome::success(10 * SEC), 10, now).is_empty());
}

#[test]
fn breaker_window_sliding_forgets_old_calls() {
    let start = Instant::now();
    let params = BreakerParams::builder()
        .consecutive_failures(0)
        .failure_rate(Some(0.5))
        .min_calls(10)
        .window(10 * SEC)
        .build()
        .expect("valid");
    let mut breaker = Breaker::new(params, start);
    assert!(calls(&mut breaker, failed(), 9, start).is_empty());
    // 11 s later those failures have left the window: 9 more are not enough.
    let later = start + 11 * SEC;
    assert_eq!(breaker.snapshot(later).calls, 0);
    assert!(calls(&mut breaker, failed(), 9, later).is_empty());
    assert_eq!(breaker.snapshot(later).failures, 9);
    // The tenth within the window trips.
    assert!(call(&mut breaker, failed(), later + SEC).is_some());
}

#[test]
fn breaker_open_rejects_with_time_until_half_open() {
    let start = Instant::now();
    let mut breaker = tripped(consecutive_only(), start);
    let rejected = breaker
        .try_acquire(start + 2 * SEC)
        .expect_err("open rejects");
    assert_eq!(rejected.retry_after, Some(3 * SEC));
    assert_eq!(rejected.state, StateName::Open);
    assert_eq!(rejected.reason, "5 consecutive failures");
    assert_eq!(
        rejected.to_string(),
        "circuit breaker open: 5 consecutive failures"
    );
    let rejected = breaker
        .try_acquire(start + 5 * SEC - MS)
        .expect_err("still open");
    assert_eq!(rejected.retry_after, Some(MS));
}

#[test]
fn breaker_outcomes_while_open_are_ignored() {
    let start = Instant::now();
    let mut breaker = Breaker::new(consecutive_only(), start);
    // A call admitted while closed finishes after the breaker opened.
    let straggler = breaker.try_acquire(start).expect("closed");
    calls(&mut breaker, failed(), 5, start);
    assert_eq!(breaker.record(straggler, failed(), start), None);
    assert_eq!(breaker.snapshot(start).consecutive_failures, 0);
}

#[test]
fn breaker_goes_half_open_when_the_open_period_ends() {
    let start = Instant::now();
    let mut breaker = tripped(consecutive_only(), start);
    let at = start + 5 * SEC;
    assert_eq!(breaker.tick(at - MS), None);
    // The snapshot already shows the state in force.
    let snapshot = breaker.snapshot(at);
    assert_eq!(snapshot.state, StateName::HalfOpen);
    assert!(snapshot.is_open);
    assert_eq!(snapshot.since, at);
    let mut permit = breaker.try_acquire(at).expect("first trial");
    assert!(permit.is_trial());
    let transition = permit.take_transition().expect("open → half-open");
    assert_eq!(transition.from, StateName::Open);
    assert_eq!(transition.to, StateName::HalfOpen);
    assert_eq!(
        transition.reason,
        "open for 5s, letting 3 trial calls through"
    );
    assert_eq!(permit.take_transition(), None);
    breaker.release(permit);
}

#[test]
fn breaker_tick_announces_half_open_without_traffic() {
    let start = Instant::now();
    let mut breaker = tripped(consecutive_only(), start);
    let transition = breaker.tick(start + 6 * SEC).expect("half-open");
    assert_eq!(transition.to, StateName::HalfOpen);
    assert_eq!(transition.at, start + 6 * SEC);
    assert_eq!(breaker.tick(start + 7 * SEC), None);
}

#[test]
fn breaker_half_open_admits_exactly_n_trials() {
    let start = Instant::now();
    let mut breaker = tripped(consecutive_only(), start);
    let at = start + 5 * SEC;
    let trials: Vec<Permit> = (0..3)
        .map(|_| breaker.try_acquire(at).expect("trial"))
        .collect();
    assert_eq!(
        breaker.state(),
        &BreakerState::HalfOpen {
            in_flight: 3,
            succeeded: 0
        }
    );
    let rejected = breaker.try_acquire(at).expect_err("fourth call");
    assert_eq!(rejected.state, StateName::HalfOpen);
    assert_eq!(rejected.retry_after, Some(Rejected::HALF_OPEN_RETRY_AFTER));
    assert_eq!(
        rejected.to_string(),
        "circuit breaker half-open, trial calls in progress: 5 consecutive failures"
    );
    // A success frees no slot: 3 trials are needed in all, not 3 at once
    // forever.
    let mut trials = trials.into_iter();
    let first = trials.next().expect("trial");
    assert_eq!(breaker.record(first, ok(), at), None);
    assert!(breaker.try_acquire(at).is_err());
    // A trial that says nothing (released) frees its slot.
    let second = trials.next().expect("trial");
    breaker.release(second);
    let replacement = breaker.try_acquire(at).expect("slot freed");
    assert!(breaker.try_acquire(at).is_err());
    for permit in trials.chain([replacement]) {
        breaker.release(permit);
    }
}

#[test]
fn breaker_half_open_success_closes() {
    let start = Instant::now();
    let mut breaker = tripped(consecutive_only(), start);
    let at = start + 5 * SEC;
    let trials: Vec<Permit> = (0..3)
        .map(|_| breaker.try_acquire(at).expect("trial"))
        .collect();
    let mut transitions: Vec<Transition> = trials
        .into_iter()
        .filter_map(|permit| breaker.record(permit, ok(), at + SEC))
        .collect();
    assert_eq!(transitions.len(), 1);
    let transition = transitions.pop().expect("closed");
    assert_eq!(transition.from, StateName::HalfOpen);
    assert_eq!(transition.to, StateName::Closed);
    assert_eq!(transition.reason, "3 trial calls succeeded");
    assert_eq!(breaker.state(), &BreakerState::Closed { forced: false });
    // Counts start afresh: the failures that opened it are forgotten.
    let snapshot = breaker.snapshot(at + SEC);
    assert_eq!((snapshot.calls, snapshot.failures), (0, 0));
    assert!(calls(&mut breaker, failed(), 4, at + SEC).is_empty());
    // And the next trip is back to the base open period.
    let transition = call(&mut breaker, failed(), at + SEC).expect("trip");
    assert_eq!(transition.open_for, Some(5 * SEC));
}

#[test]
fn breaker_half_open_failure_reopens_with_grown_duration_capped_at_max() {
    let start = Instant::now();
    let mut breaker = tripped(consecutive_only(), start);
    let mut now = start;
    let mut periods = Vec::new();
    for _ in 0..4 {
        let open_for = match breaker.state() {
            BreakerState::Open {
                since,
                until: Some(until),
                ..
            } => until.saturating_duration_since(*since),
            other => panic!("expected open, got {other:?}"),
        };
        now += open_for;
        let ok_trial = breaker.try_acquire(now).expect("trial");
        let failing = breaker.try_acquire(now).expect("trial");
        assert_eq!(breaker.record(ok_trial, ok(), now), None);
        let transition = breaker.record(failing, failed(), now).expect("reopen");
        assert_eq!(transition.from, StateName::HalfOpen);
        assert_eq!(transition.to, StateName::Open);
        assert_eq!(transition.reason, "trial call failed");
        periods.push(transition.open_for.expect("open period"));
    }
    assert_eq!(periods, [10 * SEC, 20 * SEC, 20 * SEC, 20 * SEC]);
    let rejected = breaker.try_acquire(now).expect_err("open");
    assert_eq!(rejected.retry_after, Some(20 * SEC));
}

#[test]
fn breaker_slow_trial_reopens() {
    let start = Instant::now();
    let params = BreakerParams::builder()
        .slow_call_rate(Some(0.5))
        .slow_call_duration(SEC)
        .open_multiplier(1.0)
        .build()
        .expect("valid");
    let mut breaker = tripped(params, start);
    let at = start + 5 * SEC;
    let permit = breaker.try_acquire(at).expect("trial");
    let transition = breaker
        .record(permit, CallOutcome::success(3 * SEC), at)
        .expect("slow trial");
    assert_eq!(transition.reason, "trial call slow (3s > 1s)");
    assert_eq!(transition.open_for, Some(5 * SEC));
}

#[test]
fn breaker_stragglers_are_not_trials() {
    let start = Instant::now();
    let mut breaker = Breaker::new(consecutive_only(), start);
    let straggler = breaker.try_acquire(start).expect("closed");
    calls(&mut breaker, failed(), 5, start);
    let at = start + 5 * SEC;
    let trial = breaker.try_acquire(at).expect("trial");
    // The call admitted before the trip fails during half-open: ignored.
    assert_eq!(breaker.record(straggler, failed(), at), None);
    assert_eq!(breaker.state().name(), StateName::HalfOpen);
    breaker.release(trial);
}

#[test]
fn breaker_force_open_holds_until_reset() {
    let start = Instant::now();
    let mut breaker = Breaker::new(consecutive_only(), start);
    let transition = breaker.force_open(start);
    assert_eq!(transition.from, StateName::Closed);
    assert_eq!(transition.to, StateName::Open);
    assert_eq!(transition.reason, "forced open by operator");
    assert_eq!(transition.open_for, None);
    // Never goes half-open on its own.
    let much_later = start + 3600 * SEC;
    assert_eq!(breaker.tick(much_later), None);
    let rejected = breaker.try_acquire(much_later).expect_err("forced open");
    assert_eq!(rejected.retry_after, None);
    let snapshot = breaker.snapshot(much_later);
    assert_eq!(snapshot.state, StateName::Open);
    assert!(snapshot.forced);
    let transition = breaker.reset(much_later);
    assert_eq!(transition.from, StateName::Open);
    assert_eq!(transition.to, StateName::Closed);
    assert_eq!(transition.reason, "reset by operator");
    assert!(breaker.try_acquire(much_later).is_ok());
}

#[test]
fn breaker_force_closed_ignores_every_policy_until_reset() {
    let start = Instant::now();
    let mut breaker = tripped(consecutive_only(), start);
    let transition = breaker.force_closed(start);
    assert_eq!(transition.from, StateName::Open);
    assert_eq!(transition.to, StateName::Closed);
    assert_eq!(transition.reason, "forced closed by operator");
    assert!(calls(&mut breaker, failed(), 50, start).is_empty());
    let snapshot = breaker.snapshot(start);
    assert!(snapshot.forced);
    assert!(!snapshot.is_open);
    let transition = breaker.reset(start);
    assert_eq!(transition.from, StateName::Closed);
    assert_eq!(transition.to, StateName::Closed);
    assert_eq!(breaker.snapshot(start).consecutive_failures, 0);
    // Policies apply again.
    assert_eq!(calls(&mut breaker, failed(), 5, start).len(), 1);
}

#[test]
fn breaker_reset_forgets_the_open_period_growth() {
    let start = Instant::now();
    let mut breaker = tripped(consecutive_only(), start);
    let at = start + 5 * SEC;
    let trial = breaker.try_acquire(at).expect("trial");
    let reopened = breaker.record(trial, failed(), at).expect("reopen");
    assert_eq!(reopened.open_for, Some(10 * SEC));
    breaker.reset(at);
    let transition = calls(&mut breaker, failed(), 5, at).pop().expect("trip");
    assert_eq!(transition.open_for, Some(5 * SEC));
}

#[test]
fn breaker_shed_and_client_error_outcomes_never_count() {
    let start = Instant::now();
    let params = BreakerParams::builder()
        .consecutive_failures(3)
        .min_calls(1)
        .build()
        .expect("valid");
    let mut breaker = Breaker::new(params, start);
    let status = |code| Outcome::response(EndpointId(0), code, 10 * MS);
    let failure = |kind| Outcome::failure(EndpointId(0), kind, 10 * MS);
    for _ in 0..20 {
        // Requests levee shed (admission said no after the permit was
        // taken): released, not recorded.
        let permit = breaker.try_acquire(start).expect("closed");
        breaker.release(permit);
        // Client errors are answers; client hang-ups and unclassified
        // failures say nothing.
        for outcome in [
            status(404),
            status(400),
            status(429),
            failure(FailureKind::ClientBody),
            failure(FailureKind::Other),
        ] {
            let permit = breaker.try_acquire(start).expect("closed");
            assert_eq!(breaker.record_outcome(permit, &outcome, true, start), None);
        }
    }
    let snapshot = breaker.snapshot(start);
    assert_eq!(snapshot.state, StateName::Closed);
    assert_eq!(snapshot.failures, 0);
    // 4xx count as calls (successes) for the rate, neutral outcomes do not.
    assert_eq!(snapshot.calls, 60);
    // Upstream failures do count.
    let mut transitions = Vec::new();
    for outcome in [
        status(503),
        failure(FailureKind::ConnectRefused),
        failure(FailureKind::Timeout),
    ] {
        let permit = breaker.try_acquire(start).expect("closed");
        transitions.extend(breaker.record_outcome(permit, &outcome, false, start));
    }
    assert_eq!(transitions.len(), 1);
    assert_eq!(transitions[0].reason, "3 consecutive failures");
}

#[test]
fn breaker_neutral_trial_outcome_frees_the_slot() {
    let start = Instant::now();
    let params = BreakerParams::builder()
        .half_open_trials(1)
        .build()
        .expect("valid");
    let mut breaker = tripped(params, start);
    let at = start + 5 * SEC;
    let permit = breaker.try_acquire(at).expect("trial");
    let hang_up = Outcome::failure(EndpointId(0), FailureKind::ClientBody, MS);
    assert_eq!(breaker.record_outcome(permit, &hang_up, true, at), None);
    let permit = breaker.try_acquire(at).expect("slot free again");
    let answered = Outcome::response(EndpointId(0), 200, MS);
    let transition = breaker
        .record_outcome(permit, &answered, true, at)
        .expect("closed");
    assert_eq!(transition.reason, "trial call succeeded");
}

#[test]
fn breaker_apply_remote_adopts_the_fleet_state() {
    let start = Instant::now();
    let mut breaker = Breaker::new(consecutive_only(), start);
    calls(&mut breaker, failed(), 4, start);
    let since = start - SEC;
    let remote_open = BreakerState::Open {
        since,
        until: Some(since + 10 * SEC),
        reason: "failure rate 80% over 10s (min 20 calls)".to_owned(),
    };
    let transition = breaker
        .apply_remote(remote_open.clone(), start)
        .expect("opened");
    assert_eq!(transition.to, StateName::Open);
    assert_eq!(transition.open_for, Some(10 * SEC));
    assert_eq!(
        transition.reason,
        "failure rate 80% over 10s (min 20 calls) (reported by the fleet)"
    );
    // The same state again changes nothing.
    assert_eq!(breaker.apply_remote(remote_open, start), None);
    let rejected = breaker.try_acquire(start).expect_err("open");
    assert_eq!(rejected.retry_after, Some(9 * SEC));
    assert_eq!(breaker.snapshot(start).since, since);
    // Remote half-open starts local trials.
    let half_open = BreakerState::HalfOpen {
        in_flight: 0,
        succeeded: 0,
    };
    let transition = breaker.apply_remote(half_open, start).expect("half-open");
    assert_eq!(transition.to, StateName::HalfOpen);
    let trial = breaker.try_acquire(start).expect("trial");
    assert!(trial.is_trial());
    // Remote close: closed with fresh counts; the local trial is a straggler.
    let transition = breaker
        .apply_remote(BreakerState::Closed { forced: false }, start)
        .expect("closed");
    assert_eq!(transition.to, StateName::Closed);
    assert_eq!(breaker.record(trial, failed(), start), None);
    assert_eq!(breaker.snapshot(start).consecutive_failures, 0);
    assert_eq!(
        breaker.apply_remote(BreakerState::Closed { forced: true }, start),
        None
    );
    assert!(breaker.snapshot(start).forced);
}
