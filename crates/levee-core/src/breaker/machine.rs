//! The breaker's state machine: closed → open → half-open → closed or open
//! again, driven by call outcomes and explicit instants.

use std::time::Duration;

use tokio::time::Instant;

use super::outcome::CallOutcome;
use super::params::BreakerParams;
use super::rejected::{Permit, Rejected};
use super::state::{BreakerSnapshot, BreakerState, StateName, Transition};
use super::window::CallWindow;
use crate::outcome::Outcome;
use crate::outlier::Human;

/// One circuit breaker. Pure: every method takes the time, none reads a
/// clock, and what changed comes back as a [`Transition`] for the caller to
/// log, count and publish.
///
/// Ask [`try_acquire`](Self::try_acquire) before a call, and give the
/// [`Permit`] back with the call's outcome to [`record`](Self::record) (or to
/// [`release`](Self::release) when the call says nothing about the upstream).
///
/// ```
/// use std::time::Duration;
/// use levee_core::breaker::{Breaker, BreakerParams, CallOutcome, StateName};
/// use tokio::time::Instant;
///
/// let params = BreakerParams::builder().consecutive_failures(2).build()?;
/// let start = Instant::now();
/// let mut breaker = Breaker::new(params, start);
/// for _ in 0..2 {
///     let permit = breaker.try_acquire(start).expect("closed");
///     if let Some(transition) = breaker.record(permit, CallOutcome::failure(Duration::ZERO), start) {
///         assert_eq!(transition.to_string(), "closed → open for 5s: 2 consecutive failures");
///     }
/// }
/// let rejected = breaker.try_acquire(start).expect_err("open");
/// assert_eq!(rejected.retry_after, Some(Duration::from_secs(5)));
/// assert_eq!(breaker.snapshot(start + Duration::from_secs(5)).state, StateName::HalfOpen);
/// # Ok::<(), levee_core::breaker::BadBreakerParams>(())
/// ```
#[derive(Debug)]
pub struct Breaker {
    params: BreakerParams,
    state: BreakerState,
    /// When the current state began.
    since: Instant,
    /// Why the breaker is in its current state.
    reason: String,
    /// Why it last opened: what a half-open breaker tells the calls it
    /// turns away (more use to them than "trial calls in progress").
    open_reason: String,
    /// Incremented at every transition; a permit from another period is a
    /// straggler and does not count.
    generation: u32,
    /// Failures in a row while closed.
    consecutive: u32,
    /// Calls, failures and slow calls over the rate window, while closed.
    window: CallWindow,
    /// Failed half-open probes in a row: the exponent of the open period's
    /// growth. Back to 0 when the breaker closes.
    reopens: u32,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(params: BreakerParams, now: Instant) -> Breaker {
        let window = CallWindow::new(params.window(), now);
        Breaker {
            params,
            state: BreakerState::Closed { forced: false },
            since: now,
            reason: "initial state".to_owned(),
            open_reason: String::new(),
            generation: 0,
            consecutive: 0,
            window,
            reopens: 0,
        }
    }

    /// The parameters in force.
    pub fn params(&self) -> &BreakerParams {
        &self.params
    }

    /// The current period (see [`Permit`]).
    pub(super) fn generation(&self) -> u32 {
        self.generation
    }

    /// Whether no call that is not a trial, a failure or slow can change
    /// anything at `now`: closed, no failure streak, and no failure or slow
    /// call in the rate window (see `concurrent.rs`).
    pub(super) fn is_quiet(&self, now: Instant) -> bool {
        if !matches!(self.state, BreakerState::Closed { .. }) || self.consecutive != 0 {
            return false;
        }
        !self.window.has_trouble(now)
    }

    /// Count `count` successes (neither slow nor trials) of period
    /// `generation`, let through while the breaker was quiet: they enter the
    /// window at `now` and cannot trip it. Successes of an earlier period
    /// count for nothing, as in [`record`](Self::record).
    pub(super) fn record_successes(&mut self, generation: u32, count: u32, now: Instant) {
        if generation != self.generation || !matches!(self.state, BreakerState::Closed { .. }) {
            return;
        }
        self.window.record_calls(count, now);
        self.consecutive = 0;
    }

