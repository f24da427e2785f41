//! The async face of [`Breaker`] for library users: wrap a call, get its
//! result or a fast rejection.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;

use super::concurrent::ConcurrentBreaker;
use super::machine::Breaker;
use super::outcome::CallOutcome;
use super::params::BreakerParams;
use super::rejected::{Permit, Rejected};
use super::state::{BreakerSnapshot, BreakerState, Transition};

/// Called with every transition, outside the breaker's lock (log it, count
/// it, publish it).
type Listener = dyn Fn(&Transition) + Send + Sync;

/// A [`Breaker`] shared between tasks, reading the tokio clock.
///
/// Cloning is cheap and every clone shares the same breaker. The lock is held
/// only to decide, never across the call.
///
/// ```
/// # async fn demo() {
/// use levee_core::breaker::{BreakerParams, SharedBreaker};
///
/// let breaker = SharedBreaker::new(BreakerParams::default());
/// let answer = breaker
///     .call(async { Ok::<_, std::io::Error>(42) }, |result| result.is_err())
///     .await;
/// assert_eq!(answer.expect("closed").expect("no error"), 42);
/// # }
/// ```
#[derive(Clone)]
pub struct SharedBreaker {
    shared: Arc<Shared>,
}

struct Shared {
    breaker: ConcurrentBreaker,
    listener: Option<Box<Listener>>,
}

impl SharedBreaker {
    /// A closed breaker with these parameters.
    pub fn new(params: BreakerParams) -> SharedBreaker {
        SharedBreaker::from_breaker(Breaker::new(params, Instant::now()))
    }

    /// Share an existing breaker.
    pub fn from_breaker(breaker: Breaker) -> SharedBreaker {
        SharedBreaker {
            shared: Arc::new(Shared {
                breaker: ConcurrentBreaker::new(breaker),
                listener: None,
            }),
        }
    }

    /// Share an existing breaker, calling `listener` with every transition
    /// (from calls and from the operator methods alike).
    pub fn with_listener(
        breaker: Breaker,
        listener: impl Fn(&Transition) + Send + Sync + 'static,
    ) -> SharedBreaker {
        SharedBreaker {
            shared: Arc::new(Shared {
                breaker: ConcurrentBreaker::new(breaker),
                listener: Some(Box::new(listener)),
            }),
        }
    }

    /// Run `fut` if the breaker lets it, and count its result: a rejection
    /// comes back at once as `Err(Rejected)` without polling `fut`;
    /// otherwise `Ok` holds the call's own result. `is_failure` decides what
    /// counts against the upstream (return `false` for expected errors such
    /// as "not found"). The call's duration, measured with the tokio clock,
    /// feeds the slow-call policy.
    ///
    /// Cancel-safe: dropping the returned future mid-call counts nothing and
    /// gives a half-open trial slot back.
    pub async fn call<F, T, E>(
        &self,
        fut: F,
        is_failure: impl Fn(&Result<T, E>) -> bool,
    ) -> Result<Result<T, E>, Rejected>
    where
        F: Future<Output = Result<T, E>>,
    {
        let start = Instant::now();
        let mut permit = self.shared.breaker.try_acquire(start)?;
        if let Some(transition) = permit.take_transition() {
            self.notify(&transition);
        }
        let mut guard = Released {
            shared: &self.shared,
            permit: Some(permit),
        };
        let result = fut.await;
        let end = Instant::now();
        let outcome = CallOutcome {
            failure: is_failure(&result),
            duration: end.saturating_duration_since(start),
        };
        if let Some(permit) = guard.permit.take() {
            let transition = self.shared.breaker.record(permit, outcome, end);
            if let Some(transition) = transition {
                self.notify(&transition);
            }
        }
        Ok(result)
    }

    /// The state in force now.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let now = Instant::now();
        self.shared.breaker.lock(now).snapshot(now)
    }

    /// See [`Breaker::force_open`].
    pub fn force_open(&self) -> Transition {
        let now = Instant::now();
        let transition = self.shared.breaker.lock(now).force_open(now);
        self.notify(&transition);
        transition
    }

    /// See [`Breaker::force_closed`].
    pub fn force_closed(&self) -> Transition {
        let now = Instant::now();
        let transition = self.shared.breaker.lock(now).force_closed(now);
        self.notify(&transition);
        transition
    }

    /// See [`Breaker::reset`].
    pub fn reset(&self) -> Transition {
        let now = Instant::now();
        let transition = self.shared.breaker.lock(now).reset(now);
        self.notify(&transition);
        transition
    }

    /// See [`Breaker::apply_remote`].
    pub fn apply_remote(&self, state: BreakerState) -> Option<Transition> {
        let now = Instant::now();
        let transition = self.shared.breaker.lock(now).apply_remote(state, now);
        if let Some(transition) = &transition {
            self.notify(transition);
        }
        transition
    }

    fn notify(&self, transition: &Transition) {
        if let Some(listener) = &self.shared.listener {
            listener(transition);
        }
    }
}

impl fmt::Debug for SharedBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBreaker")
            .field("breaker", &self.shared.breaker)
            .finish_non_exhaustive()
    }
}

