//! The HTTP request path, as a line of stages, each handed the next:
//! listener → route (`route/`: cluster, timeout, retry policy and the
//! cluster's stages, chosen once per request) → cache (`cache/`, when the
//! route uses one; it gets the rest of the line as [`cache::Upstream`]) →
//! admission (`admission/`: a slot or 503) → cluster breaker → rewrite
//! headers → body held for replay (if small; a client that stops sending it
//! gets 408) → attempts (`attempts.rs`: pick an endpoint, per-try timeout,
//! retry or hedge elsewhere, within the cluster's budget in `retries.rs`) →
//! outcomes recorded on the cluster → response streamed back.
//!
//! The stages are built once per cluster when the config is loaded (and
//! again at a reload, which keeps those whose settings stay); a request
//! reads them from its route, so a reload is a swap of routers.

pub mod admission;
mod attempts;
pub mod body;
pub mod cache;
pub mod client;
mod deadline;
pub mod error;
pub mod grpc;
mod headers;
pub mod rate_limit;
pub mod retries;
pub mod switched;
pub mod throttle;
pub mod tunnel;
mod upstream_request;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::header::HeaderName;
use http::{Request, Response};
use http_body_util::Either;
use levee_core::Outcome;
use levee_core::breaker::CallOutcome;
use levee_core::retry::is_idempotent;
use tokio::time::Instant;

pub use body::{InFlight, ProxyBody, UpstreamBody};
pub use client::ClientInfo;
pub use error::{ProxyError, X_LEVEE_ATTEMPTS};
pub use headers::client_ip_value;

use crate::access_log::{AccessLog, AccessRecord, AttemptLogs, PendingLine};
use crate::metrics::ListenerMetrics;
use arc_swap::{ArcSwap, ArcSwapOption};

use crate::route::{Route, Router};
use crate::upstream::{BodyRead, read_for_replay};
use crate::upstream::{ClientBody, SharedFields};
use attempts::{Attempts, Finished, Payload, RequestHead};
use upstream_request::upstream_request;

/// A client's promise that repeating the request is harmless.
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Forwards one listener's requests to the cluster their route names.
pub struct HttpProxy {
    /// Listener name (logs, metrics).
    pub listener: String,
    /// Replaced whole by a config reload; a request keeps the route it
    /// was given.
    router: ArcSwap<Router<Arc<Route>>>,
    metrics: ListenerMetrics,
    /// One line per request, if the listener has `access_log`.
    access_log: ArcSwapOption<AccessLog>,
    /// Whether `access_log` holds one: read per request instead of loading
    /// it (an `ArcSwap` load costs ~130 instructions, callgrind).
    logging: AtomicBool,
}

impl HttpProxy {
    /// A proxy from a listener through `router`.
    pub fn new(
        listener: String,
        router: Router<Arc<Route>>,
        metrics: ListenerMetrics,
    ) -> HttpProxy {
        HttpProxy {
            listener,
            router: ArcSwap::from_pointee(router),
            metrics,
            access_log: ArcSwapOption::empty(),
            logging: AtomicBool::new(false),
        }
    }

    /// Write one line per request to `log` from now on (`None`: stop).
    pub fn set_access_log(&self, log: Option<Arc<AccessLog>>) {
        let logging = log.is_some();
        self.access_log.store(log);
        self.logging.store(logging, Ordering::Release);
    }

    /// The access log in force, if any.
    pub fn access_log(&self) -> Option<Arc<AccessLog>> {
        self.access_log.load_full()
    }

    /// Route new requests with `router` (a config reload).
    pub fn set_router(&self, router: Router<Arc<Route>>) {
        self.router.store(Arc::new(router));
    }

    /// The listener's metric series.
    pub fn metrics(&self) -> &ListenerMetrics {
        &self.metrics
    }

