//! One accepted connection: served by hyper until a request asks for a raw
//! fault, then handed back as a bare socket to hang on, or to reset.
//!
//! Why this shape: the healthy path must stay as fast as plain hyper (the
//! backend is the origin of the throughput benchmark), yet a keep-alive
//! connection opened while healthy must obey a later mode change on its next
//! request. So hyper parses every request and the service reads the mode
//! once; for the three raw faults the service records what it wants and
//! wakes this task, which drops the hyper connection. Dropping it drops our
//! [`FaultIo`] wrapper, whose `Drop` hands the socket back instead of closing
//! it. The fault is then ordinary async code on a `TcpStream`: exact bytes on
//! the wire, and an RST via `SO_LINGER 0` that hyper would never produce.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::Shared;
use super::mode::Mode;
use super::service::BackendService;
use super::takeover::{ConnControl, Takeover};

/// The head sent by [`Mode::PartialThenReset`]: a promise of a megabyte that
/// is never kept.
const PARTIAL_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n";

/// Filler for the partial body.
const FILLER: [u8; 4096] = [b'x'; 4096];

/// How long a partial body may wait for a client that does not read, so a
/// stuck client cannot keep the fault task alive forever.
const PARTIAL_WRITE_LIMIT: Duration = Duration::from_secs(5);

/// The socket as hyper sees it; gives the socket back on drop when a fault
/// was requested.
struct FaultIo {
    /// Always `Some` until drop.
    stream: Option<TcpStream>,
    control: Arc<ConnControl>,
}

impl FaultIo {
    fn stream(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        match self.stream.as_mut() {
            Some(stream) => Ok(Pin::new(stream)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Drop for FaultIo {
    fn drop(&mut self) {
        let mut slot = self.control.slot.lock();
        if slot.takeover.is_some() {
            slot.stream = self.stream.take();
        }
    }
}

impl AsyncRead for FaultIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for FaultIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        // hyper writes head and body with one writev when it can.
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// Serves one accepted connection until the client leaves, a fault ends it,
/// or the task is aborted (crash, shutdown).
///
/// When `graceful` turns true the connection stops as a server does on a
/// graceful shutdown (nginx `SIGQUIT`): closed at once if idle, after its
/// response otherwise, and without keep-alive.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    mut graceful: tokio::sync::watch::Receiver<bool>,
) {
    // Small responses must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |addr| addr.ip());
    let control = Arc::new(ConnControl::new());
    let io = FaultIo {
        stream: Some(stream),
        control: Arc::clone(&control),
    };
    let service = BackendService::new(Arc::clone(&shared), Arc::clone(&control), peer);
    {
        let conn = shared.http.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut stopping = false;
        loop {
            tokio::select! {
                biased;
                () = control.taken.notified() => break,
                changed = graceful.wait_for(|stop| *stop), if !stopping => {
                    stopping = true;
                    if changed.is_ok() {
                        conn.as_mut().graceful_shutdown();
                    }
                }
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(backend = %shared.name, %error, "connection ended");
                    }
                    break;
                }
            }
        }
        // `conn` is dropped here, and with it the FaultIo.
    }
    control.gone.notify_waiters();
    let (takeover, stream) = {
        let mut slot = control.slot.lock();
        (slot.takeover.take(), slot.stream.take())
    };
    if let (Some(takeover), Some(stream)) = (takeover, stream) {
        run_fault(&shared, takeover, stream).await;
    }
}

async fn run_fault(shared: &Shared, takeover: Takeover, mut stream: TcpStream) {
    match takeover {
        Takeover::Drop => {}
        Takeover::Reset => reset(stream),
        Takeover::PartialThenReset { bytes } => {
            let write = write_partial(&mut stream, bytes);
            if let Err(error) = tokio::time::timeout(PARTIAL_WRITE_LIMIT, write).await {
                tracing::debug!(backend = %shared.name, %error, "partial response not written");
            }
            reset(stream);
        }
        Takeover::Hang => hang(shared, stream).await,
    }
}

/// Closes with an RST instead of a FIN: `SO_LINGER` with a zero timeout makes
/// `close` abort the connection, which is what a crashing process or a
/// middlebox looks like to the client.
fn reset(stream: TcpStream) {
    if let Err(error) = SockRef::from(&stream).set_linger(Some(Duration::ZERO)) {
        tracing::debug!(%error, "could not set SO_LINGER 0; closing normally");
    }
    drop(stream);
}

async fn write_partial(stream: &mut TcpStream, bytes: usize) -> io::Result<()> {
    stream.write_all(PARTIAL_HEAD).await?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(FILLER.len());
        stream.write_all(&FILLER[..n]).await?;
        left -= n;
    }
    stream.flush().await
}

/// Reads and discards until the client gives up or the mode leaves `Hung`.
async fn hang(shared: &Shared, mut stream: TcpStream) {
    let mut mode = shared.mode_tx.subscribe();
    let mut sink = [0u8; 1024];
    loop {
        tokio::select! {
            read = stream.read(&mut sink) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = mode.wait_for(|mode| mode.unpack() != Mode::Hung) => return,
        }
    }
}