    /// The current state. An open breaker whose period has run out is still
    /// `Open` here until [`tick`](Self::tick) or
    /// [`try_acquire`](Self::try_acquire) moves it to half-open;
    /// [`snapshot`](Self::snapshot) shows the state in force.
    pub fn state(&self) -> &BreakerState {
        &self.state
    }

    /// Moves an open breaker whose period has run out to half-open. Called by
    /// [`try_acquire`](Self::try_acquire) on its own; call it periodically
    /// too if the half-open transition should be announced without traffic.
    pub fn tick(&mut self, now: Instant) -> Option<Transition> {
        let BreakerState::Open {
            since,
            until: Some(until),
            ..
        } = self.state
        else {
            return None;
        };
        if now < until {
            return None;
        }
        let reason = self.half_open_reason(until.saturating_duration_since(since));
        Some(self.enter(
            BreakerState::HalfOpen {
                in_flight: 0,
                succeeded: 0,
            },
            reason,
            now,
            None,
        ))
    }

    /// May a call go ahead at `now`?
    ///
    /// Closed: yes. Open: no, with the time left until half-open. Half-open:
    /// yes for at most `half_open_trials` trial calls (counting those already
    /// succeeded), no for the rest until the trials have decided.
    pub fn try_acquire(&mut self, now: Instant) -> Result<Permit, Rejected> {
        let transition = self.tick(now).map(Box::new);
        let generation = self.generation;
        match &mut self.state {
            BreakerState::Closed { .. } => Ok(Permit {
                generation,
                trial: false,
                transition,
            }),
            BreakerState::Open { until, reason, .. } => Err(Rejected {
                retry_after: until.map(|until| until.saturating_duration_since(now)),
                state: StateName::Open,
                reason: reason.clone(),
            }),
            BreakerState::HalfOpen {
                in_flight,
                succeeded,
            } => {
                if in_flight.saturating_add(*succeeded) >= self.params.half_open_trials() {
                    return Err(Rejected {
                        retry_after: Some(Rejected::HALF_OPEN_RETRY_AFTER),
                        state: StateName::HalfOpen,
                        reason: self.open_reason.clone(),
                    });
                }
                *in_flight += 1;
                Ok(Permit {
                    generation,
                    trial: true,
                    transition,
                })
            }
        }
    }

    /// Count the outcome of the call `permit` admitted; returns the
    /// transition it causes, if any.
    ///
    /// Closed: a failure extends the streak, every call enters the rate
    /// window, and the first policy that fires (consecutive failures, then
    /// failure rate, then slow-call rate) opens the breaker for `open_for`.
    /// Half-open: a trial that fails (or is slow, when the slow-call policy
    /// is on) reopens it for a grown period; once `half_open_trials` trials
    /// have succeeded it closes. Calls admitted in an earlier period (before
    /// the breaker opened, or before it last closed) are ignored.
    pub fn record(
        &mut self,
        permit: Permit,
        outcome: CallOutcome,
        now: Instant,
    ) -> Option<Transition> {
        if permit.generation != self.generation {
            return None;
        }
        let slow = outcome.duration > self.params.slow_call_duration();
        match &mut self.state {
            BreakerState::Closed { forced } => {
                let forced = *forced;
                self.window.record(outcome.failure, slow, now);
                if outcome.failure {
                    self.consecutive = self.consecutive.saturating_add(1);
                } else {
                    self.consecutive = 0;
                }
                // Judged after every call, successes too: the call that
                // brings the window to `min_calls` may be a success.
                if forced {
                    return None;
                }
                let reason = self.trip_verdict(now)?;
                let open_for = self.params.open_period(self.reopens);
                Some(self.open(reason, open_for, now))
            }
            BreakerState::HalfOpen {
                in_flight,
                succeeded,
            } => {
                if !permit.trial {
                    return None;
                }
                *in_flight = in_flight.saturating_sub(1);
                let slow = slow && self.params.slow_call_rate().is_some();
                if outcome.failure || slow {
                    let reason = if outcome.failure {
                        "trial call failed".to_owned()
                    } else {
                        format!(
                            "trial call slow ({} > {})",
                            Human(outcome.duration),
                            Human(self.params.slow_call_duration())
                        )
                    };
                    self.reopens = self.reopens.saturating_add(1);
                    let open_for = self.params.open_period(self.reopens);
                    return Some(self.open(reason, open_for, now));
                }
                *succeeded += 1;
                let trials = self.params.half_open_trials();
                if *succeeded < trials {
                    return None;
                }
                let reason = match trials {
                    1 => "trial call succeeded".to_owned(),
                    n => format!("{n} trial calls succeeded"),
                };
                Some(self.close(false, reason, now))
            }
            BreakerState::Open { .. } => None,
        }
    }

