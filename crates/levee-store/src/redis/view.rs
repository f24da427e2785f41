//! What one instance knows of the fleet, kept so that a change costs work
//! in proportion to what changed: the fleet state is recomputed for the
//! breakers a change names, not for every breaker of every instance (a
//! fleet of 100 instances each reporting 100 breakers holds 10,000
//! reports). Every verdict is recomputed once per resync tick all the same:
//! an `open_until` passing changes a verdict with no change in the data.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use crate::aggregate::{BreakerRecord, aggregate};
use crate::model::{FleetState, StoredReport};
use crate::{FleetRules, LocalReport, Override};

/// Reports held in the view count until their instance leaves the
/// membership (which is read every tick), not by an expiry of their own.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// This instance's knowledge of the fleet.
#[derive(Default)]
pub(crate) struct View {
    /// Per other live instance, its reports by breaker name.
    reports: HashMap<String, HashMap<String, LocalReport>>,
    /// Live instances (this one included) and until when each counts.
    pub(crate) members: HashMap<String, SystemTime>,
    /// This instance's latest reports, ahead of Redis.
    pub(crate) own: HashMap<String, LocalReport>,
    /// The id of the last change read from the stream.
    pub(crate) last_id: String,
    /// Per breaker, the other instances' reports and the override: what
    /// the fleet state is computed from.
    records: HashMap<String, BreakerRecord>,
    /// Breakers whose record changed since the last computation.
    dirty: HashSet<String>,
    /// Every breaker must be computed again.
    all_dirty: bool,
}

impl View {
    /// Whether the reports of `instance` were read.
    pub(crate) fn knows(&self, instance: &str) -> bool {
        self.reports.contains_key(instance)
    }

    /// `instance`'s report on `breaker` is now `report` (`None`: gone).
    pub(crate) fn set_report(
        &mut self,
        instance: &str,
        breaker: &str,
        report: Option<LocalReport>,
    ) {
        let reports = self.reports.entry(instance.to_owned()).or_default();
        let record = self.records.entry(breaker.to_owned()).or_default();
        match report {
            Some(report) => {
                record.reports.insert(
                    instance.to_owned(),
                    StoredReport {
                        report: report.clone(),
                        expires: SystemTime::now() + NEVER,
                    },
                );
                reports.insert(breaker.to_owned(), report);
            }
            None => {
                record.reports.remove(instance);
                reports.remove(breaker);
            }
        }
        self.dirty.insert(breaker.to_owned());
    }

    /// `instance`'s reports are now exactly `reports`.
    pub(crate) fn replace_instance(
        &mut self,
        instance: &str,
        reports: HashMap<String, LocalReport>,
    ) {
        self.drop_instance(instance);
        self.reports.insert(instance.to_owned(), HashMap::new());
        for (breaker, report) in reports {
            self.set_report(instance, &breaker, Some(report));
        }
    }

    /// Forget `instance` (it left the membership).
    fn drop_instance(&mut self, instance: &str) {
        let Some(reports) = self.reports.remove(instance) else {
            return;
        };
        for breaker in reports.into_keys() {
            if let Some(record) = self.records.get_mut(&breaker) {
                record.reports.remove(instance);
            }
            self.dirty.insert(breaker);
        }
    }

    /// The live members are now `members`: forget the others' reports.
    pub(crate) fn keep_members(&mut self, members: HashMap<String, SystemTime>) {
        let gone: Vec<String> = self
            .reports
            .keys()
            .filter(|id| !members.contains_key(*id))
            .cloned()
            .collect();
        for instance in gone {
            self.drop_instance(&instance);
        }
        self.members = members;
    }

    /// The operator override of `breaker` is now `value`.
    pub(crate) fn set_override(&mut self, breaker: &str, value: Option<Override>) {
        self.records
            .entry(breaker.to_owned())
            .or_default()
            .override_ = value;
        self.dirty.insert(breaker.to_owned());
    }

    /// This instance's own latest reports.
    pub(crate) fn set_own(&mut self, batch: &HashMap<String, LocalReport>) {
        for (breaker, report) in batch {
            self.own.insert(breaker.clone(), report.clone());
            self.dirty.insert(breaker.clone());
        }
    }

    /// Everything was read again: the view is exactly this.
    pub(crate) fn replace_all(
        &mut self,
        members: HashMap<String, SystemTime>,
        reports: HashMap<String, HashMap<String, LocalReport>>,
        overrides: HashMap<String, Override>,
    ) {
        self.reports.clear();
        self.records.clear();
        self.members = members;
        for (instance, reports) in reports {
            self.replace_instance(&instance, reports);
        }
        for (breaker, value) in overrides {
            self.set_override(&breaker, Some(value));
        }
        self.all_dirty = true;
    }

