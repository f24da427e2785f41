//! Starting, reloading and stopping a whole gateway: clusters, traffic
//! listeners and the admin listener, in the order that keeps `/ready`
//! honest.
//!
//! - here: the state the admin API reads, start and shutdown;
//! - `clusters.rs`: clusters and their background work, kept, continued or
//!   built anew;
//! - `listeners.rs`: traffic listeners while they run;
//! - `reload.rs`: a new config applied to a running gateway;
//! - `store.rs`: the shared breaker store.

mod clusters;
pub mod history;
mod listeners;
mod names;
mod reload;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use axum::Router;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use levee_core::readiness::Readiness;
use levee_store::StoreError;

pub use reload::{ReloadError, Reloaded};

use crate::alerts;
use crate::cluster::{
    Cluster, ClusterBreaker, ClusterBuildError, ClusterStatus, FleetStore, spawn_fleet_sync,
    spawn_health_sync,
};
use crate::config::Config;
use crate::events::EventLog;
use crate::listener::{
    self, Acceptor, BindError, ConnectionLimits, Connections, default_max_connections,
    descriptor_limit,
};
use crate::metrics::Metrics;
use crate::proxy::cache::ResponseCache;
use crate::readiness::{self, SelfHealth};
use crate::resolve::{NameStatus, NameTable, Resolver};
use clusters::{ClusterPlan, LiveCluster, Served};
use listeners::{LiveListener, Serving};

/// Why a gateway did not start (or a reload did not happen). Nothing is
/// left listening when start returns this.
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
    /// A listener's TLS could not be set up (a certificate or key file).
    #[error("listener {listener:?}: tls: {source}")]
    Tls {
        /// Listener name.
        listener: String,
        /// What went wrong.
        #[source]
        source: crate::tls::ServerTlsError,
    },
    /// A listener's access log could not be opened.
    #[error("listener {listener:?}: {source}")]
    AccessLog {
        /// Listener name.
        listener: String,
        /// What went wrong (the path and the OS error).
        #[source]
        source: std::io::Error,
    },
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
    /// Whether it terminates TLS.
    pub tls: bool,
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

/// The config in force, as `/status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigStatus {
    /// 1 at start, one more for every successful reload.
    pub generation: u64,
    /// When it was loaded, RFC 3339.
    pub loaded_at: String,
    /// The file it was read from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

/// A traffic listener as the admin API sees it.
struct ListenerView {
    status: ListenerStatus,
    connections: Arc<Connections>,
    /// HTTP listeners: where its access log is found.
    http: Option<Arc<crate::proxy::HttpProxy>>,
}

/// What the admin API reads.
pub struct GatewayState {
    /// True once every listener is bound, false again while draining.
    ready: AtomicBool,
    /// Set when shutdown has begun.
    draining: AtomicBool,
    /// Serving traffic listeners, replaced by a reload.
    listeners: ArcSwap<Vec<ListenerView>>,
    /// Clusters in config order, replaced by a reload.
    clusters: ArcSwap<Vec<Arc<Cluster>>>,
    /// The clusters with the stages in front of them, replaced by a reload.
    served: ArcSwap<Vec<Served>>,
    /// Endpoint names and what they resolve to.
    names: Arc<NameTable>,
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
    /// The config generation and when it was loaded.
    generation: AtomicU64,
    loaded_at: Mutex<SystemTime>,
    /// What reloads the gateway (set once it runs).
    reloader: std::sync::OnceLock<reload::Reloader>,
    /// The last minutes of each cluster's traffic (the dashboard).
    pub history: history::History,
}

impl GatewayState {
    /// Whether shutdown has begun (long-lived admin streams end then).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

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

    /// Reopen every listener's access log file (SIGUSR1, after logrotate
    /// moved them away). Returns how many were asked to.
    pub fn reopen_access_logs(&self) -> usize {
        let mut reopened = 0;
        for view in self.listeners.load().iter() {
            if let Some(log) = view.http.as_ref().and_then(|proxy| proxy.access_log()) {
                log.reopen();
                reopened += 1;
            }
        }
        reopened
    }

    /// Listeners for `/status`, with their open connections.
    pub fn listener_status(&self) -> Vec<ListenerStatus> {
        self.listeners
            .load()
            .iter()
            .map(|view| ListenerStatus {
                open_connections: view.connections.open(),
                ..view.status.clone()
            })
            .collect()
    }

