//! Endpoints that say they are going away: a rolling deploy stops each node
//! in turn, and every request sent to one after it started to leave is at
//! best a retry and at worst an error. levee takes a node out at the first
//! sign, not after outlier thresholds, and checks it at once:
//! - a connection it refused (its listener is closed);
//! - a health check answered with a draining status (`draining_status`,
//!   503 by default);
//! - a response with `Connection: close` (nginx and hyper close keep-alive
//!   connections this way while they drain).
//!
//! The node is back as soon as a check passes (with slow start if its
//! checks had failed meanwhile). A `Connection: close` is also what a
//! server sends when a connection reached its keep-alive request limit;
//! when a check passes right after one, that endpoint's `Connection: close`
//! is not taken as a sign again for [`CLOSE_DISPROVED_FOR`]. Without active
//! checks nothing would bring a node back, so nothing is done.

use std::time::Duration;

use levee_core::EndpointId;
use levee_core::health::{CheckFailure, CheckResult};
use tokio::time::Instant;

use super::Cluster;
use crate::config::HealthCheckKind;
use crate::events::{NewEvent, Severity};

/// How long a `Connection: close` is not taken as a sign of departure
/// after a check showed it was not one.
const CLOSE_DISPROVED_FOR: Duration = Duration::from_secs(30);

/// A sign that an endpoint is leaving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sign {
    /// It refused a connection.
    Refused,
    /// A health check answered with a draining status.
    Draining,
    /// A response came with `Connection: close`.
    ConnectionClose,
}

/// An endpoint taken out because it said it is going away.
#[derive(Clone, Debug)]
pub struct GoingAway {
    /// The sign, in words.
    pub reason: String,
    /// Since when.
    pub since: Instant,
    /// Which sign.
    pub sign: Sign,
}

/// One endpoint's departure state.
#[derive(Clone, Debug, Default)]
pub struct Departure {
    /// Set while it is out for having said it is going away.
    pub going: Option<GoingAway>,
    /// Until then, its `Connection: close` is no sign (a check passed
    /// right after the last one).
    pub close_disproved_until: Option<Instant>,
}

impl Cluster {
    /// Whether signs of departure are acted on: only with active checks,
    /// which are what brings the endpoint back.
    pub fn watches_departures(&self) -> bool {
        self.settings.health.is_some()
    }

    /// `endpoint` gave `sign`: take it out of rotation now and check it at
    /// once.
    pub fn going_away(&self, endpoint: EndpointId, sign: Sign, reason: &str, now: Instant) {
        if !self.watches_departures() {
            return;
        }
        let mut control = self.control();
        let Some(state) = control.endpoints.get_mut(endpoint.0) else {
            return;
        };
        if state.departure.going.is_some()
            || (sign == Sign::ConnectionClose
                && state
                    .departure
                    .close_disproved_until
                    .is_some_and(|until| now < until))
        {
            return;
        }
        state.departure.going = Some(GoingAway {
            reason: reason.to_owned(),
            since: now,
            sign,
        });
        let endpoint_state = &self.endpoints[endpoint.0];
        endpoint_state.metrics.record_state("going-away", false);
        self.events.record(NewEvent {
            kind: "endpoint-going-away",
            cluster: self.name.clone(),
            endpoint: Some(endpoint_state.address.clone()),
            from: "in".to_owned(),
            to: "going-away".to_owned(),
            reason: format!("{reason}: out of rotation until a health check passes (checking now)"),
            severity: Severity::Warning,
        });
        self.refresh_routing(&mut control, now);
        drop(control);
        endpoint_state.check_now.notify_one();
    }

    /// A check of `endpoint` (whose departure state is `departure`) came
    /// back: a draining status is a sign, a pass ends a departure. Returns
    /// whether routing must be rebuilt.
    pub(super) fn departure_after_check(
        &self,
        departure: &mut Departure,
        endpoint: usize,
        result: &CheckResult,
        now: Instant,
    ) -> bool {
        let address = &self.endpoints[endpoint].address;
        match result {
            CheckResult::Passed { .. } => {
                let Some(went) = departure.going.take() else {
                    return false;
                };
                if went.sign == Sign::ConnectionClose {
                    departure.close_disproved_until = Some(now + CLOSE_DISPROVED_FOR);
                }
                self.events.record(NewEvent {
                    kind: "endpoint-going-away",
                    cluster: self.name.clone(),
                    endpoint: Some(address.clone()),
                    from: "going-away".to_owned(),
                    to: "in".to_owned(),
                    reason: format!(
                        "a health check passed {} after it {}",
                        humantime::format_duration(round_ms(now - went.since)),
                        went.reason
                    ),
                    severity: Severity::Info,
                });
                true
            }
            CheckResult::Failed(CheckFailure::UnexpectedStatus(status))
                if self.draining_status(*status) && departure.going.is_none() =>
            {
                departure.going = Some(GoingAway {
                    reason: format!("answered its health check with {status} (draining)"),
                    since: now,
                    sign: Sign::Draining,
                });
                self.endpoints[endpoint]
                    .metrics
                    .record_state("going-away", false);
                self.events.record(NewEvent {
                    kind: "endpoint-going-away",
                    cluster: self.name.clone(),
                    endpoint: Some(address.clone()),
                    from: "in".to_owned(),
                    to: "going-away".to_owned(),
                    reason: format!(
                        "answered its health check with {status} (draining): out of rotation until a check passes"
                    ),
                    severity: Severity::Warning,
                });
                true
            }
            CheckResult::Failed(_) => false,
        }
    }

    fn draining_status(&self, status: u16) -> bool {
        match self.settings.health.as_ref().map(|health| &health.check) {
            Some(HealthCheckKind::Http(http)) => http.draining_status.contains(&status),
            _ => false,
        }
    }
}

/// A response from `endpoint` came with these headers: a
/// `Connection: close` among them is a sign. Out of line: the request path
/// pays for the call only when the cluster has active checks.
#[inline(never)]
pub fn note_connection_close(cluster: &Cluster, endpoint: EndpointId, headers: &http::HeaderMap) {
    if closes_connection(headers) {
        cluster.going_away(
            endpoint,
            Sign::ConnectionClose,
            "answered with connection: close",
            Instant::now(),
        );
    }
}

/// Whether response headers close the connection (`Connection: close`).
pub fn closes_connection(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONNECTION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close"))
        })
}

fn round_ms(duration: Duration) -> Duration {
    Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}
