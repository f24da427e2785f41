//! One client request's attempts: the first, retries after failures, and a
//! hedge beside a slow attempt, until one answers or a rule says stop.
//!
//! The rules themselves are levee-core's ([`decide`], [`PoisonTracker`], the
//! cluster's retry budget); this file runs them against real attempts:
//! - a retry or hedge always goes to an endpoint this request has not tried;
//! - at most two attempts run at once (the slow one and its hedge); the
//!   first usable response wins and the other is cancelled;
//! - a failed attempt's verdict for outlier detection waits until the
//!   request is over, because a poison request's failures must not count
//!   against the endpoints it broke;
//! - with per-endpoint breakers, an endpoint whose breaker rejects is
//!   skipped as if tried, and each attempt's outcome feeds its endpoint's
//!   breaker (when the request is over for a failure, as above);
//! - a body streaming from the client is watched while it goes up
//!   (`upstream::send_streamed`): the response-head timeouts start once it
//!   is sent, and a client body that stalls or breaks ends the request
//!   without any verdict on the endpoint.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::{Method, Request, Response, Uri, Version};
use levee_core::breaker::{CallOutcome, Rejected};
use levee_core::retry::{
    NotRetried, POISON_ENDPOINTS, PoisonClass, PoisonTracker, RequestFacts, RetryDecision, decide,
};
use levee_core::{AttemptResult, EndpointId, FailureKind, Outcome};
use smallvec::SmallVec;
use tokio::time::Instant;

use super::body::{InFlight, UpstreamBody};
use super::error::ProxyError;
use super::retries::RetryState;
use crate::access_log::{AttemptLog, AttemptLogs};
use crate::cluster::{Cluster, EndpointBreakerCall};
use crate::config::RetrySettings;
use crate::route::Route;
use crate::upstream::{
    ClientBodyFailed, PooledConnection, ReplayCopy, RequestBody, ResponseBody, SendFailure,
    SharedFields, UploadWatch, send_streamed,
};

/// The request body as this request's attempts see it.
pub enum Payload {
    /// Held whole: every attempt gets a copy.
    Replayable(ReplayCopy),
    /// Streamed: it goes to one attempt; `None` once sent.
    Once(Option<RequestBody>),
}

impl Payload {
    fn for_attempt(&mut self) -> Option<RequestBody> {
        match self {
            Payload::Replayable(copy) => Some(copy.body()),
            Payload::Once(body) => body.take(),
        }
    }
}

/// The request head, kept so that each attempt can be sent its own copy.
pub struct RequestHead {
    /// Method.
    pub method: Method,
    /// Origin-form URI.
    pub uri: Uri,
    /// Header fields as they go upstream, shared by every attempt (an
    /// attempt's request carries only its own fields, usually none).
    pub fields: Arc<SharedFields>,
    /// How each attempt is told the time left before the deadline, if it
    /// is (`deadline_header`, or a gRPC call's `grpc-timeout`).
    pub propagation: Option<super::deadline::Propagation>,
}

impl RequestHead {
    fn request(&self, body: RequestBody) -> Request<RequestBody> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = Version::HTTP_11;
        request
    }

    /// How the request is named in events: method and path, never the query.
    fn describe(&self) -> String {
        format!("{} {}", self.method, self.uri.path())
    }
}

/// An attempt ready to run.
struct Prepared {
    cluster: Arc<Cluster>,
    endpoint: EndpointId,
    /// Its own header fields only (see [`RequestHead::fields`]).
    request: Request<RequestBody>,
    /// The request's header fields.
    shared: Arc<SharedFields>,
    /// When it was booked: its latency counts from here.
    started: Instant,
    /// Per-try timeout, capped by the request's deadline (both shifted by
    /// the upload's duration for a body streaming from the client).
    timeout_at: Instant,
    /// The endpoint breaker's permit, if the cluster has endpoint breakers.
    breaker: Option<EndpointBreakerCall>,
}

