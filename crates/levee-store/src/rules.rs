//! The rules every instance applies to the same stored data to reach the
//! same verdict: the quorum per breaker and how long a report counts.
//!
//! Every reader aggregates for itself, so the rules must be the same
//! configuration on every instance of a fleet.

use std::collections::HashMap;
use std::time::Duration;

use crate::StoreError;

/// How long a report counts when its writer stops refreshing it (it died,
/// or lost the store). Long enough to ride out a store hiccup, short
/// enough that a dead instance does not hold the fleet open.
pub const DEFAULT_REPORT_TTL: Duration = Duration::from_secs(10);

/// Quorum and report lifetime, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetRules {
    default_quorum: u32,
    quorums: HashMap<String, u32>,
    report_ttl: Duration,
}

impl Default for FleetRules {
    fn default() -> Self {
        FleetRules {
            default_quorum: 1,
            quorums: HashMap::new(),
            report_ttl: DEFAULT_REPORT_TTL,
        }
    }
}

impl FleetRules {
    /// Quorum 1 (any instance opens the breaker for the fleet) and a 10 s
    /// report TTL.
    pub fn new() -> Self {
        FleetRules::default()
    }

    /// Distinct instances that must report open before a breaker opens for
    /// the fleet, unless set per breaker. Rejects 0.
    pub fn with_quorum(mut self, quorum: u32) -> Result<Self, StoreError> {
        self.default_quorum = check_quorum("quorum", quorum)?;
        Ok(self)
    }

    /// The quorum of one breaker. Rejects 0.
    pub fn with_breaker_quorum(
        mut self,
        breaker: impl Into<String>,
        quorum: u32,
    ) -> Result<Self, StoreError> {
        let breaker = breaker.into();
        let quorum = check_quorum(&format!("breaker.{breaker}.quorum"), quorum)?;
        self.quorums.insert(breaker, quorum);
        Ok(self)
    }

    /// How long a report counts after its last write. Rejects less than
    /// 1 s: writers refresh at a third of it, and a shorter TTL would turn
    /// every store hiccup into expired reports.
    pub fn with_report_ttl(mut self, ttl: Duration) -> Result<Self, StoreError> {
        if ttl < Duration::from_secs(1) {
            return Err(StoreError::BadConfig {
                key: "report_ttl".to_owned(),
                problem: format!("{ttl:?} is under 1s"),
            });
        }
        self.report_ttl = ttl;
        Ok(self)
    }

    /// The quorum that applies to `breaker`.
    pub fn quorum(&self, breaker: &str) -> u32 {
        self.quorums
            .get(breaker)
            .copied()
            .unwrap_or(self.default_quorum)
    }

    /// How long a report counts after its last write.
    pub fn report_ttl(&self) -> Duration {
        self.report_ttl
    }

    /// How often a writer rewrites its reports so they do not expire.
    pub(crate) fn refresh_interval(&self) -> Duration {
        self.report_ttl / 3
    }
}

fn check_quorum(key: &str, quorum: u32) -> Result<u32, StoreError> {
    if quorum == 0 {
        return Err(StoreError::BadConfig {
            key: key.to_owned(),
            problem: "must be at least 1 (an instance)".to_owned(),
        });
    }
    Ok(quorum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_rules_reject_nonsense_naming_the_key() {
        let error = FleetRules::new().with_quorum(0).unwrap_err();
        assert!(error.to_string().contains("quorum"), "{error}");
        let error = FleetRules::new()
            .with_breaker_quorum("payments", 0)
            .unwrap_err();
        assert!(
            error.to_string().contains("breaker.payments.quorum"),
            "{error}"
        );
        let error = FleetRules::new()
            .with_report_ttl(Duration::from_millis(10))
            .unwrap_err();
        assert!(error.to_string().contains("report_ttl"), "{error}");
    }

    #[test]
    fn fleet_rules_use_the_breaker_quorum_over_the_default() {
        let rules = FleetRules::new()
            .with_quorum(2)
            .and_then(|rules| rules.with_breaker_quorum("payments", 3))
            .unwrap();
        assert_eq!(rules.quorum("payments"), 3);
        assert_eq!(rules.quorum("search"), 2);
    }
}
