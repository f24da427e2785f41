//! Each load-balancing policy spreads requests as documented.

mod common;

use std::time::Duration;

use common::*;
use levee_proxy::config::BalancePolicy;
use levee_testkit::backend::Mode;

#[tokio::test]
async fn round_robin_gives_each_endpoint_its_turn() {
    let backends = backends(3).await;
    let addrs = backends.iter().map(|b| b.addr()).collect();
    let (gateway, addr) = start(config(addrs, BalancePolicy::RoundRobin)).await;
    let client = client();
    for _ in 0..30 {
        assert_eq!(get(&client, addr, "/").await.status, 200);
    }
    for backend in &backends {
        assert_eq!(backend.requests_received(), 10, "{}", backend.name());
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn least_request_avoids_an_endpoint_with_a_request_in_flight() {
    let backends = backends(3).await;
    backends[0].set_mode(Mode::Hung).await.expect("mode");
    let addrs = backends.iter().map(|b| b.addr()).collect();
    let (gateway, addr) = start(config(addrs, BalancePolicy::LeastRequest)).await;
    // Three concurrent requests: one lands on each endpoint; the one on the hung
    // backend stays in flight.
    let mut first_wave = Vec::new();
    for _ in 0..3 {
        let client = client();
        first_wave.push(tokio::spawn(async move {
            get(&client, addr, "/slow?ms=300").await
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        backends[0].requests_received(),
        1,
        "the hung backend should hold one request"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Sequential requests find both free endpoints idle: ties broken at
    // random give each at least 8 of 40 but with a chance of about 4 in
    // 100,000 (with 20 and 5, one in 400 runs failed by chance).
    let client = client();
    for _ in 0..40 {
        assert_eq!(get(&client, addr, "/").await.status, 200);
    }
    assert_eq!(
        backends[0].requests_received(),
        1,
        "least-request sent more to a busy endpoint"
    );
    let (b2, b3) = (
        backends[1].requests_received(),
        backends[2].requests_received(),
    );
    assert_eq!(b2 + b3, 42);
    assert!(
        b2 >= 9 && b3 >= 9,
        "uneven split of idle endpoints: {b2} / {b3}"
    );
    backends[0].set_mode(Mode::Healthy).await.expect("mode");
    gateway.shutdown().await;
}

/// `workers` concurrent closed-loop clients, `each` requests apiece.
async fn concurrent_gets(addr: std::net::SocketAddr, workers: usize, each: usize) {
    let mut tasks = Vec::new();
    for _ in 0..workers {
        tasks.push(tokio::spawn(async move {
            let client = client();
            for _ in 0..each {
                assert_eq!(get(&client, addr, "/").await.status, 200);
            }
        }));
    }
    for task in tasks {
        task.await.expect("worker");
    }
}

// Every endpoint answers after 10 ms, so that scheduling noise of a busy
// machine (a millisecond or two) is small beside each latency sample, and
// the estimate forgets in 200 ms (the default 10 s outlives the test):
// with sub-millisecond answers and the default decay, one stall while an
// endpoint's requests were in flight raised its estimate several times
// over for the rest of the test, and peak EWMA rightly shunned it (CI saw
// 22 of 300). One runtime thread, so a stall delays every endpoint alike.
// That the cost also counts requests in flight is endpoint_load.rs's unit
// test: with 10 ms answers and this decay, the estimates alone spread
// equal endpoints too.
#[tokio::test]
async fn p2c_ewma_spreads_concurrent_load_and_shuns_a_slow_endpoint() {
    const BASE: Duration = Duration::from_millis(10);
    let backends = backends(3).await;
    for backend in &backends {
        backend.set_mode(Mode::Slow(BASE)).await.expect("mode");
    }
    let addrs = backends.iter().map(|b| b.addr()).collect();
    let mut config = config(addrs, BalancePolicy::P2cEwma);
    config.clusters[0].ewma_decay = Duration::from_millis(200);
    // Without hedges, each attempt on the slow endpoint runs to its answer:
    // a hedge would cut it at ~30 ms and teach the balancer only that.
    config.clusters[0].retry.hedge = None;
    let (gateway, addr) = start(config).await;
    // Equal endpoints share concurrent load evenly (85-116 each of 300
    // here, beside three busy loops).
    concurrent_gets(addr, 12, 25).await;
    for backend in &backends {
        let share = backend.requests_received();
        assert!(share >= 50, "{} got only {share} of 300", backend.name());
        backend.reset_counters();
    }

    backends[0]
        .set_mode(Mode::Slow(BASE + Duration::from_millis(90)))
        .await
        .expect("mode");
    concurrent_gets(addr, 12, 25).await;
    let slow = backends[0].requests_received();
    // Each slow answer raises its peak-EWMA cost at once, so it loses almost
    // every pairwise choice: it gets the few sent before its first answer
    // came back and about one at a time after (8-10 of 300 beside three busy
    // loops; round robin would send it 100, least-request 23-29).
    assert!(slow <= 18, "slow endpoint still got {slow} of 300");
    gateway.shutdown().await;
}
