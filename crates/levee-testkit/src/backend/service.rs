//! The per-request decision: read the mode once, then either answer through
//! hyper (healthy, slow, failing) or hand the connection over to the raw
//! fault code (hung, reset, partial-then-reset).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::futures::OwnedNotified;
use tokio::time::Sleep;

use super::Shared;
use super::body::ResponseBody;
use super::mode::Mode;
use super::takeover::{ConnControl, Takeover};

/// Body of every [`Mode::Failing`] answer.
const FAILING_BODY: &str = r#"{"error":"demo backend failing"}"#;

/// Upper bounds on query parameters, so a typo cannot park a test for hours
/// (or fill its memory).
const MAX_DRIP_CHUNKS: u64 = 100_000;
const MAX_QUERY_MILLIS: u64 = 60_000;
const MAX_BYTES: u64 = 64 << 20;

/// Chunks and pause of `/drip` when the query does not say.
const DEFAULT_DRIP_CHUNKS: u64 = 5;
const DEFAULT_DRIP_INTERVAL_MS: u64 = 100;
/// Delay of `/slow` when the query does not say.
const DEFAULT_SLOW_ROUTE_MS: u64 = 1_000;

/// The hyper service of one connection.
#[derive(Clone)]
pub(crate) struct BackendService {
    /// Mode, counters and canned responses of the backend.
    shared: Arc<Shared>,
    /// Where to ask for a raw fault on this connection.
    conn: Arc<ConnControl>,
    /// The client's address, for faults that only its traffic sees.
    peer: std::net::IpAddr,
}

/// The service never fails on its own; this only ends a request whose
/// connection was taken over for a raw fault (the connection is gone by then,
/// so nobody sees it).
#[derive(Debug, thiserror::Error)]
#[error("connection taken over to inject a fault")]
pub(crate) struct TakenOver;

impl BackendService {
    pub(crate) fn new(shared: Arc<Shared>, conn: Arc<ConnControl>, peer: std::net::IpAddr) -> Self {
        Self { shared, conn, peer }
    }

    /// Asks the connection task to drop hyper and run `takeover` on the bare
    /// socket, and returns a future that stays pending until that happened.
    fn take_over(&self, takeover: Takeover) -> ResponseFuture {
        let mut gone = Box::pin(self.conn.gone().notified_owned());
        // Register before asking, so the wake-up cannot be missed.
        gone.as_mut().enable();
        self.conn.request_takeover(takeover);
        ResponseFuture::TakenOver(gone)
    }

    fn response(&self, status: StatusCode, body: ResponseBody) -> Response<ResponseBody> {
        let mut response = Response::new(body);
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert("x-backend", self.shared.backend_header.clone());
        response
    }

    /// Healthy routing; returns an extra delay (from `/slow`) with the answer.
    fn route(&self, request: Request<Incoming>) -> (Duration, Response<ResponseBody>) {
        let path = request.uri().path();
        let query = request.uri().query();
        let method = request.method();
        let hello = || {
            self.response(
                StatusCode::OK,
                ResponseBody::full(self.shared.hello.clone()),
            )
        };
        match path {
            "/drip" if method == Method::GET => {
                let chunks = query_param(query, "chunks")
                    .unwrap_or(DEFAULT_DRIP_CHUNKS)
                    .min(MAX_DRIP_CHUNKS);
                let interval = query_param(query, "interval")
                    .unwrap_or(DEFAULT_DRIP_INTERVAL_MS)
                    .min(MAX_QUERY_MILLIS);
                let body = ResponseBody::drip(chunks, Duration::from_millis(interval));
                (Duration::ZERO, self.response(StatusCode::OK, body))
            }
            "/bytes" if method == Method::GET => {
                let n = query_param(query, "n").unwrap_or(0).min(MAX_BYTES);
                let body = Bytes::from(vec![b'x'; usize::try_from(n).unwrap_or(0)]);
                (
                    Duration::ZERO,
                    self.response(StatusCode::OK, ResponseBody::full(body)),
                )
            }
            "/echo" if method == Method::POST || method == Method::PUT => {
                let body = ResponseBody::Echo(request.into_body());
                (Duration::ZERO, self.response(StatusCode::OK, body))
            }
            "/slow" if method == Method::GET => {
                let ms = query_param(query, "ms")
                    .unwrap_or(DEFAULT_SLOW_ROUTE_MS)
                    .min(MAX_QUERY_MILLIS);
                (Duration::from_millis(ms), hello())
            }
            _ => match path.strip_prefix("/status/") {
                Some(code) => {
                    let status = code
                        .parse::<u16>()
                        .ok()
                        .and_then(|code| StatusCode::from_u16(code).ok());
                    match status {
                        Some(status) => {
                            (Duration::ZERO, self.response(status, ResponseBody::empty()))
                        }
                        None => {
                            let body = Bytes::from(format!("invalid status code `{code}`\n"));
                            let response =
                                self.response(StatusCode::BAD_REQUEST, ResponseBody::full(body));
                            (Duration::ZERO, response)
                        }
                    }
                }
                None => (Duration::ZERO, hello()),
            },
        }
    }

    /// Answer after `delay`, waiting first for a worker if the backend has a
    /// capacity.
    fn serve(&self, (delay, response): (Duration, Response<ResponseBody>)) -> ResponseFuture {
        let Some(workers) = self.shared.capacity() else {
            return ResponseFuture::after((delay, response));
        };
        ResponseFuture::Queued(Box::pin(async move {
            // A closed semaphore cannot happen (it is never closed); serve anyway.
            let _worker = workers.acquire_owned().await;
            tokio::time::sleep(delay).await;
            Ok(response)
        }))
    }

