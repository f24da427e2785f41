//! The healthy backend's routes: streaming, large bodies, echo, chosen
//! statuses, slow requests.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use hyper::body::Frame;
use levee_testkit::backend::Backend;
use tokio::sync::mpsc;
use tokio::time::Instant;

#[tokio::test]
async fn drip_streams_chunks_with_pauses() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let mut sender = connect(backend.addr()).await;
        let start = Instant::now();
        let response = sender
            .send_request(request("GET", "/drip?chunks=3&interval=50", ""))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["transfer-encoding"], "chunked");
        let mut body = response.into_body();
        let mut chunks = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                chunks.push((data, start.elapsed()));
            }
        }
        let texts: Vec<_> = chunks.iter().map(|(data, _)| data.clone()).collect();
        assert_eq!(texts, ["chunk 0\n", "chunk 1\n", "chunk 2\n"]);
        // Each chunk is flushed on its own: the first arrived two pauses
        // before the last.
        assert!(
            chunks[2].1 - chunks[0].1 >= Duration::from_millis(100),
            "{chunks:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn bytes_answers_that_many_bytes_with_a_length() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let mut sender = connect(backend.addr()).await;
        let response = sender
            .send_request(request("GET", "/bytes?n=100000", ""))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-length"], "100000");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 100_000);
        assert!(body.iter().all(|&byte| byte == b'x'));
    })
    .await;
}

#[tokio::test]
async fn echo_streams_the_body_back_as_it_arrives() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let stream = tokio::net::TcpStream::connect(backend.addr())
            .await
            .unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        let body = ChannelBody(rx);
        let request = http::Request::post("/echo")
            .header("host", "backend.test")
            .body(body)
            .unwrap();
        tx.send(Bytes::from_static(b"first ")).await.unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        // The first part comes back before the rest has been sent.
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "first ");
        tx.send(Bytes::from_static(b"second")).await.unwrap();
        drop(tx);
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(rest, "second");
    })
    .await;
}

#[tokio::test]
async fn echo_with_a_known_length() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let mut sender = connect(backend.addr()).await;
        let (status, headers, body) = send(&mut sender, request("PUT", "/echo", "ping"))
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(headers["content-length"], "4");
        assert_eq!(body, "ping");
        // GET /echo is just another path.
        let (_, _, body) = get(backend.addr(), "/echo").await;
        assert_eq!(body, "hello from b1\n");
    })
    .await;
}

#[tokio::test]
async fn count_answers_only_after_the_whole_body() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let stream = tokio::net::TcpStream::connect(backend.addr())
            .await
            .unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        let request = http::Request::post("/count")
            .header("host", "backend.test")
            .body(ChannelBody(rx))
            .unwrap();
        tx.send(Bytes::from(vec![b'x'; 1000])).await.unwrap();
        let response = tokio::spawn(sender.send_request(request));
        // No answer while the body is still coming.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!response.is_finished());
        tx.send(Bytes::from(vec![b'y'; 234])).await.unwrap();
        drop(tx);
        let response = response.await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "1234\n");
    })
    .await;
}

#[tokio::test]
async fn status_route_answers_the_requested_status() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let mut sender = connect(backend.addr()).await;
        for code in [200u16, 404, 500, 503] {
            let (status, headers, body) =
                send(&mut sender, request("GET", &format!("/status/{code}"), ""))
                    .await
                    .unwrap();
            assert_eq!(status.as_u16(), code);
            assert_eq!(headers["x-backend"], "b1");
            assert!(body.is_empty());
        }
        let (status, _, _) = send(&mut sender, request("GET", "/status/abc", ""))
            .await
            .unwrap();
        assert_eq!(status, 400);
    })
    .await;
}

#[tokio::test]
async fn slow_route_delays_one_request_only() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let addr = backend.addr();
        let start = Instant::now();
        let slow = tokio::spawn(async move { get(addr, "/slow?ms=500").await });
        // Another request is answered while the slow one is still waiting.
        let (status, _, _) = get(addr, "/").await;
        assert_eq!(status, 200);
        assert!(!slow.is_finished());
        let (status, _, _) = slow.await.unwrap();
        assert_eq!(status, 200);
        assert!(start.elapsed() >= Duration::from_millis(500));
    })
    .await;
}

/// A request body fed through a channel, so a test controls when each part
/// is sent.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|data| data.map(|data| Ok(Frame::data(data))))
    }
}

#[tokio::test]
async fn reset_route_breaks_a_healthy_backend_for_that_request_only() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let mut sender = connect(backend.addr()).await;
        assert!(
            sender
                .send_request(request("GET", "/reset", ""))
                .await
                .is_err()
        );
        let mut sender = connect(backend.addr()).await;
        let response = sender.send_request(request("GET", "/", "")).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(backend.requests_received(), 2);
    })
    .await;
}
