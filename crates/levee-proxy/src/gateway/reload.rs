//! A new config applied to a running gateway, without dropping a
//! connection or forgetting what levee learned.
//!
//! The new file is read and validated first; on any problem nothing
//! changes. Then everything that can fail is prepared (clusters built,
//! routes resolved, new sockets bound), and only then swapped in:
//! - a listener whose name, address and protocol stay keeps its socket and
//!   its open connections, and routes its next request with the new routes;
//!   new listeners bind, removed ones stop accepting and drain;
//! - a cluster whose settings did not change is kept whole; a changed one
//!   continues the old one's state (`Cluster::continued`); in-flight
//!   requests finish on the cluster they started on;
//! - readiness criteria, limits and timeouts apply at once.
//!
//! What cannot change without a restart (the admin address, worker threads,
//! the store, webhooks, probes, a listener's `when_impaired` or
//! `tcp_replay`) keeps its old value, and the reload says so.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::task::JoinHandle;

use super::clusters::ClusterPlan;
use super::listeners::{self, Serving};
use super::{GatewayState, Live, StartError, spawn_fleet, store};
use crate::config::{Config, ConfigErrors};
use crate::events::{NewEvent, Severity};

/// How often `[runtime] watch_config` looks at the file.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Why a reload did not happen. The running config stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The gateway was not started from a file.
    #[error("this gateway was not started from a config file; nothing to reload")]
    NoFile,
    /// The new file does not validate.
    #[error("{0}")]
    Config(ConfigErrors),
    /// Something the new config needs could not be set up (a new listener
    /// cannot bind its address, ...).
    #[error(transparent)]
    Start(#[from] StartError),
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    Stopped,
}

