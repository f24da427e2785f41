//! What a [`RedisStore`](super::RedisStore) needs to know, with the
//! defaults that give the 1 s propagation bound.

use std::time::Duration;

use crate::{FleetRules, StoreError};

/// Configuration of a Redis-backed store.
#[derive(Clone, Debug)]
pub struct RedisStoreConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prefix of every key and channel: fleets sharing a Redis server but
    /// not their breakers use different namespaces.
    pub namespace: String,
    /// This instance's id, unique in the fleet (host name plus worker):
    /// the field its reports are stored under and what the quorum counts.
    pub instance_id: String,
    /// Quorum and report TTL; must be the same on every instance.
    pub rules: FleetRules,
    /// How often everything is re-read, healing a lost pub/sub message; the
    /// bound on staleness while connected.
    pub resync_interval: Duration,
    /// The longest any Redis command (or connection attempt) may take
    /// before the store is declared degraded.
    pub io_timeout: Duration,
    /// Pause between reconnection attempts while degraded.
    pub reconnect_interval: Duration,
    /// Redis Sentinel: the master is looked up through these sentinels at
    /// every connection (so a failover is followed), and `url` only gives
    /// the database, user and password. `None`: `url` is the server.
    pub sentinel: Option<SentinelConfig>,
}

/// Where a Sentinel-managed master is found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelConfig {
    /// The sentinels, `host:port` each (asked in order).
    pub sentinels: Vec<String>,
    /// The name the sentinels monitor the master under.
    pub master_name: String,
}

impl RedisStoreConfig {
    /// Defaults: resync every 1 s, 500 ms I/O timeout, reconnect every
    /// 250 ms, quorum 1, 10 s report TTL.
    pub fn new(
        url: impl Into<String>,
        namespace: impl Into<String>,
        instance_id: impl Into<String>,
    ) -> Self {
        RedisStoreConfig {
            url: url.into(),
            namespace: namespace.into(),
            instance_id: instance_id.into(),
            rules: FleetRules::new(),
            resync_interval: Duration::from_secs(1),
            io_timeout: Duration::from_millis(500),
            reconnect_interval: Duration::from_millis(250),
            sentinel: None,
        }
    }

    /// Find the master through Redis Sentinel.
    pub fn with_sentinel(mut self, sentinel: SentinelConfig) -> Self {
        self.sentinel = Some(sentinel);
        self
    }

    /// Replace the rules.
    pub fn with_rules(mut self, rules: FleetRules) -> Self {
        self.rules = rules;
        self
    }

    /// Every problem, naming the key.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        let bad = |key: &str, problem: &str| {
            Err(StoreError::BadConfig {
                key: key.to_owned(),
                problem: problem.to_owned(),
            })
        };
        if self.namespace.is_empty() || self.namespace.contains(char::is_whitespace) {
            return bad("namespace", "must be non-empty, without spaces");
        }
        if self.instance_id.is_empty() {
            return bad("instance_id", "must be non-empty");
        }
        if self.resync_interval.is_zero() {
            return bad("resync_interval", "must be positive");
        }
        if self.io_timeout.is_zero() {
            return bad("io_timeout", "must be positive");
        }
        if self.reconnect_interval.is_zero() {
            return bad("reconnect_interval", "must be positive");
        }
        if let Some(sentinel) = &self.sentinel {
            if sentinel.sentinels.is_empty() {
                return bad("sentinels", "must name at least one sentinel");
            }
            if sentinel.master_name.is_empty() {
                return bad("master_name", "must be non-empty");
            }
        }
        Ok(())
    }
}
