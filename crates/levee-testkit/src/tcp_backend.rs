//! A fault-injecting raw TCP backend: the L4 counterpart of
//! [`Backend`](crate::backend::Backend), for testing TCP listeners. A real
//! server on a real loopback socket whose behaviour a test switches at run
//! time between echoing and the ways a TCP node fails.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use levee_testkit::tcp_backend::{TcpBackend, TcpMode};
//! let backend = TcpBackend::start("git-1", "127.0.0.1:0".parse().unwrap()).await?;
//! backend.set_mode(TcpMode::CloseAtOnce).await?; // accepts, then closes
//! backend.set_mode(TcpMode::Crashed).await?;     // connects are refused
//! backend.set_mode(TcpMode::Echo).await?;        // listening again, same port
//! # Ok(()) }
//! ```
//!
//! A connection behaves as the mode said when it was accepted; only a crash
//! reaches into open connections (it drops them all, as a dying process
//! would).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// Backlog of the listening socket.
const LISTEN_BACKLOG: u32 = 1024;

/// How long leaving `Crashed` keeps retrying a port that is briefly taken.
const REBIND_PATIENCE: Duration = Duration::from_secs(1);
const REBIND_PAUSE: Duration = Duration::from_millis(20);

/// Pause after a failed `accept`, so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Size of the buffer each connection reads into.
const READ_BUFFER: usize = 16 * 1024;

/// How a [`TcpBackend`] treats the connections it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpMode {
    /// Sends every byte it receives straight back; closes its side once the
    /// client has closed its own.
    Echo,
    /// Accepts, then closes at once without reading or writing: a process
    /// that takes the connection and dies, or a server that refuses the
    /// client after `accept`. A client whose bytes had already arrived gets
    /// a reset (the kernel's answer to closing with unread data), one whose
    /// bytes had not gets a clean close.
    CloseAtOnce,
    /// Reads once (whatever has arrived, at least one byte or the client's
    /// close), then resets the connection without writing: a node that
    /// crashes on the request.
    ResetAfterRead,
    /// The listening socket is closed: connects are refused. Open
    /// connections are dropped when this mode is entered.
    Crashed,
    /// Accepts and reads everything, never writes a byte: a process that is
    /// stopped (SIGSTOP) or stuck while its kernel still accepts for it.
    Silent,
    /// Echoes, but its first answer comes [`SLOW_FIRST_BYTE`] late: slow
    /// and alive, which a first-byte deadline must not mistake for silent.
    SlowEcho,
}

/// How late [`TcpMode::SlowEcho`] sends its first byte.
pub const SLOW_FIRST_BYTE: std::time::Duration = std::time::Duration::from_millis(300);

impl TcpMode {
    /// Every mode, in declaration order.
    pub const ALL: [TcpMode; 6] = [
        TcpMode::Echo,
        TcpMode::CloseAtOnce,
        TcpMode::ResetAfterRead,
        TcpMode::Crashed,
        TcpMode::Silent,
        TcpMode::SlowEcho,
    ];

    /// Lower-case name, as in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpMode::Echo => "echo",
            TcpMode::CloseAtOnce => "close-at-once",
            TcpMode::ResetAfterRead => "reset-after-read",
            TcpMode::Crashed => "crashed",
            TcpMode::Silent => "silent",
            TcpMode::SlowEcho => "slow-echo",
        }
    }

    fn pack(self) -> u8 {
        self as u8
    }

    fn unpack(packed: u8) -> TcpMode {
        TcpMode::ALL
            .get(usize::from(packed))
            .copied()
            .unwrap_or(TcpMode::Crashed)
    }
}

impl fmt::Display for TcpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A running raw TCP backend. Cloning is cheap; all clones control the same
/// server. The server stops when the last clone is dropped, or at
/// [`TcpBackend::shutdown`].
#[derive(Clone)]
pub struct TcpBackend {
    inner: Arc<Handle>,
}

/// Owned by the clones of [`TcpBackend`] only (tasks hold [`Shared`]), so
/// its `Drop` runs when the last clone goes away.
struct Handle {
    shared: Arc<Shared>,
    /// The accept loop while listening; `None` while crashed. An async
    /// mutex because mode changes await the loop's end and must not
    /// interleave.
    listening: tokio::sync::Mutex<Option<Listening>>,
}

/// A running accept loop.
struct Listening {
    /// Tells the loop to close the listener and drop every connection.
    stop: oneshot::Sender<()>,
    /// Finishes once all of that is done.
    task: JoinHandle<()>,
}

/// State shared by the handle, the accept loop and every connection.
struct Shared {
    /// Name in logs.
    name: String,
    /// Bound address; fixed after the first bind so that leaving `Crashed`
    /// comes back on the same port.
    addr: SocketAddr,
    /// The current [`TcpMode`], packed.
    mode: AtomicU8,
    /// TCP connections accepted.
    connections: AtomicU64,
    /// Bytes read from clients, in every mode.
    bytes_received: AtomicU64,
}

