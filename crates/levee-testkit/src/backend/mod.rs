//! A fault-injecting HTTP backend: a real server on a real socket whose
//! behaviour a test (or the demo) switches at run time between healthy and
//! the ways real nodes fail.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use levee_testkit::backend::{Backend, Mode};
//! let backend = Backend::start("b1", "127.0.0.1:0".parse().unwrap()).await?;
//! backend.set_mode(Mode::Hung).await?;     // accepts, reads, never answers
//! backend.set_mode(Mode::Crashed).await?;  // connects are refused
//! backend.set_mode(Mode::Healthy).await?;  // listening again, same port
//! # Ok(()) }
//! ```
//!
//! Routes when healthy: any path answers `200 hello from <name>`;
//! `GET /drip?chunks=N&interval=MS` streams numbered chunks; `GET /bytes?n=N`
//! answers N bytes (`x`, with `content-length`, at most 64 MiB); `POST|PUT /echo`
//! streams the request body back; `POST|PUT /count` reads the whole request
//! body, then answers its length in bytes; `/status/CODE` answers that status;
//! `GET /slow?ms=MS` answers after a pause; `/reset` reads the request and
//! resets the connection (a "query of death" that breaks any healthy node).
//! Every answer carries `x-backend: <name>`.
//!
//! A backend run as its own process can be switched from outside through a
//! [`control::ControlPort`].

mod body;
mod connection;
pub mod control;
mod mode;
mod service;
mod takeover;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use mode::PackedMode;
pub use mode::{DEFAULT_PARTIAL_BYTES, DEFAULT_SLOW, Mode, ParseModeError, VALID_MODES};

/// Backlog of the listening socket: enough for a benchmark's burst of
/// connects.
const LISTEN_BACKLOG: u32 = 1024;

/// How long leaving `Crashed` keeps retrying a port that is briefly taken
/// (e.g. by an outgoing connection that got it as its ephemeral port).
const REBIND_PATIENCE: Duration = Duration::from_secs(1);
const REBIND_PAUSE: Duration = Duration::from_millis(20);

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop
/// does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// A running fault-injecting backend. Cloning is cheap; all clones control the
/// same server. The server stops when the last clone is dropped, or at
/// [`Backend::shutdown`].
#[derive(Clone)]
pub struct Backend {
    inner: Arc<Handle>,
}

/// Owned by the clones of [`Backend`] only (tasks hold [`Shared`]), so its
/// `Drop` runs when the last clone goes away.
struct Handle {
    shared: Arc<Shared>,
    /// The accept loop while listening; `None` while crashed. An async mutex
    /// because mode changes await the loop's end, and must not interleave.
    listening: tokio::sync::Mutex<Option<Listening>>,
}

/// How an accept loop is told to stop.
enum Stop {
    /// Drop every connection at once (a crash).
    Abort,
    /// Let every connection finish its request first.
    Graceful,
}

/// A running accept loop.
struct Listening {
    /// Tells the loop to close the listener and end every connection.
    stop: oneshot::Sender<Stop>,
    /// Finishes once all of that is done.
    task: JoinHandle<()>,
}

