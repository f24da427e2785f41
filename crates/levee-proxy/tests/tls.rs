//! TLS on both sides: levee terminates TLS for its clients (certificates by
//! SNI, HTTP/2 and HTTP/1.1 by ALPN, files read again when they change) and
//! speaks TLS to endpoints (verified by a CA file and a name, mutual TLS).
//! Every certificate is made here, in a temporary directory, by rcgen.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use levee_proxy::RunningGateway;
use levee_proxy::config::{
    BalancePolicy, CertificateFiles, Config, ListenerTlsSettings, Protocol, TlsVersion,
    UpstreamTlsSettings,
};
use levee_testkit::backend::Backend;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A test CA and the files it signs, in a directory removed on drop.
struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    counter: AtomicU64,
}

impl Pki {
    fn new() -> Pki {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "levee-tls-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "levee test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let pki = Pki {
            dir,
            ca,
            counter: AtomicU64::new(0),
        };
        std::fs::write(pki.ca_file(), pki.ca.pem()).expect("write CA");
        pki
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// A leaf certificate for `names`, written to two new files.
    fn leaf(&self, names: &[&str]) -> (CertificateFiles, CertificateDer<'static>) {
        let key = KeyPair::generate().expect("key");
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("params");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let files = CertificateFiles {
            cert: self.dir.join(format!("leaf{n}.pem")),
            key: self.dir.join(format!("leaf{n}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write cert");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        (files, cert.der().clone())
    }

    /// rustls material of a leaf, for test servers and clients.
    fn leaf_material(
        &self,
        names: &[&str],
    ) -> (
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let (files, der) = self.leaf(names);
        let key = rustls::pki_types::pem::PemObject::from_pem_file(&files.key).expect("key");
        (vec![der], key)
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der()).expect("CA root");
        roots
    }

    /// A client trusting this CA, offering `alpn`.
    fn client(&self, alpn: &[&[u8]]) -> TlsConnector {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::from(Arc::new(config))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An HTTPS backend answering `hello from NAME` (over HTTP/1.1), counting
/// the requests it received and the handshakes that failed.
struct TlsBackend {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsBackend {
    async fn start(name: &'static str, config: ServerConfig) -> TlsBackend {
        let listener = TcpListener::bind(LOOPBACK).await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let requests = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |_request: Request<hyper::body::Incoming>| {
                        counted.fetch_add(1, Ordering::Relaxed);
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(format!("hello from {name}\n")),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsBackend {
            addr,
            requests,
            task,
        }
    }

    /// A backend whose certificate is for `names`.
    async fn with_names(pki: &Pki, name: &'static str, names: &[&str]) -> TlsBackend {
        let (chain, key) = pki.leaf_material(names);
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        TlsBackend::start(name, config).await
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Handshake with `addr` asking for `sni`; the connection and the leaf
/// certificate levee served.
async fn connect(
    connector: &TlsConnector,
    addr: SocketAddr,
    sni: &str,
) -> std::io::Result<(
    tokio_rustls::client::TlsStream<TcpStream>,
    CertificateDer<'static>,
)> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).expect("name");
    let tls = connector.connect(name, tcp).await?;
    let leaf = tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone();
    Ok((tls, leaf))
}

/// GET `/` over HTTP/1.1 on `tls`; status and body.
async fn get_h1<S>(tls: S) -> (StatusCode, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let request = Request::get("/")
        .header("host", "app.test")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A gateway whose listener "web" terminates TLS with `tls`, in front of
/// `endpoints`.
async fn start_tls(
    endpoints: Vec<SocketAddr>,
    tls: ListenerTlsSettings,
) -> (RunningGateway, SocketAddr) {
    let mut config = config(endpoints, BalancePolicy::RoundRobin);
    config.listeners[0].tls = Some(tls);
    start(config).await
}

fn metric(gateway: &RunningGateway, series: &str) -> u64 {
    let text = gateway.state().metrics.encode();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_serves_the_certificate_for_the_asked_name_over_http1_and_h2() {
    let pki = Pki::new();
    let (default, default_der) = pki.leaf(&["default.test"]);
    let (api, api_der) = pki.leaf(&["*.api.test"]);
    let backend = Backend::start("b1", LOOPBACK).await.expect("backend");
    let mut tls = ListenerTlsSettings::new(&default.cert, &default.key);
    tls.certificates = vec![api];
    let (gateway, addr) = start_tls(vec![backend.addr()], tls).await;

    tokio::time::timeout(TEST_TIMEOUT, async {
        // SNI picks the certificate; a name no certificate covers gets the
        // default one (which the client then rejects: not its name).
        let h1 = pki.client(&[b"http/1.1"]);
        let (stream, leaf) = connect(&h1, addr, "eu.api.test").await.expect("handshake");
        assert_eq!(leaf, api_der, "the *.api.test certificate for eu.api.test");
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let (status, body) = get_h1(stream).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "hello from b1\n");
        let (_, leaf) = connect(&h1, addr, "default.test").await.expect("handshake");
        assert_eq!(leaf, default_der);
        let refused = connect(&h1, addr, "other.test").await;
        assert!(
            refused.is_err(),
            "other.test gets the default certificate, which is not valid for it"
        );

        // ALPN h2: the same listener speaks HTTP/2.
        let h2 = pki.client(&[b"h2", b"http/1.1"]);
        let (stream, _) = connect(&h2, addr, "default.test").await.expect("handshake");
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(connection);
        for _ in 0..3 {
            let request = Request::get("https://default.test/")
                .body(Empty::<Bytes>::new())
                .expect("request");
            let response = sender.send_request(request).await.expect("h2 response");
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.version(), http::Version::HTTP_2);
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            assert_eq!(&body[..], b"hello from b1\n");
        }
    })
    .await
    .expect("in time");
    assert!(metric(&gateway, "levee_tls_handshakes_total{listener=\"web\"}") >= 3);
    let headers = backend
        .last_request_headers()
        .expect("a request reached b1");
    assert_eq!(headers["x-forwarded-proto"], "https");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_handshakes_are_counted_by_reason_and_never_reach_the_cluster() {
    let pki = Pki::new();
    let (default, _) = pki.leaf(&["default.test"]);
    let backend = Backend::start("b1", LOOPBACK).await.expect("backend");
    let mut tls = ListenerTlsSettings::new(&default.cert, &default.key);
    tls.handshake_timeout = Duration::from_millis(300);
    tls.min_version = TlsVersion::Tls13;
    let (gateway, addr) = start_tls(vec![backend.addr()], tls).await;
    let failures = |reason: &str| {
        metric(
            &gateway,
            &format!("levee_tls_handshake_failures_total{{listener=\"web\",reason=\"{reason}\"}}"),
        )
    };

    tokio::time::timeout(TEST_TIMEOUT, async {
        // Plain HTTP sent to the TLS port: closed.
        let mut plain = TcpStream::connect(addr).await.expect("connect");
        plain
            .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .expect("write");
        let mut read = Vec::new();
        let _ = plain.read_to_end(&mut read).await;
        assert!(
            !String::from_utf8_lossy(&read).contains("hello"),
            "{read:?}"
        );

        // A silent client: closed after handshake_timeout.
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        let started = tokio::time::Instant::now();
        let mut byte = [0u8; 1];
        let closed = silent.read(&mut byte).await;
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );

        // A client that offers TLS 1.2 only, to a listener that wants 1.3.
        let old = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("versions")
            .with_root_certificates(pki.roots())
            .with_no_client_auth();
        let refused = connect(&TlsConnector::from(Arc::new(old)), addr, "default.test").await;
        assert!(refused.is_err());

        // A client that does not trust levee's certificate.
        let stranger = Pki::new();
        let refused = connect(&stranger.client(&[]), addr, "default.test").await;
        assert!(refused.is_err());
        // The failure counters are bumped by levee's side of each
        // connection, which may end a moment after the client's.
        for _ in 0..100 {
            if failures("client-alert") >= 1 && failures("incompatible") >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("in time");
    assert_eq!(failures("not-tls"), 1);
    assert_eq!(failures("timeout"), 1);
    assert_eq!(failures("incompatible"), 1);
    assert_eq!(failures("client-alert"), 1);
    assert_eq!(
        backend.requests_received(),
        0,
        "nothing reached the cluster"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_read_again_when_their_files_change_and_connections_stay() {
    let pki = Pki::new();
    let (default, first_der) = pki.leaf(&["default.test"]);
    let backend = Backend::start("b1", LOOPBACK).await.expect("backend");
    let mut tls = ListenerTlsSettings::new(&default.cert, &default.key);
    tls.watch_interval = Some(Duration::from_millis(100));
    let (gateway, addr) = start_tls(vec![backend.addr()], tls).await;
    let client = pki.client(&[b"http/1.1"]);

    tokio::time::timeout(TEST_TIMEOUT, async {
        // A keep-alive connection made with the first certificate.
        let (stream, leaf) = connect(&client, addr, "default.test")
            .await
            .expect("handshake");
        assert_eq!(leaf, first_der);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);

        // Renewed: a new certificate written over the same files (as a
        // rename, the way certbot and Kubernetes do it).
        let (renewed, renewed_der) = pki.leaf(&["default.test"]);
        std::fs::rename(&renewed.key, &default.key).expect("replace key");
        std::fs::rename(&renewed.cert, &default.cert).expect("replace cert");
        let mut served = None;
        for _ in 0..100 {
            let (_, leaf) = connect(&client, addr, "default.test")
                .await
                .expect("handshake");
            if leaf == renewed_der {
                served = Some(leaf);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            served,
            Some(renewed_der.clone()),
            "new connections get the renewed certificate"
        );
        // The old connection still serves.
        let request = Request::get("/")
            .header("host", "default.test")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = sender
            .send_request(request)
            .await
            .expect("old connection serves");
        assert_eq!(response.status(), StatusCode::OK);

        // A broken file keeps the last good certificate, and says so.
        std::fs::write(&default.cert, "not a certificate").expect("break cert");
        for _ in 0..100 {
            if metric(
                &gateway,
                "levee_tls_certificate_reloads_total{listener=\"web\",result=\"error\"}",
            ) == 1
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (stream, leaf) = connect(&client, addr, "default.test")
            .await
            .expect("handshake");
        assert_eq!(leaf, renewed_der, "the last good certificate stays");
        assert_eq!(get_h1(stream).await.0, StatusCode::OK);
    })
    .await
    .expect("in time");
    assert_eq!(
        metric(
            &gateway,
            "levee_tls_certificate_reloads_total{listener=\"web\",result=\"ok\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &gateway,
            "levee_tls_certificate_reloads_total{listener=\"web\",result=\"error\"}"
        ),
        1,
        "reported once, not at every check"
    );
    let events = get(&common::client(), gateway.admin_address(), "/events")
        .await
        .body;
    assert!(events.contains("do not load"), "{events}");
    gateway.shutdown().await;
}

/// A cluster "app" speaking TLS to `endpoints`, verified by the test CA.
fn tls_cluster(pki: &Pki, endpoints: Vec<SocketAddr>, server_name: Option<&str>) -> Config {
    let mut config = config(endpoints, BalancePolicy::RoundRobin);
    config.clusters[0].tls = Some(UpstreamTlsSettings {
        ca: Some(pki.ca_file()),
        server_name: server_name.map(str::to_owned),
        ..UpstreamTlsSettings::default()
    });
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_verified_and_a_wrong_name_is_never_sent_the_request() {
    let pki = Pki::new();
    let good = TlsBackend::with_names(&pki, "good", &["backend.test"]).await;
    let wrong = TlsBackend::with_names(&pki, "wrong", &["elsewhere.test"]).await;
    let mut config = tls_cluster(&pki, vec![wrong.addr, good.addr], Some("backend.test"));
    // No hedging, no retry budget limit in the way: the rule under test is
    // the send phase.
    config.clusters[0].retry.hedge = None;
    let (gateway, addr) = start(config).await;
    let client = client();

    tokio::time::timeout(TEST_TIMEOUT, async {
        for _ in 0..6 {
            // POST: retried only because nothing was sent.
            let request = Request::post(format!("http://{addr}/"))
                .body(Full::new(Bytes::from_static(b"write once")))
                .expect("request");
            let answer = send(&client, request).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            assert_eq!(answer.body, "hello from good\n");
        }
    })
    .await
    .expect("in time");
    assert_eq!(
        wrong.requests(),
        0,
        "no request reached the endpoint with the wrong name"
    );
    assert_eq!(good.requests(), 6);
    gateway.shutdown().await;

    // Alone, the wrong endpoint gets a 502 that says why.
    let config = tls_cluster(&pki, vec![wrong.addr], Some("backend.test"));
    let (gateway, addr) = start(config).await;
    let answer = tokio::time::timeout(TEST_TIMEOUT, get(&client, addr, "/"))
        .await
        .expect("in time");
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert!(answer.body.contains("tls-handshake"), "{}", answer.body);
    assert!(
        answer.body.contains("TLS handshake failed"),
        "{}",
        answer.body
    );
    // The reason an operator must fix, not just the kind.
    let body: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("backend.test") && reason.contains("certificate"),
        "{}",
        answer.body
    );
    assert_eq!(wrong.requests(), 0);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_endpoints_get_the_client_certificate() {
    let pki = Pki::new();
    let (chain, key) = pki.leaf_material(&["backend.test"]);
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(pki.roots()),
        provider(),
    )
    .build()
    .expect("client verifier");
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("server config");
    let backend = TlsBackend::start("mtls", config).await;
    let client = client();

    // Without a client certificate: refused, a 502.
    let config = tls_cluster(&pki, vec![backend.addr], Some("backend.test"));
    let (gateway, addr) = start(config).await;
    let answer = tokio::time::timeout(TEST_TIMEOUT, get(&client, addr, "/"))
        .await
        .expect("in time");
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.body);
    assert_eq!(backend.requests(), 0);
    gateway.shutdown().await;

    // With one signed by the CA the endpoint trusts: served.
    let (client_files, _) = pki.leaf(&["levee.test"]);
    let mut config = tls_cluster(&pki, vec![backend.addr], Some("backend.test"));
    if let Some(tls) = &mut config.clusters[0].tls {
        tls.client_certificate = Some(client_files);
    }
    let (gateway, addr) = start(config).await;
    let answer = tokio::time::timeout(TEST_TIMEOUT, get(&client, addr, "/"))
        .await
        .expect("in time");
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, "hello from mtls\n");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_tcp_listener_relays_the_decrypted_bytes() {
    let pki = Pki::new();
    let (default, _) = pki.leaf(&["git.test"]);
    let echo = levee_testkit::tcp_backend::TcpBackend::start("echo", LOOPBACK)
        .await
        .expect("echo backend");
    let mut config = config(vec![echo.addr()], BalancePolicy::RoundRobin);
    config.listeners[0].protocol = Protocol::Tcp;
    config.listeners[0].tls = Some(ListenerTlsSettings::new(&default.cert, &default.key));
    let (gateway, addr) = start(config).await;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (mut stream, _) = connect(&pki.client(&[]), addr, "git.test")
            .await
            .expect("handshake");
        stream.write_all(b"ping over tls\n").await.expect("write");
        let mut echoed = vec![0u8; 14];
        stream.read_exact(&mut echoed).await.expect("echo");
        assert_eq!(&echoed, b"ping over tls\n");
    })
    .await
    .expect("in time");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_certificate_file_stops_the_start_with_its_name() {
    let pki = Pki::new();
    let backend = Backend::start("b1", LOOPBACK).await.expect("backend");
    let missing = pki.dir.join("nowhere.pem");
    let mut config = config(vec![backend.addr()], BalancePolicy::RoundRobin);
    config.listeners[0].tls = Some(ListenerTlsSettings::new(&missing, &missing));
    let error = levee_proxy::start(config)
        .await
        .err()
        .expect("no start without its certificate");
    let message = error.to_string();
    assert!(
        message.contains("listener \"web\": tls: cannot read"),
        "{message}"
    );
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(Path::new(&pki.ca_file()).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tls_connection_is_parked_and_serves_again() {
    let pki = Pki::new();
    let (default, _) = pki.leaf(&["default.test"]);
    let backend = Backend::start("b1", LOOPBACK).await.expect("backend");
    let mut config = config(vec![backend.addr()], BalancePolicy::RoundRobin);
    config.listeners[0].tls = Some(ListenerTlsSettings::new(&default.cert, &default.key));
    // Parked after a quiet 100 ms (a quarter of the head timeout).
    config.listeners[0].header_read_timeout = Duration::from_millis(400);
    let (gateway, addr) = start(config).await;
    let request = "GET / HTTP/1.1\r\nhost: default.test\r\n\r\n";
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (mut stream, _) = connect(&pki.client(&[b"http/1.1"]), addr, "default.test")
            .await
            .expect("handshake");
        for round in 0..3 {
            // Two requests in one write, after a pause long enough to park.
            stream
                .write_all(format!("{request}{request}").as_bytes())
                .await
                .expect("write");
            let mut seen = String::new();
            let mut buffer = [0u8; 4096];
            while seen.matches("hello from b1").count() < 2 {
                let read = stream.read(&mut buffer).await.expect("read");
                assert!(read > 0, "round {round}: closed after {seen:?}");
                seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
            }
            assert_eq!(seen.matches("HTTP/1.1 200").count(), 2, "{seen}");
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
    })
    .await
    .expect("in time");
    assert_eq!(backend.requests_received(), 6);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_speak_tls_and_fail_an_endpoint_whose_certificate_does_not_verify() {
    use levee_core::health::HealthCheckParams;
    use levee_proxy::config::{HealthCheckKind, HealthSettings, HttpCheckSettings};
    let pki = Pki::new();
    let good = TlsBackend::with_names(&pki, "good", &["backend.test"]).await;
    let wrong = TlsBackend::with_names(&pki, "wrong", &["elsewhere.test"]).await;
    let mut config = tls_cluster(&pki, vec![good.addr, wrong.addr], Some("backend.test"));
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
    let (gateway, _addr) = start(config).await;
    let client = client();
    let (good_state, wrong_state) = tokio::time::timeout(TEST_TIMEOUT, async {
        loop {
            let answer = get(&client, gateway.admin_address(), "/status").await;
            let status: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
            let state = |addr: SocketAddr| {
                status["clusters"][0]["endpoints"]
                    .as_array()
                    .and_then(|all| all.iter().find(|e| e["address"] == addr.to_string()))
                    .map(|e| e["state"].as_str().unwrap_or_default().to_owned())
                    .unwrap_or_default()
            };
            let (g, w) = (state(good.addr), state(wrong.addr));
            // Healthy after `rise` checks that reached it over TLS.
            if g == "healthy" && w == "unhealthy" && good.requests() >= 2 {
                return (g, w);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the checks judge both endpoints");
    assert_eq!(
        (good_state.as_str(), wrong_state.as_str()),
        ("healthy", "unhealthy")
    );
    assert!(
        good.requests() >= 2,
        "the HTTP checks reached the good endpoint over TLS"
    );
    assert_eq!(wrong.requests(), 0);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_turns_tls_on_and_a_bad_file_fails_it_with_nothing_changed() {
    let pki = Pki::new();
    let (default, default_der) = pki.leaf(&["default.test"]);
    let backend = Backend::start("b1", LOOPBACK).await.expect("backend");
    let config = config(vec![backend.addr()], BalancePolicy::RoundRobin);
    let (gateway, addr) = start(config.clone()).await;
    let client = client();
    let tls_client = pki.client(&[b"http/1.1"]);
    tokio::time::timeout(TEST_TIMEOUT, async {
        // A cleartext keep-alive connection made before the reload.
        let plain = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(plain))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        let request = || {
            Request::get("/")
                .header("host", "default.test")
                .body(Empty::<Bytes>::new())
                .expect("request")
        };
        assert_eq!(
            sender
                .send_request(request())
                .await
                .expect("served")
                .status(),
            200
        );

        let mut with_tls = config.clone();
        with_tls.listeners[0].tls = Some(ListenerTlsSettings::new(&default.cert, &default.key));
        gateway
            .reload(with_tls.clone())
            .await
            .expect("reload turns TLS on");
        let (stream, leaf) = connect(&tls_client, addr, "default.test")
            .await
            .expect("TLS now");
        assert_eq!(leaf, default_der);
        assert_eq!(get_h1(stream).await.0, StatusCode::OK);
        // The connection made before stays as it was.
        assert_eq!(
            sender
                .send_request(request())
                .await
                .expect("still served")
                .status(),
            200
        );

        // A reload naming a missing key file changes nothing.
        let mut broken = with_tls.clone();
        let missing = pki.dir.join("missing.key");
        broken.listeners[0].tls = Some(ListenerTlsSettings::new(&default.cert, &missing));
        let error = gateway.reload(broken).await.expect_err("refused");
        assert!(
            error.to_string().contains(&missing.display().to_string()),
            "{error}"
        );
        let (stream, leaf) = connect(&tls_client, addr, "default.test")
            .await
            .expect("TLS still");
        assert_eq!(leaf, default_der);
        assert_eq!(get_h1(stream).await.0, StatusCode::OK);

        // And a reload without tls turns it off for new connections.
        gateway
            .reload(config.clone())
            .await
            .expect("reload turns TLS off");
        assert_eq!(get(&client, addr, "/").await.status, StatusCode::OK);
    })
    .await
    .expect("in time");
    gateway.shutdown().await;
}
