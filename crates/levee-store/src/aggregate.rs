//! The fleet verdict from every instance's report: a pure function of the
//! stored data, the rules and the wall clock, so every instance reading the
//! same data reaches the same verdict, and tests need no store.
//!
//! The quorum is what keeps one misconfigured or partitioned instance (a
//! bad DNS entry, a broken route from one rack) from failing fast for
//! everyone: it protects itself locally, and the fleet opens only when K
//! distinct instances agree.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::model::{FleetState, FleetVerdict, Override, StoredReport};

/// Everything stored about one breaker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BreakerRecord {
    /// Per instance id, its latest report.
    pub reports: HashMap<String, StoredReport>,
    /// The operator's override.
    pub override_: Option<Override>,
}

/// The fleet state of one breaker at `now`. Reports past their expiry, or
/// made before an operator's reset, do not count.
pub fn aggregate(record: &BreakerRecord, quorum: u32, now: SystemTime) -> FleetState {
    let reset_at = match &record.override_ {
        Some(Override::Reset { at }) => Some(*at),
        _ => None,
    };
    let mut live: Vec<(&String, &StoredReport)> = record
        .reports
        .iter()
        .filter(|(_, stored)| stored.expires > now)
        .filter(|(_, stored)| reset_at.is_none_or(|reset| stored.report.at >= reset))
        .collect();
    live.sort_by(|a, b| a.0.cmp(b.0));
    let open: Vec<(&String, &StoredReport)> = live
        .iter()
        .filter(|(_, stored)| stored.report.is_open_at(now))
        .copied()
        .collect();
    let open_count = u32::try_from(open.len()).unwrap_or(u32::MAX);
    let verdict = match &record.override_ {
        Some(Override::ForceOpen { reason, at }) => FleetVerdict::Open {
            since: *at,
            until: None,
            reason: format!("forced open by an operator: {reason}"),
        },
        Some(Override::ForceClosed { .. }) => FleetVerdict::Closed { forced: true },
        _ if open_count >= quorum => FleetVerdict::Open {
            since: open
                .iter()
                .map(|(_, stored)| stored.report.at)
                .min()
                .unwrap_or(now),
            until: open
                .iter()
                .filter_map(|(_, stored)| stored.report.open_until)
                .max(),
            reason: open_reason(&open, live.len(), quorum),
        },
        _ => FleetVerdict::Closed { forced: false },
    };
    FleetState {
        verdict,
        override_: record.override_.clone(),
        quorum,
        open_instances: open.iter().map(|(id, _)| (*id).clone()).collect(),
        reporting_instances: u32::try_from(live.len()).unwrap_or(u32::MAX),
        failures: live.iter().map(|(_, stored)| stored.report.failures).sum(),
        calls: live.iter().map(|(_, stored)| stored.report.calls).sum(),
    }
}

/// "open on 2 of 3 instances (quorum 2): a: 5 consecutive failures; b: ..."
fn open_reason(open: &[(&String, &StoredReport)], live: usize, quorum: u32) -> String {
    let each: Vec<String> = open
        .iter()
        .map(|(id, stored)| format!("{id}: {}", stored.report.reason))
        .collect();
    format!(
        "open on {} of {live} instances (quorum {quorum}): {}",
        open.len(),
        each.join("; ")
    )
}

