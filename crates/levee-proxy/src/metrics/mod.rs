//! Prometheus metrics: the registry levee exports, and the families of the
//! concerns without a metrics file of their own (endpoints, retries,
//! listeners' responses, readiness, alerts, reloads). The others live beside
//! what they measure: `listener/metrics.rs`, `tcp/metrics.rs`,
//! `resolve/metrics.rs`, `cluster/breaker_metrics.rs`,
//! `proxy/admission/metrics.rs`, `proxy/cache/metrics.rs`; each registers
//! its families here once.
//!
//! Series for every listener and endpoint are created once at startup and
//! their handles kept beside the objects they describe, so the request path
//! only touches atomics (no label hashing or map lookups per request).

pub mod buckets;
pub(crate) mod labels;

use std::sync::Arc;

use levee_core::{FailureKind, StatusClass};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::access_log::metrics::{AccessLogFamilies, AccessLogMetrics};
use crate::cluster::breaker_metrics::{BreakerFamilies, BreakerMetrics};
use crate::listener::metrics::{ConnectionFamilies, ConnectionMetrics};
use crate::proxy::admission::metrics::{AdmissionFamilies, AdmissionMetrics};
use crate::proxy::cache::metrics::{CacheFamilies, CacheMetrics};
use crate::resolve::metrics::NameFamilies;
use crate::tcp::metrics::{TcpFamilies, TcpListenerMetrics};
use crate::tls::metrics::{TlsFamilies, TlsListenerMetrics};
use buckets::{HistogramFamily, LatencyHistogram, latency_histogram};
use labels::ClusterLabels;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    cluster: String,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointClassLabels {
    cluster: String,
    endpoint: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointErrorLabels {
    cluster: String,
    endpoint: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointStateLabels {
    cluster: String,
    endpoint: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterKindLabels {
    cluster: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterReasonLabels {
    cluster: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerClassLabels {
    listener: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    probe: String,
}

/// All of levee's metric families and the registry that exports them.
pub struct Metrics {
    registry: Registry,
    upstream_requests: Family<EndpointClassLabels, Counter>,
    upstream_latency: HistogramFamily<EndpointLabels>,
    upstream_in_flight: Family<EndpointLabels, Gauge>,
    upstream_failures: Family<EndpointErrorLabels, Counter>,
    endpoint_available: Family<EndpointLabels, Gauge>,
    endpoint_transitions: Family<EndpointStateLabels, Counter>,
    cluster_panic: Family<ClusterLabels, Gauge>,
    cluster_unreachable: Family<ClusterLabels, Gauge>,
    retries: Family<ClusterKindLabels, Counter>,
    not_retried: Family<ClusterReasonLabels, Counter>,
    poison_requests: Family<ClusterLabels, Counter>,
    client_body_failures: Family<ClusterReasonLabels, Counter>,
    responses: Family<ListenerClassLabels, Counter>,
    request_duration: HistogramFamily<ListenerLabels>,
    connections: Family<ListenerLabels, Counter>,
    tunnels_open: Family<ListenerLabels, Gauge>,
    ready: Gauge,
    readiness_state: Family<StateLabels, Gauge>,
    readiness_transitions: Family<StateLabels, Counter>,
    probe_up: Family<ProbeLabels, Gauge>,
    listener_open: Family<ListenerLabels, Gauge>,
    impaired_rejections: Family<ListenerLabels, Counter>,
    alerts_sent: Counter,
    alerts_failed: Counter,
    alerts_dropped: Counter,
    store_up: Gauge,
    store_failovers: Counter,
    config_reloads: Family<ResultLabels, Counter>,
    /// Client connections per listener (their own file).
    client_connections: ConnectionFamilies,
    /// TCP listeners' sessions (their own file).
    tcp: TcpFamilies,
    /// TLS listeners' handshakes (their own file).
    tls: TlsFamilies,
    /// Access logs (their own file).
    access_logs: AccessLogFamilies,
    /// Endpoint names (their own file).
    names: NameFamilies,
    /// Circuit breakers (their own file).
    breaker_families: BreakerFamilies,
    /// Admission control (its own file).
    admission_families: AdmissionFamilies,
    throttle_families: crate::proxy::throttle::ThrottleFamilies,
    rate_limit_families: crate::proxy::rate_limit::RateLimitFamilies,
    /// Response caches (their own file).
    cache_families: CacheFamilies,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Register every family.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("levee");
        let metrics = Metrics {
            upstream_requests: Family::default(),
            upstream_latency: Family::new_with_constructor(latency_histogram),
            upstream_in_flight: Family::default(),
            upstream_failures: Family::default(),
            endpoint_available: Family::default(),
            endpoint_transitions: Family::default(),
            cluster_panic: Family::default(),
            cluster_unreachable: Family::default(),
            retries: Family::default(),
            not_retried: Family::default(),
            poison_requests: Family::default(),
            client_body_failures: Family::default(),
            responses: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            connections: Family::default(),
            tunnels_open: Family::default(),
            ready: Gauge::default(),
            readiness_state: Family::default(),
            readiness_transitions: Family::default(),
            probe_up: Family::default(),
            listener_open: Family::default(),
            impaired_rejections: Family::default(),
            alerts_sent: Counter::default(),
            alerts_failed: Counter::default(),
            alerts_dropped: Counter::default(),
            store_up: Gauge::default(),
            store_failovers: Counter::default(),
            config_reloads: Family::default(),
            client_connections: ConnectionFamilies::default(),
            tcp: TcpFamilies::default(),
            tls: TlsFamilies::default(),
            access_logs: AccessLogFamilies::default(),
            names: NameFamilies::default(),
            breaker_families: BreakerFamilies::default(),
            admission_families: AdmissionFamilies::default(),
            throttle_families: crate::proxy::throttle::ThrottleFamilies::default(),
            rate_limit_families: crate::proxy::rate_limit::RateLimitFamilies::default(),
            cache_families: CacheFamilies::default(),
            registry: Registry::default(),
        };
        registry.register(
            "upstream_requests",
            "Upstream attempts by cluster, endpoint and status class (error = no response)",
            metrics.upstream_requests.clone(),
        );
        registry.register(
            "upstream_response_seconds",
            "Time from sending an upstream attempt to its response head or failure",
            metrics.upstream_latency.clone(),
        );
        registry.register(
            "upstream_in_flight",
            "Upstream requests whose response has not finished",
            metrics.upstream_in_flight.clone(),
        );
        registry.register(
            "upstream_failures",
            "Upstream attempts that got no usable response, by kind (connect-refused, connect-timeout, timeout, ...)",
            metrics.upstream_failures.clone(),
        );
        registry.register(
            "endpoint_available",
            "1 when the endpoint may receive traffic (passing its checks, not ejected), else 0",
            metrics.endpoint_available.clone(),
        );
        registry.register(
            "endpoint_transitions",
            "Changes of endpoint state, by the state entered",
            metrics.endpoint_transitions.clone(),
        );
        registry.register(
            "cluster_panic",
            "1 while too few endpoints are available and the cluster balances over all of them",
            metrics.cluster_panic.clone(),
        );
        registry.register(
            "cluster_unreachable_endpoints",
            "Endpoints known to take no connections (name unresolved, connection refused), left out even in panic mode",
            metrics.cluster_unreachable.clone(),
        );
        registry.register(
            "upstream_retries",
            "Extra upstream attempts by cluster and kind (retry: after a failure; hedge: beside a slow attempt)",
            metrics.retries.clone(),
        );
        registry.register(
            "not_retried",
            "Failed requests that were not tried again, by reason (not-idempotent, budget-exhausted, attempts-exhausted, ...)",
            metrics.not_retried.clone(),
        );
        registry.register(
            "poison_requests",
            "Requests that failed the same way on several endpoints and were stopped as poison",
            metrics.poison_requests.clone(),
        );
        registry.register(
            "client_body_failures",
            "Requests whose body failed on the client's side, by reason (stalled: 408 after body_idle_timeout; broken: 400), never counted against an endpoint",
            metrics.client_body_failures.clone(),
        );
        registry.register(
            "http_responses",
            "Responses sent to clients by listener and status class",
            metrics.responses.clone(),
        );
        registry.register(
            "http_request_seconds",
            "Time from receiving a client request to sending its response head",
            metrics.request_duration.clone(),
        );
        registry.register(
            "connections_accepted",
            "Client connections accepted by listener",
            metrics.connections.clone(),
        );
        registry.register(
            "tunnels_open",
            "Client connections switched to another protocol (WebSocket, Upgrade) and relayed to an endpoint",
            metrics.tunnels_open.clone(),
        );
        registry.register(
            "ready",
            "1 while /ready answers 200 (ready or degraded), 0 while impaired, starting or draining",
            metrics.ready.clone(),
        );
        registry.register(
            "readiness_state",
            "1 for the node's current readiness state (ready, degraded, impaired), 0 for the others",
            metrics.readiness_state.clone(),
        );
        registry.register(
            "readiness_transitions",
            "Changes of readiness, by the state entered",
            metrics.readiness_transitions.clone(),
        );
        registry.register(
            "probe_up",
            "1 while a dependency probe passes, 0 while it fails or has not run",
            metrics.probe_up.clone(),
        );
        registry.register(
            "listener_open",
            "1 while a traffic listener's socket is open, 0 while when_impaired = close has closed it",
            metrics.listener_open.clone(),
        );
        registry.register(
            "impaired_rejections",
            "Requests answered 503 by when_impaired = reject-all or reject-writes",
            metrics.impaired_rejections.clone(),
        );
        registry.register(
            "alerts_sent",
            "Events delivered to [[alert]] webhooks",
            metrics.alerts_sent.clone(),
        );
        registry.register(
            "alerts_failed",
            "Events a webhook did not accept after every retry",
            metrics.alerts_failed.clone(),
        );
        registry.register(
            "alerts_dropped",
            "Events not sent to webhooks because the alert queue was full",
            metrics.alerts_dropped.clone(),
        );
        registry.register(
            "store_up",
            "1 while the shared breaker store is reachable, 0 while it is degraded (also 0 when no breaker is shared)",
            metrics.store_up.clone(),
        );
        registry.register(
            "store_failovers",
            "Times the shared store came back on another server than before (a Redis Sentinel failover)",
            metrics.store_failovers.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reloads by result: ok (the new config is in force) or error (rejected; the running config stays)",
            metrics.config_reloads.clone(),
        );
        for result in ["ok", "error"] {
            let _ = metrics
                .config_reloads
                .get_or_create(&ResultLabels { result });
        }
        for state in levee_core::readiness::Readiness::ALL {
            let labels = StateLabels {
                state: state.as_str(),
            };
            let _ = metrics.readiness_state.get_or_create(&labels);
            let _ = metrics.readiness_transitions.get_or_create(&labels);
        }
        let client_connections = ConnectionFamilies::register(&mut registry);
        let tcp = TcpFamilies::register(&mut registry);
        let tls = TlsFamilies::register(&mut registry);
        let access_logs = AccessLogFamilies::register(&mut registry);
        let names = NameFamilies::register(&mut registry);
        let breaker_families = BreakerFamilies::register(&mut registry);
        let admission_families = AdmissionFamilies::register(&mut registry);
        let throttle_families = crate::proxy::throttle::ThrottleFamilies::register(&mut registry);
        let rate_limit_families =
            crate::proxy::rate_limit::RateLimitFamilies::register(&mut registry);
        let cache_families = CacheFamilies::register(&mut registry);
        Metrics {
            registry,
            client_connections,
            tcp,
            tls,
            access_logs,
            names,
            breaker_families,
            admission_families,
            throttle_families,
            rate_limit_families,
            cache_families,
            ..metrics
        }
    }

    /// Handles for the TCP series of one `tcp` listener (its connection
    /// count is in [`Metrics::listener`]'s).
    pub fn tcp_listener(&self, listener: &str) -> TcpListenerMetrics {
        self.tcp.listener(listener)
    }

    /// Handles for the TLS series of one TLS listener.
    pub fn tls_listener(&self, listener: &str) -> TlsListenerMetrics {
        self.tls.listener(listener)
    }

    /// Series of one listener's access log.
    pub fn access_log(&self, listener: &str) -> AccessLogMetrics {
        self.access_logs.listener(listener)
    }

    /// Handles for one cluster's cache series (only for clusters with a
    /// cache).
    pub fn cache(&self, cluster: &str) -> CacheMetrics {
        self.cache_families.handles(cluster)
    }

    /// Handles for one cluster's admission series (only for clusters with
    /// admission control, so others show none).
    pub fn admission(&self, cluster: &str) -> AdmissionMetrics {
        self.admission_families.handles(cluster)
    }

    /// `levee_throttled_total` of one cluster (only for clusters with
    /// throttling).
    pub fn throttled(&self, cluster: &str) -> Counter {
        self.throttle_families.rejected(cluster)
    }

    /// `levee_rate_limited_total` and `levee_rate_limit_fallbacks_total`
    /// of one cluster.
    pub fn rate_limited(&self, cluster: &str) -> (Counter, Counter) {
        self.rate_limit_families.handles(cluster)
    }

    /// Handles for one circuit breaker's series.
    pub fn breaker(&self, breaker: &str) -> BreakerMetrics {
        self.breaker_families.handles(breaker)
    }

    /// The endpoint name series.
    pub fn names(&self) -> &NameFamilies {
        &self.names
    }

    /// Handles for one listener's client connection series (`admin` for
    /// the admin listener).
    pub fn listener_connections(&self, listener: &str) -> ConnectionMetrics {
        self.client_connections.listener(listener)
    }

    /// Handles for one endpoint's series.
    pub fn endpoint(&self, cluster: &str, endpoint: &str) -> EndpointMetrics {
        let labels = EndpointLabels {
            cluster: cluster.to_owned(),
            endpoint: endpoint.to_owned(),
        };
        let by_class = StatusClass::ALL.map(|class| {
            self.upstream_requests
                .get_or_create_owned(&EndpointClassLabels {
                    cluster: cluster.to_owned(),
                    endpoint: endpoint.to_owned(),
                    class: class.as_str(),
                })
        });
        let available = self.endpoint_available.get_or_create_owned(&labels);
        available.set(1);
        EndpointMetrics {
            available,
            transitions: self.endpoint_transitions.clone(),
            by_class,
            latency: self.upstream_latency.get_or_create_owned(&labels),
            in_flight: self.upstream_in_flight.get_or_create_owned(&labels),
            failures: self.upstream_failures.clone(),
            labels,
        }
    }

    /// The panic gauge of one cluster.
    pub fn cluster_panic(&self, cluster: &str) -> Gauge {
        self.cluster_panic.get_or_create_owned(&ClusterLabels {
            cluster: cluster.to_owned(),
        })
    }

    /// The unreachable-endpoints gauge of one cluster.
    pub fn cluster_unreachable(&self, cluster: &str) -> Gauge {
        self.cluster_unreachable
            .get_or_create_owned(&ClusterLabels {
                cluster: cluster.to_owned(),
            })
    }

    /// Handles for one cluster's retry series.
    pub fn cluster(&self, cluster: &str) -> ClusterMetrics {
        let kind = |kind| {
            self.retries.get_or_create_owned(&ClusterKindLabels {
                cluster: cluster.to_owned(),
                kind,
            })
        };
        ClusterMetrics {
            retries: kind("retry"),
            hedges: kind("hedge"),
            poison: self.poison_requests.get_or_create_owned(&ClusterLabels {
                cluster: cluster.to_owned(),
            }),
            not_retried: self.not_retried.clone(),
            client_body_failures: self.client_body_failures.clone(),
            cluster: cluster.to_owned(),
        }
    }

    /// Handles for one listener's series.
    pub fn listener(&self, listener: &str) -> ListenerMetrics {
        let labels = ListenerLabels {
            listener: listener.to_owned(),
        };
        ListenerMetrics {
            by_class: StatusClass::ALL.map(|class| {
                self.responses.get_or_create_owned(&ListenerClassLabels {
                    listener: listener.to_owned(),
                    class: class.as_str(),
                })
            }),
            duration: self.request_duration.get_or_create_owned(&labels),
            connections: self.connections.get_or_create_owned(&labels),
            tunnels_open: self.tunnels_open.get_or_create_owned(&labels),
        }
    }

    /// Count a config reload that was applied (`ok`) or rejected.
    pub fn record_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.config_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Record the node's readiness (and, if `changed`, count the change).
    pub fn record_readiness(
        &self,
        state: levee_core::readiness::Readiness,
        ready: bool,
        changed: bool,
    ) {
        self.ready.set(i64::from(ready));
        for each in levee_core::readiness::Readiness::ALL {
            let labels = StateLabels {
                state: each.as_str(),
            };
            self.readiness_state
                .get_or_create(&labels)
                .set(i64::from(each == state));
            if changed && each == state {
                self.readiness_transitions.get_or_create(&labels).inc();
            }
        }
    }

    /// The `levee_store_up` gauge.
    pub fn store_up(&self) -> Gauge {
        self.store_up.clone()
    }

    /// `levee_store_failovers_total`.
    pub fn store_failovers(&self) -> Counter {
        self.store_failovers.clone()
    }

    /// The `levee_probe_up` series of one probe.
    pub fn probe_up(&self, probe: &str) -> Gauge {
        self.probe_up.get_or_create_owned(&ProbeLabels {
            probe: probe.to_owned(),
        })
    }

    /// The `levee_listener_open` series of one listener (created open).
    pub fn listener_open(&self, listener: &str) -> Gauge {
        let gauge = self.listener_open.get_or_create_owned(&ListenerLabels {
            listener: listener.to_owned(),
        });
        gauge.set(1);
        gauge
    }

    /// The `levee_impaired_rejections` series of one listener.
    pub fn impaired_rejections(&self, listener: &str) -> Counter {
        self.impaired_rejections
            .get_or_create_owned(&ListenerLabels {
                listener: listener.to_owned(),
            })
    }

    /// Webhook counters: sent, failed after retries, dropped (queue full).
    pub fn alert_counters(&self) -> (Counter, Counter, Counter) {
        (
            self.alerts_sent.clone(),
            self.alerts_failed.clone(),
            self.alerts_dropped.clone(),
        )
    }

    /// Prometheus text exposition of every series.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Shared handle to the metrics.
pub type SharedMetrics = Arc<Metrics>;

/// Pre-created retry series of one cluster.
#[derive(Clone)]
pub struct ClusterMetrics {
    retries: Counter,
    hedges: Counter,
    poison: Counter,
    /// Reasons are looked up by label when a request gives up: rare.
    not_retried: Family<ClusterReasonLabels, Counter>,
    /// Looked up by label too: rare.
    client_body_failures: Family<ClusterReasonLabels, Counter>,
    cluster: String,
}

impl ClusterMetrics {
    /// Retries so far.
    pub fn retries_total(&self) -> u64 {
        self.retries.get()
    }

    /// Hedges so far.
    pub fn hedges_total(&self) -> u64 {
        self.hedges.get()
    }

    /// One retry after a failed attempt.
    pub fn record_retry(&self) {
        self.retries.inc();
    }

    /// One hedge beside a slow attempt.
    pub fn record_hedge(&self) {
        self.hedges.inc();
    }

    /// One poison request stopped.
    pub fn record_poison(&self) {
        self.poison.inc();
    }

    /// A failed request not tried again, for `reason` (a `NotRetried` label).
    pub fn record_not_retried(&self, reason: &'static str) {
        self.not_retried
            .get_or_create(&ClusterReasonLabels {
                cluster: self.cluster.clone(),
                reason,
            })
            .inc();
    }

    /// A request whose body failed on the client's side, for `reason`
    /// (`stalled`, `broken`).
    pub fn record_client_body_failure(&self, reason: &'static str) {
        self.client_body_failures
            .get_or_create(&ClusterReasonLabels {
                cluster: self.cluster.clone(),
                reason,
            })
            .inc();
    }
}

/// Pre-created series of one upstream endpoint.
#[derive(Clone)]
pub struct EndpointMetrics {
    by_class: [Counter; 6],
    latency: LatencyHistogram,
    in_flight: Gauge,
    /// Failure kinds are few and rare: looked up by label when they happen.
    failures: Family<EndpointErrorLabels, Counter>,
    available: Gauge,
    transitions: Family<EndpointStateLabels, Counter>,
    labels: EndpointLabels,
}

impl EndpointMetrics {
    /// Count one attempt and its latency.
    pub fn record_attempt(&self, class: StatusClass, latency_seconds: f64) {
        self.by_class[class.index()].inc();
        self.latency.observe(latency_seconds);
    }

    /// Count one failed attempt by kind.
    pub fn record_failure(&self, kind: FailureKind) {
        self.failures
            .get_or_create(&EndpointErrorLabels {
                cluster: self.labels.cluster.clone(),
                endpoint: self.labels.endpoint.clone(),
                kind: kind.as_str(),
            })
            .inc();
    }

    /// Count a change of state (`healthy`, `unhealthy`, `ejected`, ...) and
    /// whether the endpoint may now take traffic.
    pub fn record_state(&self, state: &'static str, available: bool) {
        self.transitions
            .get_or_create(&EndpointStateLabels {
                cluster: self.labels.cluster.clone(),
                endpoint: self.labels.endpoint.clone(),
                state,
            })
            .inc();
        self.available.set(i64::from(available));
    }

    /// The in-flight gauge (incremented and decremented around each request).
    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }
}

/// Pre-created series of one listener.
#[derive(Clone)]
pub struct ListenerMetrics {
    by_class: [Counter; 6],
    duration: LatencyHistogram,
    connections: Counter,
    tunnels_open: Gauge,
}

impl ListenerMetrics {
    /// Count a response sent to a client.
    pub fn record_response(&self, status: u16, seconds: f64) {
        self.by_class[StatusClass::of_status(status).index()].inc();
        self.duration.observe(seconds);
    }

    /// Count an accepted connection.
    pub fn record_connection(&self) {
        self.connections.inc();
    }

    /// Connections switched to another protocol (WebSocket) and relayed.
    pub fn tunnels_open(&self) -> &Gauge {
        &self.tunnels_open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_series_by_cluster_endpoint_and_class() {
        let metrics = Metrics::new();
        let endpoint = metrics.endpoint("app", "127.0.0.1:8000");
        endpoint.record_attempt(StatusClass::Success, 0.002);
        endpoint.record_failure(FailureKind::ConnectRefused);
        metrics.listener("web").record_response(502, 0.001);
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"levee_upstream_requests_total{cluster="app",endpoint="127.0.0.1:8000",class="2xx"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"kind="connect-refused"} 1"#), "{text}");
        assert!(
            text.contains(r#"levee_http_responses_total{listener="web",class="5xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("levee_upstream_response_seconds_bucket"),
            "{text}"
        );
    }
}