/// How an attempt learns that its per-try timeout has passed.
#[derive(Clone, Copy)]
enum Expiry<'a> {
    /// From a timer of its own (retries and hedges).
    Timer,
    /// From its request's timer, which sets this flag: the first attempt,
    /// whose request keeps one timer for both the hedge delay and this
    /// timeout (callgrind: a tokio timer costs ~600 instructions per
    /// request to register, fire or cancel, and every request had two).
    Told(&'a AtomicBool),
}

/// Send one attempt and wait for its response head.
async fn run_attempt(prepared: Prepared, expiry: Expiry<'_>) -> Attempted {
    let Prepared {
        cluster,
        endpoint,
        request,
        shared,
        started,
        timeout_at,
        breaker,
    } = prepared;
    let in_flight = InFlight::start(&cluster, endpoint);
    let pool = &cluster.endpoint(endpoint).pool;
    let request = match watch_upload(request, started) {
        Sending::Held(request) => request,
        Sending::Streamed(request, watch) => {
            let idle = cluster.settings.body_idle_timeout;
            // Boxed: inline, its state would grow every request's future
            // (which hyper moves whole) for the few that stream a body.
            let uploaded = Box::pin(send_streamed(
                pool, request, &shared, watch, idle, timeout_at,
            ))
            .await;
            return Attempted {
                endpoint,
                in_flight,
                finished_at: Instant::now(),
                latency: uploaded.latency,
                upload: uploaded.upload,
                result: uploaded.result,
                breaker,
            };
        }
    };
    // A body levee holds goes out at once: the head is due from now.
    let sent = match expiry {
        Expiry::Timer => tokio::time::timeout_at(timeout_at, pool.send(request, &shared))
            .await
            .ok(),
        Expiry::Told(expired) => until_expired(pool.send(request, &shared), expired).await,
    };
    // Dropping the attempt closes its connection: a hung endpoint keeps no
    // pooled connection.
    let result = sent.unwrap_or_else(|| Err(SendFailure::new(FailureKind::Timeout)));
    let finished_at = Instant::now();
    Attempted {
        endpoint,
        in_flight,
        finished_at,
        latency: finished_at.saturating_duration_since(started),
        upload: Duration::ZERO,
        result,
        breaker,
    }
}

/// `send`'s output, or `None` once `expired` is set. Checked after each
/// poll of `send`, as `tokio::time::timeout` checks its timer: an answer
/// that is in wins. Whoever sets the flag polls this future next.
async fn until_expired<F: Future>(send: F, expired: &AtomicBool) -> Option<F::Output> {
    let mut send = std::pin::pin!(send);
    std::future::poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending if expired.load(Ordering::Relaxed) => Poll::Ready(None),
        Poll::Pending => Poll::Pending,
    })
    .await
}

/// How an attempt's request goes out.
enum Sending {
    /// With a body levee holds: at once, from memory.
    Held(Request<RequestBody>),
    /// With a body streaming from the client, watched from the start.
    Streamed(Request<RequestBody>, UploadWatch),
}

/// `request`, and a watch on its upload from `now` if its body streams from
/// the client. Not inline in `run_attempt`: a borrow of the request there
/// would keep a copy of it in every attempt's future.
fn watch_upload(mut request: Request<RequestBody>, now: Instant) -> Sending {
    match request.body_mut().watch_upload(now) {
        Some(watch) => Sending::Streamed(request, watch),
        None => Sending::Held(request),
    }
}

/// What one attempt came back with.
struct Attempted {
    endpoint: EndpointId,
    in_flight: InFlight,
    /// When it came back (the clock is read once for its latency and for
    /// judging it).
    finished_at: Instant,
    /// How long the endpoint kept it waiting (the upload not included).
    latency: Duration,
    /// How long its body streamed up from the client (zero for a body levee
    /// holds): time that is not the endpoint's answer time.
    upload: Duration,
    result: Result<(Response<ResponseBody>, PooledConnection), SendFailure>,
    breaker: Option<EndpointBreakerCall>,
}

