//! A cluster's admission control at run time: levee-core's [`Admission`]
//! queue, the adaptive limit fed from upstream latencies, and their metrics.

use std::time::Duration;

use levee_core::admission::{Admission, GradientLimit, Permit, Rejected};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::Instant;

use crate::config::AdmissionSettings;
use crate::metrics::AdmissionMetrics;

/// Admission control of one cluster.
pub(super) struct ClusterAdmission {
    queue: Admission,
    /// The adaptive limit, when configured.
    gradient: Option<Mutex<GradientLimit>>,
    metrics: AdmissionMetrics,
}

/// Admission control in `/status`.
#[derive(Debug, Serialize)]
pub struct AdmissionStatus {
    /// Requests holding a slot.
    pub in_flight: usize,
    /// Requests waiting for one.
    pub queued: usize,
    /// Slots in all now.
    pub limit: usize,
    /// Whether the limit adapts to latency.
    pub adaptive: bool,
}

impl ClusterAdmission {
    pub(super) fn new(settings: &AdmissionSettings, metrics: AdmissionMetrics) -> ClusterAdmission {
        let queue = Admission::new(settings.params.clone());
        let max = settings.params.max_concurrency();
        let gradient = settings.adaptive.and_then(|adaptive| {
            let min = adaptive.min_concurrency.clamp(1, max);
            let initial = GradientLimit::DEFAULT_INITIAL_LIMIT.clamp(min, max);
            // Validation has checked the bounds; a failure here only means
            // the limit stays fixed.
            GradientLimit::new(initial, min, max).ok().map(Mutex::new)
        });
        if let Some(gradient) = &gradient {
            queue.set_limit(gradient.lock().limit());
        }
        let admission = ClusterAdmission {
            queue,
            gradient,
            metrics,
        };
        admission.sample();
        admission
    }

    pub(super) async fn admit(&self) -> Result<Permit, Rejected> {
        let started = Instant::now();
        match self.queue.acquire().await {
            Ok(permit) => {
                self.metrics
                    .record_admitted(started.elapsed().as_secs_f64());
                Ok(permit)
            }
            Err(rejected) => {
                self.metrics.record_shed(rejected.reason());
                self.sample();
                Err(rejected)
            }
        }
    }

    /// An upstream answered after `latency`: the adaptive limit learns.
    pub(super) fn observe_latency(&self, latency: Duration, now: Instant) {
        let Some(gradient) = &self.gradient else {
            return;
        };
        let limit = gradient.lock().update(latency, now);
        if limit != self.queue.limit() {
            self.queue.set_limit(limit);
        }
    }

    /// Publish queue depth and limit.
    pub(super) fn sample(&self) {
        self.metrics
            .record_state(self.queue.queued(), self.queue.limit());
    }

    pub(super) fn status(&self) -> AdmissionStatus {
        AdmissionStatus {
            in_flight: self.queue.in_flight(),
            queued: self.queue.queued(),
            limit: self.queue.limit(),
            adaptive: self.gradient.is_some(),
        }
    }
}
