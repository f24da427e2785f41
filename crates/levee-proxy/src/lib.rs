//! levee's gateway: config, HTTP and TCP listeners, the request path, the
//! upstream client, the admin API, metrics and the demo.
//!
//! Data flows one way: listener → proxy → cluster (balancer picks an endpoint)
//! → attempt → outcome recorded on the cluster → response streamed back.

pub mod access_log;
pub mod admin;
pub mod alerts;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod events;
pub mod gateway;
pub mod health;
pub mod listener;
pub mod metrics;
pub mod proxy;
pub mod readiness;
pub mod resolve;
pub mod route;
pub mod tcp;
pub mod tls;
pub mod upstream;

pub use config::Config;
pub use gateway::{RunningGateway, ShutdownOutcome, StartError};

/// Start a gateway with the admin API: build clusters, bind every traffic
/// listener and the admin listener, then start serving and report ready. Any
/// bind failure aborts the start before anything serves.
pub async fn start(config: Config) -> Result<RunningGateway, StartError> {
    gateway::start_with_admin(config, admin::router).await
}