type AttemptFuture = Pin<Box<dyn Future<Output = Attempted> + Send>>;

/// An attempt that has not come back yet.
struct Running {
    endpoint: EndpointId,
    started: Instant,
}

/// The state of one request's attempts.
pub struct Attempts<'r> {
    cluster: Arc<Cluster>,
    /// The cluster's retry budget, hedging latencies and retry counters.
    retries: &'r RetryState,
    /// The route's retry settings (its cluster's, with what it replaces).
    retry: &'r RetrySettings,
    head: RequestHead,
    payload: Payload,
    facts: RequestFacts,
    deadline: Instant,
    /// Time spent on the client's body so far, reading it before the first
    /// attempt or streaming it up (the deadline has been moved by as much).
    client_time: Duration,
    tried: SmallVec<[EndpointId; 3]>,
    /// Endpoints whose breaker rejected this request: never picked again.
    skipped: SmallVec<[EndpointId; 3]>,
    /// The last endpoint breaker that rejected, for the 503 when no
    /// endpoint is left.
    rejected: Option<(String, Rejected)>,
    running: SmallVec<[Running; 2]>,
    /// Retries and hedges; created on the first one (most requests have none).
    futures: Option<FuturesUnordered<AttemptFuture>>,
    poison: PoisonTracker,
    /// Failed attempts whose outlier (and endpoint breaker) verdict waits
    /// for the end of the request.
    held_verdicts: SmallVec<[(Outcome, Option<EndpointBreakerCall>); 2]>,
    /// What the last failure that had more to say said (for the client's
    /// error body).
    last_detail: Option<Box<str>>,
    /// With an access log on the listener: each settled attempt's endpoint
    /// and result, for the line (empty and untouched otherwise).
    trail: Option<SmallVec<[(EndpointId, AttemptResult); 2]>>,
}

/// How a request's attempts ended.
pub struct Finished {
    /// The response for the client, or levee's error.
    pub result: Result<Answered, ProxyError>,
    /// Time spent on the client's body (reading it, streaming it up): not
    /// part of the upstream's answer time.
    pub client_time: Duration,
}

/// A response head ready for the client, and how many attempts it took.
pub struct Answered {
    /// The winning response, body still streaming.
    pub response: Response<UpstreamBody>,
    /// Attempts made, the winner included.
    pub attempts: u32,
}

