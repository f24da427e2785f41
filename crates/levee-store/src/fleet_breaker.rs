//! A circuit breaker shared with the fleet through a [`StateStore`], for
//! any async Rust program: wrap a call, get its result or a fast rejection.
//!
//! The request path only touches the local [`Breaker`]: it never waits on
//! the store. Transitions reached on local evidence are handed to
//! [`StateStore::report`] (which queues them); fleet changes come back
//! through one background task following [`StateStore::subscribe`] and are
//! applied with [`remote_breaker_state`] and [`Breaker::apply_remote`].
//! While the store is unreachable the local breaker alone protects the
//! caller.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use levee_core::breaker::{
    Breaker, BreakerParams, BreakerSnapshot, BreakerState, CallOutcome, ConcurrentBreaker, Permit,
    Rejected, Transition,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{FleetState, FleetWatcher, LocalReport, StateStore, remote_breaker_state};

/// How far a fleet opening may end after the local one and still be this
/// instance's own opening coming back (wall-clock round trip through the
/// store, to the millisecond).
const ECHO_TOLERANCE: Duration = Duration::from_millis(50);

/// How long a forced-open breaker is reported open: "until told otherwise".
const FORCED_OPEN_REPORT: Duration = Duration::from_secs(365 * 24 * 3600);

/// A [`Breaker`] whose verdicts are shared with every instance using the
/// same store (and quorum rules), usable without the proxy.
///
/// Cloning is cheap; every clone shares the same breaker. The background
/// task that applies fleet changes stops when the last clone is dropped.
///
/// ```
/// # async fn demo() {
/// use std::sync::Arc;
///
/// use levee_core::breaker::BreakerParams;
/// use levee_store::{FleetBreaker, FleetRules, MemoryStore};
///
/// let store = MemoryStore::new("instance-a", FleetRules::new());
/// let breaker = FleetBreaker::new("payments", BreakerParams::default(), Arc::new(store));
/// let answer = breaker
///     .call(async { Ok::<_, std::io::Error>(42) }, |result| result.is_err())
///     .await;
/// assert_eq!(answer.expect("closed").expect("no error"), 42);
/// # }
/// ```
#[derive(Clone)]
pub struct FleetBreaker {
    /// The breaker and its store, shared with the background task.
    inner: Arc<Inner>,
    /// Aborts the background task when the last clone goes.
    _follower: Arc<AbortOnDrop>,
}

