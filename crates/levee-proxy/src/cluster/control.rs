//! The changing state of a cluster's endpoints (active health, outlier
//! ejection, reachability, slow start) and the routing view derived from it,
//! behind one lock that checks, resolutions, outcomes and the periodic tick
//! take. The request path reads the routing view lock-free.

use std::time::Duration;

use levee_core::Outcome;
use levee_core::health::{CheckResult, Health, HealthTracker, Transition};
use levee_core::outlier::{
    Ejection, OutlierDetector, PanicParams, Reachability, Return, SlowStart, Standing, Unreachable,
    routable,
};
use tokio::time::Instant;

/// What the balancer may pick from, rebuilt on every state change.
#[derive(Clone, Debug, Default)]
pub struct Routing {
    /// The candidates, whether the cluster panics, the available endpoints
    /// (where retries go first in panic) and how many are unreachable, as
    /// levee-core decides them.
    pub view: levee_core::outlier::Routing,
    /// When each endpoint came back into service, while it may still be
    /// ramping up (slow start).
    pub returned_at: Vec<Option<Instant>>,
}

/// Per-endpoint state that changes over time.
pub(super) struct EndpointControl {
    /// Active check state; `None` when the cluster has no active checks.
    pub tracker: Option<HealthTracker>,
    /// When it last came back into service (slow start ramps from here).
    pub returned_at: Option<Instant>,
    /// Whether it is known to take no connections (its name does not
    /// resolve, it refuses them).
    pub reachability: Reachability,
    /// Taken out by the fleet: a quorum of other instances judged it bad
    /// (`share_health`); `None` otherwise, and while the store is down.
    pub fleet_out: Option<super::FleetOut>,
    /// What the fleet said of it last, for `/status`.
    pub fleet_seen: Option<super::FleetHealthView>,
    /// Whether it said it is going away (and is out until a check passes).
    pub departure: super::going_away::Departure,
}

/// Every endpoint's changing state.
pub(super) struct Control {
    pub endpoints: Vec<EndpointControl>,
    /// Passive outlier detection; `None` when disabled.
    pub outlier: Option<OutlierDetector>,
    pub panic_params: PanicParams,
    pub slow_start: Option<SlowStart>,
    /// Whether the last routing view was in panic mode.
    pub panic: bool,
}

impl Control {
    /// Record one check result for `endpoint`. Coming back to healthy starts
    /// its slow start.
    pub fn record_check(
        &mut self,
        endpoint: usize,
        result: CheckResult,
        now: Instant,
    ) -> Option<Transition> {
        let state = &mut self.endpoints[endpoint];
        state.reachability.record_check(result);
        let transition = state.tracker.as_mut()?.record(result, now)?;
        if transition.from == Health::Unhealthy && transition.to == Health::Healthy {
            state.returned_at = Some(now);
        }
        Some(transition)
    }

    /// Feed one attempt outcome to the outlier detector.
    pub fn record_outcome(&mut self, outcome: &Outcome, now: Instant) -> Option<Ejection> {
        self.outlier.as_mut()?.record(outcome, now)
    }

    /// A request's connection to `endpoint` was refused. Returns whether
    /// that changes the routing view: the endpoint was not known to refuse,
    /// and is out of rotation (so panic mode would have sent to it).
    pub fn record_refusal(&mut self, endpoint: usize, outcome: &Outcome, now: Instant) -> bool {
        let newly = self.endpoints[endpoint]
            .reachability
            .record_outcome(outcome, now);
        newly && !self.is_available(endpoint, now)
    }

    /// The latest lookup of `endpoint`'s name succeeded or failed. Returns
    /// whether that changed anything.
    pub fn record_resolution(&mut self, endpoint: usize, resolved: bool) -> bool {
        self.endpoints[endpoint]
            .reachability
            .record_resolution(resolved)
    }

    /// Why `endpoint` is known to take no connections, if it is.
    pub fn unreachable(&self, endpoint: usize, now: Instant) -> Option<Unreachable> {
        self.endpoints[endpoint].reachability.unreachable(now)
    }

    /// Periodic work: expire ejections (starting slow start for the
    /// returning endpoints) and look for latency outliers.
    pub fn tick(&mut self, now: Instant) -> (Vec<Ejection>, Vec<Return>) {
        let Some(outlier) = self.outlier.as_mut() else {
            return (Vec::new(), Vec::new());
        };
        let (ejections, returns) = outlier.tick(now);
        for back in &returns {
            if let Some(state) = self.endpoints.get_mut(back.endpoint) {
                state.returned_at = Some(back.at);
            }
        }
        (ejections, returns)
    }

    /// Whether `endpoint` may take traffic: its name resolved, not failing
    /// its checks, not ejected, not taken out by the fleet.
    pub fn is_available(&self, endpoint: usize, now: Instant) -> bool {
        let state = &self.endpoints[endpoint];
        self.local_verdict(endpoint, now).is_none()
            && state.fleet_out.is_none()
            && state.departure.going.is_none()
    }

    /// This instance's own verdict on `endpoint` from its own evidence
    /// (checks, ejections; never the fleet's): `None` when it may take
    /// traffic, else why not and until when (`None`: until checks pass).
    pub fn local_verdict(
        &self,
        endpoint: usize,
        now: Instant,
    ) -> Option<(String, Option<Instant>)> {
        let state = &self.endpoints[endpoint];
        if state.reachability.is_unresolved() {
            return Some(("its name does not resolve".to_owned(), None));
        }
        if let Some(tracker) = &state.tracker
            && tracker.health() == Health::Unhealthy
        {
            let reason = tracker.reason().unwrap_or("failing its health checks");
            return Some((reason.to_owned(), None));
        }
        let outlier = self.outlier.as_ref()?;
        if !outlier.is_ejected(endpoint, now) {
            return None;
        }
        outlier
            .ejected_until(endpoint)
            .map(|(until, why)| (format!("ejected: {why}"), Some(until)))
    }

    /// How routing sees `endpoint`.
    pub fn standing(&self, endpoint: usize, now: Instant) -> Standing {
        if self.is_available(endpoint, now) {
            return Standing::Available;
        }
        match self.unreachable(endpoint, now) {
            Some(Unreachable::Unresolved) => Standing::Unresolved,
            Some(Unreachable::CheckRefused | Unreachable::TrafficRefused) => Standing::Refusing,
            None => Standing::Unavailable,
        }
    }

    /// Whether `endpoint` is still ramping up after coming back.
    pub fn is_ramping(&self, endpoint: usize, now: Instant) -> bool {
        match (&self.slow_start, self.endpoints[endpoint].returned_at) {
            (Some(slow_start), Some(at)) => slow_start.is_ramping(at, now),
            _ => false,
        }
    }

    /// The routing view as of `now`.
    pub fn routing(&self, now: Instant) -> Routing {
        let standings: Vec<Standing> = (0..self.endpoints.len())
            .map(|i| self.standing(i, now))
            .collect();
        Routing {
            view: routable(&standings, self.panic_params),
            returned_at: (0..self.endpoints.len())
                .map(|i| {
                    self.is_ramping(i, now)
                        .then(|| self.endpoints[i].returned_at)
                        .flatten()
                })
                .collect(),
        }
    }

    /// How many endpoints are available.
    pub fn available_count(&self, now: Instant) -> usize {
        (0..self.endpoints.len())
            .filter(|&i| self.is_available(i, now))
            .count()
    }

    /// The slow-start window, if slow start is on.
    pub fn slow_start_window(&self) -> Option<Duration> {
        self.slow_start.as_ref().map(SlowStart::window)
    }
}
