//! A cluster's circuit breaker at run time: levee-core's [`Breaker`] shared
//! between workers ([`ConcurrentBreaker`]: no lock while it is closed and
//! calls succeed), and every transition turned into a metric, an event (and so a log
//! line and a webhook).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use levee_core::EndpointId;
use levee_core::breaker::{
    Breaker, BreakerParams, BreakerSnapshot, BreakerState, CallOutcome, ConcurrentBreaker, Permit,
    Rejected, StateName, Transition,
};
use levee_store::{FleetState, LocalReport, remote_breaker_state};
use serde::Serialize;
use tokio::time::Instant;

use super::Cluster;
use super::breaker_metrics::BreakerMetrics;
use super::fleet::{FleetLink, wall_of};
use crate::config::OnUnreachable;
use crate::events::{EventLog, NewEvent, Severity};

/// How far a fleet opening may end after the local one and still be this
/// instance's own opening coming back (wall-clock round trip through the
/// store, to the millisecond).
const ECHO_TOLERANCE: Duration = Duration::from_millis(50);

/// How long a forced-open breaker is reported open: "until told otherwise".
const FORCED_OPEN_REPORT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Where a transition came from, which decides whether it is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// This instance's own evidence (or its own timer): published.
    Local,
    /// Adopted from the fleet: never published back (it would count
    /// towards the quorum as this instance's own verdict).
    Fleet,
    /// An operator, through the admin API (shared through the store's
    /// override, not a report).
    Operator,
    /// A local trip undone because the quorum is not met and
    /// `protect_locally` is off: the open report stands.
    BelowQuorum,
}

/// The breaker of one cluster, or of one of its endpoints.
pub struct ClusterBreaker {
    /// The cluster's name, or `<cluster>/<host:port>` for an endpoint's.
    name: String,
    /// The cluster it protects (events name it).
    cluster: String,
    /// The endpoint (`host:port`) of an endpoint breaker; `None` for the
    /// cluster's own.
    endpoint: Option<String>,
    machine: ConcurrentBreaker,
    metrics: BreakerMetrics,
    events: Arc<EventLog>,
    /// Set once, at start, when the breaker is shared with the fleet.
    fleet: OnceLock<FleetLink>,
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
    /// Shared with the fleet through the store.
    pub shared: bool,
    /// Shared only: instances that must trip to open it for the fleet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    /// Shared only: instances whose live report says open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_instances: Option<Vec<String>>,
    /// Shared only: whether the fleet's verdict is open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet_open: Option<bool>,
    /// Shared only: open here on local evidence while the fleet is not
    /// (below the quorum, `protect_locally`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_locally_only: Option<bool>,
    /// Shared only: the store is unreachable and the state is stale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_unreachable: Option<bool>,
}

impl ClusterBreaker {
    /// The breaker of `cluster`, or of its `endpoint` (named
    /// `<cluster>/<endpoint>`; metrics are labelled by that name).
    pub fn new(
        cluster: &str,
        endpoint: Option<&str>,
        params: BreakerParams,
        metrics: BreakerMetrics,
        events: Arc<EventLog>,
        now: Instant,
    ) -> ClusterBreaker {
        metrics.record_state(StateName::Closed);
        ClusterBreaker {
            name: breaker_name(cluster, endpoint),
            cluster: cluster.to_owned(),
            endpoint: endpoint.map(str::to_owned),
            machine: ConcurrentBreaker::new(Breaker::new(params, now)),
            metrics,
            events,
            fleet: OnceLock::new(),
        }
    }

    /// Share this breaker with the fleet (once, at start; later calls are
    /// ignored).
    pub fn share(&self, link: FleetLink) {
        let _ = self.fleet.set(link);
    }

    /// The fleet link of a shared breaker.
    pub fn fleet(&self) -> Option<&FleetLink> {
        self.fleet.get()
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Let a request through, or say why not.
    pub fn acquire(&self, now: Instant) -> Result<BreakerCall<'_>, Rejected> {
        match self.fleet().and_then(FleetLink::fallback) {
            Some(OnUnreachable::Open) => {
                self.metrics.record_rejection();
                return Err(Rejected {
                    retry_after: Some(Rejected::HALF_OPEN_RETRY_AFTER),
                    state: StateName::Open,
                    reason: "breaker store unreachable (on_unreachable = \"open\")".to_owned(),
                });
            }
            Some(OnUnreachable::Closed) => {
                return Ok(BreakerCall {
                    breaker: self,
                    permit: None,
                    started: now,
                });
            }
            _ => {}
        }
        let permit = self.try_permit(now)?;
        Ok(BreakerCall {
            breaker: self,
            permit: Some(permit),
            started: now,
        })
    }

