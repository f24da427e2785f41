//! The cluster as `/status` shows it.

use std::time::{Duration, SystemTime};

use levee_core::Health;
use levee_core::health::CheckResult;
use serde::Serialize;
use tokio::time::Instant;

use super::Cluster;

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
    /// The retry budget over its window.
    pub retry_budget: RetryBudgetStatus,
    /// How long an idempotent request now waits before it is hedged,
    /// milliseconds; absent when hedging is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hedge_after_ms: Option<f64>,
    /// Admission control; absent when the cluster has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission: Option<super::AdmissionStatus>,
    /// The circuit breaker; absent when the cluster has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<super::BreakerView>,
    /// The response cache; absent when the cluster has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheStatusView>,
    /// Its endpoints.
    pub endpoints: Vec<EndpointStatus>,
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
    /// `host:port`.
    pub address: String,
    /// `healthy`, `unhealthy` (failing its checks), `ejected` (by outlier
    /// detection), `slow-start` (back, ramping up) or `unknown` (before the
    /// first check).
    pub state: &'static str,
    /// When the state last changed (RFC 3339).
    pub since: String,
    /// Why it is in this state, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When an ejection ends (RFC 3339), while ejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejected_until: Option<String>,
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
        let control = self.control.lock();
        let routing = self.routing.load();
        ClusterStatus {
            name: self.name.clone(),
            balance: self.balancer.policy().as_str(),
            panic: routing.panic,
            routable_endpoints: routing.candidates.len(),
            retry_budget: {
                let budget = self.retry_budget(now);
                RetryBudgetStatus {
                    requests: budget.requests,
                    retries: budget.retries,
                    allowed: budget.allowed,
                    remaining: budget.remaining(),
                }
            },
            hedge_after_ms: self
                .hedge_delay(now)
                .map(|delay| delay.as_secs_f64() * 1000.0),
            admission: self.admission_status(),
            breaker: self.breaker.as_ref().map(|breaker| breaker.view(now)),
            cache: self.cache.as_ref().map(|cache| {
                let stats = cache.stats();
                CacheStatusView {
                    entries: stats.entries,
                    bytes: stats.weight,
                    max_bytes: self.settings.cache.map_or(0, |settings| settings.max_size),
                    hits: stats.hits,
                    misses: stats.misses,
                    stale: stats.stale,
                    loads: stats.loads,
                    load_errors: stats.load_errors,
                    evictions: stats.evictions,
                }
            }),
            endpoints: self
                .endpoints
                .iter()
                .zip(&self.loads)
                .zip(&control.endpoints)
                .enumerate()
                .map(|(index, ((endpoint, load), state))| {
                    let (health, since, reason, recent_checks) = match &state.tracker {
                        Some(tracker) => (
                            tracker.health(),
                            tracker.since(),
                            tracker.reason().map(str::to_owned),
                            tracker
                                .recent()
                                .map(|(at, result)| CheckView {
                                    at: wall_clock(*at, now),
                                    result: result.to_string(),
                                    passed: matches!(result, CheckResult::Passed { .. }),
                                })
                                .collect(),
                        ),
                        // Without active checks an endpoint is healthy until
                        // traffic says otherwise.
                        None => (Health::Healthy, self.created_at, None, Vec::new()),
                    };
                    let ejection = control
                        .outlier
                        .as_ref()
                        .filter(|outlier| outlier.is_ejected(index, now))
                        .and_then(|outlier| outlier.ejected_until(index));
                    let (label, reason, ejected_until) = match ejection {
                        Some((until, why)) => (
                            "ejected",
                            Some(why.to_string()),
                            Some(wall_clock_ahead(until, now)),
                        ),
                        None if health == Health::Healthy && control.is_ramping(index, now) => {
                            ("slow-start", reason, None)
                        }
                        None => (health.as_str(), reason, None),
                    };
                    EndpointStatus {
                        address: endpoint.address.clone(),
                        state: label,
                        since: wall_clock(since, now),
                        reason,
                        ejected_until,
                        recent_ejections: control
                            .outlier
                            .as_ref()
                            .map_or(0, |outlier| outlier.ejection_count(index)),
                        recent_checks,
                        in_flight: load.in_flight(),
                        idle_connections: endpoint.pool.idle_count(),
                        ewma_latency_ms: duration_ms(load.latency_estimate(now)),
                    }
                })
                .collect(),
        }
    }
}

/// Wall-clock time of a monotonic instant in the future.
fn wall_clock_ahead(at: Instant, now: Instant) -> String {
    let ahead = at.saturating_duration_since(now);
    humantime::format_rfc3339_millis(SystemTime::now() + ahead).to_string()
}

fn duration_ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
