//! The cluster as `/status` shows it.

use std::time::{Duration, SystemTime};

use levee_core::Health;
use levee_core::health::CheckResult;
use serde::Serialize;
use tokio::time::Instant;

use super::Cluster;
use super::control::Control;

/// A cluster in `/status`.
#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    /// Cluster name.
    pub name: String,
    /// Balancing policy.
    pub balance: &'static str,
    /// True while too few endpoints are available and levee balances over
    /// all of them.
    pub panic: bool,
    /// Endpoints the balancer currently picks from.
    pub routable_endpoints: usize,
    /// Endpoints known to take no connections (name unresolved, connection
    /// refused): left out even in panic mode.
    pub unreachable_endpoints: usize,
    /// The retry budget over its window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudgetStatus>,
    /// How long an idempotent request now waits before it is hedged,
    /// milliseconds; absent when hedging is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hedge_after_ms: Option<f64>,
    /// Admission control; absent when the cluster has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission: Option<AdmissionStatus>,
    /// The circuit breaker; absent when the cluster has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<super::BreakerView>,
    /// The response cache; absent when the cluster has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheStatusView>,
    /// Its endpoints.
    pub endpoints: Vec<EndpointStatus>,
}

/// Admission control in `/status`.
#[derive(Debug, Serialize)]
pub struct AdmissionStatus {
    /// Requests holding a slot.
    pub in_flight: usize,
    /// Requests waiting for one.
    pub queued: usize,
    /// Of those, per priority class.
    pub queued_by_class: QueuedByClass,
    /// Slots in all now.
    pub limit: usize,
    /// Whether the limit adapts to latency.
    pub adaptive: bool,
}

/// Requests waiting for an admission slot, per priority class.
#[derive(Debug, Serialize)]
pub struct QueuedByClass {
    /// `critical` requests.
    pub critical: usize,
    /// `default` requests.
    pub default: usize,
    /// `sheddable` requests.
    pub sheddable: usize,
}

/// The response cache in `/status`.
#[derive(Debug, Serialize)]
pub struct CacheStatusView {
    /// Responses stored.
    pub entries: u64,
    /// Bytes they weigh, of `max_size`.
    pub bytes: u64,
    /// `max_size`.
    pub max_bytes: u64,
    /// Fresh answers.
    pub hits: u64,
    /// Answers that needed a fill.
    pub misses: u64,
    /// Stale answers (during a refresh, or while the upstream failed).
    pub stale: u64,
    /// Upstream fills.
    pub loads: u64,
    /// Fills that failed.
    pub load_errors: u64,
    /// Entries evicted to stay within `max_size`.
    pub evictions: u64,
}

/// The retry budget in `/status`.
#[derive(Debug, Serialize)]
pub struct RetryBudgetStatus {
    /// Client requests counted over the window.
    pub requests: u64,
    /// Retries and hedges spent over the window.
    pub retries: u64,
    /// Retries and hedges the window allows in all.
    pub allowed: u64,
    /// Retries and hedges still available now.
    pub remaining: u64,
}

/// An endpoint in `/status`.
#[derive(Debug, Serialize)]
pub struct EndpointStatus {
    /// `ip:port` it connects to (the name itself while it has no address).
    pub address: String,
    /// The configured `host:port` when the address came from a name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `healthy`, `unhealthy` (failing its checks), `ejected` (by outlier
    /// detection), `unresolved` (its name does not resolve), `going-away`
    /// (it refused a connection, answered a check with a draining status or
    /// a response with `connection: close`; out until a check passes),
    /// `slow-start` (back, ramping up) or `unknown` (before the first
    /// check).
    pub state: &'static str,
    /// When the state last changed (RFC 3339).
    pub since: String,
    /// Why it is in this state, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When an ejection ends (RFC 3339), while ejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejected_until: Option<String>,
    /// Why it is known to take no connections, if it is ("refused the
    /// connection of its last check"): then panic mode leaves it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    /// How many times it was ejected recently (ejections grow with it).
    pub recent_ejections: u32,
    /// Most recent active check results, oldest first.
    pub recent_checks: Vec<CheckView>,
    /// Requests whose response has not finished.
    pub in_flight: usize,
    /// Keep-alive connections waiting in the pool.
    pub idle_connections: usize,
    /// Peak-EWMA latency estimate, milliseconds.
    pub ewma_latency_ms: f64,
    /// What the fleet says of it (`share_health`): `state` above is this
    /// instance's own view, this the fleet's and who voted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<super::FleetHealthView>,
}

/// One active check result in `/status`.
#[derive(Debug, Serialize)]
pub struct CheckView {
    /// When it completed (RFC 3339).
    pub at: String,
    /// `passed` or the failure in words.
    pub result: String,
    /// Whether it passed.
    pub passed: bool,
}

/// Wall-clock time of a monotonic instant in the past.
fn wall_clock(at: Instant, now: Instant) -> String {
    let ago = now.saturating_duration_since(at);
    let then = SystemTime::now()
        .checked_sub(ago)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    humantime::format_rfc3339_millis(then).to_string()
}

