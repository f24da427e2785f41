//! Self-health: dependency probes that a lying cache cannot fool, real Redis
//! and memcached going down and coming back, `when_impaired` on the traffic
//! listeners, drain/undrain, and webhooks.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use levee_core::HealthCheckParams;
use levee_probe::{ProbeKind, ProbeTarget};
use levee_proxy::config::{
    AlertSettings, BalancePolicy, Config, HealthCheckKind, HealthSettings, ProbeSettings,
    WhenImpaired,
};
use levee_testkit::backend::Mode;
use levee_testkit::dependency::{FakeMemcached, RealServer};
use tokio::time::Instant;

const INTERVAL: Duration = Duration::from_millis(200);
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// Scheduling slack on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(700);

fn probe(name: &str, kind: ProbeKind, address: SocketAddr, rise: u32, fall: u32) -> ProbeSettings {
    ProbeSettings {
        name: name.into(),
        target: ProbeTarget {
            kind,
            address: address.to_string(),
        },
        required: true,
        params: HealthCheckParams::new(rise, fall, INTERVAL, INTERVAL, PROBE_TIMEOUT, 0.0)
            .expect("params"),
    }
}

/// A gateway in front of one healthy backend, with `probes`.
async fn gateway_with(
    probes: Vec<ProbeSettings>,
) -> (
    levee_testkit::backend::Backend,
    levee_proxy::RunningGateway,
    SocketAddr,
) {
    let backend = backends(1).await.remove(0);
    let mut config = config(vec![backend.addr()], BalancePolicy::RoundRobin);
    config.readiness.probes = probes;
    let (gateway, addr) = start(config).await;
    (backend, gateway, addr)
}

async fn ready(client: &TestClient, admin: SocketAddr) -> (u16, serde_json::Value) {
    let answer = get(client, admin, "/ready").await;
    let body = serde_json::from_str(&answer.body).expect("ready JSON");
    (answer.status.as_u16(), body)
}

