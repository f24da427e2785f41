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
//!
//! Guarantees: at most two copies of a call run; the first answer wins
//! and the other copy's future is dropped at once (its connection, if any,
//! is the inner service's to close); nothing is allocated unless a second
//! copy is sent; the delay and the budget use `tokio::time`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use levee_core::retry::{LatencyQuantile, RetryBudget, RetryBudgetParams, hedge_delay};
use parking_lot::Mutex;
use pin_project_lite::pin_project;
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
    latencies: Mutex<Latencies>,
    budget: RetryBudget,
    clone_request: Box<CloneRequest<Req>>,
}

/// The calls' latencies, and the delay they give, worked out again at most
/// every [`DELAY_REFRESH`] (a quantile over the window costs more than a
/// call should).
struct Latencies {
    window: LatencyQuantile,
    delay: Duration,
    computed: Option<Instant>,
}

/// How long a computed hedge delay is used before it is worked out again.
const DELAY_REFRESH: Duration = Duration::from_millis(100);

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
                latencies: Mutex::new(Latencies {
                    window: latencies,
                    delay: settings.ceiling,
                    computed: None,
                }),
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
        let mut latencies = self.latencies.lock();
        let fresh = latencies
            .computed
            .is_some_and(|at| now.saturating_duration_since(at) < DELAY_REFRESH);
        if !fresh {
            let quantile = latencies.window.quantile(self.settings.quantile, now);
            latencies.delay = hedge_delay(quantile, self.settings.floor, self.settings.ceiling);
            latencies.computed = Some(now);
        }
        latencies.delay
    }

    fn record(&self, latency: Duration, now: Instant) {
        self.latencies.lock().window.record(latency, now);
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
    type Future = HedgeFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let start = Instant::now();
        self.shared.budget.record_request(start);
        let copy = (self.shared.clone_request)(&request);
        let delay = copy.as_ref().map(|_| self.shared.delay(start));
        let first = self.inner.call(request);
        HedgeFuture {
            first,
            timer: tokio::time::sleep_until(start + delay.unwrap_or_default()),
            hedge: copy.map(|copy| (copy, self.inner.clone())),
            paid: false,
            second: None,
            shared: Arc::clone(&self.shared),
            start,
        }
    }
}

pin_project! {
    /// The future of a [`Hedge`] call: the first copy, a timer, and the
    /// second copy once the timer fires (boxed then; most calls never get
    /// one).
    pub struct HedgeFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        first: S::Future,
        #[pin]
        timer: tokio::time::Sleep,
        // The copy and a service to send it with, until it is sent (or the
        // budget says no).
        hedge: Option<(Req, S)>,
        // The budget has paid for the hedge (it waits for the service).
        paid: bool,
        second: Option<Pin<Box<S::Future>>>,
        shared: Arc<Shared<Req>>,
        start: Instant,
    }
}

impl<S, Req> Future for HedgeFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let done = |result: Result<S::Response, S::Error>| {
            this.shared.record(this.start.elapsed(), Instant::now());
            Poll::Ready(result.map_err(Into::into))
        };
        if let Poll::Ready(result) = this.first.poll(cx) {
            return done(result);
        }
        if let Some(second) = this.second.as_mut()
            && let Poll::Ready(result) = second.as_mut().poll(cx)
        {
            // The first copy is dropped with this future: cancelled.
            return done(result);
        }
        if this.hedge.is_some() && this.timer.poll(cx).is_ready() {
            if !*this.paid {
                if !this.shared.budget.try_withdraw(Instant::now()) {
                    *this.hedge = None;
                    return Poll::Pending;
                }
                *this.paid = true;
            }
            let Some((copy, mut service)) = this.hedge.take() else {
                return Poll::Pending;
            };
            match service.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    let mut second = Box::pin(service.call(copy));
                    if let Poll::Ready(result) = second.as_mut().poll(cx) {
                        return done(result);
                    }
                    *this.second = Some(second);
                }
                // Not ready yet: try again on the next wake-up (the budget
                // has paid; a hedge delayed is still a hedge).
                Poll::Pending => *this.hedge = Some((copy, service)),
                // A service that cannot take the copy: the first goes on.
                Poll::Ready(Err(_)) => {}
            }
        }
        Poll::Pending
    }
}
