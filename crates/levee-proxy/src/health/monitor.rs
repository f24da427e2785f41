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
/// `health` config). Endpoints at the same address (two names for one node)
/// are checked once and the verdict is recorded for each of them: two names
/// must not double a node's check load. An endpoint whose name has no
/// address is not checked (it is `unresolved`, not unhealthy). When a name
/// resolves to other addresses the cluster is rebuilt, and its checks with
/// it: checks always go where traffic goes.
pub fn spawn_health_checks(cluster: &Arc<Cluster>) -> Vec<JoinHandle<()>> {
    let Some(health) = cluster.settings.health.clone() else {
        return Vec::new();
    };
    let mut groups: BTreeMap<SocketAddr, Vec<usize>> = BTreeMap::new();
    for index in 0..cluster.len() {
        if let Some(socket) = cluster.endpoint(EndpointId(index)).socket {
            groups.entry(socket).or_default().push(index);
        }
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

async fn check_loop(
    cluster: Arc<Cluster>,
    health: HealthSettings,
    target: SocketAddr,
    members: Vec<usize>,
) {
    let first = cluster.endpoint(EndpointId(members[0]));
    // The configured name of the first member (e.g. "backend:8000") is the
    // Host header unless the check sets one.
    let host = first.host_header.to_str().unwrap_or_default().to_owned();
    let tls = first.pool.tls().cloned();
    loop {
        let result = run_check(
            &health.check,
            target,
            &host,
            (tls.as_ref(), cluster.settings.upstream_protocol),
            (health.params.timeout(), cluster.settings.source_address),
        )
        .await;
        let now = Instant::now();
        for &member in &members {
            cluster.record_check(EndpointId(member), result, now);
        }
        // Sooner when one of them said it is going away.
        let check_now = members
            .iter()
            .map(|&member| Box::pin(cluster.endpoint(EndpointId(member)).check_now.notified()));
        tokio::select! {
            () = tokio::time::sleep(cluster.next_check_delay(EndpointId(members[0]))) => {}
            _ = futures_util::future::select_all(check_now) => {}
        }
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
