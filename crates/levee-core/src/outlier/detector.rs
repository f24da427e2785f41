//! Passive outlier detection for one cluster: eject endpoints that real
//! traffic shows to be failing or much slower than their peers.
//!
//! Active health checks see what a probe sees; outlier detection sees what
//! users see. A node that accepts connections but hangs, answers 503, or
//! answers in 1.5 s while its peers take 50 ms passes a shallow health check
//! and still hurts every request it gets. The proxy feeds each attempt's
//! [`Outcome`] to [`OutlierDetector::record`] and calls
//! [`OutlierDetector::tick`] about once a second; both return what changed.

use std::mem;
use std::time::Duration;

use tokio::time::Instant;

use super::blame::{Blame, blame, blame_reason};
use super::params::OutlierParams;
use super::reason::{Ejection, EjectionReason, Return};
use super::window::Window;
use crate::outcome::Outcome;

/// Fewest successful responses in the window before an endpoint's latency is
/// judged or used in the cluster median (the detector uses the larger of this
/// and `min_requests`): a mean of two requests says more about those requests
/// than about the node.
pub const LATENCY_MIN_SAMPLES: u32 = 5;

/// The outlier detector of one cluster, whose endpoints are indexed `0..n`.
#[derive(Debug)]
pub struct OutlierDetector {
    params: OutlierParams,
    endpoints: Vec<EndpointState>,
    /// Ejections that `record` found expired before `tick` did; the next
    /// `tick` reports them so that no return goes unannounced.
    pending_returns: Vec<Return>,
    /// Ejections refused because of `max_ejected_percent` or the last
    /// endpoint rule (a metric: the cluster is sicker than ejections show).
    suppressed: u64,
}

/// What the detector knows about one endpoint.
#[derive(Clone, Debug)]
struct EndpointState {
    /// Blamed failures since the last success (neutral outcomes skip).
    consecutive: u32,
    /// What the current streak's failures were ("timeouts"), or "failures"
    /// when it mixed kinds, so a reason never claims more than it saw.
    streak_what: &'static str,
    /// Requests, failures and success latency over the window.
    window: Window,
    /// The current ejection, until `tick` (or `record`) sees it expire.
    ejection: Option<Active>,
    /// Recent ejections, counting the current one: the multiplier of the
    /// next ejection's duration. Decays while the endpoint is in service.
    recent_ejections: u32,
    /// Since when the endpoint has been earning forgiveness (its last return,
    /// advanced by one `base_ejection` per step forgiven).
    forgive_from: Instant,
}

#[derive(Clone, Debug)]
struct Active {
    until: Instant,
    reason: EjectionReason,
}

/// One endpoint's numbers as the detector sees them, for `/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointStats {
    /// Blamed failures since the last success.
    pub consecutive_failures: u32,
    /// Blamed requests (successes and failures) in the window.
    pub requests: u32,
    /// Failures among them.
    pub failures: u32,
    /// Mean latency of the successes in the window.
    pub mean_latency: Option<Duration>,
}

impl EndpointState {
    fn new(params: &OutlierParams, now: Instant) -> EndpointState {
        EndpointState {
            consecutive: 0,
            streak_what: "failures",
            window: Window::new(params.window(), now),
            ejection: None,
            recent_ejections: 0,
            forgive_from: now,
        }
    }

    fn is_ejected(&self, now: Instant) -> bool {
        self.ejection
            .as_ref()
            .is_some_and(|active| now < active.until)
    }

    /// Forget the streak and the window. Done at ejection, so that a verdict
    /// is not reached twice on the same evidence, and again at return, so
    /// that what happened while ejected (stragglers, panic-mode traffic) does
    /// not re-eject the endpoint on its first request back.
    fn fresh_start(&mut self) {
        self.consecutive = 0;
        self.streak_what = "failures";
        self.window.clear();
    }

    /// Forgive one ejection per `base` spent in service, as Envoy decrements
    /// its ejection multiplier: a node that flapped once an hour ago should
    /// not get a long ejection for its next blip, while a node that fails
    /// again soon after each return is kept out longer and longer.
    fn forgive(&mut self, base: Duration, now: Instant) {
        if self.ejection.is_some() || self.recent_ejections == 0 {
            return;
        }
        let elapsed = now.saturating_duration_since(self.forgive_from);
        let steps = elapsed.as_nanos() / base.as_nanos().max(1);
        if steps >= u128::from(self.recent_ejections) {
            self.recent_ejections = 0;
            self.forgive_from = now;
        } else {
            // steps < recent_ejections <= u32::MAX, and base × steps <= elapsed.
            let steps = steps as u32;
            self.recent_ejections -= steps;
            self.forgive_from += base * steps;
        }
    }
}

