//! [`HedgeLayer`]: when a call is slower than the service usually is, send
//! a second copy and take whichever answers first; the other is cancelled
//! (its future dropped).
//!
//! The delay is the p95 (or another quantile) of the calls' own latencies
//! over a sliding window, within a floor and a ceiling (levee-core's
//! [`LatencyQuantile`] and [`hedge_delay`]); hedges are paid from a
//! [`RetryBudget`] so that a slow service gets at most a share of extra load
//! (a hedge when everything is slow would double the load on a service that
//! is slow because it is loaded). Only requests the caller says may be sent
//! twice are hedged ([`HedgeLayer::new`]'s `clone_request` returns `None`
//! for the others).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use levee_core::retry::{LatencyQuantile, RetryBudget, RetryBudgetParams, hedge_delay};
use parking_lot::Mutex;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::BoxError;

/// When a [`HedgeLayer`] sends its second copy.
#[derive(Clone, Copy, Debug)]
pub struct HedgeSettings {
    /// The latency quantile after which a call is hedged (0.95: p95).
    pub quantile: f64,
    /// Never hedge sooner than this (nor before the window has data: then
    /// the ceiling applies).
    pub floor: Duration,
    /// Never wait longer than this to hedge.
    pub ceiling: Duration,
    /// How far back latencies are counted.
    pub window: Duration,
    /// Hedges allowed, as a share of calls.
    pub budget: RetryBudgetParams,
}

impl Default for HedgeSettings {
    /// levee's defaults: p95, 20 ms to 1 s, a 10 s window, 20 % of calls.
    fn default() -> HedgeSettings {
        HedgeSettings {
            quantile: 0.95,
            floor: Duration::from_millis(20),
            ceiling: Duration::from_secs(1),
            window: Duration::from_secs(10),
            budget: RetryBudgetParams::new(20, 10, Duration::from_secs(10))
                .unwrap_or_else(|_| unreachable!("valid constants")),
        }
    }
}

type CloneRequest<Req> = dyn Fn(&Req) -> Option<Req> + Send + Sync;

struct Shared<Req> {
    settings: HedgeSettings,
    latencies: Mutex<LatencyQuantile>,
    budget: RetryBudget,
    clone_request: Box<CloneRequest<Req>>,
}

/// A [`tower_layer::Layer`] hedging slow calls. Every service it wraps
/// shares one latency window and one budget.
///
/// ```
/// use std::time::Duration;
///
/// use levee_tower::{HedgeLayer, HedgeSettings};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let settings = HedgeSettings { ceiling: Duration::from_millis(50), ..HedgeSettings::default() };
/// let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
/// let counted = calls.clone();
/// let service = ServiceBuilder::new()
///     // Every call is idempotent here: hedge them all.
///     .layer(HedgeLayer::new(settings, |request: &u32| Some(*request)))
///     .service(service_fn(move |_: u32| {
///         let first = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
///         async move {
///             // The first copy hangs; the hedge answers.
///             if first { tokio::time::sleep(Duration::from_secs(60)).await; }
///             Ok::<_, std::io::Error>("answer")
///         }
///     }));
/// assert_eq!(service.oneshot(7).await.unwrap(), "answer");
/// assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
/// # }
/// ```
pub struct HedgeLayer<Req> {
    shared: Arc<Shared<Req>>,
}

impl<Req> Clone for HedgeLayer<Req> {
    fn clone(&self) -> Self {
        HedgeLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<Req> HedgeLayer<Req> {
    /// Hedges by `settings`; `clone_request` copies a request that may be
    /// sent twice, `None` for one that may not (it is never hedged).
    pub fn new(
        settings: HedgeSettings,
        clone_request: impl Fn(&Req) -> Option<Req> + Send + Sync + 'static,
    ) -> Self {
        let now = Instant::now();
        let window = if settings.window.is_zero() {
            Duration::from_secs(10)
        } else {
            settings.window
        };
        let latencies = LatencyQuantile::new(window, now)
            .or_else(|_| LatencyQuantile::new(Duration::from_secs(10), now))
            .unwrap_or_else(|_| unreachable!("a 10 s window is valid"));
        HedgeLayer {
            shared: Arc::new(Shared {
                settings,
                latencies: Mutex::new(latencies),
                budget: RetryBudget::new(settings.budget, now),
                clone_request: Box::new(clone_request),
            }),
        }
    }

    /// How long a call may take now before it is hedged.
    pub fn delay(&self) -> Duration {
        self.shared.delay(Instant::now())
    }
}

impl<Req> Shared<Req> {
    fn delay(&self, now: Instant) -> Duration {
        let quantile = self.latencies.lock().quantile(self.settings.quantile, now);
        hedge_delay(quantile, self.settings.floor, self.settings.ceiling)
    }
}

impl<S, Req> Layer<S> for HedgeLayer<Req> {
    type Service = Hedge<S, Req>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service a [`HedgeLayer`] makes (the inner service is cloned for the
/// hedge, so it must be `Clone`).
pub struct Hedge<S, Req> {
    inner: S,
    shared: Arc<Shared<Req>>,
}

impl<S: Clone, Req> Clone for Hedge<S, Req> {
    fn clone(&self) -> Self {
        Hedge {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, Req> Service<Req> for Hedge<S, Req>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let start = Instant::now();
        shared.budget.record_request(start);
        let copy = (shared.clone_request)(&request);
        let first = self.inner.call(request);
        let mut spare = self.inner.clone();
        Box::pin(async move {
            let Some(copy) = copy else {
                let result = first.await;
                shared
                    .latencies
                    .lock()
                    .record(start.elapsed(), Instant::now());
                return result.map_err(Into::into);
            };
            let delay = shared.delay(start);
            tokio::pin!(first);
            let result = tokio::select! {
                result = &mut first => result,
                () = tokio::time::sleep(delay) => {
                    if shared.budget.try_withdraw(Instant::now()) {
                        let second = async {
                            std::future::poll_fn(|cx| spare.poll_ready(cx)).await?;
                            spare.call(copy).await
                        };
                        tokio::pin!(second);
                        // The first to answer wins; the other is dropped.
                        tokio::select! {
                            result = &mut first => result,
                            result = &mut second => result,
                        }
                    } else {
                        first.await
                    }
                }
            };
            shared
                .latencies
                .lock()
                .record(start.elapsed(), Instant::now());
            result.map_err(Into::into)
        })
    }
}
