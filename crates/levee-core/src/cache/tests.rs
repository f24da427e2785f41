//! The cache's rules, each walked under paused time.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, advance, sleep};

use super::*;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Boom;

impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("origin exploded")
    }
}

impl std::error::Error for Boom {}

type Cache = RefreshingCache<String, String>;
type Got = (Result<Served<String>, CacheError>, Duration);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn key() -> String {
    "/a".to_owned()
}

/// TTL 10 s, no stale windows, 10 s fill wait, 1 MiB.
fn params() -> CacheParamsBuilder {
    CacheParams::builder()
        .default_ttl(secs(10))
        .max_size(1 << 20)
}

fn cache(params: CacheParamsBuilder) -> Cache {
    RefreshingCache::new(
        params.build().expect("valid params"),
        |k: &String, v: &String| (k.len() + v.len()) as u64,
    )
}

/// What the fake origin's loaders return.
type Load = Pin<Box<dyn Future<Output = Result<Loaded<String>, Boom>> + Send>>;

/// A fake origin whose loaders count their calls: a call is counted when the
/// cache invokes the loader, not when a caller merely offers one.
#[derive(Clone, Default)]
struct Origin {
    calls: Arc<AtomicUsize>,
}

impl Origin {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// A loader that answers `result` after `delay`.
    fn respond(
        &self,
        delay: Duration,
        result: Result<Loaded<String>, Boom>,
    ) -> impl FnOnce() -> Load + Send + 'static {
        let calls = self.calls.clone();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                sleep(delay).await;
                result
            })
        }
    }

    /// A loader that answers `value` after `delay`.
    fn ok(&self, value: &str, delay: Duration) -> impl FnOnce() -> Load + Send + 'static {
        self.respond(delay, Ok(Loaded::new(value.to_owned())))
    }

    /// A loader that fails after `delay`.
    fn fail(&self, delay: Duration) -> impl FnOnce() -> Load + Send + 'static {
        self.respond(delay, Err(Boom))
    }

    /// A loader that answers `value` once `gate` opens.
    fn gated(
        &self,
        value: &str,
        gate: oneshot::Receiver<()>,
    ) -> impl FnOnce() -> Load + Send + 'static {
        let calls = self.calls.clone();
        let value = value.to_owned();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let _ = gate.await;
                Ok(Loaded::new(value))
            })
        }
    }
}

/// A `get` in its own task, timed.
fn spawn_get(cache: &Cache, loader: impl FnOnce() -> Load + Send + 'static) -> JoinHandle<Got> {
    let cache = cache.clone();
    tokio::spawn(async move {
        let start = Instant::now();
        let got = cache.get(key(), loader).await;
        (got, start.elapsed())
    })
}

fn served(got: Result<Served<String>, CacheError>) -> (String, CacheStatus) {
    let served = got.expect("a value");
    (served.value, served.status)
}

fn pair(value: &str, status: CacheStatus) -> (String, CacheStatus) {
    (value.to_owned(), status)
}

/// Lets spawned gets and fills run up to their next wait.
async fn settle() {
    sleep(ms(1)).await;
}

