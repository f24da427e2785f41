//! One client connection of an HTTP listener (or of the admin listener),
//! from accept to close.
//!
//! - The first bytes tell HTTP/2 (its preface) from HTTP/1, within
//!   `header_read_timeout` of accept: a client that connects and stays
//!   silent is closed (hyper-util's `auto` server waits for them forever).
//! - HTTP/1 is served in *turns* while requests keep coming: levee's own
//!   turn answers simple requests (`simple_http1.rs`); the first request it
//!   leaves to hyper starts a hyper turn on the same bytes. Once the
//!   connection has been quiet for a moment (`park_after`) it is *parked*:
//!   the turn gives the socket back and its buffers are freed. A cleartext
//!   connection then leaves its task too and waits in its listener's parked
//!   set (`parked.rs`), which gives it a task again on the next request's
//!   first byte; a TLS one waits for that byte in its own task. Either way,
//!   up to `idle_timeout`. Busy connections never pay for this; an idle one
//!   costs a few hundred bytes instead of tens of kilobytes.
//! - HTTP/2 is served by hyper; levee sends GOAWAY when the connection has
//!   had no stream for `idle_timeout`, or none within `header_read_timeout`.
//! - A request head begun but not finished within `header_read_timeout`
//!   gets a 408 (HTTP/1); a silent connection is closed without a word.
//! - Evicted (the listener is full): closed if no request is in progress.
//!   Draining (shutdown): HTTP/1 responses say `Connection: close` and a
//!   connection is closed only once quiet, between requests; HTTP/2 gets a
//!   GOAWAY and finishes its streams.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::attention::{CHECK, DRAIN, EVICT};
use super::io::{ClientIo, LINGER};
use super::limits::ConnectionLimits;
use super::metrics::CloseReason;
use super::parked::Parked;
use super::registry::{ConnectionGuard, ConnectionState};
use super::simple_http1;
use super::tracked::TrackedBody;
use crate::proxy::ClientInfo;
use crate::proxy::switched::Tunnel;
use crate::tls::{ServerTls, Stream};
use crate::upstream::ClientBody;

/// What HTTP/2 clients send first (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// After shutdown begins, an HTTP/1 connection quiet for this long is
/// closed (a client in a request loop sends within it and is told
/// `Connection: close` instead): the listener ticks at this period while
/// it drains.
pub(crate) const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// levee's own turn reads requests into a buffer of this size, grown when
/// less than [`READ_AT_LEAST`] is free. A connection holds the buffer until
/// it parks: 2,000 connections opened at once hold 8 MB, not the 16 MB of
/// hyper's 8 KB. 2 KB measured the same per request (bench/instructions.sh)
/// but makes a head with a few cookies grow the buffer.
const READ_BUF: usize = 4 * 1024;
const READ_AT_LEAST: usize = 512;

/// Everything one connection needs besides its socket.
pub(crate) struct HttpConnection<F> {
    /// Its place in the listener (and the state it shares).
    pub guard: ConnectionGuard,
    /// The listener's limits (shared by its connections).
    pub limits: Arc<ConnectionLimits>,
    /// Builds the connection's service (once, or again after parking; the
    /// flag says HTTP/1) for its client, which tracks its requests
    /// (`tracked.rs`).
    pub make_service: F,
    /// When the connection was accepted.
    pub accepted: Instant,
    /// TLS to terminate first, on a TLS listener.
    pub tls: Option<Arc<ServerTls>>,
    /// Where the connection goes when it parks, if its listener keeps
    /// parked connections without a task (`parked.rs`); else it waits in
    /// its own task.
    pub lot: Option<Lot<F>>,
}

/// Hands parked connections to their listener.
pub(crate) type Lot<F> = mpsc::UnboundedSender<Parked<HttpConnection<F>>>;

