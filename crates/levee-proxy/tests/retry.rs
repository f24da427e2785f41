//! Safe retries: a request is tried again on another node only when that
//! cannot do anything twice, within a budget, and a poison request is
//! stopped instead of spread.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use levee_proxy::config::BalancePolicy;
use levee_testkit::backend::{Backend, Mode};

fn post(addr: std::net::SocketAddr, path: &str) -> http::request::Builder {
    Request::post(format!("http://{addr}{path}"))
}

fn with_body(builder: http::request::Builder, body: &'static str) -> Request<Full<Bytes>> {
    builder
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("request")
}

fn total_received(backends: &[Backend]) -> u64 {
    backends.iter().map(Backend::requests_received).sum()
}

fn json(answer: &Answer) -> serde_json::Value {
    serde_json::from_str(&answer.body).unwrap_or_else(|_| panic!("JSON body: {}", answer.body))
}

#[tokio::test]
async fn a_sent_post_is_never_sent_twice_and_the_client_is_told_why() {
    let backends = backends(2).await;
    backends[0]
        .set_mode(Mode::ResetAfterRequest)
        .await
        .expect("mode");
    let addrs = backends.iter().map(Backend::addr).collect();
    let (gateway, addr) = start(config(addrs, BalancePolicy::RoundRobin)).await;
    let client = client();
    let mut refused = 0;
    for _ in 0..4 {
        let answer = send(&client, with_body(post(addr, "/echo"), "order #1")).await;
        if answer.status == 502 {
            refused += 1;
            let body = json(&answer);
            assert_eq!(
                body["retry"], "not retried: request was sent and is not idempotent",
                "{body}"
            );
            assert_eq!(body["kind"], "reset-before-response", "{body}");
            assert_eq!(answer.headers["x-levee-attempts"], "1");
        } else {
            assert_eq!(answer.status, 200, "{}", answer.body);
            assert_eq!(answer.body, "order #1");
        }
    }
    // Round robin: every other POST lands on the resetting node.
    assert_eq!(refused, 2);
    assert_eq!(backends[0].requests_received(), 2);
    assert_eq!(
        total_received(&backends),
        4,
        "each POST reached exactly one node"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_post_with_an_idempotency_key_is_retried_with_its_body() {
    let backends = backends(2).await;
    backends[0]
        .set_mode(Mode::ResetAfterRequest)
        .await
        .expect("mode");
    let addrs = backends.iter().map(Backend::addr).collect();
    let (gateway, addr) = start(config(addrs, BalancePolicy::RoundRobin)).await;
    let client = client();
    let mut attempts = Vec::new();
    for i in 0..4 {
        let request = post(addr, "/echo").header("idempotency-key", format!("order-{i}"));
        let answer = send(&client, with_body(request, "order body")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body, "order body", "the replayed body arrives whole");
        attempts.push(
            answer.headers["x-levee-attempts"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    attempts.sort();
    assert_eq!(attempts, ["1", "1", "2", "2"]);
    assert_eq!(backends[0].requests_received(), 2);
    assert_eq!(backends[1].requests_received(), 4);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_post_to_a_refused_endpoint_is_retried_because_it_was_never_sent() {
    let backends = backends(2).await;
    backends[0].set_mode(Mode::Crashed).await.expect("mode");
    let addrs = backends.iter().map(Backend::addr).collect();
    let (gateway, addr) = start(config(addrs, BalancePolicy::RoundRobin)).await;
    let client = client();
    for _ in 0..4 {
        let answer = send(&client, with_body(post(addr, "/echo"), "payment")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body, "payment");
    }
    assert_eq!(backends[1].requests_received(), 4);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_response_that_breaks_midway_is_aborted_and_not_retried() {
    let backends = backends(2).await;
    backends[0]
        .set_mode(Mode::PartialThenReset { bytes: 16 })
        .await
        .expect("mode");
    let addrs = backends.iter().map(Backend::addr).collect();
    let (gateway, addr) = start(config(addrs, BalancePolicy::RoundRobin)).await;
    let client = client();
    let mut aborted = 0;
    let mut whole = 0;
    for _ in 0..2 {
        let request = Request::get(format!("http://{addr}/"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = tokio::time::timeout(TEST_TIMEOUT, client.request(request))
            .await
            .expect("head in time")
            .expect("head");
        assert_eq!(response.status(), 200);
        let body = tokio::time::timeout(TEST_TIMEOUT, response.into_body().collect())
            .await
            .expect("body ends in time");
        match body {
            Ok(_) => whole += 1,
            Err(_) => aborted += 1,
        }
    }
    assert_eq!((aborted, whole), (1, 1));
    // The broken response was not retried: each node saw one request.
    assert_eq!(backends[0].requests_received(), 1);
    assert_eq!(backends[1].requests_received(), 1);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_poison_request_is_stopped_and_does_not_eject_the_nodes_it_broke() {
    let backends = backends(3).await;
    let addrs = backends.iter().map(Backend::addr).collect();
    let (gateway, addr) = start(config(addrs, BalancePolicy::RoundRobin)).await;
    let client = client();
    for _ in 0..10 {
        let answer = get(&client, addr, "/reset").await;
        assert_eq!(answer.status, 502);
        let body = json(&answer);
        assert_eq!(
            body["retry"], "not retried: poison request (failed the same way on 2 endpoints)",
            "{body}"
        );
        assert_eq!(answer.headers["x-levee-attempts"], "2");
    }
    // 2 attempts each, never a third; 20 resets over 3 nodes would have
    // ejected them (5 in a row) had they been blamed.
    assert_eq!(total_received(&backends), 20);
    let admin = gateway.admin_address();
    let status: serde_json::Value =
        serde_json::from_str(&get(&client, admin, "/status").await.body).expect("status");
    for endpoint in status["clusters"][0]["endpoints"].as_array().expect("list") {
        assert_eq!(endpoint["state"], "healthy", "{status}");
    }
    for _ in 0..6 {
        let answer = get(&client, addr, "/").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.headers["x-levee-attempts"], "1");
    }
    let metrics = get(&client, admin, "/metrics").await.body;
    assert!(
        metrics.contains(r#"levee_poison_requests_total{cluster="app"} 10"#),
        "{metrics}"
    );
    let events = get(&client, admin, "/events").await.body;
    assert!(events.contains("poison-request"), "{events}");
    assert!(events.contains("GET /reset"), "{events}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_node_fails_retries_stay_within_the_budget() {
    use levee_testkit::load::{LoadSpec, run};
    let backends = backends(3).await;
    for backend in &backends {
        backend.set_mode(Mode::Failing).await.expect("mode");
    }
    let addrs = backends.iter().map(Backend::addr).collect();
    let mut config = config(addrs, BalancePolicy::RoundRobin);
    // Only the budget may stop retries here: no ejections, no poison rule
    // short of the attempts limit.
    config.clusters[0].outlier = None;
    let (gateway, addr) = start(config).await;
    let mut spec = LoadSpec::new(format!("http://{addr}/").parse().expect("url"));
    spec.concurrency = 8;
    spec.max_requests = Some(1000);
    spec.deadline = Duration::from_secs(5);
    let report = run(spec).await;
    let requests = report.sent;
    assert!(requests >= 1000, "{report}");
    assert_eq!(report.statuses.get(&503), Some(&requests), "{report}");
    let attempts = total_received(&backends);
    let budget = config_budget();
    let allowed = requests + requests * u64::from(budget.percent()) / 100 + budget_floor(&budget);
    assert!(
        attempts <= allowed,
        "{attempts} upstream attempts for {requests} requests (allowed {allowed})"
    );
    assert!(attempts > requests, "some requests were retried");
    let metrics = get(&client(), gateway.admin_address(), "/metrics")
        .await
        .body;
    assert!(
        metrics.contains(r#"levee_not_retried_total{cluster="app",reason="budget-exhausted"}"#),
        "{metrics}"
    );
    let status: serde_json::Value = serde_json::from_str(
        &get(&client(), gateway.admin_address(), "/status")
            .await
            .body,
    )
    .expect("status");
    let shown = &status["clusters"][0]["retry_budget"];
    assert_eq!(shown["remaining"], 0, "{shown}");
    assert_eq!(shown["retries"], attempts - requests, "{shown}");
    println!("{requests} requests, {attempts} upstream attempts, allowed {allowed}");
    gateway.shutdown().await;
}

fn config_budget() -> levee_core::retry::RetryBudgetParams {
    levee_proxy::config::RetrySettings::default().budget
}

/// What the per-second floor adds over one window.
fn budget_floor(budget: &levee_core::retry::RetryBudgetParams) -> u64 {
    u64::from(budget.min_per_second()) * budget.window().as_secs()
}

#[tokio::test]
async fn a_slow_idempotent_request_is_hedged_and_a_post_is_not() {
    let backends = backends(2).await;
    backends[0]
        .set_mode(Mode::Slow(Duration::from_secs(2)))
        .await
        .expect("mode");
    let addrs = backends.iter().map(Backend::addr).collect();
    let mut config = config(addrs, BalancePolicy::RoundRobin);
    if let Some(hedge) = config.clusters[0].retry.hedge.as_mut() {
        hedge.floor = Duration::from_millis(50);
        hedge.ceiling = Duration::from_millis(100);
    }
    let (gateway, addr) = start(config).await;
    let client = client();
    for _ in 0..4 {
        let started = tokio::time::Instant::now();
        let answer = get(&client, addr, "/").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, format!("hello from {}\n", "b2"));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "hedged, not waited out: {:?}",
            started.elapsed()
        );
    }
    // A POST is never hedged: the one that lands on the slow node waits.
    let mut slow_posts = 0;
    for _ in 0..2 {
        let started = tokio::time::Instant::now();
        let answer = send(&client, with_body(post(addr, "/echo"), "x")).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.headers["x-levee-attempts"], "1");
        if started.elapsed() >= Duration::from_secs(2) {
            slow_posts += 1;
        }
    }
    assert_eq!(slow_posts, 1);
    let metrics = get(&client, gateway.admin_address(), "/metrics").await.body;
    assert!(
        metrics.contains(r#"levee_upstream_retries_total{cluster="app",kind="hedge"}"#),
        "{metrics}"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn the_same_503_from_two_nodes_is_passed_on_and_blames_neither() {
    let backends = backends(3).await;
    let addrs = backends.iter().map(Backend::addr).collect();
    let mut config = config(addrs, BalancePolicy::RoundRobin);
    // A slow moment in a debug build must not add a hedge to the count.
    config.clusters[0].retry.hedge = None;
    let (gateway, addr) = start(config).await;
    let client = client();
    // 20 answers, about 7 per node: 5 in a row would eject a blamed node.
    for _ in 0..20 {
        let answer = get(&client, addr, "/status/503").await;
        // The upstream's own answer, after a second opinion.
        assert_eq!(answer.status, 503);
        assert_eq!(answer.headers["x-levee-attempts"], "2");
    }
    let status: serde_json::Value =
        serde_json::from_str(&get(&client, gateway.admin_address(), "/status").await.body)
            .expect("status");
    for endpoint in status["clusters"][0]["endpoints"].as_array().expect("list") {
        assert_eq!(endpoint["state"], "healthy", "{status}");
    }
    gateway.shutdown().await;
}

/// The first attempt's per-try timeout, with a hedge running beside it or
/// without one: each hung attempt ends at its own timeout, not at the
/// request's deadline.
#[tokio::test]
async fn a_hung_first_attempt_ends_at_its_per_try_timeout_with_or_without_a_hedge() {
    const PER_TRY: Duration = Duration::from_millis(300);
    let backends = backends(2).await;
    backends[0].set_mode(Mode::Hung).await.expect("mode");
    let addrs = backends.iter().map(Backend::addr).collect();
    let mut settings = config(addrs, BalancePolicy::RoundRobin);
    settings.clusters[0].retry.per_try_timeout = PER_TRY;
    settings.clusters[0].retry.hedge = None;
    let (gateway, addr) = start(settings).await;
    let client = client();
    // Round robin: one of two requests starts on the hung node, is timed
    // out and retried on the other.
    let mut timed_out = 0;
    for _ in 0..2 {
        let started = tokio::time::Instant::now();
        let answer = get(&client, addr, "/").await;
        let took = started.elapsed();
        assert_eq!(answer.status, 200);
        if answer.headers["x-levee-attempts"] == "2" {
            timed_out += 1;
            assert!(
                took >= PER_TRY && took < Duration::from_secs(2),
                "retried after {took:?}"
            );
        }
    }
    assert_eq!(timed_out, 1);
    gateway.shutdown().await;

    // Both nodes hung, hedging on: the first attempt, the hedge beside it
    // from 50 ms, each ends at its own per-try timeout and the client gets
    // 504 then, long before the request's 5 s deadline.
    for backend in &backends {
        backend.reset_counters();
    }
    backends[1].set_mode(Mode::Hung).await.expect("mode");
    let addrs = backends.iter().map(Backend::addr).collect();
    let mut settings = config(addrs, BalancePolicy::RoundRobin);
    settings.clusters[0].retry.per_try_timeout = PER_TRY;
    if let Some(hedge) = settings.clusters[0].retry.hedge.as_mut() {
        hedge.floor = Duration::from_millis(50);
        hedge.ceiling = Duration::from_millis(50);
    }
    let (gateway, addr) = start(settings).await;
    let started = tokio::time::Instant::now();
    let answer = get(&client, addr, "/").await;
    let took = started.elapsed();
    assert_eq!(answer.status, 504, "{}", answer.body);
    assert!(
        took >= PER_TRY + Duration::from_millis(50) && took < Duration::from_secs(2),
        "answered after {took:?}"
    );
    let metrics = get(&client, gateway.admin_address(), "/metrics").await.body;
    assert!(
        metrics.contains(r#"levee_upstream_retries_total{cluster="app",kind="hedge"} 1"#),
        "{metrics}"
    );
    for backend in &backends {
        assert_eq!(backend.requests_received(), 1, "{}", backend.name());
        backend.set_mode(Mode::Healthy).await.expect("mode");
    }
    gateway.shutdown().await;
}
