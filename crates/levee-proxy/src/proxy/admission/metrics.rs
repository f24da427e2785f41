//! Metrics of admission control: requests shed, time waited for a slot,
//! queue depth and limit.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use levee_core::admission::{CLASSES, Priority};

use crate::metrics::buckets::{HistogramFamily, LatencyHistogram, latency_histogram};
use crate::metrics::labels::ClusterLabels;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterReasonLabels {
    cluster: String,
    reason: &'static str,
    class: &'static str,
}

/// The reasons a request is shed, as `Rejected::reason()` names them.
const REASONS: [&str; 3] = ["queue_full", "timeout", "displaced"];

/// The admission metric families, registered once.
pub struct AdmissionFamilies {
    shed: Family<ClusterReasonLabels, Counter>,
    wait: HistogramFamily<ClusterLabels>,
    queue_depth: Family<ClusterLabels, Gauge>,
    limit: Family<ClusterLabels, Gauge>,
}

impl Default for AdmissionFamilies {
    fn default() -> Self {
        AdmissionFamilies {
            shed: Family::default(),
            wait: Family::new_with_constructor(latency_histogram),
            queue_depth: Family::default(),
            limit: Family::default(),
        }
    }
}

impl AdmissionFamilies {
    /// Register the families in `registry`.
    pub fn register(registry: &mut Registry) -> AdmissionFamilies {
        let families = AdmissionFamilies::default();
        registry.register(
            "admission_shed",
            "Requests rejected by admission control, by reason (queue_full, timeout, displaced by a higher class) and priority class",
            families.shed.clone(),
        );
        registry.register(
            "admission_wait_seconds",
            "Time admitted requests waited for an admission slot",
            families.wait.clone(),
        );
        registry.register(
            "admission_queue_depth",
            "Requests waiting for an admission slot (sampled each second and on every rejection)",
            families.queue_depth.clone(),
        );
        registry.register(
            "admission_limit",
            "Current concurrency limit of admission control (changes when adaptive)",
            families.limit.clone(),
        );
        families
    }

    /// Handles for one cluster's admission series (only for clusters with
    /// admission control, so others show none).
    pub fn handles(&self, cluster: &str) -> AdmissionMetrics {
        let labels = ClusterLabels {
            cluster: cluster.to_owned(),
        };
        let shed = Priority::ALL.map(|class| {
            REASONS.map(|reason| {
                self.shed.get_or_create_owned(&ClusterReasonLabels {
                    cluster: cluster.to_owned(),
                    reason,
                    class: class.as_str(),
                })
            })
        });
        AdmissionMetrics {
            shed,
            wait: self.wait.get_or_create_owned(&labels),
            queue_depth: self.queue_depth.get_or_create_owned(&labels),
            limit: self.limit.get_or_create_owned(&labels),
        }
    }
}

/// Pre-created admission series of one cluster.
#[derive(Clone)]
pub struct AdmissionMetrics {
    /// Per class (highest first), per reason (as [`REASONS`]).
    shed: [[Counter; 3]; CLASSES],
    wait: LatencyHistogram,
    queue_depth: Gauge,
    limit: Gauge,
}

impl AdmissionMetrics {
    /// A request was admitted after waiting this long.
    pub fn record_admitted(&self, waited_seconds: f64) {
        self.wait.observe(waited_seconds);
    }

    /// A request of `class` was shed; `reason` is `Rejected::reason()`.
    pub fn record_shed(&self, class: Priority, reason: &'static str) {
        let index = REASONS
            .iter()
            .position(|known| *known == reason)
            .unwrap_or(1);
        self.shed[class.index()][index].inc();
    }

    /// Requests shed so far, for every reason and class.
    pub fn shed_total(&self) -> u64 {
        self.shed.iter().flatten().map(Counter::get).sum()
    }

    /// The queue's depth and limit as of now.
    pub fn record_state(&self, queued: usize, limit: usize) {
        self.queue_depth
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
        self.limit.set(i64::try_from(limit).unwrap_or(i64::MAX));
    }
}
