//! Each backend mode does what a failing node does, as seen from a client.

mod common;

use std::io;
use std::time::Duration;

use common::*;
use levee_testkit::backend::{Backend, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

#[tokio::test]
async fn healthy_answers_hello_with_its_name() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        assert_eq!(backend.name(), "b1");
        assert_eq!(backend.mode(), Mode::Healthy);
        let (status, headers, body) = get(backend.addr(), "/anything").await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-backend"], "b1");
        assert_eq!(body, "hello from b1\n");
    })
    .await;
}

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_connection() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let mut sender = connect(backend.addr()).await;
        for _ in 0..10 {
            let (status, _, _) = send(&mut sender, request("GET", "/", "")).await.unwrap();
            assert_eq!(status, 200);
        }
        assert_eq!(backend.requests_received(), 10);
        assert_eq!(backend.connections_accepted(), 1);
    })
    .await;
}

#[tokio::test]
async fn counters_and_last_headers() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        assert_eq!(backend.last_request_headers(), None);
        let mut sender = connect(backend.addr()).await;
        let mut req = request("GET", "/", "");
        req.headers_mut()
            .insert("x-forwarded-for", "10.1.2.3".parse().unwrap());
        send(&mut sender, req).await.unwrap();
        let headers = backend.last_request_headers().unwrap();
        assert_eq!(headers["x-forwarded-for"], "10.1.2.3");
        assert_eq!(headers["host"], "backend.test");
        assert_eq!(backend.requests_received(), 1);

        backend.reset_counters();
        assert_eq!(backend.requests_received(), 0);
        assert_eq!(backend.connections_accepted(), 0);
        assert_eq!(backend.last_request_headers(), None);
    })
    .await;
}

#[tokio::test]
async fn crashed_refuses_connections_and_comes_back_on_the_same_port() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let addr = backend.addr();
        // A keep-alive connection opened while healthy, now idle.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(GET_ROOT).await.unwrap();
        let mut response = Vec::new();
        while !response.ends_with(b"hello from b1\n") {
            let mut buf = [0u8; 1024];
            let n = idle.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed early");
            response.extend_from_slice(&buf[..n]);
        }

        backend.set_mode(Mode::Crashed).await.unwrap();
        assert_eq!(backend.mode(), Mode::Crashed);
        let err = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        // The idle connection was closed (else this would hang).
        let (received, _) = read_to_end(&mut idle).await;
        assert!(received.is_empty());

        backend.set_mode(Mode::Healthy).await.unwrap();
        assert_eq!(backend.addr(), addr);
        let (status, _, body) = get(addr, "/").await;
        assert_eq!(status, 200);
        assert_eq!(body, "hello from b1\n");
    })
    .await;
}

#[tokio::test]
async fn crashed_drops_hung_connections() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        backend.set_mode(Mode::Hung).await.unwrap();
        let mut stream = TcpStream::connect(backend.addr()).await.unwrap();
        stream.write_all(GET_ROOT).await.unwrap();
        wait_for_requests(&backend, 1).await;
        backend.set_mode(Mode::Crashed).await.unwrap();
        let (received, _) = read_to_end(&mut stream).await;
        assert!(received.is_empty());
    })
    .await;
}

#[tokio::test]
async fn crashed_does_not_count_requests() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        backend.set_mode(Mode::Crashed).await.unwrap();
        backend.set_mode(Mode::Crashed).await.unwrap();
        assert!(TcpStream::connect(backend.addr()).await.is_err());
        assert_eq!(backend.requests_received(), 0);
        assert_eq!(backend.connections_accepted(), 0);
    })
    .await;
}

#[tokio::test]
async fn hung_reads_the_request_but_never_answers() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        backend.set_mode(Mode::Hung).await.unwrap();
        let mut sender = connect(backend.addr()).await;
        let pending = tokio::time::timeout(
            Duration::from_millis(300),
            send(&mut sender, request("GET", "/", "")),
        )
        .await;
        assert!(pending.is_err(), "a hung backend answered: {pending:?}");
        assert_eq!(backend.requests_received(), 1);
        // New connections are still accepted.
        let _second = TcpStream::connect(backend.addr()).await.unwrap();
        assert_eq!(backend.mode(), Mode::Hung);
    })
    .await;
}

