//! Successes counted for outlier detection without the cluster's lock.
//!
//! Every response ends in a verdict for outlier detection, and almost all
//! are successes. Taken under the cluster's lock, they made the requests of
//! all worker threads queue on it (issue 11). A success only adds to the
//! endpoint's window and ends a failure streak, so it is tallied here with
//! two atomic adds and handed to the detector whenever the lock is taken
//! for anything else: before a failure is judged, at each tick (about once
//! a second), before `/status` reads the counts. While an endpoint is in a
//! failure streak its successes take the lock, so that the streak ends in
//! order. A tallied success lands in the window's bucket of the moment it
//! is handed over, at most a tick late.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use levee_core::outlier::OutlierDetector;
use tokio::time::Instant;

/// One endpoint's successes not yet in the detector.
#[derive(Debug, Default)]
struct EndpointTally {
    successes: AtomicU64,
    /// Their latencies, added up, in nanoseconds.
    latency_ns: AtomicU64,
    /// The endpoint is in a failure streak: successes take the lock.
    streak: AtomicBool,
}

/// Every endpoint's tally, indexed like the cluster's endpoints.
#[derive(Debug)]
pub(super) struct PassiveTally {
    endpoints: Box<[EndpointTally]>,
}

impl PassiveTally {
    pub(super) fn new(endpoints: usize) -> PassiveTally {
        PassiveTally {
            endpoints: (0..endpoints).map(|_| EndpointTally::default()).collect(),
        }
    }

    /// Count a success on `endpoint`, unless it is in a failure streak (or
    /// unknown): `false` then, and the caller records it under the lock.
    pub(super) fn try_success(&self, endpoint: usize, latency: Duration) -> bool {
        let Some(tally) = self.endpoints.get(endpoint) else {
            return false;
        };
        if tally.streak.load(Ordering::Acquire) {
            return false;
        }
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        tally.latency_ns.fetch_add(nanos, Ordering::Relaxed);
        tally.successes.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Whether `endpoint`'s successes must take the lock (after a verdict
    /// recorded under it).
    pub(super) fn set_streak(&self, endpoint: usize, streak: bool) {
        if let Some(tally) = self.endpoints.get(endpoint) {
            tally.streak.store(streak, Ordering::Release);
        }
    }

    /// Hand every tallied success to `detector`, as of `now`.
    pub(super) fn drain_into(&self, detector: &mut OutlierDetector, now: Instant) {
        for (endpoint, tally) in self.endpoints.iter().enumerate() {
            if tally.successes.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let count = tally.successes.swap(0, Ordering::Relaxed);
            let latency_ns = tally.latency_ns.swap(0, Ordering::Relaxed);
            let count = u32::try_from(count).unwrap_or(u32::MAX);
            detector.record_successes(endpoint, count, latency_ns, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use levee_core::outlier::OutlierParams;
    use levee_core::{EndpointId, FailureKind, Outcome};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn tallied_successes_count_once_handed_over_and_a_streak_takes_the_lock() {
        let now = Instant::now();
        let mut detector = OutlierDetector::new(OutlierParams::default(), 2, now);
        let tally = PassiveTally::new(2);
        for _ in 0..9 {
            assert!(tally.try_success(0, 10 * MS));
        }
        assert_eq!(detector.stats(0, now).expect("endpoint").requests, 0);
        tally.drain_into(&mut detector, now);
        let stats = detector.stats(0, now).expect("endpoint");
        assert_eq!(stats.requests, 9);
        assert_eq!(stats.mean_latency, Some(10 * MS));
        // Handed over once only.
        tally.drain_into(&mut detector, now);
        assert_eq!(detector.stats(0, now).expect("endpoint").requests, 9);
        // A failure starts a streak: the next success must go in order.
        detector.record(
            &Outcome::failure(EndpointId(0), FailureKind::Timeout, MS),
            now,
        );
        tally.set_streak(0, detector.in_failure_streak(0));
        assert!(!tally.try_success(0, MS));
        assert!(tally.try_success(1, MS), "another endpoint is not held up");
        assert!(
            !tally.try_success(7, MS),
            "an unknown endpoint is the caller's"
        );
    }
}
