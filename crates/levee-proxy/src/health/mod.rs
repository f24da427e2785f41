//! Active health checks: the I/O half. Each check's verdict goes to the
//! cluster, whose [`levee_core::HealthTracker`]s decide what it means.

pub mod check;
mod monitor;

pub use monitor::{spawn_cluster_tick, spawn_health_checks};
