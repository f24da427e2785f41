//! The gateway's clusters, the stages in front of each that are its own
//! (cache, admission control), and the work each runs in the background
//! (health checks, the periodic tick), built at start and again at a reload
//! or when a name resolves to other addresses, where an unchanged cluster is
//! kept whole and a changed one continues what the old one learned.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::cluster::{Cluster, ClusterBreaker, ClusterBuildError, members};
use crate::config::ClusterSettings;
use crate::events::EventLog;
use crate::health;
use crate::metrics::Metrics;
use crate::proxy::admission::ClusterAdmission;
use crate::proxy::cache::ResponseCache;
use crate::proxy::rate_limit::ClusterRateLimit;
use crate::proxy::retries::RetryState;
use crate::proxy::throttle::ClusterThrottle;
use crate::resolve::NameTable;
use crate::route::ClusterStages;

/// A cluster and the stages in front of it that are its own.
#[derive(Clone)]
pub(super) struct Served {
    pub cluster: Arc<Cluster>,
    pub stages: ClusterStages,
}

/// A cluster, its stages and its background work.
pub(super) struct LiveCluster {
    pub cluster: Arc<Cluster>,
    pub stages: ClusterStages,
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
    /// built fresh. A cache (contents and all) and an admission queue
    /// (waiters and all) are kept while their own settings stay.
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
            let stages = stages(wanted, before.copied(), metrics, events);
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
            clusters.push((Served { cluster, stages }, new));
        }
        Ok(ClusterPlan { clusters })
    }

    /// The clusters, with their stages, by name.
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

    /// The clusters with their stages, in config order.
    pub fn served(&self) -> Vec<Served> {
        self.clusters
            .iter()
            .map(|(served, _)| served.clone())
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
        for (Served { cluster, stages }, new) in self.clusters {
            let previous = running.remove(&cluster.name);
            if !new && let Some(mut previous) = previous {
                previous.stages = stages;
                live.push(previous);
                continue;
            }
            if let Some(previous) = previous {
                previous.stop();
            }
            let mut tasks = health::spawn_health_checks(&cluster);
            tasks.push(health::spawn_cluster_tick(&cluster));
            if let Some(admission) = &stages.admission {
                let admission = Arc::clone(admission);
                tasks.push(spawn_every_second(move |_| admission.sample()));
            }
            if let Some(breaker) = &stages.breaker {
                let breaker = Arc::clone(breaker);
                tasks.push(spawn_every_second(move |now| breaker.tick(now)));
            }
            live.push(LiveCluster {
                cluster,
                stages,
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

/// The stages of the cluster `wanted`: each one `before` had is kept, state
/// and all, while its own settings stay.
fn stages(
    wanted: &ClusterSettings,
    before: Option<&LiveCluster>,
    metrics: &Metrics,
    events: &Arc<EventLog>,
) -> ClusterStages {
    let kept = before.map(|live| &live.stages);
    let cache = match (kept.and_then(|stages| stages.cache.as_ref()), wanted.cache) {
        (Some(kept), Some(settings)) if *kept.settings() == settings => Some(Arc::clone(kept)),
        (_, settings) => settings
            .map(|settings| Arc::new(ResponseCache::new(settings, metrics.cache(&wanted.name)))),
    };
    let kept_admission = kept.and_then(|stages| stages.admission.as_ref());
    let admission = match (kept_admission, &wanted.admission) {
        (Some(kept), Some(settings)) if kept.settings() == settings => Some(Arc::clone(kept)),
        (_, settings) => settings.as_ref().map(|settings| {
            Arc::new(ClusterAdmission::new(
                settings,
                metrics.admission(&wanted.name),
            ))
        }),
    };
    let before_settings = before.map(|live| &live.cluster.settings);
    let same_breaker = before_settings.is_some_and(|old| {
        old.breaker == wanted.breaker && old.breaker_fleet == wanted.breaker_fleet
    });
    let breaker = match kept.and_then(|stages| stages.breaker.as_ref()) {
        Some(kept) if same_breaker => Some(Arc::clone(kept)),
        _ => wanted.breaker.clone().map(|params| {
            Arc::new(ClusterBreaker::new(
                &wanted.name,
                None,
                params,
                metrics.breaker(&wanted.name),
                Arc::clone(events),
                tokio::time::Instant::now(),
            ))
        }),
    };
    let retries = match kept.map(|stages| &stages.retries) {
        Some(kept) if kept.keeps(&wanted.retry) => Arc::clone(kept),
        _ => Arc::new(RetryState::new(
            &wanted.name,
            &wanted.retry,
            metrics.cluster(&wanted.name),
            Arc::clone(events),
        )),
    };
    let throttle = match (
        kept.and_then(|stages| stages.throttle.as_ref()),
        wanted.throttle,
    ) {
        (Some(kept), Some(settings)) if *kept.settings() == settings => Some(Arc::clone(kept)),
        (_, settings) => settings.map(|settings| {
            Arc::new(ClusterThrottle::new(
                settings,
                metrics.throttled(&wanted.name),
            ))
        }),
    };
    let rate_limit = match (
        kept.and_then(|stages| stages.rate_limit.as_ref()),
        &wanted.rate_limit,
    ) {
        (Some(kept), Some(settings)) if kept.settings() == settings => Some(Arc::clone(kept)),
        (_, settings) => settings.clone().map(|settings| {
            Arc::new(ClusterRateLimit::new(
                &wanted.name,
                settings,
                metrics.rate_limited(&wanted.name),
            ))
        }),
    };
    ClusterStages {
        cache,
        admission,
        breaker,
        throttle,
        rate_limit,
        retries,
    }
}

/// Run `work` about once a second, until aborted: an admission queue
/// publishes its depth and limit, a breaker's open period ends with time
/// alone.
fn spawn_every_second(work: impl Fn(tokio::time::Instant) + Send + 'static) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            work(tokio::time::Instant::now());
        }
    })
}
