use super::*;
use crate::outcome::{EndpointId, FailureKind};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn status(endpoint: usize, code: u16) -> Outcome {
    Outcome::response(EndpointId(endpoint), code, 10 * MS)
}

fn slow(endpoint: usize, latency: Duration) -> Outcome {
    Outcome::response(EndpointId(endpoint), 200, latency)
}

fn failed(endpoint: usize, kind: FailureKind) -> Outcome {
    Outcome::failure(EndpointId(endpoint), kind, 10 * MS)
}

/// Only the consecutive-failure rule, 10 s base ejection, 50% cap.
fn consecutive_only() -> OutlierParams {
    OutlierParams::builder()
        .failure_rate(None)
        .latency_factor(None)
        .build()
        .expect("valid")
}

/// Record `count` copies of `outcome`; the ejections they caused.
fn feed(
    detector: &mut OutlierDetector,
    outcome: &Outcome,
    count: usize,
    now: Instant,
) -> Vec<Ejection> {
    (0..count)
        .filter_map(|_| detector.record(outcome, now))
        .collect()
}

#[test]
fn consecutive_failures_eject_at_exactly_the_threshold() {
    let now = Instant::now();
    let mut detector = OutlierDetector::new(consecutive_only(), 3, now);
    assert!(feed(&mut detector, &status(0, 503), 4, now).is_empty());
    assert!(!detector.is_ejected(0, now));
    let ejection = detector.record(&status(0, 503), now).expect("fifth 503");
    assert_eq!(ejection.endpoint, 0);
    assert_eq!(
        ejection.to_string(),
        "endpoint 0 ejected for 10s (ejection #1): 5 consecutive gateway failures"
    );
    assert_eq!(ejection.duration, 10 * SEC);
    assert_eq!(ejection.until, now + 10 * SEC);
    assert_eq!(ejection.count, 1);
    assert!(detector.is_ejected(0, now));
    assert!(!detector.is_ejected(1, now));
    let (until, reason) = detector.ejected_until(0).expect("ejected");
    assert_eq!(until, now + 10 * SEC);
    assert_eq!(reason.as_str(), "consecutive-failures");
    assert_eq!(detector.ejection_count(0), 1);
}

#[test]
fn a_404_storm_never_ejects() {
    let now = Instant::now();
    let mut detector = OutlierDetector::new(OutlierParams::default(), 3, now);
    for code in [404, 400, 429] {
        assert!(feed(&mut detector, &status(0, code), 1000, now).is_empty());
    }
    let (ejections, _) = detector.tick(now + SEC);
    assert!(ejections.is_empty());
    assert!(!detector.is_ejected(0, now + SEC));
}

#[test]
fn a_success_breaks_the_streak_and_neutral_outcomes_do_not() {
    let now = Instant::now();
    let mut detector = OutlierDetector::new(consecutive_only(), 3, now);
    let refused = failed(0, FailureKind::ConnectRefused);
    feed(&mut detector, &refused, 4, now);
    detector.record(&status(0, 200), now);
    assert!(feed(&mut detector, &refused, 4, now).is_empty());
    // The client hanging up says nothing about the node, either way.
    detector.record(&failed(0, FailureKind::ClientBody), now);
    detector.record(&failed(0, FailureKind::Other), now);
    let ejection = detector.record(&refused, now).expect("fifth in a row");
    assert_eq!(
        ejection.reason.to_string(),
        "5 consecutive connect failures"
    );
}

#[test]
fn a_mixed_streak_is_called_failures() {
    let now = Instant::now();
    let mut detector = OutlierDetector::new(consecutive_only(), 3, now);
    feed(&mut detector, &failed(1, FailureKind::Timeout), 4, now);
    let ejection = detector.record(&status(1, 502), now).expect("ejected");
    assert_eq!(ejection.reason.to_string(), "5 consecutive failures");
}

#[test]
fn other_5xx_count_only_when_configured() {
    let now = Instant::now();
    let quiet = OutlierParams::builder()
        .failure_rate(None)
        .count_other_5xx(false)
        .build()
        .expect("valid");
    let mut detector = OutlierDetector::new(quiet, 3, now);
    assert!(feed(&mut detector, &status(0, 500), 50, now).is_empty());
    let mut detector = OutlierDetector::new(consecutive_only(), 3, now);
    let ejection = feed(&mut detector, &status(0, 500), 5, now);
    assert_eq!(
        ejection[0].reason.to_string(),
        "5 consecutive server errors"
    );
}

