//! HTTP/2 to the endpoints (`upstream_protocol`): requests multiplexed on
//! few connections, and the two ways an HTTP/2 server says "not processed"
//! (`REFUSED_STREAM`, a stream above a graceful `GOAWAY`'s last id) retried
//! elsewhere whatever the method, so that clients see no error. The
//! endpoints are real HTTP/2 servers (the h2 crate, which hyper is built
//! on), cleartext or behind TLS.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use levee_proxy::config::{BalancePolicy, Config, UpstreamProtocol};
use tokio::net::TcpListener;

/// What an h2 test server does.
#[derive(Clone, Copy, Default)]
struct Behavior {
    /// Refuse every n-th stream with `REFUSED_STREAM` (0: never).
    refuse_every: u64,
    /// Start a graceful shutdown (GOAWAY) of a connection after it accepted
    /// this many streams (0: never).
    goaway_after: u64,
    /// Wait this long before answering.
    delay: Duration,
}

/// Counts of what an h2 server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicU64,
    answered: AtomicU64,
    refused: AtomicU64,
    goaways: AtomicU64,
}

/// An HTTP/2 server (prior knowledge) answering `hello from NAME`.
async fn h2_server(name: &'static str, behavior: Behavior) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind(LOOPBACK).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let seen = Arc::new(Seen::default());
    let counts = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counts.connections.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(serve_h2(tcp, name, behavior, Arc::clone(&counts)));
        }
    });
    (addr, seen)
}

async fn serve_h2<T>(io: T, name: &'static str, behavior: Behavior, seen: Arc<Seen>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(mut connection) = h2::server::handshake(io).await else {
        return;
    };
    let mut streams = 0u64;
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        streams += 1;
        let total =
            seen.answered.load(Ordering::Relaxed) + seen.refused.load(Ordering::Relaxed) + 1;
        if behavior.refuse_every > 0 && total % behavior.refuse_every == 0 {
            seen.refused.fetch_add(1, Ordering::Relaxed);
            respond.send_reset(h2::Reason::REFUSED_STREAM);
        } else {
            seen.answered.fetch_add(1, Ordering::Relaxed);
            let delay = behavior.delay;
            tokio::spawn(async move {
                let mut body = request.into_body();
                while let Some(Ok(_)) = body.data().await {}
                tokio::time::sleep(delay).await;
                let response = http::Response::builder()
                    .status(200)
                    .header("x-backend", name)
                    .body(())
                    .expect("response");
                if let Ok(mut send) = respond.send_response(response, false) {
                    let _ = send.send_data(Bytes::from(format!("hello from {name}\n")), true);
                }
            });
        }
        if behavior.goaway_after > 0 && streams == behavior.goaway_after {
            seen.goaways.fetch_add(1, Ordering::Relaxed);
            connection.graceful_shutdown();
        }
    }
}

fn h2c_config(endpoints: Vec<SocketAddr>) -> Config {
    let mut config = config(endpoints, BalancePolicy::RoundRobin);
    config.clusters[0].upstream_protocol = UpstreamProtocol::H2c;
    config
}

