//! The background task of a [`RedisStore`](super::RedisStore): the only
//! place that waits on Redis for reports and reads.
//!
//! One loop, so there is one owner of the connection state: connect
//! (command connection plus subscription), resync everything, rewrite this
//! instance's reports, declare the store connected; then serve queued
//! reports, change announcements and the resync tick until anything fails;
//! then declare it degraded and start over after a pause. Every command is
//! bounded by `io_timeout`: a Redis that hangs rather than refuses is as
//! degraded as one that is down.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{FutureExt, StreamExt};
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::RedisStoreConfig;
use super::keys::{Keys, WireOverride, WireReport};
use super::view_clock;
use crate::aggregate::{BreakerRecord, aggregate_all};
use crate::health::HealthReporter;
use crate::mailbox::{DEFAULT_CAPACITY, Mailbox};
use crate::model::StoredReport;
use crate::store::FleetMap;
use crate::{FleetRules, LocalReport, Override, StoreError};

/// This instance's own reports never expire in its own view: it is alive.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// State shared by the store handles and the task.
pub(crate) struct Shared {
    pub(crate) instance_id: String,
    keys: Keys,
    rules: FleetRules,
    /// Names the store in errors and logs.
    address: String,
    io_timeout: Duration,
    pub(crate) mailbox: Mailbox,
    /// The command connection while connected; cloned by `set_override`.
    connection: Mutex<Option<MultiplexedConnection>>,
    view: Mutex<View>,
    pub(crate) fleet: watch::Sender<FleetMap>,
    pub(crate) health: HealthReporter,
}

/// What this instance knows.
#[derive(Default)]
struct View {
    /// Per breaker, as last read from Redis.
    records: HashMap<String, BreakerRecord>,
    /// This instance's latest reports, ahead of Redis.
    own: HashMap<String, LocalReport>,
}

type Failure = String;

impl Shared {
    pub(crate) fn new(config: &RedisStoreConfig) -> Self {
        let address = format!("{} (namespace {})", config.url, config.namespace);
        let (fleet, _) = watch::channel(FleetMap::default());
        Shared {
            instance_id: config.instance_id.clone(),
            keys: Keys::new(&config.namespace),
            rules: config.rules.clone(),
            health: HealthReporter::connecting(address.clone()),
            address,
            io_timeout: config.io_timeout,
            mailbox: Mailbox::new(DEFAULT_CAPACITY),
            connection: Mutex::new(None),
            view: Mutex::new(View::default()),
            fleet,
        }
    }

    /// Recompute the fleet view; publish it if it changed.
    fn publish_view(&self) {
        let now = view_clock(&self.health.current());
        let view = self.view.lock();
        let own: HashMap<String, StoredReport> = view
            .own
            .iter()
            .map(|(name, report)| {
                let stored = StoredReport {
                    report: report.clone(),
                    expires: now + NEVER,
                };
                (name.clone(), stored)
            })
            .collect();
        let fleet = aggregate_all(
            &view.records,
            &own,
            &self.instance_id,
            |name| self.rules.quorum(name),
            now,
        );
        drop(view);
        self.fleet.send_if_modified(|current| {
            if **current == fleet {
                false
            } else {
                *current = Arc::new(fleet);
                true
            }
        });
    }

    /// Take queued reports into this instance's own view.
    fn absorb_queued(&self) -> HashMap<String, LocalReport> {
        let batch = self.mailbox.take();
        if !batch.is_empty() {
            self.view.lock().own.extend(batch.clone());
            self.publish_view();
        }
        batch
    }

    fn connection(&self) -> Result<MultiplexedConnection, Failure> {
        self.connection
            .lock()
            .clone()
            .ok_or_else(|| "not connected".to_owned())
    }

