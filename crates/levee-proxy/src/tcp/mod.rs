//! TCP (L4) listeners: each client connection is relayed byte for byte to
//! one endpoint of the cluster (SSH, git, databases).
//!
//! One file per concept:
//! - here: the accept loop and its drain, [`TcpProxy`] and what a session
//!   can end as;
//! - `session.rs`: one client connection: pick an endpoint, connect (moving
//!   on after connect failures), relay;
//! - `replay.rs`: replay mode, while the endpoint has sent nothing back:
//!   the kept client bytes and the wait for the endpoint's first byte.
//!
//! The rule that decides when a connection may move (DESIGN, capability 4):
//! a connect failure always may; an endpoint that closes before sending
//! anything may, in replay mode, if the client's bytes so far were kept;
//! once any endpoint byte has reached the client, never.

pub mod metrics;
mod replay;
mod session;

pub use metrics::{ReconnectReason, SessionOutcome, TcpListenerMetrics};

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;

use arc_swap::ArcSwap;
use levee_core::retry::LatencyQuantile;
use parking_lot::Mutex;

use crate::config::{FirstByteTimeout, ListenerSettings};
use crate::listener::{Acceptor, Connections, ListenerTls, stop_requested};
use crate::metrics::ListenerMetrics;
use crate::route::Route;
use crate::tls::Stream;

/// The window of the times to first byte that an adaptive
/// `first_byte_timeout` follows.
const FIRST_BYTE_WINDOW: Duration = Duration::from_secs(60);

/// The shortest wait before a tcp session hedges: below it a fast
/// cluster would be hedged on every hiccup, doubling its connections.
const HEDGE_FLOOR: Duration = Duration::from_millis(50);
/// The longest wait before a tcp session hedges.
const HEDGE_CEILING: Duration = Duration::from_secs(2);

/// Forwards one `tcp` listener's connections to its cluster.
pub struct TcpProxy {
    /// Listener name (logs, metrics).
    pub listener: String,
    /// Replaced by a config reload; a session keeps the one it started on.
    route: ArcSwap<Route>,
    /// Connections accepted (shared with HTTP listeners' series).
    metrics: ListenerMetrics,
    /// Sessions by outcome, reconnects by reason.
    tcp_metrics: TcpListenerMetrics,
    /// Most client bytes kept for replay; 0: replay off.
    replay_limit: usize,
    /// In replay mode, how long an endpoint may stay silent before the
    /// session moves on; `None`: as long as the client waits.
    first_byte_timeout: Option<FirstByteTimeout>,
    /// Times to first byte over the last minute (the adaptive deadline,
    /// the hedging delay).
    first_bytes: Mutex<LatencyQuantile>,
    /// `tcp_hedge`: a session whose endpoint is slower than usual also goes
    /// to a second endpoint.
    hedge: bool,
    /// Replay only sessions whose first bytes begin with one of these (or
    /// that sent nothing yet); empty: any session.
    replay_first_bytes_match: Vec<Vec<u8>>,
}

impl TcpProxy {
    /// A proxy from the listener `settings` to `route`'s cluster.
    pub fn new(
        settings: &ListenerSettings,
        route: Arc<Route>,
        metrics: (ListenerMetrics, TcpListenerMetrics),
    ) -> TcpProxy {
        let (metrics, tcp_metrics) = metrics;
        TcpProxy {
            listener: settings.name.clone(),
            route: ArcSwap::new(route),
            metrics,
            tcp_metrics,
            replay_limit: usize::try_from(settings.tcp_replay).unwrap_or(usize::MAX),
            first_byte_timeout: settings.first_byte_timeout,
            hedge: settings.tcp_hedge,
            first_bytes: Mutex::new(
                LatencyQuantile::new(FIRST_BYTE_WINDOW, Instant::now())
                    .unwrap_or_else(|_| unreachable!("the window is not zero")),
            ),
            replay_first_bytes_match: settings.replay_first_bytes_match.clone(),
        }
    }

    /// How long an endpoint may stay silent after the connect; `None`: as
    /// long as the client waits.
    fn first_byte_deadline(&self) -> Option<Duration> {
        match self.first_byte_timeout? {
            FirstByteTimeout::Fixed(timeout) => Some(timeout),
            FirstByteTimeout::Adaptive { floor, ceiling } => {
                let p99 = self.first_bytes.lock().quantile(0.99, Instant::now());
                let deadline = p99.map(|p99| p99 * FirstByteTimeout::P99_MULTIPLE);
                Some(deadline.map_or(ceiling, |deadline| deadline.max(floor).min(ceiling)))
            }
        }
    }