#[tokio::test(start_paused = true)]
async fn fresh_value_is_a_hit_without_a_load() {
    let cache = cache(params());
    let origin = Origin::default();
    let first = cache.get(key(), origin.ok("v1", ms(100))).await;
    assert_eq!(served(first), pair("v1", CacheStatus::Miss));
    advance(secs(9)).await;
    let second = cache.get(key(), origin.ok("v2", ms(100))).await;
    assert_eq!(served(second), pair("v1", CacheStatus::Hit));
    assert_eq!(origin.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_make_one_load_and_share_the_value() {
    let cache = cache(params());
    let origin = Origin::default();
    let gets: Vec<_> = (0..10)
        .map(|i| spawn_get(&cache, origin.ok(&format!("v{i}"), ms(300))))
        .collect();
    // Every caller offered a loader; only the first one's was called.
    for get in gets {
        let (got, waited) = get.await.expect("no panic");
        assert_eq!(served(got), pair("v0", CacheStatus::Miss));
        assert_eq!(waited, ms(300));
    }
    assert_eq!(cache.stats().loads, 1);
    assert_eq!(cache.stats().misses, 10);
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_share_the_loader_error() {
    let cache = cache(params());
    let origin = Origin::default();
    let gets: Vec<_> = (0..5)
        .map(|_| spawn_get(&cache, origin.fail(ms(100))))
        .collect();
    for get in gets {
        match get.await.expect("no panic").0 {
            Err(CacheError::Load(error)) => assert_eq!(error.downcast_ref::<Boom>(), Some(&Boom)),
            other => panic!("expected the shared load error, got {other:?}"),
        }
    }
    let stats = cache.stats();
    assert_eq!((stats.loads, stats.load_errors, stats.entries), (1, 1, 0));
    // A failure is not cached: the next get loads again.
    let again = cache.get(key(), origin.ok("v1", ms(1))).await;
    assert_eq!(served(again), pair("v1", CacheStatus::Miss));
    assert_eq!(cache.stats().loads, 2);
}

#[tokio::test(start_paused = true)]
async fn waiters_give_up_after_fill_wait_and_the_fill_still_stores() {
    let cache = cache(params().fill_wait(secs(1)));
    let origin = Origin::default();
    let gets: Vec<_> = (0..3)
        .map(|_| spawn_get(&cache, origin.ok("slow", secs(5))))
        .collect();
    let mut timed_out = 0;
    let mut answered = 0;
    for get in gets {
        let (got, waited) = get.await.expect("no panic");
        match got {
            // The caller whose load it is waits for it whole.
            Ok(served) => {
                assert_eq!(served.status, CacheStatus::Miss);
                assert_eq!(waited, secs(5));
                answered += 1;
            }
            Err(CacheError::FillTimeout { waited: limit }) => {
                assert_eq!((limit, waited), (secs(1), secs(1)));
                timed_out += 1;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!((answered, timed_out), (1, 2));
    assert_eq!(cache.stats().fill_timeouts, 2);
    sleep(secs(5)).await;
    let later = cache.get(key(), origin.ok("other", ms(1))).await;
    assert_eq!(served(later), pair("slow", CacheStatus::Hit));
    assert_eq!(origin.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn stale_within_swr_is_served_at_once_with_one_background_refresh() {
    let cache = cache(params().stale_while_revalidate(secs(30)));
    let origin = Origin::default();
    cache
        .get(key(), origin.ok("v1", ms(10)))
        .await
        .expect("filled");
    advance(secs(15)).await;
    for _ in 0..5 {
        let start = Instant::now();
        let got = cache.get(key(), origin.ok("v2", ms(500))).await;
        assert_eq!(served(got), pair("v1", CacheStatus::Stale));
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
    assert_eq!(origin.calls(), 2, "one fill, one refresh");
    // Just past the refresh's 500 ms (at exactly 500 ms both wake together).
    sleep(ms(501)).await;
    let refreshed = cache.get(key(), origin.ok("v3", ms(10))).await;
    assert_eq!(served(refreshed), pair("v2", CacheStatus::Hit));
    assert_eq!(origin.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn failed_background_refresh_keeps_the_stale_value() {
    let cache = cache(params().stale_while_revalidate(secs(30)));
    let origin = Origin::default();
    cache
        .get(key(), origin.ok("v1", ms(10)))
        .await
        .expect("filled");
    advance(secs(15)).await;
    let got = cache.get(key(), origin.fail(ms(100))).await;
    assert_eq!(served(got), pair("v1", CacheStatus::Stale));
    sleep(ms(200)).await;
    assert_eq!(cache.stats().load_errors, 1);
    // Still stale: the next get serves it, but the failing origin is not
    // asked again until the refresh's back-off (500 ms) has passed.
    let got = cache.get(key(), origin.ok("v2", ms(100))).await;
    assert_eq!(served(got), pair("v1", CacheStatus::Stale));
    assert_eq!(origin.calls(), 2, "backing off");
    sleep(ms(500)).await;
    let got = cache.get(key(), origin.ok("v2", ms(100))).await;
    assert_eq!(served(got), pair("v1", CacheStatus::Stale));
    assert_eq!(origin.calls(), 3, "one refresh once the back-off is over");
    sleep(ms(200)).await;
    let got = cache.get(key(), origin.ok("v3", ms(100))).await;
    assert_eq!(served(got), pair("v2", CacheStatus::Hit));
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_serves_the_old_value_when_the_load_fails() {
    let cache = cache(params().stale_if_error(secs(60)));
    let origin = Origin::default();
    cache
        .get(key(), origin.ok("v1", ms(10)))
        .await
        .expect("filled");
    advance(secs(20)).await;
    let start = Instant::now();
    let got = cache.get(key(), origin.fail(ms(200))).await;
    assert_eq!(served(got), pair("v1", CacheStatus::Stale));
    assert_eq!(start.elapsed(), ms(200), "it tried the loader first");
    let stats = cache.stats();
    assert_eq!((stats.load_errors, stats.stale), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_serves_the_old_value_when_the_load_is_too_slow() {
    let cache = cache(params().stale_if_error(secs(60)).fill_wait(secs(1)));
    let origin = Origin::default();
    cache
        .get(key(), origin.ok("v1", ms(10)))
        .await
        .expect("filled");
    advance(secs(20)).await;
    let start = Instant::now();
    let got = cache.get(key(), origin.ok("v2", secs(5))).await;
    assert_eq!(served(got), pair("v1", CacheStatus::Stale));
    assert_eq!(start.elapsed(), secs(1));
    sleep(secs(5)).await;
    let got = cache.get(key(), origin.ok("v3", ms(10))).await;
    assert_eq!(served(got), pair("v2", CacheStatus::Hit));
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_window_stores_a_successful_load_as_a_miss() {
    let cache = cache(params().stale_if_error(secs(60)));
    let origin = Origin::default();
    cache
        .get(key(), origin.ok("v1", ms(10)))
        .await
        .expect("filled");
    advance(secs(20)).await;
    let got = cache.get(key(), origin.ok("v2", ms(10))).await;
    assert_eq!(served(got), pair("v2", CacheStatus::Miss));
    let got = cache.get(key(), origin.ok("v3", ms(10))).await;
    assert_eq!(served(got), pair("v2", CacheStatus::Hit));
}

#[tokio::test(start_paused = true)]
async fn expired_past_every_window_behaves_as_missing() {
    let cache = cache(
        params()
            .stale_while_revalidate(secs(5))
            .stale_if_error(secs(20)),
    );
    let origin = Origin::default();
    cache
        .get(key(), origin.ok("v1", ms(10)))
        .await
        .expect("filled");
    advance(secs(31)).await;
    match cache.get(key(), origin.fail(ms(10))).await {
        Err(CacheError::Load(_)) => {}
        other => panic!("expected a load error, got {other:?}"),
    }
    assert_eq!(cache.stats().entries, 0, "the expired entry is gone");
}

#[tokio::test(start_paused = true)]
async fn loaded_lifetime_overrides_the_defaults() {
    let cache = cache(params().stale_while_revalidate(secs(30)));
    let origin = Origin::default();
    let short = Loaded::new("v1".to_owned())
        .ttl(secs(1))
        .stale_while_revalidate(Duration::ZERO);
    cache
        .get(key(), origin.respond(ms(10), Ok(short)))
        .await
        .expect("filled");
    advance(secs(2)).await;
    // Past its own 1 s TTL with no SWR of its own: a plain miss.
    let got = cache.get(key(), origin.ok("v2", ms(10))).await;
    assert_eq!(served(got), pair("v2", CacheStatus::Miss));
    // v2 took the defaults: fresh for 10 s.
    advance(secs(9)).await;
    let got = cache.get(key(), origin.ok("v3", ms(10))).await;
    assert_eq!(served(got), pair("v2", CacheStatus::Hit));
}

#[tokio::test(start_paused = true)]
async fn purge_during_a_fill_is_not_undone_by_the_fill() {
    let cache = cache(params());
    let origin = Origin::default();
    let (open_old, gate_old) = oneshot::channel();
    let old = spawn_get(&cache, origin.gated("old", gate_old));
    settle().await;
    // The purge lands while the old fill is in flight.
    assert!(!cache.invalidate(&key()), "nothing stored yet");
    // A get after the purge does not join the detached fill.
    let (open_new, gate_new) = oneshot::channel();
    let new = spawn_get(&cache, origin.gated("new", gate_new));
    settle().await;
    assert_eq!(origin.calls(), 2);

    open_old.send(()).expect("fill waiting");
    let (got, _) = old.await.expect("no panic");
    assert_eq!(
        served(got),
        pair("old", CacheStatus::Miss),
        "its caller still gets it"
    );
    assert_eq!(cache.generation(&key()), None, "but it was not stored");

    open_new.send(()).expect("fill waiting");
    let (got, _) = new.await.expect("no panic");
    assert_eq!(served(got), pair("new", CacheStatus::Miss));
    let got = cache.get(key(), origin.ok("unused", ms(1))).await;
    assert_eq!(served(got), pair("new", CacheStatus::Hit));
}

#[tokio::test(start_paused = true)]
async fn a_fill_detached_by_a_purge_cannot_overwrite_a_later_fill() {
    let cache = cache(params());
    let origin = Origin::default();
    let (open_old, gate_old) = oneshot::channel();
    let old = spawn_get(&cache, origin.gated("old", gate_old));
    settle().await;
    cache.invalidate(&key());
    let (open_new, gate_new) = oneshot::channel();
    let new = spawn_get(&cache, origin.gated("new", gate_new));
    settle().await;

    // This time the newer fill finishes first.
    open_new.send(()).expect("fill waiting");
    new.await.expect("no panic").0.expect("a value");
    let stored = cache.generation(&key()).expect("stored");
    open_old.send(()).expect("fill waiting");
    old.await.expect("no panic").0.expect("a value");
    assert_eq!(cache.generation(&key()), Some(stored));
    let got = cache.get(key(), origin.ok("unused", ms(1))).await;
    assert_eq!(served(got), pair("new", CacheStatus::Hit));
}

#[tokio::test(start_paused = true)]
async fn purge_if_generation_spares_a_newer_value() {
    let cache = cache(params().stale_while_revalidate(secs(30)));
    let origin = Origin::default();
    cache
        .get(key(), origin.ok("v1", ms(10)))
        .await
        .expect("filled");
    let g1 = cache.generation(&key()).expect("stored");
    advance(secs(15)).await;
    // A background refresh stores v2 before the purge aimed at v1 arrives.
    cache
        .get(key(), origin.ok("v2", ms(100)))
        .await
        .expect("stale");
    sleep(ms(200)).await;
    let g2 = cache.generation(&key()).expect("refreshed");
    assert!(g2 > g1);
    assert!(!cache.purge_if_generation(&key(), g1));
    let got = cache.get(key(), origin.ok("v3", ms(10))).await;
    assert_eq!(served(got), pair("v2", CacheStatus::Hit));
    assert!(cache.purge_if_generation(&key(), g2));
    assert_eq!(cache.generation(&key()), None);
}

#[tokio::test(start_paused = true)]
async fn invalidate_prefix_removes_matching_keys_only() {
    let cache = cache(params());
    let origin = Origin::default();
    for path in ["/img/a", "/img/b", "/api/a"] {
        cache
            .get(path.to_owned(), origin.ok(path, ms(1)))
            .await
            .expect("filled");
    }
    assert_eq!(cache.invalidate_prefix("/img/"), 2);
    assert_eq!(cache.stats().entries, 1);
    let got = cache.get("/api/a".to_owned(), origin.ok("x", ms(1))).await;
    assert_eq!(served(got).1, CacheStatus::Hit);
    let got = cache.get("/img/a".to_owned(), origin.ok("x", ms(1))).await;
    assert_eq!(served(got).1, CacheStatus::Miss);
}

#[tokio::test(start_paused = true)]
async fn eviction_keeps_weight_within_max_size() {
    // Each entry weighs 3 (key) + 27 (value) = 30.
    let cache = cache(params().max_size(100));
    let origin = Origin::default();
    let value = "x".repeat(27);
    for i in 0..20 {
        let key = format!("k{i:02}");
        cache
            .get(key.clone(), origin.ok(&value, ms(1)))
            .await
            .expect("filled");
        assert!(
            cache.stats().weight <= 100,
            "weight {}",
            cache.stats().weight
        );
    }
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.weight, stats.evictions), (3, 90, 17));
    // The most recent keys survived.
    let got = cache.get("k19".to_owned(), origin.ok("y", ms(1))).await;
    assert_eq!(served(got).1, CacheStatus::Hit);
}

#[tokio::test(start_paused = true)]
async fn oversized_value_is_served_but_not_stored() {
    let cache = cache(params().max_size(10));
    let origin = Origin::default();
    let got = cache.get(key(), origin.ok("far too heavy", ms(1))).await;
    assert_eq!(served(got), pair("far too heavy", CacheStatus::Miss));
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.weight, stats.oversized), (0, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn panicking_loader_abandons_the_fill_without_wedging_the_key() {
    let cache = cache(params());
    let origin = Origin::default();
    let got = cache
        .get(key(), || async {
            sleep(ms(10)).await;
            panic!("loader bug");
            #[allow(unreachable_code)]
            Ok::<_, Boom>(Loaded::new(String::new()))
        })
        .await;
    assert!(matches!(got, Err(CacheError::FillAbandoned)), "{got:?}");
    let got = cache.get(key(), origin.ok("v1", ms(10))).await;
    assert_eq!(served(got), pair("v1", CacheStatus::Miss));
}

#[tokio::test(start_paused = true)]
async fn stats_count_every_outcome() {
    let cache = cache(params().stale_while_revalidate(secs(30)));
    let origin = Origin::default();
    cache
        .get(key(), origin.ok("v1", ms(10)))
        .await
        .expect("miss");
    cache
        .get(key(), origin.ok("v1", ms(10)))
        .await
        .expect("hit");
    advance(secs(15)).await;
    cache.get(key(), origin.fail(ms(10))).await.expect("stale");
    sleep(ms(20)).await;
    let stats = cache.stats();
    assert_eq!(
        stats,
        CacheStats {
            hits: 1,
            misses: 1,
            stale: 1,
            loads: 2,
            load_errors: 1,
            fill_timeouts: 0,
            evictions: 0,
            oversized: 0,
            entries: 1,
            weight: 4,
        }
    );
}

/// The acceptance scenario of issue 7: 200 concurrent gets for one expired
/// key while the loader takes 1.5 s.
#[tokio::test(start_paused = true)]
async fn stampede_on_an_expired_key_makes_one_load() {
    let cache = cache(params());
    let origin = Origin::default();
    cache
        .get(key(), origin.ok("v1", ms(10)))
        .await
        .expect("filled");
    advance(secs(11)).await;
    let gets: Vec<_> = (0..200)
        .map(|_| spawn_get(&cache, origin.ok("v2", ms(1500))))
        .collect();
    for get in gets {
        let (got, waited) = get.await.expect("no panic");
        assert_eq!(served(got), pair("v2", CacheStatus::Miss));
        assert_eq!(waited, ms(1500));
    }
    assert_eq!(origin.calls(), 2, "the first fill and one refill");
    assert_eq!(cache.stats().loads, 2);
}

#[tokio::test(start_paused = true)]
async fn stampede_with_swr_serves_everyone_stale_at_once() {
    let cache = cache(params().stale_while_revalidate(secs(30)));
    let origin = Origin::default();
    cache
        .get(key(), origin.ok("v1", ms(10)))
        .await
        .expect("filled");
    advance(secs(11)).await;
    let gets: Vec<_> = (0..200)
        .map(|_| spawn_get(&cache, origin.ok("v2", ms(1500))))
        .collect();
    for get in gets {
        let (got, waited) = get.await.expect("no panic");
        assert_eq!(served(got), pair("v1", CacheStatus::Stale));
        assert_eq!(waited, Duration::ZERO);
    }
    assert_eq!(origin.calls(), 2, "the first fill and one refresh");
    sleep(ms(1501)).await;
    let got = cache.get(key(), origin.ok("v3", ms(10))).await;
    assert_eq!(served(got), pair("v2", CacheStatus::Hit));
}

#[tokio::test(start_paused = true)]
async fn a_value_kept_for_revalidation_is_handed_to_the_next_load_never_served() {
    let cache = cache(params().stale_while_revalidate(secs(5)));
    let first = cache
        .get(key(), || async {
            Ok::<_, Boom>(Loaded::new("v1".to_owned()).keep_for_revalidation(secs(60)))
        })
        .await;
    assert_eq!(served(first), pair("v1", CacheStatus::Miss));
    // Within stale-while-revalidate the background refresh sees it too.
    advance(secs(12)).await;
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let record = |seen: &Arc<parking_lot::Mutex<Vec<Option<String>>>>, answer: &'static str| {
        let seen = seen.clone();
        move |previous: Option<String>| {
            seen.lock().push(previous);
            async move { Ok::<_, Boom>(Loaded::new(answer.to_owned()).keep_for_revalidation(secs(60))) }
        }
    };
    let stale = cache.get_with(key(), record(&seen, "v2")).await;
    assert_eq!(served(stale), pair("v1", CacheStatus::Stale));
    settle().await;
    // Past the TTL and the window (10 + 5 s) but within the 60 s kept: a
    // load, given the old value; the caller waits for it.
    advance(secs(20)).await;
    let reloaded = cache.get_with(key(), record(&seen, "v3")).await;
    assert_eq!(served(reloaded), pair("v3", CacheStatus::Miss));
    // Past the kept time too: nothing to hand over.
    advance(secs(80)).await;
    let fresh = cache.get_with(key(), record(&seen, "v4")).await;
    assert_eq!(served(fresh), pair("v4", CacheStatus::Miss));
    assert_eq!(
        *seen.lock(),
        vec![Some("v1".to_owned()), Some("v2".to_owned()), None]
    );
}
