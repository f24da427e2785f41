//! Who answers lookups: the system resolver, or the DNS servers the config
//! names (through hickory-resolver, which also gives each answer's TTL).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use super::{LOOKUP_TIMEOUT, Lookup};

/// Where names are looked up.
pub enum Resolver {
    /// The system resolver (`getaddrinfo`): `/etc/hosts`, `/etc/resolv.conf`
    /// and whatever else the host is set up with. No TTL.
    System,
    /// These DNS servers, tried in order.
    Servers {
        /// The servers, as configured.
        servers: Vec<SocketAddr>,
        /// The client asking them.
        resolver: Box<TokioResolver>,
    },
}

/// Per-server wait and tries inside [`LOOKUP_TIMEOUT`].
const SERVER_TIMEOUT: Duration = Duration::from_secs(2);
const SERVER_ATTEMPTS: usize = 2;

impl Resolver {
    /// The system resolver when `servers` is empty, else those servers.
    pub fn new(servers: &[SocketAddr]) -> Resolver {
        if servers.is_empty() {
            return Resolver::System;
        }
        let name_servers = servers
            .iter()
            .map(|server| {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.port();
                NameServerConfig::new(server.ip(), true, vec![udp, tcp])
            })
            .collect();
        let mut builder = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            TokioRuntimeProvider::default(),
        );
        let options = builder.options_mut();
        options.timeout = SERVER_TIMEOUT;
        options.attempts = SERVER_ATTEMPTS;
        match builder.build() {
            Ok(resolver) => Resolver::Servers {
                servers: servers.to_vec(),
                resolver: Box::new(resolver),
            },
            Err(error) => {
                // Only a broken TLS setup fails a build, and none is asked
                // for; still, never leave levee without a resolver.
                tracing::error!(%error, "cannot set up the configured DNS servers; using the system resolver");
                Resolver::System
            }
        }
    }

    /// The configured servers (empty: the system resolver).
    pub fn servers(&self) -> &[SocketAddr] {
        match self {
            Resolver::System => &[],
            Resolver::Servers { servers, .. } => servers,
        }
    }

    /// Look `host:port` up, within [`LOOKUP_TIMEOUT`]. The addresses come
    /// sorted, without duplicates, so two answers in another order are the
    /// same answer.
    pub async fn lookup(&self, host: &str, port: u16) -> Lookup {
        let found = tokio::time::timeout(LOOKUP_TIMEOUT, self.ask(host, port)).await;
        match found {
            Ok(Ok((mut addresses, ttl))) => {
                addresses.sort_unstable();
                addresses.dedup();
                if addresses.is_empty() {
                    Lookup::Failed("no address".to_owned())
                } else {
                    Lookup::Resolved(addresses, ttl)
                }
            }
            Ok(Err(why)) => Lookup::Failed(why),
            Err(_) => Lookup::Failed(format!("no answer within {LOOKUP_TIMEOUT:?}")),
        }
    }

    async fn ask(
        &self,
        host: &str,
        port: u16,
    ) -> Result<(Vec<SocketAddr>, Option<Duration>), String> {
        match self {
            Resolver::System => tokio::net::lookup_host((host, port))
                .await
                .map(|addresses| (addresses.collect(), None))
                .map_err(|error| error.to_string()),
            Resolver::Servers { resolver, .. } => {
                let answer = resolver
                    .lookup_ip(host)
                    .await
                    .map_err(|error| error.to_string())?;
                // hickory tells validity as a std Instant; only the remaining
                // duration is kept.
                #[allow(clippy::disallowed_types, clippy::disallowed_methods)]
                let ttl = answer
                    .valid_until()
                    .saturating_duration_since(std::time::Instant::now());
                let addresses = answer.iter().map(|ip| SocketAddr::new(ip, port)).collect();
                Ok((addresses, Some(ttl)))
            }
        }
    }
}
