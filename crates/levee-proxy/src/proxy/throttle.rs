//! Client-side adaptive throttling of a cluster (`[cluster.throttle]`): the
//! stage between the breaker and the attempts. While the upstream rejects
//! requests (503, 429, gRPC `RESOURCE_EXHAUSTED`), a share of requests is
//! rejected here with a 503 and never reaches it (levee-core's
//! [`AdaptiveThrottle`]): an overloaded upstream spends its capacity on
//! work, not on refusing traffic. The metrics live here too.

use levee_core::throttle::{AdaptiveThrottle, ThrottleSnapshot};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use crate::config::ThrottleSettings;
use crate::metrics::labels::ClusterLabels;

/// A request rejected here: the probability it was rejected with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// The share of requests rejected locally right now, in percent.
    pub percent: u32,
}

impl std::fmt::Display for Throttled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the upstream rejects most requests (503/429): {}% of requests are rejected here for now",
            self.percent
        )
    }
}

/// One cluster's throttle.
pub struct ClusterThrottle {
    settings: ThrottleSettings,
    throttle: AdaptiveThrottle,
    rejected: Counter,
}

impl ClusterThrottle {
    /// A throttle that has seen nothing yet.
    pub fn new(settings: ThrottleSettings, rejected: Counter) -> ClusterThrottle {
        ClusterThrottle {
            settings,
            throttle: AdaptiveThrottle::new(settings.params, Instant::now()),
            rejected,
        }
    }

    /// Its settings (a reload keeps the throttle when they are the same).
    pub fn settings(&self) -> &ThrottleSettings {
        &self.settings
    }

    /// Let a request through, or reject it here.
    pub fn admit(&self, now: Instant) -> Result<(), Throttled> {
        if !self.throttle.reject(now, rand::random::<f64>()) {
            return Ok(());
        }
        self.rejected.inc();
        let probability = self.throttle.snapshot(now).reject_probability;
        Err(Throttled {
            // In 0..=100: the probability is in [0, 1].
            percent: (probability * 100.0).round() as u32,
        })
    }

    /// The upstream answered with `status` (a gRPC answer's HTTP
    /// equivalent): rejected if 429 or 503.
    pub fn record(&self, status: u16, now: Instant) {
        self.throttle.record(!matches!(status, 429 | 503), now);
    }

    /// Requests, accepts and the rejection probability now.
    pub fn snapshot(&self, now: Instant) -> ThrottleSnapshot {
        self.throttle.snapshot(now)
    }
}

/// The throttling metric family, registered once.
#[derive(Default)]
pub struct ThrottleFamilies {
    rejected: Family<ClusterLabels, Counter>,
}

impl ThrottleFamilies {
    /// Register the family in `registry`.
    pub fn register(registry: &mut Registry) -> ThrottleFamilies {
        let families = ThrottleFamilies::default();
        registry.register(
            "throttled",
            "Requests rejected by client-side throttling while the upstream rejects requests (503, 429)",
            families.rejected.clone(),
        );
        families
    }

    /// One cluster's counter (created with the stage, so it shows 0).
    pub fn rejected(&self, cluster: &str) -> Counter {
        self.rejected.get_or_create_owned(&ClusterLabels {
            cluster: cluster.to_owned(),
        })
    }
}
