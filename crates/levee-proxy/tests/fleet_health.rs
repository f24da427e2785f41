//! Endpoint health shared by three gateways through a real `redis-server`
//! (`share_health`, quorum 2). Each gateway connects from its own loopback
//! address, so the testkit can break a node for one gateway's traffic only:
//! a broken path from one host.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use levee_proxy::RunningGateway;
use levee_proxy::config::{BalancePolicy, Config, OnUnreachable, StoreKind, StoreSettings};
use levee_testkit::backend::Mode;
use levee_testkit::dependency::RealServer;
use serde_json::Value;
use tokio::time::Instant;

/// The source address of gateway `n` (A = 2, B = 3, C = 4).
fn source(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

fn gateway_config(
    backends: Vec<SocketAddr>,
    redis: SocketAddr,
    instance: &str,
    from: IpAddr,
) -> Config {
    let mut config = config(backends, BalancePolicy::RoundRobin);
    let cluster = &mut config.clusters[0];
    cluster.outlier = None;
    cluster.slow_start = Duration::ZERO;
    cluster.source_address = Some(from);
    cluster.health = Some(http_health(
        Duration::from_millis(100),
        Duration::from_millis(50),
        Duration::from_millis(200),
        0.1,
    ));
    // share_health and health_quorum stay at their defaults: on with a
    // Redis store, quorum 2.
    config.store = StoreSettings {
        kind: StoreKind::Redis,
        url: format!("redis://{redis}"),
        namespace: "health".to_owned(),
        instance_id: instance.to_owned(),
        on_unreachable: OnUnreachable::Local,
        sentinel: None,
    };
    config
}

async fn status(client: &TestClient, gateway: &RunningGateway) -> Value {
    let answer = get(client, gateway.admin_address(), "/status").await;
    serde_json::from_str(&answer.body).expect("status JSON")
}

/// Poll `/status` of `gateway` until `accept` holds, at most `within`.
async fn wait_status(
    client: &TestClient,
    gateway: &RunningGateway,
    within: Duration,
    what: &str,
    accept: impl Fn(&Value) -> bool,
) -> Value {
    let give_up = Instant::now() + within;
    loop {
        let status = status(client, gateway).await;
        if accept(&status) {
            return status;
        }
        assert!(
            Instant::now() < give_up,
            "{what} within {within:?}: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first endpoint (the node under test) of the only cluster.
fn node(status: &Value) -> &Value {
    &status["clusters"][0]["endpoints"][0]
}

async fn post(client: &TestClient, web: SocketAddr) -> u16 {
    let request = Request::post(format!("http://{web}/count"))
        .body(Full::new(Bytes::from_static(b"order")))
        .expect("request");
    send(client, request).await.status.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_of_gateways_takes_a_node_out_for_the_whole_fleet() {
    let redis = RealServer::redis().await;
    let backends = backends(2).await;
    let (node_under_test, other) = (&backends[0], &backends[1]);
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr()).collect();
    let client = client();
    let (a, _a_web) = start(gateway_config(
        addrs.clone(),
        redis.address(),
        "gw-a",
        source(2),
    ))
    .await;
    let (b, _b_web) = start(gateway_config(
        addrs.clone(),
        redis.address(),
        "gw-b",
        source(3),
    ))
    .await;
    let (c, c_web) = start(gateway_config(addrs, redis.address(), "gw-c", source(4))).await;
    for gateway in [&a, &b, &c] {
        wait_status(
            &client,
            gateway,
            Duration::from_secs(5),
            "connected, members counted",
            |s| s["store"]["health"] == "connected" && node(s)["fleet"]["members"] == 3,
        )
        .await;
    }

    // 1. Broken for A only: A routes away by its own checks; the fleet
    // does not follow one instance.
    node_under_test.set_mode_for(source(2), Some(Mode::Failing));
    wait_status(&client, &a, Duration::from_secs(3), "unhealthy on A", |s| {
        node(s)["state"] == "unhealthy"
    })
    .await;
    let c_status = wait_status(
        &client,
        &c,
        Duration::from_secs(3),
        "A's vote seen on C",
        |s| node(s)["fleet"]["voters"] == serde_json::json!(["gw-a"]),
    )
    .await;
    assert_eq!(node(&c_status)["fleet"]["verdict"], "in", "{c_status:#}");
    assert_eq!(node(&c_status)["state"], "healthy", "{c_status:#}");
    // A second later, still in on B and C.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for gateway in [&b, &c] {
        let status = status(&client, gateway).await;
        assert_eq!(node(&status)["fleet"]["verdict"], "in", "{status:#}");
    }

    // 2. Broken for A and B: out on C too, where it never failed, and
    // before C sends it anything.
    node_under_test.reset_counters();
    node_under_test.set_mode_for(source(3), Some(Mode::Failing));
    let c_status = wait_status(&client, &c, Duration::from_secs(3), "out on C", |s| {
        node(s)["fleet"]["verdict"] == "out"
    })
    .await;
    assert_eq!(
        node(&c_status)["state"],
        "healthy",
        "C's own view: {c_status:#}"
    );
    assert_eq!(
        node(&c_status)["fleet"]["voters"],
        serde_json::json!(["gw-a", "gw-b"]),
        "{c_status:#}"
    );
    let events = get(&client, c.admin_address(), "/events").await.body;
    assert!(
        events.contains("endpoint-fleet-health") && events.contains("judged bad by gw-a, gw-b"),
        "{events}"
    );
    let writes_before = node_under_test.writes_received();
    for _ in 0..40 {
        assert_eq!(post(&client, c_web).await, 200);
    }
    assert_eq!(
        node_under_test.writes_received(),
        writes_before,
        "C sent nothing to a node the fleet took out"
    );
    assert_eq!(other.writes_received(), 40);

    // 3. The node recovers: the fleet verdict heals, C sends to it again.
    node_under_test.set_mode_for(source(2), None);
    node_under_test.set_mode_for(source(3), None);
    wait_status(&client, &c, Duration::from_secs(3), "back in on C", |s| {
        node(s)["fleet"]["verdict"] == "in"
    })
    .await;
    for _ in 0..40 {
        assert_eq!(post(&client, c_web).await, 200);
    }
    assert!(
        node_under_test.writes_received() > writes_before,
        "C sends to it again"
    );

    for gateway in [a, b, c] {
        gateway.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_gone_every_gateway_serves_on_its_own_view() {
    let mut redis = RealServer::redis().await;
    let backends = backends(2).await;
    let node_under_test = &backends[0];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr()).collect();
    let client = client();
    let (a, a_web) = start(gateway_config(
        addrs.clone(),
        redis.address(),
        "gw-a",
        source(2),
    ))
    .await;
    let (b, b_web) = start(gateway_config(
        addrs.clone(),
        redis.address(),
        "gw-b",
        source(3),
    ))
    .await;
    let (c, c_web) = start(gateway_config(addrs, redis.address(), "gw-c", source(4))).await;
    for gateway in [&a, &b, &c] {
        wait_status(&client, gateway, Duration::from_secs(5), "connected", |s| {
            s["store"]["health"] == "connected" && node(s)["fleet"]["members"] == 3
        })
        .await;
    }
    node_under_test.set_mode_for(source(2), Some(Mode::Failing));
    node_under_test.set_mode_for(source(3), Some(Mode::Failing));
    wait_status(&client, &c, Duration::from_secs(3), "out on C", |s| {
        node(s)["fleet"]["verdict"] == "out"
    })
    .await;

    redis.stop();
    // C falls back to its own view (the node is fine from C) and says so;
    // everyone keeps serving.
    let c_status = wait_status(&client, &c, Duration::from_secs(3), "own view on C", |s| {
        s["store"]["health"] == "degraded" && node(s)["fleet"]["verdict"] == "unknown"
    })
    .await;
    assert_eq!(node(&c_status)["state"], "healthy", "{c_status:#}");
    for web in [a_web, b_web, c_web] {
        for _ in 0..20 {
            assert_eq!(
                post(&client, web).await,
                200,
                "served through {web} without Redis"
            );
        }
    }
    let events = get(&client, c.admin_address(), "/events").await.body;
    assert!(
        events.contains("this instance follows its own view"),
        "{events}"
    );
    for gateway in [a, b, c] {
        gateway.shutdown().await;
    }
}
