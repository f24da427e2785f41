//! [`AdmissionLayer`]: a concurrency limit that sheds load instead of
//! queueing it forever. Past `max_concurrency` calls in flight, a call waits
//! in levee-core's queue: first in, first out while the queue drains, last
//! in, first out once a queue stands (CoDel: the calls served are those
//! whose callers are still waiting), at most `queue_timeout`; a full queue
//! or a wait too long answers [`Overloaded`] at once, which a server maps
//! to `503` with `Retry-After`. Optionally the limit follows latency
//! ([`AdmissionLayer::adaptive`]: levee-core's gradient limit).
//!
//! Guarantees: a call that is turned away never reaches the inner service;
//! a call cancelled while it waits leaves the queue, and a slot handed to it
//! at that instant goes to the next waiter.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use levee_core::admission::{Admission, AdmissionParams, BadGradientParams, GradientLimit, Permit};
use parking_lot::Mutex;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{BoxError, Overloaded};

/// What every service of one [`AdmissionLayer`] shares: the queue and the
/// limit (opaque; read it through the layer).
pub struct AdmissionState {
    admission: Admission,
    gradient: Option<Mutex<GradientLimit>>,
}

/// A [`tower_layer::Layer`] admitting calls within a concurrency limit.
/// Every service it wraps shares the limit.
///
/// ```
/// use std::time::Duration;
///
/// use levee_core::admission::AdmissionParams;
/// use levee_tower::{AdmissionLayer, Overloaded};
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let params = AdmissionParams::builder()
///     .max_concurrency(1)
///     .max_queue(0)
///     .build()
///     .unwrap();
/// let service = ServiceBuilder::new()
///     .layer(AdmissionLayer::new(params))
///     .service(service_fn(|_: ()| async {
///         tokio::time::sleep(Duration::from_millis(50)).await;
///         Ok::<_, std::io::Error>("done")
///     }));
/// let busy = tokio::spawn(service.clone().oneshot(()));
/// tokio::time::sleep(Duration::from_millis(10)).await;
/// // One in flight, no queue: the next is shed at once.
/// let error = service.clone().oneshot(()).await.unwrap_err();
/// assert!(error.downcast_ref::<Overloaded>().is_some());
/// assert_eq!(busy.await.unwrap().unwrap(), "done");
/// # }
/// ```
#[derive(Clone)]
pub struct AdmissionLayer {
    shared: Arc<AdmissionState>,
}

impl AdmissionLayer {
    /// A fixed limit, queue and CoDel target as `params` say.
    pub fn new(params: AdmissionParams) -> Self {
        AdmissionLayer {
            shared: Arc::new(AdmissionState {
                admission: Admission::new(params),
                gradient: None,
            }),
        }
    }

    /// A limit that follows latency between `min_concurrency` and
    /// `params.max_concurrency()`: it grows while calls take about their
    /// lowest latency and shrinks as they start queueing inside the service
    /// (Netflix's gradient algorithm, levee-core's [`GradientLimit`]).
    pub fn adaptive(
        params: AdmissionParams,
        min_concurrency: usize,
    ) -> Result<Self, BadGradientParams> {
        let max = params.max_concurrency();
        let gradient = GradientLimit::new(max, min_concurrency, max)?;
        Ok(AdmissionLayer {
            shared: Arc::new(AdmissionState {
                admission: Admission::new(params),
                gradient: Some(Mutex::new(gradient)),
            }),
        })
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.shared.admission.in_flight()
    }

    /// Calls waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.shared.admission.queued()
    }

    /// The limit now.
    pub fn limit(&self) -> usize {
        self.shared.admission.limit()
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admitted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admitted {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service an [`AdmissionLayer`] makes (the inner service is cloned
/// for a call that has to wait for a slot, so it must be `Clone`).
#[derive(Clone)]
pub struct Admitted<S> {
    inner: S,
    shared: Arc<AdmissionState>,
}

type Waiting<R> = Pin<Box<dyn Future<Output = Result<R, BoxError>> + Send>>;

pin_project! {
    /// The future of an [`Admitted`] call: the inner call itself when a
    /// slot was free (no allocation), or the wait for one, boxed.
    #[project = AdmittedProj]
    pub enum AdmittedFuture<F, R> {
        /// A slot was free: the call runs holding it.
        Running {
            #[pin]
            call: F,
            permit: Option<Permit>,
            shared: Arc<AdmissionState>,
            // When it started, for the adaptive limit only.
            start: Option<Instant>,
        },
        /// Every slot was taken: waiting in the queue, then the call.
        Queued { future: Waiting<R> },
    }
}

impl<F, R, E> Future for AdmittedFuture<F, R>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
{
    type Output = Result<R, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AdmittedProj::Running {
                call,
                permit,
                shared,
                start,
            } => {
                let result = std::task::ready!(call.poll(cx));
                if let Some(start) = *start {
                    shared.observe(start);
                }
                drop(permit.take());
                Poll::Ready(result.map_err(Into::into))
            }
            AdmittedProj::Queued { future } => future.as_mut().poll(cx),
        }
    }
}

impl AdmissionState {
    /// Feed the adaptive limit a call's latency.
    fn observe(&self, start: Instant) {
        if let Some(gradient) = &self.gradient {
            let now = Instant::now();
            let limit = gradient
                .lock()
                .update(now.saturating_duration_since(start), now);
            self.admission.set_limit(limit);
        }
    }
}

fn overloaded(rejected: levee_core::admission::Rejected) -> BoxError {
    Box::new(Overloaded {
        reason: rejected.to_string(),
        retry_after: rejected.retry_after(),
    })
}

impl<S, Req> Service<Req> for Admitted<S>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = AdmittedFuture<S::Future, S::Response>;

    // The inner service's readiness; the slot is taken in the call, so a
    // caller that never calls holds none.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        if let Some(permit) = self.shared.admission.try_acquire() {
            return AdmittedFuture::Running {
                start: self.shared.gradient.is_some().then(Instant::now),
                call: self.inner.call(request),
                permit: Some(permit),
                shared: Arc::clone(&self.shared),
            };
        }
        // The ready service goes with the waiting call.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let shared = Arc::clone(&self.shared);
        AdmittedFuture::Queued {
            future: Box::pin(async move {
                let permit = shared.admission.acquire().await.map_err(overloaded)?;
                let start = Instant::now();
                let result = inner.call(request).await;
                shared.observe(start);
                drop(permit);
                result.map_err(Into::into)
            }),
        }
    }
}
