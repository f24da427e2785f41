//! Which fleet changes a local breaker should adopt, and which it must not.
//!
//! [`Breaker::apply_remote`] takes whatever it is given, and a closed state
//! closes a local breaker outright. Fed naively with every fleet change it
//! would undo the local decisions the breaker design keeps local:
//!
//! - a fleet that is closed because the quorum is not met would close an
//!   instance that tripped on its own evidence (issue 5: an instance that
//!   sees failures alone still protects itself);
//! - a fleet that turns closed because an open period ran out would cut
//!   short the local half-open trials that are meant to decide.
//!
//! So a fleet "closed" is adopted only when it is an operator's act (forced
//! closed, an override lifted, a new reset); an open is adopted when it is
//! a new opening (different `since` or `until`).
//!
//! [`Breaker::apply_remote`]: levee_core::breaker::Breaker::apply_remote

use std::time::SystemTime;

use levee_core::breaker::BreakerState;
use tokio::time::Instant;

use crate::{FleetState, FleetVerdict, Override};

/// The state to give the local breaker with `apply_remote` when the fleet
/// state of a breaker went from `previous` to `current`, or `None` to leave
/// the local breaker alone. `now` and `wall_now` are read together.
pub fn remote_breaker_state(
    previous: Option<&FleetState>,
    current: &FleetState,
    now: Instant,
    wall_now: SystemTime,
) -> Option<BreakerState> {
    let previous_verdict = previous.map(|state| &state.verdict);
    let previous_override = previous.and_then(|state| state.override_.as_ref());
    let adopt = match &current.verdict {
        FleetVerdict::Open { since, until, .. } => !matches!(
            previous_verdict,
            Some(FleetVerdict::Open { since: old_since, until: old_until, .. })
                if old_since == since && old_until == until
        ),
        FleetVerdict::Closed { forced: true } => {
            previous_verdict != Some(&FleetVerdict::Closed { forced: true })
        }
        FleetVerdict::Closed { forced: false } => {
            let override_lifted = matches!(
                previous_override,
                Some(Override::ForceOpen { .. } | Override::ForceClosed { .. })
            );
            let new_reset = matches!(current.override_, Some(Override::Reset { .. }))
                && current.override_.as_ref() != previous_override;
            override_lifted || new_reset
        }
    };
    adopt.then(|| current.breaker_state(now, wall_now))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn state(verdict: FleetVerdict, override_: Option<Override>) -> FleetState {
        FleetState {
            verdict,
            override_,
            quorum: 2,
            open_instances: Vec::new(),
            reporting_instances: 0,
            failures: 0,
            calls: 0,
        }
    }

    fn open(since: SystemTime, until: SystemTime) -> FleetVerdict {
        FleetVerdict::Open {
            since,
            until: Some(until),
            reason: "r".to_owned(),
        }
    }

    #[test]
    fn fleet_openings_are_adopted_once() {
        let wall = SystemTime::now();
        let now = Instant::now();
        let opened = state(open(wall, wall + Duration::from_secs(5)), None);
        let adopted = remote_breaker_state(None, &opened, now, wall);
        assert!(matches!(adopted, Some(BreakerState::Open { .. })));
        assert_eq!(
            remote_breaker_state(Some(&opened), &opened, now, wall),
            None
        );
        let extended = state(open(wall, wall + Duration::from_secs(9)), None);
        assert!(remote_breaker_state(Some(&opened), &extended, now, wall).is_some());
    }

    #[test]
    fn a_fleet_closing_on_its_own_leaves_local_breakers_alone() {
        let wall = SystemTime::now();
        let now = Instant::now();
        let opened = state(open(wall, wall + Duration::from_secs(5)), None);
        let closed = state(FleetVerdict::Closed { forced: false }, None);
        // Quorum not met, or the open period ran out: local evidence and
        // local trials decide.
        assert_eq!(remote_breaker_state(None, &closed, now, wall), None);
        assert_eq!(
            remote_breaker_state(Some(&opened), &closed, now, wall),
            None
        );
    }

    #[test]
    fn operator_acts_are_adopted() {
        let wall = SystemTime::now();
        let now = Instant::now();
        let force_closed = Override::ForceClosed {
            reason: "false alarm".to_owned(),
            at: wall,
        };
        let forced = state(FleetVerdict::Closed { forced: true }, Some(force_closed));
        assert_eq!(
            remote_breaker_state(None, &forced, now, wall),
            Some(BreakerState::Closed { forced: true })
        );
        assert_eq!(
            remote_breaker_state(Some(&forced), &forced, now, wall),
            None
        );
        let lifted = state(FleetVerdict::Closed { forced: false }, None);
        assert_eq!(
            remote_breaker_state(Some(&forced), &lifted, now, wall),
            Some(BreakerState::Closed { forced: false })
        );
        let reset = state(
            FleetVerdict::Closed { forced: false },
            Some(Override::Reset { at: wall }),
        );
        assert_eq!(
            remote_breaker_state(Some(&lifted), &reset, now, wall),
            Some(BreakerState::Closed { forced: false })
        );
        assert_eq!(remote_breaker_state(Some(&reset), &reset, now, wall), None);
    }
}
