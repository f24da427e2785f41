//! Raw sections → settings: [`config`] validates each section through its
//! module (`admin.rs`, `runtime.rs`, `listener.rs`, `cluster.rs`, ...),
//! then the rules between sections (`checks.rs`).
//!
//! Nothing stops at a problem: each is reported and the rest of the config
//! is still checked.

use super::checks::{self, Cluster, Listener};
use super::raw::RawConfig;
use super::report::Report;
use super::{Config, admin, alert, cluster, listener, log, readiness, runtime, store};

/// The settings of `raw`. Only meaningful if nothing was reported.
pub(super) fn config(raw: &RawConfig, report: &mut Report<'_>) -> Config {
    let admin = admin::admin(raw.admin.as_ref(), report);
    let runtime = runtime::runtime(raw.runtime.as_ref(), report);
    let log = log::log(raw.log.as_ref(), report);
    let listeners: Vec<Listener<'_>> = raw
        .listener
        .iter()
        .map(|l| listener::listener(l, report))
        .collect();
    let clusters: Vec<Cluster<'_>> = raw
        .cluster
        .iter()
        .map(|c| cluster::cluster(c, report))
        .collect();

    checks::at_least_one_listener(&listeners, report);
    checks::unique_names("listener", listeners.iter().filter_map(|l| l.name), report);
    checks::unique_names("cluster", clusters.iter().filter_map(|c| c.name), report);
    checks::clusters_are_defined(&listeners, &clusters, report);
    checks::addresses_are_free(&admin, &listeners, report);
    let readiness = readiness::readiness(raw.readiness.as_ref(), &clusters, report);
    let alerts = raw
        .alert
        .iter()
        .filter_map(|alert| alert::alert(alert, report))
        .collect();

    let store = store::store(raw.store.as_ref(), report);
    Config {
        store,
        admin: admin.settings,
        runtime,
        log,
        listeners: listeners.into_iter().filter_map(|l| l.settings).collect(),
        clusters: clusters.into_iter().filter_map(|c| c.settings).collect(),
        readiness,
        alerts,
        warnings: Vec::new(),
    }
}