    /// Let one attempt through (an endpoint breaker: never shared), or say
    /// why not. The permit goes back through [`ClusterBreaker::settle`].
    pub(crate) fn try_permit(&self, now: Instant) -> Result<Permit, Rejected> {
        let acquired = self.machine.try_acquire(now);
        match acquired {
            Ok(mut permit) => {
                if let Some(transition) = permit.take_transition() {
                    self.report(&transition, Origin::Local);
                }
                Ok(permit)
            }
            Err(rejected) => {
                self.metrics.record_rejection();
                Err(rejected)
            }
        }
    }

    /// A permit's call is over: `outcome` is what it says about the
    /// upstream; `None` gives the permit back, counting for nothing.
    pub(crate) fn settle(&self, permit: Permit, outcome: Option<CallOutcome>) {
        let transition = match outcome {
            Some(outcome) => self.machine.record(permit, outcome, Instant::now()),
            None => {
                self.machine.release(permit);
                None
            }
        };
        if let Some(transition) = transition {
            self.report(&transition, Origin::Local);
        }
    }

    /// Periodic work: an open breaker whose period is over goes half-open.
    pub fn tick(&self, now: Instant) {
        let transition = self.machine.lock(now).tick(now);
        if let Some(transition) = transition {
            self.report(&transition, Origin::Local);
        }
    }

    /// Operator: open until told otherwise.
    pub fn force_open(&self, now: Instant) -> BreakerView {
        let transition = self.machine.lock(now).force_open(now);
        self.report(&transition, Origin::Operator);
        self.view(now)
    }

    /// Operator: closed until told otherwise.
    pub fn force_closed(&self, now: Instant) -> BreakerView {
        let transition = self.machine.lock(now).force_closed(now);
        self.report(&transition, Origin::Operator);
        self.view(now)
    }

    /// Operator: back to closed and counting, overrides lifted.
    pub fn reset(&self, now: Instant) -> BreakerView {
        let transition = self.machine.lock(now).reset(now);
        self.report(&transition, Origin::Operator);
        self.view(now)
    }

