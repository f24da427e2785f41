//! Request bodies that take their time (issue #16, defect 2): the
//! response-head timeouts start once the body has been sent, a client that
//! stops sending gets 408 after `body_idle_timeout`, and nothing the client's
//! body does is ever counted against the endpoint.
//!
//! Every test runs two endpoints with outlier detection set to eject one on
//! its first failure (the last endpoint is never ejected), so "not charged"
//! is visible in `/status`; two tests show that a real endpoint failure
//! during an upload is still charged.

mod common;

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Frame;
use levee_core::outlier::OutlierParams;
use levee_proxy::RunningGateway;
use levee_proxy::config::{BalancePolicy, Config};
use levee_testkit::backend::{Backend, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

const MB: usize = 1024 * 1024;
const PER_TRY_TIMEOUT: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const BODY_IDLE_TIMEOUT: Duration = Duration::from_millis(500);

/// Two endpoints; one is ejected on its first failure that blames it.
fn upload_config(endpoints: Vec<SocketAddr>) -> Config {
    let mut config = config(endpoints, BalancePolicy::RoundRobin);
    let cluster = &mut config.clusters[0];
    cluster.retry.per_try_timeout = PER_TRY_TIMEOUT;
    cluster.request_timeout = REQUEST_TIMEOUT;
    cluster.body_idle_timeout = BODY_IDLE_TIMEOUT;
    cluster.outlier = Some(
        OutlierParams::builder()
            .consecutive_failures(1)
            .max_ejected_percent(100)
            .base_ejection(Duration::from_secs(60))
            .max_ejection(Duration::from_secs(60))
            .build()
            .expect("outlier params"),
    );
    config
}

/// How many endpoints `/status` shows ejected, and the gateway's metrics.
async fn ejected(gateway: &RunningGateway) -> (usize, String) {
    let client = client();
    let admin = gateway.admin_address();
    let status: serde_json::Value =
        serde_json::from_str(&get(&client, admin, "/status").await.body).expect("status JSON");
    let ejected = status["clusters"][0]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .filter(|endpoint| endpoint["state"] == "ejected")
        .count();
    (ejected, get(&client, admin, "/metrics").await.body)
}

async fn two_backends() -> (Vec<Backend>, Vec<SocketAddr>) {
    let backends = backends(2).await;
    let addrs = backends.iter().map(Backend::addr).collect();
    (backends, addrs)
}

fn requests_received(backends: &[Backend]) -> u64 {
    backends.iter().map(Backend::requests_received).sum()
}

/// A request body fed from a channel, announcing `length` bytes.
struct Streamed {
    chunks: mpsc::Receiver<Bytes>,
    length: u64,
}

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.get_mut()
            .chunks
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.length)
    }
}

/// POST `chunks` chunks of `chunk` bytes to `path` through the gateway at
/// `addr`, `pause` apart. Returns the status, the body and how long the
/// answer took from the first byte sent.
async fn upload(
    addr: SocketAddr,
    path: &str,
    chunks: usize,
    chunk: usize,
    pause: Duration,
) -> (StatusCode, String, Duration) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    let (tx, rx) = mpsc::channel(2);
    let body = Streamed {
        chunks: rx,
        length: (chunks * chunk) as u64,
    };
    let request = Request::post(path)
        .header("host", "uploads.test")
        .body(body)
        .expect("request");
    let started = Instant::now();
    tokio::spawn(async move {
        let data = Bytes::from(vec![b'u'; chunk]);
        for i in 0..chunks {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            if tx.send(data.clone()).await.is_err() {
                return;
            }
        }
    });
    let response = tokio::time::timeout(TEST_TIMEOUT, sender.send_request(request))
        .await
        .expect("an answer within the test timeout")
        .expect("an answer");
    let status = response.status();
    let body = tokio::time::timeout(TEST_TIMEOUT, response.into_body().collect())
        .await
        .expect("body within the test timeout")
        .expect("body")
        .to_bytes();
    (
        status,
        String::from_utf8_lossy(&body).into_owned(),
        started.elapsed(),
    )
}