fn rate_only(min_requests: u32) -> OutlierParams {
    OutlierParams::builder()
        .consecutive_failures(0)
        .failure_rate(Some(0.5))
        .min_requests(min_requests)
        .latency_factor(None)
        .build()
        .expect("valid")
}

#[test]
fn failure_rate_ejects_once_the_volume_is_reached() {
    let start = Instant::now();
    let mut detector = OutlierDetector::new(rate_only(20), 3, start);
    // Every other request fails: never two in a row, but 50%.
    for i in 0..19 {
        let now = start + i * 100 * MS;
        let outcome = if i % 2 == 0 {
            status(0, 503)
        } else {
            status(0, 200)
        };
        assert_eq!(detector.record(&outcome, now), None, "request {i}");
    }
    let stats = detector.stats(0, start + 2 * SEC).expect("endpoint");
    assert_eq!((stats.requests, stats.failures), (19, 10));
    // The 20th request is a success: a success never ejects.
    assert_eq!(detector.record(&status(0, 200), start + 2 * SEC), None);
    let ejection = detector
        .record(&status(0, 503), start + 2 * SEC)
        .expect("21 requests, 11 failures");
    assert_eq!(
        ejection.reason.to_string(),
        "failure rate 52% over 21 requests in 10s"
    );
}

#[test]
fn failure_rate_without_min_volume_ejects_on_the_first_failure() {
    let now = Instant::now();
    let mut detector = OutlierDetector::new(rate_only(1), 3, now);
    let ejection = detector
        .record(&status(2, 503), now)
        .expect("1 of 1 failed");
    assert_eq!(
        ejection.reason.to_string(),
        "failure rate 100% over 1 requests in 10s"
    );
}

#[test]
fn failure_rate_below_the_threshold_or_out_of_the_window_does_not_eject() {
    let start = Instant::now();
    let mut detector = OutlierDetector::new(rate_only(20), 3, start);
    // One failure in three: 33% < 50%.
    for _ in 0..20 {
        detector.record(&status(0, 200), start);
        detector.record(&status(0, 200), start);
        assert_eq!(detector.record(&status(0, 503), start), None);
    }
    // 15 failures, then 15 seconds later 15 more: never 20 in one window.
    let mut detector = OutlierDetector::new(rate_only(20), 3, start);
    assert!(feed(&mut detector, &status(1, 503), 15, start).is_empty());
    assert!(feed(&mut detector, &status(1, 503), 15, start + 15 * SEC).is_empty());
}

fn latency_only() -> OutlierParams {
    OutlierParams::builder()
        .consecutive_failures(0)
        .failure_rate(None)
        .latency_factor(Some(3.0))
        .latency_floor(100 * MS)
        .build()
        .expect("valid")
}

#[test]
fn a_slow_but_answering_endpoint_is_a_latency_outlier() {
    let now = Instant::now();
    let mut detector = OutlierDetector::new(latency_only(), 3, now);
    feed(&mut detector, &slow(0, 1500 * MS), 20, now);
    feed(&mut detector, &slow(1, 50 * MS), 20, now);
    feed(&mut detector, &slow(2, 50 * MS), 20, now);
    let (ejections, returns) = detector.tick(now + SEC);
    assert!(returns.is_empty());
    assert_eq!(ejections.len(), 1, "{ejections:?}");
    assert_eq!(ejections[0].endpoint, 0);
    assert_eq!(
        ejections[0].reason.to_string(),
        "latency 1.5s is 30× the cluster median 50ms"
    );
    assert!(detector.is_ejected(0, now + SEC));
    // Judged once: the window was reset.
    let (ejections, _) = detector.tick(now + 2 * SEC);
    assert!(ejections.is_empty());
}

