//! An upstream HTTP/1.1 connection's socket, watched for one fact: whether
//! the endpoint closed it before its kernel had received a byte of the
//! request in flight.
//!
//! That is the race every rolling deploy hits: the endpoint closes an idle
//! keep-alive connection (a graceful shutdown, its keep-alive timeout) at
//! the moment levee reuses it. The request goes into a socket the endpoint
//! has already closed, the answer is an EOF or a reset, and "sent, no
//! response" forbids retrying a POST. Yet the endpoint cannot have acted on
//! a request its kernel never acknowledged: a FIN acknowledges every byte
//! received before it, and data that reaches a closed socket is answered
//! with a reset, never an acknowledgement. So when the connection ends
//! without a response byte, levee compares what the endpoint acknowledged
//! (`TCP_INFO`'s `tcpi_bytes_acked`, read by this wrapper at that very
//! moment) with what had been written before the request: nothing of the
//! request acknowledged means nothing of it received, and the attempt was
//! not sent (Go's transport knows the same case as "server closed idle
//! connection", but only when nothing was written yet).
//!
//! Written by hand because no crate wraps a stream this way; the cost on
//! the request path is one relaxed atomic add per write.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::tls::Stream;

/// Not known (yet): the connection has not ended, or the platform cannot
/// say.
const UNKNOWN: u64 = u64::MAX;

/// What a connection's socket has seen, shared by the wrapper (with the
/// connection) and the pool.
#[derive(Debug)]
pub struct WireLog {
    /// Bytes handed to the kernel so far.
    written: AtomicU64,
    /// Bytes read so far.
    read: AtomicU64,
    /// Whether the connection ended with the endpoint's FIN (an EOF) rather
    /// than an error (a reset).
    clean_end: std::sync::atomic::AtomicBool,
    /// The endpoint's acknowledged bytes when the connection ended (EOF or
    /// error), or [`UNKNOWN`].
    acked_at_end: AtomicU64,
    /// Whether the socket is cleartext TCP: under TLS the bytes written are
    /// not the bytes on the wire, and nothing is concluded.
    plain: bool,
}

/// Where a connection stood when a request was sent on it.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    written: u64,
    read: u64,
}

impl WireLog {
    /// Where the connection stands: taken before a request is sent on a
    /// reused connection.
    pub fn mark(&self) -> Mark {
        Mark {
            written: self.written.load(Ordering::Relaxed),
            read: self.read.load(Ordering::Relaxed),
        }
    }

    /// Whether the endpoint closed the connection (FIN) before its kernel
    /// received any byte written since `mark` (the request in flight): then
    /// it never saw the request. False when unknown, and after a reset: an
    /// endpoint that read the request and reset the connection before its
    /// delayed acknowledgement left would look the same.
    pub fn closed_before_receiving(&self, mark: Mark) -> bool {
        let acked = self.acked_at_end.load(Ordering::Acquire);
        // The SYN may count as one acknowledged byte; a request is longer.
        self.closed_cleanly(mark) && acked != UNKNOWN && acked <= mark.written + 1
    }

    /// Whether the endpoint closed the connection (FIN, not a reset) without
    /// sending a byte since `mark`. Its kernel may have received the
    /// request, and the endpoint may have read it: a server that discards a
    /// request it buffered when it closes idle connections on a graceful
    /// shutdown (hyper-based servers do), or one that crashed after reading.
    pub fn closed_cleanly(&self, mark: Mark) -> bool {
        self.plain
            && self.clean_end.load(Ordering::Acquire)
            && self.read.load(Ordering::Relaxed) == mark.read
    }
}

/// The stream a connection reads and writes, logging into a [`WireLog`].
pub struct Watched {
    stream: Stream,
    log: Arc<WireLog>,
}

impl Watched {
    /// Watch `stream`; the log is the pool's to keep.
    pub fn new(stream: Stream) -> (Watched, Arc<WireLog>) {
        let log = Arc::new(WireLog {
            written: AtomicU64::new(0),
            read: AtomicU64::new(0),
            clean_end: std::sync::atomic::AtomicBool::new(false),
            acked_at_end: AtomicU64::new(UNKNOWN),
            plain: matches!(stream, Stream::Plain(_)),
        });
        let watched = Watched {
            stream,
            log: Arc::clone(&log),
        };
        (watched, log)
    }