/// Send a request head announcing `length` body bytes and then `sent` of
/// them, over a raw connection the caller keeps (or drops).
async fn partial_upload(addr: SocketAddr, length: usize, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head =
        format!("POST /count HTTP/1.1\r\nhost: uploads.test\r\ncontent-length: {length}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(&vec![b'p'; sent]).await.expect("body");
    stream
}

/// Read one response (head and `content-length` body) from `stream`.
async fn read_response(stream: &mut TcpStream) -> (u16, String, String) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(TEST_TIMEOUT, stream.read(&mut buffer))
            .await
            .expect("response within the test timeout")
            .expect("read");
        assert!(n > 0, "connection closed before a whole response");
        received.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&received).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length = head
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_owned)
            })
            .and_then(|value| value.trim().parse::<usize>().ok())
            .expect("content-length");
        if body.len() >= length {
            let status = head[9..12].parse().expect("status code");
            return (status, head.to_ascii_lowercase(), body.to_owned());
        }
    }
}

/// Wait until `metrics` (refetched) contains `line`, or fail.
async fn wait_for_metric(gateway: &RunningGateway, line: &str) -> String {
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, metrics) = ejected(gateway).await;
        if metrics.contains(line) {
            return metrics;
        }
        assert!(Instant::now() < give_up, "no {line} in\n{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_longer_than_the_timeouts_is_answered_in_full() {
    let (backends, addrs) = two_backends().await;
    let (gateway, addr) = start(upload_config(addrs)).await;
    // 50 MiB over about 3.6 s: longer than per_try_timeout and
    // request_timeout together, with pauses shorter than body_idle_timeout.
    let (status, body, took) = upload(addr, "/count", 25, 2 * MB, Duration::from_millis(150)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        format!("{}\n", 50 * MB),
        "the endpoint got every byte"
    );
    assert_eq!(requests_received(&backends), 1);
    assert!(took > PER_TRY_TIMEOUT + REQUEST_TIMEOUT, "{took:?}");
    let (ejected, metrics) = ejected(&gateway).await;
    assert_eq!(ejected, 0, "{metrics}");
    assert!(
        !metrics.contains("levee_upstream_failures_total{"),
        "{metrics}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_endpoint_times_out_per_try_after_the_body_is_sent() {
    let (backends, addrs) = two_backends().await;
    // Read every byte, never answer.
    for backend in &backends {
        backend.set_mode(Mode::Hung).await.expect("mode");
    }
    let (gateway, addr) = start(upload_config(addrs)).await;
    // 4 MiB over about 1.2 s, then nothing comes back.
    let (status, body, took) =
        upload(addr, "/count", 11, 384 * 1024, Duration::from_millis(120)).await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains(r#""kind":"timeout""#), "{body}");
    // Upload (≈1.2 s) + per_try_timeout (1 s): the timer started at the
    // body's end, not at the attempt's start (that would be ≈1 s).
    assert!(took >= Duration::from_millis(2100), "{took:?}");
    assert!(took < Duration::from_millis(3500), "{took:?}");
    let (ejected, metrics) = ejected(&gateway).await;
    assert_eq!(ejected, 1, "a real timeout is charged\n{metrics}");
    for backend in &backends {
        backend.set_mode(Mode::Healthy).await.expect("mode");
    }
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_gets_408_and_the_endpoint_is_not_charged() {
    let (backends, addrs) = two_backends().await;
    let (gateway, addr) = start(upload_config(addrs)).await;
    // Larger than the replay buffer: it streams to the endpoint.
    let started = Instant::now();
    let mut stream = partial_upload(addr, 8 * MB, MB).await;
    let (status, head, body) = read_response(&mut stream).await;
    let took = started.elapsed();
    assert_eq!(status, 408, "{head}\n{body}");
    assert!(head.contains("connection: close"), "{head}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(json["kind"], "client-body", "{json}");
    assert_eq!(
        json["error"], "request body stopped arriving from the client (body_idle_timeout)",
        "{json}"
    );
    assert_eq!(
        json["reason"], "no byte of the request body arrived for 500ms (body_idle_timeout)",
        "{json}"
    );
    assert!(took >= BODY_IDLE_TIMEOUT, "{took:?}");
    assert!(took < BODY_IDLE_TIMEOUT + PER_TRY_TIMEOUT, "{took:?}");
    assert_eq!(requests_received(&backends), 1, "it was streaming upstream");
    let (ejected, metrics) = ejected(&gateway).await;
    assert_eq!(ejected, 0, "{metrics}");
    assert!(
        !metrics.contains("levee_upstream_failures_total{"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"levee_client_body_failures_total{cluster="app",reason="stalled"} 1"#),
        "{metrics}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_body_that_stalls_gets_408_without_reaching_the_endpoint() {
    let (backends, addrs) = two_backends().await;
    let (gateway, addr) = start(upload_config(addrs)).await;
    // Small enough to be held for replay: levee waits for all of it first.
    let mut stream = partial_upload(addr, 1000, 10).await;
    let (status, head, body) = read_response(&mut stream).await;
    assert_eq!(status, 408, "{head}\n{body}");
    assert!(body.contains(r#""kind":"client-body""#), "{body}");
    assert_eq!(requests_received(&backends), 0);
    let (ejected, metrics) = ejected(&gateway).await;
    assert_eq!(ejected, 0, "{metrics}");
    assert!(
        metrics.contains(r#"levee_client_body_failures_total{cluster="app",reason="stalled"} 1"#),
        "{metrics}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_mid_upload_is_not_charged_to_the_endpoint() {
    let (backends, addrs) = two_backends().await;
    let (gateway, addr) = start(upload_config(addrs)).await;
    let stream = partial_upload(addr, 8 * MB, MB).await;
    // Let the upload reach the endpoint, then go away.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
    let metrics = wait_for_metric(
        &gateway,
        r#"levee_client_body_failures_total{cluster="app",reason="broken"} 1"#,
    )
    .await;
    let (ejected, _) = ejected(&gateway).await;
    assert_eq!(requests_received(&backends), 1, "it was streaming upstream");
    assert_eq!(ejected, 0, "{metrics}");
    assert!(
        !metrics.contains("levee_upstream_failures_total{"),
        "{metrics}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_stops_reading_the_body_is_charged_a_timeout() {
    // Endpoints that accept connections and never read from them.
    let mut endpoints = Vec::new();
    let mut held = Vec::new();
    for _ in 0..2 {
        let listener = tokio::net::TcpListener::bind(LOOPBACK).await.expect("bind");
        endpoints.push(listener.local_addr().expect("addr"));
        held.push(tokio::spawn(async move {
            let mut connections = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.push(stream);
            }
        }));
    }
    let (gateway, addr) = start(upload_config(endpoints)).await;
    // More than the socket buffers between levee and the endpoint hold.
    let (status, body, took) = upload(addr, "/count", 64, MB, Duration::ZERO).await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains(r#""kind":"timeout""#), "{body}");
    assert!(took >= BODY_IDLE_TIMEOUT, "{took:?}");
    let (ejected, metrics) = ejected(&gateway).await;
    assert_eq!(ejected, 1, "{metrics}");
    assert!(
        !metrics.contains("levee_client_body_failures_total{"),
        "not the client's fault\n{metrics}"
    );
    for task in held {
        task.abort();
    }
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_is_the_clients_fault() {
    let (_backends, addrs) = two_backends().await;
    let (gateway, addr) = start(upload_config(addrs)).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = "POST /count HTTP/1.1\r\nhost: uploads.test\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n";
    stream.write_all(request.as_bytes()).await.expect("request");
    let (status, head, body) = read_response(&mut stream).await;
    assert_eq!(status, 400, "{head}\n{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(json["kind"], "client-body", "{json}");
    assert_eq!(
        json["error"], "request body could not be read from the client",
        "{json}"
    );
    // It broke while streaming to an endpoint.
    assert_eq!(json["attempts"], 1, "{json}");
    let metrics = wait_for_metric(
        &gateway,
        r#"levee_client_body_failures_total{cluster="app",reason="broken"} 1"#,
    )
    .await;
    let (ejected, _) = ejected(&gateway).await;
    assert_eq!(ejected, 0, "{metrics}");
    assert!(
        !metrics.contains("levee_upstream_failures_total{"),
        "{metrics}"
    );
    gateway.shutdown().await;
}
