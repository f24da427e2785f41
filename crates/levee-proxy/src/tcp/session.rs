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

use super::replay::{self, Buffers, FirstByte, ReplayBuffer, Timers};
use super::{ReconnectReason, SessionOutcome, TcpProxy};
use crate::cluster::Cluster;
use crate::proxy::InFlight;
use crate::proxy::retries::RetryState;

/// Size of each buffer of the replay wait (the relay that follows has its
/// own, in `copy_bidirectional`).
const REPLAY_READ_BUFFER: usize = 16 * 1024;

/// Serve the client connection `client` from `peer`, count how it ended,
/// and return that.
pub(super) async fn serve(proxy: &TcpProxy, client: Stream, peer: SocketAddr) -> SessionOutcome {
    // The session stays with the cluster it started on, whatever a reload
    // does meanwhile.
    let route = proxy.route();
    let cluster = Arc::clone(&route.cluster);
    if proxy.hedges() {
        // Sessions count towards the budget that hedges spend.
        route.retries.record_request(Instant::now());
    }
    let mut session = Session {
        proxy,
        cluster: Arc::clone(&cluster),
        retries: Arc::clone(&route.retries),
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
    /// Its retry budget, which hedges spend.
    retries: Arc<RetryState>,
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
    /// untried one, which gets the kept bytes first. With `tcp_hedge`, an
    /// endpoint slower than the listener's p95 gets company: a second
    /// endpoint receives the kept bytes too, and the first to answer keeps
    /// the session (the other is closed without a verdict: slower is not
    /// broken).
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
        // When to hedge; once per session at most.
        let mut hedge_at = self
            .proxy
            .hedge_delay()
            .map(|delay| upstream.connected_at + delay);
        let mut hedge: Option<Upstream> = None;
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
                        hedge.as_mut().map(|hedge| &mut hedge.stream),
                        &mut replay,
                        &mut client_done,
                        &mut buffers,
                        Timers { deadline, hedge_at },
                    )
                    .await
                }
                Err(error) => FirstByte::ClosedBeforeAnswer(error),
            };
            match waited {
                FirstByte::Answered(read) => {
                    // The hedge, if any, lost: closed as it drops.
                    drop(hedge);
                    return self
                        .answered(client, upstream, &buffers.first[..read], client_done)
                        .await;
                }
                FirstByte::HedgeAnswered(read) => {
                    let Some(winner) = hedge.take() else {
                        continue;
                    };
                    drop(upstream);
                    return self
                        .answered(client, winner, &buffers.hedge_first[..read], client_done)
                        .await;
                }
                FirstByte::HedgeDue => {
                    hedge_at = None;
                    let kept = replay.bytes();
                    let may = kept.is_some_and(|kept| self.proxy.may_replay(kept));
                    if may && self.retries.try_spend(Instant::now()) {
                        if let Ok(mut second) = self.connect(Some(ReconnectReason::Hedge)).await {
                            match replay::resend(&mut second.stream, &replay, client_done).await {
                                Ok(()) => {
                                    buffers.hedge_first.resize(REPLAY_READ_BUFFER, 0);
                                    hedge = Some(second);
                                }
                                Err(error) => {
                                    self.failed(
                                        second.id,
                                        FailureKind::ResetBeforeResponse,
                                        second.connected_at,
                                        &error,
                                    );
                                }
                            }
                        }
                    }
                }
                FirstByte::HedgeClosed(error) => {
                    if let Some(lost) = hedge.take() {
                        self.failed(
                            lost.id,
                            FailureKind::ResetBeforeResponse,
                            lost.connected_at,
                            &error,
                        );
                    }
                }
                FirstByte::Overflowed(pending) => {
                    // Too much to replay: from here on a plain relay, as
                    // with replay off (a hedge cannot follow).
                    drop(hedge);
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
                    let silent = io::Error::new(
                        io::ErrorKind::TimedOut,
                        "sent nothing within first_byte_timeout",
                    );
                    // A running hedge takes over (it has every kept byte).
                    if let Some(second) = hedge.take() {
                        self.failed(
                            upstream.id,
                            FailureKind::Timeout,
                            upstream.connected_at,
                            &silent,
                        );
                        deadline = self
                            .proxy
                            .first_byte_deadline()
                            .map(|timeout| second.connected_at + timeout);
                        upstream = second;
                        continue;
                    }
                    // A replay only if every byte the client sent is still
                    // kept (`until_first_byte` ends the wait otherwise).
                    match self.connect(Some(ReconnectReason::FirstByteTimeout)).await {
                        Ok(next) => {
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
                    // A running hedge takes over (it has every kept byte).
                    if let Some(second) = hedge.take() {
                        upstream = second;
                        continue;
                    }
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

    /// `upstream` sent its first bytes, `first`: the session is its from
    /// now on (never moves again).
    async fn answered(
        &self,
        mut client: Stream,
        upstream: Upstream,
        first: &[u8],
        client_done: bool,
    ) -> SessionOutcome {
        self.proxy
            .record_first_byte(upstream.connected_at.elapsed());
        self.served(&upstream);
        if let Err(error) = client.write_all(first).await {
            self.ended(Err(error));
            return SessionOutcome::Served;
        }
        self.relay(client, upstream, client_done).await;
        SessionOutcome::Served
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
