//! The gateway's traffic listeners while they run: bound once, given new
//! routes (or a new cluster) by a reload without closing their socket, and
//! stopped one by one when a reload removes them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::clusters::Served;
use super::{ListenerStatus, RouteStatus, StartError};
use crate::access_log::AccessLog;
use crate::config::{ListenerSettings, Protocol};
use crate::events::EventLog;
use crate::listener::{self, Acceptor, BindError, ConnectionLimits, Connections, ListenerTls};
use crate::metrics::Metrics;
use crate::proxy::HttpProxy;
use crate::readiness::{ListenerGate, SelfHealth};
use crate::route::{Route, Router};
use crate::tcp::{self, TcpProxy};
use crate::tls::{LoadedCertificates, ServerTls};

/// What a listener hands its traffic to.
enum Proxy {
    Http(Arc<HttpProxy>),
    Tcp(Arc<TcpProxy>),
}

/// A listener that is serving.
pub(super) struct LiveListener {
    pub settings: ListenerSettings,
    /// The address actually bound (the real port when the config said 0).
    pub address: SocketAddr,
    pub connections: Arc<Connections>,
    proxy: Proxy,
    /// Its TLS termination, read at every accept.
    tls: Arc<ListenerTls>,
    shutdown: watch::Sender<bool>,
    pub task: JoinHandle<()>,
}

/// What a listener's TLS becomes at a start or reload, prepared (files
/// read) before anything changes.
pub(super) enum TlsPlan {
    /// As it is (also: none, and none wanted).
    Keep,
    /// None from now on.
    Off,
    /// New settings: a new termination.
    New(Arc<ServerTls>),
    /// Same settings: the files read again.
    Reread(LoadedCertificates),
}

/// Prepare the TLS of a listener with `settings`, which runs as `running`
/// (if it does). `reread`: read unchanged files again (a reload, not a
/// rebuild for endpoint names).
pub(super) fn tls_plan(
    settings: &ListenerSettings,
    running: Option<&LiveListener>,
    reread: bool,
    metrics: &Metrics,
    events: &Arc<EventLog>,
) -> Result<TlsPlan, StartError> {
    let failed = |source| StartError::Tls {
        listener: settings.name.clone(),
        source,
    };
    let current = running.and_then(|running| running.tls.load_full());
    match (&settings.tls, current) {
        (None, None) => Ok(TlsPlan::Keep),
        (None, Some(_)) => Ok(TlsPlan::Off),
        (Some(wanted), Some(current)) if current.settings() == wanted => {
            if !reread {
                return Ok(TlsPlan::Keep);
            }
            current
                .reload_files()
                .map(TlsPlan::Reread)
                .map_err(|error| failed(error.into()))
        }
        (Some(wanted), _) => ServerTls::new(
            &settings.name,
            wanted,
            settings.protocol == Protocol::Http,
            metrics.tls_listener(&settings.name),
            Arc::clone(events),
        )
        .map(TlsPlan::New)
        .map_err(failed),
    }
}

impl TlsPlan {
    fn apply(self, tls: &ListenerTls) {
        match self {
            TlsPlan::Keep => {}
            TlsPlan::Off => tls.store(None),
            TlsPlan::New(new) => tls.store(Some(new)),
            TlsPlan::Reread(loaded) => {
                if let Some(current) = tls.load_full() {
                    current.install(loaded);
                }
            }
        }
    }
}

/// A listener bound but not serving yet.
pub(super) struct BoundListener {
    pub settings: ListenerSettings,
    socket: TcpListener,
    pub address: SocketAddr,
}

/// Bind `settings`' socket.
pub(super) fn bind(settings: &ListenerSettings) -> Result<BoundListener, BindError> {
    let what = format!("listener {:?}", settings.name);
    let socket = listener::bind(&what, settings.listen)?;
    let address = socket.local_addr().map_err(|source| BindError {
        what,
        address: settings.listen,
        source,
    })?;
    Ok(BoundListener {
        settings: settings.clone(),
        socket,
        address,
    })
}

/// The routes of a listener, each with its cluster, and its default.
pub(super) fn router(
    settings: &ListenerSettings,
    clusters: &HashMap<String, Served>,
) -> Result<Router<Arc<Route>>, StartError> {
    let served = |name: &str| {
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
            let Served { cluster, stages } = served(&route.cluster)?;
            let mut target = Route::configured(&settings.name, route, cluster, stages);
            target.access_log = settings.access_log.is_some();
            Ok((route.matches.clone(), Arc::new(target)))
        })
        .collect::<Result<Vec<_>, StartError>>()?;
    let default = settings
        .cluster
        .as_deref()
        .map(|name| {
            served(name).map(|Served { cluster, stages }| {
                let mut route = Route::default_for(&settings.name, cluster, stages);
                route.access_log = settings.access_log.is_some();
                Arc::new(route)
            })
        })
        .transpose()?;
    Ok(Router::new(routes, default))
}

/// A listener's limits from its settings (`derived` when it sets no
/// `max_connections`).
pub(super) fn limits(settings: &ListenerSettings, derived: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: settings.header_read_timeout,
        idle_timeout: settings.idle_timeout,
        max_connections: settings.max_connections.unwrap_or(derived),
        max_request_headers: settings.max_request_headers,
    }
}

/// Everything a listener needs from the gateway to serve.
pub(super) struct Serving<'a> {
    pub metrics: &'a Metrics,
    pub events: &'a Arc<EventLog>,
    pub health: &'a Arc<SelfHealth>,
    pub derived_max: usize,
}