/// How a turn on an HTTP/1 connection (levee's own or hyper's) ended.
enum Http1End {
    /// Idle, socket given back: wait for the next request.
    Parked,
    /// Closed (the client asked, or the request could not be followed by
    /// another); the socket is shut down already.
    Closed,
    /// A request levee leaves to hyper: its bytes are in the socket's
    /// replay buffer.
    ForHyper,
    /// A request head not received within `header_read_timeout`.
    HeadTimedOut,
    /// Failed: a malformed request, an I/O error.
    Failed(Box<dyn StdError + Send + Sync>),
}

/// What woke a parked connection.
enum Wake {
    Readable,
    IdleTimeout,
    Close,
}

impl<F, S, B> HttpConnection<F>
where
    F: Fn(&Arc<ConnectionState>, &Arc<ClientInfo>, bool) -> S,
    S: Service<Request<ClientBody>, Response = Response<TrackedBody<B>>>
        + Unpin
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    /// Serve the connection until it closes, or until it parks in its
    /// listener's set. `client` says who the client is, and is where a
    /// request that switches protocols leaves its tunnel.
    ///
    /// Not an `async fn`: one would keep `self` twice in the connection's
    /// task (as its argument and as its binding), and the task's size is
    /// what every connection costs while it is served, and a TLS one while
    /// it is parked (bench/memory.sh).
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps `self` twice in the task (see above)"
    )]
    pub fn serve(mut self, tcp: TcpStream, client: Arc<ClientInfo>) -> impl Future<Output = ()> {
        async move {
            if let Some(idle) = self.run(tcp, &client).await {
                self.park_in_lot(idle);
            }
        }
    }

    /// Serve a parked connection again: its socket turned readable. Who
    /// the client is was not kept while it was parked: read again from the
    /// socket.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps `self` twice in the task (see `serve`)"
    )]
    pub fn resume(mut self, socket: std::net::TcpStream) -> impl Future<Output = ()> {
        async move {
            let served = socket
                .peer_addr()
                .and_then(|address| Ok((TcpStream::from_std(socket)?, address)));
            let (tcp, address) = match served {
                Ok(served) => served,
                Err(error) => {
                    tracing::debug!(%error, "a parked connection could not be served again");
                    return;
                }
            };
            let client = Arc::new(ClientInfo::new(address, false));
            let io = ClientIo::plain(tcp, Arc::clone(self.guard.state()));
            let head_deadline = Instant::now() + self.limits.header_read_timeout;
            if let Some(idle) = self.http1(io, head_deadline, &client).await {
                self.park_in_lot(idle);
            }
        }
    }

    /// Close a parked connection (its idle timeout passed, it was evicted,
    /// or the listener stops), lingering as any close does.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps `self` twice in the task (see `serve`)"
    )]
    pub fn close_parked(
        self,
        socket: std::net::TcpStream,
        reason: Option<CloseReason>,
    ) -> impl Future<Output = ()> {
        async move {
            if let Some(reason) = reason {
                self.record_close(reason);
            }
            if let Ok(tcp) = TcpStream::from_std(socket) {
                close(&mut ClientIo::plain(tcp, Arc::clone(self.guard.state()))).await;
            }
        }
    }

    /// The connection's id in its listener.
    pub(crate) fn id(&self) -> u64 {
        self.guard.state().id()
    }

    /// Whether it was evicted, or shutdown began, since it last looked: a
    /// connection on its way to the parked set is closed instead.
    pub(crate) fn told_to_close(&self) -> bool {
        self.guard.state().signals.raised() & (EVICT | DRAIN) != 0
    }

    /// Hand an idle connection to its listener's parked set; its task
    /// ends. Nothing of the task may stay behind: the waker it left with
    /// the listener's signals would keep its memory.
    fn park_in_lot(self, idle: ClientIo) {
        // Only a connection with a lot is handed back idle (`http1`).
        let Some(lot) = self.lot.clone() else {
            return;
        };
        self.guard.state().signals.forget();
        let socket = match idle.into_std() {
            Ok(socket) => socket,
            Err(error) => {
                tracing::debug!(%error, "an idle connection could not be parked");
                return;
            }
        };
        // It was quiet for `park_after` already.
        let idle_until = Instant::now()
            + self
                .limits
                .idle_timeout
                .saturating_sub(self.limits.park_after());
        // Fails only once the listener is gone; the socket closes with it.
        let _ = lot.send(Parked {
            id: self.id(),
            connection: self,
            socket,
            idle_until,
        });
    }

    /// Serve the connection; the socket comes back if it went idle and can
    /// be parked without a task (`lot`).
    async fn run(&mut self, tcp: TcpStream, client: &Arc<ClientInfo>) -> Option<ClientIo> {
        // Opened in a future of its own, gone before the connection is
        // served: what the socket was made of is not kept beside it.
        let (protocol, io, head_deadline) = self.open(tcp).await?;
        match protocol {
            // Boxed for the same reason as an HTTP/1 turn.
            Protocol::Http2 => {
                Box::pin(self.http2(io, client)).await;
                None
            }
            Protocol::Http1 => self.http1(io, head_deadline, client).await,
        }
    }

    /// Terminate TLS and tell the protocol from the first bytes: the
    /// socket, ready to serve, and when its first request head is due;
    /// `None` if the connection ended first.
    async fn open(&mut self, tcp: TcpStream) -> Option<(Protocol, ClientIo, Instant)> {
        let state = Arc::clone(self.guard.state());
        let head_deadline = self.accepted + self.limits.header_read_timeout;
        let mut stream = match self.tls.take() {
            None => Stream::Plain(tcp),
            Some(tls) => {
                // Boxed: rustls' handshake state is large, and only TLS
                // connections should carry it in their task.
                let handshake = Box::pin(tls.handshake(tcp, self.accepted, head_deadline));
                let handshaken = tokio::select! {
                    handshaken = handshake => handshaken,
                    _ = state.signals.next() => return None,
                };
                handshaken?
            }
        };
        let detected = tokio::select! {
            detected = detect(&mut stream, head_deadline) => detected,
            // Evicted or drained before it said anything.
            _ = state.signals.next() => return None,
        };
        let (protocol, prefix) = match detected {
            Detected::Http1(prefix) => (Protocol::Http1, prefix),
            Detected::Http2(prefix) => (Protocol::Http2, prefix),
            Detected::TimedOut => {
                // Silent (or a partial preface): nothing to answer.
                self.record_close(CloseReason::HeaderTimeout);
                return None;
            }
            Detected::Closed => return None,
        };
        count_read(&state, prefix.len());
        Some((
            protocol,
            ClientIo::new(stream, prefix, state),
            head_deadline,
        ))
    }

    /// Serve HTTP/1 requests until the connection closes, or until it is
    /// idle and can be parked without a task: then its socket comes back.
    /// Not an `async fn`, for the reason `serve` is not: `io` is kept once.
    fn http1(
        &mut self,
        io: ClientIo,
        head_deadline: Instant,
        client: &Arc<ClientInfo>,
    ) -> impl Future<Output = Option<ClientIo>> {
        let (mut io, mut head_deadline) = (io, head_deadline);
        async move {
            let state = Arc::clone(self.guard.state());
            let mut hyper_next = false;
            loop {
                // Boxed: a turn's state (hyper's connection, or levee's request
                // in progress) lives on the heap while it serves, so that a
                // parked connection's task is only what it needs to wait
                // (bench/memory.sh: 2.3 KB less per idle connection).
                let (ended, back) = if std::mem::take(&mut hyper_next) {
                    Box::pin(self.hyper_turn(io, head_deadline, client)).await
                } else {
                    Box::pin(self.simple_turn(io, head_deadline, client)).await
                };
                io = back;
                state.parking.store(false, Ordering::Relaxed);
                match ended {
                    Http1End::Parked => {}
                    Http1End::ForHyper => {
                        // The same head, read by hyper from the replayed bytes.
                        hyper_next = true;
                        continue;
                    }
                    Http1End::Closed => {
                        // hyper hands a switched connection back as if closed.
                        if let Some(tunnel) = client.upgrade.take() {
                            Box::pin(self.tunnel(tunnel, io)).await;
                        }
                        return None;
                    }
                    Http1End::HeadTimedOut => {
                        if io.has_prefix() {
                            self.record_close(CloseReason::HeaderTimeout);
                            send_408(&mut io, self.limits.header_read_timeout).await;
                        } else {
                            // Nothing of a head received: an idle client
                            // (parking normally comes first).
                            self.record_close(CloseReason::IdleTimeout);
                        }
                        close(&mut io).await;
                        return None;
                    }
                    Http1End::Failed(error) => {
                        tracing::debug!(%error, "client connection ended with an error");
                        close(&mut io).await;
                        return None;
                    }
                }
                if !io.has_prefix() {
                    if self.lot.is_some()
                        && io.is_plain()
                        && !state.draining.load(Ordering::Relaxed)
                    {
                        return Some(io);
                    }
                    match self.wait_parked(&io).await {
                        Wake::Readable => {}
                        Wake::IdleTimeout => {
                            self.record_close(CloseReason::IdleTimeout);
                            close(&mut io).await;
                            return None;
                        }
                        Wake::Close => {
                            close(&mut io).await;
                            return None;
                        }
                    }
                }
                head_deadline = Instant::now() + self.limits.header_read_timeout;
            }
        }
    }

    /// Relay a switched connection (WebSocket) until both sides close.
    /// Boxed (by its caller, and the relay by itself): only switched
    /// connections carry its state and the relay's buffers.
    async fn tunnel(&self, tunnel: Tunnel, mut io: ClientIo) {
        // Counted as a request in progress while it lasts, so that the
        // listener never evicts it as idle.
        let state = Arc::clone(self.guard.state());
        state.started.fetch_add(1, Ordering::Relaxed);
        match Box::pin(tunnel.relay(&mut io)).await {
            Ok((to_endpoint, to_client)) => {
                tracing::debug!(to_endpoint, to_client, "tunnel closed");
            }
            Err(error) => tracing::debug!(%error, "tunnel ended with an error"),
        }
        state.finished.fetch_add(1, Ordering::Relaxed);
        close(&mut io).await;
    }

    /// Serve simple requests itself (`simple_http1.rs`) until the
    /// connection parks, closes, or sends a request for hyper; the socket
    /// comes back with what was read and not served.
    async fn simple_turn(
        &mut self,
        mut io: ClientIo,
        head_deadline: Instant,
        client: &Arc<ClientInfo>,
    ) -> (Http1End, ClientIo) {
        let state = Arc::clone(self.guard.state());
        let service = (self.make_service)(&state, client, true);
        let mut buf = BytesMut::new();
        let ended = self
            .drive_simple(&mut io, &mut buf, &service, head_deadline)
            .await;
        let ended = match ended {
            SimpleEnd::Parked => Http1End::Parked,
            SimpleEnd::ForHyper => Http1End::ForHyper,
            SimpleEnd::HeadTimedOut => Http1End::HeadTimedOut,
            SimpleEnd::Close => {
                close(&mut io).await;
                return (Http1End::Closed, io);
            }
            SimpleEnd::Failed(error) => Http1End::Failed(error),
        };
        // As after hyper's turn: what TLS decrypted and nobody read, then
        // what was read and not served.
        io.keep_decrypted();
        io.unread(buf.freeze());
        (ended, io)
    }

    /// Serve simple requests until the connection ends, parks, or is
    /// closed, watching the listener's signals as `drive_http1` does.
    async fn drive_simple(
        &mut self,
        io: &mut ClientIo,
        buf: &mut BytesMut,
        service: &S,
        head_deadline: Instant,
    ) -> SimpleEnd {
        let state = Arc::clone(self.guard.state());
        state.hot.store(true, Ordering::Relaxed);
        let mut seen = Activity::of(&state);
        let mut head = HeadWatch::new(seen.finished, head_deadline);
        let mut draining = state.draining.load(Ordering::Relaxed);
        // Set to end after the response in progress.
        let closing = AtomicBool::new(false);
        let max_headers = self.limits.max_request_headers;
        let serving = serve_simple(io, buf, service, &closing, max_headers);
        tokio::pin!(serving);
        let mut signals = state.signals.next();
        let ended = loop {
            tokio::select! {
                biased;
                ended = &mut serving => break ended,
                flags = &mut signals => {
                    if flags & DRAIN != 0 && !draining {
                        draining = true;
                        state.draining.store(true, Ordering::Relaxed);
                        seen = Activity::of(&state);
                    }
                    if flags & EVICT != 0 && state.in_flight() == 0 {
                        if !state.write_pending.load(Ordering::Relaxed) {
                            break SimpleEnd::Close;
                        }
                        closing.store(true, Ordering::Relaxed);
                    }
                    if flags & CHECK != 0
                        && head.overdue(&state, Instant::now(), self.limits.header_read_timeout)
                    {
                        break SimpleEnd::HeadTimedOut;
                    }
                    if flags & CHECK != 0 && flags & DRAIN == 0 {
                        let now = Activity::of(&state);
                        if now == seen && is_between_requests(&state) {
                            break if draining { SimpleEnd::Close } else { SimpleEnd::Parked };
                        }
                        seen = now;
                    }
                }
            }
        };
        state.hot.store(false, Ordering::Relaxed);
        ended
    }

    /// Serve requests with a fresh hyper connection until it ends or parks;
    /// the socket comes back with whatever hyper read and did not use.
    async fn hyper_turn(
        &mut self,
        io: ClientIo,
        head_deadline: Instant,
        client: &Arc<ClientInfo>,
    ) -> (Http1End, ClientIo) {
        let state = Arc::clone(self.guard.state());
        let mut builder = http1::Builder::new();
        // No head timer of hyper's: it arms (and allocates) one per request,
        // about 1,300 instructions of each (bench/instructions.sh). The head
        // timeout is checked by `drive_http1` at the listener's ticks.
        builder.timer(TokioTimer::new()).header_read_timeout(None);
        let max_headers = self.limits.max_request_headers;
        // Any value set moves hyper's header parsing to the heap: only when
        // it differs from hyper's own.
        if max_headers != ConnectionLimits::HYPER_MAX_HEADERS {
            builder.max_headers(max_headers);
        }
        let service = FromHyper((self.make_service)(&state, client, true));
        let mut connection = builder.serve_connection(TokioIo::new(io), service);
        let ended = self.drive_http1(&mut connection, head_deadline).await;
        let parts = connection.into_parts();
        let mut io = parts.io.into_inner();
        io.keep_decrypted();
        io.unread(parts.read_buf);
        (ended, io)
    }

    /// Poll hyper until the connection ends, parks, or is closed; the
    /// turn's first request head is due by `head_deadline`.
    async fn drive_http1(
        &mut self,
        connection: &mut http1::Connection<TokioIo<ClientIo>, FromHyper<S>>,
        head_deadline: Instant,
    ) -> Http1End {
        let state = Arc::clone(self.guard.state());
        state.hot.store(true, Ordering::Relaxed);
        let mut seen = Activity::of(&state);
        let mut head = HeadWatch::new(seen.finished, head_deadline);
        let mut closing = false;
        let mut draining = state.draining.load(Ordering::Relaxed);
        let mut signals = state.signals.next();
        let ended = loop {
            tokio::select! {
                // The connection first: it is what wakes this task nearly
                // every time.
                biased;
                result = &mut *connection => {
                    break match result {
                        Ok(()) if state.parking.load(Ordering::Relaxed) => Http1End::Parked,
                        Ok(()) => Http1End::Closed,
                        Err(error) => Http1End::Failed(error.into()),
                    };
                }
                flags = &mut signals => {
                    if flags & DRAIN != 0 && !draining {
                        draining = true;
                        state.draining.store(true, Ordering::Relaxed);
                        // Quiet from now on for a whole check period:
                        // closed between requests.
                        seen = Activity::of(&state);
                    }
                    if flags & EVICT != 0 && !closing && state.in_flight() == 0 {
                        closing = true;
                        Pin::new(&mut *connection).graceful_shutdown();
                    }
                    if flags & CHECK != 0
                        && head.overdue(&state, Instant::now(), self.limits.header_read_timeout)
                    {
                        break Http1End::HeadTimedOut;
                    }
                    // A check in the same batch as the drain would find
                    // the activity it just took: wait for the next one.
                    if flags & CHECK != 0 && flags & DRAIN == 0 {
                        let now = Activity::of(&state);
                        if !closing && now == seen && is_between_requests(&state) {
                            closing = true;
                            if draining {
                                Pin::new(&mut *connection).graceful_shutdown();
                            } else if let Some(end) = park(connection, &state).await {
                                break end;
                            }
                        }
                        seen = now;
                    }
                }
            }
        };
        state.hot.store(false, Ordering::Relaxed);
        ended
    }

    /// Wait on a parked connection's socket for the next request.
    async fn wait_parked(&mut self, io: &ClientIo) -> Wake {
        let state = Arc::clone(self.guard.state());
        if state.draining.load(Ordering::Relaxed) {
            return Wake::Close;
        }
        // It was quiet for `park_after` already.
        let idle_until = Instant::now()
            + self
                .limits
                .idle_timeout
                .saturating_sub(self.limits.park_after());
        let sleep = tokio::time::sleep_until(idle_until);
        tokio::pin!(sleep);
        let mut signals = state.signals.next();
        let tcp = io.stream().tcp();
        // One poll function rather than a `select!` over `readable()`: the
        // socket's readiness is polled in place (its waker slot), not kept
        // as a future, and this wait is what a parked connection's task
        // holds (bench/memory.sh: 208 bytes less per idle connection).
        std::future::poll_fn(|cx| {
            if let Poll::Ready(readable) = tcp.poll_read_ready(cx) {
                return Poll::Ready(match readable {
                    Ok(()) => Wake::Readable,
                    Err(_) => Wake::Close,
                });
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::IdleTimeout);
            }
            while let Poll::Ready(flags) = Pin::new(&mut signals).poll(cx) {
                if flags & (EVICT | DRAIN) != 0 {
                    return Poll::Ready(Wake::Close);
                }
            }
            Poll::Pending
        })
        .await
    }

    async fn http2(&mut self, io: ClientIo, client: &Arc<ClientInfo>) {
        let state = Arc::clone(self.guard.state());
        let service = FromHyper((self.make_service)(&state, client, false));
        // Extended CONNECT (RFC 8441): WebSocket over HTTP/2.
        let connection = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .enable_connect_protocol()
            .serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        state.hot.store(true, Ordering::Relaxed);
        let mut streams = (
            state.started.load(Ordering::Relaxed),
            state.finished.load(Ordering::Relaxed),
        );
        let mut quiet_since = Instant::now();
        let mut closing = false;
        let mut give_up_at = None;
        let mut signals = state.signals.next();
        loop {
            tokio::select! {
                biased;
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "HTTP/2 client connection ended with an error");
                    }
                    return;
                }
                flags = &mut signals => {
                    let now = Instant::now();
                    if give_up_at.is_some_and(|at| now >= at) {
                        return;
                    }
                    if closing {
                        continue;
                    }
                    let current = (
                        state.started.load(Ordering::Relaxed),
                        state.finished.load(Ordering::Relaxed),
                    );
                    if current != streams || state.in_flight() > 0 {
                        quiet_since = now;
                        streams = current;
                    }
                    let idle = state.in_flight() == 0;
                    let reason = if state.never_served() && now >= self.accepted + self.limits.header_read_timeout {
                        Some(Some(CloseReason::HeaderTimeout))
                    } else if idle && now.saturating_duration_since(quiet_since) >= self.limits.idle_timeout {
                        Some(Some(CloseReason::IdleTimeout))
                    } else if flags & DRAIN != 0 || (flags & EVICT != 0 && idle) {
                        Some(None)
                    } else {
                        None
                    };
                    if let Some(reason) = reason {
                        closing = true;
                        if let Some(reason) = reason {
                            self.record_close(reason);
                        }
                        if state.never_served() {
                            // Not even a stream (perhaps not even its
                            // SETTINGS): nothing to say GOAWAY to.
                            return;
                        }
                        // GOAWAY; streams in progress finish.
                        connection.as_mut().graceful_shutdown();
                        if idle {
                            // A client that never closes its side must not
                            // hold the connection.
                            give_up_at = Some(now + LINGER * 2);
                        }
                    }
                }
            }
        }
    }

    fn record_close(&self, reason: CloseReason) {
        self.guard.connections().metrics().record_close(reason);
    }
}

