//! [`CircuitBreakerLayer`]: stop calling a service that is failing, let a
//! few trial calls find out when it is back. The state machine is
//! levee-core's [`Breaker`](levee_core::breaker::Breaker), the one levee's
//! proxy runs; with the `fleet` feature it can be a
//! [`FleetBreaker`](levee_store::FleetBreaker) whose verdicts every instance
//! of a program shares (Redis, a quorum, a loud fallback to the local view).
//!
//! Guarantees: an open breaker answers [`BreakerOpen`] without polling the
//! inner service; a call cancelled mid-way (its future dropped) counts for
//! nothing and gives its half-open trial slot back; the breaker's lock is
//! never held across an await; the clock is `tokio::time`, so tests pause
//! it, and a wall-clock jump changes nothing (only the fleet's shared
//! reports carry wall-clock times).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use levee_core::breaker::{BreakerParams, BreakerSnapshot, Rejected, SharedBreaker};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{BoxError, BreakerOpen};

/// What a finished call says about the service behind the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It worked (an answer the caller wanted, or an expected error such as
    /// "not found").
    Success,
    /// It failed in a way that blames the service (a timeout, a refused
    /// connection, a 503).
    Failure,
}

/// The breaker a layer asks: local to this process, or shared by a fleet.
#[derive(Clone, Debug)]
enum Handle {
    Local(SharedBreaker),
    #[cfg(feature = "fleet")]
    Fleet(levee_store::FleetBreaker),
}

impl Handle {
    fn snapshot(&self) -> BreakerSnapshot {
        match self {
            Handle::Local(breaker) => breaker.snapshot(),
            #[cfg(feature = "fleet")]
            Handle::Fleet(breaker) => breaker.snapshot(),
        }
    }
}

type Classifier<R, E> = dyn Fn(&Result<R, E>) -> Verdict + Send + Sync;

/// A [`tower_layer::Layer`] putting a circuit breaker in front of a
/// service.
///
/// ```
/// use std::time::Duration;
///
/// use levee_core::breaker::BreakerParams;
/// use levee_tower::{BreakerOpen, CircuitBreakerLayer, Verdict};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let params = BreakerParams::builder()
///     .consecutive_failures(2)
///     .open_for(Duration::from_secs(5))
///     .build()
///     .unwrap();
/// let layer = CircuitBreakerLayer::new("payments", params, |result: &Result<u16, std::io::Error>| {
///     match result {
///         Ok(status) if *status >= 500 => Verdict::Failure,
///         Ok(_) => Verdict::Success,
///         Err(_) => Verdict::Failure,
///     }
/// });
/// let service = ServiceBuilder::new()
///     .layer(layer.clone())
///     .service(service_fn(|_: ()| async { Ok::<u16, std::io::Error>(503) }));
/// for _ in 0..2 {
///     assert_eq!(service.clone().oneshot(()).await.unwrap(), 503);
/// }
/// // Two failures in a row: open, the service is not called.
/// let error = service.oneshot(()).await.unwrap_err();
/// assert!(error.downcast_ref::<BreakerOpen>().is_some());
/// assert!(layer.is_open());
/// # }
/// ```
pub struct CircuitBreakerLayer<R, E> {
    name: Arc<str>,
    breaker: Handle,
    classify: Arc<Classifier<R, E>>,
}

impl<R, E> Clone for CircuitBreakerLayer<R, E> {
    fn clone(&self) -> Self {
        CircuitBreakerLayer {
            name: Arc::clone(&self.name),
            breaker: self.breaker.clone(),
            classify: Arc::clone(&self.classify),
        }
    }
}

impl<R, E> CircuitBreakerLayer<R, E> {
    /// A breaker named `name` (in errors and snapshots), local to this
    /// process, judging each call with `classify`. Every service this layer
    /// wraps shares the one breaker.
    pub fn new(
        name: impl Into<String>,
        params: BreakerParams,
        classify: impl Fn(&Result<R, E>) -> Verdict + Send + Sync + 'static,
    ) -> Self {
        CircuitBreakerLayer {
            name: name.into().into(),
            breaker: Handle::Local(SharedBreaker::new(params)),
            classify: Arc::new(classify),
        }
    }

    /// A breaker shared with every instance that uses `breaker`'s store
    /// (see [`levee_store::FleetBreaker`]): one instance's failures count
    /// toward the fleet's quorum, and an opening decided by the fleet stops
    /// this instance's calls too. The request path never waits on the store.
    #[cfg(feature = "fleet")]
    pub fn fleet(
        breaker: levee_store::FleetBreaker,
        classify: impl Fn(&Result<R, E>) -> Verdict + Send + Sync + 'static,
    ) -> Self {
        CircuitBreakerLayer {
            name: breaker.name().into(),
            breaker: Handle::Fleet(breaker),
            classify: Arc::new(classify),
        }
    }

    /// Whether it is not closed (open, or half-open and letting only a few
    /// trial calls through): for a status page.
    pub fn is_open(&self) -> bool {
        self.breaker.snapshot().is_open
    }

    /// Its state, counters and why, for a status page.
    pub fn snapshot(&self) -> BreakerSnapshot {
        self.breaker.snapshot()
    }
}

impl<S, R, E> Layer<S> for CircuitBreakerLayer<R, E> {
    type Service = CircuitBreaker<S, R, E>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service a [`CircuitBreakerLayer`] makes (the inner service is cloned
/// per call, so it must be `Clone`, as tower services are cheap handles).
pub struct CircuitBreaker<S, R, E> {
    inner: S,
    layer: CircuitBreakerLayer<R, E>,
}

impl<S: Clone, R, E> Clone for CircuitBreaker<S, R, E> {
    fn clone(&self) -> Self {
        CircuitBreaker {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S, Req, R, E> Service<Req> for CircuitBreaker<S, R, E>
where
    S: Service<Req, Response = R, Error = E> + Clone + Send + 'static,
    Req: Send + 'static,
    S::Future: Send + 'static,
    R: Send + 'static,
    E: Into<BoxError> + Send + 'static,
{
    type Response = R;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<R, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // The service that was made ready goes with the call; it is called
        // only if the breaker lets the call through.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let layer = self.layer.clone();
        Box::pin(async move {
            let call = async move { inner.call(request).await };
            let classify = &*layer.classify;
            let is_failure = |result: &Result<R, E>| classify(result) == Verdict::Failure;
            let answer = match &layer.breaker {
                Handle::Local(breaker) => breaker.call(call, is_failure).await,
                #[cfg(feature = "fleet")]
                Handle::Fleet(breaker) => breaker.call(call, is_failure).await,
            };
            match answer {
                Ok(result) => result.map_err(Into::into),
                Err(rejected) => Err(Box::new(open(&layer.name, rejected)) as BoxError),
            }
        })
    }
}

fn open(name: &str, rejected: Rejected) -> BreakerOpen {
    BreakerOpen {
        name: name.to_owned(),
        state: rejected.state.as_str(),
        reason: rejected.reason,
        until: rejected.retry_after,
    }
}
