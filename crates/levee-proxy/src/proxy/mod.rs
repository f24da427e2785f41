//! The HTTP request path, in one straight line:
//! client request → rewrite headers → pick endpoint → attempt (timeout) →
//! outcome recorded on the cluster → response streamed back.

mod body;
mod error;
mod headers;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme, Uri};
use http::{Request, Response, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use levee_core::{EndpointId, FailureKind, Outcome};
use tokio::time::Instant;

pub use body::{InFlight, UpstreamBody};
pub use error::ProxyError;

use crate::cluster::Cluster;
use crate::metrics::ListenerMetrics;
use crate::upstream::classify_error;

/// Body of every response a listener sends: a streamed upstream body or one of
/// levee's own short answers.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

static X_LEVEE_ATTEMPTS: HeaderName = HeaderName::from_static("x-levee-attempts");

/// Forwards one listener's requests to its cluster.
pub struct HttpProxy {
    /// Listener name (logs, metrics).
    pub listener: String,
    cluster: Arc<Cluster>,
    metrics: ListenerMetrics,
}

impl HttpProxy {
    /// A proxy from a listener to `cluster`.
    pub fn new(listener: String, cluster: Arc<Cluster>, metrics: ListenerMetrics) -> HttpProxy {
        HttpProxy {
            listener,
            cluster,
            metrics,
        }
    }

    /// The listener's metric series.
    pub fn metrics(&self) -> &ListenerMetrics {
        &self.metrics
    }

    /// Serve one client request.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let response = match self.forward(request, client, started).await {
            Ok(response) => response.map(Either::Left),
            Err(error) => {
                tracing::debug!(listener = %self.listener, status = %error.status(), ?error, "levee answered the request itself");
                error.into_response().map(Either::Right)
            }
        };
        self.metrics
            .record_response(response.status().as_u16(), started.elapsed().as_secs_f64());
        response
    }

    async fn forward(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
        started: Instant,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        let cluster = &self.cluster;
        let endpoint_id = cluster
            .pick(started)
            .ok_or_else(|| ProxyError::NoEndpoint {
                cluster: cluster.name.clone(),
            })?;
        let endpoint = cluster.endpoint(endpoint_id);
        let request = upstream_request(request, client, &endpoint.authority)?;

        let in_flight = InFlight::start(cluster, endpoint_id);
        let attempt_started = Instant::now();
        let result = tokio::time::timeout(
            cluster.settings.request_timeout,
            cluster.client().request(request),
        )
        .await;
        let now = Instant::now();
        let latency = now.saturating_duration_since(attempt_started);
        let response = match result {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                let kind = classify_error(&error);
                tracing::debug!(cluster = %cluster.name, endpoint = %endpoint.address, %kind, %error, "upstream error");
                return Err(self.failed(endpoint_id, kind, latency, now));
            }
            Err(_elapsed) => {
                return Err(self.failed(endpoint_id, FailureKind::Timeout, latency, now));
            }
        };
        let outcome = Outcome::response(endpoint_id, response.status().as_u16(), latency);
        cluster.record(&outcome, now);

        let (mut parts, body) = response.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .insert(X_LEVEE_ATTEMPTS.clone(), HeaderValue::from_static("1"));
        let body = UpstreamBody::new(body, in_flight, Arc::clone(cluster), endpoint_id);
        Ok(Response::from_parts(parts, body))
    }

    /// Record a failed attempt and describe it for the client.
    fn failed(
        &self,
        endpoint: EndpointId,
        kind: FailureKind,
        latency: std::time::Duration,
        now: Instant,
    ) -> ProxyError {
        self.cluster
            .record(&Outcome::failure(endpoint, kind, latency), now);
        ProxyError::Upstream {
            cluster: self.cluster.name.clone(),
            endpoint: self.cluster.endpoint(endpoint).address.clone(),
            kind,
        }
    }
}

/// Turn the client's request into the request sent upstream: absolute URI to
/// the endpoint, HTTP/1.1, hop-by-hop headers gone, forwarding headers added.
fn upstream_request(
    request: Request<Incoming>,
    client: SocketAddr,
    authority: &http::uri::Authority,
) -> Result<Request<Incoming>, ProxyError> {
    let (mut parts, body) = request.into_parts();
    // HTTP/2 clients send the host as :authority; HTTP/1.1 upstreams need Host.
    if !parts.headers.contains_key(header::HOST)
        && let Some(host) = parts.uri.authority()
        && let Ok(value) = HeaderValue::from_str(host.as_str())
    {
        parts.headers.insert(header::HOST, value);
    }
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    if parts.method == http::Method::CONNECT {
        return Err(ProxyError::BadRequest {
            reason: "CONNECT is not supported",
        });
    }
    parts.uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| ProxyError::BadRequest {
            reason: "request target cannot be forwarded",
        })?;
    parts.version = Version::HTTP_11;
    headers::remove_hop_by_hop(&mut parts.headers);
    headers::add_forwarded(&mut parts.headers, client.ip(), "http");
    Ok(Request::from_parts(parts, body))
}
