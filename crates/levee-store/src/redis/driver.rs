//! The background task of a [`RedisStore`](super::RedisStore): the only
//! place that waits on Redis for reports and reads.
//!
//! One loop, so there is one owner of the connection state: connect
//! (command connection plus subscription), measure the store's clock, read
//! everything, write this instance's reports, declare the store connected;
//! then serve queued reports, change announcements and the resync tick
//! until anything fails; then declare it degraded and start over after a
//! pause. Every command is bounded by `io_timeout`: a Redis that hangs
//! rather than refuses is as degraded as one that is down.
//!
//! Reads follow the change stream (see [`keys`](super::keys)): each tick
//! and each announcement reads only the entries after the last one seen,
//! then the reports they name. Everything is read again at connect and
//! every [`FULL_RESYNC_EVERY`], which heals anything missed.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use futures_util::{FutureExt, StreamExt};
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::streams::StreamReadReply;
use redis::{AsyncConnectionConfig, Client};
use tokio::sync::watch;
use tokio::time::Instant;

use super::clock::StoreClock;
use super::config::{RedisStoreConfig, SentinelConfig};
use super::keys::{Keys, WireOverride, WireReport};
use super::view::View;
use super::view_clock;
use crate::health::HealthReporter;
use crate::mailbox::{DEFAULT_CAPACITY, Mailbox};
use crate::store::FleetMap;
use crate::{FleetRules, LocalReport, Override, StoreError};

/// This often the stream is checked for entries trimmed before this
/// instance read them (more than [`STREAM_LENGTH`] changes between two
/// reads); then everything is read again.
const TRIM_CHECK_EVERY: Duration = Duration::from_secs(30);

/// Everything is read again this often while connected all the same,
/// healing whatever else could have been missed.
const FULL_RESYNC_EVERY: Duration = Duration::from_secs(300);

/// Entries the change stream keeps, about: far more than a second's worth
/// of changes of any fleet, which is what an instance reads at each tick.
const STREAM_LENGTH: usize = 10_000;

/// Stream entries read per command.
const READ_BATCH: usize = 1_000;

/// An instance that changed more breakers than this since the last read
/// (it just joined, or reconnected) is read whole, one `HGETALL`, rather
/// than one `HGET` per breaker.
const READ_WHOLE_PAST: usize = 8;

/// The store's clock is measured again this often.
const CLOCK_EVERY: Duration = Duration::from_secs(10);

/// Over how long the operations rate is measured.
const RATE_WINDOW: Duration = Duration::from_secs(10);

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
    /// The store's clock as last measured.
    clock: Mutex<StoreClock>,
    pub(crate) fleet: watch::Sender<FleetMap>,
    pub(crate) health: HealthReporter,
    /// Redis commands sent, and their recent rate.
    pub(crate) traffic: Traffic,
    /// The server of the current (or last) connection, `host:port`.
    pub(crate) server: Mutex<Option<String>>,
    /// Connections that reached another server than the one before.
    pub(crate) failovers: AtomicU64,
}

/// Commands sent to Redis: the store's cost for `/status` and benchmarks.
#[derive(Default)]
pub(crate) struct Traffic {
    /// Commands sent since start.
    pub(crate) total: AtomicU64,
    /// Commands per second over the last [`RATE_WINDOW`], as `f64` bits.
    rate: AtomicU64,
    window: Mutex<Option<(Instant, u64)>>,
}

impl Traffic {
    fn count(&self, commands: usize) {
        self.total.fetch_add(commands as u64, Ordering::Relaxed);
    }

    /// Commands per second over the last window.
    pub(crate) fn per_second(&self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::Relaxed))
    }

    /// Close the window when it is over.
    fn tick(&self) {
        let total = self.total.load(Ordering::Relaxed);
        let mut window = self.window.lock();
        match *window {
            Some((start, at_start)) if start.elapsed() >= RATE_WINDOW => {
                let rate = (total - at_start) as f64 / start.elapsed().as_secs_f64();
                self.rate.store(rate.to_bits(), Ordering::Relaxed);
                *window = Some((Instant::now(), total));
            }
            Some(_) => {}
            None => *window = Some((Instant::now(), total)),
        }
    }
}

