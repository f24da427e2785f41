//! The admin listener: liveness, readiness, status and metrics.

mod common;

use common::*;
use levee_proxy::config::BalancePolicy;
use levee_testkit::backend::Mode;

#[tokio::test]
async fn live_ready_status_and_metrics_describe_the_gateway() {
    let backends = backends(2).await;
    backends[1].set_mode(Mode::Crashed).await.expect("mode");
    let addrs = vec![backends[0].addr(), backends[1].addr()];
    let (gateway, addr) = start(config(addrs, BalancePolicy::RoundRobin)).await;
    let admin = gateway.admin_address();
    let client = client();

    assert_eq!(get(&client, admin, "/live").await.status, 200);
    let ready = get(&client, admin, "/ready").await;
    assert_eq!(ready.status, 200, "{}", ready.body);

    // Round robin sends one of the two requests to the crashed endpoint: it
    // is refused, retried on the live one, and the client never sees it.
    for _ in 0..2 {
        assert_eq!(get(&client, addr, "/").await.status, 200);
    }

    let status = get(&client, admin, "/status").await;
    assert_eq!(status.status, 200);
    let json: serde_json::Value = serde_json::from_str(&status.body).expect("JSON");
    assert_eq!(json["ready"], true);
    assert_eq!(json["listeners"][0]["name"], "web");
    assert_eq!(json["listeners"][0]["address"], addr.to_string());
    let cluster = &json["clusters"][0];
    assert_eq!(cluster["name"], "app");
    assert_eq!(cluster["balance"], "round-robin");
    let endpoints = cluster["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 2);
    assert_eq!(endpoints[0]["address"], backends[0].addr().to_string());
    assert_eq!(endpoints[0]["in_flight"], 0);
    assert!(endpoints[0]["ewma_latency_ms"].as_f64().expect("ewma") > 0.0);

    let metrics = get(&client, admin, "/metrics").await;
    assert_eq!(metrics.status, 200);
    let ok_series = format!(
        r#"levee_upstream_requests_total{{cluster="app",endpoint="{}",class="2xx"}} 2"#,
        backends[0].addr()
    );
    assert!(metrics.body.contains(&ok_series), "{}", metrics.body);
    let refused = format!(
        r#"levee_upstream_failures_total{{cluster="app",endpoint="{}",kind="connect-refused"}} 1"#,
        backends[1].addr()
    );
    assert!(metrics.body.contains(&refused), "{}", metrics.body);
    assert!(
        metrics
            .body
            .contains(r#"levee_http_responses_total{listener="web",class="2xx"} 2"#)
    );
    assert!(
        metrics
            .body
            .contains(r#"levee_upstream_retries_total{cluster="app",kind="retry"} 1"#),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains("levee_upstream_in_flight{"));
    assert!(
        metrics
            .body
            .contains("levee_upstream_response_seconds_bucket{")
    );

    gateway.shutdown().await;
}

#[tokio::test]
async fn ready_turns_503_while_draining() {
    let backends = backends(1).await;
    backends[0].set_mode(Mode::Hung).await.expect("mode");
    let mut config = config(vec![backends[0].addr()], BalancePolicy::RoundRobin);
    config.runtime.drain_timeout = std::time::Duration::from_secs(2);
    let (gateway, addr) = start(config).await;
    let admin = gateway.admin_address();
    let state = std::sync::Arc::clone(gateway.state());
    // Keep a request in flight so the drain lasts.
    let hung = tokio::spawn(async move {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), get(&client(), addr, "/"))
            .await;
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let shutdown = tokio::spawn(gateway.shutdown());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let reasons = state.readiness().expect_err("not ready while draining");
    assert!(reasons[0].contains("draining"), "{reasons:?}");
    // The admin port stays up during the drain and says why it is not ready.
    let ready = get(&client(), admin, "/ready").await;
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains("draining"), "{}", ready.body);
    shutdown.await.expect("shutdown");
    hung.abort();
}
