//! Where a fleet's breaker state lives in Redis, and its wire form.
//!
//! Layout, all under the configured namespace `{ns}` (two fleets sharing a
//! Redis server stay apart by namespace):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{ns}:breaker-names` | set | every breaker name written, for the full resync |
//! | `{ns}:breaker:{name}:reports` | hash | field = instance id, value = JSON [`WireReport`] |
//! | `{ns}:breaker:{name}:override` | string | JSON [`WireOverride`] |
//! | channel `{ns}:breakers` | pub/sub | message = the name of a breaker that changed |
//!
//! Times are milliseconds since the Unix epoch, readable in `redis-cli`.

use serde::{Deserialize, Serialize};

use crate::model::{LocalReport, Override, StoredReport, from_millis, to_millis};

/// The key and channel names of one namespace.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    namespace: String,
}

impl Keys {
    pub(crate) fn new(namespace: &str) -> Self {
        Keys {
            namespace: namespace.to_owned(),
        }
    }

    /// The set of breaker names.
    pub(crate) fn names(&self) -> String {
        format!("{}:breaker-names", self.namespace)
    }

    /// The channel on which writers announce a changed breaker.
    pub(crate) fn channel(&self) -> String {
        format!("{}:breakers", self.namespace)
    }

    /// The hash of per-instance reports of `breaker`.
    pub(crate) fn reports(&self, breaker: &str) -> String {
        format!("{}:breaker:{breaker}:reports", self.namespace)
    }

    /// The operator override of `breaker`.
    pub(crate) fn override_(&self, breaker: &str) -> String {
        format!("{}:breaker:{breaker}:override", self.namespace)
    }
}

/// A report as stored in the hash.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireReport {
    /// `LocalReport::open_until`.
    open_until_ms: Option<u64>,
    reason: String,
    failures: u64,
    calls: u64,
    at_ms: u64,
    /// Readers ignore (and delete) the field after this.
    expires_ms: u64,
}

impl From<&StoredReport> for WireReport {
    fn from(stored: &StoredReport) -> Self {
        let report = &stored.report;
        WireReport {
            open_until_ms: report.open_until.map(to_millis),
            reason: report.reason.clone(),
            failures: report.failures,
            calls: report.calls,
            at_ms: to_millis(report.at),
            expires_ms: to_millis(stored.expires),
        }
    }
}

impl From<WireReport> for StoredReport {
    fn from(wire: WireReport) -> Self {
        StoredReport {
            report: LocalReport {
                open_until: wire.open_until_ms.map(from_millis),
                reason: wire.reason,
                failures: wire.failures,
                calls: wire.calls,
                at: from_millis(wire.at_ms),
            },
            expires: from_millis(wire.expires_ms),
        }
    }
}

/// An override as stored.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum WireOverride {
    ForceOpen { reason: String, at_ms: u64 },
    ForceClosed { reason: String, at_ms: u64 },
    Reset { at_ms: u64 },
}

impl From<&Override> for WireOverride {
    fn from(value: &Override) -> Self {
        match value {
            Override::ForceOpen { reason, at } => WireOverride::ForceOpen {
                reason: reason.clone(),
                at_ms: to_millis(*at),
            },
            Override::ForceClosed { reason, at } => WireOverride::ForceClosed {
                reason: reason.clone(),
                at_ms: to_millis(*at),
            },
            Override::Reset { at } => WireOverride::Reset {
                at_ms: to_millis(*at),
            },
        }
    }
}

impl From<WireOverride> for Override {
    fn from(wire: WireOverride) -> Self {
        match wire {
            WireOverride::ForceOpen { reason, at_ms } => Override::ForceOpen {
                reason,
                at: from_millis(at_ms),
            },
            WireOverride::ForceClosed { reason, at_ms } => Override::ForceClosed {
                reason,
                at: from_millis(at_ms),
            },
            WireOverride::Reset { at_ms } => Override::Reset {
                at: from_millis(at_ms),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn reports_and_overrides_round_trip_through_json() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        let stored = StoredReport {
            report: LocalReport::open(at + Duration::from_secs(5), "5 consecutive failures", at),
            expires: at + Duration::from_secs(10),
        };
        let json = serde_json::to_string(&WireReport::from(&stored)).unwrap();
        assert!(json.contains("\"expires_ms\":1700000010000"), "{json}");
        let back: WireReport = serde_json::from_str(&json).unwrap();
        assert_eq!(StoredReport::from(back), stored);

        let forced = Override::ForceOpen {
            reason: "maintenance".to_owned(),
            at,
        };
        let json = serde_json::to_string(&WireOverride::from(&forced)).unwrap();
        assert!(json.contains("\"kind\":\"force_open\""), "{json}");
        let back: WireOverride = serde_json::from_str(&json).unwrap();
        assert_eq!(Override::from(back), forced);
    }

    #[test]
    fn keys_live_under_the_namespace() {
        let keys = Keys::new("prod");
        assert_eq!(keys.reports("db"), "prod:breaker:db:reports");
        assert_eq!(keys.override_("db"), "prod:breaker:db:override");
        assert_eq!(keys.channel(), "prod:breakers");
        assert_eq!(keys.names(), "prod:breaker-names");
    }
}
