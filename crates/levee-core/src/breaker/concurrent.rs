//! A [`Breaker`] shared between threads whose common case takes no lock.
//!
//! Nearly every call a breaker sees is let through while it is closed and
//! succeeds. Such a call cannot change anything while the rate window holds
//! no failure and no slow call (rates are above 0 by validation, and a
//! success ends no streak that is not there): it only adds to the window's
//! call count. So while the breaker is closed and its window is clean, the
//! breaker opens a *gate*: one atomic word holding its period and a tally of
//! such successes. A call is let through by reading the word, and its
//! success is a compare-and-swap on it. Everything else (a failure, a slow
//! call, a trial, a rejection, an operator's or the fleet's change) takes the
//! lock, which first closes the gate and hands the tally to the window, and
//! reopens it on the way out if the breaker is still closed and clean.
//!
//! Hand-written because it is levee's own idea: the lock-free part is a
//! single word, the rest is the pure [`Breaker`].

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use tokio::time::Instant;

use super::machine::Breaker;
use super::outcome::CallOutcome;
use super::rejected::{Permit, Rejected};
use super::state::Transition;

/// Set while the gate is open (closed breaker, clean window).
const OPEN: u64 = 1 << 31;
/// The tally's bits (below [`OPEN`]); the period is in the high 32 bits.
const TALLY: u64 = OPEN - 1;

/// A [`Breaker`] behind a lock, with a lock-free gate for the calls that
/// cannot change it (see the module's documentation).
///
/// ```
/// use std::time::Duration;
/// use levee_core::breaker::{Breaker, BreakerParams, CallOutcome, ConcurrentBreaker};
/// use tokio::time::Instant;
///
/// let start = Instant::now();
/// let breaker = ConcurrentBreaker::new(Breaker::new(BreakerParams::default(), start));
/// let permit = breaker.try_acquire(start).expect("closed");
/// assert!(breaker.record(permit, CallOutcome::success(Duration::ZERO), start).is_none());
/// assert_eq!(breaker.lock(start).snapshot(start).calls, 1);
/// ```
#[derive(Debug)]
pub struct ConcurrentBreaker {
    machine: Mutex<Breaker>,
    /// Period (high 32 bits), [`OPEN`], tally of successes not yet in the
    /// window (low 31 bits); 0 while the gate is shut.
    gate: AtomicU64,
    /// A call slower than this is slow (the breaker's own parameter).
    slow_after: Duration,
}

/// The breaker, locked, its gate shut; reopened (if the breaker is still
/// closed and clean) when the guard is dropped.
pub struct BreakerGuard<'a> {
    machine: MutexGuard<'a, Breaker>,
    gate: &'a AtomicU64,
    now: Instant,
}

impl ConcurrentBreaker {
    /// Share `breaker`.
    pub fn new(breaker: Breaker) -> ConcurrentBreaker {
        let slow_after = breaker.params().slow_call_duration();
        let gate = AtomicU64::new(gate_word(&breaker, Instant::now()));
        ConcurrentBreaker {
            machine: Mutex::new(breaker),
            gate,
            slow_after,
        }
    }

    /// [`Breaker::try_acquire`]; without the lock while the gate is open.
    pub fn try_acquire(&self, now: Instant) -> Result<Permit, Rejected> {
        let word = self.gate.load(Ordering::Acquire);
        if word & OPEN != 0 {
            return Ok(Permit {
                generation: period(word),
                trial: false,
                transition: None,
            });
        }
        self.lock(now).try_acquire(now)
    }

    /// [`Breaker::record`]; a success that is not slow, let through by an
    /// open gate that is still open, is only tallied.
    pub fn record(&self, permit: Permit, outcome: CallOutcome, now: Instant) -> Option<Transition> {
        if !permit.trial
            && !outcome.failure
            && outcome.duration <= self.slow_after
            && self
                .gate
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |word| {
                    let open = word & OPEN != 0 && period(word) == permit.generation;
                    (open && word & TALLY < TALLY).then(|| word + 1)
                })
                .is_ok()
        {
            return None;
        }
        self.lock(now).record(permit, outcome, now)
    }

    /// [`Breaker::release`]: only a trial's permit needs the lock (and the
    /// clock).
    pub fn release(&self, permit: Permit) {
        if permit.trial {
            let now = Instant::now();
            self.lock(now).release(permit);
        }
    }

    /// The breaker itself, for everything else, as of `now`: the successes
    /// tallied so far are in its window.
    pub fn lock(&self, now: Instant) -> BreakerGuard<'_> {
        let mut machine = self.machine.lock();
        let word = self.gate.swap(0, Ordering::AcqRel);
        if word & TALLY != 0 {
            machine.record_successes(period(word), (word & TALLY) as u32, now);
        }
        BreakerGuard {
            machine,
            gate: &self.gate,
            now,
        }
    }
}

impl Deref for BreakerGuard<'_> {
    type Target = Breaker;

    fn deref(&self) -> &Breaker {
        &self.machine
    }
}

impl DerefMut for BreakerGuard<'_> {
    fn deref_mut(&mut self) -> &mut Breaker {
        &mut self.machine
    }
}

impl Drop for BreakerGuard<'_> {
    fn drop(&mut self) {
        self.gate
            .store(gate_word(&self.machine, self.now), Ordering::Release);
    }
}

/// The gate for `breaker` as of `now`.
fn gate_word(breaker: &Breaker, now: Instant) -> u64 {
    if breaker.is_quiet(now) {
        (u64::from(breaker.generation()) << 32) | OPEN
    } else {
        0
    }
}

