//! Taking connections off a listening socket: closed and reopened with the
//! node's readiness (`when_impaired = close`), and steady when the process
//! runs out of file descriptors.
//!
//! Out of descriptors, `accept` fails with EMFILE while the connection stays
//! in the kernel's queue, and the socket stays readable: a naive loop spins
//! and logs for every try, and the clients wait in the queue for nothing.
//! levee keeps one descriptor in reserve; when accept fails for want of
//! one, it gives the reserve up, accepts the waiting connection and closes
//! it at once (the client learns at once, instead of hanging), then takes
//! the reserve back. The burst is logged once when it starts and once when
//! it ends.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::bind;
use super::metrics::{CloseReason, ConnectionMetrics};
use crate::events::{EventLog, NewEvent, Severity};
use crate::readiness::ListenerGate;

/// Pause between attempts to bind a socket again after recovery.
const REBIND_RETRY: Duration = Duration::from_secs(1);
/// Longest pause after an accept error other than running out of
/// descriptors (the pause doubles from 1 ms).
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// A listening socket that follows its gate, if it has one: with
/// `when_impaired = close` it is closed while the node is impaired (new
/// connections are refused, open ones finish) and bound again on recovery.
pub struct Acceptor {
    /// Listener name (logs, events).
    name: String,
    socket: Option<TcpListener>,
    /// The address actually bound, so a port 0 listener reopens on the same
    /// port.
    address: SocketAddr,
    /// `None` for the admin listener, which never closes.
    gate: Option<ListenerGate>,
    open: Gauge,
    /// A descriptor held back to make room for one accept when the process
    /// is out of them.
    reserve: Option<File>,
    /// Accept failures in the current burst, and since when.
    failing: Option<(u64, Instant)>,
    metrics: ConnectionMetrics,
    events: Arc<EventLog>,
}

impl Acceptor {
    /// Accept on `socket` (listener `name`) under `gate`.
    pub fn new(
        name: &str,
        socket: TcpListener,
        gate: Option<ListenerGate>,
        open: Gauge,
        metrics: ConnectionMetrics,
        events: Arc<EventLog>,
    ) -> io::Result<Acceptor> {
        open.set(1);
        Ok(Acceptor {
            name: name.to_owned(),
            address: socket.local_addr()?,
            socket: Some(socket),
            gate,
            open,
            reserve: File::open("/dev/null").ok(),
            failing: None,
            metrics,
            events,
        })
    }

    /// The next connection. While closed, waits for recovery; accept errors
    /// are handled here (see the module comment). Cancel-safe: the open or
    /// closed state lives in `self`.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        let mut backoff = Duration::from_millis(1);
        loop {
            match self.next().await {
                Ok(accepted) => {
                    self.recovered();
                    return accepted;
                }
                Err(error) => {
                    if is_transient(&error) {
                        // The client gave up before it was accepted: its
                        // problem, not the listener's.
                        continue;
                    }
                    self.failed(&error);
                    if is_out_of_descriptors(&error) && self.shed_one().await {
                        continue;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn next(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        loop {
            let Acceptor {
                name,
                socket,
                address,
                gate,
                open,
                ..
            } = self;
            match (socket.as_ref(), gate.as_mut()) {
                (Some(listening), None) => return listening.accept().await,
                (Some(listening), Some(gate)) => {
                    tokio::select! {
                        accepted = listening.accept() => return accepted,
                        () = gate.until_close() => {
                            *socket = None;
                            open.set(0);
                            tracing::error!(listener = %name, %address, "node impaired: listening socket closed (when_impaired = close)");
                        }
                    }
                }
                (None, gate) => {
                    if let Some(gate) = gate {
                        gate.until_open().await;
                    }
                    match bind(&format!("listener {name:?}"), *address) {
                        Ok(listening) => {
                            *socket = Some(listening);
                            open.set(1);
                            tracing::info!(listener = %name, %address, "node recovered: listening again");
                        }
                        Err(error) => {
                            tracing::error!(listener = %name, %error, "cannot reopen listener; retrying");
                            tokio::time::sleep(REBIND_RETRY).await;
                        }
                    }
                }
            }
        }
    }

    /// Out of descriptors: free the reserve, accept the waiting connection
    /// and close it at once, take the reserve back. False when there was no
    /// reserve to give (then the caller backs off).
    async fn shed_one(&mut self) -> bool {
        let Some(reserve) = self.reserve.take() else {
            self.reserve = File::open("/dev/null").ok();
            return false;
        };
        drop(reserve);
        let shed = match &self.socket {
            Some(listening) => {
                // Readable a moment ago; never wait here.
                tokio::time::timeout(Duration::from_millis(1), listening.accept())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            None => None,
        };
        if shed.is_some() {
            self.metrics.record_close(CloseReason::OutOfDescriptors);
        }
        drop(shed);
        self.reserve = File::open("/dev/null").ok();
        self.reserve.is_some()
    }

    fn failed(&mut self, error: &io::Error) {
        match &mut self.failing {
            Some((count, _)) => *count += 1,
            None => {
                self.failing = Some((1, Instant::now()));
                let reason = if is_out_of_descriptors(error) {
                    format!(
                        "listener {:?} cannot accept: {error}; new connections are closed at once until descriptors are free (raise the file descriptor limit, or lower max_connections)",
                        self.name
                    )
                } else {
                    format!(
                        "listener {:?} cannot accept: {error}; retrying with back-off",
                        self.name
                    )
                };
                self.events.record(NewEvent {
                    kind: "listener-limit",
                    cluster: String::new(),
                    endpoint: None,
                    from: "accepting".to_owned(),
                    to: "accept-failing".to_owned(),
                    reason,
                    severity: Severity::Error,
                });
            }
        }
    }

    fn recovered(&mut self) {
        if let Some((count, since)) = self.failing.take() {
            self.events.record(NewEvent {
                kind: "listener-limit",
                cluster: String::new(),
                endpoint: None,
                from: "accept-failing".to_owned(),
                to: "accepting".to_owned(),
                reason: format!(
                    "listener {:?} accepts again after {count} failed accepts over {}",
                    self.name,
                    humantime::format_duration(Duration::from_millis(
                        u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
                    ))
                ),
                severity: Severity::Info,
            });
            if self.reserve.is_none() {
                self.reserve = File::open("/dev/null").ok();
            }
        }
    }
}

/// The process or the system has no descriptor left for the connection.
fn is_out_of_descriptors(error: &io::Error) -> bool {
    // EMFILE (24) and ENFILE (23) on Linux; std has no ErrorKind for them.
    matches!(error.raw_os_error(), Some(23 | 24))
}

/// Errors that concern one connection only (it was reset while queued).
fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
