//! What a client connection may and may not do: header-read and idle
//! timeouts, max_connections and eviction, idle HTTP/1 connections parked
//! and served again, HTTP/2, and a graceful stop that resets nothing.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use levee_proxy::ShutdownOutcome;
use levee_testkit::backend::Mode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// One listener "web" in front of a healthy backend, with the listener's
/// client limits changed by `limits`.
async fn gateway_with(
    limits: impl FnOnce(&mut levee_proxy::config::ListenerSettings),
) -> (
    levee_proxy::RunningGateway,
    SocketAddr,
    Vec<levee_testkit::backend::Backend>,
) {
    let nodes = backends(1).await;
    let mut config = config(
        nodes.iter().map(|b| b.addr()).collect(),
        levee_proxy::config::BalancePolicy::RoundRobin,
    );
    limits(&mut config.listeners[0]);
    let (gateway, addr) = start(config).await;
    (gateway, addr, nodes)
}

/// Read until the peer closes (or `limit` passes); what was read and
/// whether the peer closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&received).into_owned(), closed)
}

/// One response read off a kept-alive connection (content-length bodies).
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(TEST_TIMEOUT, async {
        loop {
            let text = String::from_utf8_lossy(&received).into_owned();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let length = text[..head_end]
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())
                            .flatten()
                    })
                    .unwrap_or(0);
                if received.len() >= head_end + 4 + length {
                    return text;
                }
            }
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed mid-response: {text:?}");
            received.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("a response within the test timeout")
}