    /// Serve one client request; `then` turns the response into what the
    /// caller returns (it runs inside this future, so that the caller needs
    /// no future of its own around this one).
    #[allow(clippy::manual_async_fn)]
    pub fn handle<R>(
        self: Arc<Self>,
        request: Request<ClientBody>,
        client: Arc<ClientInfo>,
        then: impl FnOnce(Response<ProxyBody>) -> R,
    ) -> impl Future<Output = R> {
        // Not an async fn, which keeps its arguments twice (as passed, as bound).
        async move {
            let client = &*client;
            let started = Instant::now();
            // Only a listener with an access log pays for its line.
            let log = if self.logging.load(Ordering::Acquire) {
                self.access_log.load_full()
            } else {
                None
            };
            let pending = log.map(|log| {
                let record = AccessRecord::of(
                    &self.listener,
                    &request,
                    client.address.ip(),
                    std::time::SystemTime::now(),
                    log.settings().format,
                );
                Box::new(PendingLine::new(log, record, started))
            });
            let grpc = grpc::is_grpc(request.version(), request.headers());
            let route = self
                .router
                .load()
                .route(request.method(), request.uri(), request.headers())
                .cloned();
            let served = match &route {
                None => Err(ProxyError::NoRoute {
                    listener: self.listener.clone(),
                }),
                // Boxed, as the cache's: only switching requests pay for it.
                Some(route) if tunnel::is_upgrade(&request) => Box::pin(tunnel::open(
                    route,
                    request,
                    client,
                    started,
                    self.metrics.tunnels_open().clone(),
                ))
                .await
                .map(|response| response.map(Either::Right)),
                Some(route) => match &route.cache {
                    // Boxed: the cache's future is twice the size of `forward`'s,
                    // and this future is moved whole into hyper's slot for every
                    // request, cached or not (callgrind: memcpy of 18 KB, a fifth
                    // of the request's instructions).
                    Some(cache) => Box::pin(cache.serve(route, request, client, started)).await,
                    None => forward(route, request, client, started)
                        .await
                        .map(|response| response.map(Either::Left)),
                },
            };
            let mut levee_error = None;
            let mut response = match served {
                Ok(response) => response,
                Err(error) => {
                    if pending.is_some() {
                        levee_error = Some((error.rule(), error.log_reason()));
                    }
                    tracing::debug!(listener = %self.listener, status = %error.status(), ?error, "levee answered the request itself");
                    if grpc {
                        error.into_grpc_response().map(Either::Right)
                    } else {
                        error.into_response().map(Either::Right)
                    }
                }
            };
            let elapsed = started.elapsed();
            self.metrics
                .record_response(response.status().as_u16(), elapsed.as_secs_f64());
            if let Some(route) = &route {
                route
                    .cluster
                    .traffic
                    .record(response.status().as_u16(), elapsed);
            }
            if let Some(pending) = pending {
                log_on_end(pending, &mut response, route.as_deref(), levee_error);
            }
            then(response)
        }
    }
}

