//! The endpoints a cluster's configured addresses stand for: an IP address
//! is one endpoint; a name is one endpoint per address it resolves to (each
//! with its own health, load and breaker), or a single `unresolved` one
//! while it has none.

use std::net::{IpAddr, SocketAddr};

use tokio::time::Instant;

use crate::config::ClusterSettings;
use crate::resolve::{NameState, NameTable};

/// One endpoint to be.
#[derive(Clone, Debug)]
pub struct Member {
    /// What it connects to, `ip:port`; for a name without addresses, the
    /// name as configured. Used in logs, metrics and `/status`.
    pub address: String,
    /// The name as configured (`host:port`) when the address came from one.
    pub name: Option<String>,
    /// The address to connect to; `None` for a name without addresses.
    pub socket: Option<SocketAddr>,
    /// The configured `host:port`: the `Host` of health checks and of
    /// requests that come without one.
    pub configured: String,
    /// For a name without addresses: why, and since when.
    pub unresolved: Option<(String, Instant)>,
}

impl Member {
    /// Whether this is the same endpoint as `other` (what carries over at a
    /// rebuild).
    pub fn same_as(&self, address: &str, name: Option<&str>) -> bool {
        self.address == address && self.name.as_deref() == name
    }
}

/// The members of `settings`, names expanded from `names` (a name not in
/// the table counts as not looked up yet).
pub fn members(settings: &ClusterSettings, names: &NameTable) -> Vec<Member> {
    let mut members = Vec::with_capacity(settings.endpoints.len());
    for endpoint in &settings.endpoints {
        let configured = endpoint.to_string();
        if let Ok(ip) = endpoint.host.parse::<IpAddr>() {
            members.push(Member {
                address: configured.clone(),
                name: None,
                socket: Some(SocketAddr::new(ip, endpoint.port)),
                configured,
                unresolved: None,
            });
            continue;
        }
        let record = names.record(&endpoint.host, endpoint.port);
        let addresses = record
            .as_ref()
            .map(|record| record.addresses.as_slice())
            .unwrap_or_default();
        if addresses.is_empty() {
            let (why, since) = match &record {
                Some(record) => match &record.state {
                    NameState::Failing(why) => (why.clone(), record.since),
                    _ => ("not looked up yet".to_owned(), record.since),
                },
                None => ("not looked up yet".to_owned(), Instant::now()),
            };
            members.push(Member {
                address: configured.clone(),
                name: None,
                socket: None,
                configured,
                unresolved: Some((why, since)),
            });
            continue;
        }
        for socket in addresses {
            members.push(Member {
                address: socket.to_string(),
                name: Some(configured.clone()),
                socket: Some(*socket),
                configured: configured.clone(),
                unresolved: None,
            });
        }
    }
    members
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use levee_core::EndpointId;

    use super::*;
    use crate::cluster::Cluster;
    use crate::config::EndpointAddress;
    use crate::events::EventLog;
    use crate::metrics::Metrics;
    use crate::resolve::{Lookup, NameKey};

    /// Which endpoints `picks` picks land on.
    fn picked(cluster: &Cluster, picks: usize) -> HashSet<usize> {
        (0..picks)
            .filter_map(|_| cluster.pick(Instant::now()))
            .map(|id| id.0)
            .collect()
    }

    #[tokio::test]
    async fn a_name_that_starts_to_resolve_comes_into_rotation_as_its_addresses() {
        let mut settings = ClusterSettings::new(
            "app",
            vec![
                EndpointAddress::new("127.0.0.1", 1),
                EndpointAddress::new("svc.test", 80),
            ],
        );
        settings.slow_start = std::time::Duration::ZERO;
        let names = NameTable::default();
        names.add(std::slice::from_ref(&settings));
        let key = NameKey {
            host: "svc.test".to_owned(),
            port: 80,
        };
        let now = Instant::now();
        names.record_lookup(&key, &Lookup::Failed("NXDOMAIN".to_owned()), now);
        let events = Arc::new(EventLog::default());
        let metrics = Metrics::new();
        let first = members(&settings, &names);
        assert_eq!(first.len(), 2);
        assert_eq!(first[1].address, "svc.test:80");
        assert!(first[1].socket.is_none());
        let cluster =
            Cluster::new(&settings, first, &metrics, Arc::clone(&events)).expect("cluster");
        assert_eq!(picked(&cluster, 100), HashSet::from([0]));
        assert_eq!(cluster.status(now).endpoints[1].state, "unresolved");

        // The name appears, with two addresses: each an endpoint.
        let found = Lookup::Resolved(
            vec![
                "127.0.0.2:80".parse().expect("address"),
                "127.0.0.3:80".parse().expect("address"),
            ],
            None,
        );
        names.record_lookup(&key, &found, now);
        let second = members(&settings, &names);
        assert!(!cluster.has_members(&second));
        let cluster = cluster
            .continued(&settings, second, &metrics, Arc::clone(&events))
            .expect("cluster");
        assert_eq!(picked(&cluster, 300), HashSet::from([0, 1, 2]));
        let endpoint = cluster.endpoint(EndpointId(2));
        assert_eq!(endpoint.address, "127.0.0.3:80");
        assert_eq!(endpoint.name.as_deref(), Some("svc.test:80"));
        assert_eq!(endpoint.host_header, "svc.test:80");
        assert_eq!(
            cluster.is_endpoint_available("svc.test:80", now),
            Some(true)
        );
        let changes: Vec<(String, String)> = events
            .since(0, 100)
            .into_iter()
            .filter(|event| event.kind == "endpoint-resolution")
            .map(|event| (event.from, event.to))
            .collect();
        assert_eq!(
            changes,
            [
                ("unknown".to_owned(), "unresolved".to_owned()),
                ("unresolved".to_owned(), "resolved".to_owned())
            ]
        );
    }
}