#[test]
fn latency_below_the_floor_or_factor_is_not_an_outlier() {
    let now = Instant::now();
    let mut detector = OutlierDetector::new(latency_only(), 3, now);
    // 30× slower, but 90 ms is below the 100 ms floor.
    feed(&mut detector, &slow(0, 90 * MS), 20, now);
    feed(&mut detector, &slow(1, 3 * MS), 20, now);
    feed(&mut detector, &slow(2, 3 * MS), 20, now);
    assert!(detector.tick(now + SEC).0.is_empty());

    // Above the floor but only 2.5× the median.
    let mut detector = OutlierDetector::new(latency_only(), 3, now);
    feed(&mut detector, &slow(0, 500 * MS), 20, now);
    feed(&mut detector, &slow(1, 200 * MS), 20, now);
    feed(&mut detector, &slow(2, 200 * MS), 20, now);
    assert!(detector.tick(now + SEC).0.is_empty());
}

#[test]
fn latency_needs_samples_and_peers() {
    let now = Instant::now();
    let mut detector = OutlierDetector::new(latency_only(), 3, now);
    // min_requests (20) samples are needed, from the suspect...
    feed(&mut detector, &slow(0, 2 * SEC), 19, now);
    feed(&mut detector, &slow(1, 50 * MS), 20, now);
    feed(&mut detector, &slow(2, 50 * MS), 20, now);
    assert!(detector.tick(now).0.is_empty());
    // ...and from at least one other endpoint to compare with.
    let mut detector = OutlierDetector::new(latency_only(), 3, now);
    feed(&mut detector, &slow(0, 2 * SEC), 20, now);
    feed(&mut detector, &slow(1, 50 * MS), 19, now);
    assert!(detector.tick(now).0.is_empty());
    // Old samples leave the window.
    let mut detector = OutlierDetector::new(latency_only(), 3, now);
    feed(&mut detector, &slow(0, 2 * SEC), 20, now);
    feed(&mut detector, &slow(1, 50 * MS), 20, now);
    assert!(detector.tick(now + 11 * SEC).0.is_empty());
}

#[test]
fn a_slow_cluster_ejects_nobody() {
    let now = Instant::now();
    let mut detector = OutlierDetector::new(latency_only(), 3, now);
    for endpoint in 0..3 {
        feed(&mut detector, &slow(endpoint, 2 * SEC), 20, now);
    }
    assert!(detector.tick(now).0.is_empty());
}

#[test]
fn only_max_ejected_percent_of_the_cluster_is_ejected() {
    let now = Instant::now();
    let mut detector = OutlierDetector::new(consecutive_only(), 3, now);
    assert_eq!(detector.max_ejected(), 1, "50% of 3, rounded down");
    let mut ejected = Vec::new();
    for endpoint in 0..3 {
        ejected.extend(feed(&mut detector, &status(endpoint, 503), 10, now));
    }
    assert_eq!(ejected.len(), 1, "{ejected:?}");
    assert_eq!(detector.ejected(now), 1);
    // Endpoints 1 and 2 each reached 5 failures 6 times while the cap held.
    assert_eq!(detector.suppressed(), 12);
    // Once endpoint 0 is back, the next failure of endpoint 1 ejects it.
    let later = now + 10 * SEC;
    let (_, returns) = detector.tick(later);
    assert_eq!(returns.len(), 1);
    let ejection = detector.record(&status(1, 503), later).expect("room again");
    assert_eq!(ejection.endpoint, 1);
    assert_eq!(
        ejection.reason.to_string(),
        "11 consecutive gateway failures"
    );
}

#[test]
fn the_cap_allows_one_ejection_in_small_clusters_unless_zero() {
    let now = Instant::now();
    let ten_percent = OutlierParams::builder()
        .max_ejected_percent(10)
        .build()
        .expect("valid");
    let mut detector = OutlierDetector::new(ten_percent, 3, now);
    assert_eq!(detector.max_ejected(), 1);
    assert_eq!(feed(&mut detector, &status(0, 503), 5, now).len(), 1);

    let none = OutlierParams::builder()
        .max_ejected_percent(0)
        .build()
        .expect("valid");
    let mut detector = OutlierDetector::new(none, 3, now);
    assert_eq!(detector.max_ejected(), 0);
    assert!(feed(&mut detector, &status(0, 503), 50, now).is_empty());

    let detector = OutlierDetector::new(OutlierParams::default(), 10, now);
    assert_eq!(detector.max_ejected(), 5);
}