/// State shared by the handle, the accept loop, and every connection.
pub(crate) struct Shared {
    /// Name in `x-backend` and in `hello from <name>`.
    pub(crate) name: String,
    /// Bound address; fixed after the first bind so that leaving `Crashed`
    /// comes back on the same port.
    addr: SocketAddr,
    /// The current [`Mode`], packed so the request path reads it with one
    /// atomic load.
    mode: AtomicU64,
    /// The same mode, for the few tasks that wait for it to change (hung
    /// connections).
    pub(crate) mode_tx: watch::Sender<PackedMode>,
    /// Requests whose head was read, in any mode but `Crashed`.
    pub(crate) requests: AtomicU64,
    /// Requests with a method that writes (`POST`, `PUT`, `PATCH`,
    /// `DELETE`) whose head was read: what a test of exactly-once delivery
    /// counts (health checks are `GET`s).
    pub(crate) writes: AtomicU64,
    /// TCP connections accepted.
    connections: AtomicU64,
    /// Modes that only some clients see, by their address: a broken path
    /// from one host. Behind a flag so that the request path takes no lock
    /// when there are none.
    per_source: Mutex<Vec<(std::net::IpAddr, Mode)>>,
    per_source_set: std::sync::atomic::AtomicBool,
    /// Turns true to stop the connections gracefully.
    graceful: watch::Sender<bool>,
    /// Headers of the most recent request, for tests of header rewriting.
    last_headers: Mutex<Option<HeaderMap>>,
    /// At most this many requests are served at once (the rest wait, as in
    /// a server with a fixed worker pool); `None`: no limit. Behind a flag so
    /// that an unlimited backend's request path takes no lock.
    capacity: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    limited: std::sync::atomic::AtomicBool,
    /// `hello from <name>\n`, built once.
    pub(crate) hello: Bytes,
    /// `<name>` as a header value, built once.
    pub(crate) backend_header: HeaderValue,
    /// hyper's server settings (HTTP/1.1, or HTTP/2 with prior knowledge).
    pub(crate) http: auto::Builder<TokioExecutor>,
}

impl Shared {
    /// The worker-pool limit, if one is set.
    pub(crate) fn capacity(&self) -> Option<Arc<tokio::sync::Semaphore>> {
        if !self.limited.load(Ordering::Acquire) {
            return None;
        }
        self.capacity.lock().clone()
    }

    pub(crate) fn mode(&self) -> Mode {
        PackedMode(self.mode.load(Ordering::Acquire)).unpack()
    }

    /// The mode a request from `peer` sees: its own, if a test set one.
    pub(crate) fn mode_for(&self, peer: std::net::IpAddr) -> Mode {
        let mode = self.mode();
        if mode == Mode::Crashed || !self.per_source_set.load(Ordering::Acquire) {
            return mode;
        }
        self.per_source
            .lock()
            .iter()
            .find(|(source, _)| *source == peer)
            .map_or(mode, |(_, own)| *own)
    }

    fn store_mode(&self, mode: Mode) {
        let packed = PackedMode::pack(mode);
        self.mode.store(packed.0, Ordering::Release);
        self.mode_tx.send_replace(packed);
    }

    /// Keeps `headers` as the most recent request's. Skipped when another
    /// request holds the lock at that instant: among concurrent requests
    /// "most recent" means nothing, and the request path must never wait.
    pub(crate) fn record_headers(&self, headers: HeaderMap) {
        let previous = match self.last_headers.try_lock() {
            Some(mut slot) => slot.replace(headers),
            None => return,
        };
        // Freed outside the lock.
        drop(previous);
    }
}