    /// The clusters in force, in config order.
    pub fn clusters(&self) -> Arc<Vec<Arc<Cluster>>> {
        self.clusters.load_full()
    }

    /// Cluster snapshots for `/status`.
    pub fn cluster_status(&self) -> Vec<ClusterStatus> {
        let now = Instant::now();
        self.served
            .load()
            .iter()
            .map(|served| {
                let mut status = served.cluster.status(now);
                status.cache = served.stages.cache.as_ref().map(|cache| cache.status());
                status.admission = served.stages.admission.as_ref().map(|a| a.status());
                status.breaker = served.stages.breaker.as_ref().map(|b| b.view(now));
                let retries = &served.stages.retries;
                status.retry_budget = Some(retries.budget_status(now));
                status.hedge_after_ms = retries
                    .hedge_delay(now)
                    .map(|delay| delay.as_secs_f64() * 1000.0);
                status
            })
            .collect()
    }

    /// Each cluster's counters now, for the dashboard's history.
    pub fn cluster_totals(&self) -> Vec<(String, history::ClusterTotals)> {
        self.served
            .load()
            .iter()
            .map(|served| {
                let retries = served.stages.retries.metrics();
                let totals = history::ClusterTotals {
                    traffic: served.cluster.traffic.totals(),
                    retries: retries.retries_total(),
                    hedges: retries.hedges_total(),
                    shed: served
                        .stages
                        .admission
                        .as_ref()
                        .map_or(0, |admission| admission.shed_total()),
                };
                (served.cluster.name.clone(), totals)
            })
            .collect()
    }

    /// The clusters' own breakers (not the per-endpoint ones), in config
    /// order.
    pub fn cluster_breakers(&self) -> Vec<Arc<ClusterBreaker>> {
        self.served
            .load()
            .iter()
            .filter_map(|served| served.stages.breaker.clone())
            .collect()
    }

