//! gRPC through levee: calls judged by their `grpc-status`, not their HTTP
//! 200. `UNAVAILABLE` is the node's failure (retried when the call is
//! declared idempotent, the node ejected), `INVALID_ARGUMENT` is the
//! caller's (passed on, no node blamed, not retried), `grpc-timeout` bounds
//! levee's deadline, and levee's own errors are gRPC errors. Both peers
//! speak gRPC's HTTP/2 framing for real (the h2 crate, which hyper and
//! tonic are built on).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use levee_proxy::config::{BalancePolicy, Config, UpstreamProtocol};
use tokio::net::{TcpListener, TcpStream};

/// How a test gRPC server answers every call.
#[derive(Clone, Copy)]
enum Answer {
    /// A reply message and `grpc-status: 0` in the trailers.
    Ok,
    /// Trailers-only: `grpc-status` in the headers, no message.
    Status(u32),
    /// Reply after this long.
    Slow(Duration),
}

/// A gRPC server over cleartext HTTP/2; counts the calls it received.
async fn grpc_server(answer: Answer) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind(LOOPBACK).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((request, mut respond))) = connection.accept().await {
                    counted.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        let mut body = request.into_body();
                        while let Some(Ok(_)) = body.data().await {}
                        let head = |status: Option<u32>| {
                            let mut builder = http::Response::builder()
                                .status(200)
                                .header("content-type", "application/grpc");
                            if let Some(status) = status {
                                builder = builder.header("grpc-status", status.to_string());
                            }
                            builder.body(()).expect("head")
                        };
                        match answer {
                            Answer::Status(code) => {
                                let _ = respond.send_response(head(Some(code)), true);
                            }
                            Answer::Ok | Answer::Slow(_) => {
                                if let Answer::Slow(delay) = answer {
                                    tokio::time::sleep(delay).await;
                                }
                                let Ok(mut send) = respond.send_response(head(None), false) else {
                                    return;
                                };
                                let _ = send.send_data(frame(b"pong"), false);
                                let mut trailers = HeaderMap::new();
                                trailers.insert("grpc-status", "0".parse().expect("value"));
                                let _ = send.send_trailers(trailers);
                            }
                        }
                    });
                }
            });
        }
    });
    (addr, calls)
}

/// One gRPC length-prefixed message.
fn frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put_slice(message);
    framed.freeze()
}

/// Call `/test.Echo/Ping` through levee at `addr`; the `grpc-status` (from
/// the headers or the trailers) and `grpc-message`.
async fn call(addr: SocketAddr, timeout: Option<&str>) -> (u32, String) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("HTTP/2");
    tokio::spawn(connection);
    let mut request = Request::post(format!("http://{addr}/test.Echo/Ping"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(timeout) = timeout {
        request = request.header("grpc-timeout", timeout);
    }
    let request = request.body(Full::new(frame(b"ping"))).expect("request");
    let response = sender.send_request(request).await.expect("an HTTP answer");
    assert_eq!(response.status(), 200, "gRPC answers are HTTP 200");
    let headers = response.headers().clone();
    let collected = response.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let status = headers
        .get("grpc-status")
        .or_else(|| trailers.get("grpc-status"))
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .expect("a grpc-status");
    let message = headers
        .get("grpc-message")
        .map(|value| value.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    (status, message)
}

fn grpc_config(endpoints: Vec<SocketAddr>) -> Config {
    let mut config = config(endpoints, BalancePolicy::RoundRobin);
    config.clusters[0].upstream_protocol = UpstreamProtocol::H2c;
    config.clusters[0].retry.hedge = None;
    config
}

fn endpoint_state(status: &serde_json::Value, address: SocketAddr) -> String {
    status["clusters"][0]["endpoints"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["address"] == address.to_string()))
        .map(|e| e["state"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_is_retried_for_idempotent_calls_and_ejects_its_node() {
    let (down, down_calls) = grpc_server(Answer::Status(14)).await;
    let (up, up_calls) = grpc_server(Answer::Ok).await;
    let mut config = grpc_config(vec![down, up]);
    // gRPC calls are POSTs: the operator says which are safe to repeat.
    config.clusters[0].retry.idempotent = true;
    let (gateway, addr) = start(config).await;
    tokio::time::timeout(TEST_TIMEOUT, async {
        for i in 0..20 {
            let (status, message) = call(addr, None).await;
            assert_eq!(status, 0, "call {i}: {message}");
        }
    })
    .await
    .expect("in time");
    assert_eq!(up_calls.load(Ordering::Relaxed), 20);
    let failed_on_down = down_calls.load(Ordering::Relaxed);
    assert!(
        (1..=6).contains(&failed_on_down),
        "the UNAVAILABLE node is ejected after a few calls: {failed_on_down}"
    );
    let status: serde_json::Value = serde_json::from_str(
        &get(&client(), gateway.admin_address(), "/status")
            .await
            .body,
    )
    .expect("JSON");
    assert_eq!(endpoint_state(&status, down), "ejected", "{status}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_argument_is_the_callers_and_blames_no_node() {
    let (a, a_calls) = grpc_server(Answer::Status(3)).await;
    let (b, b_calls) = grpc_server(Answer::Status(3)).await;
    let mut config = grpc_config(vec![a, b]);
    config.clusters[0].retry.idempotent = true;
    let (gateway, addr) = start(config).await;
    tokio::time::timeout(TEST_TIMEOUT, async {
        for _ in 0..20 {
            assert_eq!(call(addr, None).await.0, 3, "passed on as it is");
        }
    })
    .await
    .expect("in time");
    assert_eq!(
        a_calls.load(Ordering::Relaxed) + b_calls.load(Ordering::Relaxed),
        20,
        "each call reached one node: a caller's error is not retried"
    );
    let status: serde_json::Value = serde_json::from_str(
        &get(&client(), gateway.admin_address(), "/status")
            .await
            .body,
    )
    .expect("JSON");
    for node in [a, b] {
        assert_ne!(endpoint_state(&status, node), "ejected", "{status}");
    }
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levee_answers_grpc_calls_with_grpc_errors_and_keeps_their_deadline() {
    // No node at all: levee's own error, as a gRPC status.
    let gone = {
        let listener = std::net::TcpListener::bind(LOOPBACK).expect("bind");
        listener.local_addr().expect("address")
    };
    let (gateway, addr) = start(grpc_config(vec![gone])).await;
    let (status, message) = tokio::time::timeout(TEST_TIMEOUT, call(addr, None))
        .await
        .expect("in time");
    assert_eq!(status, 14, "UNAVAILABLE: {message}");
    assert!(message.starts_with("levee: "), "{message}");
    gateway.shutdown().await;

    // A slow node and a call that allows 300 ms: DEADLINE_EXCEEDED at about
    // 300 ms, not at the cluster's 5 s request timeout.
    let (slow, _) = grpc_server(Answer::Slow(Duration::from_secs(3))).await;
    let (gateway, addr) = start(grpc_config(vec![slow])).await;
    let started = tokio::time::Instant::now();
    let (status, message) = tokio::time::timeout(TEST_TIMEOUT, call(addr, Some("300m")))
        .await
        .expect("in time");
    let took = started.elapsed();
    assert_eq!(status, 4, "DEADLINE_EXCEEDED: {message}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    gateway.shutdown().await;
}
