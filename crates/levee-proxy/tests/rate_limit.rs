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
use levee_proxy::config::{BalancePolicy, RateKey, RateLimitSettings};

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
