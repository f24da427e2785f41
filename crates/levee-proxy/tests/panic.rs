//! Panic mode when most of a cluster is down: levee still spreads over the
//! endpoints whose checks fail (checks can be wrong), but never over those
//! known to take no connections, and a retry goes to a healthy endpoint.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use levee_core::HealthCheckParams;
use levee_core::retry::RetryBudgetParams;
use levee_proxy::config::{
    BalancePolicy, Config, HealthCheckKind, HealthSettings, HttpCheckSettings,
};
use levee_testkit::backend::Mode;

/// Longest wait for every endpoint's first checks (the first result
/// decides at once, at a 200 ms interval) on a busy machine.
const SETTLE: Duration = Duration::from_secs(10);

/// The cluster's `/status` once `settled` says its checks have settled
/// (or as it is after [`SETTLE`], for the assertion to report).
async fn settled_cluster(
    client: &TestClient,
    admin: SocketAddr,
    settled: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let status: serde_json::Value =
            serde_json::from_str(&get(client, admin, "/status").await.body).expect("status JSON");
        let cluster = status["clusters"][0].clone();
        if settled(&cluster) || tokio::time::Instant::now() >= deadline {
            return cluster;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A port nothing listens on: bound, then closed. On 127.0.0.9, where no test listens and no connection starts from: a
/// port freed on 127.0.0.1 can be taken again by another test's listener or
/// become a connection's own ephemeral port (a TCP self-connect), and then
/// it no longer refuses.
fn refusing_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.9:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

/// Every other setting at its default: the defaults must serve.
fn checked(endpoints: Vec<SocketAddr>) -> Config {
    let mut config = config(endpoints, BalancePolicy::default());
    config.clusters[0].health = Some(HealthSettings {
        check: HealthCheckKind::Http(HttpCheckSettings::new("/healthz")),
        params: HealthCheckParams::new(
            2,
            2,
            Duration::from_millis(200),
            Duration::from_millis(100),
            Duration::from_millis(500),
            0.1,
        )
        .expect("params"),
    });
    config
}

/// Send `n` GETs one after another; how many got a 200, and how many of
/// those took more than one attempt.
async fn successes(client: &TestClient, addr: SocketAddr, n: usize) -> (usize, usize) {
    let (mut ok, mut retried) = (0, 0);
    for _ in 0..n {
        let answer = get(client, addr, "/").await;
        if answer.status == 200 {
            ok += 1;
            if answer
                .headers
                .get("x-levee-attempts")
                .is_some_and(|a| a != "1")
            {
                retried += 1;
            }
        }
    }
    (ok, retried)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_mode_leaves_out_endpoints_that_refuse_connections() {
    // 2 healthy endpoints and 48 closed ports: 4% available, a panic.
    let backends = backends(2).await;
    let mut endpoints: Vec<SocketAddr> = backends.iter().map(|b| b.addr()).collect();
    endpoints.extend((0..48).map(|_| refusing_port()));
    let (gateway, addr) = start(checked(endpoints)).await;
    let client = client();
    let cluster = &settled_cluster(&client, gateway.admin_address(), |cluster| {
        cluster["unreachable_endpoints"] == 48 && cluster["routable_endpoints"] == 2
    })
    .await;
    let summary = format!(
        "panic {}, routable {}, unreachable {}",
        cluster["panic"], cluster["routable_endpoints"], cluster["unreachable_endpoints"]
    );
    assert_eq!(summary, "panic true, routable 2, unreachable 48");
    let refusing = &cluster["endpoints"][2];
    assert_eq!(refusing["state"], "unhealthy", "{refusing}");
    assert_eq!(
        refusing["unreachable"], "refused the connection of its last check",
        "{refusing}"
    );

    let (ok, _) = successes(&client, addr, 200).await;
    // Spread over all 50 (three attempts each), most would fail.
    assert!(ok >= 198, "only {ok} of 200 requests succeeded");

    let events = get(&client, gateway.admin_address(), "/events").await.body;
    assert!(
        events.contains("spreading over all endpoints but")
            && events.contains("that take no connections (refused or unresolved)"),
        "{events}"
    );
    let metrics = get(&client, gateway.admin_address(), "/metrics").await.body;
    assert!(
        metrics.contains(r#"levee_cluster_unreachable_endpoints{cluster="app"} 48"#),
        "{metrics}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_panic_mode_a_retry_goes_to_a_healthy_endpoint() {
    // 2 healthy and 8 answering 503: the failing ones still accept
    // connections, so panic mode spreads first attempts over all ten.
    let backends = backends(10).await;
    for failing in &backends[2..] {
        failing.set_mode(Mode::Failing).await.expect("failing");
    }
    let mut config = checked(backends.iter().map(|b| b.addr()).collect());
    // Enough budget for a retry per request: this is about where they go.
    config.clusters[0].retry.budget =
        RetryBudgetParams::new(100, 1000, Duration::from_secs(10)).expect("budget");
    let (gateway, addr) = start(config).await;
    let client = client();
    let cluster = &settled_cluster(&client, gateway.admin_address(), |cluster| {
        cluster["panic"] == true
    })
    .await;
    let summary = format!(
        "panic {}, routable {}",
        cluster["panic"], cluster["routable_endpoints"]
    );
    assert_eq!(summary, "panic true, routable 10");

    let (ok, retried) = successes(&client, addr, 100).await;
    // With retries spread like first attempts, about half would fail after
    // three attempts.
    assert!(ok >= 99, "only {ok} of 100 requests succeeded");
    // About 80 first attempts met a failing endpoint: panic mode still
    // spreads them.
    assert!(retried > 40, "only {retried} requests needed a retry");
    gateway.shutdown().await;
    for failing in &backends[2..] {
        failing.set_mode(Mode::Healthy).await.expect("heal");
    }
}
