//! The Redis store against a real `redis-server` started on a free port:
//! propagation between instances, quorum, overrides, expiry, an outage and
//! its recovery, namespace isolation. Every wait is bounded.

use std::future::Future;
use std::time::{Duration, SystemTime};

use levee_store::{
    FleetMap, FleetRules, FleetVerdict, LocalReport, Override, RedisStore, RedisStoreConfig,
    StateStore, StoreHealth,
};
use levee_testkit::dependency::RealServer;
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

/// The propagation bound the store promises, plus scheduling slack.
const PROPAGATION: Duration = Duration::from_millis(1_500);

fn url(server: &RealServer) -> String {
    format!("redis://{}/", server.address())
}

async fn start(server: &RealServer, namespace: &str, instance: &str, quorum: u32) -> RedisStore {
    let rules = FleetRules::new().with_quorum(quorum).unwrap();
    let config = RedisStoreConfig::new(url(server), namespace, instance).with_rules(rules);
    let store = RedisStore::start(config).unwrap();
    let mut health = store.health();
    wait_until(&mut health, Duration::from_secs(5), |health| {
        *health == StoreHealth::Connected
    })
    .await
    .unwrap_or_else(|last| panic!("{instance} never connected: {last:?}"));
    store
}

/// Wait until `done` holds for the watched value, at most `patience`;
/// `Err` with the last value otherwise.
async fn wait_until<T: Clone>(
    rx: &mut watch::Receiver<T>,
    patience: Duration,
    done: impl Fn(&T) -> bool,
) -> Result<Duration, T> {
    let start = Instant::now();
    let deadline = start + patience;
    loop {
        if done(&rx.borrow_and_update()) {
            return Ok(start.elapsed());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || timeout(left, rx.changed()).await.is_err() {
            return Err(rx.borrow().clone());
        }
    }
}

fn open_report(reason: &str) -> LocalReport {
    let now = SystemTime::now();
    LocalReport {
        open_until: Some(now + Duration::from_secs(30)),
        reason: reason.to_owned(),
        failures: 5,
        calls: 5,
        at: now,
    }
}

fn is_open(breaker: &'static str) -> impl Fn(&FleetMap) -> bool {
    move |fleet| fleet.get(breaker).is_some_and(|state| state.is_open())
}

/// Fail, rather than hang, if `future` takes longer than `limit`.
async fn bounded<T>(limit: Duration, future: impl Future<Output = T>) -> T {
    timeout(limit, future)
        .await
        .expect("did not finish in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_from_one_instance_shows_in_the_others_watch_within_a_second() {
    let server = RealServer::redis().await;
    let a = start(&server, "fleet", "a", 1).await;
    let b = start(&server, "fleet", "b", 1).await;
    let mut fleet = b.subscribe();
    a.report("payments", open_report("5 consecutive failures"));
    let took = wait_until(&mut fleet, PROPAGATION, is_open("payments"))
        .await
        .unwrap_or_else(|last| panic!("b never saw a's report: {last:?}"));
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let state = b.snapshot().breakers["payments"].clone();
    let FleetVerdict::Open { reason, .. } = &state.verdict else {
        panic!("expected open: {state:?}");
    };
    assert!(reason.contains("a: 5 consecutive failures"), "{reason}");
    assert!(!b.snapshot().is_stale());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_two_opens_the_fleet_only_when_two_instances_report_open() {
    let server = RealServer::redis().await;
    let a = start(&server, "fleet", "a", 2).await;
    let b = start(&server, "fleet", "b", 2).await;
    let mut b_fleet = b.subscribe();
    a.report("search", open_report("failure rate 80%"));
    wait_until(&mut b_fleet, PROPAGATION, |fleet| {
        fleet
            .get("search")
            .is_some_and(|state| state.open_instances == ["a"])
    })
    .await
    .unwrap_or_else(|last| panic!("b never saw a's report: {last:?}"));
    assert!(
        !b.snapshot().breakers["search"].is_open(),
        "one instance is not a quorum"
    );

    b.report("search", open_report("failure rate 90%"));
    let mut a_fleet = a.subscribe();
    wait_until(&mut a_fleet, PROPAGATION, is_open("search"))
        .await
        .unwrap_or_else(|last| panic!("a never saw the quorum: {last:?}"));
    let state = a.snapshot().breakers["search"].clone();
    assert_eq!(state.open_instances, ["a", "b"]);
    assert_eq!(state.quorum, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_overrides_reach_every_instance() {
    let server = RealServer::redis().await;
    let a = start(&server, "fleet", "a", 1).await;
    let b = start(&server, "fleet", "b", 1).await;
    let mut b_fleet = b.subscribe();
    let at = SystemTime::now();
    let force_open = Override::ForceOpen {
        reason: "maintenance".to_owned(),
        at,
    };
    bounded(
        Duration::from_secs(2),
        a.set_override("billing", Some(force_open)),
    )
    .await
    .unwrap();
    wait_until(&mut b_fleet, PROPAGATION, is_open("billing"))
        .await
        .unwrap_or_else(|last| panic!("b never saw the force-open: {last:?}"));

    b.report("billing", open_report("timeouts"));
    let force_closed = Override::ForceClosed {
        reason: "false alarm".to_owned(),
        at,
    };
    bounded(
        Duration::from_secs(2),
        a.set_override("billing", Some(force_closed)),
    )
    .await
    .unwrap();
    wait_until(&mut b_fleet, PROPAGATION, |fleet| {
        fleet
            .get("billing")
            .is_some_and(|state| state.verdict == FleetVerdict::Closed { forced: true })
    })
    .await
    .unwrap_or_else(|last| panic!("b never saw the force-closed: {last:?}"));

    bounded(Duration::from_secs(2), a.set_override("billing", None))
        .await
        .unwrap();
    wait_until(&mut b_fleet, PROPAGATION, is_open("billing"))
        .await
        .unwrap_or_else(|last| panic!("cleared override: b's report should count again: {last:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instances_reports_stop_counting_and_its_membership_is_removed() {
    let server = RealServer::redis().await;
    // A dead instance's leftover: an open report, and a membership that
    // ran out a second ago by the store's own clock.
    let client = redis::Client::open(url(&server)).unwrap();
    let mut raw = bounded(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .unwrap();
    let (seconds, micros): (u64, u64) = bounded(
        Duration::from_secs(2),
        redis::cmd("TIME").query_async(&mut raw),
    )
    .await
    .unwrap();
    let store_ms = seconds * 1_000 + micros / 1_000;
    let leftover = serde_json::json!({
        "open_until_ms": store_ms + 60_000,
        "reason": "5 consecutive failures",
        "failures": 5,
        "calls": 5,
        "at_ms": store_ms - 20_000,
    })
    .to_string();
    let () = bounded(
        Duration::from_secs(2),
        redis::pipe()
            .cmd("HSET")
            .arg("fleet:instance:dead")
            .arg("db")
            .arg(leftover)
            .ignore()
            .cmd("ZADD")
            .arg("fleet:members")
            .arg(store_ms - 1_000)
            .arg("dead")
            .ignore()
            .query_async(&mut raw),
    )
    .await
    .unwrap();

    let a = start(&server, "fleet", "a", 1).await;
    let state = a.snapshot().breakers.get("db").cloned();
    assert!(
        state
            .as_ref()
            .is_none_or(|state| !state.is_open() && state.reporting_instances == 0),
        "a dead instance's report counted: {state:?}"
    );
    let score: Option<u64> = bounded(
        Duration::from_secs(2),
        redis::cmd("ZSCORE")
            .arg("fleet:members")
            .arg("dead")
            .query_async(&mut raw),
    )
    .await
    .unwrap();
    assert_eq!(score, None, "the dead membership was not removed");
    let alive: Option<u64> = bounded(
        Duration::from_secs(2),
        redis::cmd("ZSCORE")
            .arg("fleet:members")
            .arg("a")
            .query_async(&mut raw),
    )
    .await
    .unwrap();
    assert!(
        alive.is_some_and(|until| until > store_ms),
        "a is a member: {alive:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_degrades_loudly_without_blocking_and_recovery_resyncs() {
    let mut server = RealServer::redis().await;
    let a = start(&server, "fleet", "a", 1).await;
    let b = start(&server, "fleet", "b", 1).await;
    a.report("payments", open_report("5 consecutive failures"));
    let mut b_fleet = b.subscribe();
    wait_until(&mut b_fleet, PROPAGATION, is_open("payments"))
        .await
        .unwrap_or_else(|last| panic!("b never saw a's report: {last:?}"));

    server.stop();
    for store in [&a, &b] {
        let mut health = store.health();
        let took = wait_until(
            &mut health,
            Duration::from_secs(2),
            StoreHealth::is_degraded,
        )
        .await
        .unwrap_or_else(|last| panic!("{} not degraded: {last:?}", store.instance_id()));
        assert!(
            took < Duration::from_millis(1_500),
            "degraded after {took:?}"
        );
    }
    // The request path: neither call waits on the dead store.
    let started = Instant::now();
    a.report("search", open_report("timeouts"));
    let snapshot = b.snapshot();
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    assert!(snapshot.is_stale());
    assert!(
        snapshot.breakers["payments"].is_open(),
        "the last known state is kept, not replaced by 'no failures'"
    );
    let StoreHealth::Degraded { error, .. } = &snapshot.health else {
        panic!("expected degraded");
    };
    assert!(!error.is_empty());
    // The admin path fails, within its timeout, saying so.
    let result = bounded(
        Duration::from_secs(3),
        b.set_override(
            "payments",
            Some(Override::Reset {
                at: SystemTime::now(),
            }),
        ),
    )
    .await;
    assert!(result.is_err());

    // Redis comes back empty (no persistence): a re-publishes its reports,
    // including the one made during the outage.
    server.restart().await;
    for store in [&a, &b] {
        let mut health = store.health();
        wait_until(&mut health, Duration::from_secs(5), |health| {
            *health == StoreHealth::Connected
        })
        .await
        .unwrap_or_else(|last| panic!("{} did not reconnect: {last:?}", store.instance_id()));
    }
    wait_until(&mut b_fleet, Duration::from_secs(5), |fleet| {
        is_open("payments")(fleet) && is_open("search")(fleet)
    })
    .await
    .unwrap_or_else(|last| panic!("b never resynced a's reports: {last:?}"));
    assert!(!b.snapshot().is_stale());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_keep_two_fleets_apart() {
    let server = RealServer::redis().await;
    let blue = start(&server, "blue", "a", 1).await;
    let green = start(&server, "green", "b", 1).await;
    let green_peer = start(&server, "green", "c", 1).await;
    blue.report("payments", open_report("blue's trouble"));
    green.report(
        "payments",
        LocalReport::closed("fine", 0, 10, SystemTime::now()),
    );
    let mut peer_fleet = green_peer.subscribe();
    wait_until(&mut peer_fleet, PROPAGATION, |fleet| {
        fleet
            .get("payments")
            .is_some_and(|state| state.reporting_instances == 1)
    })
    .await
    .unwrap_or_else(|last| panic!("c never saw b's report: {last:?}"));
    // Another resync period: blue's report must still not show.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let state = green_peer.snapshot().breakers["payments"].clone();
    assert!(
        !state.is_open(),
        "blue's report leaked into green: {state:?}"
    );
    assert_eq!(state.reporting_instances, 1);
    assert!(blue.snapshot().breakers["payments"].is_open());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_started_without_redis_is_degraded_and_still_sees_its_own_reports() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let config = RedisStoreConfig::new(format!("redis://127.0.0.1:{port}/"), "fleet", "a");
    // Held as the proxy will hold it: chosen by configuration.
    let store: std::sync::Arc<dyn StateStore> =
        std::sync::Arc::new(RedisStore::start(config).unwrap());
    let mut health = store.health();
    wait_until(&mut health, Duration::from_secs(2), |health| {
        matches!(health, StoreHealth::Degraded { error, .. } if error != "not connected yet")
    })
    .await
    .unwrap_or_else(|last| panic!("the first failure was not reported: {last:?}"));
    store.report("payments", open_report("5 consecutive failures"));
    let mut fleet = store.subscribe();
    wait_until(&mut fleet, Duration::from_secs(1), is_open("payments"))
        .await
        .unwrap_or_else(|last| panic!("own report missing from the view: {last:?}"));
    let snapshot = store.snapshot();
    assert!(snapshot.is_stale());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_rejected_naming_the_key() {
    let config = RedisStoreConfig::new("redis://127.0.0.1:1/", "", "a");
    let error = RedisStore::start(config)
        .err()
        .expect("empty namespace accepted");
    assert!(error.to_string().contains("namespace"), "{error}");
    let config = RedisStoreConfig::new("not a url", "fleet", "a");
    let error = RedisStore::start(config).err().expect("bad url accepted");
    assert!(error.to_string().contains("url"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_without_an_announcement_is_healed_by_the_resync() {
    let server = RealServer::redis().await;
    let b = start(&server, "fleet", "b", 1).await;
    // Written behind the store's back, with no PUBLISH: as if the message
    // had been lost. The report and the stream entry are there; the next
    // read of the stream (each second) finds them.
    let client = redis::Client::open(url(&server)).unwrap();
    let mut raw = bounded(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .unwrap();
    let (seconds, micros): (u64, u64) = bounded(
        Duration::from_secs(2),
        redis::cmd("TIME").query_async(&mut raw),
    )
    .await
    .unwrap();
    let now_ms = seconds * 1_000 + micros / 1_000;
    let report = serde_json::json!({
        "open_until_ms": now_ms + 60_000,
        "reason": "timeouts",
        "failures": 3,
        "calls": 3,
        "at_ms": now_ms,
    })
    .to_string();
    let () = bounded(
        Duration::from_secs(2),
        redis::pipe()
            .cmd("HSET")
            .arg("fleet:instance:a")
            .arg("db")
            .arg(report)
            .ignore()
            .cmd("ZADD")
            .arg("fleet:members")
            .arg(now_ms + 10_000)
            .arg("a")
            .ignore()
            .cmd("XADD")
            .arg("fleet:changes")
            .arg("*")
            .arg("i")
            .arg("a")
            .arg("n")
            .arg("db")
            .ignore()
            .query_async(&mut raw),
    )
    .await
    .unwrap();
    let mut fleet = b.subscribe();
    wait_until(&mut fleet, PROPAGATION, is_open("db"))
        .await
        .unwrap_or_else(|last| panic!("the resync did not pick it up: {last:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_accepts_but_never_answers_degrades_the_store() {
    // Accepts connections and holds them, silent: a hung server, not a
    // dead one.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let config = RedisStoreConfig::new(format!("redis://{address}/"), "fleet", "a");
    let store = RedisStore::start(config).unwrap();
    let mut health = store.health();
    wait_until(&mut health, Duration::from_secs(3), |health| {
        matches!(health, StoreHealth::Degraded { error, .. } if error != "not connected yet")
    })
    .await
    .unwrap_or_else(|last| panic!("a hung server was not reported: {last:?}"));
    let started = Instant::now();
    store.report("payments", open_report("timeouts"));
    assert!(store.snapshot().is_stale());
    assert!(started.elapsed() < Duration::from_millis(50));
    hold.abort();
}