impl BoundListener {
    /// Start serving through `router`.
    pub fn serve(
        self,
        router: Router<Arc<Route>>,
        tls_plan: TlsPlan,
        serving: &Serving<'_>,
    ) -> Result<LiveListener, StartError> {
        let BoundListener {
            settings,
            socket,
            address,
        } = self;
        let name = settings.name.clone();
        let connections = Connections::new(
            &name,
            limits(&settings, serving.derived_max),
            serving.metrics.listener_connections(&name),
            Arc::clone(serving.events),
        );
        let gate = ListenerGate::new(&name, settings.when_impaired, serving.health);
        let acceptor = Acceptor::new(
            &name,
            socket,
            Some(gate.clone()),
            serving.metrics.listener_open(&name),
            connections.metrics().clone(),
            Arc::clone(serving.events),
        )
        .map_err(|source| BindError {
            what: format!("listener {name:?}"),
            address,
            source,
        })?;
        tracing::info!(listener = %name, %address, protocol = %settings.protocol, cluster = settings.cluster.as_deref().unwrap_or("-"), routes = settings.routes.len(), max_connections = connections.limit(), "listening");
        let tls = Arc::new(ListenerTls::empty());
        tls_plan.apply(&tls);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let listener_metrics = serving.metrics.listener(&name);
        let (proxy, task) = match settings.protocol {
            Protocol::Http => {
                let proxy = Arc::new(HttpProxy::new(name, router, listener_metrics));
                proxy.set_access_log(access_log(&settings, serving.metrics)?);
                let task = tokio::spawn(listener::serve_http(
                    acceptor,
                    Arc::clone(&proxy),
                    gate,
                    Arc::clone(&connections),
                    Arc::clone(&tls),
                    shutdown_rx,
                ));
                (Proxy::Http(proxy), task)
            }
            Protocol::Tcp => {
                let route = default_route(&name, &router)?;
                let proxy = Arc::new(TcpProxy::new(
                    &settings,
                    route,
                    (
                        listener_metrics,
                        serving.metrics.tcp_listener(&settings.name),
                    ),
                ));
                let task = tokio::spawn(tcp::serve_tcp(
                    acceptor,
                    Arc::clone(&proxy),
                    Arc::clone(&connections),
                    Arc::clone(&tls),
                    shutdown_rx,
                ));
                (Proxy::Tcp(proxy), task)
            }
        };
        Ok(LiveListener {
            settings,
            address,
            connections,
            proxy,
            tls,
            shutdown,
            task,
        })
    }
}

/// The access log `settings` ask for, started (its file opened).
fn access_log(
    settings: &ListenerSettings,
    metrics: &Metrics,
) -> Result<Option<Arc<AccessLog>>, StartError> {
    let Some(wanted) = &settings.access_log else {
        return Ok(None);
    };
    AccessLog::start(&settings.name, wanted, metrics.access_log(&settings.name))
        .map(|log| Some(Arc::new(log)))
        .map_err(|source| StartError::AccessLog {
            listener: settings.name.clone(),
            source,
        })
}

impl LiveListener {
    /// Its HTTP proxy, if it is an HTTP listener.
    pub fn http_proxy(&self) -> Option<Arc<HttpProxy>> {
        match &self.proxy {
            Proxy::Http(proxy) => Some(Arc::clone(proxy)),
            Proxy::Tcp(_) => None,
        }
    }
}

/// Validation gives a tcp listener a cluster and no routes: its default
/// route (the cluster and its stages).
fn default_route(listener: &str, router: &Router<Arc<Route>>) -> Result<Arc<Route>, StartError> {
    router
        .targets()
        .next()
        .cloned()
        .ok_or_else(|| StartError::UnknownCluster {
            listener: listener.to_owned(),
            cluster: String::new(),
        })
}

impl LiveListener {
    /// Serve new requests (or sessions) with `router` and `settings` from
    /// now on; the socket and open connections stay.
    pub fn update(
        &mut self,
        settings: &ListenerSettings,
        router: Router<Arc<Route>>,
        tls_plan: TlsPlan,
        derived_max: usize,
        metrics: &Metrics,
    ) -> Result<(), StartError> {
        // Opened before anything changes: a file levee cannot write to
        // fails the reload and leaves the listener as it was.
        let new_log = match (&self.proxy, &settings.access_log) {
            (Proxy::Http(proxy), wanted) => {
                let running = proxy.access_log();
                match (running, wanted) {
                    // Kept: a reload reopens its file (logrotate).
                    (Some(log), Some(wanted)) if log.settings() == wanted => {
                        log.reopen();
                        None
                    }
                    (None, None) => None,
                    _ => Some(access_log(settings, metrics)?),
                }
            }
            (Proxy::Tcp(_), _) => None,
        };
        tls_plan.apply(&self.tls);
        match &self.proxy {
            Proxy::Http(proxy) => {
                if let Some(log) = new_log {
                    proxy.set_access_log(log);
                }
                proxy.set_router(router);
            }
            Proxy::Tcp(proxy) => proxy.set_route(default_route(&settings.name, &router)?),
        }
        self.connections.set_limits(limits(settings, derived_max));
        self.settings = settings.clone();
        Ok(())
    }

    /// Stop accepting; open connections drain (the task ends when they
    /// have).
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Stop accepting and wait (up to a second) until the socket is closed:
    /// once a reload that removes a listener returns, its port refuses.
    pub async fn stop_accepting(&self) {
        self.stop();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.shutdown.closed()).await;
    }

    /// The listener as `/status` shows it.
    pub fn status(&self) -> ListenerStatus {
        let settings = &self.settings;
        ListenerStatus {
            name: settings.name.clone(),
            address: self.address,
            protocol: settings.protocol.as_str(),
            tls: settings.tls.is_some(),
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
            max_connections: self.connections.limit(),
            open_connections: 0,
        }
    }
}