type Failure = String;

/// `ZRANGEBYSCORE ... WITHSCORES`: (member, score).
type Scored = Vec<(String, u64)>;

/// An `XREVRANGE` entry: (id, fields).
type StreamEntry = (String, HashMap<String, String>);

/// One change read from the stream.
enum Change {
    /// Instance `.0` changed its report on breaker `.1`.
    Report(String, String),
    /// The override of a breaker changed.
    Override(String),
}

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
            clock: Mutex::new(StoreClock::default()),
            fleet,
            traffic: Traffic::default(),
            server: Mutex::new(None),
            failovers: AtomicU64::new(0),
        }
    }

    fn clock(&self) -> StoreClock {
        *self.clock.lock()
    }

    /// Recompute the fleet state for what changed; publish it if it did.
    fn publish_view(&self) {
        let now = view_clock(&self.health.current());
        let current = self.fleet.borrow().clone();
        let Some(fleet) = self
            .view
            .lock()
            .updated(&current, &self.instance_id, &self.rules, now)
        else {
            return;
        };
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
            self.view.lock().set_own(&batch);
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

    /// Run one Redis command or pipeline of `commands` commands, bounded by
    /// the I/O timeout.
    async fn bounded<T>(
        &self,
        what: &str,
        commands: usize,
        future: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Failure> {
        self.traffic.count(commands);
        match tokio::time::timeout(self.io_timeout, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(format!("{what}: {error}")),
            Err(_) => Err(format!("{what}: no answer within {:?}", self.io_timeout)),
        }
    }

    /// Measure the store's clock (`TIME`, halfway through the round trip).
    async fn measure_clock(&self) -> Result<(), Failure> {
        let mut connection = self.connection()?;
        let sent = SystemTime::now();
        let time: (u64, u64) = self
            .bounded(
                "reading the store's clock",
                1,
                redis::cmd("TIME").query_async(&mut connection),
            )
            .await?;
        let clock = StoreClock::measured(time, sent, SystemTime::now());
        let previous = std::mem::replace(&mut *self.clock.lock(), clock);
        if previous == StoreClock::default() {
            let (ahead, by) = clock.offset();
            tracing::debug!(store = %self.address, ahead, ?by, "store clock measured");
        }
        Ok(())
    }

    /// Write `reports` as this instance's and keep this instance a member;
    /// each report is appended to the change stream, and announced on the
    /// channel when `announce`.
    async fn write_reports(
        &self,
        reports: &HashMap<String, LocalReport>,
        announce: bool,
    ) -> Result<(), Failure> {
        if reports.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection()?;
        let clock = self.clock();
        let own_key = self.keys.instance(&self.instance_id);
        let mut pipe = redis::pipe();
        let mut commands = 0;
        for (breaker, report) in reports {
            let json = serde_json::to_string(&WireReport::encode(report, &clock))
                .map_err(|error| format!("encoding report of {breaker}: {error}"))?;
            pipe.cmd("HSET")
                .arg(&own_key)
                .arg(breaker)
                .arg(json)
                .ignore();
            self.append_change(&mut pipe, &self.instance_id, breaker);
            commands += 2;
        }
        commands += self.keep_member(&mut pipe, clock);
        if announce {
            pipe.cmd("PUBLISH")
                .arg(self.keys.channel())
                .arg("")
                .ignore();
            commands += 1;
        }
        self.bounded(
            "writing reports",
            commands,
            pipe.query_async::<()>(&mut connection),
        )
        .await
    }

    /// Append "`instance` changed `breaker`" (empty instance: its override)
    /// to the change stream.
    fn append_change(&self, pipe: &mut redis::Pipeline, instance: &str, breaker: &str) {
        pipe.cmd("XADD")
            .arg(self.keys.changes())
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_LENGTH)
            .arg("*")
            .arg("i")
            .arg(instance)
            .arg("n")
            .arg(breaker)
            .ignore();
    }

    /// Keep this instance counted for another report TTL (store time), and
    /// its reports' hash for three; forget members whose time has passed.
    /// Returns the number of commands added.
    fn keep_member(&self, pipe: &mut redis::Pipeline, clock: StoreClock) -> usize {
        let ttl = self.rules.report_ttl();
        let now = clock.now();
        let until = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let hash_ttl_ms = u64::try_from((ttl * 3).as_millis()).unwrap_or(u64::MAX);
        pipe.cmd("ZADD")
            .arg(self.keys.members())
            .arg(until)
            .arg(&self.instance_id)
            .ignore();
        pipe.cmd("PEXPIRE")
            .arg(self.keys.instance(&self.instance_id))
            .arg(hash_ttl_ms)
            .ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(self.keys.members())
            .arg("-inf")
            .arg(format!("({now}"))
            .ignore();
        3
    }

    /// Refresh this instance's membership.
    async fn refresh(&self) -> Result<(), Failure> {
        let mut connection = self.connection()?;
        let mut pipe = redis::pipe();
        let commands = self.keep_member(&mut pipe, self.clock());
        self.bounded(
            "refreshing membership",
            commands,
            pipe.query_async::<()>(&mut connection),
        )
        .await
    }

    /// The live members (store time, converted to local) from a
    /// `ZRANGEBYSCORE ... WITHSCORES` answer.
    fn members_from(&self, scored: Vec<(String, u64)>) -> HashMap<String, SystemTime> {
        let clock = self.clock();
        scored
            .into_iter()
            .map(|(id, until)| (id, clock.to_local(until)))
            .collect()
    }

    /// Read everything: the members and their reports, the overrides, and
    /// where the change stream ends.
    async fn full_resync(&self) -> Result<(), Failure> {
        let mut connection = self.connection()?;
        let now = self.clock().now();
        let (scored, overridden, last): (Scored, Vec<String>, Vec<StreamEntry>) = self
            .bounded(
                "listing members",
                3,
                redis::pipe()
                    .cmd("ZRANGEBYSCORE")
                    .arg(self.keys.members())
                    .arg(now)
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .cmd("SMEMBERS")
                    .arg(self.keys.overrides())
                    .cmd("XREVRANGE")
                    .arg(self.keys.changes())
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut connection),
            )
            .await?;
        let members = self.members_from(scored);
        let others: Vec<&String> = members
            .keys()
            .filter(|id| **id != self.instance_id)
            .collect();
        let reports = self.read_instances(&others).await?;
        let overrides = self.read_overrides(&overridden).await?;
        let mut view = self.view.lock();
        view.replace_all(
            members,
            reports,
            overrides
                .into_iter()
                .flat_map(|(name, o)| o.map(|o| (name, o)))
                .collect(),
        );
        view.last_id = last
            .first()
            .map_or_else(|| "0".to_owned(), |(id, _)| id.clone());
        drop(view);
        self.publish_view();
        Ok(())
    }

    /// Whether the stream was trimmed past the last entry this instance
    /// read, so that changes were lost to it (`max-deleted-entry-id`,
    /// Redis 7; older servers rely on the periodic full read).
    async fn missed_changes(&self) -> Result<bool, Failure> {
        let mut connection = self.connection()?;
        let info: HashMap<String, redis::Value> = match self
            .bounded(
                "checking the change stream",
                1,
                redis::cmd("XINFO")
                    .arg("STREAM")
                    .arg(self.keys.changes())
                    .query_async(&mut connection),
            )
            .await
        {
            Ok(info) => info,
            // No stream yet: nothing was written, nothing missed.
            Err(failure) if failure.contains("no such key") => return Ok(false),
            Err(failure) => return Err(failure),
        };
        let deleted = info
            .get("max-deleted-entry-id")
            .and_then(|value| redis::from_redis_value::<String>(value.clone()).ok());
        let last_id = self.view.lock().last_id.clone();
        Ok(deleted.is_some_and(|deleted| stream_id(&deleted) > stream_id(&last_id)))
    }

    /// Every report of each of `instances`.
    async fn read_instances(
        &self,
        instances: &[&String],
    ) -> Result<HashMap<String, HashMap<String, LocalReport>>, Failure> {
        if instances.is_empty() {
            return Ok(HashMap::new());
        }
        let mut connection = self.connection()?;
        let mut pipe = redis::pipe();
        for instance in instances {
            pipe.cmd("HGETALL").arg(self.keys.instance(instance));
        }
        let hashes: Vec<HashMap<String, String>> = self
            .bounded(
                "reading reports",
                instances.len(),
                pipe.query_async(&mut connection),
            )
            .await?;
        let clock = self.clock();
        Ok(instances
            .iter()
            .zip(hashes)
            .map(|(instance, fields)| {
                let reports = fields
                    .into_iter()
                    .filter_map(|(name, json)| decode_report(instance, &name, &json, &clock))
                    .collect();
                ((*instance).clone(), reports)
            })
            .collect())
    }

    /// The overrides of `names` (`None` where there is none any more).
    async fn read_overrides(
        &self,
        names: &[String],
    ) -> Result<Vec<(String, Option<Override>)>, Failure> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection()?;
        let mut pipe = redis::pipe();
        for name in names {
            pipe.cmd("GET").arg(self.keys.override_(name));
        }
        let values: Vec<Option<String>> = self
            .bounded(
                "reading overrides",
                names.len(),
                pipe.query_async(&mut connection),
            )
            .await?;
        let clock = self.clock();
        Ok(names
            .iter()
            .zip(values)
            .map(|(name, json)| {
                let override_ = json.and_then(|json| {
                    serde_json::from_str::<WireOverride>(&json)
                        .map(|wire| wire.decode(&clock))
                        .inspect_err(|error| {
                            tracing::warn!(breaker = %name, %error, "ignoring an unreadable breaker override");
                        })
                        .ok()
                });
                (name.clone(), override_)
            })
            .collect())
    }

    /// Read what changed since the last read: the stream's new entries, the
    /// reports and overrides they name, and who is still a member.
    async fn catch_up(&self) -> Result<(), Failure> {
        let mut connection = self.connection()?;
        loop {
            let last_id = self.view.lock().last_id.clone();
            let now = self.clock().now();
            let (read, scored): (Option<StreamReadReply>, Vec<(String, u64)>) = self
                .bounded(
                    "reading changes",
                    2,
                    redis::pipe()
                        .cmd("XREAD")
                        .arg("COUNT")
                        .arg(READ_BATCH)
                        .arg("STREAMS")
                        .arg(self.keys.changes())
                        .arg(&last_id)
                        .cmd("ZRANGEBYSCORE")
                        .arg(self.keys.members())
                        .arg(now)
                        .arg("+inf")
                        .arg("WITHSCORES")
                        .query_async(&mut connection),
                )
                .await?;
            let mut changes = Vec::new();
            let mut newest = None;
            for stream in read.map(|reply| reply.keys).unwrap_or_default() {
                for entry in stream.ids {
                    let field = |name: &str| entry.get::<String>(name).unwrap_or_default();
                    let (instance, breaker) = (field("i"), field("n"));
                    if instance.is_empty() {
                        changes.push(Change::Override(breaker));
                    } else if instance != self.instance_id {
                        changes.push(Change::Report(instance, breaker));
                    }
                    newest = Some(entry.id);
                }
            }
            let full_batch = changes.len() >= READ_BATCH;
            let members = self.members_from(scored);
            // Members that joined unseen (their announcements came before
            // this instance's last full read): read whole.
            let joined: Vec<&String> = {
                let view = self.view.lock();
                members
                    .keys()
                    .filter(|id| **id != self.instance_id && !view.knows(id))
                    .collect()
            };
            let mut whole: Vec<&String> = joined;
            let mut per_instance: HashMap<&str, HashSet<&str>> = HashMap::new();
            for change in &changes {
                if let Change::Report(instance, breaker) = change {
                    per_instance.entry(instance).or_default().insert(breaker);
                }
            }
            let busy: Vec<String> = per_instance
                .iter()
                .filter(|(_, breakers)| breakers.len() > READ_WHOLE_PAST)
                .map(|(instance, _)| (*instance).to_owned())
                .collect();
            whole.extend(busy.iter().filter(|id| members.contains_key(*id)));
            whole.sort();
            whole.dedup();
            let changes: Vec<Change> = changes
                .into_iter()
                .filter(|change| match change {
                    Change::Report(instance, _) => !busy.contains(instance),
                    Change::Override(_) => true,
                })
                .collect();
            let whole_reports = self.read_instances(&whole).await?;
            let updates = self.read_changes(&changes).await?;
            let mut view = self.view.lock();
            view.keep_members(members);
            for (instance, reports) in whole_reports {
                view.replace_instance(&instance, reports);
            }
            for (instance, breaker, report) in updates.reports {
                view.set_report(&instance, &breaker, report);
            }
            for (breaker, override_) in updates.overrides {
                view.set_override(&breaker, override_);
            }
            if let Some(newest) = newest {
                view.last_id = newest;
            }
            drop(view);
            self.publish_view();
            if !full_batch {
                return Ok(());
            }
        }
    }

    /// Read the reports and overrides that `changes` name.
    async fn read_changes(&self, changes: &[Change]) -> Result<Updates, Failure> {
        let mut reports: Vec<(String, String)> = Vec::new();
        let mut overrides: Vec<String> = Vec::new();
        let mut seen = HashSet::new();
        for change in changes {
            match change {
                Change::Report(instance, breaker) => {
                    if seen.insert((instance.clone(), breaker.clone())) {
                        reports.push((instance.clone(), breaker.clone()));
                    }
                }
                Change::Override(breaker) => {
                    if !overrides.contains(breaker) {
                        overrides.push(breaker.clone());
                    }
                }
            }
        }
        let mut updates = Updates {
            reports: Vec::new(),
            overrides: self.read_overrides(&overrides).await?,
        };
        if reports.is_empty() {
            return Ok(updates);
        }
        let mut connection = self.connection()?;
        let mut pipe = redis::pipe();
        for (instance, breaker) in &reports {
            pipe.cmd("HGET")
                .arg(self.keys.instance(instance))
                .arg(breaker);
        }
        let values: Vec<Option<String>> = self
            .bounded(
                "reading changed reports",
                reports.len(),
                pipe.query_async(&mut connection),
            )
            .await?;
        let clock = self.clock();
        updates.reports = reports
            .into_iter()
            .zip(values)
            .map(|((instance, breaker), json)| {
                let report = json.and_then(|json| {
                    decode_report(&instance, &breaker, &json, &clock).map(|(_, report)| report)
                });
                (instance, breaker, report)
            })
            .collect();
        Ok(updates)
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
                let json = serde_json::to_string(&WireOverride::encode(value, &self.clock()))
                    .map_err(|error| unreachable(format!("encoding override: {error}")))?;
                pipe.cmd("SET").arg(&key).arg(json).ignore();
                pipe.cmd("SADD")
                    .arg(self.keys.overrides())
                    .arg(breaker)
                    .ignore();
            }
            None => {
                pipe.cmd("DEL").arg(&key).ignore();
                pipe.cmd("SREM")
                    .arg(self.keys.overrides())
                    .arg(breaker)
                    .ignore();
            }
        }
        self.append_change(&mut pipe, "", breaker);
        pipe.cmd("PUBLISH")
            .arg(self.keys.channel())
            .arg("")
            .ignore();
        self.bounded(
            "writing override",
            4,
            pipe.query_async::<()>(&mut connection),
        )
        .await
        .map_err(unreachable)?;
        self.view.lock().set_override(breaker, override_);
        self.publish_view();
        Ok(())
    }
}

