//! A client can never exhaust levee: silent connections, a low file
//! descriptor limit, running out of descriptors. Each test runs the real
//! binary under `ulimit -n` and floods it from this process.
//!
//! Plain threads and blocking sockets: levee runs in its own process here,
//! there is no runtime whose time could be paused.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A backend that answers every request `200 ok`, keep-alive, one thread
/// per connection; stops when dropped.
struct Backend {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Backend {
    fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let address = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        thread::spawn(move || serve_backend(stream));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Backend { address, stop }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_backend(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = find(&buffer, b"\r\n\r\n") {
            buffer.drain(..end + 4);
            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            if stream.write_all(reply).is_err() {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// This process opens a thousand sockets and more.
fn raise_own_limit() {
    let raised = rlimit::increase_nofile_limit(8192).expect("raise the test's own fd limit");
    assert!(
        raised >= 4096,
        "the test needs 4096 descriptors, the hard limit allows {raised}"
    );
}

/// `levee run` under `ulimit -n fd_limit`, stopped when dropped.
struct Levee {
    child: Child,
    listener: SocketAddr,
    admin: SocketAddr,
    log: PathBuf,
}

impl Levee {
    fn start(test: &str, fd_limit: u32, listener_extra: &str, backend: SocketAddr) -> Levee {
        let dir = std::env::temp_dir().join(format!("levee-limits-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let listener: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let config = format!(
            "[admin]\nlisten = \"{admin}\"\n[runtime]\ndrain_timeout = \"1s\"\n\n\
             [[listener]]\nname = \"web\"\nlisten = \"{listener}\"\ncluster = \"app\"\n{listener_extra}\n\n\
             [[cluster]]\nname = \"app\"\nendpoints = [\"{backend}\"]\n"
        );
        let path = dir.join("levee.toml");
        std::fs::write(&path, config).expect("write config");
        let log = dir.join("levee.log");
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {fd_limit} && exec \"$0\" run -c \"$1\""))
            .arg(env!("CARGO_BIN_EXE_levee"))
            .arg(&path)
            .env("LEVEE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start levee");
        let levee = Levee {
            child,
            listener,
            admin,
            log,
        };
        let started = Instant::now();
        while get(levee.admin, "/ready", Duration::from_millis(500)) != Some(200) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "levee did not become ready:\n{}",
                levee.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
        levee
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Levee {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on a fresh connection; the status, or `None` if there was
/// no complete answer within `timeout`.
fn get(address: SocketAddr, path: &str, timeout: Duration) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&address, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Whether levee has closed `stream` (EOF or reset) within `within`.
fn closed_by_peer(stream: &mut TcpStream, within: Duration) -> bool {
    let _ = stream.set_read_timeout(Some(within));
    let mut byte = [0u8; 64];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => !matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

fn metric(levee: &Levee, name_and_labels: &str) -> f64 {
    let mut stream = TcpStream::connect(levee.admin).expect("admin");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
    )
    .expect("write");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.lines()
        .find(|line| line.starts_with(name_and_labels))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn silent_connections_at_a_low_fd_limit_starve_neither_clients_nor_the_admin_listener() {
    raise_own_limit();
    let backend = Backend::start();
    let levee = Levee::start(
        "silent",
        1024,
        "header_read_timeout = \"2s\"",
        backend.address,
    );
    // 1,000 connections that never send a byte: more than levee's share of
    // 1,024 descriptors (its default max_connections leaves room for
    // upstream connections and the admin listener).
    let mut silent: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(levee.listener).expect("connect"))
        .collect();
    thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        assert_eq!(
            get(levee.admin, "/live", Duration::from_secs(2)),
            Some(200),
            "admin:\n{}",
            levee.log()
        );
        assert_eq!(
            get(levee.listener, "/", Duration::from_secs(2)),
            Some(200),
            "client:\n{}",
            levee.log()
        );
    }
    // Every silent connection is closed: evicted to make room, or at the
    // header read timeout.
    let deadline = Instant::now() + Duration::from_secs(6);
    let still_open = silent
        .iter_mut()
        .map(|stream| {
            let left = deadline.saturating_duration_since(Instant::now());
            closed_by_peer(stream, left.max(Duration::from_millis(10)))
        })
        .filter(|closed| !closed)
        .count();
    assert_eq!(
        still_open, 0,
        "silent connections still open after the header read timeout"
    );
    assert!(
        metric(
            &levee,
            "levee_connections_closed_total{listener=\"web\",reason=\"evicted\"}"
        ) > 0.0
    );
    assert!(
        metric(
            &levee,
            "levee_connections_closed_total{listener=\"web\",reason=\"header-timeout\"}"
        ) > 0.0
    );
    let log = levee.log();
    assert!(
        !log.contains("Too many open files"),
        "levee ran out of descriptors:\n{log}"
    );
    // Served again at once.
    assert_eq!(get(levee.listener, "/", Duration::from_secs(2)), Some(200));
}

#[test]
fn out_of_descriptors_new_connections_are_closed_at_once_and_told_once() {
    raise_own_limit();
    let backend = Backend::start();
    // max_connections far above what 256 descriptors allow: accept itself
    // fails with EMFILE.
    let levee = Levee::start(
        "emfile",
        256,
        "header_read_timeout = \"2s\"\nmax_connections = 5000",
        backend.address,
    );
    let _silent: Vec<TcpStream> = (0..400)
        .map(|_| TcpStream::connect(levee.listener).expect("connect"))
        .collect();
    thread::sleep(Duration::from_millis(300));
    // A new connection is not left hanging in the queue: it is closed at
    // once.
    let started = Instant::now();
    let mut late = TcpStream::connect(levee.listener).expect("connect");
    assert!(
        closed_by_peer(&mut late, Duration::from_secs(1)),
        "a connection was left hanging"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    // Once the silent ones time out, levee serves again.
    thread::sleep(Duration::from_millis(2500));
    let served = (0..20).any(|_| {
        thread::sleep(Duration::from_millis(100));
        get(levee.listener, "/", Duration::from_secs(1)) == Some(200)
    });
    assert!(served, "levee did not recover:\n{}", levee.log());
    let shed = "levee_connections_closed_total{listener=\"web\",reason=\"out-of-descriptors\"}";
    assert!(metric(&levee, shed) > 0.0);
    let log = levee.log();
    let told = log
        .lines()
        .filter(|line| line.contains("cannot accept"))
        .count();
    assert!(
        (1..=3).contains(&told),
        "expected one line per burst, got {told}:\n{log}"
    );
    assert!(
        log.contains("needs more file descriptors than the limit"),
        "{log}"
    );
}
