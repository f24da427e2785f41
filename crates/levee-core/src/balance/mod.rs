//! Load balancing: which endpoint of a cluster gets the next request.
//!
//! The balancer only decides; the caller owns the endpoints and tells it which
//! of them are candidates (later: healthy, not ejected), so the same picker
//! serves the proxy and library users.

mod endpoint_load;
mod policy;

pub use endpoint_load::{EndpointLoad, InFlightGuard};
pub use policy::{BadBalancePolicy, BalancePolicy, Balancer};
