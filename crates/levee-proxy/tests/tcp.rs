//! TCP listeners end to end: real sockets, testkit TCP backends. What a
//! client notices: its bytes come back intact, a dead endpoint is skipped,
//! an endpoint that closes before answering is replaced only in replay mode
//! and only before it has said anything, and shutdown drains.

mod common;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use levee_proxy::config::{BalancePolicy, Config, FirstByteTimeout, Protocol};
use levee_proxy::{RunningGateway, ShutdownOutcome};
use levee_testkit::tcp_backend::{TcpBackend, TcpMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const HELLO: &[u8] = b"hello levee\n";

async fn tcp_backends(modes: &[TcpMode]) -> Vec<TcpBackend> {
    let mut out = Vec::new();
    for (i, mode) in modes.iter().enumerate() {
        let backend = TcpBackend::start(format!("t{}", i + 1), LOOPBACK)
            .await
            .expect("tcp backend starts");
        backend.set_mode(*mode).await.expect("mode");
        out.push(backend);
    }
    out
}

fn addrs(backends: &[TcpBackend]) -> Vec<SocketAddr> {
    backends.iter().map(TcpBackend::addr).collect()
}

/// `common::config` with its listener "web" turned into a tcp listener,
/// round-robin, keeping `tcp_replay` bytes for replay.
fn tcp_config(endpoints: Vec<SocketAddr>, tcp_replay: u64) -> Config {
    let mut config = config(endpoints, BalancePolicy::RoundRobin);
    config.listeners[0].protocol = Protocol::Tcp;
    config.listeners[0].tcp_replay = tcp_replay;
    config
}

async fn connect(addr: SocketAddr) -> TcpStream {
    timeout(TEST_TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("connect within the test timeout")
        .expect("connect")
}

/// Read exactly `len` bytes: `Ok` with them, or the error (EOF, reset)
/// that came first.
async fn read_exactly(stream: &mut TcpStream, len: usize) -> io::Result<Vec<u8>> {
    let mut buffer = vec![0; len];
    timeout(TEST_TIMEOUT, stream.read_exact(&mut buffer))
        .await
        .expect("read within the test timeout")?;
    Ok(buffer)
}

async fn read_to_end(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    timeout(TEST_TIMEOUT, stream.read_to_end(&mut out))
        .await
        .expect("read within the test timeout")?;
    Ok(out)
}

/// Whether the peer closed (EOF) or reset the connection without sending a
/// byte: what a client of a dead TCP proxy connection sees.
async fn sees_close(stream: &mut TcpStream) -> bool {
    match read_to_end(stream).await {
        Ok(data) => data.is_empty(),
        Err(error) => matches!(
            error.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
        ),
    }
}

/// Connect, send `HELLO` at once, and read as many bytes back.
async fn hello(addr: SocketAddr) -> io::Result<Vec<u8>> {
    let mut stream = connect(addr).await;
    stream.write_all(HELLO).await?;
    read_exactly(&mut stream, HELLO.len()).await
}

fn metric(gateway: &RunningGateway, series: &str) -> u64 {
    let text = gateway.state().metrics.encode();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

fn sessions(gateway: &RunningGateway, outcome: &str) -> u64 {
    metric(
        gateway,
        &format!(r#"levee_tcp_sessions_total{{listener="web",outcome="{outcome}"}}"#),
    )
}

fn reconnects(gateway: &RunningGateway, reason: &str) -> u64 {
    metric(
        gateway,
        &format!(r#"levee_tcp_reconnects_total{{listener="web",reason="{reason}"}}"#),
    )
}

/// Wait (bounded) until a metric reaches `want`: sessions are counted when
/// they end, a moment after the client sees the end.
async fn eventually(gateway: &RunningGateway, read: impl Fn(&RunningGateway) -> u64, want: u64) {
    let give_up = tokio::time::Instant::now() + TEST_TIMEOUT;
    while read(gateway) != want && tokio::time::Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(read(gateway), want);
}

#[tokio::test]
async fn bytes_round_trip_through_a_tcp_listener() {
    let backends = tcp_backends(&[TcpMode::Echo]).await;
    let (gateway, addr) = start(tcp_config(addrs(&backends), 0)).await;

    let mut stream = connect(addr).await;
    stream.write_all(HELLO).await.expect("write");
    assert_eq!(
        read_exactly(&mut stream, HELLO.len()).await.expect("echo"),
        HELLO
    );
    // The client's half-close reaches the endpoint, whose close comes back.
    stream.write_all(b"bye\n").await.expect("write");
    stream.shutdown().await.expect("half-close");
    assert_eq!(read_to_end(&mut stream).await.expect("rest"), b"bye\n");
    assert_eq!(backends[0].bytes_received(), 16);
    eventually(&gateway, |g| sessions(g, "served"), 1).await;

    // /status names the listener's protocol.
    let status = get(&client(), gateway.admin_address(), "/status").await;
    let json: serde_json::Value = serde_json::from_str(&status.body).expect("JSON");
    assert_eq!(json["listeners"][0]["protocol"], "tcp");
    assert_eq!(json["listeners"][0]["address"], addr.to_string());
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_refused_endpoint_is_skipped() {
    let backends = tcp_backends(&[TcpMode::Echo, TcpMode::Crashed, TcpMode::Echo]).await;
    let (gateway, addr) = start(tcp_config(addrs(&backends), 0)).await;
    for i in 0..30 {
        let echoed = hello(addr)
            .await
            .unwrap_or_else(|error| panic!("connection {i}: {error}"));
        assert_eq!(echoed, HELLO, "connection {i}");
    }
    assert_eq!(
        backends[0].bytes_received() + backends[2].bytes_received(),
        30 * 12
    );
    assert!(reconnects(&gateway, "connect-failed") >= 1);
    let refused = format!(
        r#"levee_upstream_failures_total{{cluster="app",endpoint="{}",kind="connect-refused"}}"#,
        backends[1].addr()
    );
    assert!(
        metric(&gateway, &refused) >= 1,
        "health learns from TCP connects"
    );
    eventually(&gateway, |g| sessions(g, "served"), 30).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn when_no_endpoint_connects_the_client_connection_is_closed() {
    let backends = tcp_backends(&[TcpMode::Crashed, TcpMode::Crashed]).await;
    let (gateway, addr) = start(tcp_config(addrs(&backends), 0)).await;
    let mut stream = connect(addr).await;
    assert!(sees_close(&mut stream).await);
    eventually(&gateway, |g| sessions(g, "all-failed"), 1).await;
    assert_eq!(reconnects(&gateway, "connect-failed"), 1);
    gateway.shutdown().await;
}

#[tokio::test]
async fn replay_moves_a_connection_whose_endpoint_closed_before_answering() {
    let backends = tcp_backends(&[TcpMode::CloseAtOnce, TcpMode::Echo]).await;
    let (gateway, addr) = start(tcp_config(addrs(&backends), 64 * 1024)).await;
    // Round-robin puts the close-at-once endpoint first for each connection
    // (the move to the echo one advances the turn too).
    for i in 0..4 {
        let echoed = hello(addr)
            .await
            .unwrap_or_else(|error| panic!("connection {i}: {error}"));
        assert_eq!(echoed, HELLO, "connection {i}");
    }
    assert!(backends[0].connections_accepted() >= 1);
    // Every byte reached the echo endpoint once: replayed whole, never twice.
    assert_eq!(backends[1].bytes_received(), 4 * 12);
    assert_eq!(backends[1].connections_accepted(), 4);
    assert_eq!(
        reconnects(&gateway, "closed-before-answer"),
        backends[0].connections_accepted()
    );
    let resets = format!(
        r#"levee_upstream_failures_total{{cluster="app",endpoint="{}",kind="reset-before-response"}}"#,
        backends[0].addr()
    );
    assert_eq!(
        metric(&gateway, &resets),
        backends[0].connections_accepted()
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn replay_forwards_the_clients_half_close_to_the_next_endpoint() {
    let backends = tcp_backends(&[TcpMode::ResetAfterRead, TcpMode::Echo]).await;
    let (gateway, addr) = start(tcp_config(addrs(&backends), 64 * 1024)).await;
    for i in 0..3 {
        // The client has finished sending before any endpoint answers: the
        // next endpoint gets the bytes and the half-close, and its echo and
        // close come back.
        let mut stream = connect(addr).await;
        stream.write_all(HELLO).await.expect("write");
        stream.shutdown().await.expect("half-close");
        let echoed = read_to_end(&mut stream)
            .await
            .unwrap_or_else(|error| panic!("connection {i}: {error}"));
        assert_eq!(echoed, HELLO, "connection {i}");
    }
    assert!(backends[0].connections_accepted() >= 1);
    assert_eq!(backends[1].bytes_received(), 3 * 12);
    gateway.shutdown().await;
}

#[tokio::test]
async fn without_replay_an_endpoint_that_closes_closes_the_client() {
    let backends = tcp_backends(&[TcpMode::CloseAtOnce, TcpMode::Echo]).await;
    let (gateway, addr) = start(tcp_config(addrs(&backends), 0)).await;
    let (mut closed, mut echoed) = (0, 0);
    for _ in 0..4 {
        match hello(addr).await {
            Ok(data) => {
                assert_eq!(data, HELLO);
                echoed += 1;
            }
            Err(error) => {
                let kinds = [io::ErrorKind::UnexpectedEof, io::ErrorKind::ConnectionReset];
                assert!(kinds.contains(&error.kind()), "{error}");
                closed += 1;
            }
        }
    }
    // Each connection stayed where it was first sent: no retry.
    assert!(closed >= 1);
    assert_eq!(closed, backends[0].connections_accepted());
    assert_eq!(echoed, backends[1].connections_accepted());
    assert_eq!(reconnects(&gateway, "closed-before-answer"), 0);
    gateway.shutdown().await;
}

#[tokio::test]
async fn once_the_endpoint_has_answered_the_connection_never_moves() {
    let backends = tcp_backends(&[TcpMode::Echo, TcpMode::Echo]).await;
    let (gateway, addr) = start(tcp_config(addrs(&backends), 64 * 1024)).await;
    let mut stream = connect(addr).await;
    stream.write_all(HELLO).await.expect("write");
    assert_eq!(
        read_exactly(&mut stream, HELLO.len()).await.expect("echo"),
        HELLO
    );
    let (serving, other) = match backends[0].connections_accepted() {
        1 => (&backends[0], &backends[1]),
        _ => (&backends[1], &backends[0]),
    };
    serving.set_mode(TcpMode::Crashed).await.expect("crash");
    // The client hears the end; nothing is replayed elsewhere.
    assert!(sees_close(&mut stream).await);
    assert_eq!(other.connections_accepted(), 0);
    assert_eq!(other.bytes_received(), 0);
    assert_eq!(reconnects(&gateway, "closed-before-answer"), 0);
    // The endpoint's close was forwarded as a half-close: the session lasts
    // until the client closes too.
    drop(stream);
    assert_eq!(gateway.shutdown().await, ShutdownOutcome::Drained);
}

#[tokio::test]
async fn shutdown_stops_accepting_and_waits_for_open_connections() {
    let backends = tcp_backends(&[TcpMode::Echo]).await;
    let (gateway, addr) = start(tcp_config(addrs(&backends), 0)).await;
    let mut stream = connect(addr).await;
    stream.write_all(b"one\n").await.expect("write");
    assert_eq!(read_exactly(&mut stream, 4).await.expect("echo"), b"one\n");

    let shutdown = tokio::spawn(gateway.shutdown());
    // The listener closes...
    let give_up = tokio::time::Instant::now() + TEST_TIMEOUT;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < give_up, "listener still open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...while the open connection still works, and ends the drain.
    stream.write_all(b"two\n").await.expect("write");
    stream.shutdown().await.expect("half-close");
    assert_eq!(read_to_end(&mut stream).await.expect("rest"), b"two\n");
    let outcome = timeout(TEST_TIMEOUT, shutdown)
        .await
        .expect("shutdown within the test timeout")
        .expect("shutdown task");
    assert_eq!(outcome, ShutdownOutcome::Drained);
}

#[tokio::test]
async fn a_drain_timeout_cuts_open_connections() {
    let backends = tcp_backends(&[TcpMode::Echo]).await;
    let mut config = tcp_config(addrs(&backends), 0);
    config.runtime.drain_timeout = Duration::from_millis(200);
    let (gateway, addr) = start(config).await;
    let mut stream = connect(addr).await;
    stream.write_all(b"one\n").await.expect("write");
    assert_eq!(read_exactly(&mut stream, 4).await.expect("echo"), b"one\n");
    let outcome = timeout(TEST_TIMEOUT, gateway.shutdown())
        .await
        .expect("shutdown within the test timeout");
    assert_eq!(outcome, ShutdownOutcome::DrainTimedOut);
    assert!(sees_close(&mut stream).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_endpoint_is_left_after_the_first_byte_timeout() {
    // t1 accepts and reads but never answers (a stopped process whose
    // kernel still accepts); t2 echoes.
    let backends = tcp_backends(&[TcpMode::Silent, TcpMode::Echo]).await;
    let mut config = tcp_config(addrs(&backends), 64 * 1024);
    let deadline = Duration::from_millis(300);
    config.listeners[0].first_byte_timeout = Some(FirstByteTimeout::Fixed(deadline));
    let (gateway, addr) = start(config).await;

    let mut slowest = Duration::ZERO;
    let mut ejected = false;
    for _ in 0..20 {
        let started = tokio::time::Instant::now();
        assert_eq!(hello(addr).await.expect("echo"), HELLO);
        slowest = slowest.max(started.elapsed());
        let status = gateway.state().cluster_status();
        if status[0].endpoints[0].state == "ejected" {
            ejected = true;
            assert_eq!(
                status[0].endpoints[0].reason.as_deref(),
                Some("5 consecutive timeouts")
            );
            break;
        }
    }
    // Round robin sent every other session to the silent node first: each
    // moved once its deadline passed, the client's bytes replayed, until
    // outlier detection took the node out.
    assert!(ejected, "five first-byte timeouts in a row eject t1");
    assert_eq!(reconnects(&gateway, "first-byte-timeout"), 5);
    assert!(
        slowest < deadline * 2 + Duration::from_millis(500),
        "slowest session {slowest:?}"
    );
    assert_eq!(backends[0].bytes_received(), 5 * HELLO.len() as u64);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_endpoint_with_nowhere_else_to_go_is_waited_for() {
    let backends = tcp_backends(&[TcpMode::Silent]).await;
    let mut config = tcp_config(addrs(&backends), 64 * 1024);
    config.listeners[0].first_byte_timeout =
        Some(FirstByteTimeout::Fixed(Duration::from_millis(100)));
    let (gateway, addr) = start(config).await;
    let mut stream = connect(addr).await;
    stream.write_all(HELLO).await.expect("write");
    // Past the deadline the session stays: nothing comes back, nothing
    // closes, and the node got the bytes once.
    let mut byte = [0; 1];
    let waited = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut byte)).await;
    assert!(waited.is_err(), "still open and silent: {waited:?}");
    assert_eq!(backends[0].bytes_received(), HELLO.len() as u64);
    drop(stream);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_alive_endpoint_is_not_abandoned() {
    // t1 answers 300 ms late; the deadline is 1 s.
    let backends = tcp_backends(&[TcpMode::SlowEcho, TcpMode::Echo]).await;
    let mut config = tcp_config(addrs(&backends), 64 * 1024);
    config.listeners[0].first_byte_timeout = Some(FirstByteTimeout::Fixed(Duration::from_secs(1)));
    let (gateway, addr) = start(config).await;
    for _ in 0..4 {
        assert_eq!(hello(addr).await.expect("echo"), HELLO);
    }
    assert_eq!(reconnects(&gateway, "first-byte-timeout"), 0);
    // Every first byte waited for is measured.
    let text = gateway.state().metrics.encode();
    assert!(
        text.contains(r#"levee_tcp_first_byte_seconds_count{listener="web"} 4"#),
        "{text}"
    );
    assert_eq!(backends[0].connections_accepted(), 2, "round robin: half");
    assert_eq!(backends[1].connections_accepted(), 2);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_sessions_whose_first_bytes_match_are_replayed() {
    // git://: a read (upload-pack) may be repeated, a write (receive-pack)
    // never. t1 is silent, t2 echoes; round robin starts with t1.
    let backends = tcp_backends(&[TcpMode::Silent, TcpMode::Echo]).await;
    let mut config = tcp_config(addrs(&backends), 64 * 1024);
    config.listeners[0].first_byte_timeout =
        Some(FirstByteTimeout::Fixed(Duration::from_millis(200)));
    config.listeners[0].replay_first_bytes_match = vec![b"????git-upload-pack".to_vec()];
    let (gateway, addr) = start(config).await;

    let push = b"0033git-receive-pack /repo.git\0host=x\0";
    let mut write = connect(addr).await;
    write.write_all(push).await.expect("write");
    let mut byte = [0; 1];
    let waited = tokio::time::timeout(Duration::from_millis(700), write.read(&mut byte)).await;
    assert!(waited.is_err(), "a write stays on its endpoint: {waited:?}");
    assert_eq!(backends[1].bytes_received(), 0, "never sent twice");

    // t2's turn, then t1's again: the read moves and is answered.
    assert_eq!(hello(addr).await.expect("echo"), HELLO);
    let fetch = b"0032git-upload-pack /repo.git\0host=x\0";
    let mut read = connect(addr).await;
    read.write_all(fetch).await.expect("write");
    assert_eq!(
        read_exactly(&mut read, fetch.len()).await.expect("echo"),
        fetch
    );
    assert_eq!(reconnects(&gateway, "first-byte-timeout"), 1);
    drop(write);
    drop(read);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_first_bytes_forbid_replay_is_not_moved_after_a_close() {
    // t1 resets once it has read; a push must not be sent to t2 as well.
    let backends = tcp_backends(&[TcpMode::ResetAfterRead, TcpMode::Echo]).await;
    let mut config = tcp_config(addrs(&backends), 64 * 1024);
    config.listeners[0].replay_first_bytes_match = vec![b"????git-upload-pack".to_vec()];
    let (gateway, addr) = start(config).await;
    let mut write = connect(addr).await;
    write
        .write_all(b"0033git-receive-pack /repo.git\0host=x\0")
        .await
        .expect("write");
    assert!(sees_close(&mut write).await, "the client sees the close");
    eventually(&gateway, |g| sessions(g, "not-replayed"), 1).await;
    assert_eq!(backends[1].bytes_received(), 0, "never sent twice");
    assert_eq!(reconnects(&gateway, "closed-before-answer"), 0);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adaptive_deadline_follows_the_time_to_first_byte() {
    // Learned on a fast endpoint, the deadline sits at its floor (100 ms,
    // far below the 2 s ceiling); then a silent node joins by reload and
    // sessions sent to it move after about the floor.
    let backends = tcp_backends(&[TcpMode::Echo, TcpMode::Silent]).await;
    let mut config = tcp_config(vec![backends[0].addr()], 64 * 1024);
    config.clusters[0].slow_start = Duration::ZERO;
    config.listeners[0].first_byte_timeout = Some(FirstByteTimeout::Adaptive {
        floor: Duration::from_millis(100),
        ceiling: Duration::from_secs(2),
    });
    let (gateway, addr) = start(config.clone()).await;
    for _ in 0..25 {
        assert_eq!(hello(addr).await.expect("echo"), HELLO);
    }
    config.clusters[0]
        .endpoints
        .push(endpoint(backends[1].addr()));
    gateway
        .reload(config)
        .await
        .expect("reload adds the silent node");
    let mut slowest = Duration::ZERO;
    for _ in 0..6 {
        let started = tokio::time::Instant::now();
        assert_eq!(hello(addr).await.expect("echo"), HELLO);
        slowest = slowest.max(started.elapsed());
    }
    assert!(reconnects(&gateway, "first-byte-timeout") >= 1);
    assert!(
        slowest < Duration::from_millis(700),
        "the deadline followed the fast node, not the 2 s ceiling: {slowest:?}"
    );
    gateway.shutdown().await;
}

#[test]
fn first_byte_timeout_is_a_duration_or_adaptive_within_bounds() {
    let source = |value: &str, bounds: &str| {
        format!(
            "[[listener]]\nname = \"git\"\nlisten = \"127.0.0.1:9418\"\nprotocol = \"tcp\"\ncluster = \"git\"\ntcp_replay = \"64KiB\"\nfirst_byte_timeout = {value}\n{bounds}\n[[cluster]]\nname = \"git\"\nendpoints = [\"127.0.0.1:9419\"]\n"
        )
    };
    let parse =
        |value: &str, bounds: &str| Config::from_toml_str(&source(value, bounds), "levee.toml");
    let timeout = |config: Config| config.listeners[0].first_byte_timeout;
    assert_eq!(
        timeout(parse("\"2s\"", "").expect("fixed")),
        Some(FirstByteTimeout::Fixed(Duration::from_secs(2)))
    );
    assert_eq!(
        timeout(parse("\"adaptive\"", "").expect("adaptive")),
        Some(FirstByteTimeout::Adaptive {
            floor: Duration::from_millis(250),
            ceiling: Duration::from_secs(10)
        })
    );
    assert_eq!(
        timeout(
            parse(
                "\"adaptive\"",
                "first_byte_timeout_bounds = [\"50ms\", \"3s\"]"
            )
            .expect("bounds")
        ),
        Some(FirstByteTimeout::Adaptive {
            floor: Duration::from_millis(50),
            ceiling: Duration::from_secs(3)
        })
    );
    let error = |value: &str, bounds: &str| parse(value, bounds).expect_err("rejected").to_string();
    assert!(
        error(
            "\"adaptive\"",
            "first_byte_timeout_bounds = [\"3s\", \"1s\"]"
        )
        .contains("must not be longer")
    );
    assert!(
        error("\"adaptive\"", "first_byte_timeout_bounds = [\"3s\"]")
            .contains("give two durations")
    );
    assert!(
        error("\"2s\"", "first_byte_timeout_bounds = [\"1s\", \"3s\"]")
            .contains("only with first_byte_timeout = \"adaptive\"")
    );
    assert!(error("\"soon\"", "").contains("first_byte_timeout"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_slower_than_usual_is_hedged_and_the_first_answer_wins() {
    // Learned on a fast node, the hedge delay sits at its 50 ms floor; a
    // silent node then joins by reload. Sessions sent to it get a second
    // endpoint after about 50 ms, which answers: no session waits on it,
    // and it is not blamed (slower is not broken; no deadline is set).
    let backends = tcp_backends(&[TcpMode::Echo, TcpMode::Silent]).await;
    let mut config = tcp_config(vec![backends[0].addr()], 64 * 1024);
    config.clusters[0].slow_start = Duration::ZERO;
    config.listeners[0].tcp_hedge = true;
    let (gateway, addr) = start(config.clone()).await;
    for _ in 0..25 {
        assert_eq!(hello(addr).await.expect("echo"), HELLO);
    }
    config.clusters[0]
        .endpoints
        .push(endpoint(backends[1].addr()));
    gateway
        .reload(config)
        .await
        .expect("reload adds the silent node");
    let mut slowest = Duration::ZERO;
    for _ in 0..6 {
        let started = tokio::time::Instant::now();
        assert_eq!(hello(addr).await.expect("echo"), HELLO);
        slowest = slowest.max(started.elapsed());
    }
    assert!(reconnects(&gateway, "hedge") >= 1);
    assert!(
        slowest < Duration::from_millis(500),
        "slowest session {slowest:?}"
    );
    assert!(
        backends[1].bytes_received() > 0,
        "the silent node got sessions first"
    );
    let status = gateway.state().cluster_status();
    assert_ne!(
        status[0].endpoints[1].state, "ejected",
        "a lost hedge race blames nobody"
    );
    gateway.shutdown().await;
}

#[test]
fn tcp_hedge_needs_bytes_to_replay() {
    let source = "[[listener]]\nname = \"git\"\nlisten = \"127.0.0.1:9418\"\nprotocol = \"tcp\"\ncluster = \"git\"\ntcp_hedge = true\n\n[[cluster]]\nname = \"git\"\nendpoints = [\"127.0.0.1:9419\"]\n";
    let error = Config::from_toml_str(source, "levee.toml")
        .expect_err("rejected")
        .to_string();
    assert!(error.contains("tcp_hedge: needs tcp_replay"), "{error}");
    let with_replay = source.replace(
        "tcp_hedge = true",
        "tcp_hedge = true\ntcp_replay = \"64KiB\"",
    );
    let config = Config::from_toml_str(&with_replay, "levee.toml").expect("valid");
    assert!(config.listeners[0].tcp_hedge);
}

/// A server-first endpoint, shaped like SSH: its version banner at once,
/// then an echo.
async fn banner_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(LOOPBACK).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if stream.write_all(b"SSH-2.0-levee_test\r\n").await.is_err() {
                    return;
                }
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_client_lands_on_the_node_that_sends_its_banner() {
    // SSH: the server speaks first. A node that accepts and never sends its
    // banner holds no session yet, so moving is always safe: the client has
    // sent nothing (replay_first_bytes_match does not even apply).
    let silent = tcp_backends(&[TcpMode::Silent]).await;
    let answering = banner_server().await;
    let mut config = tcp_config(vec![silent[0].addr(), answering], 64 * 1024);
    let deadline = Duration::from_millis(300);
    config.listeners[0].first_byte_timeout = Some(FirstByteTimeout::Fixed(deadline));
    config.listeners[0].replay_first_bytes_match = vec![b"SSH-2.0-".to_vec()];
    let (gateway, addr) = start(config).await;
    for _ in 0..4 {
        let started = tokio::time::Instant::now();
        let mut stream = connect(addr).await;
        let banner = read_exactly(&mut stream, 20).await.expect("the banner");
        assert_eq!(&banner, b"SSH-2.0-levee_test\r\n");
        assert!(started.elapsed() < deadline * 3, "{:?}", started.elapsed());
        stream.write_all(HELLO).await.expect("write");
        assert_eq!(
            read_exactly(&mut stream, HELLO.len()).await.expect("echo"),
            HELLO
        );
    }
    assert!(reconnects(&gateway, "first-byte-timeout") >= 1);
    gateway.shutdown().await;
}
