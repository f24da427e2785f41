//! Client-side adaptive throttling: while the only node answers 503, levee
//! rejects most requests itself and the node sees a trickle; once the node
//! recovers, traffic flows again.

mod common;

use std::time::Duration;

use common::*;
use levee_core::retry::RetryPolicy;
use levee_core::throttle::ThrottleParams;
use levee_proxy::config::{BalancePolicy, ThrottleSettings};
use levee_testkit::backend::Mode;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_rejects_gets_a_trickle_and_traffic_returns_when_it_recovers() {
    let backends = backends(1).await;
    let backend = &backends[0];
    let mut config = config(vec![backend.addr()], BalancePolicy::RoundRobin);
    let cluster = &mut config.clusters[0];
    cluster.outlier = None;
    cluster.retry.policy = RetryPolicy::new(1).expect("policy");
    cluster.throttle = Some(ThrottleSettings {
        params: ThrottleParams::new(2.0, Duration::from_secs(1)).expect("params"),
    });
    let (gateway, web) = start(config).await;
    let client = client();

    backend.set_mode(Mode::Failing).await.expect("mode");
    backend.reset_counters();
    let (mut throttled, mut forwarded_503) = (0, 0);
    for _ in 0..300 {
        let answer = get(&client, web, "/").await;
        assert_eq!(answer.status, 503);
        if answer.body.contains("\"kind\":\"throttled\"") {
            throttled += 1;
        } else {
            forwarded_503 += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let reached = backend.requests_received();
    println!("while failing: {throttled} throttled, {forwarded_503} forwarded, node saw {reached}");
    assert_eq!(
        reached, forwarded_503,
        "only what levee let through reached the node"
    );
    assert!(reached < 60, "the node saw {reached} of 300");
    let metrics = get(&client, gateway.admin_address(), "/metrics").await.body;
    assert!(
        metrics.contains(&format!(
            "levee_throttled_total{{cluster=\"app\"}} {throttled}"
        )),
        "{metrics}"
    );

    // The node recovers: within seconds every request is answered by it.
    backend.set_mode(Mode::Healthy).await.expect("mode");
    let recovered = Instant::now();
    let mut in_a_row = 0;
    while in_a_row < 50 {
        let answer = get(&client, web, "/").await;
        in_a_row = if answer.status == 200 {
            in_a_row + 1
        } else {
            0
        };
        assert!(
            recovered.elapsed() < Duration::from_secs(20),
            "traffic back within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("traffic back after {:?}", recovered.elapsed());
    gateway.shutdown().await;
}