fn closed_count(gateway: &levee_proxy::RunningGateway, reason: &str) -> f64 {
    let text = gateway.state().metrics.encode();
    let prefix = format!("levee_connections_closed_total{{listener=\"web\",reason=\"{reason}\"}}");
    text.lines()
        .find(|line| line.starts_with(&prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_header_timeout_without_an_answer() {
    let (gateway, addr, _nodes) =
        gateway_with(|l| l.header_read_timeout = Duration::from_millis(500)).await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let (received, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(closed, "a silent connection stayed open");
    assert_eq!(
        received, "",
        "nothing is sent to a client that said nothing"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(closed_count(&gateway, "header-timeout"), 1.0);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_head_sent_byte_by_byte_gets_408_at_the_header_timeout() {
    let (gateway, addr, _nodes) =
        gateway_with(|l| l.header_read_timeout = Duration::from_millis(800)).await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // A byte every 100 ms: the timeout counts the whole head, not the
    // silence between bytes.
    let head =
        b"GET / HTTP/1.1\r\nhost: example\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut closed_early = false;
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            closed_early = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    let (received, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(closed || closed_early);
    assert!(
        received.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{received:?}"
    );
    assert!(received.contains("connection: close"), "{received:?}");
    assert!(
        received.contains(r#""error":"request timeout""#),
        "{received:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_later_head_left_unfinished_on_a_keep_alive_connection_gets_408() {
    let (gateway, addr, _nodes) =
        gateway_with(|l| l.header_read_timeout = Duration::from_millis(400)).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    for _ in 0..3 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: example\r\n\r\n")
            .await
            .expect("write");
        assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    }
    // The fourth head stops halfway.
    let started = Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: exa")
        .await
        .expect("write");
    let (received, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    let waited = started.elapsed();
    assert!(closed, "the connection stayed open");
    assert!(
        received.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{received:?}"
    );
    // Due 400 ms after a check first saw it: checks come every 100 ms.
    assert!(
        waited >= Duration::from_millis(380) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    assert_eq!(closed_count(&gateway, "header-timeout"), 1.0);
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_parked_served_again_and_closed_at_the_idle_timeout() {
    let (gateway, addr, nodes) = gateway_with(|l| {
        l.header_read_timeout = Duration::from_millis(400);
        l.idle_timeout = Duration::from_millis(1500);
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = b"GET / HTTP/1.1\r\nhost: example\r\n\r\n";
    stream.write_all(request).await.expect("write");
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Quiet for longer than it takes to park (a quarter of the header timeout),
    // then two pipelined requests and a POST on the same connection.
    tokio::time::sleep(Duration::from_millis(700)).await;
    stream
        .write_all(
            b"GET /a HTTP/1.1\r\nhost: example\r\n\r\nGET /b HTTP/1.1\r\nhost: example\r\n\r\n",
        )
        .await
        .expect("write");
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    stream
        .write_all(b"POST /count HTTP/1.1\r\nhost: example\r\ncontent-length: 5\r\n\r\nhello")
        .await
        .expect("write");
    let answer = read_response(&mut stream).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.trim_end().ends_with('5'),
        "{answer:?}"
    );
    // The idle timeout (1.5 s) is not the header timeout (0.4 s).
    let started = Instant::now();
    let (received, closed) = read_until_closed(&mut stream, Duration::from_secs(4)).await;
    assert!(closed && received.is_empty(), "{received:?}");
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(1300) && idle < Duration::from_millis(3000),
        "{idle:?}"
    );
    assert_eq!(closed_count(&gateway, "idle-timeout"), 1.0);
    assert_eq!(
        nodes[0].connections_accepted(),
        1,
        "levee kept its upstream connection too"
    );
    gateway.shutdown().await;
}

/// `levee_connections_parked` of listener "web".
fn parked_count(gateway: &levee_proxy::RunningGateway) -> f64 {
    let text = gateway.state().metrics.encode();
    text.lines()
        .find(|line| line.starts_with("levee_connections_parked{listener=\"web\"}"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(-1.0)
}

/// Wait (up to 3 s) until `levee_connections_parked` says `count`.
async fn until_parked(gateway: &levee_proxy::RunningGateway, count: f64) {
    let started = Instant::now();
    while parked_count(gateway) != count {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "parked: {} (want {count})",
            parked_count(gateway)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn parked_connections_are_served_again_evicted_at_the_limit_and_closed_by_a_stop() {
    parked_connections_round_trip().await;
}

/// The same on two worker threads: connections park from one thread and are
/// served again, evicted or closed from another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_connections_round_trip_on_two_worker_threads() {
    parked_connections_round_trip().await;
}

async fn parked_connections_round_trip() {
    let (gateway, addr, nodes) = gateway_with(|l| {
        // Parked after a quarter of it: 100 ms.
        l.header_read_timeout = Duration::from_millis(400);
        l.idle_timeout = Duration::from_secs(30);
        l.max_connections = Some(20);
    })
    .await;
    let request = b"GET / HTTP/1.1\r\nhost: example\r\n\r\n";
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("write");
        assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
        clients.push(stream);
    }
    until_parked(&gateway, 20.0).await;
    // Each one is served again when it speaks, and parks again.
    for stream in clients.iter_mut().rev() {
        stream.write_all(request).await.expect("write");
        assert!(read_response(stream).await.starts_with("HTTP/1.1 200"));
    }
    // Who the client is was read again from the socket.
    let seen = nodes[0].last_request_headers().expect("a request");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    until_parked(&gateway, 20.0).await;

    // At the limit, a new client takes the place of the oldest parked one.
    let mut newcomer = TcpStream::connect(addr).await.expect("connect");
    newcomer.write_all(request).await.expect("write");
    assert!(
        read_response(&mut newcomer)
            .await
            .starts_with("HTTP/1.1 200")
    );
    let (_, oldest_closed) = read_until_closed(&mut clients[0], Duration::from_secs(2)).await;
    assert!(oldest_closed, "the oldest parked connection made room");
    assert_eq!(closed_count(&gateway, "evicted"), 1.0);
    clients[1].write_all(request).await.expect("write");
    assert!(
        read_response(&mut clients[1])
            .await
            .starts_with("HTTP/1.1 200")
    );

    // A stop closes parked connections at once, not at their idle timeout.
    until_parked(&gateway, 20.0).await;
    let started = Instant::now();
    let outcome = tokio::time::timeout(TEST_TIMEOUT, gateway.shutdown())
        .await
        .expect("shutdown within the test timeout");
    assert_eq!(outcome, ShutdownOutcome::Drained);
    for stream in &mut clients[1..] {
        let (received, closed) = read_until_closed(stream, Duration::from_secs(2)).await;
        assert!(closed && received.is_empty(), "{received:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn at_max_connections_a_new_client_replaces_the_oldest_silent_connection() {
    let (gateway, addr, _nodes) = gateway_with(|l| l.max_connections = Some(3)).await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = client();
    for _ in 0..3 {
        assert_eq!(get(&client, addr, "/").await.status, 200);
    }
    let (_, oldest_closed) = read_until_closed(&mut silent[0], Duration::from_secs(1)).await;
    assert!(oldest_closed, "the oldest silent connection made room");
    assert!(closed_count(&gateway, "evicted") >= 1.0);
    let status = gateway.state().listener_status();
    assert_eq!(status[0].max_connections, 3);
    assert!(
        status[0].open_connections <= 3,
        "{}",
        status[0].open_connections
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn at_max_connections_with_every_connection_busy_a_new_one_is_closed_at_once() {
    let (gateway, addr, nodes) = gateway_with(|l| l.max_connections = Some(2)).await;
    nodes[0].set_mode(Mode::Hung).await.expect("mode");
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: example\r\n\r\n")
            .await
            .expect("write");
        busy.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let mut late = TcpStream::connect(addr).await.expect("connect");
    let (_, closed) = read_until_closed(&mut late, Duration::from_secs(2)).await;
    assert!(
        closed && started.elapsed() < Duration::from_secs(1),
        "never left hanging"
    );
    assert_eq!(closed_count(&gateway, "over-limit"), 1.0);
    nodes[0].set_mode(Mode::Healthy).await.expect("mode");
    drop(busy);
    gateway.shutdown().await;
}

#[tokio::test]
async fn http2_connections_get_the_same_timeouts() {
    let (gateway, addr, _nodes) = gateway_with(|l| {
        l.header_read_timeout = Duration::from_millis(500);
        l.idle_timeout = Duration::from_secs(1);
    })
    .await;
    // The preface, then nothing: closed at the header timeout.
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("write");
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(closed, "an HTTP/2 connection with no stream stayed open");
    // A served HTTP/2 connection is closed (GOAWAY) once idle.
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let request = Request::get(format!("http://{addr}/"))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    let _ = response.into_body().collect().await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("closed by levee within the idle timeout")
        .expect("no panic")
        .expect("a clean close");
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    assert!(closed_count(&gateway, "idle-timeout") >= 1.0);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_graceful_stop_answers_every_request_on_kept_alive_connections() {
    let (gateway, addr, _nodes) = gateway_with(|_| {}).await;
    let failures = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let told_to_close = Arc::new(AtomicU64::new(0));
    let mut loops = Vec::new();
    for _ in 0..32 {
        let (failures, answered, told_to_close) = (
            Arc::clone(&failures),
            Arc::clone(&answered),
            Arc::clone(&told_to_close),
        );
        loops.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .expect("handshake");
            tokio::spawn(connection);
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                // A connection levee closed after saying so: done, cleanly.
                if sender.ready().await.is_err() {
                    return;
                }
                let request = Request::get(format!("http://{addr}/"))
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                match sender.send_request(request).await {
                    Ok(response) => {
                        let close = response
                            .headers()
                            .get(http::header::CONNECTION)
                            .is_some_and(|value| value == "close");
                        if let Err(error) = response.into_body().collect().await {
                            eprintln!("body lost: {error:?}");
                            failures.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        answered.fetch_add(1, Ordering::Relaxed);
                        if close {
                            told_to_close.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                    Err(error) => {
                        eprintln!("lost: {error:?} after {:?}", started.elapsed());
                        // Sent on an open connection and not answered.
                        failures.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcome = tokio::time::timeout(TEST_TIMEOUT, gateway.shutdown())
        .await
        .expect("shutdown within the test timeout");
    for handle in loops {
        handle.await.expect("no panic");
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests lost during the stop"
    );
    assert!(answered.load(Ordering::Relaxed) > 100);
    assert_eq!(
        told_to_close.load(Ordering::Relaxed),
        32,
        "every connection was told to close"
    );
    assert_eq!(outcome, ShutdownOutcome::Drained);
}

#[tokio::test]
async fn a_tcp_listener_at_max_connections_closes_new_connections_at_once() {
    let (gateway, addr, _nodes) = gateway_with(|l| {
        l.protocol = levee_proxy::config::Protocol::Tcp;
        l.max_connections = Some(1);
    })
    .await;
    let held = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut late = TcpStream::connect(addr).await.expect("connect");
    let (_, closed) = read_until_closed(&mut late, Duration::from_secs(2)).await;
    assert!(closed && started.elapsed() < Duration::from_secs(1));
    assert_eq!(closed_count(&gateway, "over-limit"), 1.0);
    drop(held);
    gateway.shutdown().await;
}
