//! One client connection of a `tcp` listener, in one straight line:
//! pick an endpoint → connect (a failure moves to an untried endpoint) →
//! in replay mode, wait for the endpoint's first byte (a close before it,
//! or silence past `first_byte_timeout`, moves too, replaying the client's
//! bytes) → relay both ways until the
//! ends close. Every attempt's outcome is recorded on the cluster, so health
//! and outlier detection learn from TCP traffic as they do from HTTP.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::tls::Stream;
use levee_core::{EndpointId, FailureKind, Outcome};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::replay::{self, Buffers, FirstByte, ReplayBuffer};
use super::{ReconnectReason, SessionOutcome, TcpProxy};
use crate::cluster::Cluster;
use crate::proxy::InFlight;

/// Size of each buffer of the replay wait (the relay that follows has its
/// own, in `copy_bidirectional`).
const REPLAY_READ_BUFFER: usize = 16 * 1024;

/// Serve the client connection `client` from `peer`, count how it ended,
/// and return that.
pub(super) async fn serve(proxy: &TcpProxy, client: Stream, peer: SocketAddr) -> SessionOutcome {
    // The session stays with the cluster it started on, whatever a reload
    // does meanwhile.
    let cluster = proxy.cluster();
    let mut session = Session {
        proxy,
        cluster: Arc::clone(&cluster),
        peer,
        tried: Vec::new(),
        // The cluster's `retry.max_attempts`, as for HTTP: a failing cluster
        // sees at most this many connects per client connection.
        max_attempts: usize::try_from(cluster.settings.retry.policy.max_attempts()).unwrap_or(1),
        failures: Vec::new(),
    };
    let outcome = match session.connect(None).await {
        Err(outcome) => outcome,
        Ok(upstream) if proxy.replay_limit == 0 => {
            session.served(&upstream);
            session.relay(client, upstream, false).await;
            SessionOutcome::Served
        }
        Ok(upstream) => session.serve_replaying(client, upstream).await,
    };
    if matches!(
        outcome,
        SessionOutcome::NoEndpoint | SessionOutcome::AllFailed
    ) {
        // Dropping the client stream closes it: all a TCP proxy can say.
        tracing::debug!(
            listener = %proxy.listener,
            client = %peer,
            cluster = %cluster.name,
            %outcome,
            failures = ?session.failures,
            "tcp connection closed: no endpoint took it"
        );
    } else if outcome == SessionOutcome::NotReplayed {
        tracing::debug!(
            listener = %proxy.listener,
            client = %peer,
            cluster = %cluster.name,
            failures = ?session.failures,
            "tcp connection closed: its endpoint closed before answering, and its first bytes do not match replay_first_bytes_match"
        );
    }
    proxy.tcp_metrics.record_session(outcome);
    outcome
}

/// The state of one client connection.
struct Session<'p> {
    proxy: &'p TcpProxy,
    /// The cluster the session started on.
    cluster: Arc<Cluster>,
    peer: SocketAddr,
    /// Endpoints tried so far, in order: a move goes to one not in here.
    tried: Vec<EndpointId>,
    /// Most attempts (connects) in all.
    max_attempts: usize,
    /// `endpoint: kind (detail)` of each failed attempt, for the log line.
    failures: Vec<String>,
}

/// An open connection to an endpoint, counted in flight while it lives.
struct Upstream {
    id: EndpointId,
    stream: Stream,
    /// How long the connect took: the latency this endpoint is judged by.
    connect_latency: Duration,
    /// When the connection opened.
    connected_at: Instant,
    _in_flight: InFlight,
}