/// What a detector knows of one endpoint (its streak, window, ejection and
/// how often it was ejected lately), to carry into a detector rebuilt for a
/// new config, so that a reload neither returns an ejected endpoint early
/// nor forgets that it keeps failing.
#[derive(Clone, Debug)]
pub struct EndpointHistory(EndpointState);

impl OutlierDetector {
    /// What the detector knows of `endpoint`.
    pub fn history(&self, endpoint: usize) -> Option<EndpointHistory> {
        self.endpoints.get(endpoint).cloned().map(EndpointHistory)
    }

    /// Take over what another detector knew of an endpoint, now `endpoint`
    /// here. Its window starts afresh if this detector's window is another
    /// length.
    pub fn restore(&mut self, endpoint: usize, history: EndpointHistory, now: Instant) {
        let Some(slot) = self.endpoints.get_mut(endpoint) else {
            return;
        };
        let mut state = history.0;
        if !state.window.covers(self.params.window()) {
            state.window = Window::new(self.params.window(), now);
        }
        *slot = state;
    }

    /// A detector for a cluster of `endpoints` endpoints, all in service.
    pub fn new(params: OutlierParams, endpoints: usize, now: Instant) -> OutlierDetector {
        let states = (0..endpoints)
            .map(|_| EndpointState::new(&params, now))
            .collect();
        OutlierDetector {
            params,
            endpoints: states,
            pending_returns: Vec::new(),
            suppressed: 0,
        }
    }

    /// The parameters in force.
    pub fn params(&self) -> &OutlierParams {
        &self.params
    }

    /// Number of endpoints in the cluster.
    pub fn endpoints(&self) -> usize {
        self.endpoints.len()
    }

    /// Record one attempt on `outcome.endpoint` and return the ejection it
    /// triggers, if any. Outcomes for an endpoint outside `0..endpoints()` are
    /// ignored.
    ///
    /// Outcomes for an ejected endpoint (stragglers in flight at ejection,
    /// panic-mode traffic) are counted in [`stats`](Self::stats) but cannot
    /// eject it again, and are forgotten when it returns.
    ///
    /// Feed one outcome per attempt, the final one: an attempt whose headers
    /// arrived and whose body then broke should be recorded once, as
    /// [`FailureKind::BodyInterrupted`](crate::FailureKind::BodyInterrupted).
    /// Recording the head as a success first would reset the streak every
    /// time, and a node that breaks every body would never reach it.
    pub fn record(&mut self, outcome: &Outcome, now: Instant) -> Option<Ejection> {
        let index = outcome.endpoint.0;
        self.expire(index, now);
        let blame = blame(outcome, self.params.count_other_5xx());
        let state = self.endpoints.get_mut(index)?;
        state.window.record(blame, outcome.latency, now);
        match blame {
            Blame::Failure => {
                let what = blame_reason(outcome);
                state.streak_what = if state.consecutive == 0 || state.streak_what == what {
                    what
                } else {
                    "failures"
                };
                state.consecutive = state.consecutive.saturating_add(1);
            }
            Blame::Success => state.consecutive = 0,
            Blame::Neutral => {}
        }
        if blame != Blame::Failure || state.is_ejected(now) {
            return None;
        }
        let reason = failure_verdict(&self.params, state, now)?;
        self.eject(index, reason, now)
    }

    /// Record `count` successes on `endpoint` whose latencies add up to
    /// `latency_ns`, as if each had been recorded at `now`: for a caller
    /// that tallies successes without taking the lock around the detector
    /// (every request ends in one) and hands them over before anything
    /// reads or judges the endpoint. A success never ejects; like
    /// [`record`](Self::record) with a success, it ends a failure streak.
    pub fn record_successes(&mut self, endpoint: usize, count: u32, latency_ns: u64, now: Instant) {
        if count == 0 {
            return;
        }
        self.expire(endpoint, now);
        if let Some(state) = self.endpoints.get_mut(endpoint) {
            state.window.record_successes(count, latency_ns, now);
            state.consecutive = 0;
        }
    }

    /// Whether `endpoint` is in a streak of failures (a success would end
    /// it, so it must be recorded in order).
    pub fn in_failure_streak(&self, endpoint: usize) -> bool {
        self.endpoints
            .get(endpoint)
            .is_some_and(|state| state.consecutive > 0)
    }

