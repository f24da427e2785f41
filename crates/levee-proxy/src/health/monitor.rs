//! One check loop per distinct endpoint address of a cluster.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use levee_core::EndpointId;
use levee_core::health::{CheckFailure, CheckResult};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::check::run_check;
use crate::cluster::Cluster;
use crate::config::HealthSettings;

/// Start checking every endpoint of `cluster` (nothing when it has no
/// `health` config). Endpoints that resolve to the same address are checked
/// once and the verdict is recorded for each of them: two names for one node
/// must not double its check load. Addresses are resolved once, at start.
pub async fn spawn_health_checks(cluster: &Arc<Cluster>) -> Vec<JoinHandle<()>> {
    let Some(health) = cluster.settings.health.clone() else {
        return Vec::new();
    };
    let mut groups: BTreeMap<Target, Vec<usize>> = BTreeMap::new();
    for (index, address) in cluster.settings.endpoints.iter().enumerate() {
        let resolved = tokio::net::lookup_host((address.host.as_str(), address.port))
            .await
            .ok()
            .and_then(|mut addresses| addresses.next());
        let target = match resolved {
            Some(socket) => Target::Resolved(socket),
            None => Target::Unresolved(address.to_string()),
        };
        groups.entry(target).or_default().push(index);
    }
    groups
        .into_iter()
        .map(|(target, members)| {
            let cluster = Arc::clone(cluster);
            let health = health.clone();
            tokio::spawn(check_loop(cluster, health, target, members))
        })
        .collect()
}

/// Where a check loop sends its checks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Resolved(SocketAddr),
    /// A name that did not resolve at start: checked as a failure to connect.
    Unresolved(String),
}

async fn check_loop(
    cluster: Arc<Cluster>,
    health: HealthSettings,
    target: Target,
    members: Vec<usize>,
) {
    // The configured name of the first member (e.g. "backend:8000") is the
    // Host header unless the check sets one.
    let host = cluster.endpoint(EndpointId(members[0])).address.clone();
    loop {
        let result = match &target {
            Target::Resolved(socket) => {
                run_check(&health.check, *socket, &host, health.params.timeout()).await
            }
            Target::Unresolved(_) => CheckResult::Failed(CheckFailure::ConnectFailed),
        };
        let now = Instant::now();
        for &member in &members {
            cluster.record_check(EndpointId(member), result, now);
        }
        tokio::time::sleep(cluster.next_check_delay(EndpointId(members[0]))).await;
    }
}

/// Run the cluster's periodic work (ejection expiry, latency outliers, slow
/// start) about once a second, until aborted.
pub fn spawn_cluster_tick(cluster: &Arc<Cluster>) -> JoinHandle<()> {
    let cluster = Arc::clone(cluster);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            cluster.tick(Instant::now());
        }
    })
}
