//! levee's configuration: a TOML file turned into validated settings.
//!
//! A bad config refuses to start levee, so the whole file is checked and
//! every problem is reported at once, each as `file:line:col: message` at the
//! offending key or value (see `docs/config.md` for the keys).
//!
//! One module per section, holding its raw form (serde's view of the
//! table), its validation and its settings: `admin.rs`, `runtime.rs`,
//! `listener.rs` (with `route.rs`), `cluster.rs` (with `health.rs`,
//! `outlier.rs`, `retry.rs`, `admission.rs`, `cache.rs`, `breaker.rs`),
//! `readiness.rs`, `alert.rs`, `store.rs`. Around them, the steps:
//! - `document.rs`: TOML text → the raw sections (syntax errors, wrong
//!   types, unknown keys), each section read on its own so one error does
//!   not hide the next; `raw.rs` holds the whole, `table.rs` what the
//!   raw tables share;
//! - `validate.rs`: raw sections → settings, one section at a time, with
//!   the shared value parsers (`values.rs`, [`units`], [`EndpointAddress`]);
//!   levee-core's
//!   parameter constructors check their own parameters;
//! - `checks.rs`: rules between sections (unique names, cluster references,
//!   listen address conflicts);
//! - `report.rs` collects the problems; [`ConfigErrors`] holds them sorted;
//!   `settings.rs` is the whole [`Config`].
//!
//! Code can also build a [`Config`] directly from its public fields (the
//! demo does); [`ListenerSettings::new`] and [`ClusterSettings::new`] fill in
//! the defaults.

mod access_log;
mod admin;
mod admission;
mod alert;
mod breaker;
mod cache;
mod checks;
mod cluster;
mod document;
mod endpoint;
mod error;
mod health;
mod keys;
mod listener;
mod log;
mod outlier;
mod rate_limit;
mod raw;
mod readiness;
mod report;
mod retry;
mod route;
mod runtime;
mod settings;
mod store;
mod table;
mod throttle;
mod tls;
pub mod units;
mod upstream;
mod validate;
mod values;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use access_log::{AccessLogFormat, AccessLogSettings, AccessLogTarget};
pub use admin::AdminSettings;
pub use admission::{AdaptiveLimitSettings, AdmissionSettings};
pub use alert::AlertSettings;
pub use breaker::FleetBreakerSettings;
pub use cache::CacheSettings;
pub use cluster::ClusterSettings;
pub use endpoint::{BadEndpointAddress, EndpointAddress};
pub use error::{ConfigError, ConfigErrors};
pub use health::{HealthCheckKind, HealthSettings, HttpCheckSettings};
pub use listener::{
    BadProtocol, BadWhenImpaired, FirstByteTimeout, ListenerSettings, Protocol, WhenImpaired,
};
pub use log::{LogFormat, LogSettings};
pub use rate_limit::{RateKey, RateLimitSettings};
pub use readiness::{ProbeSettings, ReadinessSettings, RequiredEndpoint};
pub use retry::{HedgeSettings, RetrySettings};
pub use route::{RouteRetry, RouteSettings};
pub use runtime::RuntimeSettings;
pub use settings::{BadBalancePolicy, BalancePolicy, Config};
pub use store::{OnUnreachable, StoreKind, StoreSettings};
pub use throttle::ThrottleSettings;
pub use tls::{CertificateFiles, ListenerTlsSettings, TlsVersion, UpstreamTlsSettings};
pub use upstream::UpstreamProtocol;

use report::Report;

impl Config {
    /// Read and validate a config from TOML text. `origin` names the source
    /// in messages (usually the file name).
    pub fn from_toml_str(source: &str, origin: &str) -> Result<Config, ConfigErrors> {
        let mut report = Report::new(origin, source);
        let Some(raw) = document::read(source, &mut report) else {
            return Err(report.into_errors());
        };
        let mut config = validate::config(&raw, &mut report);
        config.warnings = report.take_warnings();
        report.finish(config)
    }

    /// Read and validate the config file at `path`. A file that cannot be
    /// read is one error at `path:1:1`. Relative paths in it (TLS files)
    /// are taken from the file's directory, as a user reading the file
    /// would expect, not from levee's working directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let origin = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(source) => {
                let mut config = Config::from_toml_str(&source, &origin)?;
                if let Some(dir) = path.parent() {
                    config.resolve_paths(dir);
                }
                Ok(config)
            }
            Err(error) => Err(ConfigError {
                origin,
                line: 1,
                column: 1,
                message: format!("cannot read config: {error}"),
            }
            .into()),
        }
    }
}

impl Config {
    /// Make the relative paths of the config relative to `dir`.
    fn resolve_paths(&mut self, dir: &Path) {
        for listener in &mut self.listeners {
            if let Some(tls) = &mut listener.tls {
                tls.resolve_paths(dir);
            }
            if let Some(access_log) = &mut listener.access_log {
                access_log.resolve_paths(dir);
            }
        }
        for cluster in &mut self.clusters {
            if let Some(tls) = &mut cluster.tls {
                tls.resolve_paths(dir);
            }
        }
    }
}
