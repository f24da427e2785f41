//! `FleetBreaker` as a library user sees it: two instances sharing one
//! store (in memory, then a real `redis-server` started on a free port),
//! failures through one opening the other, the quorum, and a rejected call
//! that never runs. Every wait is bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use levee_core::breaker::{BreakerParams, StateName};
use levee_store::{
    FleetBreaker, FleetRules, MemoryStore, RedisStore, RedisStoreConfig, StateStore, StoreHealth,
};
use levee_testkit::dependency::RealServer;
use tokio::time::{Instant, sleep};

const NAME: &str = "payments";

fn params() -> BreakerParams {
    BreakerParams::builder()
        .consecutive_failures(2)
        .failure_rate(None)
        .open_for(Duration::from_secs(30))
        .build()
        .expect("valid params")
}

fn memory_pair(quorum: u32) -> (MemoryStore, FleetBreaker, FleetBreaker) {
    let rules = FleetRules::new().with_quorum(quorum).expect("quorum");
    let store = MemoryStore::new("instance-a", rules);
    let a = FleetBreaker::new(NAME, params(), Arc::new(store.clone()));
    let b = FleetBreaker::new(NAME, params(), Arc::new(store.as_instance("instance-b")));
    (store, a, b)
}

/// A call to the protected service that fails, counting its runs.
async fn fail_through(breaker: &FleetBreaker, runs: &AtomicU32) {
    let answer = breaker
        .call(
            async {
                runs.fetch_add(1, Ordering::SeqCst);
                Err::<(), &str>("503")
            },
            |result| result.is_err(),
        )
        .await;
    assert_eq!(answer, Ok(Err("503")), "{breaker:?}");
}

/// Poll until `breaker` is open, at most `patience`; how long it took.
async fn wait_open(breaker: &FleetBreaker, patience: Duration) -> Duration {
    let start = Instant::now();
    while !breaker.snapshot().is_open {
        assert!(
            start.elapsed() < patience,
            "{} not open after {patience:?}: {:?}",
            breaker.name(),
            breaker.snapshot()
        );
        sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

/// A call through an open breaker is rejected without running.
async fn assert_rejected_without_running(breaker: &FleetBreaker) {
    let runs = AtomicU32::new(0);
    let rejected = breaker
        .call(
            async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<(), ()>(())
            },
            |result| result.is_err(),
        )
        .await
        .expect_err("open for the fleet");
    assert_eq!(rejected.state, StateName::Open);
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the call must not run");
}

#[tokio::test]
async fn failures_through_one_instance_open_the_other() {
    let (store, a, b) = memory_pair(1);
    let runs = AtomicU32::new(0);
    fail_through(&a, &runs).await;
    fail_through(&a, &runs).await;
    assert!(a.snapshot().is_open);

    wait_open(&b, Duration::from_secs(1)).await;
    assert_rejected_without_running(&b).await;
    assert_rejected_without_running(&a).await;

    // The adopted opening is not reported back as b's own verdict.
    sleep(Duration::from_millis(100)).await;
    let fleet = store.snapshot();
    assert_eq!(fleet.breakers[NAME].open_instances, ["instance-a"]);
}

#[tokio::test]
async fn with_quorum_2_one_instance_alone_does_not_open_the_fleet() {
    let (store, a, b) = memory_pair(2);
    let runs = AtomicU32::new(0);
    fail_through(&a, &runs).await;
    fail_through(&a, &runs).await;
    // a protects itself on its own evidence...
    assert!(a.snapshot().is_open);
    sleep(Duration::from_millis(100)).await;
    // ...but b still lets calls through.
    assert!(!store.snapshot().breakers[NAME].is_open());
    assert!(!b.snapshot().is_open);
    let b_runs = AtomicU32::new(0);
    fail_through(&b, &b_runs).await;
    assert_eq!(b_runs.load(Ordering::SeqCst), 1);

    fail_through(&b, &b_runs).await;
    assert!(b.snapshot().is_open);
    let fleet = store.snapshot();
    let state = &fleet.breakers[NAME];
    assert!(state.is_open(), "{state:?}");
    let mut open = state.open_instances.clone();
    open.sort();
    assert_eq!(open, ["instance-a", "instance-b"]);
}

async fn redis_store(server: &RealServer, instance: &str) -> RedisStore {
    let url = format!("redis://{}/", server.address());
    let config = RedisStoreConfig::new(url, "fleet-breaker-test", instance);
    let store = RedisStore::start(config).expect("redis store");
    let mut health = store.health();
    tokio::time::timeout(
        Duration::from_secs(5),
        health.wait_for(|health| *health == StoreHealth::Connected),
    )
    .await
    .unwrap_or_else(|_| panic!("{instance} never connected"))
    .expect("store running");
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_redis_the_second_instance_sees_open_within_a_second() {
    let server = RealServer::redis().await;
    let a = FleetBreaker::new(
        NAME,
        params(),
        Arc::new(redis_store(&server, "instance-a").await),
    );
    let b = FleetBreaker::new(
        NAME,
        params(),
        Arc::new(redis_store(&server, "instance-b").await),
    );
    let runs = AtomicU32::new(0);
    fail_through(&a, &runs).await;
    fail_through(&a, &runs).await;
    let took = wait_open(&b, Duration::from_secs(1)).await;
    assert_rejected_without_running(&b).await;
    eprintln!("instance-b open {took:?} after instance-a tripped");
}
