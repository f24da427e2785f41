//! One closed-loop worker: one keep-alive connection, one request in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::error::ErrorKind;
use super::latency::{Histograms, LatencyBuffer};

/// Status codes are three digits; one counter per possible code keeps
/// counting a plain array index.
const STATUS_SLOTS: usize = 1000;

/// The validated run, shared by all workers.
pub(crate) struct Plan {
    /// Resolved target.
    pub(crate) addr: SocketAddr,
    /// `Host` of every request.
    pub(crate) host_header: HeaderValue,
    /// Origin-form request target (`/path?query`).
    pub(crate) path: Uri,
    pub(crate) method: Method,
    /// Extra headers of every request.
    pub(crate) headers: HeaderMap,
    /// Request body (empty for none); cloning `Bytes` only bumps a count.
    pub(crate) body: Bytes,
    pub(crate) deadline: Duration,
    /// Stop starting requests this long after the start.
    pub(crate) duration: Option<Duration>,
    pub(crate) max_requests: Option<u64>,
    /// With a rate limit: one request per `pace` on each worker.
    pub(crate) pace: Option<Duration>,
    /// Requests claimed so far, when `max_requests` is set.
    pub(crate) tickets: AtomicU64,
    pub(crate) histograms: Arc<Mutex<Histograms>>,
}

impl Plan {
    /// May this worker start one more request?
    fn claim(&self, now: Instant, end: Option<Instant>) -> bool {
        if end.is_some_and(|end| now >= end) {
            return false;
        }
        match self.max_requests {
            Some(max) => self.tickets.fetch_add(1, Ordering::Relaxed) < max,
            None => true,
        }
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.path.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.host_header.clone());
        for (name, value) in &self.headers {
            headers.append(name, value.clone());
        }
        request
    }
}

/// One worker's counts, added up at the end (no shared counters on the
/// request path).
pub(crate) struct WorkerTally {
    pub(crate) sent: u64,
    pub(crate) successes: u64,
    /// Indexed by [`ErrorKind::index`].
    pub(crate) errors: [u64; ErrorKind::ALL.len()],
    /// Indexed by status code.
    pub(crate) statuses: Box<[u64; STATUS_SLOTS]>,
}

impl WorkerTally {
    pub(crate) fn new() -> Self {
        Self {
            sent: 0,
            successes: 0,
            errors: [0; ErrorKind::ALL.len()],
            statuses: Box::new([0; STATUS_SLOTS]),
        }
    }

    pub(crate) fn add(&mut self, other: &WorkerTally) {
        self.sent += other.sent;
        self.successes += other.successes;
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors.iter()) {
            *mine += theirs;
        }
        for (mine, theirs) in self.statuses.iter_mut().zip(other.statuses.iter()) {
            *mine += theirs;
        }
    }
}

/// A kept-alive client connection, driven by the worker's own task (no
/// spawned connection task, so no cross-task wake-up per request).
struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: Driver,
}

struct Driver {
    connection: Pin<Box<http1::Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
    /// The connection future has finished (closed or failed).
    done: bool,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn, ErrorKind> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|_| ErrorKind::Connect)?;
        // Requests are small; waiting for Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| ErrorKind::Connect)?;
        Ok(Conn {
            sender,
            driver: Driver {
                connection: Box::pin(connection),
                done: false,
            },
        })
    }
}

/// Polls `work` while driving the connection, until `work` completes.
async fn drive<F: Future>(driver: &mut Driver, work: F) -> F::Output {
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            biased;
            output = &mut work => return output,
            result = driver.connection.as_mut(), if !driver.done => {
                driver.done = true;
                if let Err(error) = result {
                    tracing::trace!(%error, "load connection ended");
                }
            }
        }
    }
}

/// The worker loop; returns its tally when the run is over. `offset` (in
/// `[0, 1)`) staggers the first request of paced workers over one pace, so
/// they do not all send at the same instant.
pub(crate) async fn run(plan: Arc<Plan>, started: Instant, offset: f64) -> WorkerTally {
    let end = plan.duration.map(|duration| started + duration);
    let mut tally = WorkerTally::new();
    let mut latencies = LatencyBuffer::new(Arc::clone(&plan.histograms));
    let mut conn: Option<Conn> = None;
    let mut next_send = plan.pace.map(|pace| started + pace.mul_f64(offset));
    loop {
        if let (Some(pace), Some(at)) = (plan.pace, next_send) {
            if end.is_some_and(|end| at >= end) {
                break;
            }
            tokio::time::sleep_until(at).await;
            // A late worker starts again from now: no burst to catch up.
            let floor = Instant::now().checked_sub(pace).unwrap_or(at);
            next_send = Some(at.max(floor) + pace);
        }
        let start = Instant::now();
        if !plan.claim(start, end) {
            break;
        }
        tally.sent += 1;
        let outcome = tokio::time::timeout_at(
            start + plan.deadline,
            exchange(&plan, &mut conn, &mut tally),
        )
        .await;
        let latency = start.elapsed();
        let kind = match outcome {
            Ok(Ok(status)) => match status.as_u16() {
                200..=399 => None,
                400..=499 => Some(ErrorKind::Status4xx),
                500..=599 => Some(ErrorKind::Status5xx),
                _ => Some(ErrorKind::Protocol),
            },
            Ok(Err(kind)) => {
                conn = None;
                Some(kind)
            }
            Err(_elapsed) => {
                // The connection is in an unknown state: start afresh.
                conn = None;
                Some(ErrorKind::Deadline)
            }
        };
        match kind {
            None => tally.successes += 1,
            Some(kind) => tally.errors[kind.index()] += 1,
        }
        latencies.record(latency, kind.is_none());
    }
    latencies.flush();
    tally
}

/// One request and its complete response on the worker's connection,
/// (re)connecting first if needed. Returns the status once the body has been
/// read to the end.
async fn exchange(
    plan: &Plan,
    slot: &mut Option<Conn>,
    tally: &mut WorkerTally,
) -> Result<StatusCode, ErrorKind> {
    let reusable = match slot.as_mut() {
        // Wait until the connection can take the next request; an error here
        // means the server closed an idle connection, which is not a failed
        // request: just open another.
        Some(conn) if !conn.driver.done => {
            drive(&mut conn.driver, conn.sender.ready()).await.is_ok()
        }
        _ => false,
    };
    if !reusable {
        *slot = None;
        *slot = Some(Conn::open(plan.addr).await?);
    }
    let Some(conn) = slot.as_mut() else {
        return Err(ErrorKind::Other);
    };
    let response = drive(&mut conn.driver, conn.sender.send_request(plan.request()))
        .await
        .map_err(|error| ErrorKind::of_hyper(&error))?;
    let status = response.status();
    if let Some(count) = tally.statuses.get_mut(usize::from(status.as_u16())) {
        *count += 1;
    }
    let mut body = response.into_body();
    drive(&mut conn.driver, async {
        while let Some(frame) = body.frame().await {
            frame.map_err(|error| ErrorKind::of_hyper(&error))?;
        }
        Ok(())
    })
    .await?;
    Ok(status)
}