    /// Every breaker: each cluster's own, then its endpoints'.
    pub fn breakers(&self) -> Vec<Arc<ClusterBreaker>> {
        self.served
            .load()
            .iter()
            .flat_map(|served| {
                served
                    .stages
                    .breaker
                    .iter()
                    .chain(&served.cluster.endpoint_breakers)
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The clusters' caches, by cluster name, in config order.
    pub fn caches(&self) -> Vec<(String, Arc<ResponseCache>)> {
        self.served
            .load()
            .iter()
            .filter_map(|served| {
                let cache = served.stages.cache.as_ref()?;
                Some((served.cluster.name.clone(), Arc::clone(cache)))
            })
            .collect()
    }

    /// Endpoint names and what they resolve to, for `/status`.
    pub fn name_status(&self) -> Vec<NameStatus> {
        self.names.status(Instant::now())
    }

    /// The config in force, for `/status`.
    pub fn config_status(&self) -> ConfigStatus {
        ConfigStatus {
            generation: self.generation.load(Ordering::Acquire),
            loaded_at: humantime::format_rfc3339_millis(*self.loaded_at.lock()).to_string(),
            path: self.reloader.get().and_then(reload::Reloader::path),
        }
    }

    /// Reload from the config file the gateway was started from (`POST
    /// /reload`, SIGHUP). Fails if the gateway has no file to read.
    pub async fn reload_from_file(&self) -> Result<Reloaded, ReloadError> {
        match self.reloader.get() {
            Some(reloader) => reloader.reload_from_file(self).await,
            None => Err(ReloadError::NoFile),
        }
    }

    fn set_listeners(&self, live: &[LiveListener]) {
        let views = live
            .iter()
            .map(|listener| ListenerView {
                status: listener.status(),
                connections: Arc::clone(&listener.connections),
                http: listener.http_proxy(),
            })
            .collect();
        self.listeners.store(Arc::new(views));
    }
}

/// What runs, and what a reload changes: behind one lock, so that reloads
/// and the shutdown take turns.
struct Live {
    config: Config,
    listeners: Vec<LiveListener>,
    /// Listeners a reload removed, still draining their connections.
    retired: Vec<LiveListener>,
    clusters: Vec<LiveCluster>,
    /// Fleet sync, restarted when the set of clusters changes.
    fleet_tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Probes, alerts, the readiness evaluator.
    background: Vec<tokio::task::JoinHandle<()>>,
    /// Default `max_connections` of listeners that set none.
    derived_max: usize,
}

/// A running gateway. Dropping it does not stop it; call [`RunningGateway::shutdown`].
pub struct RunningGateway {
    state: Arc<GatewayState>,
    live: Arc<tokio::sync::Mutex<Live>>,
    admin_address: SocketAddr,
    /// The admin listener stops last, so `/ready` can say "draining" meanwhile.
    admin_shutdown: watch::Sender<bool>,
    admin_task: tokio::task::JoinHandle<()>,
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// Every in-flight request finished.
    Drained,
    /// The drain timeout expired; remaining connections were cut.
    DrainTimedOut,
}

/// Start a gateway whose admin listener serves `admin`'s routes (the admin
/// API is built on the state the gateway hands it; see `levee_proxy::start`).
pub async fn start_with_admin(
    config: Config,
    admin: impl FnOnce(Arc<GatewayState>) -> Router,
) -> Result<RunningGateway, StartError> {
    for warning in &config.warnings {
        tracing::warn!(%warning, "config warning");
    }
    let metrics = Arc::new(Metrics::new());
    let events = Arc::new(EventLog::default());
    // Names are looked up before anything is served, all at once: a name
    // that does not resolve is out of rotation from the first request.
    let names = Arc::new(NameTable::new(Resolver::new(&config.runtime.dns_servers)));
    names.add(&config.clusters);
    names.retain(&config.clusters);
    crate::resolve::report(&names.resolve_pending().await, metrics.names(), &events);
    let plan = ClusterPlan::build(&config.clusters, &names, &[], &metrics, &events)?;
    let cluster_list = plan.list();
    let store = store::share_breakers(&config, &plan.served())?;

    // Bind everything first: a gateway that can only open some of its ports
    // must not start half-way.
    let derived_max = derived_max_connections(&config);
    let by_name = plan.by_name();
    let mut bound = Vec::with_capacity(config.listeners.len());
    for settings in &config.listeners {
        let router = listeners::router(settings, &by_name)?;
        let tls = listeners::tls_plan(settings, None, false, &metrics, &events)?;
        bound.push((listeners::bind(settings)?, router, tls));
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
        listeners: ArcSwap::from_pointee(Vec::new()),
        health: Arc::new(SelfHealth::new(
            config.readiness.clone(),
            cluster_list.clone(),
            Arc::clone(&events),
            Arc::clone(&metrics),
        )),
        clusters: ArcSwap::from_pointee(cluster_list),
        served: ArcSwap::from_pointee(plan.served()),
        names,
        metrics: Arc::clone(&metrics),
        events,
        started_at: Instant::now(),
        store,
        generation: AtomicU64::new(1),
        loaded_at: Mutex::new(SystemTime::now()),
        reloader: std::sync::OnceLock::new(),
        history: history::History::default(),
    });

    // Checks start now: the first verdict comes in as soon as each endpoint
    // answers (or fails to).
    let clusters = plan.start(Vec::new());
    if let Some(store) = &state.store {
        state.health.watch_store(store.store.health());
    }
    let fleet_tasks = spawn_fleet(&state);
    let mut background = Vec::new();
    background.extend(alerts::spawn(&config.alerts, &state.events, &metrics));
    background.extend(readiness::spawn_probes(&state.health, &state.names).await);
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
    background.push(history::spawn_sampler(&state));

    let serving = Serving {
        metrics: &metrics,
        events: &state.events,
        health: &state.health,
        derived_max,
    };
    let mut live_listeners = Vec::with_capacity(bound.len());
    for (bound, router, tls) in bound {
        live_listeners.push(bound.serve(router, tls, &serving)?);
    }
    state.set_listeners(&live_listeners);

    let router = admin(Arc::clone(&state));
    let (admin_shutdown, admin_shutdown_rx) = watch::channel(false);
    let admin_connections = Connections::new(
        "admin",
        ConnectionLimits::admin(),
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
    let live = Arc::new(tokio::sync::Mutex::new(Live {
        config,
        listeners: live_listeners,
        retired: Vec::new(),
        clusters,
        fleet_tasks,
        background,
        derived_max,
    }));
    let _ = state
        .reloader
        .set(reload::Reloader::new(Arc::downgrade(&live)));
    live.lock()
        .await
        .background
        .push(names::spawn_follower(&state, &live));
    Ok(RunningGateway {
        state,
        live,
        admin_address,
        admin_shutdown,
        admin_task,
    })
}

/// The default `max_connections` of listeners that set none, from the
/// descriptor limit; warns when explicit limits need more descriptors than
/// the process may open (two per proxied connection).
fn derived_max_connections(config: &Config) -> usize {
    let fd_limit = descriptor_limit();
    let endpoints = config.clusters.iter().map(|c| c.endpoints.len()).sum();
    let derived = default_max_connections(fd_limit, config.listeners.len(), endpoints);
    let Some(fd_limit) = fd_limit else {
        return derived;
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
    derived
}

/// Sync the shared breakers of the clusters in force with the store.
fn spawn_fleet(state: &GatewayState) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(store) = &state.store else {
        return Vec::new();
    };
    let health = Arc::downgrade(&state.health);
    let mut tasks = spawn_fleet_sync(
        store,
        &state.cluster_breakers(),
        &state.events,
        (state.metrics.store_up(), state.metrics.store_failovers()),
        move || {
            if let Some(health) = health.upgrade() {
                health.wake.notify_one();
            }
        },
    );
    // A reload respawns these tasks with the clusters it put in force.
    let sharing: Vec<Arc<Cluster>> = state
        .clusters
        .load()
        .iter()
        .filter(|cluster| cluster.settings.shares_health(store.kind))
        .cloned()
        .collect();
    if !sharing.is_empty() {
        tasks.push(spawn_health_sync(
            Arc::clone(&store.store),
            Arc::clone(&state.events),
            move || sharing.clone(),
        ));
    }
    tasks
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
            .load()
            .iter()
            .find(|view| view.status.name == name)
            .map(|view| view.status.address)
    }

    /// State shared with the admin API.
    pub fn state(&self) -> &Arc<GatewayState> {
        &self.state
    }

    /// Reload from `path` on `POST /reload`, SIGHUP and (with
    /// `[runtime] watch_config`) when the file changes.
    pub fn reload_from(&self, path: PathBuf) {
        if let Some(reloader) = self.state.reloader.get() {
            reloader.set_path(path, &self.state);
        }
    }

    /// Apply `config` to the running gateway, as a reload from the file does:
    /// validated first, then swapped in without dropping a connection.
    pub async fn reload(&self, config: Config) -> Result<Reloaded, ReloadError> {
        let mut live = self.live.lock().await;
        reload::apply(&self.state, &mut live, config).await
    }

    /// Stop accepting, let in-flight requests (and open TCP connections)
    /// finish up to the drain timeout, then stop the admin listener.
    pub async fn shutdown(self) -> ShutdownOutcome {
        self.state.draining.store(true, Ordering::Release);
        self.state
            .metrics
            .record_readiness(Readiness::Impaired, false, false);
        let mut live = self.live.lock().await;
        let drain_timeout = live.config.runtime.drain_timeout;
        let live = &mut *live;
        let mut tasks: Vec<_> = live
            .listeners
            .drain(..)
            .chain(live.retired.drain(..))
            .map(|listener| {
                listener.stop();
                listener.task
            })
            .collect();
        let drained =
            tokio::time::timeout(drain_timeout, futures_util::future::join_all(&mut tasks)).await;
        let outcome = match drained {
            Ok(_) => ShutdownOutcome::Drained,
            Err(_) => {
                tracing::warn!(timeout = ?drain_timeout, "drain timeout expired; closing remaining connections");
                for task in &tasks {
                    task.abort();
                }
                ShutdownOutcome::DrainTimedOut
            }
        };
        for cluster in &live.clusters {
            cluster.stop();
        }
        for task in live.fleet_tasks.iter().chain(&live.background) {
            task.abort();
        }
        if let Some(reloader) = self.state.reloader.get() {
            reloader.stop();
        }
        let _ = self.admin_shutdown.send(true);
        let mut admin_task = self.admin_task;
        if tokio::time::timeout(Duration::from_secs(1), &mut admin_task)
            .await
            .is_err()
        {
            admin_task.abort();
        }
        outcome
    }
}
