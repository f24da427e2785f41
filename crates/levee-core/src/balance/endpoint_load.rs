//! Per-endpoint load signals the balancer reads: requests in flight and a
//! peak-EWMA latency estimate.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::latency::PeakEwma;

/// Latency assumed for an endpoint before its first response. Small enough that
/// a new endpoint is tried soon, large enough that it is not flooded at once.
const INITIAL_LATENCY: Duration = Duration::from_millis(1);

/// Live load of one endpoint.
#[derive(Debug)]
pub struct EndpointLoad {
    /// Requests sent to this endpoint whose response has not finished.
    in_flight: Arc<AtomicUsize>,
    /// Peak-EWMA of time to response head.
    latency: Mutex<PeakEwma>,
}

impl EndpointLoad {
    /// The same endpoint's load under new settings (a config reload): the
    /// requests in flight stay counted (a request started before the reload
    /// ends on the shared counter), the latency estimate is kept, and only
    /// its decay changes.
    pub fn continued(&self, ewma_decay: Duration, now: Instant) -> EndpointLoad {
        // Seeded with the current estimate: the same value, decaying at the
        // new rate from now on.
        let estimate = self.latency.lock().estimate(now);
        let latency = PeakEwma::new(ewma_decay, estimate, now);
        EndpointLoad {
            in_flight: Arc::clone(&self.in_flight),
            latency: Mutex::new(latency),
        }
    }

    /// A fresh endpoint with no requests and the initial latency estimate.
    pub fn new(ewma_decay: Duration, now: Instant) -> EndpointLoad {
        EndpointLoad {
            in_flight: Arc::new(AtomicUsize::new(0)),
            latency: Mutex::new(PeakEwma::new(ewma_decay, INITIAL_LATENCY, now)),
        }
    }

    /// Count a request as in flight until the returned guard is dropped (the
    /// proxy drops it when the response body ends, not when headers arrive).
    pub fn start_request(&self) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard {
            in_flight: Arc::clone(&self.in_flight),
        }
    }

    /// Requests currently in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Record the latency of a response head (or of a failure). A sample
    /// that arrives while another worker records one is dropped rather than
    /// waited for: an estimate loses nothing by it, and requests of different
    /// threads never queue on one endpoint's lock (issue 11).
    pub fn observe_latency(&self, latency: Duration, now: Instant) {
        if let Some(mut estimate) = self.latency.try_lock() {
            estimate.observe(latency, now);
        }
    }

    /// Current latency estimate.
    pub fn latency_estimate(&self, now: Instant) -> Duration {
        self.latency.lock().estimate(now)
    }

    /// The p2c-ewma cost: latency estimate weighted by queued work, so that an
    /// endpoint which is fast but already busy is not piled onto.
    pub fn cost(&self, now: Instant) -> f64 {
        let latency = self.latency_estimate(now).as_nanos() as f64;
        latency * (self.in_flight() as f64 + 1.0)
    }
}

/// Keeps a request counted as in flight while alive.
#[derive(Debug)]
pub struct InFlightGuard {
    in_flight: Arc<AtomicUsize>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_counts_in_flight_until_dropped() {
        let load = EndpointLoad::new(Duration::from_secs(10), Instant::now());
        let a = load.start_request();
        let b = load.start_request();
        assert_eq!(load.in_flight(), 2);
        drop(a);
        assert_eq!(load.in_flight(), 1);
        drop(b);
        assert_eq!(load.in_flight(), 0);
    }

    #[test]
    fn cost_grows_with_in_flight_and_latency() {
        let now = Instant::now();
        let load = EndpointLoad::new(Duration::from_secs(10), now);
        let idle = load.cost(now);
        let _busy = load.start_request();
        assert!(load.cost(now) > idle);
        load.observe_latency(Duration::from_millis(50), now);
        assert!(load.cost(now) > 50_000_000.0);
    }
}

#[cfg(test)]
mod continued_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_continued_load_shares_requests_in_flight_and_keeps_the_estimate() {
        let now = Instant::now();
        let old = EndpointLoad::new(Duration::from_secs(10), now);
        old.observe_latency(Duration::from_millis(300), now);
        let request = old.start_request();
        let new = old.continued(Duration::from_secs(5), now);
        assert_eq!(new.in_flight(), 1);
        assert_eq!(new.latency_estimate(now), Duration::from_millis(300));
        drop(request);
        assert_eq!(
            new.in_flight(),
            0,
            "a request started before the reload ends on both"
        );
    }
}