/// GCRA in one round trip, in the store's clock (`TIME`), so that every
/// instance of the fleet counts against the same bucket. The key holds the
/// theoretical arrival time of the next request (microseconds) and expires
/// once the bucket is whole again. Returns {allowed, remaining, reset_us,
/// retry_after_us}.
const GCRA: &str = r#"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local nxt = tat + interval
local horizon = now + interval * burst
if nxt > horizon then
  return {0, 0, tat - now, nxt - horizon}
end
redis.call('SET', KEYS[1], nxt, 'PX', math.floor((nxt - now) / 1000) + 1)
return {1, math.floor((horizon - nxt) / interval), nxt - now, 0}
"#;

impl Shared {
    /// One request of the fleet-wide rate limit on `key`.
    pub(crate) async fn rate_limit(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> Result<crate::SharedRate, StoreError> {
        let unreachable = |detail: String| StoreError::Unreachable {
            address: self.address.clone(),
            detail,
        };
        let mut connection = self.connection().map_err(unreachable)?;
        let script = redis::Script::new(GCRA);
        let micros = u64::try_from(interval.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut invocation = script.key(self.keys.rate(key));
        invocation.arg(micros).arg(burst);
        let (allowed, remaining, reset, retry_after): (u64, u64, u64, u64) = self
            .bounded("rate limit", 1, invocation.invoke_async(&mut connection))
            .await
            .map_err(unreachable)?;
        Ok(crate::SharedRate {
            allowed: allowed == 1,
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset: Duration::from_micros(reset),
            retry_after: Duration::from_micros(retry_after),
        })
    }
}

/// What a read of changes found.
struct Updates {
    /// (instance, breaker, its report or `None` if gone).
    reports: Vec<(String, String, Option<LocalReport>)>,
    /// (breaker, its override or `None` if cleared).
    overrides: Vec<(String, Option<Override>)>,
}

/// A stream id `ms-seq` as numbers, to compare.
fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// A stored report, or `None` (and a warning) if unreadable.
fn decode_report(
    instance: &str,
    breaker: &str,
    json: &str,
    clock: &StoreClock,
) -> Option<(String, LocalReport)> {
    match serde_json::from_str::<WireReport>(json) {
        Ok(wire) => Some((breaker.to_owned(), wire.decode(clock))),
        Err(error) => {
            tracing::warn!(breaker, instance, %error, "ignoring an unreadable breaker report");
            None
        }
    }
}

/// The server to connect to: `client`'s, or with Sentinel the master the
/// sentinels name now (a failover is followed at the next connection).
async fn server(
    shared: &Shared,
    client: &Client,
    sentinel: Option<&SentinelConfig>,
) -> Result<Client, Failure> {
    let Some(sentinel) = sentinel else {
        return Ok(client.clone());
    };
    let sentinels: Vec<String> = sentinel
        .sentinels
        .iter()
        .map(|address| format!("redis://{address}/"))
        .collect();
    let node = SentinelNodeConnectionInfo::default()
        .set_redis_connection_info(client.get_connection_info().redis_settings().clone());
    let mut sentinels = SentinelClient::build(
        sentinels,
        sentinel.master_name.clone(),
        Some(node),
        SentinelServerType::Master,
    )
    .map_err(|error| format!("sentinels: {error}"))?;
    shared
        .bounded(
            &format!("asking the sentinels for master {:?}", sentinel.master_name),
            0,
            sentinels.async_get_client(),
        )
        .await
}

/// Note the server this connection reached; a different one than before
/// is a failover (logged, counted, and named in `/status`).
fn note_server(shared: &Shared, client: &Client) {
    let address = client.get_connection_info().addr().to_string();
    let mut server = shared.server.lock();
    if let Some(previous) = server.as_ref()
        && *previous != address
    {
        shared.failovers.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(store = %shared.address, from = %previous, to = %address, "store failed over to another server");
    }
    *server = Some(address);
}

/// Connect the command connection and the subscription.
async fn connect(
    shared: &Shared,
    client: &Client,
    sentinel: Option<&SentinelConfig>,
) -> Result<redis::aio::PubSubStream, Failure> {
    let client = &server(shared, client, sentinel).await?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.io_timeout))
        .set_response_timeout(Some(shared.io_timeout));
    let connection = shared
        .bounded(
            "connecting",
            0,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await?;
    let mut pubsub = shared
        .bounded("connecting the subscription", 0, client.get_async_pubsub())
        .await?;
    shared
        .bounded("subscribing", 1, pubsub.subscribe(shared.keys.channel()))
        .await?;
    *shared.connection.lock() = Some(connection);
    note_server(shared, client);
    Ok(pubsub.into_on_message())
}

/// The task: runs until the store is dropped (it is aborted then).
pub(crate) async fn run(shared: Arc<Shared>, client: Client, config: RedisStoreConfig) {
    let refresh_every = config.rules.refresh_interval();
    loop {
        let failure = match connect(&shared, &client, config.sentinel.as_ref()).await {
            Ok(messages) => serve(&shared, messages, &config, refresh_every).await,
            Err(failure) => failure,
        };
        *shared.connection.lock() = None;
        tracing::debug!(store = %shared.address, %failure, "store connection failed");
        shared.health.degraded(&failure);
        shared.view.lock().mark_all();
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
    if let Err(failure) = shared.measure_clock().await {
        return failure;
    }
    if let Err(failure) = shared.full_resync().await {
        return failure;
    }
    let own = shared.view.lock().own.clone();
    let written = if own.is_empty() {
        shared.refresh().await
    } else {
        shared.write_reports(&own, true).await
    };
    if let Err(failure) = written {
        return failure;
    }
    let mut refreshed = Instant::now();
    let mut clock_measured = Instant::now();
    let mut full_read = Instant::now();
    let mut trim_checked = Instant::now();
    shared.health.recovered();
    shared.view.lock().mark_all();
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
                Some(_) => {
                    // Coalesce a burst of announcements into one read.
                    while let Some(Some(_)) = messages.next().now_or_never() {}
                    shared.catch_up().await
                }
                None => Err("subscription connection closed".to_owned()),
            },
            _ = resync.tick() => {
                shared.traffic.tick();
                // Time alone changes verdicts (an `open_until` passes).
                let current = shared.fleet.borrow().clone();
                shared.view.lock().mark_open(&current);
                let mut full = full_read.elapsed() >= FULL_RESYNC_EVERY;
                let mut result = Ok(());
                if !full && trim_checked.elapsed() >= TRIM_CHECK_EVERY {
                    trim_checked = Instant::now();
                    match shared.missed_changes().await {
                        Ok(missed) => {
                            if missed {
                                tracing::warn!(store = %shared.address, "changes were trimmed from the stream before this instance read them; reading everything again");
                            }
                            full = missed;
                        }
                        Err(failure) => result = Err(failure),
                    }
                }
                if result.is_ok() {
                    result = if full {
                        full_read = Instant::now();
                        shared.full_resync().await
                    } else {
                        shared.catch_up().await
                    };
                }
                if result.is_ok() && clock_measured.elapsed() >= CLOCK_EVERY {
                    clock_measured = Instant::now();
                    result = shared.measure_clock().await;
                }
                if result.is_ok() && refreshed.elapsed() >= refresh_every {
                    refreshed = Instant::now();
                    result = shared.refresh().await;
                }
                result
            }
        };
        if let Err(failure) = result {
            return failure;
        }
    }
}
