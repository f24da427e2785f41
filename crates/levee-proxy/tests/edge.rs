//! HTTP at the edge, as RFC 9112 has it and as HAProxy and nginx behave: a
//! response framed twice is not cut short, `Host` must be there once and
//! valid, an absolute-form target names the host, and a request with many
//! headers is served. Raw sockets on both sides, so that what goes over the
//! wire is exactly what is written here.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use levee_proxy::config::BalancePolicy;
use levee_testkit::backend::Backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Send `request` on a new connection and read until the peer closes (every
/// request here says `connection: close`) or 5 s pass.
async fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// A backend that answers every request with `response`, as bytes.
async fn raw_backend(response: impl Into<String>) -> SocketAddr {
    let response: std::sync::Arc<str> = response.into().into();
    let listener = TcpListener::bind(LOOPBACK).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let response = std::sync::Arc::clone(&response);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_with_transfer_encoding_and_content_length_is_not_cut_short() {
    let upstream = raw_backend(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let mut config = config(vec![upstream], BalancePolicy::RoundRobin);
    config.clusters[0].retry.hedge = None;
    let (gateway, addr) = start(config).await;
    let response = exchange(
        addr,
        "GET / HTTP/1.1\r\nhost: edge.test\r\nconnection: close\r\n\r\n",
    )
    .await;
    let lower = response.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{response}");
    assert!(!lower.contains("content-length: 3"), "{response}");
    assert!(response.contains("hello"), "the whole body: {response}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_must_be_there_once_and_valid() {
    let backend = Backend::start("b1", LOOPBACK).await.expect("backend");
    let (gateway, addr) = start(config(vec![backend.addr()], BalancePolicy::RoundRobin)).await;
    for (request, why) in [
        (
            "GET / HTTP/1.1\r\nhost: a.test\r\nhost: b.test\r\nconnection: close\r\n\r\n",
            "more than one Host header",
        ),
        (
            "GET / HTTP/1.1\r\nconnection: close\r\n\r\n",
            "missing Host header",
        ),
        (
            "GET / HTTP/1.1\r\nhost: a b/c\r\nconnection: close\r\n\r\n",
            "invalid Host header",
        ),
    ] {
        let response = exchange(addr, request).await;
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "{request:?}: {response}"
        );
        assert!(response.contains(why), "{request:?}: {response}");
    }
    assert_eq!(backend.requests_received(), 0, "none reached the cluster");

    // HTTP/1.0 needs no Host: the endpoint's own is sent.
    let response = exchange(addr, "GET / HTTP/1.0\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    assert_eq!(backend.requests_received(), 1);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_target_names_the_host() {
    let backend = Backend::start("b1", LOOPBACK).await.expect("backend");
    let (gateway, addr) = start(config(vec![backend.addr()], BalancePolicy::RoundRobin)).await;
    let response = exchange(
        addr,
        "GET http://abs.example/x HTTP/1.1\r\nhost: other.example\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let headers = backend.last_request_headers().expect("a request");
    assert_eq!(headers["host"], "abs.example");
    gateway.shutdown().await;
}

fn with_headers(count: usize) -> String {
    let mut request = String::from("GET / HTTP/1.1\r\nhost: edge.test\r\nconnection: close\r\n");
    for i in 0..count {
        request.push_str(&format!("x-header-{i}: value {i}\r\n"));
    }
    request.push_str("\r\n");
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_200_headers_is_served_and_the_limit_is_a_setting() {
    // A raw backend: the testkit's (hyper's defaults) takes only 100.
    let upstream =
        raw_backend("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
    let mut config = config(vec![upstream], BalancePolicy::RoundRobin);
    config.clusters[0].retry.hedge = None;
    let mut strict = config.listeners[0].clone();
    strict.name = "strict".to_owned();
    strict.max_request_headers = 50;
    config.listeners.push(strict);
    let (gateway, addr) = start(config).await;
    let strict = gateway.listener_address("strict").expect("strict listener");

    let served = exchange(addr, &with_headers(200)).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    assert!(served.contains("x-levee-attempts: 1"), "{served}");
    // Refused by levee itself: no attempt was made.
    for (listener, count) in [(addr, 300), (strict, 60)] {
        let refused = exchange(listener, &with_headers(count)).await;
        assert!(refused.starts_with("HTTP/1.1 431"), "{refused}");
        assert!(!refused.contains("x-levee-attempts"), "{refused}");
    }
    let response = exchange(strict, &with_headers(10)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_response_with_many_headers_needs_max_response_headers() {
    let mut response =
        String::from("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n");
    for i in 0..150 {
        response.push_str(&format!("x-a{i}: 1\r\n"));
    }
    response.push_str("\r\nok");
    let upstream = raw_backend(response).await;
    let mut config = config(vec![upstream], BalancePolicy::RoundRobin);
    config.clusters[0].retry.hedge = None;
    let mut generous = config.clusters[0].clone();
    generous.name = "generous".to_owned();
    generous.max_response_headers = 200;
    config.clusters.push(generous);
    let mut second = config.listeners[0].clone();
    second.name = "second".to_owned();
    second.cluster = Some("generous".to_owned());
    config.listeners.push(second);
    let (gateway, addr) = start(config).await;
    let second = gateway.listener_address("second").expect("second listener");
    let request = "GET / HTTP/1.1\r\nhost: edge.test\r\nconnection: close\r\n\r\n";
    let refused = exchange(addr, request).await;
    assert!(refused.starts_with("HTTP/1.1 502"), "{refused}");
    let served = exchange(second, request).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    assert!(served.contains("x-a149: 1"), "{served}");
    gateway.shutdown().await;
}
