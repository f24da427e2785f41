//! [`RetryLayer`]: try a failed call again only when that cannot do harm
//! and cannot make an outage worse.
//!
//! What tower's own retry cannot know is whether the service already acted
//! on the request. Here a [`RetryClassifier`] says, for every failed
//! attempt, how far it got ([`SendPhase`]): never sent (a refused connect,
//! always safe to repeat), sent with no answer (the service may have acted:
//! only idempotent requests are repeated), or answer started (never). The
//! rules are levee-core's, the ones levee's proxy runs:
//! [`decide`](levee_core::retry::decide), the
//! [`RetryBudget`](levee_core::retry::RetryBudget) (retries at most a
//! percentage of the calls, so a broad failure costs 1.2× the load and not
//! 3×), full-jitter [`Backoff`](levee_core::retry::Backoff), and the
//! [`PoisonTracker`](levee_core::retry::PoisonTracker) (a request that fails
//! the same way twice is the request's fault: stop).
//!
//! Requests are cloned ([`RetryClassifier::clone_request`]) only while a
//! retry is still possible: not for the last allowed attempt, and not when
//! the budget has nothing left.
//!
//! Guarantees: the first attempt runs without an allocation; dropping the
//! call's future cancels the attempt in progress and any backoff; the
//! budget is shared by every service the layer wraps and by every thread
//! (a short lock, never held across an await); backoffs and the budget's
//! window use `tokio::time`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use levee_core::retry::{
    Backoff, PoisonTracker, RequestFacts, RetryBudget, RetryBudgetParams, RetryDecision,
    RetryPolicy, decide,
};
use levee_core::{AttemptResult, EndpointId, FailureKind, Outcome, SendPhase};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{BoxError, BudgetExhausted};

/// How one attempt ended, as the retry rules need to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Give this result to the caller: a success, or an answer that is the
    /// service's final word (a 404, a validation error).
    Done,
    /// It failed: how far it got, and how.
    Failed {
        /// Whether the service may have acted on it.
        phase: SendPhase,
        /// What went wrong (the poison rule compares these).
        kind: FailureKind,
    },
}

impl Attempt {
    /// Nothing reached the service (a refused or timed-out connect).
    pub fn not_sent(kind: FailureKind) -> Attempt {
        Attempt::Failed {
            phase: SendPhase::NotSent,
            kind,
        }
    }

    /// Sent, and no answer came (a timeout, a reset, a 503).
    pub fn sent_no_response(kind: FailureKind) -> Attempt {
        Attempt::Failed {
            phase: SendPhase::SentNoResponse,
            kind,
        }
    }
}

/// What the retry layer asks about requests and results.
pub trait RetryClassifier<Req, Res, E>: Send + Sync + 'static {
    /// How the attempt that gave `result` ended.
    fn classify(&self, result: &Result<Res, E>) -> Attempt;

    /// Whether doing `request` twice is harmless (GET, PUT, DELETE, or a
    /// request with an idempotency key).
    fn is_idempotent(&self, request: &Req) -> bool;

    /// A copy of `request` for another attempt, or `None` if it cannot be
    /// sent again (a body that streams once): then only the first attempt
    /// is made. Called only while a retry is still possible.
    fn clone_request(&self, request: &Req) -> Option<Req>;
}

/// The rules a [`RetryLayer`] applies.
#[derive(Clone, Copy, Debug)]
pub struct RetrySettings {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The budget's share of calls, over its window.
    pub budget: RetryBudgetParams,
    /// The wait before each retry (full jitter under a doubling ceiling).
    pub backoff: Backoff,
}

impl Default for RetrySettings {
    /// levee's defaults: 3 attempts, 20 % of calls (at least 10 a second)
    /// over 10 s, a backoff from 25 ms to 250 ms.
    fn default() -> RetrySettings {
        RetrySettings {
            max_attempts: 3,
            budget: RetryBudgetParams::new(20, 10, Duration::from_secs(10))
                .unwrap_or_else(|_| unreachable!("valid constants")),
            backoff: Backoff::new(Duration::from_millis(25), Duration::from_millis(250))
                .unwrap_or_else(|_| unreachable!("valid constants")),
        }
    }
}

