//! The connections one listener holds, and its `max_connections`.
//!
//! A gateway facing the internet must not be exhausted by clients that
//! open connections and stay silent. Timeouts close such connections, but
//! only after seconds; until then a flood can fill every slot. So at the
//! limit a new connection first takes the place of the oldest connection
//! that has no request in progress — one that never sent a complete request
//! first, then an idle keep-alive one (nginx reuses "reusable" connections
//! the same way). Only when every connection is busy is the new one closed
//! at once. A client that sends its request promptly is therefore served
//! even while thousands of silent connections are open.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::attention::{CHECK, DRAIN, EVICT, Signals};
use super::limits::ConnectionLimits;
use super::metrics::{CloseReason, ConnectionMetrics};
use crate::events::{EventLog, NewEvent, Severity};

/// What a connection's task, its socket wrapper and its service share.
/// Written by the connection's own task only; read by the registry.
#[derive(Debug, Default)]
pub(crate) struct ConnectionState {
    /// Accept order within the listener.
    id: u64,
    /// Bytes read from the client so far.
    pub(crate) bytes_read: AtomicU64,
    /// The last write could not go out: the client is not reading.
    pub(crate) write_pending: AtomicBool,
    /// The HTTP/1 connection is being parked: hyper's shutdown must leave
    /// the socket open.
    pub(crate) parking: AtomicBool,
    /// Requests handed to the service.
    pub(crate) started: AtomicU64,
    /// Responses whose body has ended (or was dropped).
    pub(crate) finished: AtomicU64,
    /// `bytes_read` when the last response finished: more since means the
    /// next request's head has begun.
    pub(crate) bytes_at_finish: AtomicU64,
    /// Shutdown has begun: HTTP/1 responses carry `Connection: close`.
    pub(crate) draining: AtomicBool,
    /// Being served by hyper: the listener's periodic check concerns it.
    pub(crate) hot: AtomicBool,
    /// Eviction, drain and the periodic check (`attention.rs`).
    pub(crate) signals: Signals,
}

impl ConnectionState {
    /// Its place in accept order (the registry's key).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Requests whose response has not ended.
    pub(crate) fn in_flight(&self) -> u64 {
        self.started
            .load(Ordering::Relaxed)
            .saturating_sub(self.finished.load(Ordering::Relaxed))
    }

    /// Whether it has ever had a request head complete.
    pub(crate) fn never_served(&self) -> bool {
        self.started.load(Ordering::Relaxed) == 0
    }
}

/// Why a new connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

/// A listener's live connections.
pub(crate) struct Connections {
    listener: String,
    /// Its limits, replaced by a config reload.
    limits: ArcSwap<ConnectionLimits>,
    /// In accept order, so the oldest candidates for eviction come first.
    live: Mutex<Live>,
    metrics: ConnectionMetrics,
    events: Arc<EventLog>,
}

struct Live {
    next_id: u64,
    connections: BTreeMap<u64, Arc<ConnectionState>>,
    /// Set while the listener is at its limit; what happened during the
    /// burst is told once when it ends.
    burst: Option<Burst>,
}

#[derive(Default)]
struct Burst {
    evicted: u64,
    refused: u64,
}

impl Connections {
    /// Connections of `listener`, within `limits`.
    pub(crate) fn new(
        listener: &str,
        limits: ConnectionLimits,
        metrics: ConnectionMetrics,
        events: Arc<EventLog>,
    ) -> Arc<Connections> {
        metrics.set_limit(limits.max_connections);
        Arc::new(Connections {
            listener: listener.to_owned(),
            limits: ArcSwap::from_pointee(limits),
            live: Mutex::new(Live {
                next_id: 0,
                connections: BTreeMap::new(),
                burst: None,
            }),
            metrics,
            events,
        })
    }

    /// The listener's most connections at once.
    pub(crate) fn limit(&self) -> usize {
        self.limits.load().max_connections
    }

    /// The listener's limits.
    pub(crate) fn limits(&self) -> ConnectionLimits {
        **self.limits.load()
    }

    /// The listener's limits, to be shared by a connection.
    pub(crate) fn shared_limits(&self) -> Arc<ConnectionLimits> {
        self.limits.load_full()
    }

    /// New limits (a config reload): for new connections, and for the
    /// count of open ones from now on.
    pub(crate) fn set_limits(&self, limits: ConnectionLimits) {
        self.metrics.set_limit(limits.max_connections);
        self.limits.store(Arc::new(limits));
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.live.lock().connections.len()
    }

    /// The metric handles of this listener's connections.
    pub(crate) fn metrics(&self) -> &ConnectionMetrics {
        &self.metrics
    }