impl Shared {
    fn mode(&self) -> TcpMode {
        TcpMode::unpack(self.mode.load(Ordering::Acquire))
    }
}

impl TcpBackend {
    /// Binds `addr` (port 0 picks a free port) and starts serving in
    /// [`TcpMode::Echo`]. Must be called inside a Tokio runtime.
    pub async fn start(name: impl Into<String>, addr: SocketAddr) -> io::Result<TcpBackend> {
        let listener = bind(addr)?;
        let shared = Arc::new(Shared {
            name: name.into(),
            addr: listener.local_addr()?,
            mode: AtomicU8::new(TcpMode::Echo.pack()),
            connections: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
        });
        let listening = Listening::spawn(Arc::clone(&shared), listener);
        Ok(TcpBackend {
            inner: Arc::new(Handle {
                shared,
                listening: tokio::sync::Mutex::new(Some(listening)),
            }),
        })
    }

    /// The bound address (the real port when started on port 0). It stays
    /// the same across crashes.
    pub fn addr(&self) -> SocketAddr {
        self.inner.shared.addr
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// The current mode.
    pub fn mode(&self) -> TcpMode {
        self.inner.shared.mode()
    }

    /// Switches the mode and returns once the change is in effect: every
    /// connection accepted from now on gets the new mode. Entering
    /// [`TcpMode::Crashed`] returns after the listening socket is closed and
    /// every open connection has been dropped; leaving it returns once the
    /// same address is listening again.
    ///
    /// Fails only when leaving `Crashed` and the port cannot be bound again;
    /// the backend then stays crashed.
    pub async fn set_mode(&self, mode: TcpMode) -> io::Result<()> {
        let shared = &self.inner.shared;
        let mut listening = self.inner.listening.lock().await;
        match (mode == TcpMode::Crashed, listening.take()) {
            (true, Some(running)) => {
                shared.mode.store(mode.pack(), Ordering::Release);
                running.stop().await;
            }
            (false, None) => {
                let listener = rebind(shared.addr).await?;
                shared.mode.store(mode.pack(), Ordering::Release);
                *listening = Some(Listening::spawn(Arc::clone(shared), listener));
            }
            (_, running) => {
                shared.mode.store(mode.pack(), Ordering::Release);
                *listening = running;
            }
        }
        tracing::info!(backend = %shared.name, %mode, "tcp backend mode changed");
        Ok(())
    }

    /// Bytes read from clients so far, in every mode (what a
    /// `ResetAfterRead` node read before dying counts: it did receive them).
    pub fn bytes_received(&self) -> u64 {
        self.inner.shared.bytes_received.load(Ordering::Relaxed)
    }

    /// TCP connections accepted, in every mode but `Crashed`.
    pub fn connections_accepted(&self) -> u64 {
        self.inner.shared.connections.load(Ordering::Relaxed)
    }

    /// Sets both counters to zero.
    pub fn reset_counters(&self) {
        let shared = &self.inner.shared;
        shared.bytes_received.store(0, Ordering::Relaxed);
        shared.connections.store(0, Ordering::Relaxed);
    }

    /// Closes the listener and drops every connection, then returns. Other
    /// clones see the backend as [`TcpMode::Crashed`] afterwards (and could
    /// bring it back with [`TcpBackend::set_mode`]).
    pub async fn shutdown(self) {
        let shared = &self.inner.shared;
        let mut listening = self.inner.listening.lock().await;
        shared
            .mode
            .store(TcpMode::Crashed.pack(), Ordering::Release);
        if let Some(running) = listening.take() {
            running.stop().await;
        }
    }
}

impl fmt::Debug for TcpBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpBackend")
            .field("name", &self.name())
            .field("addr", &self.addr())
            .field("mode", &self.mode())
            .finish()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every
        // connection task: listener and sockets close without an await.
        if let Some(running) = self.listening.get_mut().take() {
            running.task.abort();
        }
    }
}