    /// Run one Redis command or pipeline, bounded by the I/O timeout.
    async fn bounded<T>(
        &self,
        what: &str,
        future: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.io_timeout, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(format!("{what}: {error}")),
            Err(_) => Err(format!("{what}: no answer within {:?}", self.io_timeout)),
        }
    }

    /// Write `reports` as this instance's, announcing them when `announce`.
    async fn write_reports(
        &self,
        reports: &HashMap<String, LocalReport>,
        announce: bool,
    ) -> Result<(), Failure> {
        if reports.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection()?;
        let ttl = self.rules.report_ttl();
        let expires = SystemTime::now() + ttl;
        // The hash outlives any single report: every live writer refreshes
        // it every TTL/3, so it only vanishes when the whole fleet is gone.
        let hash_ttl_ms = u64::try_from((ttl * 3).as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        for (breaker, report) in reports {
            let stored = StoredReport {
                report: report.clone(),
                expires,
            };
            let json = serde_json::to_string(&WireReport::from(&stored))
                .map_err(|error| format!("encoding report of {breaker}: {error}"))?;
            let key = self.keys.reports(breaker);
            pipe.cmd("HSET")
                .arg(&key)
                .arg(&self.instance_id)
                .arg(json)
                .ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(hash_ttl_ms).ignore();
            pipe.cmd("SADD")
                .arg(self.keys.names())
                .arg(breaker)
                .ignore();
            if announce {
                pipe.cmd("PUBLISH")
                    .arg(self.keys.channel())
                    .arg(breaker)
                    .ignore();
            }
        }
        self.bounded("writing reports", pipe.query_async::<()>(&mut connection))
            .await
    }

    /// Re-read every breaker of the namespace.
    async fn resync_all(&self) -> Result<(), Failure> {
        let mut connection = self.connection()?;
        let names: Vec<String> = self
            .bounded(
                "listing breakers",
                redis::cmd("SMEMBERS")
                    .arg(self.keys.names())
                    .query_async(&mut connection),
            )
            .await?;
        let records = self.read(&names).await?;
        self.view.lock().records = records;
        self.publish_view();
        Ok(())
    }

    /// Re-read the announced breakers.
    async fn reread(&self, names: &[String]) -> Result<(), Failure> {
        let records = self.read(names).await?;
        self.view.lock().records.extend(records);
        self.publish_view();
        Ok(())
    }

    /// Read the reports and overrides of `names`, dropping (and deleting)
    /// expired reports.
    async fn read(&self, names: &[String]) -> Result<HashMap<String, BreakerRecord>, Failure> {
        if names.is_empty() {
            return Ok(HashMap::new());
        }
        let mut connection = self.connection()?;
        let mut reads = redis::pipe();
        for name in names {
            reads.cmd("HGETALL").arg(self.keys.reports(name));
        }
        let reports: Vec<HashMap<String, String>> = self
            .bounded("reading reports", reads.query_async(&mut connection))
            .await?;
        let mut reads = redis::pipe();
        for name in names {
            reads.cmd("GET").arg(self.keys.override_(name));
        }
        let overrides: Vec<Option<String>> = self
            .bounded("reading overrides", reads.query_async(&mut connection))
            .await?;

        let now = SystemTime::now();
        let mut expired = redis::pipe();
        let mut any_expired = false;
        let mut records = HashMap::with_capacity(names.len());
        for ((name, fields), override_) in names.iter().zip(reports).zip(overrides) {
            let mut record = BreakerRecord::default();
            for (instance, json) in fields {
                match serde_json::from_str::<WireReport>(&json) {
                    Ok(wire) => {
                        let stored = StoredReport::from(wire);
                        if stored.expires <= now {
                            // A dead or cut-off instance's leftover.
                            expired
                                .cmd("HDEL")
                                .arg(self.keys.reports(name))
                                .arg(&instance)
                                .ignore();
                            any_expired = true;
                        } else {
                            record.reports.insert(instance, stored);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(breaker = %name, instance, %error, "ignoring an unreadable breaker report");
                    }
                }
            }
            record.override_ = override_.and_then(|json| {
                serde_json::from_str::<WireOverride>(&json)
                    .map(Override::from)
                    .inspect_err(|error| {
                        tracing::warn!(breaker = %name, %error, "ignoring an unreadable breaker override");
                    })
                    .ok()
            });
            records.insert(name.clone(), record);
        }
        if any_expired {
            self.bounded(
                "deleting expired reports",
                expired.query_async::<()>(&mut connection),
            )
            .await?;
        }
        Ok(records)
    }

    /// Store (or clear) an operator override and announce it.
    pub(crate) async fn set_override(
        &self,
        breaker: &str,
        override_: Option<Override>,
    ) -> Result<(), StoreError> {
        let unreachable = |detail: String| StoreError::Unreachable {
            address: self.address.clone(),
            detail,
        };
        let mut connection = self.connection().map_err(unreachable)?;
        let key = self.keys.override_(breaker);
        let mut pipe = redis::pipe();
        match &override_ {
            Some(value) => {
                let json = serde_json::to_string(&WireOverride::from(value))
                    .map_err(|error| unreachable(format!("encoding override: {error}")))?;
                pipe.cmd("SET").arg(&key).arg(json).ignore();
            }
            None => {
                pipe.cmd("DEL").arg(&key).ignore();
            }
        }
        pipe.cmd("SADD")
            .arg(self.keys.names())
            .arg(breaker)
            .ignore();
        pipe.cmd("PUBLISH")
            .arg(self.keys.channel())
            .arg(breaker)
            .ignore();
        self.bounded("writing override", pipe.query_async::<()>(&mut connection))
            .await
            .map_err(unreachable)?;
        self.view
            .lock()
            .records
            .entry(breaker.to_owned())
            .or_default()
            .override_ = override_;
        self.publish_view();
        Ok(())
    }
}

/// Connect the command connection and the subscription.
async fn connect(shared: &Shared, client: &Client) -> Result<redis::aio::PubSubStream, Failure> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.io_timeout))
        .set_response_timeout(Some(shared.io_timeout));
    let connection = shared
        .bounded(
            "connecting",
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await?;
    let mut pubsub = shared
        .bounded("connecting the subscription", client.get_async_pubsub())
        .await?;
    shared
        .bounded("subscribing", pubsub.subscribe(shared.keys.channel()))
        .await?;
    *shared.connection.lock() = Some(connection);
    Ok(pubsub.into_on_message())
}

