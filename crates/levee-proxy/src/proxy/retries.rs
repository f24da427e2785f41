//! What the requests of one cluster share across their attempts: the retry
//! budget, the recent response-head latencies that set the hedging delay,
//! and the counters of retries, hedges, poison requests, requests not
//! retried and client bodies that failed. One per cluster, owned by the
//! gateway beside the cluster's other stages and kept over a reload while
//! its own settings stay.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use levee_core::retry::{BudgetSnapshot, LatencyQuantile, PoisonClass, RetryBudget, hedge_delay};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::cluster::RetryBudgetStatus;
use crate::config::{HedgeSettings, RetrySettings};
use crate::events::{EventLog, NewEvent, Severity};
use crate::metrics::ClusterMetrics;
use crate::upstream::ClientBodyFailed;

/// How long a computed hedging delay is used before it is computed again.
const HEDGE_DELAY_REFRESH: Duration = Duration::from_millis(100);

/// How far back latencies count for the hedging delay.
const HEDGE_LATENCY_WINDOW: Duration = Duration::from_secs(10);

/// The retry state of one cluster.
pub struct RetryState {
    cluster: String,
    /// The settings it was built from (a reload keeps it if they stay).
    settings: RetrySettings,
    budget: RetryBudget,
    hedge: Option<HedgeState>,
    metrics: ClusterMetrics,
    events: Arc<EventLog>,
}

/// Recent head latencies and the hedging delay last computed from them.
struct HedgeState {
    settings: HedgeSettings,
    latencies: Mutex<LatencyQuantile>,
    created_at: Instant,
    /// The delay last computed (nanoseconds) and when (nanoseconds since
    /// `created_at`): a p95 sums a whole histogram, too much work for every
    /// request.
    after_ns: AtomicU64,
    computed_at_ns: AtomicU64,
}

/// Whole nanoseconds of `duration`, saturating.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl RetryState {
    /// The state of `cluster` under `settings`, empty.
    pub fn new(
        cluster: &str,
        settings: &RetrySettings,
        metrics: ClusterMetrics,
        events: Arc<EventLog>,
    ) -> RetryState {
        let now = Instant::now();
        RetryState {
            cluster: cluster.to_owned(),
            settings: settings.clone(),
            budget: RetryBudget::new(settings.budget, now),
            hedge: settings.hedge.and_then(|hedge| {
                let latencies = LatencyQuantile::new(HEDGE_LATENCY_WINDOW, now).ok()?;
                Some(HedgeState {
                    settings: hedge,
                    latencies: Mutex::new(latencies),
                    created_at: now,
                    after_ns: AtomicU64::new(nanos(hedge.ceiling)),
                    computed_at_ns: AtomicU64::new(0),
                })
            }),
            metrics,
            events,
        }
    }

    /// Whether a reload to `settings` keeps this state: the budget and the
    /// hedging rules are the same.
    pub fn keeps(&self, settings: &RetrySettings) -> bool {
        self.settings.budget == settings.budget && self.settings.hedge == settings.hedge
    }

    /// Count one client request towards the retry budget.
    pub fn record_request(&self, now: Instant) {
        self.budget.record_request(now);
    }

    /// Take one retry or hedge from the budget; false when it is spent.
    pub fn try_spend(&self, now: Instant) -> bool {
        self.budget.try_withdraw(now)
    }

    /// The budget as of `now`.
    pub fn budget(&self, now: Instant) -> BudgetSnapshot {
        self.budget.snapshot(now)
    }

    /// The budget as `/status` shows it.
    pub fn budget_status(&self, now: Instant) -> RetryBudgetStatus {
        let budget = self.budget(now);
        RetryBudgetStatus {
            requests: budget.requests,
            retries: budget.retries,
            allowed: budget.allowed,
            remaining: budget.remaining(),
        }
    }

    /// A response head arrived after `latency`: it counts towards the
    /// hedging delay. Dropped if another worker is recording one at that
    /// moment: a quantile of thousands of samples loses nothing by it, and
    /// the requests of different threads never queue on the cluster's lock.
    pub fn record_head_latency(&self, latency: Duration, now: Instant) {
        if let Some(hedge) = &self.hedge
            && let Some(mut latencies) = hedge.latencies.try_lock()
        {
            latencies.record(latency, now);
        }
    }

    /// The cluster's median response-head latency over the hedging window;
    /// `None` without hedging (no latencies are kept) or with too few.
    /// Asked only when a retry or hedge is considered.
    pub fn typical_latency(&self, now: Instant) -> Option<Duration> {
        self.hedge.as_ref()?.latencies.lock().quantile(0.5, now)
    }

    /// How long an idempotent request waits for an answer before it is
    /// hedged; `None` when hedging is off.
    pub fn hedge_delay(&self, now: Instant) -> Option<Duration> {
        let hedge = self.hedge.as_ref()?;
        let age = nanos(now.saturating_duration_since(hedge.created_at));
        let computed_at = hedge.computed_at_ns.load(Ordering::Relaxed);
        if age.saturating_sub(computed_at) >= nanos(HEDGE_DELAY_REFRESH) {
            let p95 = hedge.latencies.lock().p95(now);
            let delay = hedge_delay(p95, hedge.settings.floor, hedge.settings.ceiling);
            hedge.after_ns.store(nanos(delay), Ordering::Relaxed);
            hedge.computed_at_ns.store(age, Ordering::Relaxed);
            return Some(delay);
        }
        Some(Duration::from_nanos(hedge.after_ns.load(Ordering::Relaxed)))
    }

    /// The counters.
    pub fn metrics(&self) -> &ClusterMetrics {
        &self.metrics
    }

    /// A poison request was stopped: count and report it. `request` says
    /// which (method and path, never the query).
    pub fn report_poison(&self, request: &str, class: PoisonClass, endpoints: u32) {
        self.metrics.record_poison();
        self.events.record(NewEvent {
            kind: "poison-request",
            cluster: self.cluster.clone(),
            endpoint: None,
            from: "retrying".to_owned(),
            to: "stopped".to_owned(),
            reason: format!(
                "{request} failed the same way ({class}) on {endpoints} endpoints: not retried, and not counted against those endpoints"
            ),
            severity: Severity::Warning,
        });
    }

    /// A request's body failed on the client's side (`endpoint`: the one it
    /// was streaming to, if any). Counted on the cluster, never on the
    /// endpoint: no attempt metric, latency sample or verdict.
    pub fn record_client_body_failure(
        &self,
        endpoint: Option<&str>,
        failure: ClientBodyFailed,
        body_idle_timeout: Duration,
    ) {
        self.metrics.record_client_body_failure(failure.as_str());
        tracing::debug!(cluster = %self.cluster, endpoint, reason = %failure.reason(body_idle_timeout), "client request body failed; not counted against the endpoint");
    }
}
