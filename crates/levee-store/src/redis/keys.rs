//! Where a fleet's breaker state lives in Redis, and its wire form.
//!
//! Layout, all under the configured namespace `{ns}` (two fleets sharing a
//! Redis server stay apart by namespace):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{ns}:members` | sorted set | member = instance id, score = until when it counts (store time, ms) |
//! | `{ns}:instance:{id}` | hash | field = breaker name, value = JSON [`WireReport`]: that instance's reports |
//! | `{ns}:changes` | stream | one entry per change: `i` = instance id (empty for an override), `n` = breaker name |
//! | `{ns}:override:{name}` | string | JSON [`WireOverride`] |
//! | `{ns}:overrides` | set | names that have an override |
//! | `{ns}:rate:{key}` | string | a fleet-wide rate limit's next theoretical arrival (µs, store time) |
//! | channel `{ns}:breakers` | pub/sub | a change was appended to the stream |
//!
//! Why this shape: an instance reads only what changed since its last read
//! (`XREAD` from the last stream id it saw), so a quiet fleet of any size
//! costs each instance one stream read and one membership read per second;
//! an instance keeps its reports alive with one `ZADD` per refresh, not one
//! write per breaker; and a dead instance stops counting when its
//! membership score passes, a time in the store's own clock, so no two
//! instances' clocks have to agree.
//!
//! Times are milliseconds since the Unix epoch in the store's clock,
//! readable in `redis-cli`.

use serde::{Deserialize, Serialize};

use super::clock::StoreClock;
use crate::model::{LocalReport, Override};

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

    /// The fleet's members and until when each counts.
    pub(crate) fn members(&self) -> String {
        format!("{}:members", self.namespace)
    }

    /// The reports of instance `id`.
    pub(crate) fn instance(&self, id: &str) -> String {
        format!("{}:instance:{id}", self.namespace)
    }

    /// The stream of changes.
    pub(crate) fn changes(&self) -> String {
        format!("{}:changes", self.namespace)
    }

    /// The channel on which writers announce a change.
    pub(crate) fn channel(&self) -> String {
        format!("{}:breakers", self.namespace)
    }

    /// The operator override of `breaker`.
    pub(crate) fn override_(&self, breaker: &str) -> String {
        format!("{}:override:{breaker}", self.namespace)
    }

    /// The names that have an override.
    pub(crate) fn overrides(&self) -> String {
        format!("{}:overrides", self.namespace)
    }

    /// A fleet-wide rate limit's bucket: the theoretical arrival time of
    /// its next request.
    pub(crate) fn rate(&self, key: &str) -> String {
        format!("{}:rate:{key}", self.namespace)
    }
}

/// A report as stored in an instance's hash; times in the store's clock.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireReport {
    /// `LocalReport::open_until`.
    open_until_ms: Option<u64>,
    reason: String,
    failures: u64,
    calls: u64,
    at_ms: u64,
}

impl WireReport {
    /// `report`, its times moved to the store's clock.
    pub(crate) fn encode(report: &LocalReport, clock: &StoreClock) -> WireReport {
        WireReport {
            open_until_ms: report.open_until.map(|until| clock.to_store(until)),
            reason: report.reason.clone(),
            failures: report.failures,
            calls: report.calls,
            at_ms: clock.to_store(report.at),
        }
    }

    /// The report, its times moved to this instance's clock.
    pub(crate) fn decode(self, clock: &StoreClock) -> LocalReport {
        LocalReport {
            open_until: self.open_until_ms.map(|until| clock.to_local(until)),
            reason: self.reason,
            failures: self.failures,
            calls: self.calls,
            at: clock.to_local(self.at_ms),
        }
    }
}

/// An override as stored; times in the store's clock.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum WireOverride {
    ForceOpen { reason: String, at_ms: u64 },
    ForceClosed { reason: String, at_ms: u64 },
    Reset { at_ms: u64 },
}

impl WireOverride {
    /// `value`, its time moved to the store's clock.
    pub(crate) fn encode(value: &Override, clock: &StoreClock) -> WireOverride {
        match value {
            Override::ForceOpen { reason, at } => WireOverride::ForceOpen {
                reason: reason.clone(),
                at_ms: clock.to_store(*at),
            },
            Override::ForceClosed { reason, at } => WireOverride::ForceClosed {
                reason: reason.clone(),
                at_ms: clock.to_store(*at),
            },
            Override::Reset { at } => WireOverride::Reset {
                at_ms: clock.to_store(*at),
            },
        }
    }

    /// The override, its time moved to this instance's clock.
    pub(crate) fn decode(self, clock: &StoreClock) -> Override {
        match self {
            WireOverride::ForceOpen { reason, at_ms } => Override::ForceOpen {
                reason,
                at: clock.to_local(at_ms),
            },
            WireOverride::ForceClosed { reason, at_ms } => Override::ForceClosed {
                reason,
                at: clock.to_local(at_ms),
            },
            WireOverride::Reset { at_ms } => Override::Reset {
                at: clock.to_local(at_ms),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn reports_and_overrides_round_trip_through_json_in_store_time() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        // The store's clock runs 5 s ahead of this instance's.
        let clock = StoreClock::with_offset_ms(5_000);
        let report = LocalReport::open(at + Duration::from_secs(5), "5 consecutive failures", at);
        let json = serde_json::to_string(&WireReport::encode(&report, &clock)).unwrap();
        assert!(json.contains("\"at_ms\":1700000005000"), "{json}");
        let back: WireReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.decode(&clock), report);

        let forced = Override::ForceOpen {
            reason: "maintenance".to_owned(),
            at,
        };
        let json = serde_json::to_string(&WireOverride::encode(&forced, &clock)).unwrap();
        assert!(json.contains("\"kind\":\"force_open\""), "{json}");
        let back: WireOverride = serde_json::from_str(&json).unwrap();
        assert_eq!(back.decode(&clock), forced);
    }

    #[test]
    fn keys_live_under_the_namespace() {
        let keys = Keys::new("prod");
        assert_eq!(keys.instance("a"), "prod:instance:a");
        assert_eq!(keys.override_("db"), "prod:override:db");
        assert_eq!(keys.channel(), "prod:breakers");
        assert_eq!(keys.members(), "prod:members");
        assert_eq!(keys.changes(), "prod:changes");
    }
}
