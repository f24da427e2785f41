//! The request path end to end: real sockets, testkit backends.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use levee_proxy::config::BalancePolicy;
use levee_testkit::backend::Mode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

#[tokio::test]
async fn forwards_requests_and_marks_attempts() {
    let backends = backends(1).await;
    let (gateway, addr) = start(config(vec![backends[0].addr()], BalancePolicy::RoundRobin)).await;
    let answer = get(&client(), addr, "/hello").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "hello from b1\n");
    assert_eq!(answer.headers["x-levee-attempts"], "1");
    assert_eq!(backends[0].requests_received(), 1);
    gateway.shutdown().await;
}

#[tokio::test]
async fn response_body_streams_before_the_upstream_finishes() {
    let backends = backends(1).await;
    let (gateway, addr) = start(config(vec![backends[0].addr()], BalancePolicy::RoundRobin)).await;
    // Three chunks one second apart: a buffering proxy would deliver the first
    // after two seconds.
    let request = Request::get(format!("http://{addr}/drip?chunks=3&interval=1000"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let started = Instant::now();
    let response = timeout(TEST_TIMEOUT, client().request(request))
        .await
        .expect("in time")
        .expect("response");
    let mut body = response.into_body();
    let first = timeout(TEST_TIMEOUT, body.frame())
        .await
        .expect("in time")
        .expect("a frame")
        .expect("ok frame");
    let first_at = started.elapsed();
    assert_eq!(first.into_data().expect("data"), Bytes::from("chunk 0\n"));
    assert!(
        first_at < Duration::from_millis(900),
        "first chunk after {first_at:?}"
    );
    let rest = timeout(TEST_TIMEOUT, body.collect())
        .await
        .expect("in time")
        .expect("rest")
        .to_bytes();
    assert_eq!(rest, Bytes::from("chunk 1\nchunk 2\n"));
    assert!(started.elapsed() >= Duration::from_millis(1900));
    gateway.shutdown().await;
}

#[tokio::test]
async fn request_body_streams_to_the_upstream() {
    let backends = backends(1).await;
    let (gateway, addr) = start(config(vec![backends[0].addr()], BalancePolicy::RoundRobin)).await;
    // The client sends the second half only after the echo of the first half
    // came back: if levee buffered request bodies this would deadlock.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    let body = StreamBody::new(tokio_stream_from(rx));
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    tx.send(Ok(Frame::data(Bytes::from("first half;"))))
        .await
        .expect("send");
    let request = Request::post("/echo")
        .header("host", addr.to_string())
        .body(body)
        .expect("request");
    let response = timeout(TEST_TIMEOUT, sender.send_request(request))
        .await
        .expect("response head while the body is still open")
        .expect("response");
    let mut body = response.into_body();
    let echoed = timeout(TEST_TIMEOUT, body.frame())
        .await
        .expect("first half echoed while the request is unfinished")
        .expect("frame")
        .expect("ok");
    assert_eq!(
        echoed.into_data().expect("data"),
        Bytes::from("first half;")
    );
    tx.send(Ok(Frame::data(Bytes::from("second half"))))
        .await
        .expect("send");
    drop(tx);
    let rest = timeout(TEST_TIMEOUT, body.collect())
        .await
        .expect("in time")
        .expect("rest")
        .to_bytes();
    assert_eq!(rest, Bytes::from("second half"));
    gateway.shutdown().await;
}

/// An mpsc receiver as a `Stream` (avoids a dependency on tokio-stream).
fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn upstream_connections_are_kept_alive() {
    let backends = backends(1).await;
    let (gateway, addr) = start(config(vec![backends[0].addr()], BalancePolicy::RoundRobin)).await;
    let client = client();
    for _ in 0..20 {
        assert_eq!(get(&client, addr, "/").await.status, 200);
    }
    assert_eq!(backends[0].requests_received(), 20);
    let connections = backends[0].connections_accepted();
    assert!(
        connections <= 2,
        "upstream saw {connections} connections for 20 requests"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_and_forwarding_headers_added() {
    let backends = backends(1).await;
    let (gateway, addr) = start(config(vec![backends[0].addr()], BalancePolicy::RoundRobin)).await;
    let request = Request::get(format!("http://{addr}/"))
        .header("connection", "keep-alive, x-private-hop")
        .header("x-private-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("te", "trailers")
        .header("x-end-to-end", "kept")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "gopher")
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(send(&client(), request).await.status, 200);
    let seen = backends[0]
        .last_request_headers()
        .expect("backend saw a request");
    for removed in ["x-private-hop", "keep-alive", "proxy-authorization", "te"] {
        assert!(
            !seen.contains_key(removed),
            "{removed} was forwarded: {seen:?}"
        );
    }
    assert_eq!(seen["x-end-to-end"], "kept");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    // Replaced, not sent beside the client's.
    for name in ["x-forwarded-for", "x-forwarded-proto"] {
        assert_eq!(seen.get_all(name).iter().count(), 1, "{name}: {seen:?}");
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_hung_upstream_gets_504_after_the_request_timeout() {
    let backends = backends(1).await;
    backends[0].set_mode(Mode::Hung).await.expect("mode");
    let mut config = config(vec![backends[0].addr()], BalancePolicy::RoundRobin);
    config.clusters[0].request_timeout = Duration::from_millis(300);
    let (gateway, addr) = start(config).await;
    let started = Instant::now();
    let answer = get(&client(), addr, "/").await;
    assert_eq!(answer.status, 504);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let json: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON body");
    assert_eq!(json["kind"], "timeout", "{json}");
    assert_eq!(json["cluster"], "app");
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_cluster_gets_502_with_a_json_reason() {
    let backends = backends(1).await;
    let dead = backends[0].addr();
    backends[0].set_mode(Mode::Crashed).await.expect("mode");
    let (gateway, addr) = start(config(vec![dead], BalancePolicy::RoundRobin)).await;
    let answer = get(&client(), addr, "/").await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.headers["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON body");
    assert_eq!(json["error"], "upstream refused the connection", "{json}");
    assert_eq!(json["kind"], "connect-refused");
    assert_eq!(json["endpoint"], dead.to_string());
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_failing_upstream_status_is_passed_through() {
    let backends = backends(1).await;
    backends[0].set_mode(Mode::Failing).await.expect("mode");
    let (gateway, addr) = start(config(vec![backends[0].addr()], BalancePolicy::RoundRobin)).await;
    assert_eq!(get(&client(), addr, "/").await.status, 503);
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_upstream_reset_mid_body_aborts_the_client_response() {
    let backends = backends(1).await;
    backends[0]
        .set_mode(Mode::PartialThenReset { bytes: 100 })
        .await
        .expect("mode");
    let (gateway, addr) = start(config(vec![backends[0].addr()], BalancePolicy::RoundRobin)).await;
    let request = Request::get(format!("http://{addr}/"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = timeout(TEST_TIMEOUT, client().request(request))
        .await
        .expect("in time")
        .expect("head forwarded");
    assert_eq!(response.status(), 200);
    // The client must see an error, not a short body it could take for whole.
    let body = timeout(TEST_TIMEOUT, response.into_body().collect())
        .await
        .expect("in time");
    assert!(body.is_err(), "truncated body delivered as complete");
    gateway.shutdown().await;
}

#[tokio::test]
async fn http2_prior_knowledge_is_served_on_the_same_listener() {
    let backends = backends(1).await;
    let (gateway, addr) = start(config(vec![backends[0].addr()], BalancePolicy::RoundRobin)).await;
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(connection);
    let request = Request::get(format!("http://{addr}/h2"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = timeout(TEST_TIMEOUT, sender.send_request(request))
        .await
        .expect("in time")
        .expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body, Bytes::from("hello from b1\n"));
    let seen = backends[0].last_request_headers().expect("request seen");
    assert_eq!(seen["host"], addr.to_string());
    gateway.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let backends = backends(1).await;
    let (gateway, addr) = start(config(vec![backends[0].addr()], BalancePolicy::RoundRobin)).await;
    let client = client();
    let in_flight = tokio::spawn(async move { get(&client, addr, "/slow?ms=800").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shutdown = tokio::spawn(gateway.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The listening socket is closed at once…
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting during drain"
    );
    // …while the request already in flight completes normally.
    let answer = timeout(TEST_TIMEOUT, in_flight)
        .await
        .expect("in time")
        .expect("task");
    assert_eq!(answer.status, 200);
    let outcome = timeout(TEST_TIMEOUT, shutdown)
        .await
        .expect("in time")
        .expect("task");
    assert_eq!(outcome, levee_proxy::ShutdownOutcome::Drained);
}

#[tokio::test]
async fn shutdown_gives_up_after_the_drain_timeout() {
    let backends = backends(1).await;
    backends[0].set_mode(Mode::Hung).await.expect("mode");
    let mut config = config(vec![backends[0].addr()], BalancePolicy::RoundRobin);
    config.runtime.drain_timeout = Duration::from_millis(300);
    let (gateway, addr) = start(config).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let outcome = timeout(TEST_TIMEOUT, gateway.shutdown())
        .await
        .expect("in time");
    assert_eq!(outcome, levee_proxy::ShutdownOutcome::DrainTimedOut);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_connect_that_never_completes_gets_504_after_the_connect_timeout() {
    // A listener that never accepts, with its tiny backlog already full: the
    // kernel drops further SYNs, so a connect hangs as to a dead host.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&LOOPBACK.into()).expect("bind");
    socket.listen(0).expect("listen");
    let full: std::net::SocketAddr = socket
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet");
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) = timeout(Duration::from_millis(200), TcpStream::connect(full)).await
        {
            fillers.push(stream);
        }
    }
    let mut config = config(vec![full], BalancePolicy::RoundRobin);
    config.clusters[0].connect_timeout = Duration::from_millis(200);
    let (gateway, addr) = start(config).await;
    let started = Instant::now();
    let answer = get(&client(), addr, "/").await;
    assert_eq!(answer.status, 504, "{}", answer.body);
    let json: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON body");
    assert_eq!(json["kind"], "connect-timeout", "{json}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_restarted_upstream_costs_no_error_on_stale_pooled_connections() {
    let backends = backends(1).await;
    let (gateway, addr) = start(config(vec![backends[0].addr()], BalancePolicy::RoundRobin)).await;
    let client = client();
    assert_eq!(get(&client, addr, "/").await.status, 200);
    // The backend restarts: the connection levee pooled is now closed.
    backends[0].set_mode(Mode::Crashed).await.expect("crash");
    backends[0].set_mode(Mode::Healthy).await.expect("restart");
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..3 {
        let answer = get(&client, addr, "/").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn idle_upstream_connections_are_closed_after_the_idle_timeout() {
    let backends = backends(1).await;
    let mut config = config(vec![backends[0].addr()], BalancePolicy::RoundRobin);
    config.clusters[0].idle_timeout = Duration::from_millis(200);
    let (gateway, addr) = start(config).await;
    let client = client();
    assert_eq!(get(&client, addr, "/").await.status, 200);
    assert_eq!(get(&client, addr, "/").await.status, 200);
    assert_eq!(
        backends[0].connections_accepted(),
        1,
        "second request should reuse the connection"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let status = get(&client, gateway.admin_address(), "/status").await;
    let json: serde_json::Value = serde_json::from_str(&status.body).expect("JSON");
    assert_eq!(
        json["clusters"][0]["endpoints"][0]["idle_connections"], 0,
        "{json}"
    );
    assert_eq!(get(&client, addr, "/").await.status, 200);
    assert_eq!(backends[0].connections_accepted(), 2);
    gateway.shutdown().await;
}