/// Poll `/ready` until it answers `status`; how long that took.
async fn until_ready_is(client: &TestClient, admin: SocketAddr, status: u16) -> Duration {
    let started = Instant::now();
    loop {
        if ready(client, admin).await.0 == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < TEST_TIMEOUT,
            "/ready never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post(client: &TestClient, address: SocketAddr, path: &str, body: &str) -> Answer {
    let request = Request::post(format!("http://{address}{path}"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    send(client, request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memcached_that_drops_writes_fails_the_probe_on_its_first_run() {
    let fake = FakeMemcached::start().await.expect("fake memcached");
    let sessions = probe("sessions", ProbeKind::Memcached, fake.address(), 2, 2);
    let (_backend, gateway, _) = gateway_with(vec![sessions]).await;
    let client = client();
    // The first result decides at once, and start waits for it.
    let (status, body) = ready(&client, gateway.admin_address()).await;
    assert_eq!(status, 503, "{body}");
    let reasons = body["reasons"].to_string();
    assert!(reasons.contains("probe:sessions"), "{body}");
    assert!(reasons.contains("miss"), "{body}");
    assert_eq!(body["state"], "impaired");
    let status: serde_json::Value =
        serde_json::from_str(&get(&client, gateway.admin_address(), "/status").await.body)
            .expect("status JSON");
    assert_eq!(status["probes"][0]["state"], "unhealthy", "{status}");
    assert_eq!(status["readiness"], "impaired");
    let metrics = get(&client, gateway.admin_address(), "/metrics").await.body;
    assert!(
        metrics.contains("levee_probe_up{probe=\"sessions\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("levee_ready 0"), "{metrics}");
    gateway.shutdown().await;
}

/// Stop a real server: the probe fails within interval + timeout (fall = 1);
/// restart it: ready again after `rise` passes.
async fn real_server_down_and_up(mut server: RealServer, kind: ProbeKind) {
    let rise = 2;
    let cache = probe("cache", kind, server.address(), rise, 1);
    let (_backend, gateway, _) = gateway_with(vec![cache]).await;
    let admin = gateway.admin_address();
    let client = client();
    let (status, body) = ready(&client, admin).await;
    assert_eq!(status, 200, "{body}");

    server.stop();
    let took = until_ready_is(&client, admin, 503).await;
    assert!(
        took < INTERVAL + PROBE_TIMEOUT + SLACK,
        "impaired after {took:?}"
    );
    let (_, body) = ready(&client, admin).await;
    assert!(
        body["reasons"].to_string().contains("probe:cache"),
        "{body}"
    );

    server.restart().await;
    let took = until_ready_is(&client, admin, 200).await;
    // `rise` passes, the first up to one interval after the restart.
    assert!(took < INTERVAL * (rise + 1) + SLACK, "ready after {took:?}");
    let events = get(&client, admin, "/events").await.body;
    assert!(events.contains("\"kind\":\"probe-health\""), "{events}");
    assert!(events.contains("\"kind\":\"readiness\""), "{events}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_memcached_stopped_impairs_and_restarted_heals() {
    real_server_down_and_up(RealServer::memcached().await, ProbeKind::Memcached).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_redis_stopped_impairs_and_restarted_heals() {
    real_server_down_and_up(RealServer::redis().await, ProbeKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_target_under_two_names_is_probed_once_and_reported_under_both() {
    let fake = FakeMemcached::start().await.expect("fake memcached");
    let mut optional = probe("b", ProbeKind::Memcached, fake.address(), 2, 2);
    optional.required = false;
    let (_backend, gateway, _) = gateway_with(vec![
        probe("a", ProbeKind::Memcached, fake.address(), 2, 2),
        optional,
    ])
    .await;
    let (status, body) = ready(&client(), gateway.admin_address()).await;
    assert_eq!(status, 503);
    let failing = body["failing"].to_string();
    assert!(
        failing.contains("probe:a") && failing.contains("probe:b"),
        "{body}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_probe_failing_only_degrades() {
    let fake = FakeMemcached::start().await.expect("fake memcached");
    let mut optional = probe("cache", ProbeKind::Memcached, fake.address(), 2, 2);
    optional.required = false;
    let (_backend, gateway, _) = gateway_with(vec![optional]).await;
    let (status, body) = ready(&client(), gateway.admin_address()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "degraded");
    gateway.shutdown().await;
}

const CHECK_INTERVAL: Duration = Duration::from_millis(200);
const CHECK_TIMEOUT: Duration = Duration::from_millis(150);
/// One check cycle: `fall` checks of interval + timeout, plus slack.
const CHECK_CYCLE: Duration = Duration::from_millis(1500);

fn checked_cluster(config: &mut Config) {
    config.clusters[0].slow_start = Duration::ZERO;
    config.clusters[0].outlier = None;
    config.clusters[0].health = Some(HealthSettings {
        check: HealthCheckKind::Tcp,
        params: HealthCheckParams::new(
            2,
            2,
            CHECK_INTERVAL,
            Duration::from_millis(100),
            CHECK_TIMEOUT,
            0.0,
        )
        .expect("params"),
    });
}

/// Whether a new TCP connection to `addr` is refused.
async fn refused(addr: SocketAddr) -> bool {
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await {
        Ok(Err(error)) => error.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_refuses_new_connections_while_too_few_endpoints_are_healthy() {
    let backends = backends(3).await;
    let mut config = config(
        backends.iter().map(|b| b.addr()).collect(),
        BalancePolicy::RoundRobin,
    );
    checked_cluster(&mut config);
    config.listeners[0].when_impaired = WhenImpaired::Close;
    config.readiness.min_healthy = vec![("app".into(), 2)];
    let (gateway, addr) = start(config).await;
    let admin = gateway.admin_address();
    let client = client();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&client, addr, "/").await.status, 200);

    backends[0].set_mode(Mode::Crashed).await.expect("crash");
    backends[1].set_mode(Mode::Crashed).await.expect("crash");
    let started = Instant::now();
    while !refused(addr).await {
        assert!(
            started.elapsed() < CHECK_CYCLE,
            "traffic port still accepting"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The admin listener stays up and says why.
    let (status, body) = ready(&client, admin).await;
    assert_eq!(status, 503);
    assert!(
        body["reasons"].to_string().contains("min_healthy:app"),
        "{body}"
    );
    assert!(body["reasons"].to_string().contains("1 of 3"), "{body}");
    let metrics = get(&client, admin, "/metrics").await.body;
    assert!(
        metrics.contains("levee_listener_open{listener=\"web\"} 0"),
        "{metrics}"
    );

    backends[0].set_mode(Mode::Healthy).await.expect("heal");
    backends[1].set_mode(Mode::Healthy).await.expect("heal");
    let started = Instant::now();
    while refused(addr).await {
        assert!(
            started.elapsed() < CHECK_CYCLE * 2,
            "traffic port never reopened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(&client, addr, "/").await.status, 200);
    assert_eq!(ready(&client, admin).await.0, 200);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_writes_serves_reads_and_rejects_writes_while_drained() {
    let backend = backends(1).await.remove(0);
    let mut config = config(vec![backend.addr()], BalancePolicy::RoundRobin);
    config.listeners[0].when_impaired = WhenImpaired::RejectWrites;
    let (gateway, addr) = start(config).await;
    let admin = gateway.admin_address();
    let client = client();

    let drained = post(&client, admin, "/drain?reason=disk%20full", "").await;
    assert_eq!(drained.status, 200, "{}", drained.body);
    assert_eq!(get(&client, addr, "/").await.status, 200);
    let write = post(&client, addr, "/orders", "{}").await;
    assert_eq!(write.status, 503);
    assert!(write.body.contains("reject-writes"), "{}", write.body);
    assert!(write.body.contains("disk full"), "{}", write.body);
    assert!(write.headers.contains_key("retry-after"));
    let (status, body) = ready(&client, admin).await;
    assert_eq!(status, 503);
    assert!(
        body["reasons"].to_string().contains("drain: disk full"),
        "{body}"
    );

    assert_eq!(post(&client, admin, "/undrain", "").await.status, 200);
    assert_eq!(ready(&client, admin).await.0, 200);
    assert_eq!(post(&client, addr, "/orders", "{}").await.status, 200);
    let events = get(&client, admin, "/events").await.body;
    assert!(events.contains("\"kind\":\"drain\""), "{events}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_all_answers_503_to_everything_while_drained() {
    let backend = backends(1).await.remove(0);
    let mut config = config(vec![backend.addr()], BalancePolicy::RoundRobin);
    config.listeners[0].when_impaired = WhenImpaired::RejectAll;
    let (gateway, addr) = start(config).await;
    let admin = gateway.admin_address();
    let client = client();
    post(&client, admin, "/drain", "{\"reason\": \"maintenance\"}").await;
    let read = get(&client, addr, "/").await;
    assert_eq!(read.status, 503);
    assert!(read.body.contains("maintenance"), "{}", read.body);
    assert_eq!(post(&client, addr, "/x", "").await.status, 503);
    // The admin listener is never affected.
    assert_eq!(get(&client, admin, "/live").await.status, 200);
    post(&client, admin, "/undrain", "").await;
    assert_eq!(get(&client, addr, "/").await.status, 200);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_get_impaired_and_ready_notifications() {
    let (hook, mut received) = webhook_receiver().await;
    let backend = backends(1).await.remove(0);
    let mut config = config(vec![backend.addr()], BalancePolicy::RoundRobin);
    config.alerts = vec![AlertSettings {
        url: format!("http://{hook}/levee").parse().expect("url"),
        events: Some(vec!["readiness".into()]),
    }];
    let (gateway, _) = start(config).await;
    let admin = gateway.admin_address();
    let client = client();
    post(&client, admin, "/drain?reason=deploy", "").await;
    post(&client, admin, "/undrain", "").await;
    let impaired = next_webhook(&mut received).await;
    assert_eq!(impaired["kind"], "readiness");
    assert_eq!(impaired["to"], "impaired");
    assert!(
        impaired["reason"].as_str().unwrap_or("").contains("deploy"),
        "{impaired}"
    );
    let ready = next_webhook(&mut received).await;
    assert_eq!(ready["to"], "ready", "{ready}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_listener_set_to_close_refuses_connects_while_drained() {
    let backend = levee_testkit::tcp_backend::TcpBackend::start("t1", LOOPBACK)
        .await
        .expect("tcp backend");
    let mut config = config(vec![backend.addr()], BalancePolicy::RoundRobin);
    config.listeners[0].protocol = levee_proxy::config::Protocol::Tcp;
    config.listeners[0].when_impaired = WhenImpaired::Close;
    let (gateway, addr) = start(config).await;
    let admin = gateway.admin_address();
    let client = client();
    // An open session survives the drain; only new connects are refused.
    let open = tokio::net::TcpStream::connect(addr).await.expect("connect");
    post(&client, admin, "/drain", "").await;
    let started = Instant::now();
    while !refused(addr).await {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still accepting"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    post(&client, admin, "/undrain", "").await;
    let started = Instant::now();
    while refused(addr).await {
        assert!(started.elapsed() < Duration::from_secs(3), "never reopened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(open);
    gateway.shutdown().await;
}
