//! Every endpoint name of the running config, what it resolved to last, and
//! when to look again. One table for the gateway: a name several clusters
//! use is looked up once.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::future::join_all;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::{Lookup, RETRY_FAILED, Resolver};
use crate::config::ClusterSettings;

/// A TTL shorter than this is not followed more often: levee's loop looks
/// at the table once a second.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// An endpoint name and port, as configured.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameKey {
    /// The name.
    pub host: String,
    /// The port.
    pub port: u16,
}

/// `host:port`, as configured.
impl fmt::Display for NameKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Where a name stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameState {
    /// Not looked up yet.
    Pending,
    /// The latest lookup found addresses.
    Resolved,
    /// The latest lookup failed, for this reason (the last addresses found,
    /// if any, are kept).
    Failing(String),
}

impl NameState {
    /// One word for logs, events and `/status`: `pending`, `resolved`, and
    /// for a failing name `stale` when it keeps earlier addresses, else
    /// `unresolved`.
    pub fn label(&self, has_addresses: bool) -> &'static str {
        match (self, has_addresses) {
            (NameState::Pending, _) => "pending",
            (NameState::Resolved, _) => "resolved",
            (NameState::Failing(_), true) => "stale",
            (NameState::Failing(_), false) => "unresolved",
        }
    }
}

/// What is known of one name.
#[derive(Clone, Debug)]
pub struct NameRecord {
    /// The addresses of the latest successful lookup, sorted (empty until
    /// one succeeds).
    pub addresses: Vec<SocketAddr>,
    /// Where the name stands.
    pub state: NameState,
    /// Since when (the latest change of state or of addresses).
    pub since: Instant,
    /// When to look again.
    next: Instant,
    /// The TTL of the latest answer, if the resolver gave one.
    ttl: Option<Duration>,
    /// The shortest `resolve_interval` of the clusters using it.
    interval: Duration,
    /// The clusters using it, in config order.
    clusters: Vec<String>,
}

/// A change a lookup made to a name, for logs and events.
#[derive(Clone, Debug)]
pub struct NameChange {
    /// The name.
    pub name: NameKey,
    /// The clusters using it.
    pub clusters: Vec<String>,
    /// Where it stood, and its addresses, before.
    pub before: (NameState, Vec<SocketAddr>),
    /// Where it stands now, and its addresses.
    pub after: (NameState, Vec<SocketAddr>),
}

impl NameChange {
    /// Whether the set of addresses changed (the clusters using the name
    /// must be rebuilt).
    pub fn addresses_changed(&self) -> bool {
        self.before.1 != self.after.1
    }
}

/// One name as `/status` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NameStatus {
    /// `host:port` as configured.
    pub name: String,
    /// `pending`, `resolved`, `stale` (lookups fail, the last addresses
    /// stay in use) or `unresolved`.
    pub state: &'static str,
    /// Why the latest lookup failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The addresses in use, each an endpoint.
    pub addresses: Vec<String>,
    /// The clusters using it.
    pub clusters: Vec<String>,
    /// Seconds until the next lookup.
    pub next_lookup_seconds: f64,
}

/// What a round of lookups did.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// The names whose state or addresses changed.
    pub changes: Vec<NameChange>,
    /// The names whose lookup failed (changed or not).
    pub failed: Vec<NameKey>,
}

impl Refreshed {
    /// Whether some name resolves to other addresses now (the clusters
    /// using it must be rebuilt).
    pub fn addresses_changed(&self) -> bool {
        self.changes.iter().any(NameChange::addresses_changed)
    }
}

/// The gateway's names.
pub struct NameTable {
    resolver: ArcSwap<Resolver>,
    names: Mutex<HashMap<NameKey, NameRecord>>,
}

impl Default for NameTable {
    fn default() -> NameTable {
        NameTable::new(Resolver::System)
    }
}

impl NameTable {
    /// An empty table asking `resolver`.
    pub fn new(resolver: Resolver) -> NameTable {
        NameTable {
            resolver: ArcSwap::from_pointee(resolver),
            names: Mutex::new(HashMap::new()),
        }
    }

    /// Ask these DNS servers from now on (empty: the system resolver); a
    /// change makes every name due at once.
    pub fn set_servers(&self, servers: &[SocketAddr]) {
        if self.resolver.load().servers() == servers {
            return;
        }
        self.resolver.store(Arc::new(Resolver::new(servers)));
        let now = Instant::now();
        for record in self.names.lock().values_mut() {
            record.next = now;
        }
    }

    /// Look one name up on the current resolver, without recording it.
    pub async fn lookup(&self, host: &str, port: u16) -> Lookup {
        let resolver = self.resolver.load_full();
        resolver.lookup(host, port).await
    }

