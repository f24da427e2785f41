//! A closed-loop HTTP/1.1 load generator.
//!
//! `concurrency` workers each keep one keep-alive connection and loop: send a
//! request, wait for the complete response (body included), record, repeat.
//! Closed loop means the offered load drops when the server slows down, which
//! is what a fixed pool of clients does; a request that gets no answer within
//! the deadline is counted as an error rather than silently dropped.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use levee_testkit::load::{self, LoadSpec};
//! let mut spec = LoadSpec::new("http://127.0.0.1:8080/".parse().unwrap());
//! spec.concurrency = 32;
//! spec.duration = Some(Duration::from_secs(3));
//! let report = load::run(spec).await;
//! println!("{report}");
//! # }
//! ```

mod error;
mod latency;
mod report;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use parking_lot::Mutex;
use tokio::time::Instant;

pub use error::ErrorKind;
pub use report::{LatencySummary, LoadReport};

use latency::Histograms;
use worker::{Plan, WorkerTally};

/// How long a run lasts when neither `duration` nor `max_requests` is set.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Per-request deadline of [`LoadSpec::new`].
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(1);

/// What to send, how hard, and for how long.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Target, `http://HOST:PORT/path?query` (plain HTTP/1.1 only). The host
    /// is resolved once, before the run.
    pub url: Uri,
    /// Method of every request.
    pub method: Method,
    /// Number of workers, each with its own connection and one request in
    /// flight at a time.
    pub concurrency: usize,
    /// Stop starting requests after this long. Requests in flight then still
    /// finish (or hit their deadline), so the run lasts at most
    /// `duration + deadline`.
    pub duration: Option<Duration>,
    /// Stop after sending this many requests. Whichever of `duration` and
    /// `max_requests` comes first ends the run; with neither set the run
    /// lasts [`DEFAULT_DURATION`].
    pub max_requests: Option<u64>,
    /// Per request, from the moment it is started (connecting included) to
    /// the last byte of the body; past it the request is an
    /// [`ErrorKind::Deadline`] error and its connection is dropped.
    pub deadline: Duration,
    /// Body of every request, if any.
    pub body: Option<Bytes>,
    /// Extra headers of every request (e.g. `Idempotency-Key`), added after
    /// `Host`.
    pub headers: HeaderMap,
    /// At most this many requests per second in all (`None`: as fast as the
    /// answers come). Each worker sends its share, `rate / concurrency`, at
    /// a steady pace; a slow answer delays only that worker's next request,
    /// and the lost time is not made up later with a burst.
    pub rate: Option<f64>,
}

impl LoadSpec {
    /// A GET of `url` by one worker, with [`DEFAULT_DEADLINE`] per request and
    /// no duration or request limit (so [`DEFAULT_DURATION`]); adjust the
    /// public fields.
    pub fn new(url: Uri) -> Self {
        Self {
            url,
            method: Method::GET,
            concurrency: 1,
            duration: None,
            max_requests: None,
            deadline: DEFAULT_DEADLINE,
            body: None,
            headers: HeaderMap::new(),
            rate: None,
        }
    }
}

/// A [`LoadSpec`] that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum LoadSpecError {
    /// Only `http://` is supported (no TLS, no HTTP/2).
    #[error("unsupported URL scheme in `{url}`: only http:// is supported")]
    UnsupportedScheme {
        /// The URL as given.
        url: String,
    },
    /// The URL has no `host[:port]`.
    #[error("URL `{url}` has no host")]
    MissingHost {
        /// The URL as given.
        url: String,
    },
    /// The host did not resolve to any address.
    #[error("cannot resolve `{authority}`: {source}")]
    Resolve {
        /// `host:port` that was looked up.
        authority: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// `concurrency` is zero.
    #[error("concurrency must be at least 1")]
    ZeroConcurrency,
    /// `deadline` is zero.
    #[error("the per-request deadline must be greater than zero")]
    ZeroDeadline,
    /// `rate` is zero, negative or not a number.
    #[error("the request rate must be a positive number of requests per second")]
    BadRate,
}

/// Runs the load described by `spec` and reports what happened.
///
/// An invalid spec (see [`LoadSpecError`]) yields an empty report whose only
/// entry is one [`ErrorKind::Other`] error; use [`try_run`] to learn why.
pub async fn run(spec: LoadSpec) -> LoadReport {
    match try_run(spec).await {
        Ok(report) => report,
        Err(error) => {
            tracing::error!(%error, "invalid load spec");
            let histograms = Histograms::new();
            summarise(
                Vec::new(),
                &histograms,
                Duration::ZERO,
                Some(ErrorKind::Other),
            )
        }
    }
}

