//! Active health checks: dead and hung endpoints leave rotation, healed ones
//! return, the cluster panics rather than crush its last survivors, and every
//! change is explained in /status and /events.

mod common;

use std::time::Duration;

use common::*;
use levee_core::HealthCheckParams;
use levee_proxy::config::{
    BalancePolicy, Config, HealthCheckKind, HealthSettings, HttpCheckSettings,
};
use levee_testkit::backend::Mode;

const INTERVAL: Duration = Duration::from_millis(200);
const CHECK_TIMEOUT: Duration = Duration::from_millis(150);
/// `fall × (interval + timeout)` plus jitter and scheduling slack.
const DETECTION: Duration = Duration::from_millis(1200);

fn checked_config(endpoints: Vec<std::net::SocketAddr>) -> Config {
    let mut config = config(endpoints, BalancePolicy::RoundRobin);
    config.clusters[0].request_timeout = Duration::from_millis(500);
    // Slow start has its own test; here a healed endpoint takes its full share.
    config.clusters[0].slow_start = Duration::ZERO;
    config.clusters[0].health = Some(HealthSettings {
        check: HealthCheckKind::Http(HttpCheckSettings {
            method: http::Method::GET,
            path: "/healthz".into(),
            host: None,
            expect_status: vec![200],
            expect_body: None,
            draining_status: vec![503],
        }),
        params: HealthCheckParams::new(
            2,
            2,
            INTERVAL,
            Duration::from_millis(100),
            CHECK_TIMEOUT,
            0.1,
        )
        .expect("params"),
    });
    config
}

async fn fetch_status(client: &TestClient, admin: std::net::SocketAddr) -> serde_json::Value {
    let answer = get(client, admin, "/status").await;
    serde_json::from_str(&answer.body).expect("status JSON")
}

fn endpoint_state<'a>(status: &'a serde_json::Value, address: &str) -> &'a serde_json::Value {
    status["clusters"][0]["endpoints"]
        .as_array()
        .and_then(|endpoints| endpoints.iter().find(|e| e["address"] == address))
        .expect("endpoint in /status")
}

