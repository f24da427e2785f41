//! The fleet store: breaker state in Redis, kept in memory on every
//! instance and refreshed by pub/sub, a change stream and a periodic
//! resync.
//!
//! Key layout: see [`keys`]. One background task per store owns all Redis
//! I/O except operator overrides: it writes this instance's reports as they
//! are queued, keeps this instance a member (one `ZADD` every TTL/3),
//! follows the change stream on every announcement and every
//! `resync_interval` (reading only what changed), re-reads everything every
//! 30 s, and on any failure marks the store degraded and reconnects. The
//! request path touches only memory.

mod clock;
mod config;
mod driver;
mod keys;
mod view;

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{RedisStoreConfig, SentinelConfig};

use crate::store::{BoxFuture, FleetMap, FleetSnapshot, StateStore};
use crate::{LocalReport, Override, StoreError, StoreHealth};
use driver::Shared;

/// Breaker state shared through Redis. Clones share one connection and one
/// background task, which stops with the last clone.
///
/// Key layout, all under the configured namespace `{ns}`:
///
/// | key | type | holds |
/// | --- | --- | --- |
/// | `{ns}:members` | sorted set | instance id, scored by until when it counts (store time, ms) |
/// | `{ns}:instance:{id}` | hash | field = breaker name, value = that instance's JSON report |
/// | `{ns}:changes` | stream | `i` = instance id (empty for an override), `n` = breaker name |
/// | `{ns}:override:{name}` | string | JSON override (`force_open`, `force_closed`, `reset`) |
/// | `{ns}:overrides` | set | names with an override |
/// | channel `{ns}:breakers` | pub/sub | a change was appended |
///
/// A member whose score has passed no longer counts, and its score is
/// removed by the next writer; its hash expires after three TTLs. Scores
/// and report times are in the store's clock (`TIME`), so the fleet's
/// clocks need not agree.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RedisStore {
    /// Validate `config` and start the background task (within a tokio
    /// runtime). Returns at once: the store starts degraded ("not connected
    /// yet") and turns connected after its first full resync; watch
    /// [`StateStore::health`] to wait for it.
    pub fn start(config: RedisStoreConfig) -> Result<RedisStore, StoreError> {
        config.validate()?;
        let client =
            redis::Client::open(config.url.as_str()).map_err(|error| StoreError::BadConfig {
                key: "url".to_owned(),
                problem: error.to_string(),
            })?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StoreError::NoRuntime)?;
        let shared = Arc::new(Shared::new(&config));
        let task = runtime.spawn(driver::run(Arc::clone(&shared), client, config));
        Ok(RedisStore {
            inner: Arc::new(Inner { shared, task }),
        })
    }
}

impl StateStore for RedisStore {
    fn instance_id(&self) -> &str {
        &self.inner.shared.instance_id
    }

    fn report(&self, breaker: &str, report: LocalReport) {
        self.inner.shared.mailbox.put(breaker, report);
    }

    fn set_override<'a>(
        &'a self,
        breaker: &'a str,
        override_: Option<Override>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.inner.shared.set_override(breaker, override_))
    }

    fn snapshot(&self) -> FleetSnapshot {
        let shared = &self.inner.shared;
        // Health first: a snapshot taken as the store degrades is marked
        // stale rather than passed off as fresh.
        let health = shared.health.current();
        FleetSnapshot {
            breakers: shared.fleet.borrow().clone(),
            health,
        }
    }

    fn subscribe(&self) -> watch::Receiver<FleetMap> {
        self.inner.shared.fleet.subscribe()
    }

    fn health(&self) -> watch::Receiver<StoreHealth> {
        self.inner.shared.health.subscribe()
    }

    fn operations_per_second(&self) -> f64 {
        self.inner.shared.traffic.per_second()
    }

    fn server(&self) -> Option<String> {
        self.inner.shared.server.lock().clone()
    }

    fn failovers(&self) -> u64 {
        self.inner
            .shared
            .failovers
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn rate_limit<'a>(
        &'a self,
        key: &'a str,
        interval: std::time::Duration,
        burst: u32,
    ) -> BoxFuture<'a, Result<crate::SharedRate, StoreError>> {
        Box::pin(self.inner.shared.rate_limit(key, interval, burst))
    }
}

/// The wall clock used for expiry: frozen at the start of a degradation,
/// so the last known state stays the last known state instead of decaying
/// into "no failures" as reports that cannot be refreshed expire.
fn view_clock(health: &StoreHealth) -> SystemTime {
    match health {
        StoreHealth::Connected => SystemTime::now(),
        StoreHealth::Degraded { since, .. } => *since,
    }
}
