//! A cluster at run time: its endpoints, their load, the balancer and the
//! pooled client. Every attempt's [`Outcome`] comes back here, which is where
//! health, outlier detection and breakers will plug in.

use std::sync::Arc;

use http::HeaderValue;
use levee_core::{AttemptResult, Balancer, EndpointId, EndpointLoad, Outcome};
use serde::Serialize;
use tokio::time::Instant;

use crate::config::ClusterSettings;
use crate::metrics::{EndpointMetrics, Metrics};
use crate::upstream::{EndpointPool, PoolSettings};

/// One upstream endpoint of a cluster.
pub struct Endpoint {
    /// `host:port` as configured (used in logs, metrics and `/status`).
    pub address: String,
    /// `Host` for requests that arrive without one (HTTP/1.0 clients).
    pub host_header: HeaderValue,
    /// Keep-alive connections to this endpoint.
    pub pool: Arc<EndpointPool>,
    /// This endpoint's metric series.
    pub metrics: EndpointMetrics,
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
    /// Endpoints the balancer may pick. For now all of them; health checks
    /// and ejection will narrow this set.
    candidates: Vec<usize>,
    balancer: Balancer,
}

/// Why a cluster could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cluster {cluster:?}: endpoint {endpoint:?} cannot be used as a Host header")]
pub struct ClusterBuildError {
    cluster: String,
    endpoint: String,
}

impl Cluster {
    /// Build the runtime cluster from validated settings.
    pub fn new(
        settings: &ClusterSettings,
        metrics: &Metrics,
    ) -> Result<Cluster, ClusterBuildError> {
        let now = Instant::now();
        let pool_settings = PoolSettings {
            connect_timeout: settings.connect_timeout,
            idle_timeout: settings.idle_timeout,
            max_idle: settings.max_idle_per_endpoint,
        };
        let mut endpoints = Vec::with_capacity(settings.endpoints.len());
        for address in &settings.endpoints {
            let text = address.to_string();
            let host_header = HeaderValue::from_str(&text).map_err(|_| ClusterBuildError {
                cluster: settings.name.clone(),
                endpoint: text.clone(),
            })?;
            endpoints.push(Endpoint {
                metrics: metrics.endpoint(&settings.name, &text),
                pool: EndpointPool::new(address.host.clone(), address.port, pool_settings),
                host_header,
                address: text,
            });
        }
        let loads = endpoints
            .iter()
            .map(|_| EndpointLoad::new(settings.ewma_decay, now))
            .collect();
        Ok(Cluster {
            name: settings.name.clone(),
            settings: settings.clone(),
            candidates: (0..endpoints.len()).collect(),
            balancer: Balancer::new(settings.balance),
            endpoints,
            loads,
        })
    }

    /// Choose the endpoint for the next attempt.
    pub fn pick(&self, now: Instant) -> Option<EndpointId> {
        self.balancer
            .pick(&self.loads, &self.candidates, now, &mut rand::rng())
            .map(EndpointId)
    }

    /// The endpoint with this id.
    pub fn endpoint(&self, id: EndpointId) -> &Endpoint {
        &self.endpoints[id.0]
    }

    /// Load signals of this endpoint.
    pub fn load(&self, id: EndpointId) -> &EndpointLoad {
        &self.loads[id.0]
    }

    /// Feed one attempt's outcome to everything that learns from traffic.
    pub fn record(&self, outcome: &Outcome, now: Instant) {
        let endpoint = &self.endpoints[outcome.endpoint.0];
        self.loads[outcome.endpoint.0].observe_latency(outcome.latency, now);
        endpoint
            .metrics
            .record_attempt(outcome.status_class(), outcome.latency.as_secs_f64());
        if let AttemptResult::Failed(kind) = outcome.result {
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

    /// A response body failed after its head had been forwarded.
    pub fn record_body_failure(&self, id: EndpointId, kind: levee_core::FailureKind) {
        let endpoint = &self.endpoints[id.0];
        endpoint.metrics.record_failure(kind);
        tracing::debug!(cluster = %self.name, endpoint = %endpoint.address, kind = %kind, "upstream response body failed");
    }

    /// Snapshot for `/status`.
    pub fn status(&self, now: Instant) -> ClusterStatus {
        ClusterStatus {
            name: self.name.clone(),
            balance: self.balancer.policy().as_str(),
            endpoints: self
                .endpoints
                .iter()
                .zip(&self.loads)
                .map(|(endpoint, load)| EndpointStatus {
                    address: endpoint.address.clone(),
                    in_flight: load.in_flight(),
                    idle_connections: endpoint.pool.idle_count(),
                    ewma_latency_ms: load.latency_estimate(now).as_secs_f64() * 1000.0,
                })
                .collect(),
        }
    }
}

/// A cluster in `/status`.
#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    /// Cluster name.
    pub name: String,
    /// Balancing policy.
    pub balance: &'static str,
    /// Its endpoints.
    pub endpoints: Vec<EndpointStatus>,
}

/// An endpoint in `/status`.
#[derive(Debug, Serialize)]
pub struct EndpointStatus {
    /// `host:port`.
    pub address: String,
    /// Requests whose response has not finished.
    pub in_flight: usize,
    /// Keep-alive connections waiting in the pool.
    pub idle_connections: usize,
    /// Peak-EWMA latency estimate, milliseconds.
    pub ewma_latency_ms: f64,
}
