//! The shared breaker store: built at start when a breaker is shared, and
//! linked to every shared breaker (also to those a reload builds anew).

use std::sync::Arc;

use levee_store::{FleetRules, MemoryStore, RedisStore, RedisStoreConfig, StateStore, StoreError};

use crate::cluster::{Cluster, FleetLink, FleetStore};
use crate::config::{Config, StoreKind};

/// Build the store if a breaker is shared, and link every shared breaker
/// to it. Never waits: a Redis store starts degraded and connects in the
/// background.
pub(super) fn share_breakers(
    config: &Config,
    clusters: &[Arc<Cluster>],
) -> Result<Option<FleetStore>, StoreError> {
    let shared: Vec<&Arc<Cluster>> = clusters.iter().filter(|c| is_shared(c)).collect();
    if shared.is_empty() {
        return Ok(None);
    }
    let mut rules = FleetRules::new();
    for cluster in &shared {
        rules = rules.with_breaker_quorum(&cluster.name, cluster.settings.breaker_fleet.quorum)?;
    }
    let settings = &config.store;
    let store: Arc<dyn StateStore> = match settings.kind {
        StoreKind::Memory => Arc::new(MemoryStore::new(&settings.instance_id, rules)),
        StoreKind::Redis => Arc::new(RedisStore::start(
            RedisStoreConfig::new(&settings.url, &settings.namespace, &settings.instance_id)
                .with_rules(rules),
        )?),
    };
    let fleet = FleetStore {
        store,
        kind: settings.kind,
        on_unreachable: settings.on_unreachable,
    };
    link(&fleet, shared.into_iter());
    tracing::info!(
        kind = settings.kind.as_str(),
        instance_id = %settings.instance_id,
        namespace = %settings.namespace,
        "shared breaker store"
    );
    Ok(Some(fleet))
}

/// Whether `cluster`'s breaker is shared through the store.
pub(super) fn is_shared(cluster: &Cluster) -> bool {
    cluster.breaker.is_some() && cluster.settings.breaker_fleet.shared
}

/// Link the shared breakers of `clusters` that are not linked yet.
pub(super) fn link<'c>(fleet: &FleetStore, clusters: impl Iterator<Item = &'c Arc<Cluster>>) {
    for cluster in clusters.filter(|c| is_shared(c)) {
        if let Some(breaker) = &cluster.breaker
            && breaker.fleet().is_none()
        {
            breaker.share(FleetLink::new(
                Arc::clone(&fleet.store),
                cluster.settings.breaker_fleet,
                fleet.on_unreachable,
            ));
        }
    }
}