    /// Periodic work; call it about once a second. Ends the ejections that
    /// have run out (the returns), forgives old ejections, and looks for
    /// latency outliers, which are judged on the whole cluster at once rather
    /// than per request.
    pub fn tick(&mut self, now: Instant) -> (Vec<Ejection>, Vec<Return>) {
        for index in 0..self.endpoints.len() {
            self.expire(index, now);
        }
        let returns = mem::take(&mut self.pending_returns);
        let base = self.params.base_ejection();
        for state in &mut self.endpoints {
            state.forgive(base, now);
        }
        let ejections = self.latency_outliers(now);
        (ejections, returns)
    }

    /// Whether `endpoint` is ejected at `now` (exact even between ticks: an
    /// ejection that has run out is not in force, though `tick` has yet to
    /// report its return). False for an unknown endpoint.
    pub fn is_ejected(&self, endpoint: usize, now: Instant) -> bool {
        self.endpoints
            .get(endpoint)
            .is_some_and(|state| state.is_ejected(now))
    }

    /// The end and reason of `endpoint`'s current ejection. An ejection that
    /// has run out stays here until `tick` reports its return; route with
    /// [`is_ejected`](Self::is_ejected).
    pub fn ejected_until(&self, endpoint: usize) -> Option<(Instant, &EjectionReason)> {
        let active = self.endpoints.get(endpoint)?.ejection.as_ref()?;
        Some((active.until, &active.reason))
    }

    /// How many recent ejections `endpoint` has (the multiplier of its next
    /// ejection, minus one); forgiveness is applied by `tick`.
    pub fn ejection_count(&self, endpoint: usize) -> u32 {
        self.endpoints
            .get(endpoint)
            .map_or(0, |state| state.recent_ejections)
    }

    /// Endpoints ejected at `now`.
    pub fn ejected(&self, now: Instant) -> usize {
        self.endpoints
            .iter()
            .filter(|state| state.is_ejected(now))
            .count()
    }

    /// The most endpoints that may be ejected at once.
    ///
    /// `max_ejected_percent` of the cluster, rounded down, but at least one
    /// when the percentage is above zero (else a 10% cap would silently
    /// disable detection on every cluster smaller than ten, as Envoy found),
    /// and never all of them: the last endpoint in service always stays,
    /// since a failing node still serves some requests and no node serves
    /// none. With 3 endpoints at 50%: 1; with 2 at 50%: 1; with 1: 0.
    pub fn max_ejected(&self) -> usize {
        let n = self.endpoints.len();
        let percent = usize::from(self.params.max_ejected_percent());
        let by_share = if percent == 0 {
            0
        } else {
            (n * percent / 100).max(1)
        };
        by_share.min(n.saturating_sub(1))
    }

    /// Ejections refused so far because the cap was reached (each refused
    /// verdict counts, so a node failing fast while the cap holds it in
    /// service counts many times).
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// What the detector currently counts for `endpoint`.
    pub fn stats(&self, endpoint: usize, now: Instant) -> Option<EndpointStats> {
        let state = self.endpoints.get(endpoint)?;
        let totals = state.window.totals(now);
        Some(EndpointStats {
            consecutive_failures: state.consecutive,
            requests: totals.requests,
            failures: totals.failures,
            mean_latency: totals.mean_latency,
        })
    }

    /// End `index`'s ejection if it has run out, and queue its return.
    fn expire(&mut self, index: usize, now: Instant) {
        let Some(state) = self.endpoints.get_mut(index) else {
            return;
        };
        let Some(at) = state.ejection.as_ref().map(|active| active.until) else {
            return;
        };
        if at > now {
            return;
        }
        state.ejection = None;
        // Forgiveness counts from the end of the ejection, not from whenever
        // a tick happened to notice it.
        state.forgive_from = at;
        state.fresh_start();
        self.pending_returns.push(Return {
            endpoint: index,
            at,
        });
    }

    /// Eject `index` unless the cap forbids it.
    ///
    /// The duration grows with the endpoint's recent ejections (base × count,
    /// capped at `max_ejection`): a node that fails again right after coming
    /// back is probably still broken, and each return costs the requests that
    /// find out.
    fn eject(&mut self, index: usize, reason: EjectionReason, now: Instant) -> Option<Ejection> {
        if self.ejected(now) >= self.max_ejected() {
            self.suppressed += 1;
            return None;
        }
        let base = self.params.base_ejection();
        let max = self.params.max_ejection();
        let state = &mut self.endpoints[index];
        state.forgive(base, now);
        let count = state.recent_ejections.saturating_add(1);
        let duration = base.saturating_mul(count).min(max);
        // max_ejection is validated to at most a day: no overflow.
        let until = now + duration;
        state.recent_ejections = count;
        state.ejection = Some(Active {
            until,
            reason: reason.clone(),
        });
        state.fresh_start();
        Some(Ejection {
            endpoint: index,
            reason,
            until,
            duration,
            count,
        })
    }