impl Backend {
    /// Binds `addr` (port 0 picks a free port) and starts serving in
    /// [`Mode::Healthy`]. Must be called inside a Tokio runtime.
    ///
    /// Fails if the address cannot be bound or `name` is not a valid header
    /// value.
    pub async fn start(name: impl Into<String>, addr: SocketAddr) -> io::Result<Backend> {
        let name = name.into();
        let backend_header = HeaderValue::from_str(&name).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("backend name `{name}` is not a valid header value"),
            )
        })?;
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let packed = PackedMode::pack(Mode::Healthy);
        let shared = Arc::new(Shared {
            hello: Bytes::from(format!("hello from {name}\n")),
            name,
            addr,
            mode: AtomicU64::new(packed.0),
            mode_tx: watch::Sender::new(packed),
            requests: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            per_source: Mutex::new(Vec::new()),
            per_source_set: std::sync::atomic::AtomicBool::new(false),
            graceful: watch::Sender::new(false),
            last_headers: Mutex::new(None),
            capacity: Mutex::new(None),
            limited: std::sync::atomic::AtomicBool::new(false),
            backend_header,
            http: auto::Builder::new(TokioExecutor::new()),
        });
        let listening = Listening::spawn(Arc::clone(&shared), listener);
        Ok(Backend {
            inner: Arc::new(Handle {
                shared,
                listening: tokio::sync::Mutex::new(Some(listening)),
            }),
        })
    }

    /// The bound address (the real port when started on port 0). It stays the
    /// same across crashes.
    pub fn addr(&self) -> SocketAddr {
        self.inner.shared.addr
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.inner.shared.mode()
    }

    /// Switches the mode and returns once the change is in effect: every
    /// request whose head is read from now on sees the new mode. Entering
    /// [`Mode::Crashed`] returns after the listening socket is closed and
    /// every open connection has been dropped; leaving it returns once the
    /// same address is listening again.
    ///
    /// Fails only when leaving `Crashed` and the port cannot be bound again;
    /// the backend then stays crashed.
    pub async fn set_mode(&self, mode: Mode) -> io::Result<()> {
        let shared = &self.inner.shared;
        let mut listening = self.inner.listening.lock().await;
        match (mode == Mode::Crashed, listening.take()) {
            (true, Some(running)) => {
                // Requests that race with the crash see `Crashed` and drop
                // their connection unanswered.
                shared.store_mode(mode);
                running.stop().await;
            }
            (false, None) => {
                let listener = rebind(shared.addr).await?;
                shared.store_mode(mode);
                *listening = Some(Listening::spawn(Arc::clone(shared), listener));
            }
            (_, running) => {
                shared.store_mode(mode);
                *listening = running;
            }
        }
        tracing::info!(backend = %shared.name, %mode, "backend mode changed");
        Ok(())
    }

    /// Requests whose head was fully read, in any mode but `Crashed`
    /// (a hung, reset or partial request counts: the node did receive it).
    pub fn requests_received(&self) -> u64 {
        self.inner.shared.requests.load(Ordering::Relaxed)
    }

    /// Requests with a writing method (`POST`, `PUT`, `PATCH`, `DELETE`)
    /// whose head was read: deliveries, for tests that prove a write arrived
    /// exactly once.
    pub fn writes_received(&self) -> u64 {
        self.inner.shared.writes.load(Ordering::Relaxed)
    }

    /// Answer requests from `source` in `mode` (`None`: as everyone else),
    /// whatever the backend's own mode, except `Crashed`, which refuses
    /// everyone. A node that fails only for one gateway: a broken network
    /// path from one host. `Mode::Crashed` here drops that client's
    /// requests unanswered (its connects still succeed).
    pub fn set_mode_for(&self, source: std::net::IpAddr, mode: Option<Mode>) {
        let shared = &self.inner.shared;
        let mut per_source = shared.per_source.lock();
        per_source.retain(|(ip, _)| *ip != source);
        if let Some(mode) = mode {
            per_source.push((source, mode));
        }
        shared
            .per_source_set
            .store(!per_source.is_empty(), Ordering::Release);
        tracing::info!(backend = %shared.name, %source, mode = ?mode, "backend mode for one source changed");
    }

    /// Stop as a server does on a graceful shutdown (nginx `SIGQUIT`):
    /// close the listener (new connects are refused), close idle keep-alive
    /// connections at once, finish the requests in flight (answered with
    /// `connection: close`), and return when every connection is gone. The
    /// backend is then [`Mode::Crashed`]; [`Backend::set_mode`] with any
    /// other mode starts it again on the same port (a restart).
    pub async fn stop_gracefully(&self) {
        let shared = &self.inner.shared;
        let mut listening = self.inner.listening.lock().await;
        if let Some(running) = listening.take() {
            running.stop_gracefully(shared).await;
        }
        shared.store_mode(Mode::Crashed);
        tracing::info!(backend = %shared.name, "backend stopped gracefully");
    }

    /// TCP connections accepted. Fewer connections than requests proves that
    /// a client reused its connections.
    pub fn connections_accepted(&self) -> u64 {
        self.inner.shared.connections.load(Ordering::Relaxed)
    }

    /// Headers of the most recent request, or `None` if no request arrived
    /// since the start or the last [`Backend::reset_counters`]. Among
    /// concurrent requests one may be skipped (the request path never waits
    /// for this record), so "most recent" is exact only for requests that do
    /// not overlap, which is what tests send.
    pub fn last_request_headers(&self) -> Option<HeaderMap> {
        self.inner.shared.last_headers.lock().clone()
    }

    /// Serve at most `capacity` requests at once, like a server with that
    /// many workers: the others wait their turn (`None`: no limit). With
    /// `Mode::Slow(20ms)` this makes a node of known capacity, for overload
    /// tests.
    pub fn set_capacity(&self, capacity: Option<usize>) {
        let semaphore = capacity.map(|n| Arc::new(tokio::sync::Semaphore::new(n.max(1))));
        *self.inner.shared.capacity.lock() = semaphore;
        self.inner
            .shared
            .limited
            .store(capacity.is_some(), Ordering::Release);
    }

    /// Sets both counters to zero and forgets the last request's headers.
    pub fn reset_counters(&self) {
        let shared = &self.inner.shared;
        shared.requests.store(0, Ordering::Relaxed);
        shared.writes.store(0, Ordering::Relaxed);
        shared.connections.store(0, Ordering::Relaxed);
        shared.last_headers.lock().take();
    }

    /// Closes the listener and drops every connection, then returns. Other
    /// clones see the backend as [`Mode::Crashed`] afterwards (and could bring
    /// it back with [`Backend::set_mode`]).
    pub async fn shutdown(self) {
        let shared = &self.inner.shared;
        let mut listening = self.inner.listening.lock().await;
        shared.store_mode(Mode::Crashed);
        if let Some(running) = listening.take() {
            running.stop().await;
        }
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name())
            .field("addr", &self.addr())
            .field("mode", &self.mode())
            .finish()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every
        // connection task: listener and sockets close without an await.
        if let Some(running) = self.listening.get_mut().take() {
            running.task.abort();
        }
    }
}