    /// Take a new connection, making room if the listener is full and
    /// `evict` allows it (HTTP; a TCP session is never idle in that sense).
    /// The connection evicted, if any, was told (its task closes it); a
    /// parked one has no task: its listener closes it by the id returned.
    pub(crate) fn admit(
        self: &Arc<Self>,
        evict: bool,
    ) -> Result<(ConnectionGuard, Option<u64>), Full> {
        let mut live = self.live.lock();
        let limit = self.limit();
        let mut evicted = None;
        if live.connections.len() >= limit {
            let victim = evict.then(|| pick_victim(&live.connections)).flatten();
            evicted = victim;
            let started = live.burst.is_none();
            let burst = live.burst.get_or_insert_with(Burst::default);
            match victim {
                Some(id) => {
                    burst.evicted += 1;
                    if let Some(state) = live.connections.remove(&id) {
                        state.signals.raise(EVICT);
                    }
                    self.metrics.record_close(CloseReason::Evicted);
                }
                None => {
                    burst.refused += 1;
                    self.metrics.record_close(CloseReason::OverLimit);
                }
            }
            let saturated = started.then(|| NewEvent {
                    kind: "listener-limit",
                    cluster: String::new(),
                    endpoint: None,
                    from: "accepting".to_owned(),
                    to: "at-limit".to_owned(),
                    reason: format!(
                        "listener {:?} has {} connections open (max_connections {}): new connections replace the oldest ones with no request in progress, or are closed at once",
                        self.listener,
                        live.connections.len() + usize::from(victim.is_some()),
                        limit
                    ),
                    severity: Severity::Warning,
                });
            if victim.is_none() {
                drop(live);
                if let Some(event) = saturated {
                    self.events.record(event);
                }
                return Err(Full);
            }
            if let Some(event) = saturated {
                // Recorded without the lock held; the new connection is
                // admitted right after.
                drop(live);
                self.events.record(event);
                live = self.live.lock();
            }
        }
        let id = live.next_id;
        live.next_id += 1;
        let state = Arc::new(ConnectionState {
            id,
            ..ConnectionState::default()
        });
        live.connections.insert(id, Arc::clone(&state));
        self.metrics.set_open(live.connections.len());
        Ok((
            ConnectionGuard {
                connections: Arc::clone(self),
                state,
            },
            evicted,
        ))
    }

    /// Ask every connection served by hyper to look at its activity.
    pub(crate) fn tick(&self) {
        for state in self.live.lock().connections.values() {
            if state.hot.load(Ordering::Relaxed) {
                state.signals.raise(CHECK);
            }
        }
    }

    /// Tell every connection that shutdown has begun.
    pub(crate) fn drain(&self) {
        for state in self.live.lock().connections.values() {
            state.signals.raise(DRAIN);
        }
    }

    fn release(&self, id: u64) {
        let mut live = self.live.lock();
        live.connections.remove(&id);
        let open = live.connections.len();
        self.metrics.set_open(open);
        // The burst is over once a tenth of the slots are free again.
        let limit = self.limit();
        let ended = (open < limit - limit / 10)
            .then(|| live.burst.take())
            .flatten();
        drop(live);
        if let Some(burst) = ended {
            self.events.record(NewEvent {
                    kind: "listener-limit",
                    cluster: String::new(),
                    endpoint: None,
                    from: "at-limit".to_owned(),
                    to: "accepting".to_owned(),
                    reason: format!(
                        "listener {:?} is below max_connections ({}) again: {} idle connections were closed to make room and {} new ones refused",
                        self.listener, limit, burst.evicted, burst.refused
                    ),
                    severity: Severity::Info,
                });
        }
    }
}

/// The connection to close to make room: the oldest that never completed a
/// request head (silent, or sending one slowly), else the oldest with no
/// request in progress; `None` if every one is busy.
fn pick_victim(connections: &BTreeMap<u64, Arc<ConnectionState>>) -> Option<u64> {
    let mut idle = None;
    for (id, state) in connections {
        if state.in_flight() > 0 || state.write_pending.load(Ordering::Relaxed) {
            continue;
        }
        if state.never_served() {
            return Some(*id);
        }
        idle.get_or_insert(*id);
    }
    idle
}

/// A connection's place in its listener; given back when dropped.
pub(crate) struct ConnectionGuard {
    connections: Arc<Connections>,
    state: Arc<ConnectionState>,
}

impl ConnectionGuard {
    /// The connection's shared state.
    pub(crate) fn state(&self) -> &Arc<ConnectionState> {
        &self.state
    }

    /// The listener's connections.
    pub(crate) fn connections(&self) -> &Connections {
        &self.connections
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.connections.release(self.state.id);
    }
}
