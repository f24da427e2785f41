//! Endpoint names and the addresses they resolve to.
//!
//! An endpoint written as an IP address needs no lookup. A name is looked up
//! before levee serves (and before a reload that brings it is applied), then
//! again every `resolve_interval` of the clusters that use it, or sooner
//! when the DNS answer's TTL says so (with `[runtime] dns_servers`; the
//! system resolver gives no TTL). Each address a name resolves to becomes an
//! endpoint of its own (`cluster::members`); when the set changes, the
//! gateway rebuilds the clusters that use the name, carrying over what each
//! remaining address learned, and an address that disappears drains.
//!
//! A name that does not resolve does not stop levee (it may appear later):
//! its endpoint is `unresolved`, not routable, not even in panic mode. A
//! name that resolved and then fails keeps its last addresses, which is
//! logged once, counted, and looked up again within [`RETRY_FAILED`].

pub mod metrics;
mod names;
mod report;
mod resolver;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use names::{NameChange, NameKey, NameRecord, NameState, NameStatus, NameTable, Refreshed};
pub use report::report;
pub use resolver::Resolver;

use crate::config::Config;

/// A lookup that takes longer counts as failed: a resolver that does not
/// answer must not hold up levee's start.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// How soon a failed lookup is tried again (or the name's interval, or the
/// TTL of its last answer, if shorter).
pub const RETRY_FAILED: Duration = Duration::from_secs(5);

/// What one lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// These addresses (at least one), and how long the answer is valid if
    /// the resolver says.
    Resolved(Vec<SocketAddr>, Option<Duration>),
    /// None, and why, in words.
    Failed(String),
}

/// "resolves to 10.0.0.1:80 (and 2 more)" or "does not resolve: why".
impl fmt::Display for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lookup::Resolved(addresses, _) => {
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

/// Every endpoint name of `config` that does not resolve now (on the
/// resolver the config names), all looked up at once. IP addresses are not
/// looked up.
pub async fn unresolvable(config: &Config) -> Vec<Unresolvable> {
    let resolver = Resolver::new(&config.runtime.dns_servers);
    let resolver = &resolver;
    let lookups = config.clusters.iter().flat_map(|cluster| {
        cluster
            .endpoints
            .iter()
            .filter(|endpoint| endpoint.host.parse::<IpAddr>().is_err())
            .map(move |endpoint| async move {
                match resolver.lookup(&endpoint.host, endpoint.port).await {
                    Lookup::Resolved(..) => None,
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
