//! Idle keep-alive clients: open many connections, send one GET on each,
//! read the answer, then keep every connection open and quiet.
//!
//! What a proxy's memory per idle connection is measured with
//! (`bench/memory.sh`): browsers and connection pools keep exactly such
//! connections open between requests, by the thousand.
//!
//! ```no_run
//! # async fn demo() {
//! use levee_testkit::idle::{self, IdleSpec};
//! let mut spec = IdleSpec::new("http://127.0.0.1:8080/".parse().unwrap());
//! spec.connections = 2000;
//! let held = idle::open(spec).await.unwrap();
//! println!("{} open, {} failed", held.opened(), held.failed());
//! // ... measure the server ...
//! println!("{} closed by the server meanwhile", held.closed_by_server());
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::load::{ErrorKind, LoadSpecError, Target};

/// Connections being opened at once by default: enough to open thousands in
/// a second, few enough not to overflow a listen backlog.
pub const DEFAULT_OPEN_PARALLELISM: usize = 64;

/// Time for the connect, the GET and its whole answer, per connection.
pub const DEFAULT_OPEN_DEADLINE: Duration = Duration::from_secs(5);

/// What to open.
#[derive(Debug, Clone)]
pub struct IdleSpec {
    /// `http://HOST:PORT/path`, fetched once on every connection.
    pub url: Uri,
    /// How many connections.
    pub connections: usize,
    /// At most this many are being opened at any moment.
    pub open_parallelism: usize,
    /// Per connection, for connecting and the first exchange; a slower one
    /// counts as a [`ErrorKind::Deadline`] failure and is closed.
    pub deadline: Duration,
}

impl IdleSpec {
    /// One connection to `url`, with the defaults above; adjust the fields.
    pub fn new(url: Uri) -> Self {
        Self {
            url,
            connections: 1,
            open_parallelism: DEFAULT_OPEN_PARALLELISM,
            deadline: DEFAULT_OPEN_DEADLINE,
        }
    }
}

/// The connections that were opened, held open until this is dropped.
pub struct IdleConnections {
    /// One sender per open connection: hyper closes a client connection
    /// once its last sender is gone, so holding them holds the connections.
    senders: Vec<SendRequest<Empty<Bytes>>>,
    /// The tasks that drive each connection (and notice when the server
    /// closes it). Dropping the set aborts them, which closes the sockets.
    drivers: JoinSet<()>,
    /// Connections that ended while held (the server closed or reset them).
    closed: Arc<AtomicUsize>,
    /// Why the others failed, by kind.
    errors: BTreeMap<ErrorKind, u64>,
}

impl IdleConnections {
    /// Connections that answered their GET with a 2xx or 3xx and were held.
    pub fn opened(&self) -> usize {
        self.senders.len()
    }

    /// Connections that could not be opened or did not answer well.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The failures by kind.
    pub fn errors(&self) -> &BTreeMap<ErrorKind, u64> {
        &self.errors
    }

    /// Held connections that the server has closed since they were opened.
    pub fn closed_by_server(&self) -> usize {
        self.closed.load(Ordering::Relaxed)
    }

    /// Held connections still open.
    pub fn still_open(&self) -> usize {
        self.opened().saturating_sub(self.closed_by_server())
    }

    /// Closes every connection and waits until their tasks are gone.
    pub async fn close(mut self) {
        self.senders.clear();
        self.drivers.shutdown().await;
    }
}

/// Opens `spec.connections` connections, each with one GET whose whole
/// answer is read, and returns them held open.
pub async fn open(spec: IdleSpec) -> Result<IdleConnections, LoadSpecError> {
    if spec.connections == 0 || spec.open_parallelism == 0 {
        return Err(LoadSpecError::ZeroConcurrency);
    }
    if spec.deadline.is_zero() {
        return Err(LoadSpecError::ZeroDeadline);
    }
    let target = Arc::new(Target::resolve(&spec.url).await?);
    let closed = Arc::new(AtomicUsize::new(0));
    let permits = Arc::new(Semaphore::new(spec.open_parallelism));
    let mut opening = JoinSet::new();
    for _ in 0..spec.connections {
        let target = Arc::clone(&target);
        let closed = Arc::clone(&closed);
        let permits = Arc::clone(&permits);
        let deadline = spec.deadline;
        opening.spawn(async move {
            let _permit = permits.acquire_owned().await;
            match tokio::time::timeout(deadline, open_one(&target, closed)).await {
                Ok(result) => result,
                Err(_elapsed) => Err(ErrorKind::Deadline),
            }
        });
    }
    let mut held = IdleConnections {
        senders: Vec::with_capacity(spec.connections),
        drivers: JoinSet::new(),
        closed,
        errors: BTreeMap::new(),
    };
    while let Some(joined) = opening.join_next().await {
        match joined {
            Ok(Ok((sender, driver))) => {
                held.senders.push(sender);
                held.drivers.spawn(driver);
            }
            Ok(Err(kind)) => *held.errors.entry(kind).or_default() += 1,
            Err(_) => *held.errors.entry(ErrorKind::Other).or_default() += 1,
        }
    }
    Ok(held)
}

/// A connection that has done its exchange, and the future that drives it
/// from now on (it counts itself in `closed` when the server ends it).
type Opened = (
    SendRequest<Empty<Bytes>>,
    std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
);

async fn open_one(target: &Target, closed: Arc<AtomicUsize>) -> Result<Opened, ErrorKind> {
    let stream =
        TcpStream::connect(target.addr)
            .await
            .map_err(|error| match ErrorKind::of_io(&error) {
                ErrorKind::Other => ErrorKind::Connect,
                kind => kind,
            })?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ErrorKind::Connect)?;
    let mut connection = Box::pin(connection);
    let mut request = Request::new(Empty::<Bytes>::new());
    *request.uri_mut() = target.path.clone();
    request
        .headers_mut()
        .insert(HOST, target.host_header.clone());
    // Drive the connection while the exchange runs, on this task.
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| ErrorKind::of_hyper(&error))?;
        let status = response.status();
        response
            .into_body()
            .collect()
            .await
            .map_err(|error| ErrorKind::of_hyper(&error))?;
        match status.as_u16() {
            200..=399 => Ok(()),
            400..=499 => Err(ErrorKind::Status4xx),
            500..=599 => Err(ErrorKind::Status5xx),
            _ => Err(ErrorKind::Protocol),
        }
    };
    tokio::select! {
        outcome = exchange => outcome?,
        // The connection ended before the answer was complete.
        _ = connection.as_mut() => return Err(ErrorKind::Reset),
    }
    let driver = Box::pin(async move {
        let _ = connection.await;
        closed.fetch_add(1, Ordering::Relaxed);
    });
    Ok((sender, driver))
}
