//! The client socket as levee's HTTP server reads it.
//!
//! Three things hyper's own `TcpStream` handling does not do:
//! - bytes levee read before hyper took over (while telling HTTP/1 from
//!   HTTP/2, or left in hyper's buffer when an idle connection was parked)
//!   are handed to hyper first;
//! - every read and stalled write is noted in the connection's
//!   [`ConnectionState`], which the timeouts and the connection limit read;
//! - closing lingers: after levee's FIN it reads and discards what the
//!   client still sends, for a short while. A request that crossed the FIN
//!   would otherwise find unread data in the socket, and the kernel answers
//!   that with a reset; the client then cannot tell "never processed" from
//!   "lost". (nginx's `lingering_close` exists for the same reason.)

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::registry::ConnectionState;
use crate::tls::Stream;

/// How long a closing connection waits for the client's own close.
pub(crate) const LINGER: Duration = Duration::from_secs(1);
/// A client that sends more than this while levee closes is cut at once.
const LINGER_MAX_BYTES: usize = 64 * 1024;

/// A client connection with bytes to replay first.
pub(crate) struct ClientIo {
    /// Read from the socket already, not yet given to hyper.
    prefix: Bytes,
    stream: Stream,
    state: Arc<ConnectionState>,
    /// Set once the write side is shut down (closing has begun).
    write_closed: bool,
    /// The end of the linger, once closing has begun.
    linger: Option<Pin<Box<Sleep>>>,
    /// Bytes discarded while lingering.
    discarded: usize,
}

impl ClientIo {
    pub(crate) fn new(stream: Stream, prefix: Bytes, state: Arc<ConnectionState>) -> ClientIo {
        ClientIo {
            prefix,
            stream,
            state,
            write_closed: false,
            linger: None,
            discarded: 0,
        }
    }

    /// A cleartext connection with nothing to replay (one served again
    /// after it was parked).
    pub(crate) fn plain(tcp: tokio::net::TcpStream, state: Arc<ConnectionState>) -> ClientIo {
        ClientIo::new(Stream::Plain(tcp), Bytes::new(), state)
    }

    /// The connection, to wait on while parked.
    pub(crate) fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Take what TLS decrypted already and hyper did not read: a parked
    /// connection waits on its TCP socket, which says nothing of it.
    pub(crate) fn keep_decrypted(&mut self) {
        let decrypted = self.stream.take_decrypted();
        self.unread(decrypted);
    }

    /// Whether it is cleartext TCP (a TLS connection keeps its session).
    pub(crate) fn is_plain(&self) -> bool {
        matches!(self.stream, Stream::Plain(_))
    }

    /// The bare socket of an idle cleartext connection, taken from the
    /// runtime (`parked.rs`). An error if it is TLS, has bytes to replay or
    /// is closing: those are not idle.
    pub(crate) fn into_std(self) -> io::Result<std::net::TcpStream> {
        match self.stream {
            Stream::Plain(tcp) if self.prefix.is_empty() && !self.write_closed => tcp.into_std(),
            _ => Err(io::Error::other("not an idle cleartext connection")),
        }
    }

    /// Whether bytes are waiting to be replayed.
    pub(crate) fn has_prefix(&self) -> bool {
        !self.prefix.is_empty()
    }

    /// Put `unread` (hyper's buffered bytes) in front of what is left to
    /// replay.
    pub(crate) fn unread(&mut self, unread: Bytes) {
        if unread.is_empty() {
            return;
        }
        self.prefix = if self.prefix.is_empty() {
            unread
        } else {
            let mut joined = Vec::with_capacity(unread.len() + self.prefix.len());
            joined.extend_from_slice(&unread);
            joined.extend_from_slice(&self.prefix);
            Bytes::from(joined)
        };
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
        let read = buf.filled().len() - before;
        if read > 0 {
            // One writer (this connection's task): load + store, no RMW.
            let total = self.state.bytes_read.load(Ordering::Relaxed);
            self.state
                .bytes_read
                .store(total + read as u64, Ordering::Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.note_write(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.note_write(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    /// Shut the write side, then linger (see the module comment). While
    /// the connection is being parked, hyper's own shutdown is a no-op: the
    /// socket stays open for the next request.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.state.parking.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        let this = &mut *self;
        if !this.write_closed {
            // A peer that is already gone makes shutdown fail: nothing to
            // linger for.
            if ready!(Pin::new(&mut this.stream).poll_shutdown(cx)).is_err() {
                return Poll::Ready(Ok(()));
            }
            this.write_closed = true;
        }
        let linger = this
            .linger
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
        let mut scratch = [0u8; 2048];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.stream).poll_read(cx, &mut buf) {
                // The client closed too, or failed: done.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    this.discarded += buf.filled().len();
                    if this.discarded > LINGER_MAX_BYTES {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Pending => {
                    return match linger.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }
}

impl ClientIo {
    /// A write that could not go out (the client does not read) means the
    /// response is not finished, whatever hyper's state says.
    fn note_write<T>(&self, result: &Poll<io::Result<T>>) {
        self.state
            .write_pending
            .store(result.is_pending(), Ordering::Relaxed);
    }
}