/// The protocol a connection speaks.
enum Protocol {
    Http1,
    Http2,
}

/// What the first bytes said.
enum Detected {
    Http1(Bytes),
    Http2(Bytes),
    TimedOut,
    Closed,
}

/// Read until the bytes either stop matching the HTTP/2 preface (HTTP/1)
/// or complete it (HTTP/2), by `deadline`.
async fn detect(stream: &mut (impl AsyncRead + Unpin), deadline: Instant) -> Detected {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf[filled..])).await {
            Err(_elapsed) => return Detected::TimedOut,
            Ok(Ok(0) | Err(_)) => return Detected::Closed,
            Ok(Ok(read)) => filled += read,
        }
        let seen = &buf[..filled];
        if !H2_PREFACE.starts_with(seen) {
            return Detected::Http1(Bytes::copy_from_slice(seen));
        }
        if filled == H2_PREFACE.len() {
            return Detected::Http2(Bytes::copy_from_slice(seen));
        }
    }
}

/// Bytes read outside [`ClientIo`] count too.
fn count_read(state: &ConnectionState, read: usize) {
    state.bytes_read.fetch_add(read as u64, Ordering::Relaxed);
}

/// No request in progress, its response written, and nothing of the next
/// one received (a connection that never completed a head has read bytes
/// since its last "finish", so it is not between requests).
fn is_between_requests(state: &ConnectionState) -> bool {
    state.in_flight() == 0
        && !state.write_pending.load(Ordering::Relaxed)
        && state.bytes_read.load(Ordering::Relaxed) == state.bytes_at_finish.load(Ordering::Relaxed)
}

