//! Breakers shared by two gateways through a real `redis-server`: a trip on
//! one is seen by the other within a second, a quorum keeps one instance
//! from tripping the fleet, an outage of Redis never slows requests and is
//! shown, and operator overrides reach every instance.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use levee_core::breaker::BreakerParams;
use levee_proxy::RunningGateway;
use levee_proxy::config::{
    BalancePolicy, Config, FleetBreakerSettings, OnUnreachable, StoreKind, StoreSettings,
};
use levee_testkit::backend::Mode;
use levee_testkit::dependency::RealServer;
use serde_json::Value;
use tokio::time::Instant;

/// The Redis store's I/O timeout: no request may come near it.
const STORE_IO_TIMEOUT: Duration = Duration::from_millis(500);

fn fleet_config(
    backend: SocketAddr,
    redis: SocketAddr,
    namespace: &str,
    instance: &str,
    quorum: u32,
) -> Config {
    let mut config = config(vec![backend], BalancePolicy::RoundRobin);
    let cluster = &mut config.clusters[0];
    // One backend: nothing to retry on, and no ejection hiding the failures.
    cluster.outlier = None;
    cluster.retry.hedge = None;
    cluster.breaker = Some(
        BreakerParams::builder()
            .consecutive_failures(3)
            .open_for(Duration::from_secs(8))
            .build()
            .expect("params"),
    );
    cluster.breaker_fleet = FleetBreakerSettings {
        shared: true,
        quorum,
        protect_locally: true,
    };
    config.store = StoreSettings {
        kind: StoreKind::Redis,
        url: format!("redis://{redis}"),
        namespace: namespace.to_owned(),
        instance_id: instance.to_owned(),
        on_unreachable: OnUnreachable::Local,
        sentinel: None,
    };
    config
}

async fn json(client: &TestClient, admin: SocketAddr, path: &str) -> Value {
    let answer = get(client, admin, path).await;
    assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    serde_json::from_str(&answer.body).expect("JSON")
}

