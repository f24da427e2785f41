//! levee's HTTP/1.1 client, seen from both ends: raw sockets for the client
//! and for the endpoint, so that what crosses each wire is exactly what is
//! written here. A duplex exchange keeps streaming both ways after the
//! response head, interim responses are skipped, a body delimited by the
//! close is passed whole (and its connection not reused), a chunked request
//! body goes up chunked, an answer given before the body was sent reaches
//! the client, and an endpoint that does not speak HTTP gets a 502.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use levee_proxy::RunningGateway;
use levee_proxy::config::BalancePolicy;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// An endpoint that runs `script` on every connection it accepts; the
/// count is of connections accepted.
async fn scripted_endpoint<F, Fut>(script: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(LOOPBACK).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(script(stream));
        }
    });
    (addr, accepted)
}

/// Read until `marker` has arrived (or the peer stops); returns all read.
async fn read_until(stream: &mut (impl AsyncRead + Unpin), marker: &[u8]) -> Vec<u8> {
    let mut seen = Vec::new();
    read_more_until(stream, &mut seen, marker).await;
    seen
}

/// Read into `seen` until it holds `marker` (or the peer stops).
async fn read_more_until(stream: &mut (impl AsyncRead + Unpin), seen: &mut Vec<u8>, marker: &[u8]) {
    let mut buffer = [0; 4096];
    while !seen.windows(marker.len()).any(|window| window == marker) {
        match timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buffer[..n]),
        }
    }
}