    /// Add the names of `clusters` not in the table yet (pending). Nothing
    /// is removed: until a new config is in force, the running one's names
    /// stay followed (see [`NameTable::retain`]).
    pub fn add(&self, clusters: &[ClusterSettings]) {
        let now = Instant::now();
        let mut names = self.names.lock();
        for (key, interval, users) in names_of(clusters) {
            names.entry(key).or_insert_with(|| NameRecord {
                addresses: Vec::new(),
                state: NameState::Pending,
                since: now,
                next: now,
                ttl: None,
                interval,
                clusters: users,
            });
        }
    }

    /// Keep exactly the names of `clusters` (the config now in force), with
    /// their intervals and users.
    pub fn retain(&self, clusters: &[ClusterSettings]) {
        self.add(clusters);
        let wanted: HashMap<NameKey, (Duration, Vec<String>)> = names_of(clusters)
            .into_iter()
            .map(|(key, interval, users)| (key, (interval, users)))
            .collect();
        let now = Instant::now();
        let mut names = self.names.lock();
        names.retain(|key, _| wanted.contains_key(key));
        for (key, record) in names.iter_mut() {
            if let Some((interval, users)) = wanted.get(key) {
                // A shorter interval applies from now on.
                record.next = record.next.min(now + *interval);
                record.interval = *interval;
                record.clusters.clone_from(users);
            }
        }
    }

