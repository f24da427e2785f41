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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_breaker_takes_only_its_endpoint_out() {
    let backends = backends(3).await;
    backends[1].set_mode(Mode::Failing).await.expect("mode");
    let mut config = config(
        backends.iter().map(|backend| backend.addr()).collect(),
        BalancePolicy::RoundRobin,
    );
    let cluster = &mut config.clusters[0];
    cluster.breaker = Some(
        BreakerParams::builder()
            .consecutive_failures(3)
            .open_for(Duration::from_secs(60))
            .build()
            .expect("params"),
    );
    cluster.breaker_per_endpoint = true;
    cluster.retry.policy = levee_core::retry::RetryPolicy::new(1).expect("policy");
    cluster.outlier = None;
    let (gateway, addr) = start(config).await;
    let admin = gateway.admin_address();
    let client = client();

    // Round-robin: every third request reaches the failing endpoint, whose
    // own 503 is passed on (retries are off), until its breaker opens.
    let mut requests = 0;
    while backends[1].requests_received() < 3 {
        get(&client, addr, "/").await;
        requests += 1;
        assert!(requests <= 12, "the failing endpoint is never picked");
    }
    for _ in 0..30 {
        assert_eq!(get(&client, addr, "/").await.status, 200);
    }
    assert_eq!(
        backends[1].requests_received(),
        3,
        "skipped while its breaker is open"
    );

    let name = format!("app/{}", backends[1].addr());
    let list: serde_json::Value =
        serde_json::from_str(&get(&client, admin, "/breakers").await.body).expect("JSON");
    let listed = list
        .as_array()
        .expect("a list")
        .iter()
        .find(|breaker| breaker["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} in {list}"));
    assert_eq!(listed["state"], "open", "{listed}");
    let cluster_breaker = list
        .as_array()
        .expect("a list")
        .iter()
        .find(|breaker| breaker["name"] == "app")
        .expect("the cluster's breaker");
    assert_eq!(cluster_breaker["state"], "closed", "{cluster_breaker}");

    // The name URL-encoded, decoded by the admin API.
    let encoded = name.replace('/', "%2F").replace(':', "%3A");
    let one = get(&client, admin, &format!("/breakers/{encoded}")).await;
    assert_eq!(one.status, 200, "{}", one.body);
    let one: serde_json::Value = serde_json::from_str(&one.body).expect("JSON");
    assert_eq!(
        (one["name"].as_str(), one["is_open"].as_bool()),
        (Some(name.as_str()), Some(true))
    );
    let forced = post(&client, admin, &format!("/breakers/{encoded}/force-open")).await;
    assert_eq!(forced.status, 200, "{}", forced.body);
    assert_eq!(
        post(&client, admin, &format!("/breakers/{encoded}/reset"))
            .await
            .status,
        200
    );
    let one: serde_json::Value = serde_json::from_str(
        &get(&client, admin, &format!("/breakers/{encoded}"))
            .await
            .body,
    )
    .expect("JSON");
    assert_eq!(one["state"], "closed", "{one}");

    let metrics = get(&client, admin, "/metrics").await.body;
    let series = format!(r#"levee_breaker_transitions_total{{breaker="{name}",state="open"}} 2"#);
    assert!(metrics.contains(&series), "{series} in:\n{metrics}");
    let events = get(&client, admin, "/events").await.body;
    let endpoint = format!(r#""endpoint":"{}""#, backends[1].addr());
    assert!(events.contains(&endpoint), "{events}");
    gateway.shutdown().await;
}

#[tokio::test]
async fn with_every_endpoint_breaker_open_the_request_fails_fast() {
    let backends = backends(1).await;
    let mut config = config(vec![backends[0].addr()], BalancePolicy::RoundRobin);
    config.clusters[0].breaker = Some(BreakerParams::default());
    config.clusters[0].breaker_per_endpoint = true;
    let (gateway, addr) = start(config).await;
    let admin = gateway.admin_address();
    let client = client();
    let encoded = format!("app%2F{}", backends[0].addr()).replace(':', "%3A");
    let forced = post(&client, admin, &format!("/breakers/{encoded}/force-open")).await;
    assert_eq!(forced.status, 200, "{}", forced.body);
    let rejected = get(&client, addr, "/").await;
    assert_eq!(rejected.status, 503);
    let body: serde_json::Value = serde_json::from_str(&rejected.body).expect("JSON");
    assert_eq!(body["error"], "circuit breaker open: failing fast");
    assert_eq!(
        body["cluster"],
        format!("app/{}", backends[0].addr()),
        "{body}"
    );
    assert_eq!(backends[0].requests_received(), 0);
    // Not the cluster's fault: its own breaker stays closed.
    assert_eq!(breaker_state(&client, admin).await["state"], "closed");
    gateway.shutdown().await;
}