#[test]
fn the_last_endpoint_in_service_is_never_ejected() {
    let now = Instant::now();
    let all = OutlierParams::builder()
        .max_ejected_percent(100)
        .build()
        .expect("valid");
    let mut detector = OutlierDetector::new(all.clone(), 1, now);
    assert_eq!(detector.max_ejected(), 0);
    assert!(
        feed(
            &mut detector,
            &failed(0, FailureKind::ConnectRefused),
            100,
            now
        )
        .is_empty()
    );
    assert!(!detector.is_ejected(0, now));

    let mut detector = OutlierDetector::new(all, 2, now);
    let mut ejected = feed(&mut detector, &status(0, 503), 5, now);
    ejected.extend(feed(&mut detector, &status(1, 503), 50, now));
    assert_eq!(ejected.len(), 1);
    assert!(!detector.is_ejected(1, now));
}

#[test]
fn ejections_grow_longer_up_to_the_cap() {
    let start = Instant::now();
    let params = OutlierParams::builder()
        .failure_rate(None)
        .base_ejection(10 * SEC)
        .max_ejection(25 * SEC)
        .build()
        .expect("valid");
    let mut detector = OutlierDetector::new(params, 3, start);
    let mut now = start;
    let mut durations = Vec::new();
    for _ in 0..4 {
        let ejection = feed(&mut detector, &status(0, 503), 5, now).remove(0);
        durations.push((ejection.count, ejection.duration.as_secs()));
        // Back in service, and failing again at once.
        now = ejection.until;
        let (_, returns) = detector.tick(now);
        assert_eq!(
            returns,
            vec![Return {
                endpoint: 0,
                at: now
            }]
        );
    }
    assert_eq!(durations, vec![(1, 10), (2, 20), (3, 25), (4, 25)]);
}

#[test]
fn an_endpoint_returns_when_its_ejection_ends() {
    let start = Instant::now();
    let mut detector = OutlierDetector::new(consecutive_only(), 3, start);
    let ejection = feed(&mut detector, &status(0, 503), 5, start).remove(0);
    let before = ejection.until - MS;
    assert!(detector.tick(before).1.is_empty());
    assert!(detector.is_ejected(0, before));
    // Exact between ticks: out of force at `until`, reported by the next tick
    // with the time it really ended.
    assert!(!detector.is_ejected(0, ejection.until));
    let late = ejection.until + 700 * MS;
    let (ejections, returns) = detector.tick(late);
    assert!(ejections.is_empty());
    assert_eq!(
        returns,
        vec![Return {
            endpoint: 0,
            at: ejection.until
        }]
    );
    assert_eq!(detector.ejected_until(0), None);
    assert!(detector.tick(late + SEC).1.is_empty(), "reported once");
}

#[test]
fn outcomes_while_ejected_cannot_re_eject_and_are_forgotten_on_return() {
    let start = Instant::now();
    let mut detector = OutlierDetector::new(consecutive_only(), 3, start);
    let ejection = feed(&mut detector, &status(0, 503), 5, start).remove(0);
    // Stragglers and panic-mode traffic fail while it is out.
    assert!(feed(&mut detector, &status(0, 503), 20, start + SEC).is_empty());
    let stats = detector.stats(0, start + SEC).expect("endpoint");
    assert_eq!((stats.consecutive_failures, stats.failures), (20, 20));
    assert_eq!(
        detector.ejected_until(0).map(|(until, _)| until),
        Some(ejection.until)
    );
    // A fresh start on return: four more failures are not five.
    detector.tick(ejection.until);
    assert!(feed(&mut detector, &status(0, 503), 4, ejection.until).is_empty());
    assert_eq!(
        detector
            .stats(0, ejection.until)
            .map(|s| s.consecutive_failures),
        Some(4)
    );
}

#[test]
fn record_notices_an_expired_ejection_and_tick_still_reports_the_return() {
    let start = Instant::now();
    let mut detector = OutlierDetector::new(consecutive_only(), 3, start);
    let first = feed(&mut detector, &status(0, 503), 5, start).remove(0);
    // No tick in between: the endpoint is back and fails again at once.
    let second = feed(&mut detector, &status(0, 503), 5, first.until).remove(0);
    assert_eq!(second.count, 2);
    let (_, returns) = detector.tick(first.until + SEC);
    assert_eq!(
        returns,
        vec![Return {
            endpoint: 0,
            at: first.until
        }]
    );
    assert!(detector.is_ejected(0, first.until + SEC));
}