    /// Every name, sorted, as `/status` shows it.
    pub fn status(&self, now: Instant) -> Vec<NameStatus> {
        let names = self.names.lock();
        let mut out: Vec<NameStatus> = names
            .iter()
            .map(|(key, record)| NameStatus {
                name: key.to_string(),
                state: record.state.label(!record.addresses.is_empty()),
                error: match &record.state {
                    NameState::Failing(why) => Some(why.clone()),
                    _ => None,
                },
                addresses: record.addresses.iter().map(ToString::to_string).collect(),
                clusters: record.clusters.clone(),
                next_lookup_seconds: record.next.saturating_duration_since(now).as_secs_f64(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// What is known of `host:port`, if it is in the table.
    pub fn record(&self, host: &str, port: u16) -> Option<NameRecord> {
        let key = NameKey {
            host: host.to_owned(),
            port,
        };
        self.names.lock().get(&key).cloned()
    }

    /// Look up every name never looked up yet, all at once, and record the
    /// answers (before levee serves, or applies a reload).
    pub async fn resolve_pending(&self) -> Refreshed {
        let pending: Vec<NameKey> = self
            .names
            .lock()
            .iter()
            .filter(|(_, record)| record.state == NameState::Pending)
            .map(|(key, _)| key.clone())
            .collect();
        self.refresh(pending).await
    }

    /// Look up every name whose time has come, and record the answers.
    pub async fn refresh_due(&self, now: Instant) -> Refreshed {
        let due: Vec<NameKey> = self
            .names
            .lock()
            .iter()
            .filter(|(_, record)| record.next <= now)
            .map(|(key, _)| key.clone())
            .collect();
        self.refresh(due).await
    }

    async fn refresh(&self, keys: Vec<NameKey>) -> Refreshed {
        if keys.is_empty() {
            return Refreshed::default();
        }
        let resolver = self.resolver.load_full();
        let answers = join_all(keys.into_iter().map(|key| {
            let resolver = Arc::clone(&resolver);
            async move {
                let found = resolver.lookup(&key.host, key.port).await;
                (key, found)
            }
        }))
        .await;
        let now = Instant::now();
        let mut refreshed = Refreshed::default();
        for (key, found) in answers {
            refreshed
                .changes
                .extend(self.record_lookup(&key, &found, now));
            if matches!(found, Lookup::Failed(_)) {
                refreshed.failed.push(key);
            }
        }
        refreshed
    }

    /// Remember what a lookup of `key` found; the change it made, if any.
    pub fn record_lookup(&self, key: &NameKey, found: &Lookup, now: Instant) -> Option<NameChange> {
        let mut names = self.names.lock();
        let record = names.get_mut(key)?;
        let before = (record.state.clone(), record.addresses.clone());
        match found {
            Lookup::Resolved(addresses, ttl) => {
                record.state = NameState::Resolved;
                record.addresses.clone_from(addresses);
                let wait = ttl.map_or(record.interval, |ttl| {
                    ttl.clamp(MIN_REFRESH, record.interval.max(MIN_REFRESH))
                });
                record.next = now + wait;
                record.ttl = *ttl;
            }
            Lookup::Failed(why) => {
                record.state = NameState::Failing(why.clone());
                // Soon, and no later than a short TTL said the answer might
                // change.
                let wait = record.interval.min(RETRY_FAILED);
                record.next = now
                    + record
                        .ttl
                        .map_or(wait, |ttl| wait.min(ttl.max(MIN_REFRESH)));
            }
        }
        let changed = std::mem::discriminant(&before.0) != std::mem::discriminant(&record.state)
            || before.1 != record.addresses;
        if !changed {
            return None;
        }
        record.since = now;
        Some(NameChange {
            name: key.clone(),
            clusters: record.clusters.clone(),
            before,
            after: (record.state.clone(), record.addresses.clone()),
        })
    }
}

/// Each name of `clusters` (IP addresses are not names), with the shortest
/// `resolve_interval` of the clusters using it, and those clusters.
fn names_of(clusters: &[ClusterSettings]) -> Vec<(NameKey, Duration, Vec<String>)> {
    let mut out: Vec<(NameKey, Duration, Vec<String>)> = Vec::new();
    for cluster in clusters {
        for endpoint in &cluster.endpoints {
            if endpoint.host.parse::<IpAddr>().is_ok() {
                continue;
            }
            let key = NameKey {
                host: endpoint.host.clone(),
                port: endpoint.port,
            };
            match out.iter_mut().find(|(known, ..)| *known == key) {
                Some((_, interval, users)) => {
                    *interval = (*interval).min(cluster.resolve_interval);
                    if !users.contains(&cluster.name) {
                        users.push(cluster.name.clone());
                    }
                }
                None => out.push((key, cluster.resolve_interval, vec![cluster.name.clone()])),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EndpointAddress;

    fn cluster(name: &str, endpoints: &[(&str, u16)], interval: u64) -> ClusterSettings {
        let mut cluster = ClusterSettings::new(
            name,
            endpoints
                .iter()
                .map(|(host, port)| EndpointAddress::new(*host, *port))
                .collect(),
        );
        cluster.resolve_interval = Duration::from_secs(interval);
        cluster
    }

    fn key(host: &str, port: u16) -> NameKey {
        NameKey {
            host: host.to_owned(),
            port,
        }
    }

    fn addresses(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().expect("address")).collect()
    }

    #[tokio::test]
    async fn ip_addresses_are_not_names_and_a_shared_name_is_kept_once() {
        let table = NameTable::default();
        table.add(&[
            cluster("a", &[("127.0.0.1", 80), ("svc.test", 80)], 30),
            cluster("b", &[("svc.test", 80)], 10),
        ]);
        table.retain(&[
            cluster("a", &[("127.0.0.1", 80), ("svc.test", 80)], 30),
            cluster("b", &[("svc.test", 80)], 10),
        ]);
        assert!(table.record("127.0.0.1", 80).is_none());
        let record = table.record("svc.test", 80).expect("record");
        assert_eq!(record.state, NameState::Pending);
        assert_eq!(record.interval, Duration::from_secs(10));
        assert_eq!(record.clusters, ["a", "b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_keeps_the_last_addresses_and_a_ttl_sets_the_next_look() {
        let table = NameTable::default();
        table.add(&[cluster("a", &[("svc.test", 80)], 30)]);
        let name = key("svc.test", 80);
        let now = Instant::now();
        let found = Lookup::Resolved(addresses(&["10.0.0.1:80"]), Some(Duration::from_secs(3)));
        let change = table.record_lookup(&name, &found, now).expect("a change");
        assert!(change.addresses_changed());
        // The TTL (3 s) comes before the interval (30 s).
        let early = table.refresh_due(now + Duration::from_secs(2)).await;
        assert!(early.changes.is_empty() && early.failed.is_empty());

        let failed = Lookup::Failed("timed out".to_owned());
        let change = table.record_lookup(&name, &failed, now).expect("a change");
        assert!(!change.addresses_changed(), "the last addresses stay");
        assert_eq!(change.after.0.label(true), "stale");
        let record = table.record("svc.test", 80).expect("record");
        assert_eq!(record.addresses, addresses(&["10.0.0.1:80"]));
        // Failing again is no news.
        assert!(table.record_lookup(&name, &failed, now).is_none());

        let moved = Lookup::Resolved(addresses(&["10.0.0.2:80"]), None);
        let change = table.record_lookup(&name, &moved, now).expect("a change");
        assert!(change.addresses_changed());
        assert_eq!(change.before.1, addresses(&["10.0.0.1:80"]));
    }

    #[tokio::test]
    async fn retain_drops_names_no_cluster_uses() {
        let table = NameTable::default();
        table.add(&[cluster("a", &[("old.test", 80)], 30)]);
        table.add(&[cluster("a", &[("new.test", 80)], 30)]);
        assert!(
            table.record("old.test", 80).is_some(),
            "added, not replaced"
        );
        table.retain(&[cluster("a", &[("new.test", 80)], 30)]);
        assert!(table.record("old.test", 80).is_none());
        assert!(table.record("new.test", 80).is_some());
    }
}