    /// Eject endpoints whose mean latency over the window is more than
    /// `latency_factor` × the median of the other endpoints' means, and above
    /// `latency_floor`.
    ///
    /// The mean of successful responses (4xx included: the node answered)
    /// is used rather than a percentile because it needs two counters per
    /// bucket and it is pulled up by the slow tail, which is the symptom.
    /// Comparing with the others' median rather than a fixed bound means a
    /// cluster that is slow as a whole (a slow shared database) ejects
    /// nobody: moving traffic around would not help. The floor keeps
    /// "3 ms is 3× 1 ms" from ejecting anything. A hung node shows up as
    /// timeouts (consecutive failures); this rule catches the node that is
    /// slow but answers. Worst offenders are ejected first, so when the cap
    /// allows only one it is the slowest.
    fn latency_outliers(&mut self, now: Instant) -> Vec<Ejection> {
        let Some(factor) = self.params.latency_factor() else {
            return Vec::new();
        };
        let min_samples = self.params.min_requests().max(LATENCY_MIN_SAMPLES);
        let means: Vec<Option<Duration>> = self
            .endpoints
            .iter()
            .map(|state| {
                let totals = state.window.totals(now);
                let judged = !state.is_ejected(now) && totals.latency_samples >= min_samples;
                totals.mean_latency.filter(|_| judged)
            })
            .collect();
        let mut sorted: Vec<Duration> = means.iter().flatten().copied().collect();
        if sorted.len() < 2 {
            return Vec::new();
        }
        sorted.sort_unstable();
        let floor = self.params.latency_floor();
        let mut outliers: Vec<(usize, Duration, Duration)> = means
            .iter()
            .enumerate()
            .filter_map(|(index, mean)| {
                let mean = (*mean)?;
                let median = median_without(&sorted, mean);
                let slow = mean > floor && mean.as_secs_f64() > factor * median.as_secs_f64();
                slow.then_some((index, mean, median))
            })
            .collect();
        let ratio = |&(_, mean, median): &(usize, Duration, Duration)| {
            mean.as_secs_f64() / median.as_secs_f64()
        };
        // A stable sort: equal ratios keep endpoint order.
        outliers.sort_by(|a, b| ratio(b).total_cmp(&ratio(a)));
        outliers
            .into_iter()
            .filter_map(|(index, latency, cluster_median)| {
                let reason = EjectionReason::LatencyOutlier {
                    latency,
                    cluster_median,
                };
                self.eject(index, reason, now)
            })
            .collect()
    }
}

/// The ejection `state`'s failures call for, if any. Consecutive failures are
/// checked first: the more specific reason reads better in a log.
fn failure_verdict(
    params: &OutlierParams,
    state: &EndpointState,
    now: Instant,
) -> Option<EjectionReason> {
    let threshold = params.consecutive_failures();
    if threshold > 0 && state.consecutive >= threshold {
        return Some(EjectionReason::ConsecutiveFailures {
            count: state.consecutive,
            what: state.streak_what,
        });
    }
    // The rate is judged over a window with a minimum volume: a node failing
    // every other request never fails five times in a row, and two failures
    // out of three requests are not a 67% failure rate.
    let threshold = params.failure_rate()?;
    let totals = state.window.totals(now);
    if totals.requests < params.min_requests() {
        return None;
    }
    let rate = f64::from(totals.failures) / f64::from(totals.requests);
    (rate >= threshold).then_some(EjectionReason::FailureRate {
        rate,
        requests: totals.requests,
        window: params.window(),
    })
}

/// Median of `sorted` with one occurrence of `value` (which it holds) left
/// out; `sorted` has at least two elements.
fn median_without(sorted: &[Duration], value: Duration) -> Duration {
    let skip = sorted.binary_search(&value).unwrap_or(0);
    let at = |k: usize| if k < skip { sorted[k] } else { sorted[k + 1] };
    let len = sorted.len() - 1;
    if len % 2 == 1 {
        at(len / 2)
    } else {
        (at(len / 2 - 1) + at(len / 2)) / 2
    }
}

#[cfg(test)]
mod tests;
