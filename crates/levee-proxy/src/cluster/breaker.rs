//! A cluster's circuit breaker at run time: levee-core's [`Breaker`] behind a
//! lock, and every transition turned into a metric, an event (and so a log
//! line and a webhook).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use levee_core::breaker::{
    Breaker, BreakerParams, BreakerSnapshot, CallOutcome, Permit, Rejected, StateName, Transition,
};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::Instant;

use crate::events::{EventLog, NewEvent, Severity};
use crate::metrics::BreakerMetrics;

/// The breaker of one cluster.
pub struct ClusterBreaker {
    name: String,
    machine: Mutex<Breaker>,
    metrics: BreakerMetrics,
    events: Arc<EventLog>,
}

/// A request let through by the breaker. Finish it with its outcome; dropped
/// unfinished (the client went away), it counts for nothing and a half-open
/// trial slot is given back.
pub struct BreakerCall<'a> {
    breaker: &'a ClusterBreaker,
    permit: Option<Permit>,
    started: Instant,
}

/// A breaker as `/status` and `GET /breakers/{name}` show it.
#[derive(Debug, Serialize)]
pub struct BreakerView {
    /// The breaker's name (its cluster's).
    pub name: String,
    /// `closed`, `open` or `half-open`.
    pub state: &'static str,
    /// True unless closed: a UI should grey out the feature.
    pub is_open: bool,
    /// Held in this state by an operator.
    pub forced: bool,
    /// When the state began (RFC 3339).
    pub since: String,
    /// Why it is in this state.
    pub reason: String,
    /// When an open breaker lets trial requests through (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Failed requests in a row.
    pub consecutive_failures: u32,
    /// Requests in the rate window, failures and slow ones among them.
    pub calls: u32,
    /// Failures in the window.
    pub failures: u32,
    /// Slow requests in the window.
    pub slow_calls: u32,
}

impl ClusterBreaker {
    pub(super) fn new(
        name: &str,
        params: BreakerParams,
        metrics: BreakerMetrics,
        events: Arc<EventLog>,
        now: Instant,
    ) -> ClusterBreaker {
        metrics.record_state(StateName::Closed);
        ClusterBreaker {
            name: name.to_owned(),
            machine: Mutex::new(Breaker::new(params, now)),
            metrics,
            events,
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Let a request through, or say why not.
    pub fn acquire(&self, now: Instant) -> Result<BreakerCall<'_>, Rejected> {
        let acquired = self.machine.lock().try_acquire(now);
        match acquired {
            Ok(mut permit) => {
                if let Some(transition) = permit.take_transition() {
                    self.report(&transition);
                }
                Ok(BreakerCall {
                    breaker: self,
                    permit: Some(permit),
                    started: now,
                })
            }
            Err(rejected) => {
                self.metrics.record_rejection();
                Err(rejected)
            }
        }
    }

    /// Periodic work: an open breaker whose period is over goes half-open.
    pub fn tick(&self, now: Instant) {
        let transition = self.machine.lock().tick(now);
        if let Some(transition) = transition {
            self.report(&transition);
        }
    }

    /// Operator: open until told otherwise.
    pub fn force_open(&self, now: Instant) -> BreakerView {
        let transition = self.machine.lock().force_open(now);
        self.report(&transition);
        self.view(now)
    }

    /// Operator: closed until told otherwise.
    pub fn force_closed(&self, now: Instant) -> BreakerView {
        let transition = self.machine.lock().force_closed(now);
        self.report(&transition);
        self.view(now)
    }

    /// Operator: back to closed and counting, overrides lifted.
    pub fn reset(&self, now: Instant) -> BreakerView {
        let transition = self.machine.lock().reset(now);
        self.report(&transition);
        self.view(now)
    }

    /// The breaker as of `now`.
    pub fn view(&self, now: Instant) -> BreakerView {
        let snapshot: BreakerSnapshot = self.machine.lock().snapshot(now);
        BreakerView {
            name: self.name.clone(),
            state: snapshot.state.as_str(),
            is_open: snapshot.is_open,
            forced: snapshot.forced,
            since: wall_clock(snapshot.since, now),
            reason: snapshot.reason,
            until: snapshot.until.map(|until| wall_clock(until, now)),
            consecutive_failures: snapshot.consecutive_failures,
            calls: snapshot.calls,
            failures: snapshot.failures,
            slow_calls: snapshot.slow_calls,
        }
    }

    fn report(&self, transition: &Transition) {
        self.metrics.record_state(transition.to);
        self.metrics.record_transition(transition.to);
        self.events.record(NewEvent {
            kind: "breaker",
            cluster: self.name.clone(),
            endpoint: None,
            from: transition.from.as_str().to_owned(),
            to: transition.to.as_str().to_owned(),
            reason: transition.to_string(),
            severity: match transition.to {
                StateName::Open => Severity::Error,
                StateName::HalfOpen => Severity::Warning,
                StateName::Closed => Severity::Info,
            },
        });
    }
}

impl BreakerCall<'_> {
    /// The request is over; `outcome` is what it says about the upstream
    /// (`None`: nothing, e.g. the client's own error).
    pub fn finish(mut self, outcome: Option<CallOutcome>) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let now = Instant::now();
        let transition = {
            let mut machine = self.breaker.machine.lock();
            match outcome {
                Some(outcome) => machine.record(permit, outcome, now),
                None => {
                    machine.release(permit);
                    None
                }
            }
        };
        if let Some(transition) = transition {
            self.breaker.report(&transition);
        }
    }

    /// How long the request has taken so far.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for BreakerCall<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.breaker.machine.lock().release(permit);
        }
    }
}

/// Wall-clock time (RFC 3339) of a monotonic instant, past or future.
fn wall_clock(at: Instant, now: Instant) -> String {
    let wall = if at <= now {
        SystemTime::now().checked_sub(now - at)
    } else {
        SystemTime::now().checked_add(at - now)
    };
    humantime::format_rfc3339_millis(wall.unwrap_or(SystemTime::UNIX_EPOCH)).to_string()
}
