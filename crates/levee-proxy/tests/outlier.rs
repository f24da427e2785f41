//! Passive outlier detection from real traffic: only failures that blame the
//! node count, ejections are capped and explained, and a node coming back
//! ramps up.

mod common;

use std::time::Duration;

use common::*;
use levee_core::outlier::OutlierParams;
use levee_proxy::config::{BalancePolicy, Config};
use levee_testkit::backend::Mode;

fn outlier_config(endpoints: Vec<std::net::SocketAddr>, params: OutlierParams) -> Config {
    let mut config = config(endpoints, BalancePolicy::RoundRobin);
    config.clusters[0].request_timeout = Duration::from_millis(300);
    config.clusters[0].outlier = Some(params);
    config
}

fn params() -> levee_core::outlier::OutlierParamsBuilder {
    OutlierParams::builder()
        .consecutive_failures(5)
        .base_ejection(Duration::from_secs(30))
        .max_ejection(Duration::from_secs(60))
        .max_ejected_percent(50)
}

async fn fetch_status(client: &TestClient, admin: std::net::SocketAddr) -> serde_json::Value {
    serde_json::from_str(&get(client, admin, "/status").await.body).expect("status JSON")
}

fn states(status: &serde_json::Value) -> Vec<String> {
    status["clusters"][0]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| e["state"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_never_eject_a_node() {
    let backends = backends(3).await;
    let addrs = backends.iter().map(|b| b.addr()).collect();
    let (gateway, addr) = start(outlier_config(addrs, params().build().expect("params"))).await;
    let client = client();
    for _ in 0..150 {
        assert_eq!(get(&client, addr, "/status/404").await.status, 404);
    }
    let status = fetch_status(&client, gateway.admin_address()).await;
    assert_eq!(
        states(&status),
        ["healthy", "healthy", "healthy"],
        "{status}"
    );
    let events = get(&client, gateway.admin_address(), "/events").await;
    assert!(!events.body.contains("ejected"), "{}", events.body);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_answering_503_is_ejected_after_n_failures() {
    let backends = backends(3).await;
    backends[1].set_mode(Mode::Failing).await.expect("mode");
    let addrs = backends.iter().map(|b| b.addr()).collect();
    let (gateway, addr) = start(outlier_config(addrs, params().build().expect("params"))).await;
    let client = client();
    let mut errors = 0;
    for _ in 0..60 {
        if get(&client, addr, "/").await.status != 200 {
            errors += 1;
        }
    }
    // Round robin sends it every third request until it has failed 5 times;
    // each of those is retried on another node, so no client sees the 503.
    assert_eq!(errors, 0, "503s are retried elsewhere");
    assert_eq!(backends[1].requests_received(), 5);
    let status = fetch_status(&client, gateway.admin_address()).await;
    let ejected = &status["clusters"][0]["endpoints"][1];
    assert_eq!(ejected["state"], "ejected", "{status}");
    assert_eq!(
        ejected["reason"], "5 consecutive gateway failures",
        "{status}"
    );
    let metrics = get(&client, gateway.admin_address(), "/metrics").await;
    assert!(
        metrics.body.contains(r#"state="ejected"} 1"#),
        "{}",
        metrics.body
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_node_is_ejected_by_its_timeouts() {
    let backends = backends(3).await;
    backends[2].set_mode(Mode::Hung).await.expect("mode");
    let addrs = backends.iter().map(|b| b.addr()).collect();
    let (gateway, addr) = start(outlier_config(addrs, params().build().expect("params"))).await;
    let client = client();
    let mut timeouts = 0;
    for _ in 0..45 {
        if get(&client, addr, "/").await.status == 504 {
            timeouts += 1;
        }
    }
    assert_eq!(timeouts, 5);
    let status = fetch_status(&client, gateway.admin_address()).await;
    assert_eq!(
        status["clusters"][0]["endpoints"][2]["state"], "ejected",
        "{status}"
    );
    assert_eq!(
        status["clusters"][0]["endpoints"][2]["reason"], "5 consecutive timeouts",
        "{status}"
    );
    backends[2].set_mode(Mode::Healthy).await.expect("mode");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_node_fails_no_more_than_the_cap_is_ejected() {
    let backends = backends(3).await;
    for backend in &backends {
        backend.set_mode(Mode::Failing).await.expect("mode");
    }
    let addrs = backends.iter().map(|b| b.addr()).collect();
    let mut config = outlier_config(addrs, params().build().expect("params"));
    // Without retries: with them, the same 503 from every node makes each
    // request a poison request, which blames no node (tests/retry.rs).
    config.clusters[0].retry.policy = levee_core::retry::RetryPolicy::new(1).expect("policy");
    let (gateway, addr) = start(config).await;
    let client = client();
    for _ in 0..90 {
        assert_eq!(get(&client, addr, "/").await.status, 503);
    }
    let status = fetch_status(&client, gateway.admin_address()).await;
    let ejected = states(&status).iter().filter(|s| *s == "ejected").count();
    assert_eq!(
        ejected, 1,
        "50% of 3 endpoints allows one ejection: {status}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_answering_node_is_ejected_as_a_latency_outlier() {
    let backends = backends(3).await;
    backends[0]
        .set_mode(Mode::Slow(Duration::from_millis(120)))
        .await
        .expect("mode");
    let addrs = backends.iter().map(|b| b.addr()).collect();
    let params = params()
        .failure_rate(None)
        .min_requests(5)
        .latency_factor(Some(3.0))
        .latency_floor(Duration::from_millis(50))
        .build()
        .expect("params");
    let (gateway, addr) = start(outlier_config(addrs, params)).await;
    let client = client();
    for _ in 0..30 {
        assert_eq!(get(&client, addr, "/").await.status, 200);
    }
    // Latency outliers are found by the once-a-second tick.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let status = fetch_status(&client, gateway.admin_address()).await;
    let slow = &status["clusters"][0]["endpoints"][0];
    assert_eq!(slow["state"], "ejected", "{status}");
    assert!(
        slow["reason"].as_str().unwrap_or("").contains("median"),
        "{slow}"
    );
    backends[0].reset_counters();
    for _ in 0..30 {
        assert_eq!(get(&client, addr, "/").await.status, 200);
    }
    assert_eq!(backends[0].requests_received(), 0);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_node_ramps_up_under_slow_start() {
    let backends = backends(3).await;
    backends[1].set_mode(Mode::Failing).await.expect("mode");
    let addrs = backends.iter().map(|b| b.addr()).collect();
    let params = params()
        .base_ejection(Duration::from_millis(500))
        .max_ejection(Duration::from_secs(5))
        .build()
        .expect("params");
    let mut config = outlier_config(addrs, params);
    config.clusters[0].slow_start = Duration::from_secs(10);
    let (gateway, addr) = start(config).await;
    let client = client();
    for _ in 0..20 {
        get(&client, addr, "/").await;
    }
    backends[1].set_mode(Mode::Healthy).await.expect("heal");
    // Ejection (500 ms) expires; the next tick returns it.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let status = fetch_status(&client, gateway.admin_address()).await;
    assert_eq!(
        status["clusters"][0]["endpoints"][1]["state"], "slow-start",
        "{status}"
    );
    backends[1].reset_counters();
    for _ in 0..90 {
        assert_eq!(get(&client, addr, "/").await.status, 200);
    }
    let share = backends[1].requests_received();
    // Round robin would give it 30; early in its ramp it gets far fewer.
    assert!(share < 20, "returning node got {share} of 90");
    let events = get(&client, gateway.admin_address(), "/events").await;
    assert!(
        events.body.contains("endpoint-returned") && events.body.contains("slow start"),
        "{}",
        events.body
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_breaks_every_body_midway_is_ejected() {
    use http_body_util::BodyExt;
    let backends = backends(3).await;
    backends[1]
        .set_mode(Mode::PartialThenReset { bytes: 10 })
        .await
        .expect("mode");
    let addrs = backends.iter().map(|b| b.addr()).collect();
    let (gateway, addr) = start(outlier_config(addrs, params().build().expect("params"))).await;
    let client = client();
    let mut broken = 0;
    for _ in 0..45 {
        let request = http::Request::get(format!("http://{addr}/"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        let complete = match tokio::time::timeout(TEST_TIMEOUT, client.request(request)).await {
            Ok(Ok(response)) => response.into_body().collect().await.is_ok(),
            _ => false,
        };
        if !complete {
            broken += 1;
        }
    }
    // Each head said 200; the broken bodies are what count against it.
    assert_eq!(broken, 5);
    let status = fetch_status(&client, gateway.admin_address()).await;
    assert_eq!(
        status["clusters"][0]["endpoints"][1]["state"], "ejected",
        "{status}"
    );
    gateway.shutdown().await;
}
