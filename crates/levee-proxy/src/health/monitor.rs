//! One check loop per distinct endpoint address of a cluster.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use levee_core::EndpointId;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::check::run_check;
use crate::cluster::Cluster;
use crate::config::HealthSettings;

/// Start checking every endpoint of `cluster` (nothing when it has no
/// `health` config). Endpoints whose names resolve to the same address are
/// checked once and the verdict is recorded for each of them: two names for
/// one node must not double its check load. The grouping is made from the
/// addresses resolved before the start (`cluster::resolve_names`); each
/// check goes to the group's current address, and is skipped while its name
/// does not resolve (the endpoint is `unresolved` then, not unhealthy).
pub fn spawn_health_checks(cluster: &Arc<Cluster>) -> Vec<JoinHandle<()>> {
    let Some(health) = cluster.settings.health.clone() else {
        return Vec::new();
    };
    let mut groups: BTreeMap<Target, Vec<usize>> = BTreeMap::new();
    for index in 0..cluster.len() {
        let target = match cluster.endpoint(EndpointId(index)).resolution.address() {
            Some(socket) => Target::Address(socket),
            None => Target::Alone(index),
        };
        groups.entry(target).or_default().push(index);
    }
    groups
        .into_values()
        .map(|members| {
            let cluster = Arc::clone(cluster);
            let health = health.clone();
            tokio::spawn(check_loop(cluster, health, members))
        })
        .collect()
}

/// How endpoints are grouped for checks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// Every endpoint that resolved to this address at start.
    Address(SocketAddr),
    /// An endpoint whose name did not resolve at start: checked on its own.
    Alone(usize),
}

async fn check_loop(cluster: Arc<Cluster>, health: HealthSettings, members: Vec<usize>) {
    let first = cluster.endpoint(EndpointId(members[0]));
    // The configured name of the first member (e.g. "backend:8000") is the
    // Host header unless the check sets one.
    let host = first.address.clone();
    loop {
        if let Some(target) = first.resolution.address() {
            let result = run_check(&health.check, target, &host, health.params.timeout()).await;
            let now = Instant::now();
            for &member in &members {
                cluster.record_check(EndpointId(member), result, now);
            }
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