/// The request head a connection is reading, and when it is overdue: the
/// head timeout, checked at the listener's ticks (every quarter of
/// `header_read_timeout`, at most 1 s) rather than by a timer per request.
/// A turn's first head is due at the deadline it was given; a later one,
/// `header_read_timeout` after a tick first saw it (so up to one tick late).
struct HeadWatch {
    /// Requests finished when the head was first seen: a head of another
    /// request once this changes.
    finished: u64,
    due: Instant,
}

impl HeadWatch {
    fn new(finished: u64, due: Instant) -> HeadWatch {
        HeadWatch { finished, due }
    }

    /// Whether a head begun (bytes read since the last request finished, no
    /// request in progress) is overdue at `now`.
    fn overdue(&mut self, state: &ConnectionState, now: Instant, timeout: Duration) -> bool {
        let reading_head = state.in_flight() == 0
            && !state.write_pending.load(Ordering::Relaxed)
            && state.bytes_read.load(Ordering::Relaxed)
                > state.bytes_at_finish.load(Ordering::Relaxed);
        if !reading_head {
            return false;
        }
        let finished = state.finished.load(Ordering::Relaxed);
        if finished != self.finished {
            *self = HeadWatch::new(finished, now + timeout);
            return false;
        }
        now >= self.due
    }
}

