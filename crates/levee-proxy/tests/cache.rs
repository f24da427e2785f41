//! The response cache: hits never reach the upstream, an expired hot key is
//! refilled by one request however many wait, a stall or an error upstream is
//! covered by stale copies, and purges and size limits hold.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use levee_proxy::config::{BalancePolicy, CacheSettings, Config};
use levee_testkit::backend::{Backend, Mode};

fn cached_config(backend: &Backend, cache: CacheSettings) -> Config {
    let mut config = config(vec![backend.addr()], BalancePolicy::RoundRobin);
    config.clusters[0].cache = Some(cache);
    // One node: no hedging or retries to add upstream requests to the counts.
    config.clusters[0].retry.hedge = None;
    config
}

/// The testkit backend says nothing about freshness: a default TTL makes its
/// answers cacheable.
fn ttl(ttl: Duration, stale_while_revalidate: Duration, stale_if_error: Duration) -> CacheSettings {
    CacheSettings {
        default_ttl: ttl,
        stale_while_revalidate,
        stale_if_error,
        ..CacheSettings::default()
    }
}

fn cache_header(answer: &Answer) -> String {
    answer.headers["x-levee-cache"]
        .to_str()
        .unwrap_or("?")
        .to_owned()
}

#[tokio::test]
async fn a_hit_never_reaches_the_upstream_and_writes_bypass_the_cache() {
    let backend = Backend::start("b1", LOOPBACK).await.expect("backend");
    let cache = ttl(Duration::from_secs(60), Duration::ZERO, Duration::ZERO);
    let (gateway, addr) = start(cached_config(&backend, cache)).await;
    let client = client();
    let first = get(&client, addr, "/page?x=1").await;
    assert_eq!(
        (first.status.as_u16(), cache_header(&first)),
        (200, "miss".into())
    );
    for _ in 0..5 {
        let again = get(&client, addr, "/page?x=1").await;
        assert_eq!(again.status, 200);
        assert_eq!(cache_header(&again), "hit");
        assert_eq!(again.body, "hello from b1\n");
    }
    assert_eq!(backend.requests_received(), 1);
    // Another query is another key; a POST is never cached.
    assert_eq!(cache_header(&get(&client, addr, "/page?x=2").await), "miss");
    let post = Request::post(format!("http://{addr}/echo"))
        .body(Full::new(Bytes::from_static(b"hi")))
        .expect("request");
    let posted = send(&client, post).await;
    assert_eq!((posted.status.as_u16(), posted.body.as_str()), (200, "hi"));
    assert_eq!(backend.requests_received(), 3);

    // A purge by key makes the next request a miss again.
    let admin = gateway.admin_address();
    let purge = Request::delete(format!("http://{admin}/cache?key={}/page?x=1", addr))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let purged = send(&client, purge).await;
    assert_eq!(purged.status, 200, "{}", purged.body);
    assert_eq!(purged.body, r#"{"purged":1}"#);
    assert_eq!(cache_header(&get(&client, addr, "/page?x=1").await), "miss");
    assert_eq!(backend.requests_received(), 4);
    let bad = Request::delete(format!("http://{admin}/cache"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(send(&client, bad).await.status, 400);
    let metrics = get(&client, admin, "/metrics").await.body;
    assert!(
        metrics.contains(r#"levee_cache_responses_total{cluster="app",kind="hit"} 5"#),
        "{metrics}"
    );
    gateway.shutdown().await;
}

async fn stampede(cache: CacheSettings) -> (Vec<(u16, String, Duration)>, u64) {
    let backend = Backend::start("b1", LOOPBACK).await.expect("backend");
    let (gateway, addr) = start(cached_config(&backend, cache)).await;
    let client = client();
    assert_eq!(get(&client, addr, "/hot").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    backend
        .set_mode(Mode::Slow(Duration::from_millis(1500)))
        .await
        .expect("slow");
    let before = backend.requests_received();
    let requests: Vec<_> = (0..200)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                let answer = get(&client, addr, "/hot").await;
                (
                    answer.status.as_u16(),
                    cache_header(&answer),
                    started.elapsed(),
                )
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.expect("request task"));
    }
    // Let a background refresh land before counting.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let upstream = backend.requests_received() - before;
    gateway.shutdown().await;
    (answers, upstream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_requests_for_an_expired_key_make_one_upstream_request() {
    let (answers, upstream) =
        stampede(ttl(Duration::from_secs(1), Duration::ZERO, Duration::ZERO)).await;
    assert_eq!(upstream, 1, "one fill for 200 waiting requests");
    assert!(
        answers.iter().all(|(status, _, _)| *status == 200),
        "{answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_stale_while_revalidate_they_are_served_stale_at_once() {
    let (answers, upstream) = stampede(ttl(
        Duration::from_secs(1),
        Duration::from_secs(30),
        Duration::ZERO,
    ))
    .await;
    assert_eq!(upstream, 1, "one background refresh");
    for (status, cache, took) in &answers {
        assert_eq!((*status, cache.as_str()), (200, "stale"));
        assert!(*took < Duration::from_millis(1000), "waited {took:?}");
    }
}

#[tokio::test]
async fn while_the_upstream_fails_the_stale_copy_is_served_and_marked() {
    let backend = Backend::start("b1", LOOPBACK).await.expect("backend");
    let cache = ttl(
        Duration::from_millis(300),
        Duration::ZERO,
        Duration::from_secs(60),
    );
    let (gateway, addr) = start(cached_config(&backend, cache)).await;
    let client = client();
    assert_eq!(get(&client, addr, "/").await.status, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    backend.set_mode(Mode::Failing).await.expect("fail");
    for _ in 0..3 {
        let answer = get(&client, addr, "/").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(cache_header(&answer), "stale");
        assert_eq!(answer.body, "hello from b1\n");
    }
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_upstream_under_load_costs_no_errors_and_one_request_per_key() {
    use levee_testkit::load::{LoadSpec, run};
    let mut upstream_during_stall = Vec::new();
    for cached in [true, false] {
        let backend = Backend::start("b1", LOOPBACK).await.expect("backend");
        let mut config = config(vec![backend.addr()], BalancePolicy::RoundRobin);
        config.clusters[0].retry.hedge = None;
        if cached {
            config.clusters[0].cache = Some(ttl(
                Duration::from_millis(200),
                Duration::from_secs(30),
                Duration::from_secs(300),
            ));
        }
        let (gateway, addr) = start(config).await;
        let mut spec = LoadSpec::new(format!("http://{addr}/hot").parse().expect("url"));
        spec.concurrency = 8;
        spec.duration = Some(Duration::from_secs(3));
        spec.deadline = Duration::from_secs(5);
        let load = tokio::spawn(run(spec));
        tokio::time::sleep(Duration::from_secs(1)).await;
        backend
            .set_mode(Mode::Slow(Duration::from_millis(1500)))
            .await
            .expect("stall");
        let before = backend.requests_received();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let during = backend.requests_received() - before;
        backend.set_mode(Mode::Healthy).await.expect("heal");
        let report = load.await.expect("load");
        println!(
            "cache {}: {during} upstream requests during a 1.5 s stall\n{report}",
            if cached { "on" } else { "off" }
        );
        if cached {
            assert_eq!(report.error_count(), 0, "{report}");
            assert!(
                during <= 1,
                "{during} upstream requests for one key during the stall"
            );
        }
        upstream_during_stall.push(during);
        gateway.shutdown().await;
    }
    assert!(
        upstream_during_stall[1] > upstream_during_stall[0],
        "without the cache every client waits on the stalled upstream: {upstream_during_stall:?}"
    );
}

#[tokio::test]
async fn the_cache_stays_within_max_size() {
    let backend = Backend::start("b1", LOOPBACK).await.expect("backend");
    let cache = CacheSettings {
        max_size: 1024,
        max_entry_size: 512,
        ..ttl(Duration::from_secs(60), Duration::ZERO, Duration::ZERO)
    };
    let (gateway, addr) = start(cached_config(&backend, cache)).await;
    let client = client();
    for i in 0..20 {
        assert_eq!(get(&client, addr, &format!("/item/{i}")).await.status, 200);
    }
    let status: serde_json::Value =
        serde_json::from_str(&get(&client, gateway.admin_address(), "/status").await.body)
            .expect("status");
    let cache = &status["clusters"][0]["cache"];
    assert!(cache["bytes"].as_u64().expect("bytes") <= 1024, "{cache}");
    assert!(
        cache["evictions"].as_u64().expect("evictions") > 0,
        "{cache}"
    );
    assert!(cache["entries"].as_u64().expect("entries") < 20, "{cache}");
    gateway.shutdown().await;
}

#[tokio::test]
async fn while_the_breaker_is_open_the_stale_copy_is_served() {
    let backend = Backend::start("b1", LOOPBACK).await.expect("backend");
    let cache = ttl(
        Duration::from_millis(300),
        Duration::ZERO,
        Duration::from_secs(60),
    );
    let mut config = cached_config(&backend, cache);
    config.clusters[0].breaker = Some(levee_core::breaker::BreakerParams::default());
    let (gateway, addr) = start(config).await;
    let client = client();
    assert_eq!(get(&client, addr, "/").await.status, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let admin = gateway.admin_address();
    let force = Request::post(format!("http://{admin}/breakers/app/force-open"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(send(&client, force).await.status, 200);
    let answer = get(&client, addr, "/").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(cache_header(&answer), "stale");
    // An uncached path gets the breaker's fast 503.
    assert_eq!(get(&client, addr, "/other").await.status, 503);
    assert_eq!(backend.requests_received(), 1);
    gateway.shutdown().await;
}
