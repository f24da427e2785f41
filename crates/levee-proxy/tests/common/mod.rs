//! Shared helpers for the proxy's integration tests: start testkit backends
//! and a gateway on loopback port 0, and make requests through it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use levee_proxy::RunningGateway;
use levee_proxy::config::{
    BalancePolicy, ClusterSettings, Config, EndpointAddress, ListenerSettings,
};
use levee_testkit::backend::Backend;

pub const LOOPBACK: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Bound every test await so a regression fails instead of hanging.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);

pub async fn backends(n: usize) -> Vec<Backend> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            Backend::start(format!("b{}", i + 1), LOOPBACK)
                .await
                .expect("backend starts"),
        );
    }
    out
}

pub fn endpoint(addr: SocketAddr) -> EndpointAddress {
    EndpointAddress {
        host: addr.ip().to_string(),
        port: addr.port(),
    }
}

/// A config with one listener "web" on port 0 in front of cluster "app".
pub fn config(endpoints: Vec<SocketAddr>, balance: BalancePolicy) -> Config {
    let mut cluster = ClusterSettings::new("app", endpoints.into_iter().map(endpoint).collect());
    cluster.balance = balance;
    cluster.connect_timeout = Duration::from_millis(500);
    cluster.request_timeout = Duration::from_secs(5);
    let mut config = Config::default();
    config.admin.listen = LOOPBACK;
    config.runtime.drain_timeout = Duration::from_secs(5);
    config.listeners = vec![ListenerSettings::new("web", LOOPBACK, "app")];
    config.clusters = vec![cluster];
    config
}

/// An HTTP check of `GET /healthz` expecting 200, rise 2 and fall 2, at
/// `interval` (`transition` while a state is changing), each check bounded
/// by `timeout`.
pub fn http_health(
    interval: Duration,
    transition: Duration,
    timeout: Duration,
    jitter: f64,
) -> levee_proxy::config::HealthSettings {
    levee_proxy::config::HealthSettings {
        check: levee_proxy::config::HealthCheckKind::Http(
            levee_proxy::config::HttpCheckSettings::new("/healthz"),
        ),
        params: levee_core::HealthCheckParams::new(2, 2, interval, transition, timeout, jitter)
            .expect("health params"),
    }
}

pub async fn start(config: Config) -> (RunningGateway, SocketAddr) {
    let gateway = levee_proxy::start(config).await.expect("gateway starts");
    let addr = gateway.listener_address("web").expect("listener web");
    (gateway, addr)
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

pub async fn send(client: &TestClient, request: Request<Full<Bytes>>) -> Answer {
    let response = tokio::time::timeout(TEST_TIMEOUT, client.request(request))
        .await
        .expect("response within the test timeout")
        .expect("response");
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(TEST_TIMEOUT, body.collect())
        .await
        .expect("body within the test timeout")
        .expect("body")
        .to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(client: &TestClient, addr: SocketAddr, path: &str) -> Answer {
    let request = Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(client, request).await
}

/// A tiny webhook receiver: every POSTed body goes to the channel.
pub async fn webhook_receiver() -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) {
    let listener = tokio::net::TcpListener::bind(LOOPBACK).await.expect("bind");
    let address = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let body = request.into_body().collect().await?.to_bytes();
                        if let Ok(value) = serde_json::from_slice(&body) {
                            let _ = tx.send(value);
                        }
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::new())))
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (address, rx)
}

pub async fn next_webhook(
    received: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) -> serde_json::Value {
    tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .expect("a webhook within 5s")
        .expect("receiver open")
}