#[tokio::test]
async fn hung_connections_are_dropped_when_the_mode_changes() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        backend.set_mode(Mode::Hung).await.unwrap();
        let mut stream = TcpStream::connect(backend.addr()).await.unwrap();
        stream.write_all(GET_ROOT).await.unwrap();
        wait_for_requests(&backend, 1).await;
        backend.set_mode(Mode::Healthy).await.unwrap();
        let (received, _) = read_to_end(&mut stream).await;
        assert!(received.is_empty());
    })
    .await;
}

#[tokio::test]
async fn slow_waits_before_answering() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        backend
            .set_mode(Mode::Slow(Duration::from_millis(200)))
            .await
            .unwrap();
        let start = Instant::now();
        let (status, _, body) = get(backend.addr(), "/").await;
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert_eq!(status, 200);
        assert_eq!(body, "hello from b1\n");
    })
    .await;
}

#[tokio::test]
async fn failing_answers_503_at_once() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        backend.set_mode(Mode::Failing).await.unwrap();
        let (status, headers, body) = get(backend.addr(), "/").await;
        assert_eq!(status, 503);
        assert_eq!(headers["x-backend"], "b1");
        assert_eq!(body, r#"{"error":"demo backend failing"}"#);
        assert_eq!(backend.requests_received(), 1);
    })
    .await;
}

#[tokio::test]
async fn reset_after_request_sends_an_rst_and_no_response() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        backend.set_mode(Mode::ResetAfterRequest).await.unwrap();
        let (received, ended) = raw_exchange(backend.addr(), GET_ROOT).await;
        assert!(
            received.is_empty(),
            "got {:?}",
            String::from_utf8_lossy(&received)
        );
        assert_eq!(ended.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(backend.requests_received(), 1);

        // A hyper client sees an error, not a response.
        let mut sender = connect(backend.addr()).await;
        assert!(send(&mut sender, request("GET", "/", "")).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn partial_then_reset_sends_head_and_some_body_then_rst() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        backend
            .set_mode(Mode::PartialThenReset { bytes: 100 })
            .await
            .unwrap();
        let (received, ended) = raw_exchange(backend.addr(), GET_ROOT).await;
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n";
        assert_eq!(received.len(), head.len() + 100);
        assert!(received.starts_with(head));
        assert_eq!(ended.unwrap_err().kind(), io::ErrorKind::ConnectionReset);

        // A hyper client gets the head, then an error before the body ends.
        let mut sender = connect(backend.addr()).await;
        sender.ready().await.unwrap();
        let response = sender.send_request(request("GET", "/", "")).await.unwrap();
        assert_eq!(response.status(), 200);
        use http_body_util::BodyExt;
        assert!(response.into_body().collect().await.is_err());
    })
    .await;
}

#[tokio::test]
async fn a_keep_alive_connection_obeys_a_later_mode_change() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let mut sender = connect(backend.addr()).await;
        let (status, _, _) = send(&mut sender, request("GET", "/", "")).await.unwrap();
        assert_eq!(status, 200);

        backend.set_mode(Mode::Failing).await.unwrap();
        let (status, _, _) = send(&mut sender, request("GET", "/", "")).await.unwrap();
        assert_eq!(status, 503);

        backend.set_mode(Mode::ResetAfterRequest).await.unwrap();
        assert!(send(&mut sender, request("GET", "/", "")).await.is_err());
        assert_eq!(backend.connections_accepted(), 1);
        assert_eq!(backend.requests_received(), 3);
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_the_listener() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let addr = backend.addr();
        let clone = backend.clone();
        backend.shutdown().await;
        assert_eq!(clone.mode(), Mode::Crashed);
        assert!(TcpStream::connect(addr).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_backend() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let addr = backend.addr();
        drop(backend);
        // The abort is asynchronous; give the runtime a moment.
        for _ in 0..50 {
            if TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("backend still listening after its last handle was dropped");
    })
    .await;
}

#[tokio::test]
async fn serves_http2_with_prior_knowledge() {
    bounded(async {
        let backend = Backend::start("b2", loopback()).await.unwrap();
        let stream = TcpStream::connect(backend.addr()).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let request = http::Request::builder()
            .uri(format!("http://{}/", backend.addr()))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), http::Version::HTTP_2);
    })
    .await;
}

async fn wait_for_requests(backend: &Backend, n: u64) {
    while backend.requests_received() < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
