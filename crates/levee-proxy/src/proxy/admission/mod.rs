//! Admission control, the request path's stage after the cache: a cluster's
//! levee-core [`Admission`] queue (a slot, or 503 at once), the adaptive
//! limit fed from its requests' latencies, and their metrics. One per
//! cluster, owned by the gateway and shared by every route to the cluster.

pub mod metrics;

use std::time::Duration;

use levee_core::admission::{Admission, GradientLimit, Permit, Priority, Rejected};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::cluster::AdmissionStatus;
use crate::config::AdmissionSettings;
use metrics::AdmissionMetrics;

/// Admission control of one cluster.
pub struct ClusterAdmission {
    settings: AdmissionSettings,
    queue: Admission,
    /// The adaptive limit, when configured.
    gradient: Option<Mutex<GradientLimit>>,
    metrics: AdmissionMetrics,
}

impl ClusterAdmission {
    /// A queue as `settings` say, empty.
    pub fn new(settings: &AdmissionSettings, metrics: AdmissionMetrics) -> ClusterAdmission {
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
            settings: settings.clone(),
            queue,
            gradient,
            metrics,
        };
        admission.sample();
        admission
    }

    /// The settings it was built with (a reload keeps it if they stay).
    pub fn settings(&self) -> &AdmissionSettings {
        &self.settings
    }

    /// Wait for a slot as a request of class `priority` (or be shed).
    pub async fn admit(&self, priority: Priority) -> Result<Permit, Rejected> {
        let started = Instant::now();
        match self.queue.acquire_as(priority).await {
            Ok(permit) => {
                self.metrics
                    .record_admitted(started.elapsed().as_secs_f64());
                Ok(permit)
            }
            Err(rejected) => {
                self.metrics.record_shed(priority, rejected.reason());
                self.sample();
                Err(rejected)
            }
        }
    }

    /// An upstream answered after `latency`: the adaptive limit learns. A
    /// sample that meets another worker's is dropped, never waited for: the
    /// limit follows averages over hundreds of samples.
    pub fn observe_latency(&self, latency: Duration, now: Instant) {
        let Some(gradient) = &self.gradient else {
            return;
        };
        let Some(mut gradient) = gradient.try_lock() else {
            return;
        };
        let limit = gradient.update(latency, now);
        drop(gradient);
        if limit != self.queue.limit() {
            self.queue.set_limit(limit);
        }
    }

    /// Publish queue depth and limit.
    pub fn sample(&self) {
        self.metrics
            .record_state(self.queue.queued(), self.queue.limit());
    }

    /// Requests shed so far (the dashboard's sheds per second).
    pub fn shed_total(&self) -> u64 {
        self.metrics.shed_total()
    }

    /// As `/status` shows it.
    pub fn status(&self) -> AdmissionStatus {
        let [critical, default, sheddable] = self.queue.queued_by_class();
        AdmissionStatus {
            in_flight: self.queue.in_flight(),
            queued: self.queue.queued(),
            queued_by_class: crate::cluster::QueuedByClass {
                critical,
                default,
                sheddable,
            },
            limit: self.queue.limit(),
            adaptive: self.gradient.is_some(),
        }
    }
}
