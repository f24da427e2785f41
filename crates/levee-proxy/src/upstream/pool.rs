//! Keep-alive connection pool for one upstream endpoint: HTTP/1.1
//! connections one request at a time, or HTTP/2 connections that carry up
//! to `max_concurrent_streams` requests each (`upstream_protocol`).
//!
//! levee owns its upstream connections (its own HTTP/1.1 client, see
//! `http1`, and hyper's per-connection HTTP/2 client, not hyper-util's
//! pooled client) for two reasons:
//! - the send phase of every attempt is known exactly: a failure while
//!   connecting, or on a pooled connection found closed before the
//!   request was written, was never sent, and only those are safe to retry
//!   for any method;
//! - the request path does no per-request pool-key hashing and spawns no
//!   per-request task; the connection goes back to the pool when its response
//!   body ends (in bench/throughput.sh this took levee from 0.76× to about
//!   1.0× HAProxy's requests/s).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::Either;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::client::conn::http2;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use levee_core::FailureKind;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::classify::{classify_io_error, classify_send_error};
use super::http1::{ConnectionHome, ExchangeError, Http1Connection, SendHead};
use super::request_body::{ClientBodyFailed, RequestBody};
use super::response_body::ResponseBody;
use super::shared_fields::SharedFields;
use super::watched::{Mark, WireLog};
use crate::config::UpstreamProtocol;
use crate::metrics::EndpointMetrics;
use crate::tls::{Stream, UpstreamTls};

/// How one endpoint's connections are made and kept.
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    /// The HTTP version spoken.
    pub protocol: UpstreamProtocol,
    /// HTTP/2: requests in flight per connection at most.
    pub max_concurrent_streams: usize,
    /// Give up on a TCP connect after this long (the endpoint is then
    /// `connect-timeout`, and the request was never sent).
    pub connect_timeout: Duration,
    /// Close pooled connections idle for this long.
    pub idle_timeout: Duration,
    /// Keep at most this many idle connections (0: no pooling).
    pub max_idle: usize,
    /// Header fields a response may have.
    pub max_response_headers: usize,
    /// A request on a reused connection that the endpoint closed cleanly
    /// before answering counts as not sent even when the endpoint may have
    /// received it (`retry.idle_close`).
    pub retry_idle_close: bool,
    /// Connect from this local address (`source_address`).
    pub source_address: Option<std::net::IpAddr>,
}

/// An attempt that got no response.
pub struct SendFailure {
    /// What went wrong.
    pub kind: FailureKind,
    /// The request, handed back when it was never sent (a streaming body can
    /// then still go to another endpoint).
    /// Boxed: failures travel in every attempt's result, and an unboxed
    /// request (352 bytes) made each of those larger.
    pub unsent: Option<Box<Request<RequestBody>>>,
    /// With [`FailureKind::ClientBody`]: how the client's body failed.
    pub client_body: Option<ClientBodyFailed>,
    /// What an operator needs to fix it, when there is more to say than the
    /// kind (a TLS handshake's reason).
    pub detail: Option<Box<str>>,
}

impl SendFailure {
    /// A failure of `kind`; a [`FailureKind::ClientBody`] one is taken to be
    /// a body that broke (hyper's only way of reporting it).
    pub fn new(kind: FailureKind) -> SendFailure {
        SendFailure {
            kind,
            unsent: None,
            client_body: (kind == FailureKind::ClientBody).then_some(ClientBodyFailed::Broken),
            detail: None,
        }
    }

    /// The client's body failed this way while it was being sent.
    pub fn client_body(failure: ClientBodyFailed) -> SendFailure {
        SendFailure {
            kind: FailureKind::ClientBody,
            unsent: None,
            client_body: Some(failure),
            detail: None,
        }
    }

    /// Nothing was sent; `request` may go elsewhere.
    fn unsent(kind: FailureKind, request: Request<RequestBody>) -> SendFailure {
        SendFailure {
            kind,
            unsent: Some(Box::new(request)),
            client_body: None,
            detail: None,
        }
    }

