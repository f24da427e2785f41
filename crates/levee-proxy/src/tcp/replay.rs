//! Replay mode: while the endpoint has sent nothing back, the client's
//! bytes are forwarded and also kept (up to `tcp_replay`), so that an
//! endpoint that closes before answering can be replaced by another one,
//! which gets the same bytes first.
//!
//! Why "nothing sent back" is the line: until then the client has seen
//! nothing, so a second endpoint can take over unnoticed; after it, the
//! client has acted on the first endpoint's words and a replay would be a
//! different conversation.

use std::io;
use std::time::Duration;

use crate::tls::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// The client's bytes kept for a replay, at most `limit` of them.
#[derive(Debug)]
pub(super) struct ReplayBuffer {
    kept: Vec<u8>,
    limit: usize,
    /// More than `limit` bytes were offered: nothing is kept any more and
    /// the session cannot move.
    overflowed: bool,
}

impl ReplayBuffer {
    /// An empty buffer that keeps up to `limit` bytes. It grows as bytes
    /// come, so a large limit costs nothing for clients that send little.
    pub(super) fn new(limit: usize) -> ReplayBuffer {
        ReplayBuffer {
            kept: Vec::new(),
            limit,
            overflowed: false,
        }
    }

    /// Keep `bytes`, sent after the ones kept so far. Returns false (and
    /// frees what was kept) once the client has sent more than the limit:
    /// a partial copy could not be replayed.
    pub(super) fn keep(&mut self, bytes: &[u8]) -> bool {
        if self.overflowed {
            return false;
        }
        if self.kept.len().saturating_add(bytes.len()) > self.limit {
            self.overflowed = true;
            self.kept = Vec::new();
            return false;
        }
        self.kept.extend_from_slice(bytes);
        true
    }

    /// Everything the client has sent, if it was all kept.
    pub(super) fn bytes(&self) -> Option<&[u8]> {
        (!self.overflowed).then_some(self.kept.as_slice())
    }
}

/// How waiting for the endpoint's first byte ended.
#[derive(Debug)]
pub(super) enum FirstByte {
    /// The endpoint sent this many bytes (in the `first` buffer), not yet
    /// forwarded to the client. From now on the session never moves.
    Answered(usize),
    /// The endpoint closed or reset before sending anything: the session
    /// may move, with the kept bytes.
    ClosedBeforeAnswer(io::Error),
    /// The client sent more than the replay limit: this many bytes (in the
    /// `from_client` buffer) are still to be forwarded, then the session is
    /// a plain relay.
    Overflowed(usize),
    /// The client finished sending, and then the endpoint closed cleanly
    /// without a word: the normal end of a one-way exchange, not a failure.
    /// (An endpoint that closes with the client's bytes unread resets the
    /// connection instead, which is [`FirstByte::ClosedBeforeAnswer`].)
    Finished,
    /// The client's side failed before the endpoint answered.
    ClientGone(io::Error),
    /// The endpoint sent nothing by the first-byte deadline.
    TimedOut,
    /// Time to hedge: the endpoint has said nothing for the listener's
    /// usual time to first byte.
    HedgeDue,
    /// The hedge's endpoint answered first: this many bytes (in the
    /// `hedge_first` buffer). The session goes on with it.
    HedgeAnswered(usize),
    /// The hedge's endpoint closed or failed before answering.
    HedgeClosed(io::Error),
}

/// The buffers one wait reads into, allocated once per session.
pub(super) struct Buffers {
    /// Client bytes read, on their way to the endpoint.
    pub(super) from_client: Vec<u8>,
    /// The endpoint's first bytes.
    pub(super) first: Vec<u8>,
    /// The hedge's first bytes; allocated when a session hedges.
    pub(super) hedge_first: Vec<u8>,
}

impl Buffers {
    /// Two buffers of `size` bytes.
    pub(super) fn new(size: usize) -> Buffers {
        Buffers {
            from_client: vec![0; size],
            first: vec![0; size],
            hedge_first: Vec::new(),
        }
    }
}

/// Send a new endpoint what the client has sent so far, and its half-close
/// if the client has finished.
pub(super) async fn resend(
    upstream: &mut Stream,
    replay: &ReplayBuffer,
    client_done: bool,
) -> io::Result<()> {
    if let Some(bytes) = replay.bytes().filter(|bytes| !bytes.is_empty()) {
        upstream.write_all(bytes).await?;
    }
    if client_done {
        upstream.shutdown().await?;
    }
    Ok(())
}

