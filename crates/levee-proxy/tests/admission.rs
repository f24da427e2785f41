//! Admission control: past the limit a request waits briefly or is shed at
//! once with 503 and Retry-After; shed requests cost the upstream nothing
//! and count against no endpoint.

mod common;

use std::time::Duration;

use common::*;
use levee_core::admission::AdmissionParams;
use levee_proxy::config::{AdmissionSettings, BalancePolicy};
use levee_testkit::backend::Mode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_limit_requests_are_shed_at_once_and_never_reach_the_upstream() {
    let backends = backends(1).await;
    backends[0]
        .set_mode(Mode::Slow(Duration::from_millis(400)))
        .await
        .expect("mode");
    let mut config = config(vec![backends[0].addr()], BalancePolicy::RoundRobin);
    config.clusters[0].admission = Some(AdmissionSettings {
        params: AdmissionParams::builder()
            .max_concurrency(2)
            .max_queue(1)
            .queue_timeout(Duration::from_millis(100))
            .codel_target(Duration::from_millis(5))
            .build()
            .expect("params"),
        adaptive: None,
        priority_header: None,
    });
    let (gateway, addr) = start(config).await;
    let client = client();
    let requests = (0..6).map(|_| {
        let client = client.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let answer = get(&client, addr, "/").await;
            (answer, started.elapsed())
        })
    });
    let mut served = 0;
    let mut reasons = Vec::new();
    for request in requests.collect::<Vec<_>>() {
        let (answer, took) = request.await.expect("request task");
        match answer.status.as_u16() {
            200 => served += 1,
            503 => {
                assert_eq!(answer.headers["retry-after"], "1");
                assert!(answer.headers.get("x-levee-attempts").is_none());
                let body: serde_json::Value =
                    serde_json::from_str(&answer.body).expect("JSON body");
                assert_eq!(body["cluster"], "app");
                assert!(
                    body["reason"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("overloaded"),
                    "{body}"
                );
                // Shed, not served late: well before a slot could free.
                assert!(took < Duration::from_millis(350), "shed after {took:?}");
                reasons.push(body["kind"].as_str().unwrap_or("?").to_owned());
            }
            other => panic!("unexpected status {other}: {}", answer.body),
        }
    }
    reasons.sort();
    assert_eq!(served, 2);
    assert_eq!(
        reasons,
        ["queue_full", "queue_full", "queue_full", "timeout"]
    );
    assert_eq!(
        backends[0].requests_received(),
        2,
        "shed requests never reach the upstream"
    );

    let admin = gateway.admin_address();
    let metrics = get(&client, admin, "/metrics").await.body;
    for series in [
        r#"levee_admission_shed_total{cluster="app",reason="queue_full",class="default"} 3"#,
        r#"levee_admission_shed_total{cluster="app",reason="timeout",class="default"} 1"#,
        r#"levee_admission_limit{cluster="app"} 2"#,
        "levee_admission_wait_seconds_bucket{",
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
    // Nothing was held against the endpoint, and no retry was spent.
    assert!(
        !metrics.contains("levee_upstream_failures_total{"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"levee_upstream_retries_total{cluster="app",kind="retry"} 0"#),
        "{metrics}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&get(&client, admin, "/status").await.body).expect("status");
    let cluster = &status["clusters"][0];
    assert_eq!(cluster["endpoints"][0]["state"], "healthy", "{status}");
    assert_eq!(cluster["admission"]["limit"], 2, "{status}");
    assert_eq!(cluster["admission"]["in_flight"], 0, "{status}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adaptive_limit_shrinks_when_the_upstream_slows_down() {
    let backends = backends(1).await;
    let mut config = config(vec![backends[0].addr()], BalancePolicy::RoundRobin);
    config.clusters[0].admission = Some(AdmissionSettings {
        params: AdmissionParams::builder()
            .max_concurrency(100)
            .build()
            .expect("params"),
        adaptive: Some(levee_proxy::config::AdaptiveLimitSettings { min_concurrency: 2 }),
        priority_header: None,
    });
    let (gateway, addr) = start(config).await;
    let client = client();
    let limit = |body: String| -> u64 {
        let status: serde_json::Value = serde_json::from_str(&body).expect("status");
        status["clusters"][0]["admission"]["limit"]
            .as_u64()
            .expect("limit")
    };
    // Fast answers: latency stays at its minimum and the limit grows.
    for _ in 0..200 {
        assert_eq!(get(&client, addr, "/").await.status, 200);
    }
    let admin = gateway.admin_address();
    let grown = limit(get(&client, admin, "/status").await.body);
    assert!(grown > 20, "limit grew from its initial 20: {grown}");
    // Much slower answers: requests are queueing upstream; the limit shrinks.
    for _ in 0..30 {
        assert_eq!(get(&client, addr, "/slow?ms=30").await.status, 200);
    }
    let shrunk = limit(get(&client, admin, "/status").await.body);
    assert!(shrunk < grown, "limit shrank: {grown} -> {shrunk}");
    gateway.shutdown().await;
}