/// How levee's own turn on an HTTP/1 connection ended.
enum SimpleEnd {
    Parked,
    ForHyper,
    HeadTimedOut,
    /// To be closed (the socket is still open).
    Close,
    Failed(Box<dyn StdError + Send + Sync>),
}

/// Read simple requests from `io` into `buf` and answer them with
/// `service`, until a request is for hyper or the connection ends.
async fn serve_simple<S, B>(
    io: &mut ClientIo,
    buf: &mut BytesMut,
    service: &S,
    closing: &AtomicBool,
    max_headers: usize,
) -> SimpleEnd
where
    S: Service<Request<ClientBody>, Response = Response<B>>,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut out = BytesMut::new();
    loop {
        let request = loop {
            if !buf.is_empty() {
                match simple_http1::parse(buf, max_headers) {
                    simple_http1::Head::Simple(request) => break request,
                    simple_http1::Head::ForHyper => return SimpleEnd::ForHyper,
                    simple_http1::Head::Partial => {}
                }
            }
            if buf.capacity() - buf.len() < READ_AT_LEAST {
                buf.reserve(READ_BUF);
            }
            match io.read_buf(buf).await {
                // The client closed (mid-head or between requests): nothing
                // to answer.
                Ok(0) => return SimpleEnd::Close,
                Ok(_) => {}
                Err(error) => return SimpleEnd::Failed(error.into()),
            }
        };
        let response = match service.call(request).await {
            Ok(response) => response,
            Err(error) => return SimpleEnd::Failed(error.into()),
        };
        match simple_http1::respond(io, response, &mut out).await {
            simple_http1::Served::KeepAlive => {}
            simple_http1::Served::Close => return SimpleEnd::Close,
            simple_http1::Served::Failed(error) => return SimpleEnd::Failed(error),
        }
        if closing.load(Ordering::Relaxed) {
            return SimpleEnd::Close;
        }
    }
}

