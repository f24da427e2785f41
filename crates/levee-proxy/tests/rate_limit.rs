//! A cluster's rate limit per API key: a burst, then 429 with Retry-After
//! and the RateLimit headers; another key is not affected; the upstream
//! never sees what was limited.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use levee_core::ratelimit::RateParams;
use levee_proxy::config::{
    BalancePolicy, Config, OnUnreachable, RateKey, RateLimitSettings, StoreKind, StoreSettings,
};
use levee_testkit::dependency::RealServer;
use tokio::time::Instant;

async fn get_as(client: &TestClient, web: std::net::SocketAddr, key: &str) -> Answer {
    let request = Request::get(format!("http://{web}/"))
        .header("x-api-key", key)
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(client, request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_gets_429_with_the_ratelimit_headers() {
    let backends = backends(1).await;
    let mut config = config(vec![backends[0].addr()], BalancePolicy::RoundRobin);
    config.clusters[0].rate_limit = Some(RateLimitSettings {
        params: RateParams::new(2.0, 5).expect("params"),
        key: RateKey::Header(http::HeaderName::from_static("x-api-key")),
        shared: false,
        store_timeout: RateLimitSettings::DEFAULT_STORE_TIMEOUT,
    });
    let (gateway, web) = start(config).await;
    let client = client();

    let mut remaining = Vec::new();
    for _ in 0..5 {
        let answer = get_as(&client, web, "tenant-a").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.headers["ratelimit-limit"], "5");
        remaining.push(
            answer.headers["ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(remaining, ["4", "3", "2", "1", "0"]);
    let limited = get_as(&client, web, "tenant-a").await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(limited.headers["retry-after"], "1");
    assert_eq!(limited.headers["ratelimit-remaining"], "0");
    assert!(
        limited.body.contains("\"kind\":\"rate-limited\""),
        "{}",
        limited.body
    );
    assert_eq!(
        backends[0].requests_received(),
        5,
        "the limited request never reached it"
    );
    // Another key has its own bucket.
    assert_eq!(get_as(&client, web, "tenant-b").await.status, 200);
    // Half a second later (2/s), one more for tenant-a.
    tokio::time::sleep(Duration::from_millis(550)).await;
    assert_eq!(get_as(&client, web, "tenant-a").await.status, 200);
    assert_eq!(get_as(&client, web, "tenant-a").await.status, 429);
    let metrics = get(&client, gateway.admin_address(), "/metrics").await.body;
    assert!(
        metrics.contains("levee_rate_limited_total{cluster=\"app\"} 2"),
        "{metrics}"
    );
    gateway.shutdown().await;
}

fn shared_config(
    backend: std::net::SocketAddr,
    redis: std::net::SocketAddr,
    instance: &str,
) -> Config {
    let mut config = config(vec![backend], BalancePolicy::RoundRobin);
    config.clusters[0].rate_limit = Some(RateLimitSettings {
        params: RateParams::new(20.0, 20).expect("params"),
        key: RateKey::Header(http::HeaderName::from_static("x-api-key")),
        shared: true,
        // Generous for a debug build on a busy machine.
        store_timeout: Duration::from_millis(50),
    });
    config.store = StoreSettings {
        kind: StoreKind::Redis,
        url: format!("redis://{redis}"),
        namespace: "rates".to_owned(),
        instance_id: instance.to_owned(),
        on_unreachable: OnUnreachable::Local,
        sentinel: None,
    };
    config
}

/// Two gateways share one limit through a real redis-server: their
/// combined rate holds within 10%; with Redis gone each falls back to its
/// own limit, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_rate_limit_holds_across_two_gateways_and_falls_back_without_redis() {
    let mut redis = RealServer::redis().await;
    let backends = backends(1).await;
    let (a, a_web) = start(shared_config(backends[0].addr(), redis.address(), "gw-a")).await;
    let (b, b_web) = start(shared_config(backends[0].addr(), redis.address(), "gw-b")).await;
    let client = client();
    for gateway in [&a, &b] {
        let give_up = Instant::now() + Duration::from_secs(5);
        loop {
            let status = get(&client, gateway.admin_address(), "/status").await.body;
            if status.contains("\"health\":\"connected\"") {
                break;
            }
            assert!(Instant::now() < give_up, "store connected: {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let started = Instant::now();
    let mut allowed = 0u64;
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(3) {
        let web = if sent % 2 == 0 { a_web } else { b_web };
        sent += 1;
        let answer = get_as(&client, web, "tenant-a").await;
        match answer.status.as_u16() {
            200 => allowed += 1,
            429 => {}
            other => panic!("{other}: {}", answer.body),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let expected = 20.0 + 20.0 * elapsed;
    println!("fleet limit: {allowed} of {sent} allowed in {elapsed:.2} s (expected {expected:.0})");
    assert!(
        (allowed as f64) <= expected * 1.1 && (allowed as f64) >= expected * 0.9,
        "{allowed} allowed, expected {expected:.0} within 10%"
    );

    redis.stop();
    // Each gateway decides alone now: still answered, never a 5xx.
    for _ in 0..40 {
        let status = get_as(&client, a_web, "tenant-b").await.status.as_u16();
        assert!(status == 200 || status == 429, "{status}");
    }
    let metrics = get(&client, a.admin_address(), "/metrics").await.body;
    let fallbacks = metrics
        .lines()
        .find(|line| line.starts_with("levee_rate_limit_fallbacks_total{cluster=\"app\"}"))
        .and_then(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(fallbacks > 0, "{metrics}");
    for gateway in [a, b] {
        gateway.shutdown().await;
    }
}
