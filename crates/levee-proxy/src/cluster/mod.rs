//! A cluster at run time: its endpoints (what each configured address
//! stands for, `members.rs`), their health, ejections, load, pools and
//! breakers, and the balancer that picks among them. Every attempt's
//! [`Outcome`] comes back here. What is the cluster's as a whole rather than
//! its endpoints' (cache, admission, the cluster breaker, the retry budget
//! and hedging latencies) is a stage of the request path, owned by the
//! gateway beside the cluster (`route::ClusterStages`).

mod breaker;
pub mod breaker_metrics;
mod control;
mod fleet;
mod fleet_health;
pub mod going_away;
mod members;
mod passive;
mod status;
pub mod traffic;

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;
use levee_core::health::{CheckResult, Health, HealthTracker};
use levee_core::outlier::{Blame, Ejection, OutlierDetector, PanicParams, SlowStart, admit, blame};
use levee_core::{AttemptResult, Balancer, EndpointId, EndpointLoad, Outcome};
use parking_lot::Mutex;
use tokio::time::Instant;

pub use breaker::{BreakerCall, BreakerView, ClusterBreaker, EndpointBreakerCall};
pub use control::Routing;
pub use fleet::{FleetLink, FleetStore, StoreStatus, spawn_fleet_sync};
pub use fleet_health::{FleetHealthView, FleetOut, spawn_health_sync};
pub use members::{Member, members};
pub use status::{
    AdmissionStatus, CacheStatusView, CheckView, ClusterStatus, EndpointStatus, QueuedByClass,
    RetryBudgetStatus,
};

use crate::config::ClusterSettings;
use crate::events::{EventLog, NewEvent, Severity};
use crate::metrics::{EndpointMetrics, Metrics};
use crate::tls::{UpstreamTls, UpstreamTlsError};
use crate::upstream::{EndpointPool, EndpointTls, PoolSettings};
use control::{Control, EndpointControl};

/// Weight of an endpoint at the very start of its slow start.
const SLOW_START_MIN_WEIGHT: f64 = 0.1;
/// How often a pick refused by slow start is drawn again before it is kept.
const SLOW_START_REDRAWS: usize = 3;

/// One upstream endpoint of a cluster.
pub struct Endpoint {
    /// `ip:port` it connects to, as configured or as its name resolved; the
    /// name itself while it has no address (used in logs, metrics and
    /// `/status`).
    pub address: String,
    /// The configured `host:port` when the address came from a name.
    pub name: Option<String>,
    /// The address to connect to and check; `None` while its name does not
    /// resolve (it is never picked then).
    pub socket: Option<std::net::SocketAddr>,
    /// For a name without addresses: why, and since when.
    pub unresolved: Option<(String, Instant)>,
    /// `Host` for requests that arrive without one (HTTP/1.0 clients) and
    /// for health checks: the configured `host:port`.
    pub host_header: HeaderValue,
    /// Keep-alive connections to this endpoint.
    pub pool: Arc<EndpointPool>,
    /// This endpoint's metric series.
    pub metrics: EndpointMetrics,
    /// Wakes its health check loop for a check now (it said it is going
    /// away).
    pub check_now: Arc<tokio::sync::Notify>,
}

