//! Each layer under paused time: every breaker transition, the retry
//! rules (send phase, idempotency, budget, backoff, poison, clones only when
//! a retry may happen), a hedge that cancels the loser, and the admission
//! queue's order once a queue stands.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use levee_core::FailureKind;
use levee_core::admission::AdmissionParams;
use levee_core::breaker::BreakerParams;
use levee_core::retry::{Backoff, RetryBudgetParams};
use levee_tower::{
    AdmissionLayer, Attempt, BoxError, BreakerOpen, BudgetExhausted, CircuitBreakerLayer,
    HedgeLayer, HedgeSettings, Overloaded, RetryClassifier, RetryLayer, RetrySettings, Verdict,
};
use tokio::time::{Instant, advance, sleep};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------- breaker

fn failing_service(
    calls: Arc<AtomicU32>,
    healthy: Arc<AtomicBool>,
) -> impl Service<(), Response = u16, Error = std::io::Error, Future: Send> + Clone + Send + 'static
{
    service_fn(move |()| {
        calls.fetch_add(1, Ordering::SeqCst);
        let healthy = healthy.load(Ordering::SeqCst);
        async move { Ok::<u16, std::io::Error>(if healthy { 200 } else { 503 }) }
    })
}

fn by_status(result: &Result<u16, std::io::Error>) -> Verdict {
    match result {
        Ok(status) if *status < 500 => Verdict::Success,
        _ => Verdict::Failure,
    }
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_fails_fast_tries_again_and_closes() {
    let params = BreakerParams::builder()
        .consecutive_failures(3)
        .open_for(Duration::from_secs(5))
        .half_open_trials(2)
        .build()
        .expect("params");
    let layer = CircuitBreakerLayer::new("catalog", params, by_status);
    let calls = Arc::new(AtomicU32::new(0));
    let healthy = Arc::new(AtomicBool::new(false));
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(failing_service(Arc::clone(&calls), Arc::clone(&healthy)));
    for _ in 0..3 {
        assert_eq!(service.clone().oneshot(()).await.expect("answer"), 503);
    }
    assert!(layer.is_open());
    // Open: rejected at once, the service is not called.
    let error = service.clone().oneshot(()).await.expect_err("open");
    let open = error.downcast_ref::<BreakerOpen>().expect("BreakerOpen");
    assert_eq!((open.name.as_str(), open.state), ("catalog", "open"));
    assert_eq!(open.until, Some(Duration::from_secs(5)));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // After open_for: half-open, two trials; both succeed: closed.
    advance(Duration::from_secs(5)).await;
    healthy.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(service.clone().oneshot(()).await.expect("trial"), 200);
    }
    assert!(!layer.is_open());
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn a_failed_trial_reopens_and_a_cancelled_one_frees_its_slot() {
    let params = BreakerParams::builder()
        .consecutive_failures(1)
        .open_for(Duration::from_secs(1))
        .half_open_trials(1)
        .build()
        .expect("params");
    let layer = CircuitBreakerLayer::new("slow", params, |result: &Result<u16, std::io::Error>| {
        by_status(result)
    });
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|delay: u64| async move {
            sleep(ms(delay)).await;
            Ok::<u16, std::io::Error>(if delay == 0 { 503 } else { 200 })
        }));
    service.clone().oneshot(0).await.expect("503");
    assert!(layer.is_open());
    advance(Duration::from_secs(1)).await;
    // The one trial slot is taken by a call that is then cancelled.
    let trial = tokio::spawn(service.clone().oneshot(10_000));
    sleep(ms(1)).await;
    let busy = service.clone().oneshot(10).await.expect_err("slot taken");
    assert_eq!(
        busy.downcast_ref::<BreakerOpen>().expect("rejected").state,
        "half-open"
    );
    trial.abort();
    let _ = trial.await;
    // Its slot is free again: this trial runs, fails, and reopens.
    service.clone().oneshot(0).await.expect("trial ran");
    assert_eq!(layer.snapshot().state.as_str(), "open");
}

// ------------------------------------------------------------------ retry