    /// The breaker as of `now`.
    pub fn view(&self, now: Instant) -> BreakerView {
        let snapshot: BreakerSnapshot = self.machine.lock(now).snapshot(now);
        let link = self.fleet();
        let fleet = link.map(|link| link.fleet.lock().clone());
        let fleet_open = fleet
            .as_ref()
            .map(|state| state.as_ref().is_some_and(FleetState::is_open));
        BreakerView {
            shared: link.is_some(),
            quorum: link.map(|link| link.settings.quorum),
            open_instances: fleet.as_ref().map(|state| {
                state
                    .as_ref()
                    .map(|state| state.open_instances.clone())
                    .unwrap_or_default()
            }),
            fleet_open,
            open_locally_only: fleet_open.map(|fleet_open| snapshot.is_open && !fleet_open),
            store_unreachable: link.map(FleetLink::is_stale),
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

    /// Adopt the fleet's change of this breaker from `previous` to
    /// `current` (see [`remote_breaker_state`] for which are adopted).
    pub(super) fn apply_fleet(&self, previous: Option<&FleetState>, current: Option<&FleetState>) {
        let Some(link) = self.fleet() else {
            return;
        };
        *link.fleet.lock() = current.cloned();
        let Some(current) = current else {
            return;
        };
        let now = Instant::now();
        let Some(state) = remote_breaker_state(previous, current, now, SystemTime::now()) else {
            return;
        };
        let transition = {
            let mut machine = self.machine.lock(now);
            // This instance's own opening, back from the store: already in
            // force here.
            let echo = match (&state, machine.state()) {
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
            machine.apply_remote(state, now)
        };
        if let Some(mut transition) = transition {
            if current.is_open() && !current.open_instances.is_empty() {
                transition.reason = format!(
                    "{} [open on {}]",
                    transition.reason,
                    current.open_instances.join(", ")
                );
            }
            self.report(&transition, Origin::Fleet);
        }
    }

    fn report(&self, transition: &Transition, origin: Origin) {
        self.record(transition);
        let Some(link) = self.fleet() else {
            return;
        };
        if origin != Origin::Local {
            return;
        }
        let now = Instant::now();
        let wall = SystemTime::now();
        let (state, snapshot) = {
            let machine = self.machine.lock(now);
            (machine.state().clone(), machine.snapshot(now))
        };
        let report = match &state {
            BreakerState::Open { until, reason, .. } => {
                let until = until.map_or(wall + FORCED_OPEN_REPORT, |until| wall_of(until, now));
                LocalReport::open(until, reason.clone(), wall)
            }
            _ => LocalReport::closed(
                transition.reason.clone(),
                u64::from(snapshot.failures),
                u64::from(snapshot.calls),
                wall,
            ),
        };
        let opened = matches!(state, BreakerState::Open { .. });
        link.store.report(&self.name, report);
        let quorum = usize::try_from(link.settings.quorum).unwrap_or(usize::MAX);
        if opened && !link.settings.protect_locally && link.others_open() + 1 < quorum {
            // The report stands (it counts towards the quorum); only the
            // local breaker closes again.
            let undone = self
                .machine
                .lock(now)
                .apply_remote(BreakerState::Closed { forced: false }, now);
            if let Some(mut undone) = undone {
                undone.reason = format!(
                    "open on this instance only, below the quorum of {} (protect_locally = false)",
                    link.settings.quorum
                );
                self.report(&undone, Origin::BelowQuorum);
            }
        }
    }

    fn record(&self, transition: &Transition) {
        self.metrics.record_state(transition.to);
        self.metrics.record_transition(transition.to);
        self.events.record(NewEvent {
            kind: "breaker",
            cluster: self.cluster.clone(),
            endpoint: self.endpoint.clone(),
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
        if let Some(permit) = self.permit.take() {
            self.breaker.settle(permit, outcome);
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
            self.breaker.machine.release(permit);
        }
    }
}

/// One attempt let through by its endpoint's breaker. Finish it with the
/// attempt's outcome; dropped unfinished (a cancelled hedge loser), it
/// counts for nothing and a half-open trial slot is given back.
pub struct EndpointBreakerCall {
    cluster: Arc<Cluster>,
    endpoint: EndpointId,
    permit: Option<Permit>,
}

impl EndpointBreakerCall {
    /// Ask `endpoint`'s breaker to let an attempt through: `Ok(None)` when
    /// the cluster has no endpoint breakers, `Err` with the breaker's name
    /// when it rejects.
    pub fn acquire(
        cluster: &Arc<Cluster>,
        endpoint: EndpointId,
        now: Instant,
    ) -> Result<Option<EndpointBreakerCall>, (String, Rejected)> {
        let Some(breaker) = cluster.endpoint_breakers.get(endpoint.0) else {
            return Ok(None);
        };
        match breaker.try_permit(now) {
            Ok(permit) => Ok(Some(EndpointBreakerCall {
                cluster: Arc::clone(cluster),
                endpoint,
                permit: Some(permit),
            })),
            Err(rejected) => Err((breaker.name().to_owned(), rejected)),
        }
    }

    /// The attempt is over; `outcome` is what it says about the endpoint
    /// (`None`: nothing).
    pub fn finish(mut self, outcome: Option<CallOutcome>) {
        if let Some(permit) = self.permit.take() {
            self.cluster.endpoint_breakers[self.endpoint.0].settle(permit, outcome);
        }
    }
}

impl Drop for EndpointBreakerCall {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.cluster.endpoint_breakers[self.endpoint.0].settle(permit, None);
        }
    }
}

/// `<cluster>/<endpoint>` for an endpoint's breaker, the cluster's name for
/// its own.
fn breaker_name(cluster: &str, endpoint: Option<&str>) -> String {
    match endpoint {
        Some(endpoint) => format!("{cluster}/{endpoint}"),
        None => cluster.to_owned(),
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