    /// Nothing was sent, for a reason worth showing the client.
    fn not_connected(failed: ConnectFailed, request: Request<RequestBody>) -> SendFailure {
        SendFailure {
            detail: failed.detail,
            ..SendFailure::unsent(failed.kind, request)
        }
    }
}

/// A connection that could not be made: the kind, and for a TLS failure
/// its reason (a certificate not valid for the name, an unknown CA), which
/// is a configuration problem an operator must see.
struct ConnectFailed {
    kind: FailureKind,
    detail: Option<Box<str>>,
}

impl From<FailureKind> for ConnectFailed {
    fn from(kind: FailureKind) -> ConnectFailed {
        ConnectFailed { kind, detail: None }
    }
}

/// Why a TCP connection to an endpoint could not be opened. Nothing was
/// sent on it, so whatever was to be sent may go elsewhere.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No connection within the connect timeout.
    #[error("no connection within {0:?}")]
    TimedOut(Duration),
    /// The endpoint's name resolved to no address.
    #[error("{host} does not resolve: {source}")]
    Unresolved {
        /// The name.
        host: String,
        /// What the resolver said.
        #[source]
        source: io::Error,
    },
    /// The OS said no: refused, unreachable.
    #[error("{0}")]
    Io(#[source] io::Error),
    /// Connected, but the TLS handshake failed (a certificate that does
    /// not verify, no common version, a reset) or did not finish in time.
    #[error("TLS handshake with {name} failed: {source}")]
    Tls {
        /// The name the endpoint had to prove.
        name: String,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
}

impl ConnectError {
    /// The failure as outcomes and metrics name it.
    pub fn kind(&self) -> FailureKind {
        match self {
            ConnectError::TimedOut(_) => FailureKind::ConnectTimeout,
            ConnectError::Unresolved { .. } => FailureKind::Unresolved,
            ConnectError::Tls { .. } => FailureKind::TlsHandshake,
            ConnectError::Io(error) => match error.kind() {
                io::ErrorKind::ConnectionRefused => FailureKind::ConnectRefused,
                io::ErrorKind::TimedOut => FailureKind::ConnectTimeout,
                _ => FailureKind::ConnectFailed,
            },
        }
    }
}

/// An idle connection waiting in the pool.
struct Idle {
    connection: Box<Http1Connection>,
    since: Instant,
}

/// TLS to one endpoint: the cluster's settings and the name this endpoint
/// must prove.
#[derive(Debug, Clone)]
pub struct EndpointTls {
    /// The cluster's TLS.
    pub tls: Arc<UpstreamTls>,
    /// Sent as SNI (for a DNS name) and verified.
    pub name: rustls_pki_types::ServerName<'static>,
}

/// The pool of one endpoint.
pub struct EndpointPool {
    host: String,
    port: u16,
    settings: PoolSettings,
    tls: Option<EndpointTls>,
    /// Where streams refused and sent again within the pool are counted
    /// (`upstream_failures_total{kind="refused-stream"}`).
    metrics: Option<EndpointMetrics>,
    /// Idle connections, one list per worker thread (see [`IdleShards`]).
    idle: IdleShards,
    /// HTTP/2 connections, busy or not; closed ones are dropped when met.
    multiplexed: Mutex<Vec<Arc<H2Connection>>>,
    /// Held while an HTTP/2 connection is being opened: requests that find
    /// no room wait for it rather than each opening one of their own.
    opening_h2: tokio::sync::Mutex<()>,
}

/// An HTTP/2 connection and the requests in flight on it.
struct H2Connection {
    sender: http2::SendRequest<RequestBody>,
    streams: AtomicUsize,
    /// When its last stream ended (or it opened).
    idle_since: Mutex<Instant>,
}

/// A request's place on an HTTP/2 connection, given back when dropped.
struct StreamSlot(Arc<H2Connection>);

impl StreamSlot {
    fn take(connection: &Arc<H2Connection>) -> StreamSlot {
        connection.streams.fetch_add(1, Ordering::Relaxed);
        StreamSlot(Arc::clone(connection))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if self.0.streams.fetch_sub(1, Ordering::Relaxed) == 1 {
            *self.0.idle_since.lock() = Instant::now();
        }
    }
}

/// What a response holds of its connection until its body ends.
pub struct PooledConnection {
    _checkout: Checkout,
}

enum Checkout {
    /// An HTTP/1.1 connection travels inside the response body
    /// ([`ResponseBody::Http1`]), which gives it back to the pool.
    InBody,
    /// A stream of an HTTP/2 connection, given back as it drops.
    Http2(#[allow(dead_code)] StreamSlot),
}

/// A new connection: HTTP/1.1, or HTTP/2 (registered in the pool).
enum Connected {
    Http1(Box<Http1Connection>),
    Http2(Arc<H2Connection>),
}

impl EndpointPool {
    /// A pool for `host:port`, plus a background task closing idle
    /// connections past `idle_timeout` (it ends when the pool is dropped).
    pub fn new(
        host: String,
        port: u16,
        settings: PoolSettings,
        tls: Option<EndpointTls>,
        metrics: Option<EndpointMetrics>,
    ) -> Arc<EndpointPool> {
        let pool = Arc::new(EndpointPool {
            host,
            port,
            settings,
            tls,
            metrics,
            idle: IdleShards::new(),
            multiplexed: Mutex::new(Vec::new()),
            opening_h2: tokio::sync::Mutex::new(()),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(reap_idle(Arc::downgrade(&pool), settings.idle_timeout));
        }
        pool
    }

    /// TLS to this endpoint, if the cluster speaks it (health checks use
    /// it too).
    pub fn tls(&self) -> Option<&EndpointTls> {
        self.tls.as_ref()
    }

    /// Idle connections currently pooled.
    pub fn idle_count(&self) -> usize {
        self.idle.count.load(Ordering::Relaxed)
    }

    /// Send `request` (origin-form URI) on a pooled or new connection,
    /// with `shared` (the header fields every attempt of the request sends,
    /// `Host` among them) before the request's own fields, which replace
    /// shared ones of the same name. Kept apart so that an attempt does not
    /// copy the request's fields (callgrind: ~600 instructions to clone and
    /// drop a map per attempt). Pooled connections the endpoint has closed
    /// are passed over before the request is written: it never reaches
    /// them.
    ///
    /// The common case (HTTP/1.1, an idle connection at hand) is decided
    /// here, before the future: the request is written into the
    /// connection's buffer at once, and the future holds only the exchange.
    /// Making a connection and HTTP/2 are boxed: their state would grow
    /// every request's future (issue 11).
    pub fn send<'a>(
        self: &'a Arc<Self>,
        request: Request<RequestBody>,
        shared: &'a SharedFields,
    ) -> impl Future<Output = Result<(Response<ResponseBody>, PooledConnection), SendFailure>> + Send + 'a
    {
        if !self.speaks_h2()
            && let Some(connection) = self.take_idle()
        {
            return Either::Left(Exchanging::start(self, connection, request, shared, true));
        }
        Either::Right(Box::pin(self.connect_and_send(request, shared)))
    }

    /// Send `request` on a new connection (or as an HTTP/2 stream).
    async fn connect_and_send(
        self: &Arc<Self>,
        request: Request<RequestBody>,
        shared: &SharedFields,
    ) -> Result<(Response<ResponseBody>, PooledConnection), SendFailure> {
        if self.speaks_h2() {
            return self.send_h2(with_shared(request, shared), None).await;
        }
        match self.connect().await {
            Ok(Connected::Http1(connection)) => {
                Exchanging::start(self, connection, request, shared, false).await
            }
            // `auto`, and ALPN chose HTTP/2.
            Ok(Connected::Http2(connection)) => {
                self.send_h2(with_shared(request, shared), Some(connection))
                    .await
            }
            Err(failed) => Err(SendFailure::not_connected(failed, request)),
        }
    }

    /// What a failed HTTP/1.1 exchange was, as an attempt's failure.
    fn exchange_failure(
        &self,
        error: ExchangeError,
        wire: Option<&WireLog>,
        mark: Mark,
        reused: bool,
    ) -> SendFailure {
        match error {
            ExchangeError::ClientBody(failed) => SendFailure::client_body(failed),
            ExchangeError::Protocol(error) => {
                tracing::debug!(endpoint = %format_args!("{}:{}", self.host, self.port), %error, "endpoint broke HTTP/1.1");
                SendFailure::new(FailureKind::Protocol)
            }
            // The request went out, but the endpoint had closed the
            // connection before receiving any of it (see `watched`), or
            // closed it unanswered where the operator accepts that as the
            // idle-close race.
            ExchangeError::Closed | ExchangeError::Io(_)
                if reused
                    && wire.is_some_and(|wire| {
                        wire.closed_before_receiving(mark)
                            || (self.settings.retry_idle_close && wire.closed_cleanly(mark))
                    }) =>
            {
                tracing::debug!(endpoint = %format_args!("{}:{}", self.host, self.port), "endpoint closed a reused connection before answering: not sent");
                SendFailure::new(FailureKind::ClosedIdle)
            }
            ExchangeError::Closed => SendFailure::new(FailureKind::ResetBeforeResponse),
            ExchangeError::Io(error) => SendFailure::new(classify_io_error(&error)),
        }
    }

    /// Whether requests go out as HTTP/2 streams: always with `h2` and
    /// `h2c`; with `auto`, once an endpoint's ALPN has chosen HTTP/2.
    fn speaks_h2(&self) -> bool {
        match self.settings.protocol {
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::H2 | UpstreamProtocol::H2c => true,
            UpstreamProtocol::Auto => !self.multiplexed.lock().is_empty(),
        }
    }

    /// Send `request` as a stream of an HTTP/2 connection with room (`fresh`,
    /// just made, or one of the pool's, or a new one). A request the
    /// connection hands back unsent (it was closing) goes to another; one
    /// the endpoint refused unprocessed (`REFUSED_STREAM`, `GOAWAY`) is sent
    /// once more, on another stream of this endpoint, when levee holds its
    /// body: the refusal concerns a stream or a connection, not the node.
    async fn send_h2(
        self: &Arc<Self>,
        mut request: Request<RequestBody>,
        mut fresh: Option<Arc<H2Connection>>,
    ) -> Result<(Response<ResponseBody>, PooledConnection), SendFailure> {
        let mut second_try = replay_copy(&request);
        loop {
            let (connection, reused) = match fresh.take().or_else(|| self.h2_with_room()) {
                Some(connection) => (connection, true),
                None => match self.connect_h2_once().await {
                    Ok(Connected::Http2(connection)) => (connection, false),
                    Ok(Connected::Http1(..)) => {
                        tracing::warn!(endpoint = %format_args!("{}:{}", self.host, self.port), "endpoint did not agree to HTTP/2 (ALPN); upstream_protocol = \"h2\" needs it");
                        return Err(SendFailure::unsent(FailureKind::Protocol, request));
                    }
                    Err(failed) => return Err(SendFailure::not_connected(failed, request)),
                },
            };
            into_h2_form(&mut request, self.tls.is_some());
            let slot = StreamSlot::take(&connection);
            let mut sender = connection.sender.clone();
            if sender.ready().await.is_err() {
                if reused {
                    continue;
                }
                return Err(SendFailure::unsent(FailureKind::ConnectFailed, request));
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let connection = PooledConnection {
                        _checkout: Checkout::Http2(slot),
                    };
                    return Ok((response.map(ResponseBody::Http2), connection));
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => request = unsent,
                    Some(unsent) => {
                        return Err(SendFailure::unsent(FailureKind::ConnectFailed, unsent));
                    }
                    None => {
                        let kind = classify_send_error(error.error());
                        match second_try.take() {
                            Some(copy) if kind == FailureKind::Refused => {
                                if let Some(metrics) = &self.metrics {
                                    metrics.record_failure(kind);
                                }
                                request = copy;
                            }
                            _ => return Err(SendFailure::new(kind)),
                        }
                    }
                },
            }
        }
    }

    /// A connection with room once this request's turn to open one comes:
    /// the one another request opened meanwhile, or a new one.
    async fn connect_h2_once(&self) -> Result<Connected, ConnectFailed> {
        let _turn = self.opening_h2.lock().await;
        match self.h2_with_room() {
            Some(connection) => Ok(Connected::Http2(connection)),
            None => self.connect().await,
        }
    }

    /// An open HTTP/2 connection with a free stream, the least busy first
    /// found; closed ones are dropped on the way.
    fn h2_with_room(&self) -> Option<Arc<H2Connection>> {
        let mut connections = self.multiplexed.lock();
        connections.retain(|connection| !connection.sender.is_closed());
        let max = self.settings.max_concurrent_streams;
        connections
            .iter()
            .find(|connection| connection.streams.load(Ordering::Relaxed) < max)
            .cloned()
    }

    /// Send a request that asks to switch protocols (`Upgrade`) on a new
    /// connection of its own, never pooled: after a 101 the connection
    /// belongs to the tunnel (`hyper::upgrade::on` on the response). A
    /// failure before anything was sent is a connect-type kind.
    pub async fn send_upgrade(
        &self,
        request: Request<http_body_util::Empty<bytes::Bytes>>,
    ) -> Result<Response<Incoming>, FailureKind> {
        let stream = self.open_stream().await.map_err(|error| {
            tracing::debug!(endpoint = %format_args!("{}:{}", self.host, self.port), %error, "connect failed");
            error.kind()
        })?;
        let (mut sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|_| FailureKind::ConnectFailed)?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::trace!(%error, "upstream upgrade connection ended with an error");
            }
        });
        sender
            .send_request(request)
            .await
            .map_err(|error| classify_send_error(&error))
    }

    /// An open idle connection, dropping closed and expired ones on the way.
    fn take_idle(&self) -> Option<Box<Http1Connection>> {
        loop {
            let mut idle = self.idle.take()?;
            if idle.since.elapsed() < self.settings.idle_timeout && !idle.connection.is_stale() {
                return Some(idle.connection);
            }
            tracing::trace!(endpoint = %self.host, "pooled connection closed or expired; passed over");
        }
    }

    /// A new connection to the endpoint, outside the pool, within the
    /// connect timeout and with `TCP_NODELAY` on, under TLS if the cluster
    /// speaks it (the handshake has a connect timeout of its own). HTTP
    /// connections are made with it, and TCP listeners relay their
    /// clients' bytes over it.
    pub async fn open_stream(&self) -> Result<Stream, ConnectError> {
        let timeout = self.settings.connect_timeout;
        let stream = tokio::time::timeout(timeout, self.connect_tcp())
            .await
            .map_err(|_| ConnectError::TimedOut(timeout))??;
        // Small exchanges must not wait for Nagle; failure only costs latency.
        let _ = stream.set_nodelay(true);
        let Some(EndpointTls { tls, name }) = &self.tls else {
            return Ok(Stream::Plain(stream));
        };
        let failed = |source| ConnectError::Tls {
            name: name.to_str().into_owned(),
            source,
        };
        // Boxed: the handshake's state (rustls' whole connection) would
        // otherwise sit inline in every request's future, which hyper
        // copies per request, TLS or not (callgrind: +8k instructions).
        let handshake = Box::pin(tls.connect(stream, name.clone()));
        match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(error)) => Err(failed(error)),
            Err(_elapsed) => Err(failed(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no handshake within {timeout:?}"),
            ))),
        }
    }

    /// Open a new connection, HTTP/2 if the cluster speaks it (or, with
    /// `auto`, if ALPN chose it). Every error here means "not sent".
    async fn connect(&self) -> Result<Connected, ConnectFailed> {
        let stream = self.open_stream().await.map_err(|error| {
            let detail = matches!(error, ConnectError::Tls { .. })
                .then(|| error.to_string().into_boxed_str());
            if let ConnectError::Tls { .. } = error {
                // A configuration problem more often than a node's: say it
                // where an operator looks.
                tracing::warn!(endpoint = %format_args!("{}:{}", self.host, self.port), %error, "TLS to endpoint failed");
            } else {
                tracing::debug!(endpoint = %format_args!("{}:{}", self.host, self.port), %error, "connect failed");
            }
            ConnectFailed {
                kind: error.kind(),
                detail,
            }
        })?;
        let h2 = match self.settings.protocol {
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::H2c => true,
            UpstreamProtocol::H2 | UpstreamProtocol::Auto => stream.alpn() == Some(b"h2"),
        };
        if h2 {
            // Boxed: inline, the HTTP/2 handshake's state would grow every
            // request's future, HTTP/1.1 ones included (+8k instructions).
            return Box::pin(self.handshake_h2(stream))
                .await
                .map(Connected::Http2)
                .map_err(ConnectFailed::from);
        }
        Ok(Connected::Http1(Http1Connection::new(
            stream,
            self.settings.max_response_headers,
        )))
    }

    /// Start HTTP/2 on `stream` and add the connection to the pool.
    async fn handshake_h2(&self, stream: Stream) -> Result<Arc<H2Connection>, FailureKind> {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_reset_streams(self.settings.max_concurrent_streams);
        let (sender, connection) = builder
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|error| {
                tracing::debug!(endpoint = %format_args!("{}:{}", self.host, self.port), %error, "HTTP/2 handshake failed");
                FailureKind::ConnectFailed
            })?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::trace!(%error, "upstream HTTP/2 connection ended with an error");
            }
        });
        let connection = Arc::new(H2Connection {
            sender,
            streams: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        });
        self.multiplexed.lock().push(Arc::clone(&connection));
        Ok(connection)
    }

    /// Resolve (IP literals need no lookup) and connect to the first address
    /// that accepts. A failed lookup is told apart from a failed connect:
    /// "does not resolve" is the first thing to fix.
    async fn connect_tcp(&self) -> Result<TcpStream, ConnectError> {
        let unresolved = |source| ConnectError::Unresolved {
            host: self.host.clone(),
            source,
        };
        let addresses = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(unresolved)?;
        let mut last_error = None;
        for address in addresses {
            match super::connect::connect_from(address, self.settings.source_address).await {
                Ok(stream) => return Ok(stream),
                Err(error) => last_error = Some(error),
            }
        }
        Err(match last_error {
            Some(error) => ConnectError::Io(error),
            None => unresolved(io::Error::new(io::ErrorKind::NotFound, "no address")),
        })
    }

    /// Close connections idle past `idle_timeout`, and half of those that
    /// were not used during the last `period` (see [`surplus_to_close`]).
    fn close_expired(&self, period: Duration) {
        let timeout = self.settings.idle_timeout;
        let now = Instant::now();
        self.multiplexed.lock().retain(|connection| {
            !connection.sender.is_closed()
                && (connection.streams.load(Ordering::Relaxed) > 0
                    || now.duration_since(*connection.idle_since.lock()) < timeout)
        });
        for shard in &self.idle.shards {
            let mut idle = shard.lock();
            let before = idle.len();
            idle.retain_mut(|idle| {
                now.duration_since(idle.since) < timeout && !idle.connection.is_stale()
            });
            let close = surplus_to_close(idle.iter().map(|idle| idle.since), now, period);
            // Oldest first: the front of the list.
            idle.drain(..close);
            self.idle
                .count
                .fetch_sub(before - idle.len(), Ordering::Relaxed);
        }
    }
}

