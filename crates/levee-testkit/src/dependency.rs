//! Dependencies of the node levee protects, for self-health tests: a fake
//! memcached that lies, and real `redis-server` and `memcached` processes.
//!
//! The real servers are started on free loopback ports and killed when
//! their handle drops. A test that needs one never skips: if the binary is
//! missing it fails with a message saying what to install
//! (`scripts/test.sh` installs both).

use std::io;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long a started server may take to accept connections.
const START_PATIENCE: Duration = Duration::from_secs(10);

/// A memcached that accepts every `set` (`STORED`) and answers every `get`
/// with a miss: what a cache client "mitigating flapping" looks like from
/// the outside. A naive health check passes against it; levee's probe must
/// not.
pub struct FakeMemcached {
    address: SocketAddr,
    connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl FakeMemcached {
    /// Listen on a free loopback port.
    pub async fn start() -> io::Result<FakeMemcached> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let connections = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve_fake(stream));
            }
        });
        Ok(FakeMemcached {
            address,
            connections,
            task,
        })
    }

    /// Connections accepted so far (a probe opens one per run).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for FakeMemcached {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_fake(stream: TcpStream) {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match stream.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let reply: &[u8] = match fields.as_slice() {
            ["set", _key, _flags, _ttl, length, ..] => {
                // Swallow the data block, then claim it was stored.
                let length: usize = length.parse().unwrap_or(0);
                let mut data = vec![0; length + 2];
                if stream.read_exact(&mut data).await.is_err() {
                    return;
                }
                b"STORED\r\n"
            }
            ["get", ..] => b"END\r\n",
            _ => b"ERROR\r\n",
        };
        if stream.get_mut().write_all(reply).await.is_err() {
            return;
        }
    }
}

/// Which real server.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Redis,
    Memcached,
}

impl Kind {
    fn binary(self) -> &'static str {
        match self {
            Kind::Redis => "redis-server",
            Kind::Memcached => "memcached",
        }
    }

    fn command(self, port: u16) -> Command {
        let mut command = Command::new(self.binary());
        match self {
            Kind::Redis => {
                command.args(["--port", &port.to_string(), "--bind", "127.0.0.1"]);
                command.args(["--save", "", "--appendonly", "no"]);
            }
            Kind::Memcached => {
                // `-u root` only matters when run as root, which memcached
                // otherwise refuses (CI containers run as root).
                command.args(["-p", &port.to_string(), "-l", "127.0.0.1", "-U", "0"]);
                command.args(["-u", "root"]);
            }
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }
}

/// A real server process on a loopback port, killed on drop.
pub struct RealServer {
    kind: Kind,
    address: SocketAddr,
    child: Option<Child>,
}

impl RealServer {
    /// Start `redis-server` on a free port. Panics, naming the package to
    /// install, if the binary is missing.
    pub async fn redis() -> RealServer {
        RealServer::start(Kind::Redis).await
    }

    /// Start `memcached` on a free port. Panics, naming the package to
    /// install, if the binary is missing.
    pub async fn memcached() -> RealServer {
        RealServer::start(Kind::Memcached).await
    }

    async fn start(kind: Kind) -> RealServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let mut server = RealServer {
            kind,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            child: None,
        };
        server.restart().await;
        server
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Kill the process (connections are refused from now on).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port and wait until it accepts
    /// connections.
    pub async fn restart(&mut self) {
        self.stop();
        let binary = self.kind.binary();
        let child = self.kind.command(self.address.port()).spawn().unwrap_or_else(|error| {
            panic!(
                "cannot start {binary} ({error}): install it (Debian: apt-get install {binary}; scripts/test.sh does this)"
            )
        });
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + START_PATIENCE;
        loop {
            if TcpStream::connect(self.address).await.is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("{binary} on {} exited at start: {status}", self.address);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{binary} did not accept connections on {} within {START_PATIENCE:?}",
                self.address
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        self.stop();
    }
}
