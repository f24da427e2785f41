//! The cluster circuit breaker: it opens on failures and fails fast with 503
//! and Retry-After, lets trial requests through after its open period,
//! closes when they succeed, obeys operators, and tells webhooks.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use levee_core::breaker::BreakerParams;
use levee_proxy::config::{AlertSettings, BalancePolicy};
use levee_testkit::backend::Mode;

async fn post(client: &TestClient, addr: std::net::SocketAddr, path: &str) -> Answer {
    let request = Request::post(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(client, request).await
}

async fn breaker_state(client: &TestClient, admin: std::net::SocketAddr) -> serde_json::Value {
    let answer = get(client, admin, "/breakers/app").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    serde_json::from_str(&answer.body).expect("breaker JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_fails_fast_then_trials_close_it() {
    let (hook, mut received) = webhook_receiver().await;
    let backends = backends(1).await;
    backends[0].set_mode(Mode::Failing).await.expect("mode");
    let mut config = config(vec![backends[0].addr()], BalancePolicy::RoundRobin);
    config.clusters[0].breaker = Some(
        BreakerParams::builder()
            .consecutive_failures(3)
            .open_for(Duration::from_millis(1500))
            .half_open_trials(2)
            .build()
            .expect("params"),
    );
    config.alerts = vec![AlertSettings {
        url: format!("http://{hook}/levee").parse().expect("url"),
        events: Some(vec!["breaker".into()]),
    }];
    let (gateway, addr) = start(config).await;
    let admin = gateway.admin_address();
    let client = client();
    assert_eq!(breaker_state(&client, admin).await["state"], "closed");

    for _ in 0..3 {
        // The upstream's own 503s.
        assert_eq!(
            get(&client, addr, "/").await.body,
            r#"{"error":"demo backend failing"}"#
        );
    }
    let rejected = get(&client, addr, "/").await;
    assert_eq!(rejected.status, 503);
    assert_eq!(rejected.headers["retry-after"], "2");
    let body: serde_json::Value = serde_json::from_str(&rejected.body).expect("JSON");
    assert_eq!(body["error"], "circuit breaker open: failing fast");
    assert_eq!(body["cluster"], "app");
    assert_eq!(body["kind"], "open");
    assert!(
        body["reason"]
            .as_str()
            .unwrap_or("")
            .contains("3 consecutive failures"),
        "{body}"
    );
    assert_eq!(
        backends[0].requests_received(),
        3,
        "failing fast: nothing sent"
    );
    let state = breaker_state(&client, admin).await;
    assert_eq!(
        (state["state"].as_str(), state["is_open"].as_bool()),
        (Some("open"), Some(true))
    );
    let opened = next_webhook(&mut received).await;
    assert_eq!(
        (opened["kind"].as_str(), opened["to"].as_str()),
        (Some("breaker"), Some("open"))
    );

    // Healed; after the open period two trial requests close the breaker.
    backends[0].set_mode(Mode::Healthy).await.expect("heal");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    for _ in 0..2 {
        assert_eq!(get(&client, addr, "/").await.status, 200);
    }
    let state = breaker_state(&client, admin).await;
    assert_eq!(state["state"], "closed", "{state}");
    assert_eq!(state["is_open"], false);
    let half_open = next_webhook(&mut received).await;
    assert_eq!(half_open["to"], "half-open", "{half_open}");
    let closed = next_webhook(&mut received).await;
    assert_eq!(closed["to"], "closed", "{closed}");

    let metrics = get(&client, admin, "/metrics").await.body;
    for series in [
        r#"levee_breaker_state{breaker="app",state="closed"} 1"#,
        r#"levee_breaker_transitions_total{breaker="app",state="open"} 1"#,
        r#"levee_breaker_rejections_total{breaker="app"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
    let events = get(&client, admin, "/events").await.body;
    assert!(events.contains(r#""kind":"breaker""#), "{events}");
    gateway.shutdown().await;
}

#[tokio::test]
async fn operators_can_force_and_reset_it() {
    let backends = backends(1).await;
    let mut config = config(vec![backends[0].addr()], BalancePolicy::RoundRobin);
    config.clusters[0].breaker = Some(BreakerParams::default());
    let (gateway, addr) = start(config).await;
    let admin = gateway.admin_address();
    let client = client();
    let forced = post(&client, admin, "/breakers/app/force-open").await;
    assert_eq!(forced.status, 200, "{}", forced.body);
    let rejected = get(&client, addr, "/").await;
    assert_eq!(rejected.status, 503);
    assert!(
        rejected.headers.get("retry-after").is_none(),
        "forced: no known end"
    );
    let list = get(&client, admin, "/breakers").await;
    assert!(list.body.contains(r#""forced":true"#), "{}", list.body);
    assert_eq!(
        post(&client, admin, "/breakers/app/reset").await.status,
        200
    );
    assert_eq!(get(&client, addr, "/").await.status, 200);
    assert_eq!(
        post(&client, admin, "/breakers/app/explode").await.status,
        404
    );
    assert_eq!(get(&client, admin, "/breakers/nope").await.status, 404);
    gateway.shutdown().await;
}