/// Send `n` requests one after another; return how many were not 200.
async fn errors_in(client: &TestClient, addr: std::net::SocketAddr, n: usize) -> usize {
    let mut errors = 0;
    for _ in 0..n {
        if get(client, addr, "/").await.status != 200 {
            errors += 1;
        }
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_endpoint_leaves_rotation_and_returns_when_healed() {
    let backends = backends(3).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr()).collect();
    let (gateway, addr) = start(checked_config(addrs.clone())).await;
    let admin = gateway.admin_address();
    let client = client();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(errors_in(&client, addr, 30).await, 0);

    backends[1].set_mode(Mode::Crashed).await.expect("crash");
    tokio::time::sleep(DETECTION).await;
    // Round robin would send a third of these to the dead endpoint.
    assert_eq!(
        errors_in(&client, addr, 60).await,
        0,
        "requests still routed to a crashed endpoint"
    );
    let status = fetch_status(&client, admin).await;
    let dead = endpoint_state(&status, &addrs[1].to_string());
    assert_eq!(dead["state"], "unhealthy", "{status}");
    assert!(
        dead["reason"].as_str().unwrap_or("").contains("refused"),
        "{dead}"
    );
    assert!(!dead["recent_checks"].as_array().expect("checks").is_empty());
    let events = get(&client, admin, "/events").await;
    assert!(
        events.body.contains("endpoint-health") && events.body.contains("unhealthy"),
        "{}",
        events.body
    );

    backends[1].set_mode(Mode::Healthy).await.expect("heal");
    tokio::time::sleep(DETECTION).await;
    let status = fetch_status(&client, admin).await;
    assert_eq!(
        endpoint_state(&status, &addrs[1].to_string())["state"],
        "healthy",
        "{status}"
    );
    backends[1].reset_counters();
    assert_eq!(errors_in(&client, addr, 30).await, 0);
    assert!(
        backends[1].requests_received() >= 5,
        "healed endpoint gets traffic again"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_endpoint_is_marked_unhealthy_by_its_check_timeout() {
    let backends = backends(3).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr()).collect();
    let (gateway, addr) = start(checked_config(addrs.clone())).await;
    let client = client();
    tokio::time::sleep(Duration::from_millis(300)).await;
    backends[2].set_mode(Mode::Hung).await.expect("hang");
    tokio::time::sleep(DETECTION).await;
    let status = fetch_status(&client, gateway.admin_address()).await;
    let hung = endpoint_state(&status, &addrs[2].to_string());
    assert_eq!(hung["state"], "unhealthy", "{status}");
    assert!(
        hung["reason"].as_str().unwrap_or("").contains("timed out"),
        "{hung}"
    );
    assert_eq!(errors_in(&client, addr, 30).await, 0);
    // Hung, then crashed: the reason follows the latest check, not the
    // transition that made it unhealthy.
    backends[2].set_mode(Mode::Crashed).await.expect("crash");
    tokio::time::sleep(INTERVAL * 3).await;
    let status = fetch_status(&client, gateway.admin_address()).await;
    let crashed = endpoint_state(&status, &addrs[2].to_string());
    assert_eq!(crashed["state"], "unhealthy", "{status}");
    let reason = crashed["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("latest check:") && !reason.contains("timed out"),
        "{crashed}"
    );
    backends[2].set_mode(Mode::Healthy).await.expect("heal");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_most_endpoints_fail_the_cluster_panics_and_says_so() {
    let backends = backends(3).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr()).collect();
    let mut config = checked_config(addrs.clone());
    // Count what reaches the failing endpoints, not what retries would hide.
    config.clusters[0].retry.policy = levee_core::retry::RetryPolicy::new(1).expect("policy");
    let (gateway, addr) = start(config).await;
    let admin = gateway.admin_address();
    let client = client();
    tokio::time::sleep(Duration::from_millis(300)).await;
    backends[0].set_mode(Mode::Failing).await.expect("fail");
    backends[1].set_mode(Mode::Failing).await.expect("fail");
    tokio::time::sleep(DETECTION).await;
    let status = fetch_status(&client, admin).await;
    assert_eq!(status["clusters"][0]["panic"], true, "{status}");
    assert_eq!(status["clusters"][0]["routable_endpoints"], 3, "{status}");
    // In panic every endpoint gets traffic again, failing ones included.
    backends[2].reset_counters();
    let errors = errors_in(&client, addr, 30).await;
    assert!(
        errors >= 15,
        "panic mode should spread over all endpoints, saw {errors} errors"
    );
    let events = get(&client, admin, "/events").await;
    assert!(events.body.contains("cluster-panic"), "{}", events.body);
    let metrics = get(&client, admin, "/metrics").await;
    assert!(
        metrics
            .body
            .contains(r#"levee_cluster_panic{cluster="app"} 1"#),
        "{}",
        metrics.body
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_names_for_one_address_are_checked_once() {
    let backends = backends(1).await;
    let port = backends[0].addr().port();
    // "127.1" is another spelling of 127.0.0.1 that only the resolver
    // (inet_aton) understands: a second name for the same address.
    let mut config = checked_config(vec![backends[0].addr()]);
    config.clusters[0]
        .endpoints
        .push(levee_proxy::config::EndpointAddress::new("127.1", port));
    let (gateway, _addr) = start(config).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let checks = backends[0].requests_received();
    // About five checks in 1.1 s at a 200 ms interval; twice that if each name
    // were checked on its own.
    assert!((3..=8).contains(&checks), "{checks} checks");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_steady_load_a_crashed_endpoint_stops_receiving_requests() {
    use levee_testkit::load::{LoadSpec, run};
    let backends = backends(3).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr()).collect();
    let (gateway, addr) = start(checked_config(addrs)).await;
    let url: http::Uri = format!("http://{addr}/").parse().expect("url");
    let load = |duration| {
        let mut spec = LoadSpec::new(url.clone());
        spec.concurrency = 8;
        spec.duration = Some(duration);
        spec.deadline = Duration::from_secs(2);
        run(spec)
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Steady load while one endpoint crashes.
    let during = tokio::spawn(load(Duration::from_millis(2500)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    backends[0].set_mode(Mode::Crashed).await.expect("crash");
    let during = during.await.expect("load");
    // Refused connections are caught by passive detection after a handful of
    // requests and by the checks after `fall` of them.
    assert!(during.error_count() <= 10, "{during}");
    assert!(during.successes > 100, "{during}");
    let after = load(Duration::from_secs(2)).await;
    assert_eq!(
        after.error_count(),
        0,
        "requests still reach the crashed endpoint: {after}"
    );
    assert!(after.successes > 100, "{after}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_checks_and_body_expectations_judge_endpoints() {
    let backends = backends(3).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr()).collect();
    // A TCP check notices a closed port.
    let mut tcp = checked_config(addrs.clone());
    if let Some(health) = tcp.clusters[0].health.as_mut() {
        health.check = HealthCheckKind::Tcp;
    }
    let (gateway, _) = start(tcp).await;
    backends[0].set_mode(Mode::Crashed).await.expect("crash");
    tokio::time::sleep(DETECTION).await;
    let client = client();
    let status = fetch_status(&client, gateway.admin_address()).await;
    assert_eq!(
        endpoint_state(&status, &addrs[0].to_string())["state"],
        "unhealthy",
        "{status}"
    );
    assert_eq!(
        endpoint_state(&status, &addrs[1].to_string())["state"],
        "healthy",
        "{status}"
    );
    gateway.shutdown().await;
    backends[0].set_mode(Mode::Healthy).await.expect("heal");

    // An HTTP check that wants a body the endpoints do not send fails them all.
    let mut body = checked_config(addrs.clone());
    if let Some(health) = body.clusters[0].health.as_mut() {
        health.check = HealthCheckKind::Http(HttpCheckSettings {
            expect_body: Some("all systems go".into()),
            draining_status: vec![503],
            ..HttpCheckSettings::new("/healthz")
        });
    }
    let (gateway, _) = start(body).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = fetch_status(&client, gateway.admin_address()).await;
    let first = endpoint_state(&status, &addrs[1].to_string());
    assert_eq!(first["state"], "unhealthy", "{status}");
    assert!(
        first["reason"]
            .as_str()
            .unwrap_or("")
            .contains("expected text"),
        "{first}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_whose_check_body_breaks_off_leaves_rotation_and_says_why() {
    let backends = backends(2).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr()).collect();
    // `200`, `content-length: 1000000`, 16 bytes, reset: for checks and
    // requests alike. The status alone would pass the check.
    backends[1]
        .set_mode(Mode::PartialThenReset { bytes: 16 })
        .await
        .expect("partial reset");
    let (gateway, addr) = start(checked_config(addrs.clone())).await;
    let client = client();
    tokio::time::sleep(DETECTION).await;
    let status = fetch_status(&client, gateway.admin_address()).await;
    let broken = endpoint_state(&status, &addrs[1].to_string());
    assert_eq!(broken["state"], "unhealthy", "{status}");
    assert!(
        broken["reason"]
            .as_str()
            .unwrap_or("")
            .contains("response body broke off"),
        "{broken}"
    );
    let last_check = &broken["recent_checks"]
        .as_array()
        .and_then(|checks| checks.last().cloned())
        .expect("a check");
    assert_eq!(
        last_check["result"], "response body broke off before its end",
        "{broken}"
    );
    assert_eq!(
        endpoint_state(&status, &addrs[0].to_string())["state"],
        "healthy",
        "{status}"
    );
    // Requests no longer reach it: every one it got would break off. (Its
    // request counter also counts the checks, which go on.)
    assert_eq!(errors_in(&client, addr, 20).await, 0);
    gateway.shutdown().await;
    backends[1].set_mode(Mode::Healthy).await.expect("heal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_body_larger_than_what_is_read_is_healthy() {
    let backends = backends(2).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr()).collect();
    let mut config = checked_config(addrs.clone());
    if let Some(health) = config.clusters[0].health.as_mut() {
        // 1 MiB: far past the 64 KiB a check reads.
        health.check = HealthCheckKind::Http(HttpCheckSettings::new("/bytes?n=1048576"));
    }
    let (gateway, _addr) = start(config).await;
    let client = client();
    tokio::time::sleep(DETECTION).await;
    let status = fetch_status(&client, gateway.admin_address()).await;
    for address in &addrs {
        let endpoint = endpoint_state(&status, &address.to_string());
        assert_eq!(endpoint["state"], "healthy", "{status}");
        let checks = endpoint["recent_checks"].as_array().expect("checks");
        assert!(
            checks.len() >= 3 && checks.iter().all(|check| check["passed"] == true),
            "{endpoint}"
        );
    }
    gateway.shutdown().await;
}