impl ReloadError {
    /// Every problem, one per line (a config's at `file:line:col`).
    pub fn problems(&self) -> Vec<String> {
        match self {
            ReloadError::Config(errors) => errors.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

/// A reload that happened.
#[derive(Clone, Debug, Serialize)]
pub struct Reloaded {
    /// The generation now in force.
    pub generation: u64,
    /// What changed, in words.
    pub changes: Vec<String>,
    /// What the new file changes but a reload cannot apply (it keeps its
    /// old value until a restart).
    pub needs_restart: Vec<String>,
    /// The new config's warnings.
    pub warnings: Vec<String>,
}

/// Reloads the gateway from its file, on request or when the file changes.
pub(super) struct Reloader {
    live: Weak<tokio::sync::Mutex<Live>>,
    path: Mutex<Option<PathBuf>>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl Reloader {
    pub fn new(live: Weak<tokio::sync::Mutex<Live>>) -> Reloader {
        Reloader {
            live,
            path: Mutex::new(None),
            watcher: Mutex::new(None),
        }
    }

    /// The file reloads read.
    pub fn path(&self) -> Option<PathBuf> {
        self.path.lock().clone()
    }

    /// Read reloads from `path` and, if the config says so, watch it.
    pub fn set_path(&self, path: PathBuf, state: &Arc<GatewayState>) {
        *self.path.lock() = Some(path.clone());
        let state = Arc::downgrade(state);
        let watcher = tokio::spawn(watch(path, state));
        if let Some(old) = self.watcher.lock().replace(watcher) {
            old.abort();
        }
    }

    /// Stop watching the file.
    pub fn stop(&self) {
        if let Some(watcher) = self.watcher.lock().take() {
            watcher.abort();
        }
    }

    /// Read the file and apply it.
    pub async fn reload_from_file(&self, state: &GatewayState) -> Result<Reloaded, ReloadError> {
        let path = self.path().ok_or(ReloadError::NoFile)?;
        let live = self.live.upgrade().ok_or(ReloadError::Stopped)?;
        let mut live = live.lock().await;
        let config = match Config::load(&path) {
            Ok(config) => config,
            Err(errors) => {
                let error = ReloadError::Config(errors);
                rejected(state, &error, live.config_generation(state));
                return Err(error);
            }
        };
        apply(state, &mut live, config).await
    }
}

impl Live {
    fn config_generation(&self, state: &GatewayState) -> u64 {
        state.generation.load(Ordering::Acquire)
    }
}

/// With `[runtime] watch_config`, reload whenever the file's content
/// changes (checked every second; a file being written is read again on
/// the next look if it does not validate yet).
async fn watch(path: PathBuf, state: Weak<GatewayState>) {
    let mut seen = std::fs::read(&path).ok();
    let mut ticks = tokio::time::interval(WATCH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let Some(reloader) = state.reloader.get() else {
            continue;
        };
        let watching = match reloader.live.upgrade() {
            Some(live) => live.lock().await.config.runtime.watch_config,
            None => return,
        };
        let now = std::fs::read(&path).ok();
        if !watching || now.is_none() || now == seen {
            continue;
        }
        seen = now;
        tracing::info!(path = %path.display(), "config file changed; reloading");
        // The result is logged and recorded as an event either way.
        let _ = reloader.reload_from_file(&state).await;
    }
}

/// Record a rejected reload: the old config stays.
fn rejected(state: &GatewayState, error: &ReloadError, generation: u64) {
    state.metrics.record_reload(false);
    state.events.record(NewEvent {
        kind: "config",
        cluster: String::new(),
        endpoint: None,
        from: format!("generation {generation}"),
        to: format!("generation {generation}"),
        reason: format!(
            "reload rejected, the running config stays: {}",
            error.problems().join("; ")
        ),
        severity: Severity::Error,
    });
}

/// What a listener of the new config becomes.
enum ListenerPlan {
    /// The running listener of this index keeps its socket.
    Keep(usize),
    /// A new socket.
    Bind,
}

/// Why the gateway's clusters are being rebuilt.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// A new config.
    Reload,
    /// The same config; endpoint names resolve to other addresses.
    Names,
}

/// Rebuild the clusters whose names resolve to other addresses than their
/// endpoints have, under the config in force (not a reload: no new
/// generation, no `config` event; the name changes were reported).
pub(super) async fn apply_names(
    state: &GatewayState,
    live: &mut Live,
) -> Result<Reloaded, ReloadError> {
    if state.draining.load(Ordering::Acquire) {
        return Err(ReloadError::Stopped);
    }
    let config = live.config.clone();
    prepare_and_swap(state, live, config, Cause::Names).await
}

/// Apply `config` to the running gateway.
pub(super) async fn apply(
    state: &GatewayState,
    live: &mut Live,
    config: Config,
) -> Result<Reloaded, ReloadError> {
    if state.draining.load(Ordering::Acquire) {
        return Err(ReloadError::Stopped);
    }
    let generation = state.generation.load(Ordering::Acquire);
    match prepare_and_swap(state, live, config, Cause::Reload).await {
        Ok(reloaded) => Ok(reloaded),
        Err(error) => {
            rejected(state, &error, generation);
            Err(error)
        }
    }
}

async fn prepare_and_swap(
    state: &GatewayState,
    live: &mut Live,
    config: Config,
    cause: Cause,
) -> Result<Reloaded, ReloadError> {
    let mut needs_restart = Vec::new();
    let mut warnings = Vec::new();
    if cause == Cause::Reload {
        needs_restart = restart_only(&live.config, &config, state);
        warnings = config.warnings.iter().map(ToString::to_string).collect();
        for warning in &config.warnings {
            tracing::warn!(%warning, "config warning");
        }
        // New names are looked up before the clusters that use them are
        // built; the running config's names stay followed until the swap.
        state.names.set_servers(&config.runtime.dns_servers);
        state.names.add(&config.clusters);
        crate::resolve::report(
            &state.names.resolve_pending().await,
            state.metrics.names(),
            &state.events,
        );
    }

    // Everything that can fail, before anything changes.
    let plans: Vec<ListenerPlan> = config
        .listeners
        .iter()
        .map(|wanted| {
            match live.listeners.iter().position(|running| {
                running.settings.name == wanted.name
                    && running.settings.listen == wanted.listen
                    && running.settings.protocol == wanted.protocol
            }) {
                Some(index) => ListenerPlan::Keep(index),
                None => ListenerPlan::Bind,
            }
        })
        .collect();
    let clusters = ClusterPlan::build(
        &config.clusters,
        &state.names,
        &live.clusters,
        &state.metrics,
        &state.events,
    )
    .map_err(StartError::from)?;
    let by_name = clusters.by_name();
    let mut routers = Vec::with_capacity(config.listeners.len());
    for settings in &config.listeners {
        routers.push(listeners::router(settings, &by_name)?);
    }
    let mut tls_plans = Vec::with_capacity(config.listeners.len());
    for (settings, plan) in config.listeners.iter().zip(&plans) {
        let running = match plan {
            ListenerPlan::Keep(index) => live.listeners.get(*index),
            ListenerPlan::Bind => None,
        };
        tls_plans.push(listeners::tls_plan(
            settings,
            running,
            cause == Cause::Reload,
            &state.metrics,
            &state.events,
        )?);
    }
    let mut bound = Vec::new();
    for (settings, plan) in config.listeners.iter().zip(&plans) {
        if matches!(plan, ListenerPlan::Bind) {
            bound.push(listeners::bind(settings).map_err(StartError::from)?);
        }
    }

    // Swap.
    let mut changes = Vec::new();
    let serving = Serving {
        metrics: &state.metrics,
        events: &state.events,
        health: &state.health,
        derived_max: live.derived_max,
    };
    let mut old: Vec<Option<listeners::LiveListener>> =
        live.listeners.drain(..).map(Some).collect();
    let mut bound = bound.into_iter();
    let mut serving_now = Vec::with_capacity(config.listeners.len());
    for (((settings, plan), router), tls) in config
        .listeners
        .iter()
        .zip(plans)
        .zip(routers)
        .zip(tls_plans)
    {
        match plan {
            ListenerPlan::Keep(index) => {
                let Some(mut listener) = old[index].take() else {
                    continue;
                };
                if listener.settings != *settings {
                    changes.push(format!("listener {:?} updated", settings.name));
                }
                listener.update(settings, router, tls, live.derived_max, &state.metrics)?;
                serving_now.push(listener);
            }
            ListenerPlan::Bind => {
                let Some(new) = bound.next() else {
                    continue;
                };
                changes.push(format!(
                    "listener {:?} added on {}",
                    settings.name, new.address
                ));
                serving_now.push(new.serve(router, tls, &serving)?);
            }
        }
    }
    for retired in old.into_iter().flatten() {
        changes.push(format!(
            "listener {:?} removed (its connections drain)",
            retired.settings.name
        ));
        retired.stop_accepting().await;
        live.retired.push(retired);
    }
    live.retired.retain(|listener| !listener.task.is_finished());
    live.listeners = serving_now;

    for (served, new) in &clusters.clusters {
        let cluster = &served.cluster;
        if *new {
            let what = if live.clusters.iter().any(|c| c.cluster.name == cluster.name) {
                "changed (what it learned carries over)"
            } else {
                "added"
            };
            changes.push(format!("cluster {:?} {what}", cluster.name));
        }
    }
    for running in &live.clusters {
        if !config
            .clusters
            .iter()
            .any(|c| c.name == running.cluster.name)
        {
            changes.push(format!("cluster {:?} removed", running.cluster.name));
        }
    }
    let list = clusters.list();
    let served = clusters.served();
    if let Some(fleet) = &state.store {
        store::link(fleet, served.iter());
        store::link_rate_limits(fleet, served.iter());
    } else if served.iter().any(store::is_shared) {
        needs_restart
            .push("a breaker newly shared through the store (no store runs yet)".to_owned());
    }
    state.served.store(Arc::new(served));
    live.clusters = clusters.start(std::mem::take(&mut live.clusters));
    state.clusters.store(Arc::new(list.clone()));
    for task in live.fleet_tasks.drain(..) {
        task.abort();
    }
    live.fleet_tasks = spawn_fleet(state);
    state.set_listeners(&live.listeners);
    state.health.update(config.readiness.clone(), list);
    state.names.retain(&config.clusters);

    if cause == Cause::Names {
        tracing::info!(changes = %changes.join("; "), "clusters rebuilt for endpoint names that resolve to other addresses");
        live.config = config;
        return Ok(Reloaded {
            generation: state.generation.load(Ordering::Acquire),
            changes,
            needs_restart,
            warnings,
        });
    }
    let generation = state.generation.fetch_add(1, Ordering::AcqRel) + 1;
    *state.loaded_at.lock() = SystemTime::now();
    live.config = config;
    state.metrics.record_reload(true);
    if changes.is_empty() {
        changes.push("nothing that takes effect changed".to_owned());
    }
    let mut reason = changes.join("; ");
    if !needs_restart.is_empty() {
        reason.push_str(&format!(
            "; kept until a restart: {}",
            needs_restart.join(", ")
        ));
    }
    state.events.record(NewEvent {
        kind: "config",
        cluster: String::new(),
        endpoint: None,
        from: format!("generation {}", generation - 1),
        to: format!("generation {generation}"),
        reason: format!("reloaded: {reason}"),
        severity: if needs_restart.is_empty() {
            Severity::Info
        } else {
            Severity::Warning
        },
    });
    Ok(Reloaded {
        generation,
        changes,
        needs_restart,
        warnings,
    })
}

/// What the new config changes that a reload does not apply.
fn restart_only(old: &Config, new: &Config, state: &GatewayState) -> Vec<String> {
    let mut notes = Vec::new();
    if old.admin != new.admin {
        notes.push("[admin] listen".to_owned());
    }
    if old.runtime.worker_threads != new.runtime.worker_threads {
        notes.push("[runtime] worker_threads".to_owned());
    }
    if old.log != new.log {
        notes.push("[log]".to_owned());
    }
    if old.store != new.store {
        notes.push("[store]".to_owned());
    }
    if old.alerts != new.alerts {
        notes.push("[[alert]]".to_owned());
    }
    if state.health.probe_settings() != new.readiness.probes {
        notes.push("[[readiness.probe]]".to_owned());
    }
    for wanted in &new.listeners {
        if let Some(running) = old.listeners.iter().find(|l| {
            l.name == wanted.name && l.listen == wanted.listen && l.protocol == wanted.protocol
        }) {
            if running.when_impaired != wanted.when_impaired {
                notes.push(format!("when_impaired of listener {:?}", wanted.name));
            }
            if running.tcp_replay != wanted.tcp_replay {
                notes.push(format!("tcp_replay of listener {:?}", wanted.name));
            }
            if running.tcp_hedge != wanted.tcp_hedge {
                notes.push(format!("tcp_hedge of listener {:?}", wanted.name));
            }
            if running.first_byte_timeout != wanted.first_byte_timeout {
                notes.push(format!("first_byte_timeout of listener {:?}", wanted.name));
            }
            if running.replay_first_bytes_match != wanted.replay_first_bytes_match {
                notes.push(format!(
                    "replay_first_bytes_match of listener {:?}",
                    wanted.name
                ));
            }
        }
    }
    for note in &notes {
        tracing::warn!(setting = %note, "the new config changes a setting that takes a restart; the running value stays");
    }
    notes
}
