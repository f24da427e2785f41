//! Keeping a cluster's endpoint names resolved: once before levee serves,
//! then every [`period`](crate::upstream::resolve::period), each answer
//! recorded on the cluster (see `upstream/resolve.rs` for what is kept).

use std::sync::Arc;

use futures_util::future::join_all;
use levee_core::EndpointId;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Cluster;
use crate::upstream::resolve::period;

/// Look up every endpoint name of `cluster` now, all at once, and record
/// the answers: an endpoint whose name does not resolve is out of rotation
/// before the first request.
pub async fn resolve_names(cluster: &Cluster) {
    let lookups = (0..cluster.len())
        .map(EndpointId)
        .filter(|&id| cluster.endpoint(id).resolution.is_name())
        .map(|id| async move {
            let (before, found) = cluster.endpoint(id).resolution.refresh().await;
            cluster.record_resolution(id, &before, &found, Instant::now());
        });
    join_all(lookups).await;
}

/// Look the names of `cluster` up again and again, until aborted; `None`
/// when every endpoint is an IP address.
pub fn spawn_resolver(cluster: &Arc<Cluster>) -> Option<JoinHandle<()>> {
    let has_names =
        (0..cluster.len()).any(|i| cluster.endpoint(EndpointId(i)).resolution.is_name());
    if !has_names {
        return None;
    }
    let cluster = Arc::clone(cluster);
    Some(tokio::spawn(async move {
        let every = period(&cluster.settings);
        loop {
            tokio::time::sleep(every).await;
            resolve_names(&cluster).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::SocketAddr;

    use super::*;
    use crate::config::{ClusterSettings, EndpointAddress};
    use crate::events::EventLog;
    use crate::metrics::Metrics;
    use crate::upstream::resolve::{Lookup, NameState};

    /// Which endpoints `picks` picks land on.
    fn picked(cluster: &Cluster, picks: usize) -> HashSet<usize> {
        (0..picks)
            .filter_map(|_| cluster.pick(Instant::now()))
            .map(|id| id.0)
            .collect()
    }

    #[tokio::test]
    async fn a_name_that_starts_to_resolve_comes_into_rotation() {
        let settings = ClusterSettings::new(
            "app",
            vec![
                EndpointAddress::new("127.0.0.1", 1),
                EndpointAddress::new("no-such-host.invalid", 80),
            ],
        );
        let events = Arc::new(EventLog::default());
        let cluster =
            Cluster::new(&settings, &Metrics::new(), Arc::clone(&events)).expect("cluster");
        resolve_names(&cluster).await;
        let name = EndpointId(1);
        assert!(matches!(
            cluster.endpoint(name).resolution.state(),
            NameState::Unresolved(_)
        ));
        assert_eq!(picked(&cluster, 100), HashSet::from([0]));
        assert_eq!(
            cluster.status(Instant::now()).endpoints[1].state,
            "unresolved"
        );
        assert_eq!(cluster.available_count(Instant::now()), 1);

        // The name appears (as a later lookup finds it).
        let address: SocketAddr = "127.0.0.2:80".parse().expect("address");
        let found = Lookup::Resolved(vec![address]);
        let before = cluster.endpoint(name).resolution.record(&found);
        cluster.record_resolution(name, &before, &found, Instant::now());
        assert_eq!(cluster.endpoint(name).resolution.address(), Some(address));
        assert_eq!(picked(&cluster, 200), HashSet::from([0, 1]));
        assert_eq!(cluster.available_count(Instant::now()), 2);
        let changes: Vec<(String, String)> = events
            .since(0, 100)
            .into_iter()
            .filter(|event| event.kind == "endpoint-resolution")
            .map(|event| (event.from, event.to))
            .collect();
        assert_eq!(
            changes,
            [
                ("unknown".to_owned(), "unresolved".to_owned()),
                ("unresolved".to_owned(), "resolved".to_owned())
            ]
        );
    }
}