impl<'r> Attempts<'r> {
    /// Prepare the attempts of one request, which must answer by `deadline`
    /// and already spent `client_time` waiting for its body.
    pub fn new(
        route: &'r Route,
        head: RequestHead,
        payload: Payload,
        idempotent: bool,
        deadline: Instant,
        client_time: Duration,
    ) -> Attempts<'r> {
        let facts = RequestFacts {
            idempotent,
            body_replayable: matches!(payload, Payload::Replayable(_)),
        };
        Attempts {
            cluster: Arc::clone(&route.cluster),
            retries: &route.retries,
            retry: &route.retry,
            head,
            payload,
            facts,
            deadline,
            client_time,
            tried: SmallVec::new(),
            skipped: SmallVec::new(),
            rejected: None,
            running: SmallVec::new(),
            futures: None,
            poison: PoisonTracker::new(),
            held_verdicts: SmallVec::new(),
            last_detail: None,
            trail: route.access_log.then(SmallVec::new),
        }
    }

    /// Run attempts, the first on `first`, until one gives a response the
    /// client should get, or a rule stops the request. By reference: taken
    /// by value, the attempts' state (1 KB) would be kept twice in the
    /// future, as the argument and as the body's own copy.
    pub async fn run(&mut self, first: EndpointId) -> Finished {
        let now = Instant::now();
        self.retries.record_request(now);
        // Only a body levee holds is hedged: it is all there before the
        // first attempt, so a hedge never fires while a body is uploading.
        let hedging = self.facts.idempotent
            && self.facts.body_replayable
            && self.retry.hedge.is_some()
            && self.retry.policy.max_attempts() > 1;
        let mut hedge_at = if hedging {
            self.retries.hedge_delay(now).map(|delay| now + delay)
        } else {
            None
        };
        // The first attempt runs on this task's stack; only retries and
        // hedges are boxed into `futures`. Most requests take one attempt,
        // and this path was measured (callgrind) to cost a quarter of the
        // gateway's per-request instructions when every attempt was boxed.
        // A fresh payload can always be sent once.
        let Some((first, breaker)) = self.admit(Some(first), now) else {
            self.finish();
            let error = self.no_endpoint_error();
            return self.finished(Err(error));
        };
        let Some(prepared) = self.prepare(first, breaker, now) else {
            return self.finished(Err(self.deadline_error()));
        };
        // One timer for the request: the hedge delay, and the first
        // attempt's per-try timeout (which it learns from `expired`). No
        // timer for the request's deadline: every attempt's own timeout is
        // capped by it, so each ends by then. Retries and hedges, off the
        // common path, keep timers of their own.
        let first_timeout = prepared.timeout_at;
        let expired = AtomicBool::new(false);
        let first = run_attempt(prepared, Expiry::Told(&expired));
        tokio::pin!(first);
        let mut first_running = true;
        let start_at = hedge_at.map_or(first_timeout, |at| at.min(first_timeout));
        let mut armed_at = Some(start_at);
        let timer = tokio::time::sleep_until(start_at);
        tokio::pin!(timer);
        let result = loop {
            let hedge_due = hedge_at.filter(|_| self.running.len() == 1);
            let first_due =
                (first_running && !expired.load(Ordering::Relaxed)).then_some(first_timeout);
            let wake_at = earliest(hedge_due, first_due);
            if let Some(at) = wake_at
                && armed_at != Some(at)
            {
                timer.as_mut().reset(at);
                armed_at = Some(at);
            }
            // In this order, not at random: an answer that is in wins over
            // a timer that fired, and no random number is drawn per poll.
            let step = tokio::select! {
                biased;
                attempted = &mut first, if first_running => {
                    first_running = false;
                    self.settle(attempted)
                }
                Some(attempted) = next_of(&mut self.futures), if self.futures.as_ref().is_some_and(|futures| !futures.is_empty()) => {
                    self.settle(attempted)
                }
                () = &mut timer, if wake_at.is_some() => {
                    // What was due by the instant the timer was set for
                    // (at least one of the two); a fired timer is set anew.
                    let fired = armed_at.take();
                    if first_due.is_some() && first_due <= fired {
                        // `first`, polled next, ends with a timeout.
                        expired.store(true, Ordering::Relaxed);
                    }
                    if hedge_due.is_some() && hedge_due <= fired {
                        hedge_at = self.hedge(Instant::now());
                    }
                    Step::Continue
                }
                // Nothing running and nothing to start: cannot happen while
                // `settle` keeps its rules, but never wait forever.
                else => break Err(self.deadline_error()),
            };
            let step = match step {
                Step::Retry(last, now) => self.retry(&last, now).await,
                step => step,
            };
            match step {
                Step::Answer(answered) => break Ok(*answered),
                Step::Stop(error) => break Err(error),
                Step::Continue | Step::Retry(..) => {}
            }
        };
        self.finish();
        self.finished(result)
    }

    fn finished(&self, result: Result<Answered, ProxyError>) -> Finished {
        Finished {
            result,
            client_time: self.client_time,
        }
    }

    fn attempts(&self) -> u32 {
        self.tried.len() as u32
    }

    /// The endpoint for the next attempt, `preferred` if given and its
    /// breaker lets it through, else any endpoint not tried or skipped whose
    /// breaker does; `None` when none is left.
    fn admit(
        &mut self,
        preferred: Option<EndpointId>,
        now: Instant,
    ) -> Option<(EndpointId, Option<EndpointBreakerCall>)> {
        let mut candidate = preferred;
        loop {
            let endpoint = match candidate.take() {
                Some(endpoint) => endpoint,
                None => {
                    let excluded: SmallVec<[EndpointId; 6]> =
                        self.tried.iter().chain(&self.skipped).copied().collect();
                    self.cluster.pick_other(now, &excluded)?
                }
            };
            match EndpointBreakerCall::acquire(&self.cluster, endpoint, now) {
                Ok(breaker) => return Some((endpoint, breaker)),
                Err(rejected) => {
                    self.skipped.push(endpoint);
                    self.rejected = Some(rejected);
                }
            }
        }
    }

    /// Book an attempt on `endpoint` and build its request; `None` if the
    /// body can no longer be sent (the callers check this beforehand).
    fn prepare(
        &mut self,
        endpoint: EndpointId,
        breaker: Option<EndpointBreakerCall>,
        now: Instant,
    ) -> Option<Prepared> {
        let body = self.payload.for_attempt()?;
        let mut request = self.head.request(body);
        if let Some(propagation) = &self.head.propagation {
            let left = self.deadline.saturating_duration_since(now);
            super::deadline::write(request.headers_mut(), propagation, left);
        }
        self.tried.push(endpoint);
        self.running.push(Running {
            endpoint,
            started: now,
        });
        Some(Prepared {
            cluster: Arc::clone(&self.cluster),
            endpoint,
            request,
            shared: Arc::clone(&self.head.fields),
            started: now,
            timeout_at: (now + self.retry.per_try_timeout).min(self.deadline),
            breaker,
        })
    }

    /// Start a further attempt (retry or hedge) on `endpoint`.
    fn launch(&mut self, endpoint: EndpointId, breaker: Option<EndpointBreakerCall>, now: Instant) {
        if let Some(prepared) = self.prepare(endpoint, breaker, now) {
            self.futures
                .get_or_insert_with(FuturesUnordered::new)
                .push(Box::pin(run_attempt(prepared, Expiry::Timer)));
        }
    }

    /// Judge an attempt that came back.
    ///
    /// Not async: a retry's backoff is slept in `run`, so that settling
    /// keeps no state of its own in every request's future (which hyper
    /// copies whole per request; 2 KB less).
    fn settle(&mut self, attempted: Attempted) -> Step {
        let now = attempted.finished_at;
        self.running
            .retain(|running| running.endpoint != attempted.endpoint);
        if !attempted.upload.is_zero() {
            // The request's deadline counts from the body's end, as the
            // attempt's own timeout did.
            self.client_time += attempted.upload;
            self.deadline += attempted.upload;
        }
        let Attempted {
            endpoint,
            in_flight,
            finished_at: _,
            latency,
            upload: _,
            result,
            breaker,
        } = attempted;
        let (outcome, response) = match result {
            Ok((response, connection)) => {
                // A gRPC answer is judged by its grpc-status.
                let status = super::grpc::judged_status(&response);
                (
                    Outcome::response(endpoint, status, latency),
                    Some((response, connection)),
                )
            }
            Err(failure) => {
                if let Some(client_body) = failure.client_body {
                    return Step::Stop(self.client_body_failed(endpoint, client_body, breaker));
                }
                if failure.detail.is_some() {
                    self.last_detail = failure.detail;
                }
                if let (Some(unsent), Payload::Once(slot)) = (failure.unsent, &mut self.payload) {
                    // Never sent: the streaming body can still go elsewhere.
                    *slot = Some((*unsent).into_body());
                }
                (Outcome::failure(endpoint, failure.kind, latency), None)
            }
        };
        self.cluster.record_head(&outcome, now);
        if let Some(trail) = &mut self.trail {
            trail.push((endpoint, outcome.result));
        }
        if let AttemptResult::Response { .. } = outcome.result {
            self.retries.record_head_latency(outcome.latency, now);
        }
        let response = match response {
            // Anything but 502/503/504 is the upstream's answer.
            Some((response, connection))
                if !matches!(
                    outcome.result,
                    AttemptResult::Response { status: 502..=504 }
                ) =>
            {
                return Step::Answer(Box::new(
                    self.answer(response, connection, in_flight, outcome, breaker),
                ));
            }
            other => other,
        };
        self.poison.record(endpoint.0, &outcome);
        if !self.running.is_empty() {
            // The hedge (or the attempt it was hedging) may still answer.
            self.held_verdicts.push((outcome, breaker));
            return Step::Continue;
        }
        if now >= self.deadline {
            // No time left for another attempt.
            return match response {
                Some((response, connection)) => Step::Answer(Box::new(
                    self.answer(response, connection, in_flight, outcome, breaker),
                )),
                None => {
                    self.held_verdicts.push((outcome, breaker));
                    Step::Stop(self.deadline_error())
                }
            };
        }
        // The budget is asked last: asking spends it.
        let stop = self
            .next_step(&outcome, now)
            .or_else(|| (!self.retries.try_spend(now)).then_some(NotRetried::BudgetExhausted));
        match (stop, response) {
            (Some(stop), Some((response, connection))) => {
                // The upstream's own error status says more than levee could.
                tracing::debug!(cluster = %self.cluster.name, status = %response.status(), reason = %stop, "upstream error status passed on");
                self.retries.metrics().record_not_retried(stop.as_str());
                Step::Answer(Box::new(
                    self.answer(response, connection, in_flight, outcome, breaker),
                ))
            }
            (Some(stop), None) => {
                self.held_verdicts.push((outcome, breaker));
                Step::Stop(self.give_up(&outcome, stop))
            }
            (None, _) => {
                self.held_verdicts.push((outcome, breaker));
                drop(in_flight);
                Step::Retry(outcome, now)
            }
        }
    }

    /// `None` to retry, or the rule that stops the request after `outcome`.
    fn next_step(&self, outcome: &Outcome, now: Instant) -> Option<NotRetried> {
        if let Some(class) = self.poison.poisoned() {
            return Some(NotRetried::Poison {
                class,
                endpoints: POISON_ENDPOINTS,
            });
        }
        let policy = &self.retry.policy;
        if let RetryDecision::Stop(reason) = decide(policy, &self.facts, self.attempts(), outcome) {
            return Some(reason);
        }
        if matches!(self.payload, Payload::Once(None)) {
            return Some(NotRetried::BodyTooLarge);
        }
        let excluded: SmallVec<[EndpointId; 6]> =
            self.tried.iter().chain(&self.skipped).copied().collect();
        if self.cluster.pick_other(now, &excluded).is_none() {
            return Some(NotRetried::NoOtherEndpoint);
        }
        self.no_time_left(now)
    }

    /// Whether the time left before the deadline is below what an attempt
    /// typically takes (the cluster's p50, when it has enough latencies):
    /// then a retry or hedge would be work nobody waits for.
    fn no_time_left(&self, now: Instant) -> Option<NotRetried> {
        let typical = self.retries.typical_latency(now)?;
        let left = self.deadline.saturating_duration_since(now);
        (left < typical).then_some(NotRetried::NoTimeLeft {
            left,
            needs: typical,
            what: "the cluster's p50",
        })
    }

    /// Retry after `last` failed, after a backoff (the budget has paid).
    async fn retry(&mut self, last: &Outcome, now: Instant) -> Step {
        let retry_number = self.attempts().saturating_sub(1);
        let wait = self
            .cluster
            .settings
            .retry
            .backoff
            .delay(retry_number, &mut rand::rng());
        if now + wait >= self.deadline {
            // Waiting out the backoff would leave no time: fail now.
            let left = self.deadline.saturating_duration_since(now);
            return Step::Stop(self.give_up(
                last,
                NotRetried::NoTimeLeft {
                    left,
                    needs: wait,
                    what: "the backoff",
                },
            ));
        }
        tokio::time::sleep_until(now + wait).await;
        let now = Instant::now();
        let Some((next, breaker)) = self.admit(None, now) else {
            return Step::Stop(self.give_up(last, NotRetried::NoOtherEndpoint));
        };
        tracing::debug!(
            cluster = %self.cluster.name,
            from = %self.cluster.endpoint(last.endpoint).address,
            to = %self.cluster.endpoint(next).address,
            attempt = self.attempts() + 1,
            "retrying"
        );
        self.retries.metrics().record_retry();
        self.launch(next, breaker, now);
        Step::Continue
    }

    /// The hedge timer fired: send a copy to another endpoint if the rules
    /// allow. Returns when to try again (the budget may refill), if ever.
    fn hedge(&mut self, now: Instant) -> Option<Instant> {
        let max_attempts = self.retry.policy.max_attempts();
        if self.attempts() >= max_attempts {
            return None;
        }
        // A route may turn hedging off for its requests.
        self.retry.hedge?;
        let delay = self.retries.hedge_delay(now)?;
        if let Some(stop) = self.no_time_left(now) {
            tracing::debug!(cluster = %self.cluster.name, reason = %stop, "not hedging");
            return None;
        }
        // A permit not used (no budget) is given back when dropped.
        let (next, breaker) = self.admit(None, now)?;
        if !self.retries.try_spend(now) {
            return Some(now + delay);
        }
        tracing::debug!(
            cluster = %self.cluster.name,
            to = %self.cluster.endpoint(next).address,
            after_ms = delay.as_millis() as u64,
            "hedging a slow request"
        );
        self.retries.metrics().record_hedge();
        self.launch(next, breaker, now);
        None
    }

    /// Forward this response: the request is answered.
    fn answer(
        &mut self,
        response: Response<ResponseBody>,
        connection: PooledConnection,
        in_flight: InFlight,
        outcome: Outcome,
        breaker: Option<EndpointBreakerCall>,
    ) -> Answered {
        let (parts, body) = response.into_parts();
        if self.cluster.watches_departures() {
            crate::cluster::going_away::note_connection_close(
                &self.cluster,
                outcome.endpoint,
                &parts.headers,
            );
        }
        let mut body = UpstreamBody::new(
            body,
            in_flight,
            connection,
            Arc::clone(&self.cluster),
            outcome,
        );
        let poisoned = self.poison.poisoned();
        let forgiven = poisoned.is_some() && PoisonClass::of(&outcome) == poisoned;
        if forgiven {
            body.forgive();
        }
        if let Some(breaker) = breaker {
            breaker.finish(
                (!forgiven)
                    .then(|| CallOutcome::from_outcome(&outcome, true))
                    .flatten(),
            );
        }
        let mut response = Response::from_parts(parts, body);
        if let Some(trail) = &self.trail {
            response.extensions_mut().insert(self.attempt_logs(trail));
        }
        Answered {
            response,
            attempts: self.attempts(),
        }
    }

    /// The access-log view of this request's attempts: each settled one
    /// with its status or failure, then any still running (a hedge's
    /// loser) as `cancelled`.
    fn attempt_logs(&self, trail: &[(EndpointId, AttemptResult)]) -> AttemptLogs {
        let address = |endpoint: EndpointId| self.cluster.endpoint(endpoint).address.to_string();
        let mut logs: Vec<AttemptLog> = trail
            .iter()
            .map(|(endpoint, result)| AttemptLog {
                endpoint: address(*endpoint),
                outcome: match result {
                    AttemptResult::Response { status } => status.to_string(),
                    AttemptResult::Failed(kind) => kind.as_str().to_owned(),
                },
            })
            .collect();
        for running in &self.running {
            logs.push(AttemptLog {
                endpoint: address(running.endpoint),
                outcome: "cancelled".to_owned(),
            });
        }
        AttemptLogs {
            endpoint: trail.last().map(|(endpoint, _)| address(*endpoint)),
            attempts: logs,
        }
    }

    /// The error the client gets after `last`, stopped by `reason`.
    fn give_up(&self, last: &Outcome, reason: NotRetried) -> ProxyError {
        self.retries.metrics().record_not_retried(reason.as_str());
        let kind = match last.result {
            AttemptResult::Failed(kind) => kind,
            // Only a 502-504 gets here with a status; it was passed on
            // rather than given up on, so this is a defensive default.
            AttemptResult::Response { .. } => FailureKind::Other,
        };
        ProxyError::Upstream {
            cluster: self.cluster.name.clone(),
            endpoint: self.cluster.endpoint(last.endpoint).address.clone(),
            kind,
            attempts: self.attempts(),
            not_retried: Some(reason),
            detail: self.last_detail.clone(),
        }
    }

    /// No endpoint to start the request on: every one's breaker rejected
    /// (the last one is named), or there was none to pick.
    fn no_endpoint_error(&mut self) -> ProxyError {
        match self.rejected.take() {
            Some((breaker, rejected)) => ProxyError::BreakerOpen { breaker, rejected },
            None => ProxyError::NoEndpoint {
                cluster: self.cluster.name.clone(),
                reason: self.cluster.no_endpoint_reason(Instant::now()),
            },
        }
    }

    /// The client's body failed while it streamed to `endpoint`: the request
    /// is over, and says nothing about the endpoint (no attempt metric,
    /// latency sample, outlier or breaker verdict), nor can another endpoint
    /// get the body.
    fn client_body_failed(
        &self,
        endpoint: EndpointId,
        failure: ClientBodyFailed,
        breaker: Option<EndpointBreakerCall>,
    ) -> ProxyError {
        if let Some(breaker) = breaker {
            breaker.finish(None);
        }
        self.retries.record_client_body_failure(
            Some(&self.cluster.endpoint(endpoint).address),
            failure,
            self.cluster.settings.body_idle_timeout,
        );
        self.retries
            .metrics()
            .record_not_retried(NotRetried::ClientBody.as_str());
        ProxyError::ClientBody {
            cluster: self.cluster.name.clone(),
            failure,
            idle: self.cluster.settings.body_idle_timeout,
            attempts: self.attempts(),
        }
    }

    /// The request's deadline passed without a usable answer.
    fn deadline_error(&self) -> ProxyError {
        ProxyError::Deadline {
            cluster: self.cluster.name.clone(),
            attempts: self.attempts(),
        }
    }

    /// The request is over: cancel what is still running (a hedge loser's
    /// wait still teaches the balancer that its endpoint was slow) and give
    /// the held verdicts, except a poison request's, to outlier detection.
    fn finish(&mut self) {
        // Most requests end with nothing running and no verdict held: no
        // clock reading for them.
        if !self.running.is_empty() {
            let now = Instant::now();
            for running in self.running.drain(..) {
                let waited = now.saturating_duration_since(running.started);
                self.cluster
                    .load(running.endpoint)
                    .observe_latency(waited, now);
            }
        }
        self.futures = None;
        let poisoned = self.poison.poisoned();
        if let Some(class) = poisoned {
            self.retries
                .report_poison(&self.head.describe(), class, POISON_ENDPOINTS);
        }
        if self.held_verdicts.is_empty() {
            return;
        }
        let now = Instant::now();
        for (outcome, breaker) in self.held_verdicts.drain(..) {
            if poisoned.is_some() && PoisonClass::of(&outcome) == poisoned {
                // Dropped: the permit is given back, counting for nothing.
                continue;
            }
            self.cluster.record_passive(&outcome, now);
            if let Some(breaker) = breaker {
                breaker.finish(CallOutcome::from_outcome(&outcome, true));
            }
        }
    }
}

/// What the request does after an attempt came back.
enum Step {
    Answer(Box<Answered>),
    Stop(ProxyError),
    Continue,
    /// Retry after the attempt that failed with this outcome, at `now`.
    Retry(Outcome, Instant),
}

/// The next further attempt to come back, if any runs.
async fn next_of(futures: &mut Option<FuturesUnordered<AttemptFuture>>) -> Option<Attempted> {
    futures.as_mut()?.next().await
}

/// The earlier of two instants, either of which may be missing.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
