//! Listeners: bind, accept, and serve client connections within the
//! listener's limits, then drain gracefully on shutdown.
//!
//! One file per concept:
//! - here: binding, and the accept loop of HTTP listeners (the admin
//!   listener uses it too);
//! - `acceptor.rs`: the listening socket, closed and reopened with
//!   readiness, steady when file descriptors run out;
//! - `registry.rs`: the connections a listener holds and `max_connections`
//!   (eviction of idle connections at the limit);
//! - `http.rs`: one HTTP connection from accept to close (protocol
//!   detection, header and idle timeouts, parking idle HTTP/1 connections,
//!   drain);
//! - `parked.rs`: idle HTTP/1 connections kept without a task, in an epoll
//!   set of the listener's;
//! - `io.rs`: the socket as hyper reads it (replayed bytes, activity,
//!   lingering close);
//! - `tracked.rs`: the connection's service, counting requests in and out;
//! - `limits.rs`, `metrics.rs`: the settings and the series.

mod acceptor;
mod attention;
mod http;
mod io;
mod limits;
pub mod metrics;
mod parked;
mod registry;
mod simple_http1;
mod tracked;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use futures_util::future::Either;
use hyper::service::service_fn;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use acceptor::Acceptor;
pub use limits::{ConnectionLimits, default_max_connections, descriptor_limit};
use metrics::CloseReason;
use parked::{Leaving, Parked, ParkedSet};
use registry::ConnectionState;
pub(crate) use registry::Connections;
use tracked::Tracked;

use crate::proxy::{ClientInfo, HttpProxy};
use crate::readiness::ListenerGate;
use crate::tls::ServerTls;

/// A listener's TLS termination, if it has one; a reload may replace it.
pub type ListenerTls = arc_swap::ArcSwapOption<ServerTls>;
use http::HttpConnection;