/// A [`tower_layer::Layer`] retrying failed calls by levee's rules. Every
/// service it wraps shares one retry budget.
///
/// ```
/// use levee_core::FailureKind;
/// use levee_tower::{Attempt, RetryClassifier, RetryLayer, RetrySettings};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// /// Calls are `(method, body)`; a result `Err("refused")` never reached
/// /// the service, `Err("timeout")` may have.
/// struct Calls;
/// impl RetryClassifier<(&'static str, String), String, &'static str> for Calls {
///     fn classify(&self, result: &Result<String, &'static str>) -> Attempt {
///         match result {
///             Ok(_) => Attempt::Done,
///             Err("refused") => Attempt::not_sent(FailureKind::ConnectRefused),
///             Err(_) => Attempt::sent_no_response(FailureKind::Timeout),
///         }
///     }
///     fn is_idempotent(&self, request: &(&'static str, String)) -> bool {
///         request.0 == "GET"
///     }
///     fn clone_request(&self, request: &(&'static str, String)) -> Option<(&'static str, String)> {
///         Some(request.clone())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let service = ServiceBuilder::new()
///     .layer(RetryLayer::new(RetrySettings::default(), Calls))
///     .service(service_fn(|(method, _): (&'static str, String)| async move {
///         Err::<String, _>(if method == "POST" { "timeout" } else { "refused" })
///     }));
/// // A POST that may have reached the service is not repeated.
/// let error = service.clone().oneshot(("POST", "pay 10".into())).await.unwrap_err();
/// assert_eq!(error.to_string(), "timeout");
/// # }
/// ```
pub struct RetryLayer<C> {
    shared: Arc<Shared<C>>,
}

struct Shared<C> {
    settings: RetrySettings,
    policy: RetryPolicy,
    budget: RetryBudget,
    classifier: C,
}

impl<C> Clone for RetryLayer<C> {
    fn clone(&self) -> Self {
        RetryLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> RetryLayer<C> {
    /// Retries by `settings`, asking `classifier` about each attempt. A
    /// `max_attempts` of 0 counts as 1 (never retry).
    pub fn new(settings: RetrySettings, classifier: C) -> Self {
        let policy = RetryPolicy::new(settings.max_attempts.max(1))
            .unwrap_or_else(|_| RetryPolicy::default());
        RetryLayer {
            shared: Arc::new(Shared {
                settings,
                policy,
                budget: RetryBudget::new(settings.budget, Instant::now()),
                classifier,
            }),
        }
    }

    /// Retries still allowed by the budget now.
    pub fn budget_remaining(&self) -> u64 {
        self.shared.budget.snapshot(Instant::now()).remaining()
    }
}

impl<S, C> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service a [`RetryLayer`] makes. The inner service is cloned for
/// each call (tower services are cheap handles), so it must be `Clone`.
pub struct Retry<S, C> {
    inner: S,
    shared: Arc<Shared<C>>,
}

impl<S: Clone, C> Clone for Retry<S, C> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, C, Req, Res, E> Service<Req> for Retry<S, C>
where
    S: Service<Req, Response = Res, Error = E> + Clone + Send + 'static,
    S::Future: Send + 'static,
    C: RetryClassifier<Req, Res, E>,
    Req: Send + 'static,
    Res: Send + 'static,
    E: Into<BoxError> + Send + 'static,
{
    type Response = Res;
    type Error = BoxError;
    type Future = RetryFuture<S, C, Req, Res, E>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let shared = &self.shared;
        let remaining = shared.budget.record_request_and_remaining(Instant::now());
        let idempotent = shared.classifier.is_idempotent(&request);
        // A copy only while another attempt may follow.
        let more_allowed = shared.policy.max_attempts() > 1;
        let budget_left = remaining > 0;
        let spare = if more_allowed && budget_left {
            shared.classifier.clone_request(&request)
        } else {
            None
        };
        // The first attempt runs inline (no allocation); only a retry boxes
        // the rest. The ready service takes this call; a clone, made ready
        // again, takes the retries.
        let first = self.inner.call(request);
        RetryFuture::First {
            call: first,
            next: Some(PendingRetries {
                inner: self.inner.clone(),
                shared: Arc::clone(&self.shared),
                spare,
                idempotent,
                more_allowed,
                budget_left,
                started: Instant::now(),
            }),
        }
    }
}

/// What a call needs for the attempts after its first.
pub struct PendingRetries<S, C, Req> {
    inner: S,
    shared: Arc<Shared<C>>,
    spare: Option<Req>,
    idempotent: bool,
    more_allowed: bool,
    budget_left: bool,
    started: Instant,
}

type Again<Res> = Pin<Box<dyn Future<Output = Result<Res, BoxError>> + Send>>;

pin_project! {
    /// The future of a [`Retry`] call: its first attempt inline, then, only
    /// if a retry happens, the rest boxed.
    #[project = RetryProj]
    pub enum RetryFuture<S, C, Req, Res, E>
    where
        S: Service<Req, Response = Res, Error = E>,
    {
        /// The first attempt.
        First {
            #[pin]
            call: S::Future,
            next: Option<PendingRetries<S, C, Req>>,
        },
        /// Retries.
        Again { future: Again<Res> },
    }
}

impl<S, C, Req, Res, E> Future for RetryFuture<S, C, Req, Res, E>
where
    S: Service<Req, Response = Res, Error = E> + Clone + Send + 'static,
    S::Future: Send + 'static,
    C: RetryClassifier<Req, Res, E>,
    Req: Send + 'static,
    Res: Send + 'static,
    E: Into<BoxError> + Send + 'static,
{
    type Output = Result<Res, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let again = match self.as_mut().project() {
            RetryProj::Again { future } => return future.as_mut().poll(cx),
            RetryProj::First { call, next } => {
                let result = std::task::ready!(call.poll(cx));
                let Some(next) = next.take() else {
                    unreachable!("polled after completion")
                };
                let PendingRetries {
                    inner,
                    shared,
                    spare,
                    idempotent,
                    more_allowed,
                    budget_left,
                    started,
                } = next;
                let mut poison = PoisonTracker::new();
                let step = judge(
                    &shared,
                    result,
                    Tried {
                        attempts: 1,
                        idempotent,
                        spare,
                        more_allowed,
                        budget_left,
                        started,
                    },
                    &mut poison,
                );
                match step {
                    Step::Return(result) => return Poll::Ready(result),
                    Step::Retry(request) => {
                        Box::pin(run(inner, shared, request, 1, idempotent, poison))
                    }
                }
            }
        };
        self.set(RetryFuture::Again { future: again });
        self.poll(cx)
    }
}