/// An endpoint's idle HTTP/1.1 connections, in one list per worker thread:
/// a request takes and gives back a connection on its own thread's list,
/// so the requests of different workers do not queue on one lock (issue
/// 11); a thread whose list is empty takes from the others before it
/// opens a connection. Each list has the most recently used last: taken
/// from the end (warm connections first), expired ones trimmed from the
/// front.
struct IdleShards {
    shards: Box<[Mutex<Vec<Idle>>]>,
    /// Connections in all lists (`max_idle` bounds it).
    count: AtomicUsize,
}

/// Lists per pool: enough for the worker threads of most machines (threads
/// beyond it share lists).
const IDLE_SHARDS: usize = 8;

impl IdleShards {
    fn new() -> IdleShards {
        IdleShards {
            shards: (0..IDLE_SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
            count: AtomicUsize::new(0),
        }
    }

    /// The calling thread's list first.
    fn own(&self) -> usize {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % IDLE_SHARDS;
        }
        SHARD.with(|shard| *shard)
    }

    /// The most recently used connection of this thread's list, else of
    /// any other's.
    fn take(&self) -> Option<Idle> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let own = self.own();
        let taken = (0..IDLE_SHARDS)
            .map(|offset| (own + offset) % IDLE_SHARDS)
            .find_map(|shard| self.shards[shard].lock().pop())?;
        self.count.fetch_sub(1, Ordering::Relaxed);
        Some(taken)
    }

    /// Keep `idle` unless `max_idle` connections are kept already (it is
    /// then dropped, which closes it).
    fn put(&self, idle: Idle, max_idle: usize) {
        if self.count.fetch_add(1, Ordering::Relaxed) >= max_idle {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        self.shards[self.own()].lock().push(idle);
    }
}