/// A gateway in front of `endpoint`, hedging off (each request one attempt).
async fn gateway(endpoint: SocketAddr) -> (RunningGateway, SocketAddr) {
    let mut config = config(vec![endpoint], BalancePolicy::RoundRobin);
    config.clusters[0].retry.hedge = None;
    start(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplex_exchange_streams_both_ways_after_the_response_head() {
    // The endpoint answers at once, then echoes each line of the request
    // body as it arrives: the client sends its next line only after it has
    // read the echo of the last.
    let (endpoint, _) = scripted_endpoint(|mut stream: TcpStream| async move {
        let mut seen = Vec::new();
        read_more_until(&mut stream, &mut seen, b"\r\n\r\n").await;
        let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for line in ["one", "two"] {
            read_more_until(&mut stream, &mut seen, line.as_bytes()).await;
            let chunk = format!("{:x}\r\necho {line}\r\n", line.len() + 5);
            if stream.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
        read_more_until(&mut stream, &mut seen, b"0\r\n\r\n").await;
        let _ = stream.write_all(b"0\r\n\r\n").await;
    })
    .await;
    let (gateway, addr) = gateway(endpoint).await;
    let mut client = TcpStream::connect(addr).await.expect("connect");
    let head = "POST /chat HTTP/1.1\r\nhost: duplex.test\r\ntransfer-encoding: chunked\r\n\r\n";
    client.write_all(head.as_bytes()).await.expect("head");
    client.write_all(b"3\r\none\r\n").await.expect("line one");
    let first = read_until(&mut client, b"echo one").await;
    let first = String::from_utf8_lossy(&first);
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        first.contains("echo one"),
        "the first echo before the body ended: {first}"
    );
    client.write_all(b"3\r\ntwo\r\n").await.expect("line two");
    let second = read_until(&mut client, b"echo two").await;
    assert!(
        String::from_utf8_lossy(&second).contains("echo two"),
        "the second echo: {}",
        String::from_utf8_lossy(&second)
    );
    client.write_all(b"0\r\n\r\n").await.expect("end");
    let end = read_until(&mut client, b"0\r\n\r\n").await;
    assert!(end.ends_with(b"0\r\n\r\n"), "the response ended: {end:?}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_responses_are_skipped_and_the_connection_is_kept() {
    let (endpoint, accepted) = scripted_endpoint(|mut stream: TcpStream| async move {
        loop {
            if read_until(&mut stream, b"\r\n\r\n").await.is_empty() {
                return;
            }
            let answer = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal";
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let (gateway, addr) = gateway(endpoint).await;
    for _ in 0..2 {
        let answer = get(&client(), addr, "/").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, "final");
    }
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        1,
        "one upstream connection for both"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_delimited_by_the_close_is_passed_whole_and_its_connection_not_reused() {
    let (endpoint, accepted) = scripted_endpoint(|mut stream: TcpStream| async move {
        read_until(&mut stream, b"\r\n\r\n").await;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil ").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = stream.write_all(b"the close").await;
    })
    .await;
    let (gateway, addr) = gateway(endpoint).await;
    for _ in 0..2 {
        let answer = get(&client(), addr, "/").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, "until the close");
    }
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        2,
        "a new connection each time"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_response_ends_at_its_head_and_keeps_the_connection() {
    let (endpoint, accepted) = scripted_endpoint(|mut stream: TcpStream| async move {
        loop {
            let request = read_until(&mut stream, b"\r\n\r\n").await;
            let answer: &[u8] = if request.starts_with(b"HEAD") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n"
            } else if request.starts_with(b"GET") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nnine byte"
            } else {
                return;
            };
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    let (gateway, addr) = gateway(endpoint).await;
    let head = http::Request::head(format!("http://{addr}/"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let answer = send(&client(), head).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-length"], "9");
    assert_eq!(answer.body, "");
    let answer = get(&client(), addr, "/").await;
    assert_eq!(answer.body, "nine byte");
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        1,
        "the HEAD left the connection usable"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_request_body_goes_up_chunked_frame_by_frame() {
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    let seen_tx = Arc::new(parking_lot::Mutex::new(Some(seen_tx)));
    let (endpoint, _) = scripted_endpoint(move |mut stream: TcpStream| {
        let seen_tx = Arc::clone(&seen_tx);
        async move {
            let request = read_until(&mut stream, b"0\r\n\r\n").await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            if let Some(seen) = seen_tx.lock().take() {
                let _ = seen.send(request);
            }
        }
    })
    .await;
    let (gateway, addr) = gateway(endpoint).await;
    let mut client = TcpStream::connect(addr).await.expect("connect");
    let request = "POST /sum HTTP/1.1\r\nhost: trailers.test\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\nconnection: close\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\nx-sum: 6\r\n\r\n";
    client.write_all(request.as_bytes()).await.expect("request");
    let answer = read_until(&mut client, b"\r\n\r\nok").await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let seen = timeout(TEST_TIMEOUT, seen_rx)
        .await
        .expect("in time")
        .expect("seen");
    let seen = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    assert!(seen.contains("transfer-encoding: chunked\r\n"), "{seen}");
    // The `Trailer` field is hop-by-hop to levee: the fields it names are
    // not forwarded, and the body ends with the last chunk.
    assert!(
        seen.ends_with("\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"),
        "{seen}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_does_not_speak_http_gets_a_502_protocol() {
    let (endpoint, _) = scripted_endpoint(|mut stream: TcpStream| async move {
        read_until(&mut stream, b"\r\n\r\n").await;
        let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
    })
    .await;
    let (gateway, addr) = gateway(endpoint).await;
    let answer = get(&client(), addr, "/").await;
    assert_eq!(answer.status, 502);
    let json: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON body");
    assert_eq!(json["kind"], "protocol-error", "{json}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_body_is_sent_reaches_the_client() {
    // The endpoint refuses the upload as soon as it has the head, then
    // reads and discards what still comes (a lingering close, as servers
    // do so that their answer is not lost to a reset).
    let (endpoint, _) = scripted_endpoint(|mut stream: TcpStream| async move {
        read_until(&mut stream, b"\r\n\r\n").await;
        let answer = "HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo much";
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        let _ = stream.shutdown().await;
        let mut sink = [0; 16 * 1024];
        while let Ok(Ok(n)) = timeout(Duration::from_secs(5), stream.read(&mut sink)).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    let (gateway, addr) = gateway(endpoint).await;
    let mut client = TcpStream::connect(addr).await.expect("connect");
    // Larger than the replay buffer: the body streams, and most of it is
    // still to come when the endpoint answers.
    let length = 8 * 1024 * 1024;
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: early.test\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n"
    );
    client.write_all(head.as_bytes()).await.expect("head");
    let (mut reader, mut writer) = client.into_split();
    let upload = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..16 {
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // Still sending, as far as levee knows: dropping the write half
        // would end the body early (a FIN) and race the endpoint's answer.
        std::future::pending::<()>().await;
        drop(writer);
    });
    let answer = read_until(&mut reader, b"too much").await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.ends_with("too much"), "{answer}");
    upload.abort();
    gateway.shutdown().await;
}