    /// `/count`: read the whole request body, then answer its length in
    /// bytes (`"<n>\n"`), so a test knows the node got all of it, and that
    /// it answered only after the last byte. A body that breaks off gets a
    /// 400 saying how far it got (nobody is left to read it).
    fn count(&self, request: Request<Incoming>) -> ResponseFuture {
        let service = self.clone();
        ResponseFuture::Queued(Box::pin(async move {
            let mut body = request.into_body();
            let mut received = 0u64;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    let text = Bytes::from(format!("body broke off after {received} bytes\n"));
                    return Ok(service.response(StatusCode::BAD_REQUEST, ResponseBody::full(text)));
                };
                if let Some(data) = frame.data_ref() {
                    received += data.len() as u64;
                }
            }
            let text = Bytes::from(format!("{received}\n"));
            Ok(service.response(StatusCode::OK, ResponseBody::full(text)))
        }))
    }

    fn failing(&self) -> Response<ResponseBody> {
        let body = ResponseBody::full(Bytes::from_static(FAILING_BODY.as_bytes()));
        let mut response = self.response(StatusCode::SERVICE_UNAVAILABLE, body);
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

impl hyper::service::Service<Request<Incoming>> for BackendService {
    type Response = Response<ResponseBody>;
    type Error = TakenOver;
    type Future = ResponseFuture;

    fn call(&self, mut request: Request<Incoming>) -> ResponseFuture {
        // The only shared state the healthy path touches: one atomic load,
        // one counter, and a lock that is skipped when contended.
        let mode = self.shared.mode_for(self.peer);
        if mode == Mode::Crashed {
            // Raced with a crash (or crashed for this client only): the
            // connection is dropped unanswered.
            return self.take_over(Takeover::Drop);
        }
        self.shared.requests.fetch_add(1, Ordering::Relaxed);
        if matches!(
            *request.method(),
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        ) {
            self.shared.writes.fetch_add(1, Ordering::Relaxed);
        }
        self.shared
            .record_headers(std::mem::take(request.headers_mut()));
        match mode {
            // A request that kills whichever node gets it, however healthy.
            Mode::Healthy if request.uri().path() == "/reset" => self.take_over(Takeover::Reset),
            Mode::Healthy
                if request.uri().path() == "/count"
                    && matches!(*request.method(), Method::POST | Method::PUT) =>
            {
                self.count(request)
            }
            Mode::Healthy => self.serve(self.route(request)),
            Mode::Slow(delay) => {
                let (extra, response) = self.route(request);
                self.serve((delay.saturating_add(extra), response))
            }
            Mode::Failing => ResponseFuture::Ready(Some(self.failing())),
            Mode::Hung => self.take_over(Takeover::Hang),
            Mode::ResetAfterRequest => self.take_over(Takeover::Reset),
            Mode::PartialThenReset { bytes } => {
                self.take_over(Takeover::PartialThenReset { bytes })
            }
            Mode::Crashed => self.take_over(Takeover::Drop),
        }
    }
}

/// The future of one answer; a plain enum so that the healthy path does not
/// allocate a boxed future per request.
pub(crate) enum ResponseFuture {
    /// Answer at once. `None` after it was returned.
    Ready(Option<Response<ResponseBody>>),
    /// Answer after a pause (`Mode::Slow`, `/slow`).
    Delayed {
        pause: Pin<Box<Sleep>>,
        response: Option<Response<ResponseBody>>,
    },
    /// Waiting for a worker, then the pause (a backend with a capacity), or
    /// reading a whole request body first (`/count`).
    Queued(Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, TakenOver>> + Send>>),
    /// The connection was handed to the raw fault code; resolves (with an
    /// error nobody sees) once hyper's side of the connection is gone, so that
    /// an HTTP/2 stream task does not linger.
    TakenOver(Pin<Box<OwnedNotified>>),
}

impl ResponseFuture {
    fn after((delay, response): (Duration, Response<ResponseBody>)) -> Self {
        if delay.is_zero() {
            ResponseFuture::Ready(Some(response))
        } else {
            ResponseFuture::Delayed {
                pause: Box::pin(tokio::time::sleep(delay)),
                response: Some(response),
            }
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, TakenOver>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            ResponseFuture::Ready(response) => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Ready(Err(TakenOver)),
            },
            ResponseFuture::Delayed { pause, response } => {
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                match response.take() {
                    Some(response) => Poll::Ready(Ok(response)),
                    None => Poll::Ready(Err(TakenOver)),
                }
            }
            ResponseFuture::Queued(serving) => serving.as_mut().poll(cx),
            ResponseFuture::TakenOver(gone) => gone.as_mut().poll(cx).map(|()| Err(TakenOver)),
        }
    }
}

/// The value of `key` in a `k=v&k=v` query, if present and a number.
fn query_param(query: Option<&str>, key: &str) -> Option<u64> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::query_param;

    #[test]
    fn query_params() {
        assert_eq!(
            query_param(Some("chunks=3&interval=20"), "interval"),
            Some(20)
        );
        assert_eq!(query_param(Some("chunks=3"), "interval"), None);
        assert_eq!(query_param(Some("ms=x"), "ms"), None);
        assert_eq!(query_param(None, "ms"), None);
    }
}