/// `request` with the `shared` fields of its request merged in (its own
/// replace shared ones of the same name), for hyper's HTTP/2 client, which
/// takes one map.
fn with_shared(mut request: Request<RequestBody>, shared: &SharedFields) -> Request<RequestBody> {
    let own = std::mem::take(request.headers_mut());
    *request.headers_mut() = shared.merged(own);
    request
}

/// An HTTP/1.1 request on its way, as an attempt sees it.
struct Exchanging<'p> {
    pool: &'p Arc<EndpointPool>,
    head: SendHead,
    /// Where the connection stood before this request.
    mark: Mark,
    /// The connection carried requests before (it may have been closed
    /// by the endpoint while idle).
    reused: bool,
}

impl<'p> Exchanging<'p> {
    fn start(
        pool: &'p Arc<EndpointPool>,
        connection: Box<Http1Connection>,
        request: Request<RequestBody>,
        shared: &SharedFields,
        reused: bool,
    ) -> Exchanging<'p> {
        let mark = connection.wire().mark();
        Exchanging {
            pool,
            head: super::http1::send(connection, request, shared, Arc::clone(pool) as _),
            mark,
            reused,
        }
    }
}

impl Future for Exchanging<'_> {
    type Output = Result<(Response<ResponseBody>, PooledConnection), SendFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        Poll::Ready(match std::task::ready!(Pin::new(&mut this.head).poll(cx)) {
            Ok(response) => Ok((
                response.map(ResponseBody::Http1),
                PooledConnection {
                    _checkout: Checkout::InBody,
                },
            )),
            Err(error) => Err(this.pool.exchange_failure(
                error,
                this.head.wire().map(Arc::as_ref),
                this.mark,
                this.reused,
            )),
        })
    }
}

