//! `levee demo`: a gateway in front of three in-process fault-injecting
//! backends, with admin routes to make each backend crash, hang, slow down
//! or fail, so a newcomer can watch levee work. The dashboard is every
//! levee's (`admin/dashboard.rs`); it shows the fault switches when these
//! routes answer.

mod routes;
mod traffic;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use levee_testkit::backend::Backend;

use levee_core::HealthCheckParams;
use levee_core::outlier::OutlierParams;

use crate::admin;
use crate::config::{
    ClusterSettings, Config, EndpointAddress, HealthCheckKind, HealthSettings, HttpCheckSettings,
    ListenerSettings,
};
use crate::gateway::{self, RunningGateway, StartError};

/// Name of the demo's listener and cluster.
const DEMO_CLUSTER: &str = "demo";

/// Why the demo did not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A demo backend could not bind a loopback port.
    #[error("cannot start demo backend {name:?}: {source}")]
    Backend {
        /// Backend name.
        name: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The gateway itself did not start.
    #[error(transparent)]
    Gateway(#[from] StartError),
}

/// A running demo.
pub struct Demo {
    gateway: RunningGateway,
    backends: Arc<Vec<Backend>>,
    /// The background client whose view the dashboard shows.
    traffic_task: tokio::task::JoinHandle<()>,
}

impl Demo {
    /// Start three backends on free loopback ports, then the gateway on
    /// `listen` and the admin API on `admin`.
    pub async fn start(listen: SocketAddr, admin: SocketAddr) -> Result<Demo, DemoError> {
        let mut backends = Vec::new();
        for name in ["b1", "b2", "b3"] {
            let backend = Backend::start(name, SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .map_err(|source| DemoError::Backend {
                    name: name.to_owned(),
                    source,
                })?;
            backends.push(backend);
        }
        let config = demo_config(listen, admin, &backends);
        let backends = Arc::new(backends);
        let traffic = Arc::new(traffic::Traffic::default());
        let routes = routes::router(Arc::clone(&backends), Arc::clone(&traffic));
        let gateway =
            gateway::start_with_admin(config, |state| admin::router(state).merge(routes)).await?;
        let traffic_task = match gateway.listener_address(DEMO_CLUSTER) {
            Some(address) => tokio::spawn(traffic::run(address, traffic)),
            None => tokio::spawn(async {}),
        };
        Ok(Demo {
            gateway,
            backends,
            traffic_task,
        })
    }

    /// The gateway in front of the backends.
    pub fn gateway(&self) -> &RunningGateway {
        &self.gateway
    }

    /// The demo backends.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// What to print for the user: every URL worth trying.
    pub fn banner(&self) -> String {
        let traffic = self
            .gateway
            .listener_address(DEMO_CLUSTER)
            .map(|a| a.to_string())
            .unwrap_or_default();
        let admin = self.gateway.admin_address();
        let mut out = String::new();
        let _ = writeln!(out, "levee demo is running.\n");
        let _ = writeln!(
            out,
            "  gateway    http://{traffic}/          (try: curl -i http://{traffic}/)"
        );
        let _ = writeln!(out, "  dashboard  http://{admin}/");
        let _ = writeln!(out, "  status     http://{admin}/status");
        let _ = writeln!(out, "  metrics    http://{admin}/metrics");
        let _ = writeln!(out, "  backends   http://{admin}/demo/backends\n");
        for backend in self.backends.iter() {
            let _ = writeln!(
                out,
                "  backend {} on {} ({})",
                backend.name(),
                backend.addr(),
                backend.mode()
            );
        }
        let _ = writeln!(
            out,
            "\nBreak a backend:  curl -X POST http://{admin}/demo/backends/b2/hung\n\
             modes: healthy, crashed, hung, slow (or slow:250ms), failing\n\
             Stop with Ctrl-C."
        );
        out
    }

    /// Stop the gateway (draining) and the backends.
    pub async fn shutdown(self) {
        self.traffic_task.abort();
        self.gateway.shutdown().await;
        for backend in self.backends.iter() {
            backend.clone().shutdown().await;
        }
    }
}

/// The demo's config: one listener, one cluster of the three backends, with
/// active checks every second and short timeouts, so that a broken backend
/// leaves rotation within a couple of seconds and a healed one comes back.
fn demo_config(listen: SocketAddr, admin: SocketAddr, backends: &[Backend]) -> Config {
    let endpoints = backends
        .iter()
        .map(|b| EndpointAddress {
            host: b.addr().ip().to_string(),
            port: b.addr().port(),
        })
        .collect();
    let mut cluster = ClusterSettings::new(DEMO_CLUSTER, endpoints);
    cluster.connect_timeout = Duration::from_millis(250);
    cluster.request_timeout = Duration::from_secs(2);
    cluster.health = Some(HealthSettings {
        check: HealthCheckKind::Http(HttpCheckSettings::new("/")),
        params: HealthCheckParams::new(
            2,
            2,
            Duration::from_secs(1),
            Duration::from_millis(500),
            Duration::from_millis(500),
            0.1,
        )
        .unwrap_or_default(),
    });
    cluster.slow_start = Duration::from_secs(5);
    // Short ejections, so a healed backend visibly comes back within seconds.
    cluster.outlier = OutlierParams::builder()
        .base_ejection(Duration::from_secs(2))
        .max_ejection(Duration::from_secs(30))
        .build()
        .ok();
    let mut config = Config::default();
    config.admin.listen = admin;
    config.runtime.drain_timeout = Duration::from_secs(5);
    config.listeners = vec![ListenerSettings::new(DEMO_CLUSTER, listen, DEMO_CLUSTER)];
    config.clusters = vec![cluster];
    config
}