struct Inner {
    /// The name under which verdicts are reported and read.
    name: String,
    /// The local state machine; locked only to decide, never across a call
    /// (and not for a closed breaker's successes).
    breaker: ConcurrentBreaker,
    /// Where local verdicts go and the fleet's come from.
    store: Arc<dyn StateStore>,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl FleetBreaker {
    /// A closed breaker named `name`, shared through `store`. Spawns the
    /// task following the store, so it must be called inside a Tokio
    /// runtime.
    pub fn new(
        name: impl Into<String>,
        params: BreakerParams,
        store: Arc<dyn StateStore>,
    ) -> FleetBreaker {
        let inner = Arc::new(Inner {
            name: name.into(),
            breaker: ConcurrentBreaker::new(Breaker::new(params, Instant::now())),
            store,
        });
        let task = tokio::spawn(follow(Arc::clone(&inner)));
        FleetBreaker {
            inner,
            _follower: Arc::new(AbortOnDrop(task)),
        }
    }

    /// The breaker's name in the store.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Run `fut` if the breaker lets it, and count its result: a rejection
    /// (open here or for the fleet) comes back at once as `Err(Rejected)`
    /// without polling `fut`; otherwise `Ok` holds the call's own result.
    /// `is_failure` decides what counts against the upstream (return
    /// `false` for expected errors such as "not found").
    ///
    /// Never waits on the store. Cancel-safe: dropping the returned future
    /// mid-call counts nothing and gives a half-open trial slot back.
    pub async fn call<F, T, E>(
        &self,
        fut: F,
        is_failure: impl Fn(&Result<T, E>) -> bool,
    ) -> Result<Result<T, E>, Rejected>
    where
        F: Future<Output = Result<T, E>>,
    {
        let start = Instant::now();
        let mut permit = self.inner.breaker.try_acquire(start)?;
        if let Some(transition) = permit.take_transition() {
            self.inner.report(&transition);
        }
        let mut guard = Released {
            inner: &self.inner,
            permit: Some(permit),
        };
        let result = fut.await;
        let end = Instant::now();
        let outcome = CallOutcome {
            failure: is_failure(&result),
            duration: end.saturating_duration_since(start),
        };
        if let Some(permit) = guard.permit.take() {
            let transition = self.inner.breaker.record(permit, outcome, end);
            if let Some(transition) = transition {
                self.inner.report(&transition);
            }
        }
        Ok(result)
    }

    /// The local state in force now (the fleet's verdict included once it
    /// has been applied).
    pub fn snapshot(&self) -> BreakerSnapshot {
        let now = Instant::now();
        self.inner.breaker.lock(now).snapshot(now)
    }
}

impl fmt::Debug for FleetBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetBreaker")
            .field("name", &self.inner.name)
            .field("instance", &self.inner.store.instance_id())
            .field("breaker", &self.inner.breaker)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Publish a transition reached on local evidence (never one adopted
    /// from the fleet: it would count towards the quorum as this
    /// instance's own verdict and keep the fleet open on its own echo).
    fn report(&self, transition: &Transition) {
        tracing::info!(breaker = %self.name, instance = %self.store.instance_id(), "breaker {transition}");
        let now = Instant::now();
        let wall = SystemTime::now();
        let (state, snapshot) = {
            let breaker = self.breaker.lock(now);
            (breaker.state().clone(), breaker.snapshot(now))
        };
        let report = match state {
            BreakerState::Open { until, reason, .. } => {
                let until = until.map_or(wall + FORCED_OPEN_REPORT, |until| wall_of(until, now));
                LocalReport::open(until, reason, wall)
            }
            _ => LocalReport::closed(
                transition.reason.clone(),
                u64::from(snapshot.failures),
                u64::from(snapshot.calls),
                wall,
            ),
        };
        self.store.report(&self.name, report);
    }

    /// Adopt the fleet's change of this breaker from `previous` to
    /// `current`, if [`remote_breaker_state`] says so and it is not this
    /// instance's own opening coming back.
    fn apply_fleet(&self, previous: Option<&FleetState>, current: &FleetState) {
        let now = Instant::now();
        let Some(state) = remote_breaker_state(previous, current, now, SystemTime::now()) else {
            return;
        };
        let transition = {
            let mut breaker = self.breaker.lock(now);
            let echo = match (&state, breaker.state()) {
                (
                    BreakerState::Open {
                        until: Some(remote),
                        ..
                    },
                    BreakerState::Open {
                        until: Some(local), ..
                    },
                ) => *remote <= *local + ECHO_TOLERANCE,
                (
                    BreakerState::Open { until: None, .. },
                    BreakerState::Open { until: None, .. },
                ) => true,
                _ => false,
            };
            if echo {
                return;
            }
            breaker.apply_remote(state, now)
        };
        if let Some(transition) = transition {
            tracing::info!(
                breaker = %self.name,
                instance = %self.store.instance_id(),
                open_on = ?current.open_instances,
                "breaker {transition} (from the fleet)"
            );
        }
    }
}

/// Apply every fleet change of this breaker until the store is gone (or
/// the task is aborted with the last [`FleetBreaker`]).
async fn follow(inner: Arc<Inner>) {
    let mut watcher = FleetWatcher::new(inner.store.subscribe());
    while let Some(changes) = watcher.changed().await {
        for change in changes {
            if change.breaker != inner.name {
                continue;
            }
            if let Some(current) = &change.current {
                inner.apply_fleet(change.previous.as_ref(), current);
            }
        }
    }
}

/// Wall-clock time of a local instant.
fn wall_of(at: Instant, now: Instant) -> SystemTime {
    let wall = SystemTime::now();
    if at >= now {
        wall + (at - now)
    } else {
        wall.checked_sub(now - at).unwrap_or(wall)
    }
}

/// Gives the permit back if the call is dropped before it finishes.
struct Released<'a> {
    inner: &'a Inner,
    permit: Option<Permit>,
}

impl Drop for Released<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.inner.breaker.release(permit);
        }
    }
}
