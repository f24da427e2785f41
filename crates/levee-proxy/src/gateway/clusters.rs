//! The gateway's clusters and the work each runs in the background (health
//! checks, the periodic tick), built at start and again at a reload or when
//! a name resolves to other addresses, where an unchanged cluster is kept
//! whole and a changed one continues what the old one learned.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::cluster::{Cluster, ClusterBuildError, members};
use crate::config::ClusterSettings;
use crate::events::EventLog;
use crate::health;
use crate::metrics::Metrics;
use crate::proxy::cache::ResponseCache;
use crate::resolve::NameTable;

/// A cluster and the stage in front of it that is its own: its cache.
#[derive(Clone)]
pub(super) struct Served {
    pub cluster: Arc<Cluster>,
    pub cache: Option<Arc<ResponseCache>>,
}

/// A cluster, its cache and its background work.
pub(super) struct LiveCluster {
    pub cluster: Arc<Cluster>,
    pub cache: Option<Arc<ResponseCache>>,
    tasks: Vec<JoinHandle<()>>,
}

impl LiveCluster {
    /// Stop its background work (requests in flight on it finish).
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What a set of cluster settings becomes against the running clusters.
pub(super) struct ClusterPlan {
    /// In config order: each cluster, and whether it is new (built or
    /// rebuilt, its background work to be started).
    pub clusters: Vec<(Served, bool)>,
}

impl ClusterPlan {
    /// Build what `settings` needs, its names expanded from `names`: a
    /// running cluster whose settings and endpoints did not change is kept
    /// as it is; a changed one continues the old one's state; a new name is
    /// built fresh. A cache is kept, contents and all, while its settings
    /// stay.
    pub fn build(
        settings: &[ClusterSettings],
        names: &NameTable,
        running: &[LiveCluster],
        metrics: &Metrics,
        events: &Arc<EventLog>,
    ) -> Result<ClusterPlan, ClusterBuildError> {
        let running: HashMap<&str, &LiveCluster> = running
            .iter()
            .map(|live| (live.cluster.name.as_str(), live))
            .collect();
        let mut clusters = Vec::with_capacity(settings.len());
        for wanted in settings {
            let members = members(wanted, names);
            let before = running.get(wanted.name.as_str());
            let cache = match (before.and_then(|live| live.cache.as_ref()), wanted.cache) {
                (Some(kept), Some(settings)) if *kept.settings() == settings => {
                    Some(Arc::clone(kept))
                }
                (_, settings) => settings.map(|settings| {
                    Arc::new(ResponseCache::new(settings, metrics.cache(&wanted.name)))
                }),
            };
            let (cluster, new) = match before.map(|live| &live.cluster) {
                Some(cluster) if cluster.settings == *wanted && cluster.has_members(&members) => {
                    (Arc::clone(cluster), false)
                }
                Some(cluster) => (
                    Arc::new(cluster.continued(wanted, members, metrics, Arc::clone(events))?),
                    true,
                ),
                None => (
                    Arc::new(Cluster::new(wanted, members, metrics, Arc::clone(events))?),
                    true,
                ),
            };
            clusters.push((Served { cluster, cache }, new));
        }
        Ok(ClusterPlan { clusters })
    }

    /// The clusters, with their caches, by name.
    pub fn by_name(&self) -> HashMap<String, Served> {
        self.clusters
            .iter()
            .map(|(served, _)| (served.cluster.name.clone(), served.clone()))
            .collect()
    }

    /// The clusters, in config order.
    pub fn list(&self) -> Vec<Arc<Cluster>> {
        self.clusters
            .iter()
            .map(|(served, _)| Arc::clone(&served.cluster))
            .collect()
    }

    /// The caches, by cluster name, in config order.
    pub fn caches(&self) -> Vec<(String, Arc<ResponseCache>)> {
        self.clusters
            .iter()
            .filter_map(|(served, _)| {
                let cache = served.cache.as_ref()?;
                Some((served.cluster.name.clone(), Arc::clone(cache)))
            })
            .collect()
    }

    /// Start the background work of the new clusters and keep the running
    /// ones' (stopping the work of those replaced or removed).
    pub fn start(self, running: Vec<LiveCluster>) -> Vec<LiveCluster> {
        let mut running: HashMap<String, LiveCluster> = running
            .into_iter()
            .map(|live| (live.cluster.name.clone(), live))
            .collect();
        let mut live = Vec::with_capacity(self.clusters.len());
        for (Served { cluster, cache }, new) in self.clusters {
            let previous = running.remove(&cluster.name);
            if !new && let Some(mut previous) = previous {
                previous.cache = cache;
                live.push(previous);
                continue;
            }
            if let Some(previous) = previous {
                previous.stop();
            }
            let mut tasks = health::spawn_health_checks(&cluster);
            tasks.push(health::spawn_cluster_tick(&cluster));
            live.push(LiveCluster {
                cluster,
                cache,
                tasks,
            });
        }
        // Removed from the config.
        for removed in running.into_values() {
            removed.stop();
        }
        live
    }
}
