//! Starting and stopping a whole gateway: clusters, traffic listeners and the
//! admin listener, in the order that keeps `/ready` honest.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use futures_util::future::join_all;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use levee_core::readiness::Readiness;
use levee_store::{FleetRules, MemoryStore, RedisStore, RedisStoreConfig, StateStore, StoreError};

use crate::admin;
use crate::alerts;
use crate::cluster::{
    Cluster, ClusterBuildError, ClusterStatus, FleetLink, FleetStore, resolve_names,
    spawn_fleet_sync, spawn_resolver,
};
use crate::config::{Config, Protocol, StoreKind};
use crate::events::EventLog;
use crate::health;
use crate::listener::{
    self, Acceptor, BindError, ConnectionLimits, Connections, default_max_connections,
    descriptor_limit,
};
use crate::metrics::Metrics;
use crate::proxy::HttpProxy;
use crate::readiness::{self, ListenerGate, SelfHealth};
use crate::route::{self, Route};
use crate::tcp::{self, TcpProxy};

/// Why a gateway did not start. Nothing is left listening when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener (traffic or admin) could not bind.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A cluster could not be built from its settings.
    #[error(transparent)]
    Cluster(#[from] ClusterBuildError),
    /// The shared breaker store could not be set up (its configuration;
    /// an unreachable server is not an error, the store starts degraded).
    #[error("[store]: {0}")]
    Store(#[from] StoreError),
    /// A listener names a cluster the config does not define (validation
    /// normally catches this first).
    #[error("listener {listener:?} names cluster {cluster:?}, which is not defined")]
    UnknownCluster {
        /// Listener name.
        listener: String,
        /// Missing cluster.
        cluster: String,
    },
}

/// A traffic listener as `/status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ListenerStatus {
    /// Listener name.
    pub name: String,
    /// Address actually bound (the real port when the config said 0).
    pub address: SocketAddr,
    /// `http` or `tcp`.
    pub protocol: &'static str,
    /// Cluster of the requests no route takes (`None`: they get 404).
    pub cluster: Option<String>,
    /// Its routes, in order: name and cluster.
    pub routes: Vec<RouteStatus>,
    /// What it does while the node is impaired.
    pub when_impaired: &'static str,
    /// Client connections open at once, at most.
    pub max_connections: usize,
    /// Client connections open now (filled in by `/status`).
    pub open_connections: usize,
}

/// A route as `/status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct RouteStatus {
    /// Route name.
    pub name: String,
    /// Cluster it sends to.
    pub cluster: String,
}

/// What the admin API reads.
pub struct GatewayState {
    /// True once every listener is bound, false again while draining.
    ready: AtomicBool,
    /// Set when shutdown has begun.
    draining: AtomicBool,
    /// Bound traffic listeners.
    pub listeners: Vec<ListenerStatus>,
    /// Each traffic listener's connections, in the order of `listeners`.
    connections: Vec<Arc<Connections>>,
    /// Clusters, in config order.
    pub clusters: Vec<Arc<Cluster>>,
    /// Every metric.
    pub metrics: Arc<Metrics>,
    /// Recent state changes (`/events`).
    pub events: Arc<EventLog>,
    /// When the gateway started.
    pub started_at: Instant,
    /// Self-health: `[readiness]` criteria, probes, drain.
    pub health: Arc<SelfHealth>,
    /// The shared breaker store; `None` when no breaker is shared.
    pub store: Option<FleetStore>,
}

impl GatewayState {
    /// Whether `/ready` should answer 200, and if not, why.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        if self.draining.load(Ordering::Acquire) {
            return Err(vec![
                "shutting down: draining in-flight requests".to_owned(),
            ]);
        }
        if !self.ready.load(Ordering::Acquire) {
            return Err(vec!["starting: not every listener is bound yet".to_owned()]);
        }
        let verdict = self.health.verdict();
        if verdict.state.is_ready() {
            return Ok(());
        }
        Err(verdict
            .failing
            .iter()
            .filter(|failing| failing.required)
            .map(|failing| format!("{}: {}", failing.criterion, failing.reason))
            .collect())
    }

    /// The self-health state: `ready`, `degraded` or `impaired`.
    pub fn readiness_state(&self) -> Readiness {
        self.health.verdict().state
    }

    /// Listeners for `/status`, with their open connections.
    pub fn listener_status(&self) -> Vec<ListenerStatus> {
        self.listeners
            .iter()
            .zip(&self.connections)
            .map(|(listener, connections)| ListenerStatus {
                open_connections: connections.open(),
                ..listener.clone()
            })
            .collect()
    }

    /// Cluster snapshots for `/status`.
    pub fn cluster_status(&self) -> Vec<ClusterStatus> {
        let now = Instant::now();
        self.clusters.iter().map(|c| c.status(now)).collect()
    }
}