/// A copy of `request` to send again, when its body is held by levee.
fn replay_copy(request: &Request<RequestBody>) -> Option<Request<RequestBody>> {
    let RequestBody::Replayable { data, trailers } = request.body() else {
        return None;
    };
    let mut copy = Request::new(RequestBody::Replayable {
        data: data.clone(),
        trailers: trailers.clone(),
    });
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

/// HTTP/2 carries the target as `:scheme` and `:authority`: the request
/// levee built for HTTP/1.1 (origin-form, `Host`) is made absolute. gRPC
/// needs `te: trailers`, which levee removes as hop-by-hop on the way in.
pub fn into_h2_form<B>(request: &mut Request<B>, tls: bool) {
    let scheme = if tls { "https" } else { "http" };
    if request.uri().scheme().is_none() {
        let host = request.headers_mut().remove(http::header::HOST);
        let authority = host.as_ref().and_then(|host| host.to_str().ok());
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        if let Some(authority) = authority
            && let Ok(uri) = format!("{scheme}://{authority}{path}").parse()
        {
            *request.uri_mut() = uri;
        }
    }
    *request.version_mut() = http::Version::HTTP_2;
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|kind| kind.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        request
            .headers_mut()
            .insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
}

/// How often unused idle connections are trimmed.
const PURGE_PERIOD: Duration = Duration::from_secs(5);

/// How many of the idle connections (given by when each was last used,
/// oldest first) to close: half, rounded up, of those unused for a whole
/// `period`. A burst leaves more idle connections than steady traffic
/// needs, each holding buffers and a descriptor; closing half of the
/// unused ones per period (HAProxy's `pool-purge-delay` does the same)
/// gives them back within seconds of the burst, while a pool that steady
/// traffic keeps using is not touched.
fn surplus_to_close(
    last_used: impl Iterator<Item = Instant>,
    now: Instant,
    period: Duration,
) -> usize {
    last_used
        .take_while(|since| now.duration_since(*since) >= period)
        .count()
        .div_ceil(2)
}

/// Close idle connections past their idle timeout, and trim unused ones,
/// until the pool is gone.
async fn reap_idle(pool: Weak<EndpointPool>, idle_timeout: Duration) {
    let period = (idle_timeout / 2).clamp(Duration::from_millis(100), PURGE_PERIOD);
    loop {
        tokio::time::sleep(period).await;
        match pool.upgrade() {
            Some(pool) => pool.close_expired(period),
            None => return,
        }
    }
}

/// An HTTP/1.1 connection whose response was read to its end, ready for
/// another request.
impl ConnectionHome for EndpointPool {
    fn give_back(&self, connection: Box<Http1Connection>) {
        self.idle.put(
            Idle {
                connection,
                since: Instant::now(),
            },
            self.settings.max_idle,
        );
    }
}

/// For `/status` and tests: the address a pool connects to.
impl std::fmt::Debug for EndpointPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EndpointPool({}:{} {}, {} idle, {} multiplexed)",
            self.host,
            self.port,
            self.settings.protocol,
            self.idle_count(),
            self.multiplexed.lock().len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(host: &str, port: u16) -> Arc<EndpointPool> {
        EndpointPool::new(
            host.to_owned(),
            port,
            PoolSettings {
                protocol: UpstreamProtocol::Http1,
                max_concurrent_streams: 100,
                connect_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(5),
                max_idle: 1,
                max_response_headers: 100,
                retry_idle_close: false,
                source_address: None,
            },
            None,
            None,
        )
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_not_a_refused_connect() {
        let error = pool("no-such-host.invalid", 80)
            .open_stream()
            .await
            .expect_err("no such host");
        assert_eq!(error.kind(), FailureKind::Unresolved);
        assert!(
            error
                .to_string()
                .starts_with("no-such-host.invalid does not resolve: "),
            "{error}"
        );
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a port");
        let error = pool("127.0.0.1", closed.port())
            .open_stream()
            .await
            .expect_err("refused");
        assert_eq!(error.kind(), FailureKind::ConnectRefused);
    }
}