/// Gives the permit back if the call is dropped before it finishes.
struct Released<'a> {
    shared: &'a Shared,
    permit: Option<Permit>,
}

impl Drop for Released<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.shared.breaker.release(permit);
        }
    }
}

#[cfg(test)]
mod tests {
    use parking_lot::Mutex;

    use super::*;
    use crate::breaker::StateName;
    use std::time::Duration;

    const SEC: Duration = Duration::from_secs(1);

    fn params() -> BreakerParams {
        BreakerParams::builder()
            .consecutive_failures(2)
            .failure_rate(None)
            .slow_call_rate(Some(1.0))
            .slow_call_duration(SEC)
            .min_calls(2)
            .open_for(5 * SEC)
            .half_open_trials(1)
            .build()
            .expect("valid")
    }

    #[tokio::test(start_paused = true)]
    async fn shared_breaker_call_trips_rejects_and_recovers() {
        let transitions = Arc::new(Mutex::new(Vec::new()));
        let seen = transitions.clone();
        let breaker = SharedBreaker::with_listener(
            Breaker::new(params(), Instant::now()),
            move |t: &Transition| seen.lock().push(t.to_string()),
        );
        let fail = || async { Err::<u32, &str>("boom") };
        let is_failure = |result: &Result<u32, &str>| result.is_err();
        // Expected errors the classifier lets through never count.
        for _ in 0..5 {
            let answer = breaker.call(fail(), |_| false).await;
            assert_eq!(answer, Ok(Err("boom")));
        }
        assert_eq!(breaker.snapshot().state, StateName::Closed);
        for _ in 0..2 {
            assert_eq!(breaker.call(fail(), is_failure).await, Ok(Err("boom")));
        }
        let snapshot = breaker.snapshot();
        assert!(snapshot.is_open);
        assert_eq!(snapshot.reason, "2 consecutive failures");
        // Open: rejected without polling the call.
        let rejected = breaker
            .call(async { panic!("must not run") }, is_failure)
            .await
            .expect_err("open");
        assert_eq!(rejected.retry_after, Some(5 * SEC));
        assert_eq!(rejected.state, StateName::Open);
        tokio::time::advance(5 * SEC).await;
        assert_eq!(breaker.call(async { Ok(7) }, is_failure).await, Ok(Ok(7)));
        assert_eq!(breaker.snapshot().state, StateName::Closed);
        assert_eq!(
            *transitions.lock(),
            [
                "closed → open for 5s: 2 consecutive failures",
                "open → half-open: open for 5s, letting 1 trial call through",
                "half-open → closed: trial call succeeded",
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shared_breaker_call_measures_slow_calls() {
        let breaker = SharedBreaker::new(params());
        let slow = || async {
            tokio::time::sleep(2 * SEC).await;
            Ok::<u32, ()>(1)
        };
        for _ in 0..2 {
            assert_eq!(breaker.call(slow(), |r| r.is_err()).await, Ok(Ok(1)));
        }
        let snapshot = breaker.snapshot();
        assert_eq!(snapshot.state, StateName::Open);
        assert_eq!(snapshot.reason, "slow calls 100% over 10s (> 1s)");
    }

    #[tokio::test(start_paused = true)]
    async fn shared_breaker_cancelled_trial_frees_its_slot() {
        let breaker = SharedBreaker::new(params());
        breaker.force_open();
        breaker.reset();
        // Open it for real, then reach half-open.
        for _ in 0..2 {
            let _ = breaker
                .call(async { Err::<(), ()>(()) }, |r| r.is_err())
                .await;
        }
        tokio::time::advance(5 * SEC).await;
        // A trial call that is dropped mid-flight…
        let hung = breaker.call(std::future::pending::<Result<(), ()>>(), |r| r.is_err());
        let timed_out = tokio::time::timeout(SEC, hung).await;
        assert!(timed_out.is_err());
        // …gives its slot back: the next call is admitted as the trial.
        assert_eq!(
            breaker
                .call(async { Ok::<(), ()>(()) }, |r| r.is_err())
                .await,
            Ok(Ok(()))
        );
        assert_eq!(breaker.snapshot().state, StateName::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn shared_breaker_operator_overrides() {
        let breaker = SharedBreaker::new(params());
        assert_eq!(breaker.force_open().to.as_str(), "open");
        let rejected = breaker
            .call(async { Ok::<(), ()>(()) }, |r| r.is_err())
            .await
            .expect_err("forced open");
        assert_eq!(rejected.retry_after, None);
        assert_eq!(
            rejected.to_string(),
            "circuit breaker open: forced open by operator"
        );
        breaker.force_closed();
        for _ in 0..10 {
            let _ = breaker
                .call(async { Err::<(), ()>(()) }, |r| r.is_err())
                .await;
        }
        let snapshot = breaker.snapshot();
        assert_eq!((snapshot.state, snapshot.forced), (StateName::Closed, true));
        assert_eq!(breaker.reset().reason, "reset by operator");
        assert!(!breaker.snapshot().forced);
    }
}
