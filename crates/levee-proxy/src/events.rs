//! Recent state changes, each with its reason: served as JSON on `/events`.
//!
//! Every change of endpoint or cluster state goes through [`EventLog::record`],
//! which also writes the log line, so a change can never be logged without
//! showing up in `/events` or the other way round.

use std::collections::VecDeque;
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::Serialize;

/// Every event kind, for `[[alert]] events` filters. A new kind of event
/// is added here.
pub const EVENT_KINDS: &[&str] = &[
    "endpoint-health",
    "endpoint-ejected",
    "endpoint-returned",
    "endpoint-resolution",
    "endpoint-fleet-health",
    "endpoint-going-away",
    "cluster-panic",
    "poison-request",
    "breaker",
    "readiness",
    "probe-health",
    "drain",
    "store",
    "listener-limit",
    "config",
];

/// How many events `/events` remembers.
const CAPACITY: usize = 1000;

/// How serious a change is; decides the log level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Back to normal (logged at info).
    Info,
    /// Degraded but serving (warn).
    Warning,
    /// Capacity lost (error).
    Error,
}

/// One state change.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Increasing number, so a client can ask for what is new.
    pub id: u64,
    /// Wall-clock time, RFC 3339.
    pub at: String,
    /// What changed: `endpoint-health`, `endpoint-ejected`,
    /// `endpoint-returned`, `endpoint-resolution`, `cluster-panic`, ...
    pub kind: &'static str,
    /// Cluster concerned (empty for node-wide events: readiness, probes,
    /// drain).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// Endpoint concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// State before.
    pub from: String,
    /// State after.
    pub to: String,
    /// Why, in words.
    pub reason: String,
    /// Seriousness.
    pub severity: Severity,
}

/// A new event, before it gets its id and time.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// See [`Event::kind`].
    pub kind: &'static str,
    /// See [`Event::cluster`].
    pub cluster: String,
    /// See [`Event::endpoint`].
    pub endpoint: Option<String>,
    /// See [`Event::from`].
    pub from: String,
    /// See [`Event::to`].
    pub to: String,
    /// See [`Event::reason`].
    pub reason: String,
    /// See [`Event::severity`].
    pub severity: Severity,
}

/// Something told of every event as it is recorded (the webhooks of
/// `alerts.rs`). It must not block: it runs on the path that caused the
/// event.
type Subscriber = Box<dyn Fn(&Event) + Send + Sync>;

/// The recent events.
#[derive(Default)]
pub struct EventLog {
    inner: Mutex<(u64, VecDeque<Event>)>,
    subscribers: Mutex<Vec<Subscriber>>,
}

impl EventLog {
    /// Log `event` and keep it for `/events`.
    pub fn record(&self, event: NewEvent) {
        let endpoint = event.endpoint.as_deref().unwrap_or("-");
        match event.severity {
            Severity::Info => {
                tracing::info!(kind = event.kind, cluster = %event.cluster, endpoint, from = %event.from, to = %event.to, reason = %event.reason, "state change")
            }
            Severity::Warning => {
                tracing::warn!(kind = event.kind, cluster = %event.cluster, endpoint, from = %event.from, to = %event.to, reason = %event.reason, "state change")
            }
            Severity::Error => {
                tracing::error!(kind = event.kind, cluster = %event.cluster, endpoint, from = %event.from, to = %event.to, reason = %event.reason, "state change")
            }
        }
        let mut inner = self.inner.lock();
        inner.0 += 1;
        let id = inner.0;
        if inner.1.len() == CAPACITY {
            inner.1.pop_front();
        }
        let event = Event {
            id,
            at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            kind: event.kind,
            cluster: event.cluster,
            endpoint: event.endpoint,
            from: event.from,
            to: event.to,
            reason: event.reason,
            severity: event.severity,
        };
        inner.1.push_back(event.clone());
        drop(inner);
        for subscriber in self.subscribers.lock().iter() {
            subscriber(&event);
        }
    }

    /// Call `subscriber` with every event recorded from now on. It must
    /// return at once (hand the event to a bounded queue, say).
    pub fn subscribe(&self, subscriber: impl Fn(&Event) + Send + Sync + 'static) {
        self.subscribers.lock().push(Box::new(subscriber));
    }

    /// Events with an id greater than `after`, oldest first, at most `limit`
    /// (the newest ones when there are more).
    pub fn since(&self, after: u64, limit: usize) -> Vec<Event> {
        let inner = self.inner.lock();
        let newer: Vec<&Event> = inner.1.iter().filter(|e| e.id > after).collect();
        let skip = newer.len().saturating_sub(limit);
        newer.into_iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reason: &str) -> NewEvent {
        NewEvent {
            kind: "endpoint-health",
            cluster: "app".into(),
            endpoint: Some("127.0.0.1:1".into()),
            from: "healthy".into(),
            to: "unhealthy".into(),
            reason: reason.into(),
            severity: Severity::Error,
        }
    }

    #[test]
    fn keeps_the_newest_events_in_order() {
        let log = EventLog::default();
        for i in 0..(CAPACITY + 5) {
            log.record(event(&format!("r{i}")));
        }
        let all = log.since(0, usize::MAX);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].reason, "r5");
        assert_eq!(all.last().map(|e| e.id), Some((CAPACITY + 5) as u64));
        let last_two = log.since(0, 2);
        assert_eq!(last_two[1].reason, format!("r{}", CAPACITY + 4));
        assert!(log.since(all.last().map_or(0, |e| e.id), 10).is_empty());
    }
}