    /// How long an endpoint may be silent before a second one gets the
    /// session's bytes too: the listener's p95 time to first byte, within
    /// [`HEDGE_FLOOR`, `HEDGE_CEILING`] (the ceiling until 20 sessions
    /// are measured). `None` without `tcp_hedge`.
    fn hedge_delay(&self) -> Option<Duration> {
        if !self.hedges() {
            return None;
        }
        let p95 = self.first_bytes.lock().p95(Instant::now());
        Some(levee_core::retry::hedge_delay(
            p95,
            HEDGE_FLOOR,
            HEDGE_CEILING,
        ))
    }

    /// Whether its sessions may hedge (`tcp_hedge`).
    fn hedges(&self) -> bool {
        self.hedge
    }

    /// An endpoint's first byte came this long after the connect.
    fn record_first_byte(&self, latency: Duration) {
        self.tcp_metrics.record_first_byte(latency.as_secs_f64());
        if self.hedge
            || matches!(
                self.first_byte_timeout,
                Some(FirstByteTimeout::Adaptive { .. })
            )
        {
            self.first_bytes.lock().record(latency, Instant::now());
        }
    }

    /// Whether a session that sent `kept` (all of it kept) may go to another
    /// endpoint with it.
    fn may_replay(&self, kept: &[u8]) -> bool {
        self.replay_first_bytes_match.is_empty()
            || kept.is_empty()
            || self
                .replay_first_bytes_match
                .iter()
                .any(|pattern| begins_with(kept, pattern))
    }
}

/// Whether `bytes` begin with `pattern`, where `?` in the pattern stands
/// for any one byte (git's pkt-line starts with a 4-digit length:
/// `????git-upload-pack`).
fn begins_with(bytes: &[u8], pattern: &[u8]) -> bool {
    bytes.len() >= pattern.len()
        && pattern
            .iter()
            .zip(bytes)
            .all(|(want, got)| *want == b'?' || want == got)
}

impl TcpProxy {
    /// The cluster new sessions go to, and its stages (the retry budget
    /// hedges spend).
    pub fn route(&self) -> Arc<Route> {
        self.route.load_full()
    }

    /// Send new sessions to `route`'s cluster (a config reload).
    pub fn set_route(&self, route: Arc<Route>) {
        self.route.store(route);
    }
}

/// Accept connections on `listener` and relay each to an endpoint until
/// `shutdown` turns true; then stop accepting (closing the socket) and wait
/// for open sessions to end. The caller bounds that wait; aborting this task
/// drops every session still open, closing its sockets.
pub(crate) async fn serve_tcp(
    mut acceptor: Acceptor,
    proxy: Arc<TcpProxy>,
    connections: Arc<Connections>,
    tls: Arc<ListenerTls>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Sessions live in this set, not in detached tasks, so that a drain
    // that times out cuts them when this task is aborted.
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            (stream, client) = acceptor.accept() => {
                proxy.metrics.record_connection();
                // A session is never idle in the HTTP sense: at the limit
                // the new connection is closed at once.
                let Ok((guard, _)) = connections.admit(false) else {
                    drop(stream);
                    continue;
                };
                // Interactive protocols (SSH) must not wait for Nagle;
                // failure only costs latency.
                let _ = stream.set_nodelay(true);
                let proxy = Arc::clone(&proxy);
                // Read per connection: a reload may have changed it.
                let tls = tls.load_full();
                sessions.spawn(async move {
                    let stream = match tls {
                        None => Some(Stream::Plain(stream)),
                        Some(tls) => {
                            let accepted = Instant::now();
                            // No deadline but the handshake's own.
                            tls.handshake(stream, accepted, accepted + tls.settings().handshake_timeout).await
                        }
                    };
                    if let Some(stream) = stream {
                        session::serve(&proxy, stream, client).await;
                    }
                    drop(guard);
                });
            }
            // Reap finished sessions so the set does not grow.
            Some(joined) = sessions.join_next(), if !sessions.is_empty() => {
                report_panic(&proxy, joined);
            }
            () = stop_requested(&mut shutdown) => break,
        }
    }
    drop(acceptor);
    // Tells whoever stopped us that the socket is closed.
    drop(shutdown);
    tracing::info!(listener = %proxy.listener, sessions = sessions.len(), "stopped accepting; draining");
    while let Some(joined) = sessions.join_next().await {
        report_panic(&proxy, joined);
    }
}

fn report_panic<T>(proxy: &TcpProxy, joined: Result<T, JoinError>) {
    if let Err(error) = joined {
        if error.is_panic() {
            tracing::error!(listener = %proxy.listener, %error, "tcp session panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::begins_with;

    #[test]
    fn a_question_mark_stands_for_any_byte() {
        let read = b"0032git-upload-pack /repo.git\0host=x\0";
        let write = b"0033git-receive-pack /repo.git\0host=x\0";
        assert!(begins_with(read, b"????git-upload-pack"));
        assert!(!begins_with(write, b"????git-upload-pack"));
        assert!(begins_with(b"SSH-2.0-OpenSSH", b"SSH-2.0-"));
        assert!(!begins_with(b"SSH", b"SSH-2.0-"), "too short to tell");
    }
}
