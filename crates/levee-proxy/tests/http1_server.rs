//! levee answers simple HTTP/1.1 requests itself and leaves the rest to
//! hyper, on the same connection: what a client sees must not tell them
//! apart (framing, order, keep-alive, errors).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response as a client reads it.
#[derive(Debug)]
struct Read {
    head: String,
    body: Vec<u8>,
}

impl Read {
    fn status_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// A raw connection to the gateway and what it has received so far.
struct Client {
    stream: TcpStream,
    received: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.expect("connect"),
            received: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &str) {
        self.stream
            .write_all(bytes.as_bytes())
            .await
            .expect("write");
    }

    /// Read more; false once the peer has closed.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        let read = tokio::time::timeout(TEST_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .unwrap_or(0);
        self.received.extend_from_slice(&chunk[..read]);
        read > 0
    }

    /// The next response (`head_only`: to a HEAD request), framed by its
    /// content-length or chunked coding.
    async fn response(&mut self, head_only: bool) -> Read {
        let head_end = loop {
            if let Some(at) = find(&self.received, b"\r\n\r\n") {
                break at;
            }
            assert!(self.fill().await, "closed before a whole head");
        };
        let head = String::from_utf8_lossy(&self.received[..head_end]).into_owned();
        self.received.drain(..head_end + 4);
        let mut read = Read {
            head,
            body: Vec::new(),
        };
        let status: u16 = read.status_line()[9..12].parse().expect("status code");
        if head_only || status == 204 || status == 304 {
            return read;
        }
        if read.field("transfer-encoding") == Some("chunked") {
            loop {
                let line_end = loop {
                    if let Some(at) = find(&self.received, b"\r\n") {
                        break at;
                    }
                    assert!(self.fill().await, "closed mid-body");
                };
                let size = usize::from_str_radix(
                    std::str::from_utf8(&self.received[..line_end]).expect("ascii"),
                    16,
                )
                .expect("chunk size");
                while self.received.len() < line_end + 2 + size + 2 {
                    assert!(self.fill().await, "closed mid-chunk");
                }
                read.body
                    .extend_from_slice(&self.received[line_end + 2..line_end + 2 + size]);
                self.received.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    return read;
                }
            }
        }
        let length: usize = read
            .field("content-length")
            .expect("a framed body")
            .parse()
            .expect("length");
        while self.received.len() < length {
            assert!(self.fill().await, "closed mid-body");
        }
        read.body = self.received.drain(..length).collect();
        read
    }

    /// Whether the peer closes (nothing more arrives) within `limit`.
    async fn closes_within(&mut self, limit: Duration) -> bool {
        let mut chunk = [0u8; 1024];
        matches!(
            tokio::time::timeout(limit, self.stream.read(&mut chunk)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

async fn gateway() -> (
    levee_proxy::RunningGateway,
    SocketAddr,
    Vec<levee_testkit::backend::Backend>,
) {
    let nodes = backends(1).await;
    let config = config(
        nodes.iter().map(|b| b.addr()).collect(),
        levee_proxy::config::BalancePolicy::RoundRobin,
    );
    let (gateway, addr) = start(config).await;
    (gateway, addr, nodes)
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (gateway, addr, _nodes) = gateway().await;
    let mut client = Client::connect(addr).await;
    client
        .send(
            "GET /bytes?n=3 HTTP/1.1\r\nhost: a\r\n\r\n\
             GET /status/404 HTTP/1.1\r\nhost: a\r\n\r\n\
             GET /bytes?n=5 HTTP/1.1\r\nhost: a\r\n\r\n",
        )
        .await;
    let first = client.response(false).await;
    assert_eq!(first.status_line(), "HTTP/1.1 200 OK");
    assert_eq!(first.body, b"xxx");
    assert!(first.field("date").is_some(), "{first:?}");
    assert_eq!(
        client.response(false).await.status_line(),
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(client.response(false).await.body, b"xxxxx");
    gateway.shutdown().await;
}

#[tokio::test]
async fn one_connection_mixes_requests_levee_and_hyper_answer() {
    let (gateway, addr, _nodes) = gateway().await;
    let mut client = Client::connect(addr).await;
    client
        .send("GET /bytes?n=2 HTTP/1.1\r\nhost: a\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.body, b"xx");
    // A body: hyper's.
    client
        .send("POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello")
        .await;
    assert_eq!(client.response(false).await.body, b"hello");
    // A HEAD: hyper's too; the length is said, no body is sent.
    client.send("HEAD / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    let head = client.response(true).await;
    assert_eq!(head.status_line(), "HTTP/1.1 200 OK");
    assert!(head.field("content-length").is_some(), "{head:?}");
    // And levee's again, on the same connection.
    client
        .send("GET /bytes?n=4 HTTP/1.1\r\nhost: a\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.body, b"xxxx");
    client
        .send("GET /status/204 HTTP/1.1\r\nhost: a\r\n\r\n")
        .await;
    let empty = client.response(false).await;
    assert_eq!(empty.status_line(), "HTTP/1.1 204 No Content");
    assert_eq!(empty.field("content-length"), None, "{empty:?}");
    client
        .send("GET /bytes?n=1 HTTP/1.1\r\nhost: a\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.body, b"x");
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_streamed_answer_is_chunked_and_complete() {
    let (gateway, addr, _nodes) = gateway().await;
    let mut client = Client::connect(addr).await;
    client
        .send("GET /drip?chunks=4&interval=20 HTTP/1.1\r\nhost: a\r\n\r\n")
        .await;
    let streamed = client.response(false).await;
    assert_eq!(streamed.field("transfer-encoding"), Some("chunked"));
    assert!(!streamed.body.is_empty());
    let text = String::from_utf8_lossy(&streamed.body).into_owned();
    for n in 0..4 {
        assert!(text.contains(&n.to_string()), "chunk {n} in {text:?}");
    }
    // The connection is still good.
    client
        .send("GET /bytes?n=2 HTTP/1.1\r\nhost: a\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.body, b"xx");
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_malformed_request_after_good_ones_gets_400_and_a_close() {
    let (gateway, addr, _nodes) = gateway().await;
    let mut client = Client::connect(addr).await;
    client
        .send("GET /bytes?n=1 HTTP/1.1\r\nhost: a\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.body, b"x");
    client.send("GET / HTTP/1.1\r\nbad field\r\n\r\n").await;
    let refused = client.response(false).await;
    assert_eq!(refused.status_line(), "HTTP/1.1 400 Bad Request");
    assert!(client.closes_within(TEST_TIMEOUT).await);
    gateway.shutdown().await;
}

#[tokio::test]
async fn close_and_http10_are_honoured() {
    let (gateway, addr, _nodes) = gateway().await;
    let mut client = Client::connect(addr).await;
    client
        .send("GET /bytes?n=1 HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        .await;
    let last = client.response(false).await;
    assert_eq!(last.field("connection"), Some("close"), "{last:?}");
    assert!(client.closes_within(TEST_TIMEOUT).await);

    let mut old = Client::connect(addr).await;
    old.send("GET /bytes?n=2 HTTP/1.0\r\nhost: a\r\n\r\n").await;
    let answer = old.response(false).await;
    assert!(
        answer.status_line().starts_with("HTTP/1.0 200"),
        "{answer:?}"
    );
    assert_eq!(answer.body, b"xx");
    assert!(old.closes_within(TEST_TIMEOUT).await);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_client_gone_mid_head_leaves_the_gateway_serving() {
    let (gateway, addr, _nodes) = gateway().await;
    for _ in 0..3 {
        let mut gone = Client::connect(addr).await;
        gone.send("GET /bytes?n=1 HTTP/1.1\r\nho").await;
        drop(gone);
    }
    let mut client = Client::connect(addr).await;
    client
        .send("GET /bytes?n=3 HTTP/1.1\r\nhost: a\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.body, b"xxx");
    gateway.shutdown().await;
}