    /// Compute every verdict at the next [`View::updated`] (the clock the
    /// verdicts are computed with changed).
    pub(crate) fn mark_all(&mut self) {
        self.all_dirty = true;
    }

    /// Compute again, at the next [`View::updated`], the breakers some
    /// instance reports open in `current`: time alone changes them (an
    /// `open_until` passes). A closed breaker does not open by time alone.
    pub(crate) fn mark_open(&mut self, current: &HashMap<String, FleetState>) {
        for (name, state) in current {
            if !state.open_instances.is_empty() {
                self.dirty.insert(name.clone());
            }
        }
    }

    /// The fleet state after the changes since the last call, starting from
    /// `current`; `None` when nothing changed.
    pub(crate) fn updated(
        &mut self,
        current: &HashMap<String, FleetState>,
        instance_id: &str,
        rules: &FleetRules,
        now: SystemTime,
    ) -> Option<HashMap<String, FleetState>> {
        if !self.all_dirty && self.dirty.is_empty() {
            return None;
        }
        let (mut fleet, names): (HashMap<String, FleetState>, Vec<String>) = if self.all_dirty {
            let names: HashSet<&String> = self.records.keys().chain(self.own.keys()).collect();
            (HashMap::new(), names.into_iter().cloned().collect())
        } else {
            (current.clone(), self.dirty.iter().cloned().collect())
        };
        self.all_dirty = false;
        self.dirty.clear();
        for name in names {
            let record = self
                .records
                .get(&name)
                .filter(|record| !record.reports.is_empty() || record.override_.is_some());
            let own = self.own.get(&name);
            if record.is_none() && own.is_none() {
                self.records.remove(&name);
                fleet.remove(&name);
                continue;
            }
            let mut merged = record.cloned().unwrap_or_default();
            if let Some(own) = own {
                merged.reports.insert(
                    instance_id.to_owned(),
                    StoredReport {
                        report: own.clone(),
                        expires: now + NEVER,
                    },
                );
            }
            let state = aggregate(&merged, rules.quorum(&name), now);
            fleet.insert(name, state);
        }
        Some(fleet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(reason: &str) -> LocalReport {
        let now = SystemTime::now();
        LocalReport::open(now + Duration::from_secs(60), reason, now)
    }

    #[test]
    fn an_open_report_whose_time_passed_closes_at_the_next_tick() {
        let rules = FleetRules::new();
        let now = SystemTime::now();
        let mut view = View::default();
        let brief = LocalReport::open(now + Duration::from_secs(1), "timeouts", now);
        view.replace_all(
            HashMap::from([("b".to_owned(), now)]),
            HashMap::from([("b".to_owned(), HashMap::from([("db".to_owned(), brief)]))]),
            HashMap::new(),
        );
        let fleet = view
            .updated(&HashMap::new(), "a", &rules, now)
            .expect("first");
        assert!(fleet["db"].is_open());
        let later = now + Duration::from_secs(2);
        assert!(view.updated(&fleet, "a", &rules, later).is_none());
        view.mark_open(&fleet);
        let fleet = view.updated(&fleet, "a", &rules, later).expect("marked");
        assert!(!fleet["db"].is_open(), "{fleet:?}");
    }

    #[test]
    fn only_changed_breakers_are_computed_and_a_leaving_instance_stops_counting() {
        let rules = FleetRules::new();
        let now = SystemTime::now();
        let mut view = View::default();
        view.replace_all(
            HashMap::from([("a".to_owned(), now), ("b".to_owned(), now)]),
            HashMap::from([(
                "b".to_owned(),
                HashMap::from([("db".to_owned(), open("timeouts"))]),
            )]),
            HashMap::new(),
        );
        let fleet = view
            .updated(&HashMap::new(), "a", &rules, now)
            .expect("first");
        assert!(fleet["db"].is_open());
        assert!(
            view.updated(&fleet, "a", &rules, now).is_none(),
            "nothing changed"
        );

        view.set_report("b", "cache", Some(open("refused")));
        let fleet = view.updated(&fleet, "a", &rules, now).expect("changed");
        assert!(fleet["cache"].is_open() && fleet["db"].is_open());

        // b leaves: both of its breakers close.
        view.keep_members(HashMap::from([("a".to_owned(), now)]));
        let fleet = view.updated(&fleet, "a", &rules, now).expect("changed");
        assert!(
            !fleet.contains_key("db") && !fleet.contains_key("cache"),
            "{fleet:?}"
        );
    }
}
