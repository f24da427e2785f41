//! Idle HTTP/1 connections waiting for their next request without a task
//! of their own.
//!
//! What an idle keep-alive connection costs is mostly its task (the task's
//! cell: the connection's whole future, 768 bytes) and the socket's
//! registration with the runtime (256 bytes). So once a plain-TCP HTTP/1
//! connection parks (`http.rs`), its task hands the socket and the
//! connection's settings to the listener and ends. The listener keeps them
//! here: every parked socket is in one epoll set of this listener's (a
//! single descriptor in the runtime), the idle timeout is one timer for the
//! whole set, and a socket that turns readable is given a task again.
//! HAProxy and nginx keep idle connections the same way: a small record and
//! the kernel's readiness list (bench/memory.sh: 1,912 -> 966 bytes per
//! idle connection, HAProxy about 950).
//!
//! mio's `Poll` is the epoll set; what is written here is levee's own
//! bookkeeping: which connection woke, timed out or was evicted.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Token};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::unix::AsyncFd;
use tokio::time::{Instant, Sleep};

/// Readiness events taken from the set per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 64;

/// A parked connection: its settings, its bare socket, and when it is
/// closed if no request comes.
pub(crate) struct Parked<C> {
    /// The connection's id in its listener (`registry.rs`).
    pub id: u64,
    pub connection: C,
    pub socket: std::net::TcpStream,
    pub idle_until: Instant,
}

/// Why a parked connection leaves the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaving {
    /// The client sent something (or closed): serve it again.
    Readable,
    /// Nothing came within the idle timeout: close it.
    IdleTimeout,
}

/// One listener's parked connections.
pub(crate) struct ParkedSet<C> {
    epoll: AsyncFd<mio::Poll>,
    events: Events,
    parked: HashMap<u64, Box<Parked<C>>>,
    /// Idle deadlines, earliest first. An entry whose connection left (or
    /// parked again since, with a later deadline) is skipped when reached.
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Woken by the epoll set, not yet handed out.
    readable: Vec<u64>,
    timer: Pin<Box<Sleep>>,
    /// `levee_connections_parked` of the listener: the set's size.
    gauge: Gauge,
}

