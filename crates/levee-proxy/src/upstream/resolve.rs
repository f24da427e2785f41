//! Endpoint names and the addresses they resolve to: the one place that
//! looks names up and remembers the answer.
//!
//! An endpoint written as an IP address needs no lookup. A name is looked up
//! before levee serves and again every [`period`] (`cluster::resolution`
//! drives it). One that does not resolve does not stop levee (the name may
//! appear later), but its endpoint is `unresolved`: not routable, not even in
//! panic mode, and not counted as healthy for readiness, until a lookup
//! succeeds.
//!
//! Health checks go to the address found here. The connection pool still
//! looks the name up for each new connection; issue #13 (endpoints that follow
//! DNS) is meant to build on [`EndpointResolution`] for both.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::config::{ClusterSettings, Config, EndpointAddress};

/// A lookup that takes longer counts as failed: a resolver that does not
/// answer must not hold up levee's start.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// How often names are looked up again when the cluster has no health
/// checks (with checks: at their interval).
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(5);

/// How often the names of a cluster are looked up again.
pub fn period(settings: &ClusterSettings) -> Duration {
    settings
        .health
        .as_ref()
        .map_or(DEFAULT_PERIOD, |health| health.params.interval())
}

/// What one lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// These addresses, in the resolver's order (at least one).
    Resolved(Vec<SocketAddr>),
    /// None, and why, in words.
    Failed(String),
}

/// "resolves to 10.0.0.1:80 (and 2 more)" or "does not resolve: why".
impl fmt::Display for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lookup::Resolved(addresses) => {
                let first = addresses.first().map(ToString::to_string);
                write!(f, "resolves to {}", first.unwrap_or_default())?;
                if addresses.len() > 1 {
                    write!(f, " (and {} more)", addresses.len() - 1)?;
                }
                Ok(())
            }
            Lookup::Failed(why) => write!(f, "does not resolve: {why}"),
        }
    }
}

/// Look `host:port` up, within [`LOOKUP_TIMEOUT`].
pub async fn lookup(host: &str, port: u16) -> Lookup {
    match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(addresses)) => {
            let addresses: Vec<SocketAddr> = addresses.collect();
            if addresses.is_empty() {
                Lookup::Failed("no address".to_owned())
            } else {
                Lookup::Resolved(addresses)
            }
        }
        Ok(Err(error)) => Lookup::Failed(error.to_string()),
        Err(_) => Lookup::Failed(format!("no answer within {LOOKUP_TIMEOUT:?}")),
    }
}

/// An endpoint name that does not resolve, as `levee validate` warns about
/// it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolvable {
    /// The cluster's name.
    pub cluster: String,
    /// The endpoint as configured, `host:port`.
    pub endpoint: String,
    /// What the resolver said.
    pub why: String,
}

impl fmt::Display for Unresolvable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cluster {:?}: endpoint {:?} does not resolve ({}); levee starts anyway, keeps it out of rotation and looks the name up again",
            self.cluster, self.endpoint, self.why
        )
    }
}