/// The breaker's period a gate word was opened for.
fn period(word: u64) -> u32 {
    (word >> 32) as u32
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::breaker::{BreakerParams, StateName};

    const MS: Duration = Duration::from_millis(1);

    fn breaker(params: BreakerParams, now: Instant) -> ConcurrentBreaker {
        ConcurrentBreaker::new(Breaker::new(params, now))
    }

    /// One call let through at `now` with `outcome`: the transition it caused.
    fn call(breaker: &ConcurrentBreaker, outcome: CallOutcome, now: Instant) -> Option<Transition> {
        let permit = breaker.try_acquire(now).expect("let through");
        breaker.record(permit, outcome, now)
    }

    fn gate_is_open(breaker: &ConcurrentBreaker) -> bool {
        breaker.gate.load(Ordering::Relaxed) & OPEN != 0
    }

    #[test]
    fn concurrent_breaker_tallies_successes_and_counts_them_in_the_window() {
        let start = Instant::now();
        let breaker = breaker(BreakerParams::default(), start);
        for _ in 0..5 {
            assert!(call(&breaker, CallOutcome::success(MS), start).is_none());
        }
        assert!(gate_is_open(&breaker));
        assert_eq!(breaker.gate.load(Ordering::Relaxed) & TALLY, 5);
        assert_eq!(breaker.lock(start).snapshot(start).calls, 5);
        // Handed over once, and the gate open again with an empty tally.
        assert_eq!(breaker.gate.load(Ordering::Relaxed) & TALLY, 0);
        assert!(gate_is_open(&breaker));
        assert_eq!(breaker.lock(start).snapshot(start).calls, 5);
    }

    #[test]
    fn concurrent_breaker_shuts_the_gate_after_a_failure_until_the_window_is_clean() {
        let start = Instant::now();
        let params = BreakerParams::builder()
            .window(Duration::from_secs(10))
            .build()
            .expect("valid");
        let breaker = breaker(params, start);
        assert!(call(&breaker, CallOutcome::failure(MS), start).is_none());
        assert!(!gate_is_open(&breaker));
        // A success ends the streak, but the failure is still in the window.
        assert!(call(&breaker, CallOutcome::success(MS), start).is_none());
        assert!(!gate_is_open(&breaker));
        // Once the failure has left the window, the next locked call opens it.
        let later = start + Duration::from_secs(11);
        assert!(call(&breaker, CallOutcome::success(MS), later).is_none());
        assert!(gate_is_open(&breaker));
        let snapshot = breaker.lock(later).snapshot(later);
        assert_eq!((snapshot.calls, snapshot.failures), (1, 0));
    }

    #[test]
    fn concurrent_breaker_counts_tallied_successes_before_a_failure() {
        // min_calls 4 at a 50% failure rate: 2 successes, then 2 failures
        // trip it only if the successes are counted first (4 calls, 50%).
        let start = Instant::now();
        let params = BreakerParams::builder()
            .consecutive_failures(0)
            .failure_rate(Some(0.5))
            .min_calls(4)
            .build()
            .expect("valid");
        let breaker = breaker(params, start);
        for _ in 0..2 {
            assert!(call(&breaker, CallOutcome::success(MS), start).is_none());
        }
        assert!(call(&breaker, CallOutcome::failure(MS), start).is_none());
        let transition = call(&breaker, CallOutcome::failure(MS), start).expect("tripped");
        assert_eq!(transition.to, StateName::Open);
        assert!(breaker.try_acquire(start).is_err());
    }

    #[test]
    fn concurrent_breaker_drops_successes_of_an_earlier_period() {
        let start = Instant::now();
        let params = BreakerParams::builder()
            .consecutive_failures(1)
            .build()
            .expect("valid");
        let breaker = breaker(params, start);
        let straggler = breaker.try_acquire(start).expect("closed");
        assert!(call(&breaker, CallOutcome::failure(MS), start).is_some());
        breaker.lock(start).reset(start);
        assert!(gate_is_open(&breaker));
        // Let through before the breaker opened: it counts for nothing.
        assert!(
            breaker
                .record(straggler, CallOutcome::success(MS), start)
                .is_none()
        );
        assert_eq!(breaker.lock(start).snapshot(start).calls, 0);
    }

    #[test]
    fn concurrent_breaker_sends_slow_calls_and_trials_through_the_lock() {
        let start = Instant::now();
        let params = BreakerParams::builder()
            .consecutive_failures(1)
            .slow_call_rate(Some(1.0))
            .slow_call_duration(Duration::from_secs(1))
            .min_calls(1)
            .open_for(Duration::from_secs(1))
            .half_open_trials(1)
            .build()
            .expect("valid");
        let breaker = breaker(params, start);
        let slow = CallOutcome::success(Duration::from_secs(2));
        let transition = call(&breaker, slow, start).expect("tripped");
        assert_eq!(transition.to, StateName::Open);
        let later = start + Duration::from_secs(1);
        let trial = breaker.try_acquire(later).expect("half-open trial");
        assert!(trial.is_trial());
        assert!(breaker.try_acquire(later).is_err());
        let transition = breaker
            .record(trial, CallOutcome::success(MS), later)
            .expect("closed again");
        assert_eq!(transition.to, StateName::Closed);
        assert!(gate_is_open(&breaker));
    }

    #[test]
    fn concurrent_breaker_counts_every_success_of_racing_threads() {
        let start = Instant::now();
        let breaker = Arc::new(breaker(BreakerParams::default(), start));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let breaker = Arc::clone(&breaker);
                std::thread::spawn(move || {
                    for round in 0..2_000 {
                        let permit = breaker.try_acquire(start).expect("closed");
                        breaker.record(permit, CallOutcome::success(MS), start);
                        if round % 100 == 0 {
                            // Now and then something takes the lock.
                            drop(breaker.lock(start));
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic");
        }
        assert_eq!(breaker.lock(start).snapshot(start).calls, 8_000);
    }
}