/// Runs the load described by `spec`, or says why it cannot.
pub async fn try_run(spec: LoadSpec) -> Result<LoadReport, LoadSpecError> {
    let plan = Arc::new(plan(&spec).await?);
    let histograms = Arc::clone(&plan.histograms);
    let started = Instant::now();
    let workers: Vec<_> = (0..spec.concurrency)
        .map(|i| {
            let offset = i as f64 / spec.concurrency as f64;
            tokio::spawn(worker::run(Arc::clone(&plan), started, offset))
        })
        .collect();
    let mut tallies = Vec::with_capacity(workers.len());
    for worker in workers {
        match worker.await {
            Ok(tally) => tallies.push(tally),
            Err(error) => tracing::error!(%error, "load worker failed"),
        }
    }
    let elapsed = started.elapsed();
    drop(plan);
    let histograms = histograms.lock();
    Ok(summarise(tallies, &histograms, elapsed, None))
}

/// Where requests go: the resolved address, the `Host` header and the
/// origin-form path, from a URL (shared with [`crate::idle`]).
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) host_header: HeaderValue,
    pub(crate) path: Uri,
}

impl Target {
    /// Checks that `url` is plain `http://HOST[:PORT]/...` and resolves the
    /// host once.
    pub(crate) async fn resolve(url: &Uri) -> Result<Target, LoadSpecError> {
        let text = url.to_string();
        match url.scheme_str() {
            Some("http") | None => {}
            Some(_) => return Err(LoadSpecError::UnsupportedScheme { url: text }),
        }
        let Some(authority) = url.authority() else {
            return Err(LoadSpecError::MissingHost { url: text });
        };
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let lookup = format!("{host}:{port}");
        let addr: SocketAddr = tokio::net::lookup_host(&lookup)
            .await
            .and_then(|mut addrs| {
                addrs
                    .next()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
            })
            .map_err(|source| LoadSpecError::Resolve {
                authority: lookup.clone(),
                source,
            })?;
        let host_header = HeaderValue::from_str(authority.as_str())
            .map_err(|_| LoadSpecError::MissingHost { url: text })?;
        let path = url
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
        Ok(Target {
            addr,
            host_header,
            path,
        })
    }
}

/// Validates the spec and resolves the target once.
async fn plan(spec: &LoadSpec) -> Result<Plan, LoadSpecError> {
    if spec.concurrency == 0 {
        return Err(LoadSpecError::ZeroConcurrency);
    }
    if spec.deadline.is_zero() {
        return Err(LoadSpecError::ZeroDeadline);
    }
    if spec
        .rate
        .is_some_and(|rate| !(rate.is_finite() && rate > 0.0))
    {
        return Err(LoadSpecError::BadRate);
    }
    let target = Target::resolve(&spec.url).await?;
    let duration = match (spec.duration, spec.max_requests) {
        (None, None) => Some(DEFAULT_DURATION),
        (duration, _) => duration,
    };
    // Each worker's share of the rate: one request per `pace`.
    let pace = spec
        .rate
        .map(|rate| Duration::from_secs_f64(spec.concurrency as f64 / rate));
    Ok(Plan {
        addr: target.addr,
        host_header: target.host_header,
        path: target.path,
        method: spec.method.clone(),
        headers: spec.headers.clone(),
        body: spec.body.clone().unwrap_or_default(),
        deadline: spec.deadline,
        duration,
        max_requests: spec.max_requests,
        pace,
        tickets: Default::default(),
        histograms: Arc::new(Mutex::new(Histograms::new())),
    })
}

/// Adds up the workers' tallies.
fn summarise(
    tallies: Vec<WorkerTally>,
    histograms: &Histograms,
    elapsed: Duration,
    extra_error: Option<ErrorKind>,
) -> LoadReport {
    let mut total = WorkerTally::new();
    for tally in &tallies {
        total.add(tally);
    }
    if let Some(kind) = extra_error {
        total.errors[kind.index()] += 1;
    }
    let errors = ErrorKind::ALL
        .into_iter()
        .filter(|kind| total.errors[kind.index()] > 0)
        .map(|kind| (kind, total.errors[kind.index()]))
        .collect();
    let statuses = total
        .statuses
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .filter_map(|(status, n)| Some((u16::try_from(status).ok()?, *n)))
        .collect();
    LoadReport {
        sent: total.sent,
        successes: total.successes,
        errors,
        statuses,
        elapsed,
        latency: LatencySummary::from_histogram(&histograms.all),
        successes_latency: LatencySummary::from_histogram(&histograms.successes),
    }
}