/// One attempt that came back, and what was prepared for the next.
struct Tried<Req> {
    attempts: u32,
    idempotent: bool,
    spare: Option<Req>,
    more_allowed: bool,
    budget_left: bool,
    started: Instant,
}

/// What follows an attempt.
enum Step<Req, Res> {
    /// Give the caller this.
    Return(Result<Res, BoxError>),
    /// Send this copy again (the budget has paid for it).
    Retry(Req),
}

/// The rules after one attempt: its result to the caller, or a retry.
fn judge<C, Req, Res, E>(
    shared: &Shared<C>,
    result: Result<Res, E>,
    tried: Tried<Req>,
    poison: &mut PoisonTracker,
) -> Step<Req, Res>
where
    C: RetryClassifier<Req, Res, E>,
    E: Into<BoxError>,
{
    let (phase, kind) = match shared.classifier.classify(&result) {
        Attempt::Done => return Step::Return(result.map_err(Into::into)),
        Attempt::Failed { phase, kind } => (phase, kind),
    };
    let attempts = tried.attempts;
    let outcome = Outcome {
        // Each attempt counts as a different "endpoint" for the poison
        // rule: the same failure twice is the request's.
        endpoint: EndpointId(attempts as usize),
        phase,
        result: AttemptResult::Failed(kind),
        latency: tried.started.elapsed(),
    };
    let facts = RequestFacts {
        idempotent: tried.idempotent,
        // Not replayable only when the classifier could not copy it.
        body_replayable: tried.spare.is_some() || !(tried.more_allowed && tried.budget_left),
    };
    if let RetryDecision::Stop(_) = decide(&shared.policy, &facts, attempts, &outcome) {
        return Step::Return(result.map_err(Into::into));
    }
    if poison.record(attempts as usize, &outcome) {
        return Step::Return(result.map_err(Into::into));
    }
    // The budget is asked last: asking spends it.
    match tried.spare {
        Some(spare) if shared.budget.try_withdraw(Instant::now()) => Step::Retry(spare),
        Some(_) => Step::Return(budget_exhausted(result, attempts)),
        None if tried.more_allowed && !tried.budget_left => {
            Step::Return(budget_exhausted(result, attempts))
        }
        // It cannot be sent again: the caller gets this attempt's result.
        None => Step::Return(result.map_err(Into::into)),
    }
}

/// The attempts after the first, each after a backoff: `request` is the
/// copy for attempt `done + 1`.
async fn run<S, C, Req, Res, E>(
    mut inner: S,
    shared: Arc<Shared<C>>,
    request: Req,
    mut done: u32,
    idempotent: bool,
    mut poison: PoisonTracker,
) -> Result<Res, BoxError>
where
    S: Service<Req, Response = Res, Error = E> + Clone,
    C: RetryClassifier<Req, Res, E>,
    E: Into<BoxError>,
{
    let mut request = request;
    loop {
        let wait = shared.settings.backoff.delay(done - 1, &mut rand::rng());
        tokio::time::sleep(wait).await;
        done += 1;
        let started = Instant::now();
        let more_allowed = done < shared.policy.max_attempts();
        let budget_left = shared.budget.snapshot(started).remaining() > 0;
        let spare = if more_allowed && budget_left {
            shared.classifier.clone_request(&request)
        } else {
            None
        };
        std::future::poll_fn(|cx| inner.poll_ready(cx))
            .await
            .map_err(Into::into)?;
        let result = inner.call(request).await;
        let tried = Tried {
            attempts: done,
            idempotent,
            spare,
            more_allowed,
            budget_left,
            started,
        };
        match judge(&shared, result, tried, &mut poison) {
            Step::Return(result) => return result,
            Step::Retry(next) => request = next,
        }
    }
}

/// The last attempt's result when the budget forbids another: the service's
/// own answer as it is, an error wrapped in [`BudgetExhausted`].
fn budget_exhausted<Res, E: Into<BoxError>>(
    result: Result<Res, E>,
    attempts: u32,
) -> Result<Res, BoxError> {
    result.map_err(|error| {
        Box::new(BudgetExhausted {
            attempts,
            source: error.into(),
        }) as BoxError
    })
}