/// A connection's service as hyper calls it: with hyper's request body.
struct FromHyper<S>(S);

impl<S> Service<Request<Incoming>> for FromHyper<S>
where
    S: Service<Request<ClientBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, request: Request<Incoming>) -> S::Future {
        self.0.call(request.map(ClientBody::from))
    }
}

/// Ask hyper to end a quiet connection without closing the socket. hyper
/// ends an idle connection at once, on the very next poll; if it does not,
/// it is still reading a request body (its response went out before the
/// body was in), and must not be reused for a request: it is closed once
/// the body is in instead. `Some` when the connection ended.
async fn park<S, B>(
    connection: &mut http1::Connection<TokioIo<ClientIo>, S>,
    state: &ConnectionState,
) -> Option<Http1End>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Unpin,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    state.parking.store(true, Ordering::Relaxed);
    Pin::new(&mut *connection).graceful_shutdown();
    let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *connection).poll(cx))).await;
    match polled {
        Poll::Ready(Ok(())) => Some(Http1End::Parked),
        Poll::Ready(Err(error)) => Some(Http1End::Failed(error.into())),
        Poll::Pending => {
            state.parking.store(false, Ordering::Relaxed);
            None
        }
    }
}

/// A snapshot of what a connection did, to tell whether anything happened
/// during a period.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Activity {
    bytes_read: u64,
    started: u64,
    finished: u64,
}

impl Activity {
    fn of(state: &ConnectionState) -> Activity {
        Activity {
            bytes_read: state.bytes_read.load(Ordering::Relaxed),
            started: state.started.load(Ordering::Relaxed),
            finished: state.finished.load(Ordering::Relaxed),
        }
    }
}

/// Answer a request head that did not arrive in time (RFC 9110 §15.5.9).
async fn send_408(io: &mut ClientIo, header_read_timeout: Duration) {
    let body = serde_json::json!({
        "error": "request timeout",
        "reason": format!(
            "the request head did not arrive within header_read_timeout ({})",
            humantime::format_duration(header_read_timeout)
        ),
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(LINGER, async {
        io.write_all(response.as_bytes()).await?;
        io.flush().await
    })
    .await;
}

/// Shut the socket down, lingering (see `io.rs`), and give up after a bound.
async fn close(io: &mut ClientIo) {
    let _ = tokio::time::timeout(LINGER * 2, io.shutdown()).await;
}