/// A cluster ready to serve requests.
pub struct Cluster {
    /// Cluster name from the config.
    pub name: String,
    /// Settings it was built from (timeouts are read per request).
    pub settings: ClusterSettings,
    endpoints: Vec<Endpoint>,
    /// Load per endpoint, same order as `endpoints` (a separate slice because
    /// that is what the balancer reads).
    loads: Vec<EndpointLoad>,
    /// What the balancer may pick from; replaced on every state change and
    /// read lock-free by every request.
    routing: ArcSwap<Routing>,
    /// Health and routing state, changed by checks (and outcomes). Take it
    /// with [`Cluster::control`], which hands over the tallied successes.
    control: Mutex<Control>,
    /// Successes for outlier detection, counted without `control`'s lock.
    passive: passive::PassiveTally,
    balancer: Balancer,
    /// Where state changes are reported.
    events: Arc<EventLog>,
    /// When the cluster was built (the "since" of endpoints never checked).
    created_at: Instant,
    /// 1 while in panic mode.
    panic_gauge: prometheus_client::metrics::gauge::Gauge,
    /// Endpoints known to take no connections (left out even in panic).
    unreachable_gauge: prometheus_client::metrics::gauge::Gauge,
    /// Ramp for endpoints coming back (read by `pick`).
    slow_start: Option<SlowStart>,
    /// One breaker per endpoint, same order as `endpoints`; empty unless
    /// `per_endpoint` is on. Local to this process, never shared.
    pub endpoint_breakers: Vec<Arc<ClusterBreaker>>,
    /// Its client requests, for the dashboard's charts (kept by a rebuild).
    pub traffic: Arc<traffic::Traffic>,
}

/// Why a cluster could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClusterBuildError {
    /// An endpoint's `host:port` is not a valid `Host` header.
    #[error("cluster {cluster:?}: endpoint {endpoint:?} cannot be used as a Host header")]
    HostHeader {
        /// Cluster name.
        cluster: String,
        /// The endpoint as configured.
        endpoint: String,
    },
    /// Its `tls` could not be set up (a file, the system's roots).
    #[error("cluster {cluster:?}: tls: {source}")]
    Tls {
        /// Cluster name.
        cluster: String,
        /// What went wrong.
        #[source]
        source: UpstreamTlsError,
    },
    /// TLS needs a name to verify, and the endpoint's host is none.
    #[error(
        "cluster {cluster:?}: endpoint {endpoint:?} has no host TLS can verify; set tls.server_name"
    )]
    TlsName {
        /// Cluster name.
        cluster: String,
        /// The endpoint as configured.
        endpoint: String,
    },
}

impl Cluster {
    /// Build the runtime cluster from validated settings.
    pub fn new(
        settings: &ClusterSettings,
        members: Vec<Member>,
        metrics: &Metrics,
        events: Arc<EventLog>,
    ) -> Result<Cluster, ClusterBuildError> {
        Cluster::build(settings, members, metrics, events, None)
    }

    /// The cluster under new settings (a config reload), carrying over what
    /// this one learned. An endpoint that stays (same `host:port`) keeps its
    /// health, ejection, refusal history, latency estimate, requests in
    /// flight, pooled connections and breaker; an added endpoint starts in
    /// slow start; a removed one is simply not there (requests on it finish
    /// on this cluster, which its holders keep alive until then). (The
    /// cluster's stages carry over on their own: `gateway/clusters.rs`.)
    pub fn continued(
        &self,
        settings: &ClusterSettings,
        members: Vec<Member>,
        metrics: &Metrics,
        events: Arc<EventLog>,
    ) -> Result<Cluster, ClusterBuildError> {
        Cluster::build(settings, members, metrics, events, Some(self))
    }

    /// Whether this cluster has exactly these members (else a rebuild is
    /// due: a name resolves to other addresses, or starts to).
    pub fn has_members(&self, members: &[Member]) -> bool {
        self.endpoints.len() == members.len()
            && self
                .endpoints
                .iter()
                .zip(members)
                .all(|(endpoint, member)| {
                    member.same_as(&endpoint.address, endpoint.name.as_deref())
                })
    }