/// A running gateway. Dropping it does not stop it; call [`RunningGateway::shutdown`].
pub struct RunningGateway {
    state: Arc<GatewayState>,
    admin_address: SocketAddr,
    shutdown: watch::Sender<bool>,
    /// The admin listener stops last, so `/ready` can say "draining" meanwhile.
    admin_shutdown: watch::Sender<bool>,
    listener_tasks: JoinSet<()>,
    /// Health check loops and other per-cluster work, stopped at shutdown.
    background: Vec<tokio::task::JoinHandle<()>>,
    admin_task: tokio::task::JoinHandle<()>,
    drain_timeout: Duration,
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// Every in-flight request finished.
    Drained,
    /// The drain timeout expired; remaining connections were cut.
    DrainTimedOut,
}

/// Start a gateway: build clusters, bind every traffic listener and the admin
/// listener, then start serving and report ready. Any bind failure aborts the
/// start before anything serves.
pub async fn start(config: Config) -> Result<RunningGateway, StartError> {
    start_with_admin_routes(config, Router::new()).await
}

/// Like [`start`], with extra admin routes (the demo adds its controls).
pub async fn start_with_admin_routes(
    config: Config,
    extra_admin: Router,
) -> Result<RunningGateway, StartError> {
    for warning in &config.warnings {
        tracing::warn!(%warning, "config warning");
    }
    let metrics = Arc::new(Metrics::new());
    let events = Arc::new(EventLog::default());
    let mut clusters = HashMap::new();
    let mut cluster_list = Vec::new();
    for settings in &config.clusters {
        let cluster = Arc::new(Cluster::new(settings, &metrics, Arc::clone(&events))?);
        clusters.insert(settings.name.clone(), Arc::clone(&cluster));
        cluster_list.push(cluster);
    }
    let store = share_breakers(&config, &cluster_list)?;

    // Bind everything first: a gateway that can only open some of its ports
    // must not start half-way.
    let fd_limit = descriptor_limit();
    let endpoint_count = config.clusters.iter().map(|c| c.endpoints.len()).sum();
    let derived_max = default_max_connections(fd_limit, config.listeners.len(), endpoint_count);
    warn_if_over_descriptor_limit(&config, fd_limit, derived_max);
    let mut bound = Vec::with_capacity(config.listeners.len());
    for settings in &config.listeners {
        let router = router(settings, &clusters)?;
        let socket = listener::bind(&format!("listener {:?}", settings.name), settings.listen)?;
        let address = socket.local_addr().map_err(|source| BindError {
            what: format!("listener {:?}", settings.name),
            address: settings.listen,
            source,
        })?;
        bound.push((settings, router, socket, address));
    }
    let admin_tcp = listener::bind("admin", config.admin.listen)?;
    let admin_address = admin_tcp.local_addr().map_err(|source| BindError {
        what: "admin".to_owned(),
        address: config.admin.listen,
        source,
    })?;

    let state = Arc::new(GatewayState {
        ready: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        listeners: bound
            .iter()
            .map(|(settings, _, _, address)| ListenerStatus {
                name: settings.name.clone(),
                address: *address,
                protocol: settings.protocol.as_str(),
                cluster: settings.cluster.clone(),
                routes: settings
                    .routes
                    .iter()
                    .map(|route| RouteStatus {
                        name: route.name.clone(),
                        cluster: route.cluster.clone(),
                    })
                    .collect(),
                when_impaired: settings.when_impaired.as_str(),
                max_connections: settings.max_connections.unwrap_or(derived_max),
                open_connections: 0,
            })
            .collect(),
        connections: bound
            .iter()
            .map(|(settings, _, _, _)| {
                Connections::new(
                    &settings.name,
                    settings.max_connections.unwrap_or(derived_max),
                    metrics.listener_connections(&settings.name),
                    Arc::clone(&events),
                )
            })
            .collect(),
        health: Arc::new(SelfHealth::new(
            config.readiness.clone(),
            cluster_list.clone(),
            Arc::clone(&events),
            Arc::clone(&metrics),
        )),
        clusters: cluster_list,
        metrics: Arc::clone(&metrics),
        events,
        started_at: Instant::now(),
        store,
    });

    // Names are looked up before anything is served, all clusters at once:
    // a name that does not resolve is out of rotation from the first
    // request (and logged). Then checks start: the first verdict comes in as
    // soon as each endpoint answers (or fails to).
    join_all(state.clusters.iter().map(|cluster| resolve_names(cluster))).await;
    let mut background = Vec::new();
    for cluster in &state.clusters {
        background.extend(health::spawn_health_checks(cluster));
        background.push(health::spawn_cluster_tick(cluster));
        background.extend(spawn_resolver(cluster));
    }
    if let Some(store) = &state.store {
        state.health.watch_store(store.store.health());
        let health = Arc::downgrade(&state.health);
        background.extend(spawn_fleet_sync(
            store,
            &state.clusters,
            &state.events,
            metrics.store_up(),
            move || {
                if let Some(health) = health.upgrade() {
                    health.wake.notify_one();
                }
            },
        ));
    }
    background.extend(alerts::spawn(&config.alerts, &state.events, &metrics));
    background.extend(readiness::spawn_probes(&state.health).await);
    // Give every probe its first verdict before judging readiness, so a
    // `close` listener does not close and reopen at start for want of a
    // result (bounded by the slowest probe timeout).
    let first_results = config
        .readiness
        .probes
        .iter()
        .map(|probe| probe.params.timeout())
        .max()
        .unwrap_or_default()
        + Duration::from_millis(100);
    let _ = tokio::time::timeout(first_results, async {
        while !state.health.probes_settled() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    state.health.evaluate(Instant::now());
    background.push(readiness::spawn_evaluator(&state.health));

    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut listener_tasks = JoinSet::new();
    for ((settings, router, socket, address), connections) in
        bound.into_iter().zip(&state.connections)
    {
        let name = settings.name.clone();
        let listener_metrics = metrics.listener(&name);
        let gate = ListenerGate::new(&name, settings.when_impaired, &state.health);
        let acceptor = Acceptor::new(
            &name,
            socket,
            Some(gate.clone()),
            metrics.listener_open(&name),
            connections.metrics().clone(),
            Arc::clone(&state.events),
        )
        .map_err(|source| BindError {
            what: format!("listener {name:?}"),
            address,
            source,
        })?;
        tracing::info!(listener = %name, %address, protocol = %settings.protocol, cluster = settings.cluster.as_deref().unwrap_or("-"), routes = settings.routes.len(), max_connections = connections.limit(), "listening");
        let connections = Arc::clone(connections);
        match settings.protocol {
            Protocol::Http => {
                let proxy = Arc::new(HttpProxy::new(name, router, listener_metrics));
                let limits = ConnectionLimits {
                    header_read_timeout: settings.header_read_timeout,
                    idle_timeout: settings.idle_timeout,
                    max_connections: connections.limit(),
                };
                listener_tasks.spawn(listener::serve_http(
                    acceptor,
                    proxy,
                    gate,
                    connections,
                    limits,
                    shutdown_rx.clone(),
                ));
            }
            Protocol::Tcp => {
                let tcp_metrics = metrics.tcp_listener(&name);
                // Validation gives a tcp listener its cluster and no routes.
                let Some(default) = router.targets().next() else {
                    return Err(StartError::UnknownCluster {
                        listener: name,
                        cluster: String::new(),
                    });
                };
                let proxy = Arc::new(TcpProxy::new(
                    name,
                    Arc::clone(&default.cluster),
                    listener_metrics,
                    tcp_metrics,
                    settings.tcp_replay,
                ));
                listener_tasks.spawn(tcp::serve_tcp(
                    acceptor,
                    proxy,
                    connections,
                    shutdown_rx.clone(),
                ));
            }
        }
    }
    let router = admin::router(Arc::clone(&state)).merge(extra_admin);
    let (admin_shutdown, admin_shutdown_rx) = watch::channel(false);
    let admin_connections = Connections::new(
        "admin",
        ConnectionLimits::ADMIN_MAX_CONNECTIONS,
        metrics.listener_connections("admin"),
        Arc::clone(&state.events),
    );
    let admin_acceptor = Acceptor::new(
        "admin",
        admin_tcp,
        None,
        prometheus_client::metrics::gauge::Gauge::default(),
        admin_connections.metrics().clone(),
        Arc::clone(&state.events),
    )
    .map_err(|source| BindError {
        what: "admin".to_owned(),
        address: admin_address,
        source,
    })?;
    let admin_task = tokio::spawn(listener::serve_admin(
        admin_acceptor,
        router,
        admin_connections,
        admin_shutdown_rx,
    ));
    tracing::info!(address = %admin_address, "admin listening");

    state.ready.store(true, Ordering::Release);
    let verdict = state.health.verdict();
    metrics.record_readiness(verdict.state, verdict.state.is_ready(), false);
    Ok(RunningGateway {
        state,
        admin_address,
        shutdown,
        admin_shutdown,
        listener_tasks,
        background,
        admin_task,
        drain_timeout: config.runtime.drain_timeout,
    })
}

/// The routes of a listener, each with its cluster, and its default.
fn router(
    settings: &crate::config::ListenerSettings,
    clusters: &HashMap<String, Arc<Cluster>>,
) -> Result<route::Router<Arc<Route>>, StartError> {
    let cluster = |name: &str| {
        clusters
            .get(name)
            .cloned()
            .ok_or_else(|| StartError::UnknownCluster {
                listener: settings.name.clone(),
                cluster: name.to_owned(),
            })
    };
    let routes = settings
        .routes
        .iter()
        .map(|route| {
            let target = Route::configured(&settings.name, route, cluster(&route.cluster)?);
            Ok((route.matches.clone(), Arc::new(target)))
        })
        .collect::<Result<Vec<_>, StartError>>()?;
    let default = settings
        .cluster
        .as_deref()
        .map(|name| {
            cluster(name).map(|cluster| Arc::new(Route::default_for(&settings.name, cluster)))
        })
        .transpose()?;
    Ok(route::Router::new(routes, default))
}

/// Say so at start when the listeners' explicit `max_connections` need more
/// descriptors than the process may open (two per proxied connection).
fn warn_if_over_descriptor_limit(config: &Config, fd_limit: Option<u64>, derived: usize) {
    let Some(fd_limit) = fd_limit else {
        return;
    };
    let wanted: u64 = config
        .listeners
        .iter()
        .map(|listener| listener.max_connections.unwrap_or(derived) as u64 * 2)
        .sum::<u64>()
        + ConnectionLimits::ADMIN_MAX_CONNECTIONS as u64;
    if wanted > fd_limit {
        tracing::warn!(
            fd_limit,
            needed = wanted,
            "max_connections of all listeners needs more file descriptors than the limit (2 per connection: client and upstream); connections past the limit are closed at once: raise the limit (ulimit -n, LimitNOFILE=) or lower max_connections"
        );
    } else {
        tracing::info!(fd_limit, "file descriptor limit");
    }
}

/// Build the store if a breaker is shared, and link every shared breaker
/// to it. Never waits: a Redis store starts degraded and connects in the
/// background.
fn share_breakers(
    config: &Config,
    clusters: &[Arc<Cluster>],
) -> Result<Option<FleetStore>, StoreError> {
    let shared: Vec<&Arc<Cluster>> = clusters
        .iter()
        .filter(|cluster| cluster.breaker.is_some() && cluster.settings.breaker_fleet.shared)
        .collect();
    if shared.is_empty() {
        return Ok(None);
    }
    let mut rules = FleetRules::new();
    for cluster in &shared {
        rules = rules.with_breaker_quorum(&cluster.name, cluster.settings.breaker_fleet.quorum)?;
    }
    let settings = &config.store;
    let store: Arc<dyn StateStore> = match settings.kind {
        StoreKind::Memory => Arc::new(MemoryStore::new(&settings.instance_id, rules)),
        StoreKind::Redis => Arc::new(RedisStore::start(
            RedisStoreConfig::new(&settings.url, &settings.namespace, &settings.instance_id)
                .with_rules(rules),
        )?),
    };
    for cluster in shared {
        if let Some(breaker) = &cluster.breaker {
            breaker.share(FleetLink::new(
                Arc::clone(&store),
                cluster.settings.breaker_fleet,
                settings.on_unreachable,
            ));
        }
    }
    tracing::info!(
        kind = settings.kind.as_str(),
        instance_id = %settings.instance_id,
        namespace = %settings.namespace,
        "shared breaker store"
    );
    Ok(Some(FleetStore {
        store,
        kind: settings.kind,
        on_unreachable: settings.on_unreachable,
    }))
}

impl RunningGateway {
    /// Address of the admin listener.
    pub fn admin_address(&self) -> SocketAddr {
        self.admin_address
    }

    /// Address a traffic listener actually bound.
    pub fn listener_address(&self, name: &str) -> Option<SocketAddr> {
        self.state
            .listeners
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.address)
    }

    /// State shared with the admin API.
    pub fn state(&self) -> &Arc<GatewayState> {
        &self.state
    }

    /// Stop accepting, let in-flight requests (and open TCP connections)
    /// finish up to the drain timeout, then stop the admin listener.
    pub async fn shutdown(mut self) -> ShutdownOutcome {
        self.state.draining.store(true, Ordering::Release);
        self.state
            .metrics
            .record_readiness(Readiness::Impaired, false, false);
        let _ = self.shutdown.send(true);
        let drained = tokio::time::timeout(self.drain_timeout, async {
            while self.listener_tasks.join_next().await.is_some() {}
        })
        .await;
        let outcome = match drained {
            Ok(()) => ShutdownOutcome::Drained,
            Err(_) => {
                tracing::warn!(timeout = ?self.drain_timeout, "drain timeout expired; closing remaining connections");
                self.listener_tasks.abort_all();
                ShutdownOutcome::DrainTimedOut
            }
        };
        for task in &self.background {
            task.abort();
        }
        let _ = self.admin_shutdown.send(true);
        if tokio::time::timeout(Duration::from_secs(1), &mut self.admin_task)
            .await
            .is_err()
        {
            self.admin_task.abort();
        }
        outcome
    }
}
