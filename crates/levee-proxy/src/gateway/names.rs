//! Following endpoint names: once a second, the names whose interval (or
//! TTL) is up are looked up again; when one resolves to other addresses,
//! the clusters using it are rebuilt (`reload::apply_names`), so traffic and
//! health checks move to the new addresses, and endpoints of addresses that
//! disappeared drain.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{GatewayState, Live, reload};
use crate::resolve::report;

/// How often the table is looked at.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Follow the names of the config in force until the gateway stops.
pub(super) fn spawn_follower(
    state: &Arc<GatewayState>,
    live: &Arc<tokio::sync::Mutex<Live>>,
) -> JoinHandle<()> {
    let state = Arc::downgrade(state);
    let live = Arc::downgrade(live);
    tokio::spawn(follow(state, live))
}

async fn follow(state: Weak<GatewayState>, live: Weak<tokio::sync::Mutex<Live>>) {
    let mut ticks = tokio::time::interval(LOOK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let refreshed = state.names.refresh_due(Instant::now()).await;
        report(&refreshed, state.metrics.names(), &state.events);
        if !refreshed.addresses_changed() {
            continue;
        }
        let Some(live) = live.upgrade() else {
            return;
        };
        let mut live = live.lock().await;
        if let Err(error) = reload::apply_names(&state, &mut live).await {
            tracing::error!(%error, "endpoint names changed but the clusters could not be rebuilt; the previous addresses stay in use");
        }
    }
}