impl<C> ParkedSet<C> {
    /// An empty set whose size `gauge` shows; fails if no epoll
    /// descriptor can be had.
    pub(crate) fn new(gauge: Gauge) -> io::Result<ParkedSet<C>> {
        let poll = mio::Poll::new()?;
        // SAFETY: `mio::Poll` owns its epoll descriptor and keeps it open,
        // the same one, until it is dropped, which is after the `AsyncFd`.
        let epoll =
            unsafe { AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE) }?;
        Ok(ParkedSet {
            epoll,
            events: Events::with_capacity(EVENTS_PER_WAIT),
            parked: HashMap::new(),
            deadlines: BinaryHeap::new(),
            readable: Vec::new(),
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            gauge,
        })
    }

    /// Keep `parked` until its socket turns readable or its idle timeout
    /// passes; given back if its socket cannot be watched.
    pub(crate) fn park(&mut self, parked: Parked<C>) -> Result<(), (Parked<C>, io::Error)> {
        let Ok(token) = usize::try_from(parked.id) else {
            let error = io::Error::other("connection id out of range");
            return Err((parked, error));
        };
        let fd = parked.socket.as_raw_fd();
        // Edge-triggered: bytes already there count as an edge, so a
        // request that arrived while the socket was handed over still wakes it.
        if let Err(error) = self.epoll.get_ref().registry().register(
            &mut SourceFd(&fd),
            Token(token),
            Interest::READABLE,
        ) {
            return Err((parked, error));
        }
        self.deadlines.push(Reverse((parked.idle_until, parked.id)));
        self.parked.insert(parked.id, Box::new(parked));
        self.show_len();
        // Entries left by connections that woke: dropped once they
        // outnumber the parked ones, so the heap stays the set's size.
        if self.deadlines.len() > 2 * self.parked.len() + 64 {
            let parked = &self.parked;
            self.deadlines
                .retain(|Reverse((at, id))| parked.get(id).is_some_and(|p| p.idle_until == *at));
        }
        Ok(())
    }

    /// Take connection `id` out of the set, if it is parked (it is being
    /// evicted, or the listener stops).
    pub(crate) fn take(&mut self, id: u64) -> Option<Parked<C>> {
        let parked = *self.parked.remove(&id)?;
        self.show_len();
        // Not watched any more: its socket goes back to the runtime.
        let fd = parked.socket.as_raw_fd();
        if let Err(error) = self
            .epoll
            .get_ref()
            .registry()
            .deregister(&mut SourceFd(&fd))
        {
            tracing::debug!(%error, "could not take a parked socket out of its epoll set");
        }
        Some(parked)
    }

    fn show_len(&self) {
        self.gauge
            .set(i64::try_from(self.parked.len()).unwrap_or(i64::MAX));
    }

    /// Take every parked connection out (the listener stops).
    pub(crate) fn take_all(&mut self) -> Vec<Parked<C>> {
        let ids: Vec<u64> = self.parked.keys().copied().collect();
        self.deadlines.clear();
        self.readable.clear();
        ids.into_iter().filter_map(|id| self.take(id)).collect()
    }

    /// The next connection to leave the set, and why. Cancel-safe: what
    /// the epoll set reported is kept in the set until handed out.
    pub(crate) fn next(&mut self) -> impl Future<Output = (Parked<C>, Leaving)> + '_ {
        std::future::poll_fn(move |cx| self.poll_next(cx))
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<(Parked<C>, Leaving)> {
        loop {
            while let Some(id) = self.readable.pop() {
                if let Some(parked) = self.take(id) {
                    return Poll::Ready((parked, Leaving::Readable));
                }
            }
            if let Some(parked) = self.poll_deadline(cx) {
                return Poll::Ready((parked, Leaving::IdleTimeout));
            }
            if !self.poll_readable(cx) {
                return Poll::Pending;
            }
        }
    }

    /// A connection whose idle timeout has passed; otherwise the timer is
    /// set for the earliest one.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Option<Parked<C>> {
        loop {
            let &Reverse((at, id)) = self.deadlines.peek()?;
            if self.parked.get(&id).is_none_or(|p| p.idle_until != at) {
                // It woke (and perhaps parked again, with a later deadline).
                self.deadlines.pop();
                continue;
            }
            if at > Instant::now() {
                if self.timer.deadline() != at {
                    self.timer.as_mut().reset(at);
                }
                if self.timer.as_mut().poll(cx).is_pending() {
                    return None;
                }
            }
            self.deadlines.pop();
            return self.take(id);
        }
    }

    /// Read what the epoll set has to say into `readable`: false when it
    /// has nothing (the task is woken when it has).
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> bool {
        let ParkedSet {
            epoll,
            events,
            readable,
            ..
        } = self;
        loop {
            let mut guard = match epoll.poll_read_ready_mut(cx) {
                Poll::Ready(Ok(guard)) => guard,
                Poll::Ready(Err(error)) => {
                    // Not expected of an epoll descriptor; parked
                    // connections then leave at their idle timeout.
                    tracing::warn!(%error, "parked connections: epoll set failed");
                    return false;
                }
                Poll::Pending => return false,
            };
            match guard.get_inner_mut().poll(events, Some(Duration::ZERO)) {
                Ok(()) if events.is_empty() => guard.clear_ready(),
                Ok(()) => {
                    readable.extend(
                        events
                            .iter()
                            .filter_map(|event| u64::try_from(event.token().0).ok()),
                    );
                    return true;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    tracing::warn!(%error, "parked connections: epoll_wait failed");
                    guard.clear_ready();
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        (client, server)
    }

    /// Park `socket` as connection `id`, idle for `idle`.
    fn park(
        set: &mut ParkedSet<&'static str>,
        id: u64,
        socket: std::net::TcpStream,
        idle: Duration,
    ) {
        let parked = Parked {
            id,
            connection: "settings",
            socket,
            idle_until: Instant::now() + idle,
        };
        set.park(parked).map_err(|(_, e)| e).expect("park");
    }

    /// The next connection to leave `set` (within 5 s) and why.
    async fn next(set: &mut ParkedSet<&'static str>) -> (u64, Leaving) {
        let (left, why) = tokio::time::timeout(Duration::from_secs(5), set.next())
            .await
            .expect("a connection leaves");
        (left.id, why)
    }

    #[tokio::test]
    async fn a_socket_that_turns_readable_leaves_first_and_the_others_at_their_idle_timeout() {
        let gauge = Gauge::default();
        let mut set = ParkedSet::new(gauge.clone()).expect("epoll");
        let (mut client_a, server_a) = pair();
        let (_client_b, server_b) = pair();
        let (_client_c, server_c) = pair();
        park(&mut set, 1, server_a, Duration::from_secs(30));
        park(&mut set, 2, server_b, Duration::from_millis(200));
        park(&mut set, 3, server_c, Duration::from_millis(100));
        assert_eq!(gauge.get(), 3, "parked");

        client_a.write_all(b"GET / HTTP/1.1\r\n").expect("write");
        assert_eq!(next(&mut set).await, (1, Leaving::Readable));

        let started = Instant::now();
        assert_eq!(next(&mut set).await, (3, Leaving::IdleTimeout));
        assert_eq!(next(&mut set).await, (2, Leaving::IdleTimeout));
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(gauge.get(), 0, "parked");
    }

    #[tokio::test]
    async fn bytes_sent_before_parking_wake_the_connection_and_a_taken_one_is_not_watched() {
        let mut set = ParkedSet::new(Gauge::default()).expect("epoll");
        let (mut client_a, server_a) = pair();
        let (mut client_b, server_b) = pair();
        client_a.write_all(b"GET /").expect("write");
        park(&mut set, 7, server_a, Duration::from_secs(30));
        park(&mut set, 8, server_b, Duration::from_secs(30));
        assert_eq!(next(&mut set).await, (7, Leaving::Readable));

        let taken = set.take(8).expect("parked");
        client_b.write_all(b"GET /").expect("write");
        assert!(
            tokio::time::timeout(Duration::from_millis(200), set.next())
                .await
                .is_err(),
            "a connection taken out still woke"
        );
        // Parked again after it was taken: watched again.
        set.park(taken).map_err(|(_, e)| e).expect("park again");
        assert_eq!(next(&mut set).await, (8, Leaving::Readable));
    }
}
