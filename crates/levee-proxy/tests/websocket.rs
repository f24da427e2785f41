//! WebSocket (and any HTTP/1.1 `Upgrade`) through levee: the handshake
//! reaches an endpoint, its 101 comes back, then frames flow both ways until
//! a side closes. Real WebSocket peers on both sides (tokio-tungstenite).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use levee_proxy::RunningGateway;
use levee_proxy::config::BalancePolicy;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket echo server; dropping (or `stop`) closes every connection.
struct EchoServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl EchoServer {
    async fn start(addr: SocketAddr) -> EchoServer {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            // Connections live in this set: aborting the server ends them.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { return };
                        connections.spawn(async move {
                            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                                return;
                            };
                            while let Some(Ok(message)) = ws.next().await {
                                if message.is_close() {
                                    return;
                                }
                                if (message.is_text() || message.is_binary())
                                    && ws.send(message).await.is_err()
                                {
                                    return;
                                }
                            }
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        EchoServer { addr, task }
    }

    fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Client = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn connect(addr: SocketAddr) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let tcp = TcpStream::connect(addr).await.expect("connect to levee");
    let (ws, response) =
        tokio_tungstenite::client_async(format!("ws://ws.test:{}/chat", addr.port()), tcp).await?;
    assert_eq!(response.status(), 101);
    Ok(ws)
}

async fn echo(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
    let answer = ws.next().await.expect("an answer").expect("a frame");
    assert_eq!(answer.into_text().expect("text").as_str(), text);
}

fn tunnels_open(gateway: &RunningGateway) -> u64 {
    let text = gateway.state().metrics.encode();
    text.lines()
        .find_map(|line| {
            line.strip_prefix("levee_tunnels_open{listener=\"web\"}")?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0, |value| value as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_echoes_through_levee_and_sees_its_backend_restart() {
    let server = EchoServer::start(LOOPBACK).await;
    let backend = server.addr;
    let (gateway, addr) = start(config(vec![backend], BalancePolicy::RoundRobin)).await;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut ws = connect(addr).await.expect("handshake through levee");
        for i in 0..100 {
            echo(&mut ws, &format!("message {i}")).await;
        }
        // A large binary frame, in both directions whole.
        let big = vec![7u8; 256 * 1024];
        ws.send(Message::binary(big.clone())).await.expect("send");
        let answer = ws.next().await.expect("answer").expect("frame");
        assert_eq!(answer.into_data().as_ref(), &big[..]);
        assert_eq!(tunnels_open(&gateway), 1);

        // The backend goes away: the client sees its connection end.
        server.stop();
        let ended = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
        assert!(
            matches!(ended, Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_))))),
            "{ended:?}"
        );
        // Back on the same port: a new connection works.
        let _server = EchoServer::start(backend).await;
        let mut ws = connect(addr).await.expect("handshake after the restart");
        echo(&mut ws, "again").await;
        ws.close(None).await.expect("close");
        for _ in 0..100 {
            if tunnels_open(&gateway) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(tunnels_open(&gateway), 0, "closed tunnels are not counted");
    })
    .await
    .expect("in time");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_cannot_connect_moves_to_another_endpoint() {
    let server = EchoServer::start(LOOPBACK).await;
    let refused = {
        let listener = std::net::TcpListener::bind(LOOPBACK).expect("bind");
        listener.local_addr().expect("address")
    };
    let (gateway, addr) = start(config(
        vec![refused, server.addr],
        BalancePolicy::RoundRobin,
    ))
    .await;
    tokio::time::timeout(TEST_TIMEOUT, async {
        for i in 0..6 {
            let mut ws = connect(addr).await.expect("every handshake lands");
            echo(&mut ws, &format!("hello {i}")).await;
        }
    })
    .await
    .expect("in time");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_handshake_is_passed_back_and_the_connection_serves_http() {
    // An ordinary HTTP backend: it answers the handshake with 200, not 101.
    let backend = levee_testkit::backend::Backend::start("b1", LOOPBACK)
        .await
        .expect("backend");
    let (gateway, addr) = start(config(vec![backend.addr()], BalancePolicy::RoundRobin)).await;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let refused = connect(addr).await;
        assert!(refused.is_err(), "no 101, no WebSocket");
        // Plain requests still work on the listener.
        assert_eq!(get(&client(), addr, "/").await.status, 200);
    })
    .await
    .expect("in time");
    assert_eq!(tunnels_open(&gateway), 0);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_over_http2_reaches_an_http1_endpoint() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio_tungstenite::tungstenite::protocol::Role;
    let server = EchoServer::start(LOOPBACK).await;
    let (gateway, addr) = start(config(vec![server.addr], BalancePolicy::RoundRobin)).await;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("HTTP/2");
        tokio::spawn(connection);
        // RFC 8441: CONNECT with :protocol = websocket.
        let mut request = http::Request::connect(format!("http://ws.test:{}/chat", addr.port()))
            .header("sec-websocket-version", "13")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        request
            .extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        let mut response = sender.send_request(request).await.expect("an answer");
        assert_eq!(response.status(), 200, "RFC 8441: 200 opens the tunnel");
        let stream = hyper::upgrade::on(&mut response).await.expect("the stream");
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(stream),
            Role::Client,
            None,
        )
        .await;
        for i in 0..20 {
            let text = format!("over h2 {i}");
            ws.send(Message::text(text.clone())).await.expect("send");
            let answer = ws.next().await.expect("answer").expect("frame");
            assert_eq!(answer.into_text().expect("text").as_str(), text);
        }
        assert_eq!(tunnels_open(&gateway), 1);
    })
    .await
    .expect("in time");
    gateway.shutdown().await;
}