/// Fill in `pending`'s answer and have it written when `response`'s body
/// has gone to the client (at once for a body levee holds whole).
fn log_on_end(
    mut pending: Box<PendingLine>,
    response: &mut Response<ProxyBody>,
    route: Option<&Route>,
    levee_error: Option<(&'static str, String)>,
) {
    let record = pending.record_mut();
    record.status = response.status().as_u16();
    if let Some(route) = route {
        record.route = Some(route.name.clone());
        record.cluster = Some(route.cluster.name.clone());
    }
    record.cache = response
        .headers()
        .get(&cache::X_LEVEE_CACHE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    if let Some(AttemptLogs { endpoint, attempts }) = response.extensions_mut().remove() {
        record.endpoint = endpoint;
        record.attempts = attempts;
    }
    if let Some((rule, reason)) = levee_error {
        record.levee_error = Some(rule);
        record.reason = Some(reason);
    }
    match response.body_mut() {
        Either::Left(upstream) => upstream.log_on_end(pending),
        Either::Right(whole) => {
            let bytes = http_body::Body::size_hint(whole).exact().unwrap_or(0);
            pending.count(bytes as usize);
            pending.finish();
        }
    }
}

/// The stages after the cache: what a route sends on.
impl cache::Upstream for Route {
    fn cluster_name(&self) -> &str {
        &self.cluster.name
    }

    fn request_timeout(&self) -> std::time::Duration {
        self.request_timeout
    }

    fn forward(
        &self,
        request: Request<ClientBody>,
        client: &ClientInfo,
        started: Instant,
    ) -> impl std::future::Future<Output = Result<Response<UpstreamBody>, ProxyError>> + Send {
        forward(self, request, client, started)
    }
}

/// Forward one request to `cluster` (admission, attempts) and return the
/// response head with its body still streaming, or levee's own error.
#[allow(clippy::manual_async_fn)]
pub(crate) fn forward(
    route: &Route,
    request: Request<ClientBody>,
    client: &ClientInfo,
    started: Instant,
) -> impl Future<Output = Result<Response<UpstreamBody>, ProxyError>> + Send {
    // Not an async fn, which keeps its arguments twice (as passed, as bound).
    async move {
        let cluster = &route.cluster;
        // The caller's own deadline (grpc-timeout, deadline_header) bounds
        // levee's when it is shorter.
        let caller = deadline::caller_timeout(
            request.version(),
            request.headers(),
            cluster.settings.deadline_header.as_ref(),
        );
        let timeout = match caller {
            Some(caller) => caller.min(route.request_timeout),
            None => route.request_timeout,
        };
        let deadline = started + timeout;
        // Over its rate: 429 before anything else, without taking a slot.
        let rate = match &route.rate_limit {
            Some(limit) => Some(limit.check(request.headers(), client).await),
            None => None,
        };
        if let Some(decision) = rate
            && !decision.allowed
        {
            return Err(ProxyError::RateLimited {
                cluster: cluster.name.clone(),
                decision,
            });
        }
        // Shed before anything else: a shed request costs no upstream work,
        // never counts against an endpoint and is never retried.
        let admission = admit(route.admission.as_deref(), route, request.headers())
            .await
            .map_err(|rejected| ProxyError::Overloaded {
                cluster: cluster.name.clone(),
                rejected,
            })?;
        // A request whose deadline passed while it queued is dropped here,
        // never sent: its caller has given up.
        if admission.is_some() && Instant::now() >= deadline {
            return Err(ProxyError::Deadline {
                cluster: cluster.name.clone(),
                attempts: 0,
            });
        }
        // After admission (shed requests never count), before any attempt.
        let breaker = route
            .breaker
            .as_ref()
            .map(|breaker| {
                breaker
                    .acquire(Instant::now())
                    .map_err(|rejected| ProxyError::BreakerOpen {
                        breaker: breaker.name().to_owned(),
                        rejected,
                    })
            })
            .transpose()?;
        // After the breaker: a request the breaker rejects is not one the
        // upstream was asked.
        if let Some(throttle) = &route.throttle {
            throttle
                .admit(Instant::now())
                .map_err(|throttled| ProxyError::Throttled {
                    cluster: cluster.name.clone(),
                    throttled,
                })?;
        }
        let Finished {
            result,
            client_time,
        } = attempt(route, request, client, started, deadline).await;
        if let (Some(throttle), Ok(answered)) = (&route.throttle, &result) {
            throttle.record(grpc::judged_status(&answered.response), Instant::now());
        }
        if let Some(call) = breaker {
            // A slow upload is the client's time, not a slow call.
            let outcome = breaker_outcome(&result, call.elapsed().saturating_sub(client_time));
            call.finish(outcome);
        }
        let answered = result?;
        let (mut parts, mut body) = answered.response.into_parts();
        if let Some((permit, admitted_at)) = admission {
            // The adaptive limit learns from how long the cluster took to
            // answer (a slow upload is the client's time).
            if let Some(stage) = &route.admission {
                let now = Instant::now();
                let took = now.saturating_duration_since(admitted_at);
                stage.observe_latency(took.saturating_sub(client_time), now);
            }
            body.hold_admission(Some(permit));
        }
        headers::remove_hop_by_hop(&mut parts.headers);
        parts.headers.insert(
            X_LEVEE_ATTEMPTS.clone(),
            error::attempts_value(answered.attempts),
        );
        if let Some(decision) = &rate {
            rate_limit::write_headers(&mut parts.headers, decision);
        }
        Ok(Response::from_parts(parts, body))
    }
}

/// A slot of `stage`, and when it was given; `None` without admission
/// control. A separate function, as `Cluster::admit` was: awaited inline in
/// `forward`, the queue's future made `forward`'s state machine larger, and
/// hyper copies that whole future per request (callgrind: +7.8k
/// instructions of memcpy).
async fn admit(
    stage: Option<&admission::ClusterAdmission>,
    route: &Route,
    headers: &http::HeaderMap,
) -> Result<Option<(levee_core::admission::Permit, Instant)>, levee_core::admission::Rejected> {
    match stage {
        None => Ok(None),
        Some(stage) => {
            let priority = priority_of(stage, route, headers);
            Ok(Some((stage.admit(priority).await?, Instant::now())))
        }
    }
}

/// A request's admission class: its route's, or what it names in the
/// cluster's `priority_header`, never higher than its route's (a client
/// cannot make itself critical where the route does not allow it).
fn priority_of(
    stage: &admission::ClusterAdmission,
    route: &Route,
    headers: &http::HeaderMap,
) -> levee_core::admission::Priority {
    let claimed = stage
        .settings()
        .priority_header
        .as_ref()
        .and_then(|name| headers.get(name))
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<levee_core::admission::Priority>().ok());
    match claimed {
        Some(claimed) => claimed.capped_at(route.priority),
        None => route.priority,
    }
}

/// What a request's final result says about its cluster, for the breaker:
/// the same blame rules as outlier detection; `None` when it says nothing.
fn breaker_outcome(
    result: &Result<attempts::Answered, ProxyError>,
    elapsed: std::time::Duration,
) -> Option<CallOutcome> {
    // The endpoint does not matter to the blame rules.
    let endpoint = levee_core::EndpointId(0);
    let outcome = match result {
        Ok(answered) => Outcome::response(endpoint, answered.response.status().as_u16(), elapsed),
        Err(ProxyError::Upstream { kind, .. }) => Outcome::failure(endpoint, *kind, elapsed),
        Err(ProxyError::Deadline { .. }) => {
            Outcome::failure(endpoint, levee_core::FailureKind::Timeout, elapsed)
        }
        // No endpoint to send to: the cluster is down as far as clients see.
        Err(ProxyError::NoEndpoint { .. }) => {
            Outcome::failure(endpoint, levee_core::FailureKind::ConnectFailed, elapsed)
        }
        Err(_) => return None,
    };
    CallOutcome::from_outcome(&outcome, true)
}

/// The attempts of one admitted request, up to its response head.
#[allow(clippy::manual_async_fn)]
fn attempt(
    route: &Route,
    request: Request<ClientBody>,
    client: &ClientInfo,
    started: Instant,
    deadline: Instant,
) -> impl Future<Output = Finished> + Send {
    // Not an async fn, which keeps its arguments twice (as passed, as bound).
    async move {
        let cluster = &route.cluster;
        let early = |error| Finished {
            result: Err(error),
            client_time: std::time::Duration::ZERO,
        };
        // Picked before the body is read: no endpoint, no point reading it.
        let Some(first) = cluster.pick(started) else {
            return early(ProxyError::NoEndpoint {
                cluster: cluster.name.clone(),
                reason: cluster.no_endpoint_reason(started),
            });
        };
        let request = match upstream_request(request, &cluster.endpoint(first).host_header) {
            Ok(request) => request,
            Err(error) => return early(error),
        };
        // Taken apart whole: `Parts` bound as one would be kept in the
        // future across the attempts for the fields not moved out of it.
        let (
            http::request::Parts {
                method,
                uri,
                version,
                headers,
                ..
            },
            body,
        ) = request.into_parts();
        let retry = &route.retry;
        // The key is looked up only for a method not idempotent by itself
        // (a hashed lookup of a custom name: ~190 instructions per request).
        let idempotent = is_idempotent(method.as_str(), false, retry.idempotent)
            || headers.contains_key(&IDEMPOTENCY_KEY);
        // Bounded by the client's progress, not by the deadline: a slow but
        // steady client is served, a stalled one gets 408.
        let idle = cluster.settings.body_idle_timeout;
        // Matched whole, not bound: a binding would be kept in the future
        // across the attempts.
        let (payload, waited_since) = match read_for_replay(body, retry.replay_buffer, idle).await {
            Ok(BodyRead {
                body: Ok(copy),
                waited_since,
            }) => (Payload::Replayable(copy), waited_since),
            Ok(BodyRead {
                body: Err(streaming),
                waited_since,
            }) => (Payload::Once(Some(streaming)), waited_since),
            Err(failure) => {
                route
                    .retries
                    .record_client_body_failure(None, failure, idle);
                return early(ProxyError::ClientBody {
                    cluster: cluster.name.clone(),
                    failure,
                    idle,
                    attempts: 0,
                });
            }
        };
        // The time spent waiting for the client's body is not the upstream's:
        // the deadline for its answer moves by as much.
        let (deadline, waited) = match waited_since {
            Some(since) => {
                let waited = since.elapsed();
                (deadline + waited, waited)
            }
            None => (deadline, std::time::Duration::ZERO),
        };
        let propagation =
            deadline::propagation(version, &headers, cluster.settings.deadline_header.as_ref());
        let set = headers::forwarded(&headers, &client.ip_header, client.proto);
        let head = RequestHead {
            method,
            uri,
            fields: Arc::new(SharedFields { headers, set }),
            propagation,
        };
        let mut attempts = Attempts::new(route, head, payload, idempotent, deadline, waited);
        attempts.run(first).await
    }
}