/// Requests are `(method, fail_with)`; the service fails with the kind
/// named until `failures` calls have been made, then answers.
#[derive(Clone, Debug, PartialEq)]
struct Call {
    method: &'static str,
    failure: &'static str,
}

struct Classifier {
    clones: Arc<AtomicU32>,
}

impl RetryClassifier<Call, &'static str, std::io::Error> for Classifier {
    fn classify(&self, result: &Result<&'static str, std::io::Error>) -> Attempt {
        match result {
            Ok(_) => Attempt::Done,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                Attempt::not_sent(FailureKind::ConnectRefused)
            }
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                Attempt::sent_no_response(FailureKind::Timeout)
            }
            Err(_) => Attempt::sent_no_response(FailureKind::ResetBeforeResponse),
        }
    }

    fn is_idempotent(&self, request: &Call) -> bool {
        matches!(request.method, "GET" | "PUT")
    }

    fn clone_request(&self, request: &Call) -> Option<Call> {
        self.clones.fetch_add(1, Ordering::SeqCst);
        Some(request.clone())
    }
}

/// A service failing its first `failures` calls as each request says.
fn flaky(
    failures: u32,
    calls: Arc<AtomicU32>,
) -> impl Service<Call, Response = &'static str, Error = std::io::Error, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(move |call: Call| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n > failures {
                return Ok("done");
            }
            let kind = match call.failure {
                "refused" => std::io::ErrorKind::ConnectionRefused,
                "timeout" => std::io::ErrorKind::TimedOut,
                _ => std::io::ErrorKind::ConnectionReset,
            };
            Err(std::io::Error::new(kind, call.failure))
        }
    })
}

fn settings(max_attempts: u32, percent: u32, min_per_second: u32) -> RetrySettings {
    RetrySettings {
        max_attempts,
        budget: RetryBudgetParams::new(percent, min_per_second, Duration::from_secs(10))
            .expect("budget"),
        backoff: Backoff::new(ms(100), ms(100)).expect("backoff"),
    }
}

