//! Live reload: a new config is applied while clients keep sending, with no
//! client error and no refused connect; what levee learned (ejections, open
//! breakers) carries over; open connections and TCP sessions survive; a
//! broken file changes nothing and says why.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use levee_core::breaker::BreakerParams;
use levee_core::outlier::OutlierParams;
use levee_proxy::config::{
    BalancePolicy, ClusterSettings, Config, ListenerSettings, Protocol, RouteRetry, RouteSettings,
};
use levee_proxy::route::{PathPattern, RouteMatch};
use levee_testkit::backend::{Backend, Mode};
use levee_testkit::load::{LoadReport, LoadSpec, run};
use levee_testkit::tcp_backend::TcpBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENTS: usize = 30;

fn cluster(name: &str, backends: &[SocketAddr]) -> ClusterSettings {
    let mut cluster = ClusterSettings::new(name, backends.iter().copied().map(endpoint).collect());
    cluster.connect_timeout = Duration::from_millis(500);
    cluster.request_timeout = Duration::from_secs(5);
    cluster
}

fn prefix_route(name: &str, prefix: &str, cluster: &str) -> RouteSettings {
    RouteSettings {
        name: name.to_owned(),
        matches: RouteMatch {
            path: Some(PathPattern::Prefix(prefix.to_owned())),
            ..RouteMatch::default()
        },
        cluster: cluster.to_owned(),
        request_timeout: None,
        retry: RouteRetry::default(),
        cache: None,
        priority: None,
    }
}

async fn load(url: String, clients: usize, duration: Duration) -> LoadReport {
    let mut spec = LoadSpec::new(url.parse().expect("url"));
    spec.concurrency = clients;
    spec.duration = Some(duration);
    spec.deadline = Duration::from_secs(5);
    run(spec).await
}