/// When a wait ends by itself: the first-byte deadline, and the time to
/// hedge.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Timers {
    /// The endpoint's first-byte deadline.
    pub(super) deadline: Option<Instant>,
    /// When to hedge, if the session may and has not yet.
    pub(super) hedge_at: Option<Instant>,
}

/// Far enough to be never.
fn never() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// Forward the client's bytes to `upstream` (and to `hedge`, a second
/// endpoint, when the session hedges), keeping them in `replay`, until an
/// endpoint sends its first byte or something ends the wait. A client that
/// finishes sending has its half-close forwarded (and `client_done` set);
/// the wait goes on for the endpoints.
pub(super) async fn until_first_byte(
    client: &mut Stream,
    upstream: &mut Stream,
    mut hedge: Option<&mut Stream>,
    replay: &mut ReplayBuffer,
    client_done: &mut bool,
    buffers: &mut Buffers,
    timers: Timers,
) -> FirstByte {
    let sleep = tokio::time::sleep_until(timers.deadline.unwrap_or_else(never));
    tokio::pin!(sleep);
    let hedge_due = tokio::time::sleep_until(timers.hedge_at.unwrap_or_else(never));
    tokio::pin!(hedge_due);
    loop {
        let hedging = hedge.is_some();
        tokio::select! {
            () = &mut sleep, if timers.deadline.is_some() => return FirstByte::TimedOut,
            () = &mut hedge_due, if timers.hedge_at.is_some() && !hedging => return FirstByte::HedgeDue,
            read = client.read(&mut buffers.from_client), if !*client_done => match read {
                Ok(0) => {
                    *client_done = true;
                    if let Err(error) = upstream.shutdown().await {
                        return FirstByte::ClosedBeforeAnswer(error);
                    }
                    if let Some(hedge) = hedge.as_mut()
                        && let Err(error) = hedge.shutdown().await
                    {
                        return FirstByte::HedgeClosed(error);
                    }
                }
                Ok(read) => {
                    // `read` is at most the buffer's length (AsyncRead's contract).
                    let bytes = &buffers.from_client[..read];
                    if !replay.keep(bytes) {
                        return FirstByte::Overflowed(read);
                    }
                    if let Err(error) = upstream.write_all(bytes).await {
                        return FirstByte::ClosedBeforeAnswer(error);
                    }
                    if let Some(hedge) = hedge.as_mut()
                        && let Err(error) = hedge.write_all(bytes).await
                    {
                        return FirstByte::HedgeClosed(error);
                    }
                }
                Err(error) => return FirstByte::ClientGone(error),
            },
            read = read_some(hedge.as_deref_mut(), &mut buffers.hedge_first), if hedging => match read {
                Ok(0) => {
                    let closed = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed the connection before sending anything",
                    );
                    return FirstByte::HedgeClosed(closed);
                }
                Ok(read) => return FirstByte::HedgeAnswered(read),
                Err(error) => return FirstByte::HedgeClosed(error),
            },
            read = upstream.read(&mut buffers.first) => match read {
                Ok(0) if *client_done => return FirstByte::Finished,
                Ok(0) => {
                    let closed = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed the connection before sending anything",
                    );
                    return FirstByte::ClosedBeforeAnswer(closed);
                }
                Ok(read) => return FirstByte::Answered(read),
                Err(error) => return FirstByte::ClosedBeforeAnswer(error),
            },
        }
    }
}

/// Read from `stream` if there is one (else wait forever).
async fn read_some(stream: Option<&mut Stream>, buffer: &mut [u8]) -> io::Result<usize> {
    match stream {
        Some(stream) => stream.read(buffer).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_bytes_up_to_the_limit() {
        let mut replay = ReplayBuffer::new(8);
        assert_eq!(replay.bytes(), Some(&b""[..]));
        assert!(replay.keep(b"hello"));
        assert!(replay.keep(b"abc"));
        assert_eq!(replay.bytes(), Some(&b"helloabc"[..]));
    }

    #[test]
    fn one_byte_past_the_limit_makes_replay_impossible_for_good() {
        let mut replay = ReplayBuffer::new(8);
        assert!(replay.keep(b"hello"));
        assert!(!replay.keep(b"abcd"));
        assert_eq!(replay.bytes(), None);
        // Nothing is kept after an overflow, even bytes that would fit.
        assert!(!replay.keep(b"x"));
        assert_eq!(replay.bytes(), None);
    }

    #[test]
    fn a_zero_limit_keeps_only_nothing() {
        let mut replay = ReplayBuffer::new(0);
        assert!(replay.keep(b""));
        assert!(!replay.keep(b"x"));
    }
}