/// A socket that could not be bound: names the address and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} ({what}): {source}")]
pub struct BindError {
    /// What the socket was for, e.g. `listener "web"` or `admin`.
    pub what: String,
    /// The address asked for.
    pub address: SocketAddr,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// Bind a listening TCP socket. SO_REUSEADDR lets a restarted levee bind at
/// once even while old connections sit in TIME_WAIT.
pub fn bind(what: &str, address: SocketAddr) -> Result<TcpListener, BindError> {
    let bind = || -> std::io::Result<TcpListener> {
        let socket = if address.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(address)?;
        socket.listen(1024)
    };
    bind().map_err(|source| BindError {
        what: what.to_owned(),
        address,
        source,
    })
}

/// Accept connections on `acceptor` and proxy their requests until
/// `shutdown` turns true; then stop accepting (closing the socket) and wait
/// for open connections to finish. The caller bounds that wait; aborting
/// this task closes every connection still open.
pub(crate) async fn serve_http(
    mut acceptor: Acceptor,
    proxy: Arc<HttpProxy>,
    gate: ListenerGate,
    connections: Arc<Connections>,
    tls: Arc<ListenerTls>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
    let mut ticks = check_ticks(&connections.limits());
    // Shared by every connection's service: a connection keeps a pointer.
    let gate = Arc::new(gate);
    // Idle cleartext HTTP/1 connections, kept without a task (`parked.rs`);
    // without an epoll set of its own, each waits in its task.
    let (lot, mut parking) = mpsc::unbounded_channel();
    let mut parked = parked_set(&proxy.listener, &connections, &parking);
    loop {
        tokio::select! {
            (stream, client) = acceptor.accept() => {
                proxy.metrics().record_connection();
                let Ok((guard, evicted)) = connections.admit(true) else {
                    // Full of busy connections: closed at once, never left
                    // hanging.
                    drop(stream);
                    continue;
                };
                // Small writes must not wait for Nagle; failure only costs latency.
                let _ = stream.set_nodelay(true);
                let proxy = Arc::clone(&proxy);
                // Read per connection: a reload may have changed it.
                let tls = tls.load_full();
                let client_info = Arc::new(ClientInfo::new(client, tls.is_some()));
                let gate = Arc::clone(&gate);
                let make_service = move |state: &Arc<ConnectionState>, client_info: &Arc<ClientInfo>, http1: bool| {
                    let proxy = Arc::clone(&proxy);
                    let client_info = Arc::clone(client_info);
                    let gate = Arc::clone(&gate);
                    let state = Arc::clone(state);
                    service_fn(move |request: ::http::Request<crate::upstream::ClientBody>| {
                        let finished = tracked::begin(&state);
                        // `when_impaired = reject-*`: answered here, before the proxy.
                        match gate.reject(request.method()) {
                            Some(response) => Either::Left(std::future::ready(Ok::<_, Infallible>(
                                tracked::respond(response, finished, http1),
                            ))),
                            // The proxy's own future, not one wrapping it
                            // (a wrapper doubled its size), boxed: copied
                            // once into the box instead of twice more into
                            // the connection's turn (bench/instructions.sh
                            // 21,658 -> 21,520 per request).
                            None => Either::Right(Box::pin(Arc::clone(&proxy).handle(
                                request,
                                Arc::clone(&client_info),
                                move |response| Ok(tracked::respond(response, finished, http1)),
                            ))),
                        }
                    })
                };
                let connection = HttpConnection {
                    guard,
                    // Read per connection: a reload may have changed them.
                    limits: connections.shared_limits(),
                    make_service,
                    accepted: Instant::now(),
                    tls,
                    lot: parked.is_some().then(|| lot.clone()),
                };
                tasks.spawn(connection.serve(stream, client_info));
                // Evicted while parked: no task of its own to close it.
                if let Some(left) = evicted.and_then(|id| parked.as_mut()?.take(id)) {
                    tasks.spawn(left.connection.close_parked(left.socket, None));
                }
            }
            Some(idle) = parking.recv() => {
                if idle.connection.told_to_close() {
                    // Evicted on its way here (the eviction found it in
                    // neither its task nor the set).
                    tasks.spawn(idle.connection.close_parked(idle.socket, None));
                } else if let Some(set) = parked.as_mut() {
                    if let Err((idle, error)) = set.park(idle) {
                        tracing::debug!(%error, "an idle connection could not be parked; closing it");
                        tasks.spawn(idle.connection.close_parked(idle.socket, None));
                    }
                }
            }
            (left, why) = next_parked(&mut parked) => {
                tasks.spawn(match why {
                    Leaving::Readable => Either::Left(left.connection.resume(left.socket)),
                    Leaving::IdleTimeout => Either::Right(
                        left.connection.close_parked(left.socket, Some(CloseReason::IdleTimeout)),
                    ),
                });
            }
            // Reap finished connections so the set does not grow.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = ticks.tick() => connections.tick(),
            () = stop_requested(&mut shutdown) => break,
        }
    }
    drop(acceptor);
    // Tells whoever stopped us that the socket is closed.
    drop(shutdown);
    tracing::info!(listener = %proxy.listener, connections = connections.open(), "stopped accepting; draining");
    // Parked connections close at once; one that parks while the others
    // drain is closed as it arrives.
    for left in parked.as_mut().map(ParkedSet::take_all).unwrap_or_default() {
        tasks.spawn(left.connection.close_parked(left.socket, None));
    }
    drain(&connections, &mut tasks, &mut parking, |left| {
        left.connection.close_parked(left.socket, None)
    })
    .await;
}

/// The listener's set of parked connections, of the type its channel
/// carries; `None` (each idle connection waits in its own task) if the
/// system gives no epoll descriptor.
fn parked_set<C>(
    listener: &str,
    connections: &Connections,
    _channel: &mpsc::UnboundedReceiver<Parked<C>>,
) -> Option<ParkedSet<C>> {
    ParkedSet::new(connections.metrics().parked())
        .inspect_err(|error| {
            tracing::warn!(%listener, %error, "idle connections wait in their own tasks: no epoll set for them");
        })
        .ok()
}

/// The next parked connection to leave its set (never, without a set).
async fn next_parked<C>(parked: &mut Option<ParkedSet<C>>) -> (Parked<C>, Leaving) {
    match parked {
        Some(set) => set.next().await,
        None => std::future::pending().await,
    }
}

/// Tell every connection that shutdown has begun, and wait for them all,
/// checking them often so that idle ones close soon. A connection handed
/// over to be parked meanwhile (`handoffs`) is closed by `close`.
async fn drain<T, C>(
    connections: &Connections,
    tasks: &mut JoinSet<()>,
    handoffs: &mut mpsc::UnboundedReceiver<T>,
    close: impl Fn(T) -> C,
) where
    C: Future<Output = ()> + Send + 'static,
{
    connections.drain();
    let mut ticks = tokio::time::interval_at(Instant::now() + http::DRAIN_QUIET, http::DRAIN_QUIET);
    loop {
        tokio::select! {
            joined = tasks.join_next() => if joined.is_none() {
                // Every task has ended: nothing more can be handed over.
                match handoffs.try_recv() {
                    Ok(left) => { tasks.spawn(close(left)); }
                    Err(_) => return,
                }
            },
            Some(left) = handoffs.recv() => { tasks.spawn(close(left)); }
            _ = ticks.tick() => connections.tick(),
        }
    }
}

/// The periodic check of a listener's connections (`attention.rs`).
fn check_ticks(limits: &ConnectionLimits) -> tokio::time::Interval {
    let period = limits.park_after();
    let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

/// Serve the admin API on its own listener, within its own limits, until
/// `shutdown`.
pub(crate) async fn serve_admin(
    mut acceptor: Acceptor,
    router: Router,
    connections: Arc<Connections>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = Arc::new(ConnectionLimits::admin());
    let mut tasks = JoinSet::new();
    let mut ticks = check_ticks(&limits);
    loop {
        tokio::select! {
            (stream, client) = acceptor.accept() => {
                let Ok((guard, _)) = connections.admit(true) else {
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let connection = HttpConnection {
                    guard,
                    limits: Arc::clone(&limits),
                    make_service: move |state: &Arc<ConnectionState>, _: &Arc<ClientInfo>, http1| {
                        Tracked::new(TowerToHyperService::new(router.clone()), Arc::clone(state), http1)
                    },
                    accepted: Instant::now(),
                    tls: None,
                    // At most a few dozen: each waits in its task.
                    lot: None,
                };
                tasks.spawn(connection.serve(stream, Arc::new(ClientInfo::new(client, false))));
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = ticks.tick() => connections.tick(),
            () = stop_requested(&mut shutdown) => break,
        }
    }
    drop(acceptor);
    // Nothing is parked on the admin listener: no handoffs.
    let (_, mut handoffs) = mpsc::unbounded_channel::<()>();
    drain(&connections, &mut tasks, &mut handoffs, |()| async {}).await;
}

/// Resolves once shutdown is requested (or the gateway is gone).
pub(crate) async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it before returning.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}
