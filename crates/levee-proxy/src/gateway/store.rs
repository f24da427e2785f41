//! The shared store: built at start when a breaker or endpoint health is
//! shared, and linked to every shared breaker (also to those a reload
//! builds anew).

use std::sync::Arc;

use levee_store::{
    FleetRules, MemoryStore, RedisStore, RedisStoreConfig, SentinelConfig, StateStore, StoreError,
};

use super::clusters::Served;
use crate::cluster::{FleetLink, FleetStore};
use crate::config::{Config, StoreKind};

/// Build the store if a breaker is shared, and link every shared breaker
/// to it. Never waits: a Redis store starts degraded and connects in the
/// background.
pub(super) fn share_breakers(
    config: &Config,
    clusters: &[Served],
) -> Result<Option<FleetStore>, StoreError> {
    let shared: Vec<&Served> = clusters.iter().filter(|c| is_shared(c)).collect();
    let health_shared = clusters
        .iter()
        .any(|c| c.cluster.settings.shares_health(config.store.kind));
    let rate_shared = clusters.iter().any(|c| {
        c.stages
            .rate_limit
            .as_ref()
            .is_some_and(|limit| limit.is_shared())
    });
    if shared.is_empty() && !health_shared && !rate_shared {
        return Ok(None);
    }
    let mut rules = FleetRules::new();
    for served in &shared {
        let cluster = &served.cluster;
        rules = rules.with_breaker_quorum(&cluster.name, cluster.settings.breaker_fleet.quorum)?;
    }
    let settings = &config.store;
    let store: Arc<dyn StateStore> = match settings.kind {
        StoreKind::Memory => Arc::new(MemoryStore::new(&settings.instance_id, rules)),
        StoreKind::Redis => {
            let mut redis =
                RedisStoreConfig::new(&settings.url, &settings.namespace, &settings.instance_id)
                    .with_rules(rules);
            if let Some((sentinels, master_name)) = &settings.sentinel {
                redis = redis.with_sentinel(SentinelConfig {
                    sentinels: sentinels.clone(),
                    master_name: master_name.clone(),
                });
            }
            Arc::new(RedisStore::start(redis)?)
        }
    };
    let fleet = FleetStore {
        store,
        kind: settings.kind,
        on_unreachable: settings.on_unreachable,
    };
    link(&fleet, shared.into_iter());
    link_rate_limits(&fleet, clusters.iter());
    tracing::info!(
        kind = settings.kind.as_str(),
        instance_id = %settings.instance_id,
        namespace = %settings.namespace,
        "shared breaker store"
    );
    Ok(Some(fleet))
}

/// Keep the shared rate limits of `clusters` in the store.
pub(super) fn link_rate_limits<'c>(fleet: &FleetStore, clusters: impl Iterator<Item = &'c Served>) {
    for served in clusters {
        if let Some(limit) = &served.stages.rate_limit
            && limit.is_shared()
        {
            limit.share(Arc::clone(&fleet.store));
        }
    }
}

/// Whether the cluster's breaker is shared through the store.
pub(super) fn is_shared(served: &Served) -> bool {
    served.stages.breaker.is_some() && served.cluster.settings.breaker_fleet.shared
}

/// Link the shared breakers of `clusters` that are not linked yet.
pub(super) fn link<'c>(fleet: &FleetStore, clusters: impl Iterator<Item = &'c Served>) {
    for served in clusters.filter(|c| is_shared(c)) {
        if let Some(breaker) = &served.stages.breaker
            && breaker.fleet().is_none()
        {
            breaker.share(FleetLink::new(
                Arc::clone(&fleet.store),
                served.cluster.settings.breaker_fleet,
                fleet.on_unreachable,
            ));
        }
    }
}
