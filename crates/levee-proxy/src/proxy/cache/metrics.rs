//! Metrics of response caches: how each response of a cached cluster was
//! served.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterKindLabels {
    cluster: String,
    kind: &'static str,
}

/// The cache metric families, registered once.
#[derive(Default)]
pub struct CacheFamilies {
    responses: Family<ClusterKindLabels, Counter>,
}

impl CacheFamilies {
    /// Register the families in `registry`.
    pub fn register(registry: &mut Registry) -> CacheFamilies {
        let families = CacheFamilies::default();
        registry.register(
            "cache_responses",
            "Responses of cached clusters by how the cache served them (hit, miss, revalidated, stale, bypass)",
            families.responses.clone(),
        );
        families
    }

    /// Handles for one cluster's cache series (only for clusters with a
    /// cache).
    pub fn handles(&self, cluster: &str) -> CacheMetrics {
        let kind = |kind| {
            self.responses.get_or_create_owned(&ClusterKindLabels {
                cluster: cluster.to_owned(),
                kind,
            })
        };
        CacheMetrics {
            hit: kind("hit"),
            miss: kind("miss"),
            revalidated: kind("revalidated"),
            stale: kind("stale"),
            bypass: kind("bypass"),
        }
    }
}

/// Pre-created cache series of one cluster.
#[derive(Clone)]
pub struct CacheMetrics {
    hit: Counter,
    miss: Counter,
    revalidated: Counter,
    stale: Counter,
    bypass: Counter,
}

impl CacheMetrics {
    /// One response served as `result`: `hit`, `miss`, `revalidated`,
    /// `stale` or `bypass`.
    pub fn record(&self, result: &str) {
        match result {
            "hit" => self.hit.inc(),
            "revalidated" => self.revalidated.inc(),
            "stale" => self.stale.inc(),
            "bypass" => self.bypass.inc(),
            _ => self.miss.inc(),
        };
    }
}
