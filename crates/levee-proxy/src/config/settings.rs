//! The whole validated config ([`Config`]), made of each section's settings
//! (defined in the section's module): what the rest of levee reads. Every
//! value has been checked, every default filled in; `docs/config.md`
//! describes the same keys from the user's side.

use super::{
    AdminSettings, AlertSettings, ClusterSettings, ListenerSettings, LogSettings,
    ReadinessSettings, RuntimeSettings, StoreSettings,
};

/// A whole, valid configuration.
///
/// Build one from TOML with [`Config::load`] / [`Config::from_toml_str`], or
/// in code from the public fields (the demo does):
///
/// ```
/// use levee_proxy::config::{ClusterSettings, Config, EndpointAddress, ListenerSettings};
///
/// let config = Config {
///     listeners: vec![ListenerSettings::new("web", "127.0.0.1:8080".parse().unwrap(), "app")],
///     clusters: vec![ClusterSettings::new("app", vec![EndpointAddress::new("127.0.0.1", 8000)])],
///     ..Config::default()
/// };
/// assert!(config.cluster("app").is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// `[admin]`.
    pub admin: AdminSettings,
    /// `[runtime]`.
    pub runtime: RuntimeSettings,
    /// `[log]`: levee's own log lines.
    pub log: LogSettings,
    /// `[[listener]]`, in file order. Never empty when read from a file.
    pub listeners: Vec<ListenerSettings>,
    /// `[[cluster]]`, in file order; names are unique.
    pub clusters: Vec<ClusterSettings>,
    /// `[readiness]`: when this node counts as impaired.
    pub readiness: ReadinessSettings,
    /// `[[alert]]`: webhooks that get state changes.
    pub alerts: Vec<AlertSettings>,
    /// `[store]`: where shared breaker state lives.
    pub store: StoreSettings,
    /// What is allowed but probably not meant (a route no request can
    /// reach), at its place in the file; `levee validate` prints them and
    /// `levee run` logs them.
    pub warnings: Vec<super::ConfigError>,
}

impl Config {
    /// The cluster with this name.
    pub fn cluster(&self, name: &str) -> Option<&ClusterSettings> {
        self.clusters.iter().find(|cluster| cluster.name == name)
    }
}

/// The balancing policies live with the balancer in `levee-core`; the
/// config names them by their `as_str` spelling.
pub use levee_core::balance::{BadBalancePolicy, BalancePolicy};

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use levee_core::outlier::OutlierParams;

    use crate::config::{AdminSettings, EndpointAddress, Protocol, RuntimeSettings};

    #[test]
    fn enums_round_trip_through_their_config_spelling() {
        for policy in BalancePolicy::ALL {
            assert_eq!(policy.to_string().parse(), Ok(policy));
        }
        for protocol in [Protocol::Http, Protocol::Tcp] {
            assert_eq!(protocol.to_string().parse(), Ok(protocol));
        }
        assert_eq!(Protocol::Tcp.to_string(), "tcp");
    }

    #[test]
    fn the_error_message_lists_every_policy() {
        let error = "random".parse::<BalancePolicy>().unwrap_err().to_string();
        for policy in BalancePolicy::ALL {
            assert!(error.contains(&format!("{:?}", policy.as_str())), "{error}");
        }
    }

    #[test]
    fn constructors_fill_in_defaults() {
        let listener = ListenerSettings::new("web", "127.0.0.1:80".parse().unwrap(), "app");
        assert_eq!(listener.protocol, Protocol::Http);
        assert_eq!(listener.tcp_replay, 0);
        let cluster = ClusterSettings::new("app", vec![EndpointAddress::new("a", 1)]);
        assert_eq!(cluster.balance, BalancePolicy::P2cEwma);
        assert_eq!(cluster.connect_timeout, Duration::from_secs(1));
        assert_eq!(cluster.request_timeout, Duration::from_secs(15));
        assert_eq!(cluster.idle_timeout, Duration::from_secs(90));
        assert_eq!(cluster.max_idle_per_endpoint, 128);
        assert_eq!(cluster.ewma_decay, Duration::from_secs(10));
        assert_eq!(cluster.health, None);
        assert_eq!(cluster.outlier, Some(OutlierParams::default()));
        assert_eq!(cluster.panic_threshold_percent, 50);
        assert_eq!(cluster.slow_start, Duration::from_secs(10));
        let check = crate::config::HttpCheckSettings::new("/healthz");
        assert_eq!(check.method, http::Method::GET);
        assert_eq!(check.expect_status, [200]);
        assert_eq!(
            AdminSettings::default().listen.to_string(),
            "127.0.0.1:9901"
        );
        assert_eq!(
            RuntimeSettings::default().drain_timeout,
            Duration::from_secs(30)
        );
    }
}