impl Cluster {
    /// Snapshot for `/status`.
    pub fn status(&self, now: Instant) -> ClusterStatus {
        let control = self.control();
        let routing = self.routing.load();
        ClusterStatus {
            name: self.name.clone(),
            balance: self.balancer.policy().as_str(),
            panic: routing.view.panic,
            routable_endpoints: routing.view.candidates.len(),
            unreachable_endpoints: routing.view.unreachable,
            // Filled in by whoever holds the cluster's retry state.
            retry_budget: None,
            hedge_after_ms: None,
            // Filled in by whoever holds the cluster's admission stage.
            admission: None,
            // Filled in by whoever holds the cluster's breaker stage.
            breaker: None,
            // Filled in by whoever holds the cluster's cache stage.
            cache: None,
            endpoints: self
                .endpoints
                .iter()
                .zip(&self.loads)
                .zip(&control.endpoints)
                .enumerate()
                .map(|(index, ((endpoint, load), state))| {
                    let current = self.state_of(&control, index, now);
                    EndpointStatus {
                        address: endpoint.address.clone(),
                        name: endpoint.name.clone(),
                        state: current.label,
                        since: wall_clock(current.since, now),
                        reason: current.reason,
                        ejected_until: current
                            .ejected_until
                            .map(|until| wall_clock_ahead(until, now)),
                        unreachable: control.unreachable(index, now).map(|why| why.to_string()),
                        recent_ejections: control
                            .outlier
                            .as_ref()
                            .map_or(0, |outlier| outlier.ejection_count(index)),
                        recent_checks: state
                            .tracker
                            .iter()
                            .flat_map(|tracker| tracker.recent())
                            .map(|(at, result)| CheckView {
                                at: wall_clock(*at, now),
                                result: result.to_string(),
                                passed: matches!(result, CheckResult::Passed { .. }),
                            })
                            .collect(),
                        in_flight: load.in_flight(),
                        idle_connections: endpoint.pool.idle_count(),
                        ewma_latency_ms: duration_ms(load.latency_estimate(now)),
                        fleet: state.fleet_seen.clone(),
                    }
                })
                .collect(),
        }
    }

    /// Every endpoint that may not take traffic now, with its state
    /// (`"no-such-host.invalid:80 unresolved"`), for readiness reasons.
    pub fn unavailable_endpoints(&self, now: Instant) -> Vec<String> {
        let control = self.control();
        (0..self.endpoints.len())
            .filter(|&index| !control.is_available(index, now))
            .map(|index| {
                let state = self.state_of(&control, index, now);
                format!("{} {}", self.endpoints[index].address, state.label)
            })
            .collect()
    }

    /// The state of endpoint `index` as `/status` names it, and why. A name
    /// that does not resolve comes first (nothing else can be known of an
    /// endpoint without an address), then an ejection, then the checks.
    fn state_of(&self, control: &Control, index: usize, now: Instant) -> EndpointState {
        if let Some((why, since)) = &self.endpoints[index].unresolved {
            return EndpointState {
                label: "unresolved",
                since: *since,
                reason: Some(format!("the name does not resolve: {why}")),
                ejected_until: None,
            };
        }
        let (health, since, reason) = match &control.endpoints[index].tracker {
            Some(tracker) => {
                // While unhealthy, the latest check says why now (a node
                // that timed out and then crashed is "connection refused"),
                // not the transition that made it unhealthy.
                let latest_failure = tracker
                    .recent()
                    .last()
                    .filter(|(_, result)| !matches!(result, CheckResult::Passed { .. }))
                    .map(|(_, result)| format!("latest check: {result}"));
                let reason = match (tracker.health(), latest_failure) {
                    (Health::Unhealthy, Some(latest)) => Some(latest),
                    _ => tracker.reason().map(str::to_owned),
                };
                (tracker.health(), tracker.since(), reason)
            }
            // Without active checks an endpoint is healthy until traffic says
            // otherwise.
            None => (Health::Healthy, self.created_at, None),
        };
        if let Some(going) = &control.endpoints[index].departure.going
            && health != Health::Unhealthy
        {
            return EndpointState {
                label: "going-away",
                since: going.since,
                reason: Some(format!("{}; out until a health check passes", going.reason)),
                ejected_until: None,
            };
        }
        let ejection = control
            .outlier
            .as_ref()
            .filter(|outlier| outlier.is_ejected(index, now))
            .and_then(|outlier| outlier.ejected_until(index));
        match ejection {
            Some((until, why)) => EndpointState {
                label: "ejected",
                since,
                reason: Some(why.to_string()),
                ejected_until: Some(until),
            },
            None if health == Health::Healthy && control.is_ramping(index, now) => EndpointState {
                label: "slow-start",
                since,
                reason,
                ejected_until: None,
            },
            None => EndpointState {
                label: health.as_str(),
                since,
                reason,
                ejected_until: None,
            },
        }
    }
}

/// One endpoint's state, as `/status` shows it.
struct EndpointState {
    label: &'static str,
    since: Instant,
    reason: Option<String>,
    ejected_until: Option<Instant>,
}

/// Wall-clock time of a monotonic instant in the future.
fn wall_clock_ahead(at: Instant, now: Instant) -> String {
    let ahead = at.saturating_duration_since(now);
    humantime::format_rfc3339_millis(SystemTime::now() + ahead).to_string()
}

fn duration_ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