    /// [`record`](Self::record) for an upstream attempt, classified with the
    /// outlier detector's blame rules (see [`CallOutcome::from_outcome`]); an
    /// outcome that blames nobody releases the permit instead.
    pub fn record_outcome(
        &mut self,
        permit: Permit,
        outcome: &Outcome,
        count_other_5xx: bool,
        now: Instant,
    ) -> Option<Transition> {
        match CallOutcome::from_outcome(outcome, count_other_5xx) {
            Some(call) => self.record(permit, call, now),
            None => {
                self.release(permit);
                None
            }
        }
    }

    /// Give back a permit whose call says nothing about the upstream (it was
    /// cancelled, shed by levee, or ended neutrally): it counts for nothing,
    /// and a half-open trial slot is freed for another call.
    pub fn release(&mut self, permit: Permit) {
        if permit.generation != self.generation || !permit.trial {
            return;
        }
        if let BreakerState::HalfOpen { in_flight, .. } = &mut self.state {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    /// Operator override: open until forced closed or reset, whatever the
    /// outcomes.
    pub fn force_open(&mut self, now: Instant) -> Transition {
        self.clear_counts();
        self.enter(
            BreakerState::Open {
                since: now,
                until: None,
                reason: "forced open by operator".to_owned(),
            },
            "forced open by operator".to_owned(),
            now,
            None,
        )
    }

    /// Operator override: closed until forced open or reset; no policy trips
    /// it meanwhile.
    pub fn force_closed(&mut self, now: Instant) -> Transition {
        self.close(true, "forced closed by operator".to_owned(), now)
    }

    /// Operator override: back to a fresh closed breaker, forgetting every
    /// count, the open period's growth and any forcing.
    pub fn reset(&mut self, now: Instant) -> Transition {
        self.close(false, "reset by operator".to_owned(), now)
    }

    /// Adopt a state decided elsewhere (a shared store: another instance
    /// tripped the breaker, or an operator acted through another instance).
    /// Returns the transition when the local state changes.
    ///
    /// An open state is taken as it is (same `since`, `until` and reason), so
    /// every instance goes half-open at the same moment. A half-open state
    /// starts local trials: each instance lets its own few trial calls
    /// through and reports their outcomes, and the store decides. A closed
    /// state clears local counts, so the evidence that opened the breaker
    /// elsewhere does not reopen it here.
    pub fn apply_remote(&mut self, state: BreakerState, now: Instant) -> Option<Transition> {
        match state {
            BreakerState::Open {
                since,
                until,
                reason,
            } => {
                if let BreakerState::Open {
                    since: local_since,
                    until: local_until,
                    ..
                } = &self.state
                {
                    if *local_since == since && *local_until == until {
                        return None;
                    }
                }
                let open_for = until.map(|until| until.saturating_duration_since(since));
                self.clear_counts();
                let mut transition = self.enter(
                    BreakerState::Open {
                        since,
                        until,
                        reason: reason.clone(),
                    },
                    reason,
                    now,
                    open_for,
                );
                self.since = since;
                transition.reason = format!("{} (reported by the fleet)", transition.reason);
                Some(transition)
            }
            BreakerState::HalfOpen { .. } => {
                if self.state.name() == StateName::HalfOpen {
                    return None;
                }
                let reason = "half-open (reported by the fleet)".to_owned();
                Some(self.enter(
                    BreakerState::HalfOpen {
                        in_flight: 0,
                        succeeded: 0,
                    },
                    reason,
                    now,
                    None,
                ))
            }
            BreakerState::Closed { forced } => {
                if let BreakerState::Closed { forced: local } = &mut self.state {
                    *local = forced;
                    return None;
                }
                Some(self.close(forced, "closed (reported by the fleet)".to_owned(), now))
            }
        }
    }

    /// The state in force at `now`, for `/status`: an open breaker whose
    /// period has run out already shows as half-open.
    pub fn snapshot(&self, now: Instant) -> BreakerSnapshot {
        let counts = self.window.counts(now);
        let (state, since, reason, until, forced) = match &self.state {
            BreakerState::Open {
                since,
                until: Some(until),
                ..
            } if *until <= now => (
                StateName::HalfOpen,
                *until,
                self.half_open_reason(until.saturating_duration_since(*since)),
                None,
                false,
            ),
            BreakerState::Open { until, .. } => (
                StateName::Open,
                self.since,
                self.reason.clone(),
                *until,
                until.is_none(),
            ),
            BreakerState::Closed { forced } => (
                StateName::Closed,
                self.since,
                self.reason.clone(),
                None,
                *forced,
            ),
            BreakerState::HalfOpen { .. } => (
                StateName::HalfOpen,
                self.since,
                self.reason.clone(),
                None,
                false,
            ),
        };
        BreakerSnapshot {
            state,
            is_open: state != StateName::Closed,
            forced,
            since,
            reason,
            until,
            consecutive_failures: self.consecutive,
            calls: counts.calls,
            failures: counts.failures,
            slow_calls: counts.slow,
        }
    }

    /// The reason the first enabled policy gives to open, if any. The
    /// consecutive rule goes first: the more specific reason reads better.
    fn trip_verdict(&self, now: Instant) -> Option<String> {
        let p = &self.params;
        let threshold = p.consecutive_failures();
        if threshold > 0 && self.consecutive >= threshold {
            return Some(format!("{} consecutive failures", self.consecutive));
        }
        // Rates are judged over a window with a minimum volume: an upstream
        // failing every other call never fails five times in a row, and two
        // failures out of three calls are not a 67% failure rate.
        let counts = self.window.counts(now);
        if counts.calls < p.min_calls() {
            return None;
        }
        let share = |n: u32| f64::from(n) / f64::from(counts.calls);
        if let Some(threshold) = p.failure_rate() {
            let rate = share(counts.failures);
            if rate >= threshold {
                return Some(format!(
                    "failure rate {:.0}% over {} (min {} calls)",
                    rate * 100.0,
                    Human(p.window()),
                    p.min_calls()
                ));
            }
        }
        if let Some(threshold) = p.slow_call_rate() {
            let rate = share(counts.slow);
            if rate >= threshold {
                return Some(format!(
                    "slow calls {:.0}% over {} (> {})",
                    rate * 100.0,
                    Human(p.window()),
                    Human(p.slow_call_duration())
                ));
            }
        }
        None
    }

    fn half_open_reason(&self, open_for: Duration) -> String {
        let trials = self.params.half_open_trials();
        let calls = if trials == 1 { "call" } else { "calls" };
        format!(
            "open for {}, letting {trials} trial {calls} through",
            Human(open_for)
        )
    }

    /// Open for `open_for` (validated to at most a day: no overflow).
    fn open(&mut self, reason: String, open_for: Duration, now: Instant) -> Transition {
        self.clear_counts();
        self.enter(
            BreakerState::Open {
                since: now,
                until: Some(now + open_for),
                reason: reason.clone(),
            },
            reason,
            now,
            Some(open_for),
        )
    }

    /// Close, forgetting the counts (a fresh start: what happened before the
    /// breaker opened must not reopen it on the first failure) and the open
    /// period's growth.
    fn close(&mut self, forced: bool, reason: String, now: Instant) -> Transition {
        self.clear_counts();
        self.reopens = 0;
        self.enter(BreakerState::Closed { forced }, reason, now, None)
    }

    fn clear_counts(&mut self) {
        self.consecutive = 0;
        self.window.clear();
    }

    /// Enter `state`, starting a new period.
    fn enter(
        &mut self,
        state: BreakerState,
        reason: String,
        now: Instant,
        open_for: Option<Duration>,
    ) -> Transition {
        let from = self.state.name();
        let to = state.name();
        if let BreakerState::Open { reason, .. } = &state {
            self.open_reason.clone_from(reason);
        }
        self.state = state;
        self.since = now;
        self.reason.clone_from(&reason);
        self.generation = self.generation.wrapping_add(1);
        Transition {
            from,
            to,
            reason,
            at: now,
            open_for,
        }
    }
}

#[cfg(test)]
mod tests;