impl Listening {
    fn spawn(shared: Arc<Shared>, listener: TcpListener) -> Self {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(shared, listener, stopped));
        Listening { stop, task }
    }

    /// Closes the listener and drops every connection; returns when done.
    async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            if error.is_panic() {
                tracing::error!(%error, "tcp backend accept loop panicked");
            }
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, mut stop: oneshot::Receiver<()>) {
    // Connections live in this set so that a crash can drop all of them and
    // wait until they are gone.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    let mode = shared.mode();
                    connections.spawn(serve(Arc::clone(&shared), stream, mode));
                }
                Err(error) => {
                    tracing::warn!(backend = %shared.name, %error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// One accepted connection, in the mode it was accepted in.
async fn serve(shared: Arc<Shared>, mut stream: TcpStream, mode: TcpMode) {
    let result = match mode {
        TcpMode::Echo => echo(&shared, &mut stream).await,
        TcpMode::SlowEcho => {
            tokio::time::sleep(SLOW_FIRST_BYTE).await;
            echo(&shared, &mut stream).await
        }
        // Dropping the stream closes it (a reset if bytes are unread).
        TcpMode::CloseAtOnce | TcpMode::Crashed => Ok(()),
        TcpMode::Silent => {
            let mut buffer = vec![0; READ_BUFFER];
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => count(&shared, read),
                }
            }
        }
        TcpMode::ResetAfterRead => {
            let mut buffer = [0; READ_BUFFER];
            let read = stream.read(&mut buffer).await;
            if let Ok(read) = read {
                count(&shared, read);
            }
            reset(stream);
            return;
        }
    };
    if let Err(error) = result {
        tracing::debug!(backend = %shared.name, %error, "tcp backend connection ended with an error");
    }
}

/// Echo until the client closes its side, then close ours.
async fn echo(shared: &Shared, stream: &mut TcpStream) -> io::Result<()> {
    let mut buffer = vec![0; READ_BUFFER];
    loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return stream.shutdown().await;
        }
        count(shared, read);
        stream.write_all(&buffer[..read]).await?;
    }
}

fn count(shared: &Shared, bytes: usize) {
    let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
    shared.bytes_received.fetch_add(bytes, Ordering::Relaxed);
}

/// Close with an RST (`SO_LINGER` 0) instead of a FIN.
fn reset(stream: TcpStream) {
    if let Err(error) = SockRef::from(&stream).set_linger(Some(Duration::ZERO)) {
        tracing::debug!(%error, "could not set SO_LINGER 0; closing normally");
    }
    drop(stream);
}

/// Binds with `SO_REUSEADDR`, so the port can be bound again after a crash
/// while old connections sit in `TIME_WAIT`.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Binds the same address again, retrying briefly while it is in use.
async fn rebind(addr: SocketAddr) -> io::Result<TcpListener> {
    let give_up = tokio::time::Instant::now() + REBIND_PATIENCE;
    loop {
        match bind(addr) {
            Err(error)
                if error.kind() == io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < give_up =>
            {
                tokio::time::sleep(REBIND_PAUSE).await;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);
    const LIMIT: Duration = Duration::from_secs(10);

    async fn read_to_end(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        tokio::time::timeout(LIMIT, stream.read_to_end(&mut out))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "test read timed out"))??;
        Ok(out)
    }

    #[tokio::test]
    async fn echo_sends_every_byte_back_and_counts_them() {
        let backend = TcpBackend::start("t", LOOPBACK).await.unwrap();
        let mut stream = TcpStream::connect(backend.addr()).await.unwrap();
        stream.write_all(b"hello").await.unwrap();
        stream.shutdown().await.unwrap();
        assert_eq!(read_to_end(&mut stream).await.unwrap(), b"hello");
        assert_eq!(backend.bytes_received(), 5);
        assert_eq!(backend.connections_accepted(), 1);
    }

    #[tokio::test]
    async fn close_at_once_and_reset_after_read_never_answer() {
        let backend = TcpBackend::start("t", LOOPBACK).await.unwrap();
        backend.set_mode(TcpMode::CloseAtOnce).await.unwrap();
        let mut stream = TcpStream::connect(backend.addr()).await.unwrap();
        // A clean close or a reset, never data.
        assert!(
            read_to_end(&mut stream)
                .await
                .map_or(true, |data| data.is_empty())
        );

        backend.set_mode(TcpMode::ResetAfterRead).await.unwrap();
        let mut stream = TcpStream::connect(backend.addr()).await.unwrap();
        stream.write_all(b"abc").await.unwrap();
        let error = read_to_end(&mut stream).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(backend.bytes_received(), 3);
    }

    #[tokio::test]
    async fn a_crash_refuses_connects_and_drops_open_ones() {
        let backend = TcpBackend::start("t", LOOPBACK).await.unwrap();
        let mut open = TcpStream::connect(backend.addr()).await.unwrap();
        open.write_all(b"x").await.unwrap();
        let mut echoed = [0; 1];
        open.read_exact(&mut echoed).await.unwrap();
        backend.set_mode(TcpMode::Crashed).await.unwrap();
        assert!(
            read_to_end(&mut open)
                .await
                .map_or(true, |data| data.is_empty())
        );
        let refused = TcpStream::connect(backend.addr()).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);

        backend.set_mode(TcpMode::Echo).await.unwrap();
        assert!(TcpStream::connect(backend.addr()).await.is_ok());
        backend.shutdown().await;
    }
}