impl Session<'_> {
    /// Connect to the first endpoint that accepts, trying untried ones
    /// after a failure, within the attempt bound. `moving` says why the
    /// session is leaving an endpoint it had (for the reconnect count).
    async fn connect(
        &mut self,
        mut moving: Option<ReconnectReason>,
    ) -> Result<Upstream, SessionOutcome> {
        let cluster = Arc::clone(&self.cluster);
        loop {
            if self.tried.len() >= self.max_attempts {
                return Err(SessionOutcome::AllFailed);
            }
            let now = Instant::now();
            let picked = if self.tried.is_empty() {
                cluster.pick(now)
            } else {
                cluster.pick_other(now, &self.tried)
            };
            let Some(id) = picked else {
                return Err(if self.tried.is_empty() {
                    SessionOutcome::NoEndpoint
                } else {
                    SessionOutcome::AllFailed
                });
            };
            let endpoint = cluster.endpoint(id);
            if let Some(reason) = moving.take() {
                self.proxy.tcp_metrics.record_reconnect(reason);
                tracing::debug!(
                    listener = %self.proxy.listener,
                    client = %self.peer,
                    %reason,
                    after = self.failures.last().map(String::as_str).unwrap_or_default(),
                    to = %endpoint.address,
                    attempt = self.tried.len() + 1,
                    "tcp connection moving to another endpoint"
                );
            }
            self.tried.push(id);
            let in_flight = InFlight::start(&cluster, id);
            let started = Instant::now();
            match endpoint.pool.open_stream().await {
                Ok(stream) => {
                    let connected_at = Instant::now();
                    return Ok(Upstream {
                        id,
                        stream,
                        connect_latency: connected_at.saturating_duration_since(started),
                        connected_at,
                        _in_flight: in_flight,
                    });
                }
                Err(error) => {
                    self.failed(id, error.kind(), started, &error);
                    moving = Some(ReconnectReason::ConnectFailed);
                }
            }
        }
    }

    /// Replay mode: forward and keep the client's bytes until an endpoint
    /// answers; an endpoint that closes before that is replaced by an
    /// untried one, which gets the kept bytes first.
    async fn serve_replaying(
        &mut self,
        mut client: Stream,
        mut upstream: Upstream,
    ) -> SessionOutcome {
        let mut replay = ReplayBuffer::new(self.proxy.replay_limit);
        let mut buffers = Buffers::new(REPLAY_READ_BUFFER);
        let mut client_done = false;
        // The first-byte deadline of the current endpoint; dropped when no
        // other endpoint can take the session (better this one late than
        // none).
        let mut deadline = self
            .proxy
            .first_byte_deadline()
            .map(|timeout| upstream.connected_at + timeout);
        // Whether `upstream` is new and must first get the kept bytes.
        let mut fresh = true;
        loop {
            let resent = if fresh {
                replay::resend(&mut upstream.stream, &replay, client_done).await
            } else {
                Ok(())
            };
            fresh = false;
            let waited = match resent {
                Ok(()) => {
                    replay::until_first_byte(
                        &mut client,
                        &mut upstream.stream,
                        &mut replay,
                        &mut client_done,
                        &mut buffers,
                        deadline,
                    )
                    .await
                }
                Err(error) => FirstByte::ClosedBeforeAnswer(error),
            };
            match waited {
                FirstByte::Answered(read) => {
                    self.proxy
                        .record_first_byte(upstream.connected_at.elapsed());
                    self.served(&upstream);
                    // From here on the client has heard this endpoint: never move.
                    if let Err(error) = client.write_all(&buffers.first[..read]).await {
                        self.ended(Err(error));
                        return SessionOutcome::Served;
                    }
                    self.relay(client, upstream, client_done).await;
                    return SessionOutcome::Served;
                }
                FirstByte::Overflowed(pending) => {
                    // Too much to replay: from here on a plain relay, as
                    // with replay off.
                    self.served(&upstream);
                    if let Err(error) = upstream
                        .stream
                        .write_all(&buffers.from_client[..pending])
                        .await
                    {
                        self.ended(Err(error));
                        return SessionOutcome::Served;
                    }
                    self.relay(client, upstream, client_done).await;
                    return SessionOutcome::Served;
                }
                FirstByte::Finished => {
                    self.served(&upstream);
                    self.ended(client.shutdown().await.map(|()| (0, 0)));
                    return SessionOutcome::Served;
                }
                FirstByte::ClientGone(error) => {
                    tracing::debug!(listener = %self.proxy.listener, client = %self.peer, %error, "tcp client left before the endpoint answered");
                    return SessionOutcome::ClientGone;
                }
                FirstByte::TimedOut
                    if !self.proxy.may_replay(replay.bytes().unwrap_or_default()) =>
                {
                    // Not a session the listener lets move: wait on.
                    tracing::debug!(listener = %self.proxy.listener, client = %self.peer, "endpoint silent past first_byte_timeout; staying: the first bytes do not match replay_first_bytes_match");
                    deadline = None;
                }
                FirstByte::TimedOut => {
                    // A replay only if every byte the client sent is still
                    // kept (`until_first_byte` ends the wait otherwise).
                    match self.connect(Some(ReconnectReason::FirstByteTimeout)).await {
                        Ok(next) => {
                            let silent = io::Error::new(
                                io::ErrorKind::TimedOut,
                                "sent nothing within first_byte_timeout",
                            );
                            self.failed(
                                upstream.id,
                                FailureKind::Timeout,
                                upstream.connected_at,
                                &silent,
                            );
                            drop(upstream);
                            upstream = next;
                            fresh = true;
                            deadline = self
                                .proxy
                                .first_byte_deadline()
                                .map(|timeout| upstream.connected_at + timeout);
                        }
                        Err(_) => {
                            tracing::debug!(listener = %self.proxy.listener, client = %self.peer, "no other endpoint for a silent one; waiting on it");
                            deadline = None;
                        }
                    }
                }
                FirstByte::ClosedBeforeAnswer(error) => {
                    self.failed(
                        upstream.id,
                        FailureKind::ResetBeforeResponse,
                        upstream.connected_at,
                        &error,
                    );
                    if !self.proxy.may_replay(replay.bytes().unwrap_or_default()) {
                        // Not a session the listener lets move: the client
                        // sees the close, as without replay.
                        return SessionOutcome::NotReplayed;
                    }
                    // Ends its in-flight count before the next one starts.
                    drop(upstream);
                    upstream = match self
                        .connect(Some(ReconnectReason::ClosedBeforeAnswer))
                        .await
                    {
                        Ok(next) => next,
                        Err(outcome) => return outcome,
                    };
                    fresh = true;
                }
            }
        }
    }

    /// Relay both ways until both directions have ended; a direction's end
    /// is forwarded as a half-close.
    async fn relay(&self, mut client: Stream, mut upstream: Upstream, client_done: bool) {
        let relayed = if client_done {
            // The client's half-close was forwarded already; only the way
            // back is left.
            async {
                let copied = tokio::io::copy(&mut upstream.stream, &mut client).await?;
                client.shutdown().await?;
                Ok((0, copied))
            }
            .await
        } else {
            tokio::io::copy_bidirectional(&mut client, &mut upstream.stream).await
        };
        // A failure here cannot be pinned on either side (copy_bidirectional
        // does not say which one broke), so it feeds no outcome.
        self.ended(relayed);
    }

    /// Log how the relay ended.
    fn ended(&self, relayed: io::Result<(u64, u64)>) {
        match relayed {
            Ok((to_endpoint, to_client)) => {
                tracing::debug!(listener = %self.proxy.listener, client = %self.peer, to_endpoint, to_client, "tcp connection ended");
            }
            Err(error) => {
                tracing::debug!(listener = %self.proxy.listener, client = %self.peer, %error, "tcp connection ended with an error");
            }
        }
    }

    /// The endpoint served the connection: tell health and outlier
    /// detection.
    fn served(&self, upstream: &Upstream) {
        // TCP has no status: 200 stands for "the endpoint served the
        // connection". The latency is the connect's: the time to the first
        // byte would include the client's own think time in protocols where
        // the client speaks first, and judge endpoints by their clients.
        let outcome = Outcome::response(upstream.id, 200, upstream.connect_latency);
        self.cluster.record(&outcome, Instant::now());
    }

    /// An attempt failed: record it (the cluster logs it too) and remember
    /// why for the session's own log line.
    fn failed(
        &mut self,
        id: EndpointId,
        kind: FailureKind,
        since: Instant,
        error: &dyn std::fmt::Display,
    ) {
        let now = Instant::now();
        let outcome = Outcome::failure(id, kind, now.saturating_duration_since(since));
        self.cluster.record(&outcome, now);
        let address = &self.cluster.endpoint(id).address;
        self.failures.push(format!("{address}: {kind} ({error})"));
    }
}