impl Listening {
    fn spawn(shared: Arc<Shared>, listener: TcpListener) -> Self {
        let (stop, stopped) = oneshot::channel();
        shared.graceful.send_replace(false);
        let task = tokio::spawn(accept_loop(shared, listener, stopped));
        Listening { stop, task }
    }

    /// Closes the listener and drops every connection; returns when done.
    async fn stop(self) {
        let _ = self.stop.send(Stop::Abort);
        wait(self.task).await;
    }

    /// Closes the listener, lets the connections finish; returns when all
    /// are gone.
    async fn stop_gracefully(self, shared: &Shared) {
        let _ = self.stop.send(Stop::Graceful);
        shared.graceful.send_replace(true);
        wait(self.task).await;
    }
}

/// Waits for an accept loop's end.
async fn wait(task: JoinHandle<()>) {
    if let Err(error) = task.await {
        if error.is_panic() {
            tracing::error!(%error, "backend accept loop panicked");
        }
    }
}

/// The longest a graceful stop waits for requests in flight.
const GRACEFUL_LIMIT: Duration = Duration::from_secs(10);

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut stop: oneshot::Receiver<Stop>,
) {
    // Connections live in this set so that a crash can drop all of them and
    // wait until they are gone.
    let mut connections = JoinSet::new();
    let how = loop {
        tokio::select! {
            biased;
            how = &mut stop => break how.unwrap_or(Stop::Abort),
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    let graceful = shared.graceful.subscribe();
                    connections.spawn(connection::serve(Arc::clone(&shared), stream, graceful));
                }
                Err(error) => {
                    tracing::warn!(backend = %shared.name, %error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    };
    drop(listener);
    if let Stop::Graceful = how {
        let finished = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(GRACEFUL_LIMIT, finished)
            .await
            .is_err()
        {
            tracing::warn!(backend = %shared.name, "requests still in flight after the graceful stop's limit; dropped");
        }
    }
    connections.shutdown().await;
}

/// Binds with `SO_REUSEADDR`, so the port can be bound again after a crash
/// while old connections sit in `TIME_WAIT`.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Binds the same address again, retrying briefly while it is in use.
async fn rebind(addr: SocketAddr) -> io::Result<TcpListener> {
    let give_up = tokio::time::Instant::now() + REBIND_PATIENCE;
    loop {
        match bind(addr) {
            Err(error)
                if error.kind() == io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < give_up =>
            {
                tokio::time::sleep(REBIND_PAUSE).await;
            }
            result => return result,
        }
    }
}