#[test]
fn the_ejection_count_decays_while_the_endpoint_behaves() {
    let start = Instant::now();
    let mut detector = OutlierDetector::new(consecutive_only(), 3, start);
    let first = feed(&mut detector, &status(0, 503), 5, start).remove(0);
    detector.tick(first.until);
    let second = feed(&mut detector, &status(0, 503), 5, first.until).remove(0);
    assert_eq!((second.count, second.duration), (2, 20 * SEC));
    let back = second.until;
    detector.tick(back);
    // One step forgiven per base_ejection (10 s) in service, however often
    // tick runs.
    detector.tick(back + 9 * SEC);
    assert_eq!(detector.ejection_count(0), 2);
    detector.tick(back + 10 * SEC);
    assert_eq!(detector.ejection_count(0), 1);
    detector.tick(back + 15 * SEC);
    assert_eq!(detector.ejection_count(0), 1);
    detector.tick(back + 20 * SEC);
    assert_eq!(detector.ejection_count(0), 0);
    let third = feed(&mut detector, &status(0, 503), 5, back + 21 * SEC).remove(0);
    assert_eq!((third.count, third.duration), (1, 10 * SEC));
}

#[test]
fn partial_forgiveness_applies_even_without_a_tick() {
    let start = Instant::now();
    let mut detector = OutlierDetector::new(consecutive_only(), 3, start);
    let first = feed(&mut detector, &status(0, 503), 5, start).remove(0);
    detector.tick(first.until);
    let second = feed(&mut detector, &status(0, 503), 5, first.until).remove(0);
    detector.tick(second.until);
    // 15 s in service forgives one of two: the next ejection is the second.
    let third = feed(&mut detector, &status(0, 503), 5, second.until + 15 * SEC).remove(0);
    assert_eq!((third.count, third.duration), (2, 20 * SEC));
}

#[test]
fn unknown_endpoints_are_ignored() {
    let now = Instant::now();
    let mut detector = OutlierDetector::new(consecutive_only(), 2, now);
    assert!(feed(&mut detector, &status(7, 503), 10, now).is_empty());
    assert!(!detector.is_ejected(7, now));
    assert_eq!(detector.ejected_until(7), None);
    assert_eq!(detector.ejection_count(7), 0);
    assert_eq!(detector.stats(7, now), None);
}

#[test]
fn median_leaves_out_the_endpoint_judged() {
    let d = |ms: u32| ms * MS;
    let sorted = [d(10), d(20), d(30), d(1000)];
    assert_eq!(median_without(&sorted, d(1000)), d(20));
    assert_eq!(median_without(&sorted, d(10)), d(30));
    assert_eq!(median_without(&[d(10), d(20), d(30)], d(20)), d(20));
    assert_eq!(median_without(&[d(10), d(1000)], d(1000)), d(10));
}

#[tokio::test(start_paused = true)]
async fn an_ejection_carried_into_a_rebuilt_detector_keeps_its_end() {
    let now = Instant::now();
    let mut old = OutlierDetector::new(consecutive_only(), 3, now);
    let ejections = feed(&mut old, &failed(2, FailureKind::ConnectRefused), 5, now);
    assert_eq!(ejections.len(), 1);
    let until = old
        .ejected_until(2)
        .map(|(until, _)| until)
        .expect("ejected");
    // The endpoint is number 0 of the new cluster (others were removed).
    let mut rebuilt = OutlierDetector::new(consecutive_only(), 1, now);
    rebuilt.restore(0, old.history(2).expect("known"), now);
    assert!(rebuilt.is_ejected(0, now + SEC));
    assert_eq!(rebuilt.ejected_until(0).map(|(at, _)| at), Some(until));
    assert_eq!(rebuilt.ejection_count(0), 1);
    assert!(!rebuilt.is_ejected(0, until));
    // Out of range: ignored.
    rebuilt.restore(5, old.history(0).expect("known"), now);
    assert!(old.history(9).is_none());
}
