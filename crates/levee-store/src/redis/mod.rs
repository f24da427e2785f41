//! The fleet store: breaker state in Redis, kept in memory on every
//! instance and refreshed by pub/sub and a periodic resync.
//!
//! Key layout: see [`keys`]. One background task per store owns all Redis
//! I/O except operator overrides: it writes this instance's reports as they
//! are queued (and rewrites them every TTL/3 so they do not expire),
//! subscribes to the change channel and re-reads each announced breaker,
//! re-reads everything every `resync_interval`, and on any failure marks
//! the store degraded and reconnects. The request path touches only memory.

mod config;
mod driver;
mod keys;

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::RedisStoreConfig;

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
/// | `{ns}:breaker-names` | set | every breaker name written, for the full resync |
/// | `{ns}:breaker:{name}:reports` | hash | field = instance id, value = JSON report with `expires_ms` |
/// | `{ns}:breaker:{name}:override` | string | JSON override (`force_open`, `force_closed`, `reset`) |
/// | channel `{ns}:breakers` | pub/sub | message = the name of a breaker that changed |
///
/// Report fields past their `expires_ms` are ignored and deleted by
/// readers; the reports hash expires after three TTLs without a writer.
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
