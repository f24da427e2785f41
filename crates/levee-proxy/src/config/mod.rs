//! levee's configuration: a TOML file turned into validated settings.
//!
//! A bad config refuses to start levee, so the whole file is checked and
//! every problem is reported at once, each as `file:line:col: message` at the
//! offending key or value (see `docs/config.md` for the keys).
//!
//! The way through, one file per step:
//! - `document.rs`: TOML text → the raw sections of `raw.rs` (syntax
//!   errors, wrong types, unknown keys), each section read on its own so one
//!   error does not hide the next;
//! - `validate.rs`: raw sections → settings (values parsed with
//!   [`units`] and [`EndpointAddress`], defaults filled in, per-key rules;
//!   a cluster's `health` and `outlier` tables in `validate/`, checked by
//!   levee-core's own parameter constructors);
//! - `checks.rs`: rules between sections (unique names, cluster references,
//!   listen address conflicts);
//! - `report.rs` collects the problems; [`ConfigErrors`] holds them sorted.
//!
//! Code can also build a [`Config`] directly from its public fields (the
//! demo does); [`ListenerSettings::new`] and [`ClusterSettings::new`] fill in
//! the defaults.

mod checks;
mod document;
mod endpoint;
mod error;
mod keys;
mod raw;
mod report;
mod settings;
pub mod units;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use endpoint::{BadEndpointAddress, EndpointAddress};
pub use error::{ConfigError, ConfigErrors};
pub use settings::{
    AdaptiveLimitSettings, AdminSettings, AdmissionSettings, AlertSettings, BadBalancePolicy,
    BadProtocol, BadWhenImpaired, BalancePolicy, CacheSettings, ClusterSettings, Config,
    FleetBreakerSettings, HealthCheckKind, HealthSettings, HedgeSettings, HttpCheckSettings,
    ListenerSettings, OnUnreachable, ProbeSettings, Protocol, ReadinessSettings, RequiredEndpoint,
    RetrySettings, RouteRetry, RouteSettings, RuntimeSettings, StoreKind, StoreSettings,
    WhenImpaired,
};

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
    /// read is one error at `path:1:1`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let origin = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(source) => Config::from_toml_str(&source, &origin),
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