async fn call(
    settings: RetrySettings,
    failures: u32,
    request: Call,
) -> (Result<&'static str, BoxError>, u32, u32, Duration) {
    let calls = Arc::new(AtomicU32::new(0));
    let clones = Arc::new(AtomicU32::new(0));
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(
            settings,
            Classifier {
                clones: Arc::clone(&clones),
            },
        ))
        .service(flaky(failures, Arc::clone(&calls)));
    let start = Instant::now();
    let result = service.oneshot(request).await;
    (
        result,
        calls.load(Ordering::SeqCst),
        clones.load(Ordering::SeqCst),
        start.elapsed(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_call_that_never_reached_the_service_is_retried_whatever_the_method() {
    let post = Call {
        method: "POST",
        failure: "refused",
    };
    let (result, calls, _, took) = call(settings(3, 20, 10), 2, post).await;
    assert_eq!(result.expect("third attempt"), "done");
    assert_eq!(calls, 3);
    // Two backoffs of at most 100 ms (full jitter).
    assert!(took <= ms(200), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_post_that_may_have_been_acted_on_is_never_repeated_a_get_is() {
    let post = Call {
        method: "POST",
        failure: "timeout",
    };
    let (result, calls, _, _) = call(settings(3, 20, 10), 1, post).await;
    let error = result.expect_err("not retried");
    assert_eq!(error.to_string(), "timeout");
    assert_eq!(calls, 1);
    let get = Call {
        method: "GET",
        failure: "timeout",
    };
    let (result, calls, _, _) = call(settings(3, 20, 10), 1, get).await;
    assert_eq!((result.expect("retried"), calls), ("done", 2));
}

#[tokio::test(start_paused = true)]
async fn attempts_stop_at_max_attempts_and_the_same_failure_twice_is_poison() {
    let refused = Call {
        method: "GET",
        failure: "refused",
    };
    let (result, calls, clones, _) = call(settings(3, 20, 10), 10, refused).await;
    assert!(result.is_err());
    assert_eq!(calls, 3);
    // No copy for the last allowed attempt.
    assert_eq!(clones, 2);
    // A reset twice (sent, no answer) is the request's fault: stop at 2.
    let reset = Call {
        method: "GET",
        failure: "reset",
    };
    let (result, calls, _, _) = call(settings(5, 20, 10), 10, reset).await;
    assert!(result.is_err());
    assert_eq!(calls, 2);
}

#[tokio::test(start_paused = true)]
async fn an_empty_budget_means_no_retry_no_clone_and_says_so() {
    let refused = Call {
        method: "GET",
        failure: "refused",
    };
    let (result, calls, clones, _) = call(settings(3, 0, 0), 10, refused).await;
    let error = result.expect_err("budget exhausted");
    let exhausted = error
        .downcast_ref::<BudgetExhausted>()
        .expect("BudgetExhausted");
    assert_eq!(exhausted.attempts, 1);
    assert_eq!((calls, clones), (1, 0));
    // max_attempts = 1: never a copy.
    let (_, calls, clones, _) = call(
        settings(1, 20, 10),
        10,
        Call {
            method: "GET",
            failure: "refused",
        },
    )
    .await;
    assert_eq!((calls, clones), (1, 0));
}

// ------------------------------------------------------------------ hedge

#[tokio::test(start_paused = true)]
async fn a_slow_call_is_hedged_and_the_loser_is_cancelled() {
    let settings = HedgeSettings {
        floor: ms(10),
        ceiling: ms(50),
        ..HedgeSettings::default()
    };
    let calls = Arc::new(AtomicU32::new(0));
    let cancelled = Arc::new(AtomicBool::new(false));
    let service = {
        let calls = Arc::clone(&calls);
        let cancelled = Arc::clone(&cancelled);
        ServiceBuilder::new()
            .layer(HedgeLayer::new(settings, |request: &u32| Some(*request)))
            .service(service_fn(move |_: u32| {
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                let cancelled = Arc::clone(&cancelled);
                async move {
                    struct Flag(Arc<AtomicBool>, bool);
                    impl Drop for Flag {
                        fn drop(&mut self) {
                            if self.1 {
                                self.0.store(true, Ordering::SeqCst);
                            }
                        }
                    }
                    let mut flag = Flag(cancelled, first);
                    sleep(if first {
                        Duration::from_secs(10)
                    } else {
                        ms(5)
                    })
                    .await;
                    flag.1 = false;
                    Ok::<_, std::io::Error>(if first { "slow" } else { "hedge" })
                }
            }))
    };
    let start = Instant::now();
    assert_eq!(service.oneshot(1).await.expect("answer"), "hedge");
    // No latencies yet: hedged at the ceiling (50 ms), answered 5 ms later.
    assert_eq!(start.elapsed(), ms(55));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(
        cancelled.load(Ordering::SeqCst),
        "the slow copy was dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn without_budget_or_a_copy_nothing_is_hedged() {
    let settings = HedgeSettings {
        ceiling: ms(20),
        budget: RetryBudgetParams::new(0, 0, Duration::from_secs(10)).expect("budget"),
        ..HedgeSettings::default()
    };
    for (settings, copy) in [
        (settings, true),
        (
            HedgeSettings {
                ceiling: ms(20),
                ..HedgeSettings::default()
            },
            false,
        ),
    ] {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&calls);
        let service = ServiceBuilder::new()
            .layer(HedgeLayer::new(settings, move |request: &u32| {
                copy.then_some(*request)
            }))
            .service(service_fn(move |_: u32| {
                counted.fetch_add(1, Ordering::SeqCst);
                async {
                    sleep(ms(100)).await;
                    Ok::<_, std::io::Error>("only")
                }
            }));
        assert_eq!(service.oneshot(1).await.expect("answer"), "only");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "copy: {copy}");
    }
}

// -------------------------------------------------------------- admission

#[tokio::test(start_paused = true)]
async fn past_the_limit_calls_queue_then_are_shed_and_a_standing_queue_serves_the_newest() {
    let params = AdmissionParams::builder()
        .max_concurrency(1)
        .max_queue(3)
        .queue_timeout(Duration::from_secs(10))
        .codel_target(ms(5))
        .codel_interval(ms(100))
        .build()
        .expect("params");
    let layer = AdmissionLayer::new(params);
    let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let service = {
        let order = Arc::clone(&order);
        ServiceBuilder::new()
            .layer(layer.clone())
            .service(service_fn(move |n: u32| {
                order.lock().push(n);
                async move {
                    sleep(if n == 0 { ms(100) } else { ms(10) }).await;
                    Ok::<_, std::io::Error>(n)
                }
            }))
    };
    let t0 = Instant::now();
    let holder = tokio::spawn(service.clone().oneshot(0));
    tokio::task::yield_now().await;
    // Waiter 1 keeps the queue non-empty from t0; 2 and 3 arrive just
    // before the holder is done, once the queue has stood for ~100 ms.
    let oldest = tokio::spawn(service.clone().oneshot(1));
    tokio::task::yield_now().await;
    tokio::time::sleep_until(t0 + ms(97)).await;
    let older = tokio::spawn(service.clone().oneshot(2));
    tokio::time::sleep_until(t0 + ms(98)).await;
    let newest = tokio::spawn(service.clone().oneshot(3));
    tokio::time::sleep_until(t0 + ms(99)).await;
    assert_eq!((layer.in_flight(), layer.queued()), (1, 3));
    // The queue is full: shed at once, with a Retry-After.
    let shed = service.clone().oneshot(9).await.expect_err("shed");
    let overloaded = shed.downcast_ref::<Overloaded>().expect("Overloaded");
    assert!(overloaded.reason.contains("queue"), "{overloaded:?}");
    assert!(overloaded.retry_after > Duration::ZERO);
    holder.await.expect("task").expect("served");
    // A standing queue: the newest waiter got the slot; the older ones
    // waited past their controlled-delay deadline and were shed.
    assert_eq!(newest.await.expect("task").expect("served"), 3);
    for waiter in [oldest, older] {
        let error = waiter.await.expect("task").expect_err("shed");
        assert!(error.downcast_ref::<Overloaded>().is_some(), "{error}");
    }
    assert_eq!(*order.lock(), [0, 3]);
}

// ------------------------------------------------------------------ fleet

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_breaker_opens_for_every_instance_once_the_quorum_sees_failures() {
    use levee_store::{FleetBreaker, FleetRules, MemoryStore};

    let params = BreakerParams::builder()
        .consecutive_failures(2)
        .open_for(Duration::from_secs(30))
        .build()
        .expect("params");
    let store_a = MemoryStore::new("a", FleetRules::new().with_quorum(2).expect("quorum"));
    let store_b = store_a.as_instance("b");
    let layer = |store: MemoryStore| {
        CircuitBreakerLayer::fleet(
            FleetBreaker::new("payments", params.clone(), Arc::new(store)),
            by_status,
        )
    };
    let (a, b) = (layer(store_a), layer(store_b));
    let calls = Arc::new(AtomicU32::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let service_a = ServiceBuilder::new()
        .layer(a.clone())
        .service(failing_service(Arc::clone(&calls), Arc::clone(&down)));
    let service_b = ServiceBuilder::new()
        .layer(b.clone())
        .service(failing_service(Arc::clone(&calls), Arc::clone(&down)));
    for _ in 0..2 {
        service_a.clone().oneshot(()).await.expect("503");
    }
    // A alone is below the quorum: B still calls.
    tokio::time::sleep(ms(200)).await;
    assert!(!b.is_open());
    for _ in 0..2 {
        service_b.clone().oneshot(()).await.expect("503");
    }
    // Both saw it: open for both (the store's follower applies it).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(a.is_open() && b.is_open()) && Instant::now() < deadline {
        tokio::time::sleep(ms(20)).await;
    }
    assert!(a.is_open() && b.is_open());
    let before = calls.load(Ordering::SeqCst);
    let error = service_b.clone().oneshot(()).await.expect_err("open");
    assert!(error.downcast_ref::<BreakerOpen>().is_some());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "not called while open"
    );
}