/// Every endpoint name of `config` that does not resolve now, all looked up
/// at once. IP addresses are not looked up.
pub async fn unresolvable(config: &Config) -> Vec<Unresolvable> {
    let lookups = config.clusters.iter().flat_map(|cluster| {
        cluster
            .endpoints
            .iter()
            .filter(|endpoint| endpoint.host.parse::<IpAddr>().is_err())
            .map(move |endpoint| async move {
                match lookup(&endpoint.host, endpoint.port).await {
                    Lookup::Resolved(_) => None,
                    Lookup::Failed(why) => Some(Unresolvable {
                        cluster: cluster.name.clone(),
                        endpoint: endpoint.to_string(),
                        why,
                    }),
                }
            })
    });
    futures_util::future::join_all(lookups)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Where a name stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameState {
    /// Not looked up yet.
    Pending,
    /// The latest lookup found addresses.
    Resolved,
    /// The latest lookup failed, for this reason.
    Unresolved(String),
}

/// What is known of one endpoint's address.
pub struct EndpointResolution {
    host: String,
    port: u16,
    /// An IP address as written: never looked up.
    literal: bool,
    /// The address checks go to: the first of the latest successful lookup
    /// (a name that stops resolving keeps its last one), or the literal.
    address: ArcSwapOption<SocketAddr>,
    /// Where the name stands, and since when.
    state: Mutex<(NameState, Instant)>,
}

impl EndpointResolution {
    /// The resolution of `address`: done already for an IP address, pending
    /// for a name.
    pub fn new(address: &EndpointAddress) -> EndpointResolution {
        let ip = address.host.parse::<IpAddr>().ok();
        EndpointResolution {
            host: address.host.clone(),
            port: address.port,
            literal: ip.is_some(),
            address: ArcSwapOption::from_pointee(ip.map(|ip| SocketAddr::new(ip, address.port))),
            state: Mutex::new((
                match ip {
                    Some(_) => NameState::Resolved,
                    None => NameState::Pending,
                },
                Instant::now(),
            )),
        }
    }

    /// Whether the endpoint is written as a name (and so is looked up).
    pub fn is_name(&self) -> bool {
        !self.literal
    }

    /// The address to check, if one is known.
    pub fn address(&self) -> Option<SocketAddr> {
        self.address.load().as_deref().copied()
    }

    /// Where the name stands.
    pub fn state(&self) -> NameState {
        self.state.lock().0.clone()
    }

    /// Since when the name stands where it does.
    pub fn since(&self) -> Instant {
        self.state.lock().1
    }

    /// Look the name up now and remember the answer; returns it with the
    /// state before. An IP address is not looked up.
    pub async fn refresh(&self) -> (NameState, Lookup) {
        let found = match self.address() {
            Some(address) if self.literal => Lookup::Resolved(vec![address]),
            _ => lookup(&self.host, self.port).await,
        };
        (self.record(&found), found)
    }

    /// Remember what a lookup found; returns the state before.
    pub fn record(&self, found: &Lookup) -> NameState {
        let next = match found {
            Lookup::Resolved(addresses) => {
                self.address
                    .store(addresses.first().copied().map(Into::into));
                NameState::Resolved
            }
            Lookup::Failed(why) => NameState::Unresolved(why.clone()),
        };
        let mut state = self.state.lock();
        if std::mem::discriminant(&state.0) != std::mem::discriminant(&next) {
            state.1 = Instant::now();
        }
        std::mem::replace(&mut state.0, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ip_address_is_never_looked_up() {
        let resolution = EndpointResolution::new(&EndpointAddress::new("127.0.0.1", 80));
        assert!(!resolution.is_name());
        assert_eq!(resolution.state(), NameState::Resolved);
        let address: SocketAddr = "127.0.0.1:80".parse().expect("address");
        assert_eq!(resolution.address(), Some(address));
        let (before, found) = resolution.refresh().await;
        assert_eq!(before, NameState::Resolved);
        assert_eq!(found, Lookup::Resolved(vec![address]));
    }

    #[tokio::test]
    async fn a_name_is_pending_until_looked_up() {
        // "127.1" is a name to the parser and 127.0.0.1 to the resolver.
        let resolution = EndpointResolution::new(&EndpointAddress::new("127.1", 80));
        assert!(resolution.is_name());
        assert_eq!(resolution.state(), NameState::Pending);
        assert_eq!(resolution.address(), None);
        let (before, found) = resolution.refresh().await;
        assert_eq!(before, NameState::Pending);
        assert_eq!(found.to_string(), "resolves to 127.0.0.1:80");
        assert_eq!(resolution.state(), NameState::Resolved);
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_says_why() {
        // .invalid is reserved never to resolve (RFC 6761).
        let resolution = EndpointResolution::new(&EndpointAddress::new("no-such-host.invalid", 80));
        let (_, found) = resolution.refresh().await;
        assert!(matches!(found, Lookup::Failed(_)), "{found:?}");
        assert!(
            found.to_string().starts_with("does not resolve: "),
            "{found}"
        );
        assert!(matches!(resolution.state(), NameState::Unresolved(_)));
        assert_eq!(resolution.address(), None);
    }
}
