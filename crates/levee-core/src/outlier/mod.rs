//! Passive outlier detection and the routing view built on it.
//!
//! - [`blame`](blame()): which outcomes count against an endpoint (a 404 never
//!   does).
//! - [`OutlierDetector`]: one per cluster; ejects endpoints on consecutive
//!   failures, a failure rate over a window, or latency far above their
//!   peers', for a growing duration, never more than a share of the cluster.
//! - [`routable`]: the balancer's candidates from health, ejection and
//!   [`Reachability`], with a panic threshold that never sends to an
//!   endpoint known to take no connections.
//! - [`SlowStart`] and [`admit`]: a returning endpoint's share ramps up.
//!
//! All of it is pure: the proxy feeds outcomes and the time, and acts on the
//! decisions (log, metric, event, routing).

mod blame;
mod detector;
mod params;
mod reachability;
mod reason;
mod routing;
mod slow_start;
mod window;

pub use blame::{Blame, blame, blame_reason};
pub use detector::{EndpointHistory, EndpointStats, LATENCY_MIN_SAMPLES, OutlierDetector};
pub use params::{BadOutlierParams, OutlierParams, OutlierParamsBuilder};
pub use reachability::{REFUSAL_MEMORY, Reachability, Unreachable};
pub(crate) use reason::Human;
pub use reason::{Ejection, EjectionReason, Return};
pub use routing::{PanicParams, Routing, Standing, routable};
pub use slow_start::{SlowStart, admit};