/// The fleet state of every breaker, with `own` (this instance's latest
/// reports, which it knows before the store does) taking precedence over
/// what the store holds for `instance_id`.
pub fn aggregate_all(
    records: &HashMap<String, BreakerRecord>,
    own: &HashMap<String, StoredReport>,
    instance_id: &str,
    quorum: impl Fn(&str) -> u32,
    now: SystemTime,
) -> HashMap<String, FleetState> {
    let mut fleet = HashMap::with_capacity(records.len() + own.len());
    for (name, record) in records {
        let state = match own.get(name) {
            Some(mine) => {
                let mut merged = record.clone();
                merged.reports.insert(instance_id.to_owned(), mine.clone());
                aggregate(&merged, quorum(name), now)
            }
            None => aggregate(record, quorum(name), now),
        };
        fleet.insert(name.clone(), state);
    }
    for (name, mine) in own {
        if !records.contains_key(name) {
            let mut record = BreakerRecord::default();
            record.reports.insert(instance_id.to_owned(), mine.clone());
            fleet.insert(name.clone(), aggregate(&record, quorum(name), now));
        }
    }
    fleet
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::LocalReport;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn open_report(at: u64, until: u64, reason: &str) -> StoredReport {
        StoredReport {
            report: LocalReport::open(t(until), reason, t(at)),
            expires: t(at + 10),
        }
    }

    fn closed_report(at: u64, failures: u64, calls: u64) -> StoredReport {
        StoredReport {
            report: LocalReport::closed("ok", failures, calls, t(at)),
            expires: t(at + 10),
        }
    }

    fn record(reports: &[(&str, StoredReport)]) -> BreakerRecord {
        BreakerRecord {
            reports: reports
                .iter()
                .map(|(id, report)| ((*id).to_owned(), report.clone()))
                .collect(),
            override_: None,
        }
    }

    #[test]
    fn one_open_instance_opens_the_fleet_under_quorum_one() {
        let state = aggregate(
            &record(&[("a", open_report(0, 5, "5 consecutive failures"))]),
            1,
            t(1),
        );
        let FleetVerdict::Open {
            since,
            until,
            reason,
        } = &state.verdict
        else {
            panic!("expected open: {state:?}");
        };
        assert_eq!((*since, *until), (t(0), Some(t(5))));
        assert_eq!(
            reason,
            "open on 1 of 1 instances (quorum 1): a: 5 consecutive failures"
        );
        assert_eq!(state.open_instances, ["a"]);
    }

    #[test]
    fn quorum_two_needs_two_distinct_open_instances() {
        let alone = record(&[
            ("a", open_report(0, 5, "x")),
            ("b", closed_report(0, 1, 10)),
        ]);
        let state = aggregate(&alone, 2, t(1));
        assert_eq!(state.verdict, FleetVerdict::Closed { forced: false });
        assert_eq!(state.open_instances, ["a"], "shown as open locally only");
        assert_eq!(
            (state.reporting_instances, state.failures, state.calls),
            (2, 1, 10)
        );

        let both = record(&[("a", open_report(0, 5, "x")), ("b", open_report(2, 8, "y"))]);
        let state = aggregate(&both, 2, t(3));
        let FleetVerdict::Open {
            since,
            until,
            reason,
        } = &state.verdict
        else {
            panic!("expected open: {state:?}");
        };
        assert_eq!(
            (*since, *until),
            (t(0), Some(t(8))),
            "the latest until wins"
        );
        assert!(reason.contains("a: x; b: y"), "{reason}");
    }

    #[test]
    fn expired_reports_and_past_open_periods_do_not_count() {
        let both = record(&[
            ("a", open_report(0, 30, "x")),
            ("b", open_report(5, 30, "y")),
        ]);
        // a's report expired at 10 (its writer stopped refreshing it).
        let state = aggregate(&both, 2, t(11));
        assert_eq!(state.verdict, FleetVerdict::Closed { forced: false });
        assert_eq!(state.reporting_instances, 1);
        // b's open period is over at 30 even if the report were live.
        let late = record(&[(
            "b",
            StoredReport {
                expires: t(100),
                ..open_report(5, 30, "y")
            },
        )]);
        assert!(!aggregate(&late, 1, t(31)).is_open());
    }

    #[test]
    fn operator_overrides_beat_the_reports() {
        let mut open = record(&[("a", open_report(0, 5, "x"))]);
        open.override_ = Some(Override::ForceClosed {
            reason: "false alarm".to_owned(),
            at: t(1),
        });
        assert_eq!(
            aggregate(&open, 1, t(2)).verdict,
            FleetVerdict::Closed { forced: true }
        );

        let mut quiet = record(&[]);
        quiet.override_ = Some(Override::ForceOpen {
            reason: "maintenance".to_owned(),
            at: t(1),
        });
        let state = aggregate(&quiet, 1, t(2));
        assert_eq!(
            state.verdict,
            FleetVerdict::Open {
                since: t(1),
                until: None,
                reason: "forced open by an operator: maintenance".to_owned()
            }
        );
    }

    #[test]
    fn a_reset_forgets_reports_made_before_it() {
        let mut record = record(&[
            ("a", open_report(0, 30, "old")),
            ("b", open_report(3, 30, "new")),
        ]);
        record.override_ = Some(Override::Reset { at: t(2) });
        let state = aggregate(&record, 1, t(4));
        assert_eq!(state.open_instances, ["b"]);
        assert!(state.is_open());
        let state = aggregate(&record, 2, t(4));
        assert!(!state.is_open());
    }

    #[test]
    fn own_reports_take_precedence_over_the_stored_copy() {
        let records: HashMap<String, BreakerRecord> =
            [("db".to_owned(), record(&[("me", closed_report(0, 0, 1))]))].into();
        let own: HashMap<String, StoredReport> = [
            ("db".to_owned(), open_report(1, 9, "mine")),
            ("cache".to_owned(), open_report(1, 9, "mine too")),
        ]
        .into();
        let fleet = aggregate_all(&records, &own, "me", |_| 1, t(2));
        assert!(fleet["db"].is_open());
        assert!(fleet["cache"].is_open());
    }
}