async fn post(client: &TestClient, admin: SocketAddr, path: &str) -> Answer {
    let request = Request::post(format!("http://{admin}{path}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(client, request).await
}

/// Poll `path` on `admin` until `accept` holds, at most `within`; returns
/// the accepted document, or panics with the last one.
async fn wait_for(
    client: &TestClient,
    admin: SocketAddr,
    path: &str,
    within: Duration,
    accept: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let document = json(client, admin, path).await;
        if accept(&document) {
            return document;
        }
        assert!(
            Instant::now() < deadline,
            "{path} not as expected within {within:?}: {document:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_connected(client: &TestClient, gateway: &RunningGateway) {
    wait_for(
        client,
        gateway.admin_address(),
        "/status",
        Duration::from_secs(5),
        |status| status["store"]["health"] == "connected",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_on_one_gateway_opens_the_breaker_on_the_other_within_a_second() {
    let redis = RealServer::redis().await;
    let backends = backends(1).await;
    let backend = &backends[0];
    let client = client();
    let (a, a_web) = start(fleet_config(
        backend.addr(),
        redis.address(),
        "t1",
        "gw-a",
        1,
    ))
    .await;
    let (b, b_web) = start(fleet_config(
        backend.addr(),
        redis.address(),
        "t1",
        "gw-b",
        1,
    ))
    .await;
    wait_connected(&client, &a).await;
    wait_connected(&client, &b).await;
    let status = json(&client, b.admin_address(), "/status").await;
    assert_eq!(status["store"]["kind"], "redis");
    assert_eq!(status["store"]["instance_id"], "gw-b");

    backend.set_mode(Mode::Failing).await.expect("mode");
    for _ in 0..3 {
        assert_eq!(get(&client, a_web, "/").await.status, 503);
    }
    let tripped = Instant::now();
    let a_view = json(&client, a.admin_address(), "/breakers/app").await;
    assert_eq!(a_view["state"], "open", "{a_view:#}");
    assert_eq!(a_view["shared"], true);

    let b_view = wait_for(
        &client,
        b.admin_address(),
        "/breakers/app",
        Duration::from_secs(1),
        |view| view["state"] == "open",
    )
    .await;
    assert!(
        tripped.elapsed() < Duration::from_secs(1),
        "B saw the trip after {:?}",
        tripped.elapsed()
    );
    let reason = b_view["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("gw-a"), "{b_view:#}");
    assert_eq!(b_view["open_instances"], serde_json::json!(["gw-a"]));

    // B fails fast without reaching the backend.
    let received = backend.requests_received();
    let rejected = get(&client, b_web, "/").await;
    assert_eq!(rejected.status, 503);
    let body: Value = serde_json::from_str(&rejected.body).expect("JSON");
    assert_eq!(
        body["error"], "circuit breaker open: failing fast",
        "{body}"
    );
    assert!(rejected.headers.contains_key("retry-after"));
    assert_eq!(backend.requests_received(), received, "nothing sent by B");

    // The adoption is an event on B naming the fleet.
    let events = json(&client, b.admin_address(), "/events").await;
    let text = events.to_string();
    assert!(text.contains("reported by the fleet"), "{text}");

    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_quorum_of_two_one_instance_alone_opens_only_its_own_breaker() {
    let redis = RealServer::redis().await;
    let backends = backends(1).await;
    let backend = &backends[0];
    let client = client();
    let (a, a_web) = start(fleet_config(
        backend.addr(),
        redis.address(),
        "t2",
        "gw-a",
        2,
    ))
    .await;
    let (b, b_web) = start(fleet_config(
        backend.addr(),
        redis.address(),
        "t2",
        "gw-b",
        2,
    ))
    .await;
    wait_connected(&client, &a).await;
    wait_connected(&client, &b).await;

    backend.set_mode(Mode::Failing).await.expect("mode");
    for _ in 0..3 {
        assert_eq!(get(&client, a_web, "/").await.status, 503);
    }
    // A protects itself, and says it is alone.
    let a_view = wait_for(
        &client,
        a.admin_address(),
        "/breakers/app",
        Duration::from_secs(2),
        |view| view["open_instances"] == serde_json::json!(["gw-a"]),
    )
    .await;
    assert_eq!(a_view["state"], "open");
    assert_eq!(a_view["quorum"], 2);
    assert_eq!(a_view["fleet_open"], false);
    assert_eq!(a_view["open_locally_only"], true);
    let status = json(&client, a.admin_address(), "/status").await;
    let in_status = &status["clusters"][0]["breaker"];
    assert_eq!(in_status["open_locally_only"], true, "{status:#}");

    // B hears of A's verdict but stays closed well past the propagation bound.
    wait_for(
        &client,
        b.admin_address(),
        "/breakers/app",
        Duration::from_secs(2),
        |view| view["open_instances"] == serde_json::json!(["gw-a"]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let b_view = json(&client, b.admin_address(), "/breakers/app").await;
    assert_eq!(b_view["state"], "closed", "{b_view:#}");
    assert_eq!(b_view["fleet_open"], false);
    let received = backend.requests_received();
    assert_eq!(get(&client, b_web, "/").await.status, 503);
    assert_eq!(
        backend.requests_received(),
        received + 1,
        "B still sends requests"
    );

    // Failures through B as well: the quorum is met, open on both.
    for _ in 0..2 {
        assert_eq!(get(&client, b_web, "/").await.status, 503);
    }
    for gateway in [&a, &b] {
        let view = wait_for(
            &client,
            gateway.admin_address(),
            "/breakers/app",
            Duration::from_secs(1),
            |view| view["fleet_open"] == true,
        )
        .await;
        assert_eq!(view["state"], "open", "{view:#}");
        assert_eq!(view["open_instances"], serde_json::json!(["gw-a", "gw-b"]));
        assert_eq!(view["open_locally_only"], false);
    }

    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_never_wait_on_a_dead_redis_and_state_resyncs_after_it_returns() {
    let mut redis = RealServer::redis().await;
    let backends = backends(1).await;
    let backend = &backends[0];
    let client = client();
    let (a, a_web) = start(fleet_config(
        backend.addr(),
        redis.address(),
        "t3",
        "gw-a",
        1,
    ))
    .await;
    let (b, _b_web) = start(fleet_config(
        backend.addr(),
        redis.address(),
        "t3",
        "gw-b",
        1,
    ))
    .await;
    wait_connected(&client, &a).await;
    wait_connected(&client, &b).await;

    redis.stop();
    let stopped = Instant::now();
    // Requests flow at local speed while the store times out and degrades.
    let mut slowest = Duration::ZERO;
    while stopped.elapsed() < Duration::from_millis(1500) {
        let started = Instant::now();
        let answer = get(&client, a_web, "/").await;
        let took = started.elapsed();
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(
            took < STORE_IO_TIMEOUT / 2,
            "a request took {took:?} with Redis down"
        );
        slowest = slowest.max(took);
    }
    let status = wait_for(
        &client,
        a.admin_address(),
        "/status",
        Duration::from_secs(3),
        |status| status["store"]["health"] == "degraded",
    )
    .await;
    assert!(status["store"]["since"].is_string(), "{status:#}");
    assert!(status["store"]["error"].is_string(), "{status:#}");
    assert!(
        status["failing"].to_string().contains("store"),
        "the store criterion fails: {status:#}"
    );
    assert_eq!(status["readiness"], "degraded", "{status:#}");
    let metrics = get(&client, a.admin_address(), "/metrics").await.body;
    assert!(metrics.contains("levee_store_up 0"), "{metrics}");
    let events = json(&client, a.admin_address(), "/events")
        .await
        .to_string();
    assert!(events.contains("unreachable"), "{events}");

    // on_unreachable = "local": A still protects itself.
    backend.set_mode(Mode::Failing).await.expect("mode");
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(get(&client, a_web, "/").await.status, 503);
        assert!(started.elapsed() < STORE_IO_TIMEOUT / 2);
    }
    let a_view = json(&client, a.admin_address(), "/breakers/app").await;
    assert_eq!(a_view["state"], "open", "{a_view:#}");
    assert_eq!(a_view["store_unreachable"], true);

    // Redis is back: both reconnect, A's report is written again, B adopts it.
    redis.restart().await;
    wait_connected(&client, &a).await;
    wait_connected(&client, &b).await;
    wait_for(
        &client,
        b.admin_address(),
        "/breakers/app",
        Duration::from_secs(3),
        |view| view["state"] == "open",
    )
    .await;
    let metrics = get(&client, a.admin_address(), "/metrics").await.body;
    assert!(metrics.contains("levee_store_up 1"), "{metrics}");

    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_on_one_gateway_reaches_the_other() {
    let mut redis = RealServer::redis().await;
    let backends = backends(1).await;
    let backend = &backends[0];
    let client = client();
    let (a, _a_web) = start(fleet_config(
        backend.addr(),
        redis.address(),
        "t4",
        "gw-a",
        1,
    ))
    .await;
    let (b, b_web) = start(fleet_config(
        backend.addr(),
        redis.address(),
        "t4",
        "gw-b",
        1,
    ))
    .await;
    wait_connected(&client, &a).await;
    wait_connected(&client, &b).await;

    let forced = post(&client, a.admin_address(), "/breakers/app/force-open").await;
    assert_eq!(forced.status, 200, "{}", forced.body);
    wait_for(
        &client,
        b.admin_address(),
        "/breakers/app",
        Duration::from_secs(1),
        |view| view["state"] == "open",
    )
    .await;
    let received = backend.requests_received();
    assert_eq!(get(&client, b_web, "/").await.status, 503);
    assert_eq!(backend.requests_received(), received);

    let reset = post(&client, a.admin_address(), "/breakers/app/reset").await;
    assert_eq!(reset.status, 200, "{}", reset.body);
    wait_for(
        &client,
        b.admin_address(),
        "/breakers/app",
        Duration::from_secs(1),
        |view| view["state"] == "closed",
    )
    .await;
    assert_eq!(get(&client, b_web, "/").await.status, 200);

    // Without the store, an override cannot reach the fleet: say so.
    redis.stop();
    wait_for(
        &client,
        a.admin_address(),
        "/status",
        Duration::from_secs(3),
        |status| status["store"]["health"] == "degraded",
    )
    .await;
    let refused = post(&client, a.admin_address(), "/breakers/app/force-open").await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    let body: Value = serde_json::from_str(&refused.body).expect("JSON");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("store unreachable"),
        "{body}"
    );

    a.shutdown().await;
    b.shutdown().await;
}