    fn build(
        settings: &ClusterSettings,
        members: Vec<Member>,
        metrics: &Metrics,
        events: Arc<EventLog>,
        previous: Option<&Cluster>,
    ) -> Result<Cluster, ClusterBuildError> {
        let now = Instant::now();
        let pool_settings = PoolSettings {
            protocol: settings.upstream_protocol,
            max_concurrent_streams: settings.max_concurrent_streams,
            connect_timeout: settings.connect_timeout,
            idle_timeout: settings.idle_timeout,
            max_idle: settings.max_idle_per_endpoint,
            max_response_headers: settings.max_response_headers,
            retry_idle_close: settings.retry.idle_close,
            source_address: settings.source_address,
        };
        let before = previous.map(|previous| &previous.settings);
        let same = |changed: fn(&ClusterSettings, &ClusterSettings) -> bool| {
            before.is_some_and(|before| !changed(before, settings))
        };
        // TLS clusters get new pools at every rebuild, so that a reload
        // reads their CA and client certificate files again.
        let same_pools = settings.tls.is_none()
            && same(|a, b| {
                a.tls != b.tls
                    || a.upstream_protocol != b.upstream_protocol
                    || a.max_concurrent_streams != b.max_concurrent_streams
                    || a.connect_timeout != b.connect_timeout
                    || a.idle_timeout != b.idle_timeout
                    || a.max_idle_per_endpoint != b.max_idle_per_endpoint
                    || a.max_response_headers != b.max_response_headers
                    || a.retry.idle_close != b.retry.idle_close
                    || a.source_address != b.source_address
            });
        // Where each endpoint was in the previous cluster, if it was.
        let old_index: Vec<Option<usize>> = members
            .iter()
            .map(|member| {
                previous.and_then(|previous| {
                    previous
                        .endpoints
                        .iter()
                        .position(|e| member.same_as(&e.address, e.name.as_deref()))
                })
            })
            .collect();
        let tls = match &settings.tls {
            Some(tls) => Some(Arc::new(
                UpstreamTls::new(&settings.name, tls, settings.upstream_protocol.alpn()).map_err(
                    |source| ClusterBuildError::Tls {
                        cluster: settings.name.clone(),
                        source,
                    },
                )?,
            )),
            None => None,
        };
        let mut endpoints = Vec::with_capacity(members.len());
        for (member, old) in members.into_iter().zip(&old_index) {
            let host_header = HeaderValue::from_str(&member.configured).map_err(|_| {
                ClusterBuildError::HostHeader {
                    cluster: settings.name.clone(),
                    endpoint: member.configured.clone(),
                }
            })?;
            let endpoint_tls = match &tls {
                Some(tls) => {
                    let host = member
                        .configured
                        .rsplit_once(':')
                        .map_or(member.configured.as_str(), |(host, _port)| host);
                    let name = tls
                        .name_for(host)
                        .ok_or_else(|| ClusterBuildError::TlsName {
                            cluster: settings.name.clone(),
                            endpoint: member.configured.clone(),
                        })?;
                    Some(EndpointTls {
                        tls: Arc::clone(tls),
                        name,
                    })
                }
                None => None,
            };
            let kept = old
                .zip(previous)
                .map(|(old, previous)| &previous.endpoints[old]);
            // The pool connects to the resolved address; a name without one
            // is never picked, so its pool is never asked.
            let (pool_host, pool_port) = match member.socket {
                Some(socket) => (socket.ip().to_string(), socket.port()),
                None => (member.configured.clone(), 0),
            };
            endpoints.push(Endpoint {
                metrics: metrics.endpoint(&settings.name, &member.address),
                pool: match kept {
                    Some(kept) if same_pools => Arc::clone(&kept.pool),
                    _ => EndpointPool::new(
                        pool_host,
                        pool_port,
                        pool_settings,
                        endpoint_tls,
                        Some(metrics.endpoint(&settings.name, &member.address)),
                    ),
                },
                host_header,
                check_now: Arc::new(tokio::sync::Notify::new()),
                address: member.address,
                name: member.name,
                socket: member.socket,
                unresolved: member.unresolved,
            });
        }
        let loads = old_index
            .iter()
            .map(|old| match old.zip(previous) {
                Some((old, previous)) => previous.loads[old].continued(settings.ewma_decay, now),
                None => EndpointLoad::new(settings.ewma_decay, now),
            })
            .collect();
        let previous_control = previous.map(|previous| previous.control());
        let same_checks =
            same(|a, b| a.health.as_ref().map(|h| h.params) != b.health.as_ref().map(|h| h.params));
        let control = Control {
            endpoints: old_index
                .iter()
                .map(|old| {
                    let kept = old
                        .zip(previous_control.as_ref())
                        .map(|(old, control)| &control.endpoints[old]);
                    EndpointControl {
                        tracker: match kept.and_then(|kept| kept.tracker.clone()) {
                            Some(tracker) if same_checks => Some(tracker),
                            _ => settings
                                .health
                                .as_ref()
                                .map(|health| HealthTracker::new(health.params, now)),
                        },
                        // An endpoint added by a reload ramps up like one
                        // coming back (only at a reload, not at start).
                        returned_at: match kept {
                            Some(kept) => kept.returned_at,
                            None => previous.map(|_| now),
                        },
                        reachability: kept
                            .map(|kept| kept.reachability.clone())
                            .unwrap_or_default(),
                        fleet_out: kept.and_then(|kept| kept.fleet_out.clone()),
                        fleet_seen: kept.and_then(|kept| kept.fleet_seen.clone()),
                        departure: kept.map(|kept| kept.departure.clone()).unwrap_or_default(),
                    }
                })
                .collect(),
            outlier: settings.outlier.clone().map(|params| {
                let mut detector = OutlierDetector::new(params, endpoints.len(), now);
                let old_detector = previous_control
                    .as_ref()
                    .and_then(|control| control.outlier.as_ref());
                for (index, old) in old_index.iter().enumerate() {
                    if let Some(history) = old
                        .zip(old_detector)
                        .and_then(|(old, detector)| detector.history(old))
                    {
                        detector.restore(index, history, now);
                    }
                }
                detector
            }),
            // Validation has checked the range; an impossible value falls back
            // to the default rather than failing a running gateway.
            panic_params: PanicParams::new(settings.panic_threshold_percent).unwrap_or_default(),
            slow_start: (!settings.slow_start.is_zero())
                .then(|| SlowStart::new(settings.slow_start, SLOW_START_MIN_WEIGHT).ok())
                .flatten(),
            // Carried so that a reload does not announce a panic that was
            // already going on.
            panic: previous_control
                .as_ref()
                .is_some_and(|control| control.panic),
        };
        drop(previous_control);
        let mut control = control;
        for (index, endpoint) in endpoints.iter().enumerate() {
            control.record_resolution(index, endpoint.socket.is_some());
        }
        report_names(&settings.name, &endpoints, previous, &events, now, &control);
        let routing = control.routing(now);
        let control_slow_start = control.slow_start;
        let same_breaker =
            same(|a, b| a.breaker != b.breaker || a.breaker_fleet != b.breaker_fleet);
        let endpoint_breakers = match &settings.breaker {
            Some(params) if settings.breaker_per_endpoint => endpoints
                .iter()
                .zip(&old_index)
                .map(|(endpoint, old)| {
                    let kept = old
                        .zip(previous)
                        .and_then(|(old, previous)| previous.endpoint_breakers.get(old));
                    match kept {
                        Some(kept) if same_breaker => Arc::clone(kept),
                        _ => {
                            let name = format!("{}/{}", settings.name, endpoint.address);
                            Arc::new(ClusterBreaker::new(
                                &settings.name,
                                Some(&endpoint.address),
                                params.clone(),
                                metrics.breaker(&name),
                                Arc::clone(&events),
                                now,
                            ))
                        }
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Cluster {
            name: settings.name.clone(),
            settings: settings.clone(),
            routing: ArcSwap::from_pointee(routing),
            control: Mutex::new(control),
            passive: passive::PassiveTally::new(endpoints.len()),
            balancer: Balancer::new(settings.balance),
            endpoints,
            loads,
            events: Arc::clone(&events),
            created_at: previous.map_or(now, |previous| previous.created_at),
            traffic: previous
                .map_or_else(Default::default, |previous| Arc::clone(&previous.traffic)),
            panic_gauge: metrics.cluster_panic(&settings.name),
            unreachable_gauge: metrics.cluster_unreachable(&settings.name),
            slow_start: control_slow_start,
            endpoint_breakers,
        })
    }

    /// Choose the endpoint for a request's first attempt.
    pub fn pick(&self, now: Instant) -> Option<EndpointId> {
        let routing = self.routing.load();
        self.pick_among(&routing, &routing.view.candidates, now)
    }

    /// Choose an endpoint for a retry, hedge or TCP reconnect: a routable
    /// endpoint not in `tried`, an available one first in panic mode. `None`
    /// when every one has been tried.
    pub fn pick_other(&self, now: Instant, tried: &[EndpointId]) -> Option<EndpointId> {
        let routing = self.routing.load();
        if tried.is_empty() {
            return self.pick_among(&routing, &routing.view.candidates, now);
        }
        // Only retries get here, so the small allocation is off the hot path.
        let untried = routing
            .view
            .untried(|candidate| tried.iter().any(|id| id.0 == candidate));
        self.pick_among(&routing, &untried, now)
    }

    fn pick_among(
        &self,
        routing: &Routing,
        candidates: &[usize],
        now: Instant,
    ) -> Option<EndpointId> {
        let mut rng = rand::rng();
        let mut picked = self.balancer.pick(&self.loads, candidates, now, &mut rng)?;
        // Slow start: an endpoint back in service takes a growing share; a
        // refused pick is drawn again (a few times, then kept).
        if let Some(slow_start) = &self.slow_start {
            for _ in 0..SLOW_START_REDRAWS {
                match routing.returned_at.get(picked).copied().flatten() {
                    Some(returned) if !admit(slow_start.weight(returned, now), &mut rng) => {
                        picked = self.balancer.pick(&self.loads, candidates, now, &mut rng)?;
                    }
                    _ => break,
                }
            }
        }
        Some(EndpointId(picked))
    }

    /// The endpoint with this id.
    pub fn endpoint(&self, id: EndpointId) -> &Endpoint {
        &self.endpoints[id.0]
    }

    /// Load signals of this endpoint.
    pub fn load(&self, id: EndpointId) -> &EndpointLoad {
        &self.loads[id.0]
    }

    /// Feed the outcome of an attempt that ended without a response (or any
    /// outcome that is final at once) to everything that learns from traffic.
    pub fn record(&self, outcome: &Outcome, now: Instant) {
        self.record_passive(outcome, now);
        self.record_head(outcome, now);
    }

    /// Latency and metrics of an attempt whose response head arrived. Its
    /// verdict for outlier detection waits for the end of the body
    /// ([`Cluster::record_passive`]): a node that breaks every body midway
    /// must not be forgiven by the 200 in each head.
    pub fn record_head(&self, outcome: &Outcome, now: Instant) {
        let endpoint = &self.endpoints[outcome.endpoint.0];
        self.loads[outcome.endpoint.0].observe_latency(outcome.latency, now);
        endpoint
            .metrics
            .record_attempt(outcome.status_class(), outcome.latency.as_secs_f64());
        if let AttemptResult::Failed(kind) = outcome.result {
            if kind == levee_core::FailureKind::ConnectRefused {
                self.record_refusal(outcome, now);
                self.going_away(
                    outcome.endpoint,
                    going_away::Sign::Refused,
                    "refused a connection",
                    now,
                );
            }
            endpoint.metrics.record_failure(kind);
            tracing::debug!(
                cluster = %self.name,
                endpoint = %endpoint.address,
                kind = %kind,
                phase = %outcome.phase,
                "upstream attempt failed"
            );
        }
    }

    /// A request's connection was refused: in panic mode the endpoint is
    /// left out for a while (see [`levee_core::outlier::Reachability`]).
    fn record_refusal(&self, outcome: &Outcome, now: Instant) {
        let mut control = self.control();
        if control.record_refusal(outcome.endpoint.0, outcome, now) {
            self.refresh_routing(&mut control, now);
        }
    }

    /// Why no endpoint can be picked, when the cluster can say: each
    /// endpoint known to take no connections and why (the first few).
    pub fn no_endpoint_reason(&self, now: Instant) -> Option<String> {
        const NAMED: usize = 3;
        let control = self.control();
        let unreachable: Vec<String> = (0..self.endpoints.len())
            .filter_map(|index| {
                let why = control.unreachable(index, now)?;
                Some(format!("{} {why}", self.endpoints[index].address))
            })
            .collect();
        if unreachable.is_empty() {
            return None;
        }
        let mut reason = unreachable
            .iter()
            .take(NAMED)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if unreachable.len() > NAMED {
            reason.push_str(&format!("; and {} more", unreachable.len() - NAMED));
        }
        Some(reason)
    }

    /// Passive outlier detection on an attempt's final outcome.
    pub fn record_passive(&self, outcome: &Outcome, now: Instant) {
        let Some(params) = &self.settings.outlier else {
            return;
        };
        let endpoint = outcome.endpoint.0;
        match blame(outcome, params.count_other_5xx()) {
            Blame::Neutral => return,
            // The common case, without the lock (see `passive`).
            Blame::Success if self.passive.try_success(endpoint, outcome.latency) => return,
            Blame::Success | Blame::Failure => {}
        }
        let mut control = self.control();
        if let Some(ejection) = control.record_outcome(outcome, now) {
            self.report_ejection(&control, &ejection, now);
            self.refresh_routing(&mut control, now);
        }
        let streak = control
            .outlier
            .as_ref()
            .is_some_and(|detector| detector.in_failure_streak(endpoint));
        self.passive.set_streak(endpoint, streak);
    }

    /// The cluster's changing state, locked, with the successes tallied
    /// without the lock handed to outlier detection first: whatever reads
    /// or judges an endpoint under the lock sees all of them.
    fn control(&self) -> parking_lot::MutexGuard<'_, Control> {
        let mut control = self.control.lock();
        if let Some(detector) = control.outlier.as_mut() {
            self.passive.drain_into(detector, Instant::now());
        }
        control
    }

    /// Periodic work (about once a second): ejections that expired, latency
    /// outliers, slow starts that finished.
    pub fn tick(&self, now: Instant) {
        let mut control = self.control();
        let (ejections, returns) = control.tick(now);
        for ejection in &ejections {
            self.report_ejection(&control, ejection, now);
        }
        for back in &returns {
            let Some(endpoint) = self.endpoints.get(back.endpoint) else {
                continue;
            };
            // Back from the ejection to whatever its checks say now: an
            // endpoint whose checks fail goes back to unhealthy, not healthy.
            let health = control.endpoints[back.endpoint]
                .tracker
                .as_ref()
                .map_or(Health::Healthy, |tracker| tracker.health());
            let ramp = match control.slow_start_window() {
                Some(window) if health == Health::Healthy => {
                    format!("; slow start over {}", humantime::format_duration(window))
                }
                _ => String::new(),
            };
            endpoint
                .metrics
                .record_state("returned", control.is_available(back.endpoint, now));
            self.events.record(NewEvent {
                kind: "endpoint-returned",
                cluster: self.name.clone(),
                endpoint: Some(endpoint.address.clone()),
                from: "ejected".to_owned(),
                to: health.as_str().to_owned(),
                reason: format!("ejection expired{ramp}"),
                severity: Severity::Info,
            });
        }
        for breaker in &self.endpoint_breakers {
            breaker.tick(now);
        }
        // Slow starts end and ejections expire with time alone: always rebuild.
        self.refresh_routing(&mut control, now);
    }

    fn report_ejection(&self, control: &Control, ejection: &Ejection, now: Instant) {
        let Some(endpoint) = self.endpoints.get(ejection.endpoint) else {
            return;
        };
        endpoint.metrics.record_state("ejected", false);
        self.events.record(NewEvent {
            kind: "endpoint-ejected",
            cluster: self.name.clone(),
            endpoint: Some(endpoint.address.clone()),
            from: "healthy".to_owned(),
            to: "ejected".to_owned(),
            reason: format!(
                "{} (ejected for {}, ejection #{}; {} of {} endpoints available)",
                ejection.reason,
                humantime::format_duration(ejection.duration),
                ejection.count,
                control.available_count(now),
                self.endpoints.len()
            ),
            severity: Severity::Error,
        });
    }

    /// A response body failed after its head had been forwarded.
    pub fn record_body_failure(&self, id: EndpointId, kind: levee_core::FailureKind) {
        let endpoint = &self.endpoints[id.0];
        endpoint.metrics.record_failure(kind);
        tracing::debug!(cluster = %self.name, endpoint = %endpoint.address, kind = %kind, "upstream response body failed");
    }

    /// How many endpoints may take traffic now (not failing checks, not
    /// ejected): what `[readiness] min_healthy` counts.
    pub fn available_count(&self, now: Instant) -> usize {
        self.control().available_count(now)
    }

    /// Whether the endpoint configured as `address` may take traffic now;
    /// `None` if the cluster has no such endpoint.
    pub fn is_endpoint_available(&self, address: &str, now: Instant) -> Option<bool> {
        // A name stands for each of its addresses: available if one is.
        let control = self.control();
        let mut found = None;
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            if endpoint.address == address || endpoint.name.as_deref() == Some(address) {
                let available = control.is_available(index, now);
                found = Some(found.unwrap_or(false) || available);
            }
        }
        found
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether the cluster has no endpoint (validation forbids it).
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Record an active check result for `endpoint`; on a change of health,
    /// report it and rebuild the routing view.
    pub fn record_check(&self, endpoint: EndpointId, result: CheckResult, now: Instant) {
        let mut control = self.control();
        let departure = &mut control.endpoints[endpoint.0].departure;
        if self.departure_after_check(departure, endpoint.0, &result, now) {
            self.refresh_routing(&mut control, now);
        }
        let Some(transition) = control.record_check(endpoint.0, result, now) else {
            return;
        };
        let address = &self.endpoints[endpoint.0].address;
        self.endpoints[endpoint.0].metrics.record_state(
            transition.to.as_str(),
            control.is_available(endpoint.0, now),
        );
        self.events.record(NewEvent {
            kind: "endpoint-health",
            cluster: self.name.clone(),
            endpoint: Some(address.clone()),
            from: transition.from.to_string(),
            to: transition.to.to_string(),
            reason: transition.reason.clone(),
            severity: match transition.to {
                levee_core::Health::Unhealthy => Severity::Error,
                _ => Severity::Info,
            },
        });
        self.refresh_routing(&mut control, now);
    }

    /// How long to wait before checking `endpoint` again (faster while its
    /// state is changing).
    pub fn next_check_delay(&self, endpoint: EndpointId) -> std::time::Duration {
        let control = self.control();
        match (
            &control.endpoints[endpoint.0].tracker,
            &self.settings.health,
        ) {
            (Some(tracker), _) => tracker.next_delay(&mut rand::rng()),
            (None, Some(health)) => health.params.interval(),
            (None, None) => std::time::Duration::from_secs(5),
        }
    }

    /// Rebuild the routing view after a state change, reporting panic mode
    /// when it starts or ends.
    fn refresh_routing(&self, control: &mut Control, now: Instant) {
        let routing = control.routing(now);
        let view = &routing.view;
        self.unreachable_gauge
            .set(i64::try_from(view.unreachable).unwrap_or(i64::MAX));
        if view.panic != control.panic {
            control.panic = view.panic;
            self.panic_gauge.set(i64::from(view.panic));
            let available = control.available_count(now);
            let action = match (view.panic, view.unreachable) {
                (false, _) => "routing to available endpoints only".to_owned(),
                (true, 0) => "spreading over all endpoints".to_owned(),
                (true, unreachable) => format!(
                    "spreading over all endpoints but {unreachable} that take no connections (refused or unresolved)"
                ),
            };
            self.events.record(NewEvent {
                kind: "cluster-panic",
                cluster: self.name.clone(),
                endpoint: None,
                from: if view.panic { "normal" } else { "panic" }.to_owned(),
                to: if view.panic { "panic" } else { "normal" }.to_owned(),
                reason: format!(
                    "{available} of {} endpoints available (panic below {}%): {action}",
                    self.endpoints.len(),
                    self.settings.panic_threshold_percent,
                ),
                severity: if view.panic {
                    Severity::Error
                } else {
                    Severity::Info
                },
            });
        }
        self.routing.store(Arc::new(routing));
    }
}

/// Names that start or stop having addresses with this build (at start: the
/// ones that have none): logged, counted and reported as
/// `endpoint-resolution` events. Changes among the addresses of a name that
/// keeps some are the name table's news (`gateway::names`).
fn report_names(
    cluster: &str,
    endpoints: &[Endpoint],
    previous: Option<&Cluster>,
    events: &EventLog,
    now: Instant,
    control: &Control,
) {
    let before = |configured: &str| -> Option<bool> {
        let previous = previous?;
        let mut found = None;
        for endpoint in &previous.endpoints {
            let of_name = endpoint.name.as_deref() == Some(configured)
                || (endpoint.unresolved.is_some() && endpoint.address == configured);
            if of_name {
                found = Some(endpoint.socket.is_some());
            }
        }
        found
    };
    let mut reported: Vec<&str> = Vec::new();
    for (index, endpoint) in endpoints.iter().enumerate() {
        let configured = endpoint.name.as_deref().unwrap_or(&endpoint.address);
        if reported.contains(&configured) {
            continue;
        }
        let resolved = endpoint.socket.is_some();
        let was = before(configured);
        let is_name = endpoint.name.is_some() || endpoint.unresolved.is_some();
        // A name that resolves at start, as expected, is no news.
        if !is_name || was == Some(resolved) || (was.is_none() && resolved) {
            continue;
        }
        reported.push(configured);
        let from = match was {
            None => "unknown",
            Some(true) => "resolved",
            Some(false) => "unresolved",
        };
        let to = if resolved { "resolved" } else { "unresolved" };
        endpoint
            .metrics
            .record_state(to, control.is_available(index, now));
        let (reason, severity) = match &endpoint.unresolved {
            Some((why, _)) => (
                format!(
                    "the name does not resolve: {why}; not routable until it resolves (looked up again within {})",
                    humantime::format_duration(crate::resolve::RETRY_FAILED)
                ),
                Severity::Error,
            ),
            None => {
                let addresses: Vec<&str> = endpoints
                    .iter()
                    .filter(|e| e.name.as_deref() == Some(configured))
                    .map(|e| e.address.as_str())
                    .collect();
                (
                    format!("the name resolves to {}", addresses.join(", ")),
                    Severity::Info,
                )
            }
        };
        tracing::info!(cluster, endpoint = configured, from, to, %reason, "endpoint name");
        events.record(NewEvent {
            kind: "endpoint-resolution",
            cluster: cluster.to_owned(),
            endpoint: Some(configured.to_owned()),
            from: from.to_owned(),
            to: to.to_owned(),
            reason,
            severity,
        });
    }
}