/// The task: runs until the store is dropped (it is aborted then).
pub(crate) async fn run(shared: Arc<Shared>, client: Client, config: RedisStoreConfig) {
    let refresh_every = config.rules.refresh_interval();
    loop {
        let failure = match connect(&shared, &client).await {
            Ok(messages) => serve(&shared, messages, &config, refresh_every).await,
            Err(failure) => failure,
        };
        *shared.connection.lock() = None;
        shared.health.degraded(&failure);
        shared.publish_view();
        // Keep this instance's own view current while waiting.
        let retry = tokio::time::sleep(config.reconnect_interval);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                () = &mut retry => break,
                () = shared.mailbox.ready() => {
                    shared.absorb_queued();
                }
            }
        }
    }
}

/// Resync, republish, declare connected, then serve until a failure.
async fn serve(
    shared: &Shared,
    mut messages: redis::aio::PubSubStream,
    config: &RedisStoreConfig,
    refresh_every: Duration,
) -> Failure {
    // Reports queued while degraded are part of "own"; write them all.
    shared.absorb_queued();
    if let Err(failure) = shared.resync_all().await {
        return failure;
    }
    let own = shared.view.lock().own.clone();
    if let Err(failure) = shared.write_reports(&own, true).await {
        return failure;
    }
    let mut refreshed = Instant::now();
    shared.health.recovered();
    shared.publish_view();

    let mut resync = tokio::time::interval(config.resync_interval);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.tick().await;
    loop {
        let result = tokio::select! {
            () = shared.mailbox.ready() => {
                let batch = shared.absorb_queued();
                shared.write_reports(&batch, true).await
            }
            message = messages.next() => match message {
                Some(message) => match message.get_payload::<String>() {
                    Ok(name) => {
                        // Coalesce a burst of announcements into one read.
                        let mut names: HashSet<String> = HashSet::from([name]);
                        while let Some(Some(more)) = messages.next().now_or_never() {
                            if let Ok(name) = more.get_payload::<String>() {
                                names.insert(name);
                            }
                        }
                        let names: Vec<String> = names.into_iter().collect();
                        shared.reread(&names).await
                    }
                    Err(_) => shared.resync_all().await,
                },
                None => Err("subscription connection closed".to_owned()),
            },
            _ = resync.tick() => {
                let mut result = shared.resync_all().await;
                if result.is_ok() && refreshed.elapsed() >= refresh_every {
                    let own = shared.view.lock().own.clone();
                    result = shared.write_reports(&own, false).await;
                    refreshed = Instant::now();
                }
                result
            }
        };
        if let Err(failure) = result {
            return failure;
        }
    }
}
