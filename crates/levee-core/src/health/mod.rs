//! Active health checking: the health of one endpoint as seen by periodic
//! checks (an HTTP request with an expected status and body, or a TCP
//! connect).
//!
//! This is only the decision. The prober (in the proxy) runs each check with
//! [`HealthCheckParams::timeout`], maps the result to a [`CheckResult`], hands
//! it to the endpoint's [`HealthTracker`] with the current time, acts on any
//! [`Transition`] it gets back (log line, metric, event, routing), and sleeps
//! for [`HealthTracker::next_delay`] before the next check.
//!
//! The rules, and the failure each one exists for, are on [`HealthTracker`]:
//! the first result decides at once (no dead node in rotation at startup, no
//! live one left idle); after that only `fall` failures or `rise` passes in a
//! row flip the health (no flapping on one lost packet); every change is
//! reported exactly once with a reason; checks come faster while the health
//! is changing (a dying node leaves rotation in seconds) and are jittered (no
//! fleet of levee instances checking in lockstep).

mod check;
mod params;
mod tracker;

pub use check::{CheckFailure, CheckResult, Health};
pub use params::{BadHealthParams, HealthCheckParams};
pub use tracker::{HealthTracker, RECENT_RESULTS, Transition};