/// A new connection for every request (no keep-alive), one after the other,
/// for `duration`: (requests, failures, refused connects).
async fn new_connections(addr: SocketAddr, duration: Duration) -> (u64, Vec<String>, u64) {
    let client: TestClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let end = tokio::time::Instant::now() + duration;
    let (mut sent, mut failures, mut refused) = (0, Vec::new(), 0);
    while tokio::time::Instant::now() < end {
        sent += 1;
        let request = Request::get(format!("http://{addr}/"))
            .header("connection", "close")
            .body(Full::new(Bytes::new()))
            .expect("request");
        match tokio::time::timeout(Duration::from_secs(5), client.request(request)).await {
            Ok(Ok(response)) if response.status() == 200 => {}
            Ok(Ok(response)) => failures.push(format!("status {}", response.status())),
            Ok(Err(error)) => {
                if error.is_connect() {
                    refused += 1;
                }
                failures.push(format!("{error:?}"));
            }
            Err(_) => failures.push("no answer within 5 s".to_owned()),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (sent, failures, refused)
}

async fn status(client: &TestClient, admin: SocketAddr) -> serde_json::Value {
    serde_json::from_str(&get(client, admin, "/status").await.body).expect("status JSON")
}

fn cluster_status<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .find(|cluster| cluster["name"] == name)
        .unwrap_or_else(|| panic!("cluster {name} in {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_change_routes_and_endpoints_without_a_client_error() {
    let app = backends(3).await;
    let api = Backend::start("api", LOOPBACK).await.expect("backend");
    let mut config = config(
        vec![app[0].addr(), app[1].addr()],
        BalancePolicy::RoundRobin,
    );
    config.clusters.push(cluster("api", &[api.addr()]));
    let (gateway, addr) = start(config.clone()).await;

    let steady = tokio::spawn(load(
        format!("http://{addr}/"),
        CLIENTS,
        Duration::from_secs(5),
    ));
    let api_load = tokio::spawn(load(
        format!("http://{addr}/api/v1"),
        4,
        Duration::from_secs(5),
    ));
    let fresh = tokio::spawn(new_connections(addr, Duration::from_secs(5)));

    // 1: a third endpoint.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    config.clusters[0] = cluster("app", &[app[0].addr(), app[1].addr(), app[2].addr()]);
    let first = gateway.reload(config.clone()).await.expect("reload 1");
    assert_eq!(first.generation, 2, "{first:?}");
    // 2: /api goes to its own cluster.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    config.listeners[0].routes = vec![prefix_route("api", "/api", "api")];
    gateway.reload(config.clone()).await.expect("reload 2");
    // 3: the first endpoint leaves.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    config.clusters[0] = cluster("app", &[app[1].addr(), app[2].addr()]);
    let third = gateway.reload(config.clone()).await.expect("reload 3");
    assert!(
        third
            .changes
            .iter()
            .any(|change| change.contains("cluster \"app\" changed")),
        "{third:?}"
    );
    // Requests already on their way to it may still land there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app[0].reset_counters();
    api.reset_counters();

    let steady = steady.await.expect("load");
    let api_load = api_load.await.expect("load");
    let (sent, failures, refused) = fresh.await.expect("new connections");
    println!("steady load across 3 reloads:\n{steady}\n/api load:\n{api_load}");
    println!("new connections: {sent} sent, {} failed", failures.len());
    assert!(steady.errors.is_empty(), "{steady}");
    assert!(steady.successes > 1000, "{steady}");
    assert!(api_load.errors.is_empty(), "{api_load}");
    assert_eq!(refused, 0, "{failures:?}");
    assert!(failures.is_empty(), "{failures:?}");
    assert!(sent > 50, "{sent}");

    assert_eq!(
        app[0].requests_received(),
        0,
        "a removed endpoint gets nothing"
    );
    assert!(app[2].requests_received() > 0, "the added endpoint serves");
    assert!(api.requests_received() > 0, "the new route took /api");
    let client = client();
    let answer = get(&client, addr, "/api/v2").await;
    assert_eq!(answer.headers["x-backend"], "api");
    let status = status(&client, gateway.admin_address()).await;
    assert_eq!(status["config"]["generation"], 4, "{status}");
    let endpoints = cluster_status(&status, "app")["endpoints"]
        .as_array()
        .expect("endpoints")
        .len();
    assert_eq!(endpoints, 2, "{status}");
    let metrics = get(&client, gateway.admin_address(), "/metrics").await.body;
    assert!(
        metrics.contains(r#"levee_config_reloads_total{result="ok"} 3"#),
        "{metrics}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejected_endpoint_and_an_open_breaker_stay_so_across_a_reload() {
    let app = backends(4).await;
    app[1].set_mode(Mode::Failing).await.expect("mode");
    let failing = Backend::start("failing", LOOPBACK).await.expect("backend");
    failing.set_mode(Mode::Failing).await.expect("mode");
    let mut config = config(
        app[..3].iter().map(Backend::addr).collect(),
        BalancePolicy::RoundRobin,
    );
    config.clusters[0].outlier = Some(
        OutlierParams::builder()
            .consecutive_failures(5)
            .base_ejection(Duration::from_secs(30))
            .max_ejected_percent(50)
            .build()
            .expect("params"),
    );
    let mut other = cluster("other", &[failing.addr()]);
    other.breaker = Some(
        BreakerParams::builder()
            .consecutive_failures(3)
            .open_for(Duration::from_secs(30))
            .build()
            .expect("params"),
    );
    config.clusters.push(other);
    config.listeners[0].routes = vec![prefix_route("other", "/other", "other")];
    let (gateway, addr) = start(config.clone()).await;
    let admin = gateway.admin_address();
    let client = client();
    for _ in 0..30 {
        assert_eq!(get(&client, addr, "/").await.status, 200);
    }
    for _ in 0..4 {
        assert_eq!(get(&client, addr, "/other").await.status, 503);
    }
    let before = status(&client, admin).await;
    assert_eq!(
        cluster_status(&before, "app")["endpoints"][1]["state"],
        "ejected",
        "{before}"
    );
    let breaker: serde_json::Value =
        serde_json::from_str(&get(&client, admin, "/breakers/other").await.body).expect("JSON");
    assert_eq!(breaker["state"], "open", "{breaker}");
    assert_eq!(failing.requests_received(), 3);

    // Both clusters change: a fourth endpoint, a new timeout.
    config.clusters[0].endpoints.push(endpoint(app[3].addr()));
    config.clusters[1].request_timeout = Duration::from_secs(4);
    let reloaded = gateway.reload(config).await.expect("reload");
    assert_eq!(reloaded.changes.len(), 2, "{reloaded:?}");

    app[1].reset_counters();
    // The new endpoint starts slowly (slow start), so it may take a while
    // to get its first request.
    for _ in 0..400 {
        assert_eq!(get(&client, addr, "/").await.status, 200);
        if app[3].requests_received() > 0 {
            break;
        }
    }
    assert_eq!(app[1].requests_received(), 0, "still ejected");
    assert!(app[3].requests_received() > 0, "the new endpoint serves");
    let after = status(&client, admin).await;
    let endpoint = &cluster_status(&after, "app")["endpoints"][1];
    assert_eq!(endpoint["state"], "ejected", "{after}");
    assert_eq!(
        endpoint["reason"], "5 consecutive gateway failures",
        "{after}"
    );
    let rejected = get(&client, addr, "/other").await;
    assert_eq!(rejected.status, 503);
    assert!(
        rejected.body.contains("circuit breaker open"),
        "{}",
        rejected.body
    );
    assert_eq!(
        failing.requests_received(),
        3,
        "the breaker still fails fast"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_session_and_a_keep_alive_connection_survive_a_reload() {
    let first = TcpBackend::start("t1", LOOPBACK)
        .await
        .expect("tcp backend");
    let second = TcpBackend::start("t2", LOOPBACK)
        .await
        .expect("tcp backend");
    let http = backends(1).await;
    let mut config = config(vec![http[0].addr()], BalancePolicy::RoundRobin);
    config.clusters.push(cluster("tcp", &[first.addr()]));
    let mut tcp = ListenerSettings::new("tcp", LOOPBACK, "tcp");
    tcp.protocol = Protocol::Tcp;
    config.listeners.push(tcp);
    let (gateway, addr) = start(config.clone()).await;
    let tcp_addr = gateway.listener_address("tcp").expect("tcp listener");

    let mut session = TcpStream::connect(tcp_addr).await.expect("connect");
    session.write_all(b"before\n").await.expect("write");
    let mut echoed = [0; 7];
    session.read_exact(&mut echoed).await.expect("echo");
    assert_eq!(&echoed, b"before\n");
    // A keep-alive HTTP connection, by hand so it is certainly one
    // connection.
    let mut keep_alive = TcpStream::connect(addr).await.expect("connect");
    let ask = b"GET / HTTP/1.1\r\nhost: test\r\n\r\n";
    keep_alive.write_all(ask).await.expect("write");
    assert!(
        read_response(&mut keep_alive)
            .await
            .starts_with("HTTP/1.1 200")
    );

    // The tcp cluster moves to the second node; the http one gets a route.
    config.clusters[1] = cluster("tcp", &[second.addr()]);
    config.listeners[0].routes = vec![prefix_route("all", "/", "app")];
    gateway.reload(config).await.expect("reload");

    session.write_all(b"after!\n").await.expect("write");
    session
        .read_exact(&mut echoed)
        .await
        .expect("echo after reload");
    assert_eq!(&echoed, b"after!\n");
    keep_alive.write_all(ask).await.expect("write");
    assert!(
        read_response(&mut keep_alive)
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert_eq!(http[0].connections_accepted(), 1);

    let mut new_session = TcpStream::connect(tcp_addr).await.expect("connect");
    new_session.write_all(b"new!!!\n").await.expect("write");
    new_session.read_exact(&mut echoed).await.expect("echo");
    assert_eq!(&echoed, b"new!!!\n");
    assert_eq!(first.connections_accepted(), 1);
    assert_eq!(second.connections_accepted(), 1, "new sessions go to t2");
    drop(session);
    drop(new_session);
    gateway.shutdown().await;
}

/// One HTTP/1.1 response with a body of `content-length` bytes, as text.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        let n = tokio::time::timeout(TEST_TIMEOUT, stream.read(&mut buffer))
            .await
            .expect("response within the test timeout")
            .expect("read");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= head_end + 4 + length {
                return text;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_come_and_go_and_a_failed_bind_changes_nothing() {
    let backends = backends(1).await;
    let mut config = config(vec![backends[0].addr()], BalancePolicy::RoundRobin);
    let (gateway, _) = start(config.clone()).await;
    let client = client();

    config
        .listeners
        .push(ListenerSettings::new("extra", LOOPBACK, "app"));
    let added = gateway.reload(config.clone()).await.expect("reload");
    assert!(
        added.changes.iter().any(|c| c.contains("\"extra\" added")),
        "{added:?}"
    );
    let extra = gateway.listener_address("extra").expect("extra listener");
    assert_eq!(get(&client, extra, "/").await.status, 200);

    // An address in use: the reload fails and the running config stays.
    let taken = std::net::TcpListener::bind(LOOPBACK).expect("bind");
    let mut clash = config.clone();
    clash.listeners.push(ListenerSettings::new(
        "clash",
        taken.local_addr().expect("address"),
        "app",
    ));
    let error = gateway.reload(clash).await.expect_err("the bind fails");
    assert!(
        error
            .to_string()
            .contains(&taken.local_addr().expect("address").to_string()),
        "{error}"
    );
    assert!(gateway.listener_address("clash").is_none());
    assert_eq!(get(&client, extra, "/").await.status, 200);
    let status = status(&client, gateway.admin_address()).await;
    assert_eq!(status["config"]["generation"], 2, "{status}");

    config.listeners.pop();
    gateway.reload(config).await.expect("reload");
    assert!(gateway.listener_address("extra").is_none());
    let refused = tokio::time::timeout(TEST_TIMEOUT, TcpStream::connect(extra))
        .await
        .expect("connect answers");
    assert!(refused.is_err(), "a removed listener stops accepting");
    gateway.shutdown().await;
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write config");
}

fn file_config(
    admin: SocketAddr,
    listen: SocketAddr,
    endpoints: &[SocketAddr],
    extra: &str,
) -> String {
    let endpoints: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"[admin]
listen = "{admin}"

[runtime]
drain_timeout = "2s"
{extra}
[[listener]]
name = "web"
listen = "{listen}"
cluster = "app"

[[cluster]]
name = "app"
endpoints = [{}]
"#,
        endpoints.join(", ")
    )
}

fn temp_file(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("levee-reload-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("levee.toml")
}

async fn post(client: &TestClient, addr: SocketAddr, path: &str) -> Answer {
    let request = Request::post(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(client, request).await
}

/// A free loopback port, for a config file that must name one.
fn free_port() -> SocketAddr {
    let socket = std::net::TcpListener::bind(LOOPBACK).expect("bind");
    socket.local_addr().expect("address")
}

/// Which backends answer 200 to up to 400 requests, stopping once two have
/// (a new endpoint starts slowly, so its first request may take a while).
async fn served_by(client: &TestClient, addr: SocketAddr) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..400 {
        let answer = get(client, addr, "/").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        seen.insert(
            answer.headers["x-backend"]
                .to_str()
                .expect("name")
                .to_owned(),
        );
        if seen.len() == 2 {
            break;
        }
    }
    seen.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_applies_the_file_and_a_broken_file_changes_nothing() {
    let backends = backends(2).await;
    let path = temp_file("post");
    let (admin, listen) = (free_port(), free_port());
    write(
        &path,
        &file_config(admin, listen, &[backends[0].addr()], ""),
    );
    let gateway = levee_proxy::start(Config::load(&path).expect("config"))
        .await
        .expect("gateway starts");
    gateway.reload_from(path.clone());
    let client = client();

    write(
        &path,
        &file_config(admin, listen, &[backends[0].addr(), backends[1].addr()], ""),
    );
    let answer = post(&client, admin, "/reload").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(served_by(&client, listen).await, ["b1", "b2"]);

    // Two problems: an unknown cluster and a bad duration.
    let broken = file_config(admin, listen, &[backends[0].addr()], "")
        .replace("cluster = \"app\"", "cluster = \"nope\"")
        .replace("drain_timeout = \"2s\"", "drain_timeout = \"soon\"");
    write(&path, &broken);
    let answer = post(&client, admin, "/reload").await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let body: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{body}");
    let file = path.display().to_string();
    assert!(
        errors
            .iter()
            .all(|e| e.as_str().is_some_and(|e| e.starts_with(&file))),
        "{body}"
    );
    assert!(
        answer.body.contains(":5:17:"),
        "drain_timeout's position: {body}"
    );
    assert!(answer.body.contains("nope"), "{body}");

    // Still serving on both endpoints, generation 2.
    assert_eq!(served_by(&client, listen).await, ["b1", "b2"]);
    let status = status(&client, admin).await;
    assert_eq!(status["config"]["generation"], 2, "{status}");
    assert_eq!(status["config"]["path"], file, "{status}");
    let metrics = get(&client, admin, "/metrics").await.body;
    assert!(
        metrics.contains(r#"levee_config_reloads_total{result="error"} 1"#),
        "{metrics}"
    );
    let events = get(&client, admin, "/events").await.body;
    assert!(events.contains("reload rejected"), "{events}");
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_config_reloads_when_the_file_changes() {
    let backends = backends(2).await;
    let path = temp_file("watch");
    let (admin, listen) = (free_port(), free_port());
    let watch = "watch_config = true\n";
    write(
        &path,
        &file_config(admin, listen, &[backends[0].addr()], watch),
    );
    let gateway = levee_proxy::start(Config::load(&path).expect("config"))
        .await
        .expect("gateway starts");
    gateway.reload_from(path.clone());
    let client = client();
    assert_eq!(get(&client, listen, "/").await.headers["x-backend"], "b1");

    write(
        &path,
        &file_config(admin, listen, &[backends[1].addr()], watch),
    );
    let mut moved = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if get(&client, listen, "/").await.headers["x-backend"] == "b2" {
            moved = true;
            break;
        }
    }
    assert!(moved, "the file's new endpoint serves within 5 s");
    let status = status(&client, admin).await;
    assert_eq!(status["config"]["generation"], 2, "{status}");
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_keeps_its_contents_across_a_reload_while_its_settings_stay() {
    let backends = backends(1).await;
    let mut config = config(vec![backends[0].addr()], BalancePolicy::RoundRobin);
    config.clusters[0].retry.hedge = None;
    config.clusters[0].cache = Some(levee_proxy::config::CacheSettings {
        default_ttl: Duration::from_secs(60),
        ..levee_proxy::config::CacheSettings::default()
    });
    let (gateway, addr) = start(config.clone()).await;
    let client = client();
    let cached = |answer: &Answer| {
        answer.headers["x-levee-cache"]
            .to_str()
            .unwrap_or("?")
            .to_owned()
    };
    assert_eq!(cached(&get(&client, addr, "/page").await), "miss");
    assert_eq!(cached(&get(&client, addr, "/page").await), "hit");

    // The cluster changes (a new timeout), its cache does not: still a hit.
    config.clusters[0].request_timeout = Duration::from_secs(4);
    gateway.reload(config.clone()).await.expect("reload");
    assert_eq!(cached(&get(&client, addr, "/page").await), "hit");
    assert_eq!(backends[0].requests_received(), 1);

    // New cache settings: a new, empty cache.
    config.clusters[0].cache = Some(levee_proxy::config::CacheSettings {
        default_ttl: Duration::from_secs(30),
        ..levee_proxy::config::CacheSettings::default()
    });
    gateway.reload(config).await.expect("reload");
    assert_eq!(cached(&get(&client, addr, "/page").await), "miss");
    assert_eq!(backends[0].requests_received(), 2);
    gateway.shutdown().await;
}