    /// The connection ended (`clean`: EOF, or an error): note how, and what
    /// the endpoint had acknowledged. Once: the first end is the one that
    /// matters.
    fn ended(&self, clean: bool) {
        if !self.log.plain || self.log.acked_at_end.load(Ordering::Relaxed) != UNKNOWN {
            return;
        }
        if let Some(acked) = bytes_acked(self.stream.tcp()) {
            self.log.clean_end.store(clean, Ordering::Relaxed);
            self.log.acked_at_end.store(acked, Ordering::Release);
        }
    }
}

/// `tcpi_bytes_acked` of `socket` (Linux 4.1 and later).
#[cfg(target_os = "linux")]
fn bytes_acked(socket: &tokio::net::TcpStream) -> Option<u64> {
    use std::os::fd::AsRawFd;
    // SAFETY: `tcp_info` is plain old data (zeroed is a valid value), and
    // getsockopt writes at most `len` bytes into it; the descriptor is
    // borrowed from a live socket.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::tcp_info>()).ok()?;
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::from_mut(&mut info).cast(),
            &mut len,
        )
    };
    // A kernel too old to fill the field gives a shorter length.
    let filled = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked) + 8;
    (result == 0 && usize::try_from(len).is_ok_and(|len| len >= filled))
        .then_some(info.tcpi_bytes_acked)
}

#[cfg(not(target_os = "linux"))]
fn bytes_acked(_socket: &tokio::net::TcpStream) -> Option<u64> {
    None
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        match &result {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                if read > 0 {
                    this.log.read.fetch_add(read as u64, Ordering::Relaxed);
                } else if buf.remaining() > 0 {
                    this.ended(true);
                }
            }
            Poll::Ready(Err(_)) => this.ended(false),
            Poll::Pending => {}
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.count(&result);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.count(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl Watched {
    fn count(&self, result: &Poll<io::Result<usize>>) {
        match result {
            Poll::Ready(Ok(n)) => {
                self.log.written.fetch_add(*n as u64, Ordering::Relaxed);
            }
            Poll::Ready(Err(_)) => self.ended(false),
            Poll::Pending => {}
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A connection the server closes unread: nothing acknowledged past
    /// what came before. One it reads first: acknowledged.
    #[tokio::test]
    async fn a_close_before_the_request_arrived_is_told_from_one_after() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");

        // The server answers one request, then closes while idle.
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 64];
            let n = socket.read(&mut buf).await.expect("read");
            socket.write_all(&buf[..n]).await.expect("echo");
            drop(socket);
            // The second connection: reads the request, then closes.
            let (mut socket, _) = listener.accept().await.expect("accept");
            let _ = socket.read(&mut buf).await.expect("read");
            drop(socket);
        });

        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut watched, log) = Watched::new(Stream::Plain(tcp));
        watched.write_all(b"first request").await.expect("write");
        let mut buf = [0u8; 64];
        let n = watched.read(&mut buf).await.expect("echo");
        assert_eq!(&buf[..n], b"first request");
        // Wait for the server's FIN, then write the next request into the
        // closed connection, as a reuse racing with the close would.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let before = log.mark();
        let _ = watched.write_all(b"second request").await;
        let mut end = [0u8; 8];
        let read = watched.read(&mut end).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert!(log.closed_before_receiving(before), "{log:?}");
        assert!(log.closed_cleanly(before), "{log:?}");

        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut watched, log) = Watched::new(Stream::Plain(tcp));
        let start = log.mark();
        watched.write_all(b"a request").await.expect("write");
        let read = watched.read(&mut end).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert!(!log.closed_before_receiving(start), "{log:?}");
        assert!(log.closed_cleanly(start), "read, then closed: {log:?}");
        server.await.expect("server");
    }
}