/// `n` requests from `clients` concurrent loops, half of them POSTs;
/// (answers 200, other answers).
async fn load(addr: SocketAddr, clients: usize, n: usize) -> (usize, Vec<String>) {
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        tasks.spawn(async move {
            let client = client();
            let mut ok = 0;
            let mut bad = Vec::new();
            for i in 0..n {
                let request = if (c + i) % 2 == 0 {
                    Request::post(format!("http://{addr}/write"))
                        .body(Full::new(Bytes::from_static(b"once")))
                        .expect("request")
                } else {
                    Request::get(format!("http://{addr}/read"))
                        .body(Full::new(Bytes::new()))
                        .expect("request")
                };
                let answer = send(&client, request).await;
                if answer.status == StatusCode::OK && answer.body.starts_with("hello from") {
                    ok += 1;
                } else {
                    bad.push(format!("{} {}", answer.status, answer.body));
                }
            }
            (ok, bad)
        });
    }
    let mut ok = 0;
    let mut bad = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (o, b) = joined.expect("client task");
        ok += o;
        bad.extend(b);
    }
    (ok, bad)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_streams_and_goaways_under_load_cost_clients_nothing() {
    let (a, seen_a) = h2_server(
        "a",
        Behavior {
            refuse_every: 10,
            goaway_after: 40,
            ..Behavior::default()
        },
    )
    .await;
    let (b, seen_b) = h2_server(
        "b",
        Behavior {
            goaway_after: 60,
            ..Behavior::default()
        },
    )
    .await;
    let mut config = h2c_config(vec![a, b]);
    // A hedge would deliver a slow GET twice, by design: off, so that any
    // second delivery is a mistake.
    config.clusters[0].retry.hedge = None;
    let (gateway, addr) = start(config).await;
    let (ok, bad) = tokio::time::timeout(TEST_TIMEOUT, load(addr, 8, 50))
        .await
        .expect("in time");
    assert!(
        bad.is_empty(),
        "{} errors: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert_eq!(ok, 400);
    let refused = seen_a.refused.load(Ordering::Relaxed);
    let goaways = seen_a.goaways.load(Ordering::Relaxed) + seen_b.goaways.load(Ordering::Relaxed);
    assert!(refused >= 10, "refused {refused}");
    assert!(goaways >= 4, "goaways {goaways}");
    // Every request was answered exactly once: refused streams were not
    // processed, so retrying them delivered nothing twice.
    let answered =
        seen_a.answered.load(Ordering::Relaxed) + seen_b.answered.load(Ordering::Relaxed);
    assert_eq!(
        answered, 400,
        "each request reached an endpoint's handler once"
    );
    let metrics = gateway.state().metrics.encode();
    assert!(
        metrics.contains("kind=\"refused-stream\""),
        "refusals are counted as their own kind"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_http2_connection() {
    let (endpoint, seen) = h2_server(
        "a",
        Behavior {
            delay: Duration::from_millis(50),
            ..Behavior::default()
        },
    )
    .await;
    let mut config = h2c_config(vec![endpoint]);
    config.clusters[0].retry.hedge = None;
    let (gateway, addr) = start(config).await;
    let (ok, bad) = tokio::time::timeout(TEST_TIMEOUT, load(addr, 16, 5))
        .await
        .expect("in time");
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(ok, 80);
    assert_eq!(
        seen.connections.load(Ordering::Relaxed),
        1,
        "16 requests at a time fit in one connection's streams"
    );
    gateway.shutdown().await;

    // A bound of 4 streams per connection: 16 at once need 4 connections.
    let mut config = h2c_config(vec![endpoint]);
    config.clusters[0].retry.hedge = None;
    config.clusters[0].max_concurrent_streams = 4;
    let before = seen.connections.load(Ordering::Relaxed);
    let (gateway, addr) = start(config).await;
    let (ok, _) = tokio::time::timeout(TEST_TIMEOUT, load(addr, 16, 5))
        .await
        .expect("in time");
    assert_eq!(ok, 80);
    let opened = seen.connections.load(Ordering::Relaxed) - before;
    assert!((4..=6).contains(&opened), "opened {opened} connections");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_speak_http2_to_an_h2c_cluster() {
    use levee_core::health::HealthCheckParams;
    use levee_proxy::config::{HealthCheckKind, HealthSettings, HttpCheckSettings};
    let (endpoint, seen) = h2_server("a", Behavior::default()).await;
    let mut config = h2c_config(vec![endpoint]);
    config.clusters[0].health = Some(HealthSettings {
        check: HealthCheckKind::Http(HttpCheckSettings::new("/healthz")),
        params: HealthCheckParams::new(
            2,
            2,
            Duration::from_millis(100),
            Duration::from_millis(100),
            Duration::from_millis(500),
            0.1,
        )
        .expect("params"),
    });
    let (gateway, addr) = start(config).await;
    tokio::time::timeout(TEST_TIMEOUT, async {
        while seen.answered.load(Ordering::Relaxed) < 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("HTTP/2 checks reach the endpoint");
    let status = get(&client(), gateway.admin_address(), "/status")
        .await
        .body;
    assert!(status.contains("\"state\":\"healthy\""), "{status}");
    assert_eq!(get(&client(), addr, "/").await.status, StatusCode::OK);
    gateway.shutdown().await;
}

#[tokio::test]
async fn upstream_protocol_must_agree_with_tls() {
    let source = |protocol: &str, tls: &str| {
        format!(
            "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:8080\"\ncluster = \"app\"\n\n[[cluster]]\nname = \"app\"\nendpoints = [\"127.0.0.1:8000\"]\nupstream_protocol = \"{protocol}\"\n{tls}"
        )
    };
    let error = |protocol, tls| {
        Config::from_toml_str(&source(protocol, tls), "levee.toml")
            .expect_err("rejected")
            .to_string()
    };
    assert!(
        error("h2", "").contains("negotiated over TLS"),
        "{}",
        error("h2", "")
    );
    assert!(error("auto", "").contains("negotiated over TLS"));
    assert!(error("h2c", "tls = {}").contains("use \"h2\""));
    assert!(error("h3", "").contains("expected \"http1\", \"h2\", \"h2c\" or \"auto\""));
    assert!(Config::from_toml_str(&source("h2", "tls = {}"), "levee.toml").is_ok());
    assert!(Config::from_toml_str(&source("h2c", ""), "levee.toml").is_ok());
}

/// An HTTP/2 server behind TLS that agrees to `alpn` only; writes its CA
/// to `dir`.
async fn h2_tls_server(
    dir: &std::path::Path,
    alpn: &[&[u8]],
) -> (SocketAddr, Arc<Seen>, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["h2.test".to_owned()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("leaf");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(LOOPBACK).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let seen = Arc::new(Seen::default());
    let counts = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counts.connections.fetch_add(1, Ordering::Relaxed);
            let acceptor = acceptor.clone();
            let counts = Arc::clone(&counts);
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve_h2(tls, "tls", Behavior::default(), counts).await;
                }
            });
        }
    });
    (addr, seen, ca_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_and_auto_agree_on_http2_by_alpn() {
    let dir = std::env::temp_dir().join(format!("levee-h2-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (endpoint, seen, ca) = h2_tls_server(&dir, &[b"h2"]).await;
    for protocol in [UpstreamProtocol::H2, UpstreamProtocol::Auto] {
        let mut config = config(vec![endpoint], BalancePolicy::RoundRobin);
        config.clusters[0].upstream_protocol = protocol;
        config.clusters[0].tls = Some(levee_proxy::config::UpstreamTlsSettings {
            ca: Some(ca.clone()),
            server_name: Some("h2.test".to_owned()),
            ..Default::default()
        });
        let (gateway, addr) = start(config).await;
        let (ok, bad) = tokio::time::timeout(TEST_TIMEOUT, load(addr, 4, 5))
            .await
            .expect("in time");
        assert!(bad.is_empty(), "{protocol}: {bad:?}");
        assert_eq!(ok, 20);
        gateway.shutdown().await;
    }
    assert_eq!(seen.answered.load(Ordering::Relaxed), 40);
    let _ = std::fs::remove_dir_all(&dir);
}
