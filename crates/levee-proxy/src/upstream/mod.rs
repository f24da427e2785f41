//! Talking to upstream endpoints: per-endpoint keep-alive pools and the
//! translation of their errors into [`levee_core::FailureKind`].

mod classify;
mod pool;

pub use classify::classify_body_error;
pub use pool::{ConnectError, EndpointPool, PoolSettings, PooledConnection};
