//! The config exactly as written in TOML, before any checking.
//!
//! Every key is optional here, even required ones: a missing key is reported
//! by validation at the table's header, in levee's own words, instead of
//! stopping serde. Values that need parsing (durations, addresses, enum
//! names) are kept as `Spanned<String>` so that validation can report every
//! bad one at its position, not just the first.
//!
//! There is no `deny_unknown_fields`: unknown keys are collected with
//! `serde_ignored` so that all of them are reported (see `document.rs`).
//! A key added here must be documented in `docs/config.md`; a test checks it.

use std::ops::Range;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;

use super::keys::fields_of;

/// The top-level keys. Each is a section deserialized on its own, so that a
/// bad value in one section does not hide problems in the others.
pub(super) const SECTIONS: [&str; 7] = [
    "admin",
    "runtime",
    "listener",
    "cluster",
    "readiness",
    "alert",
    "store",
];

/// A table of the file, as serde reads it, and the tables nested in it.
pub(super) trait RawTable: DeserializeOwned + Default {
    /// The keys of the table at `path` inside this one (`[]`: this one
    /// itself), for "did you mean" hints and the documentation test; empty if
    /// `path` leads to no table.
    fn keys_at(path: &[&str]) -> &'static [&'static str] {
        match path {
            [] => fields_of::<Self>(),
            _ => &[],
        }
    }
}

impl RawTable for RawAdmin {}
impl RawTable for RawRuntime {}
impl RawTable for RawHeaderMatch {}
impl RawTable for RawRouteRetry {}

impl RawTable for RawListener {
    fn keys_at(path: &[&str]) -> &'static [&'static str] {
        match path {
            [] => fields_of::<Self>(),
            ["route", rest @ ..] => RawRoute::keys_at(rest),
            _ => &[],
        }
    }
}

impl RawTable for RawRoute {
    fn keys_at(path: &[&str]) -> &'static [&'static str] {
        match path {
            [] => fields_of::<Self>(),
            ["header", rest @ ..] => RawHeaderMatch::keys_at(rest),
            ["retry", rest @ ..] => RawRouteRetry::keys_at(rest),
            _ => &[],
        }
    }
}
impl RawTable for RawHttpCheck {}
impl RawTable for RawOutlier {}
impl RawTable for RawRetry {}
impl RawTable for RawAdmission {}
impl RawTable for RawCache {}
impl RawTable for RawBreaker {}
impl RawTable for RawProbe {}
impl RawTable for RawAlert {}
impl RawTable for RawStore {}

impl RawTable for RawReadiness {
    fn keys_at(path: &[&str]) -> &'static [&'static str] {
        match path {
            [] => fields_of::<Self>(),
            ["probe", rest @ ..] => RawProbe::keys_at(rest),
            _ => &[],
        }
    }
}

impl RawTable for RawCluster {
    fn keys_at(path: &[&str]) -> &'static [&'static str] {
        match path {
            [] => fields_of::<Self>(),
            ["health", rest @ ..] => RawHealth::keys_at(rest),
            ["outlier", rest @ ..] => RawOutlier::keys_at(rest),
            ["retry", rest @ ..] => RawRetry::keys_at(rest),
            ["admission", rest @ ..] => RawAdmission::keys_at(rest),
            ["cache", rest @ ..] => RawCache::keys_at(rest),
            ["breaker", rest @ ..] => RawBreaker::keys_at(rest),
            _ => &[],
        }
    }
}

impl RawTable for RawHealth {
    fn keys_at(path: &[&str]) -> &'static [&'static str] {
        match path {
            [] => fields_of::<Self>(),
            ["http", rest @ ..] => RawHttpCheck::keys_at(rest),
            _ => &[],
        }
    }
}

/// The whole file, one section at a time.
#[derive(Debug, Default)]
pub(super) struct RawConfig {
    /// `[admin]`, if written.
    pub admin: Option<Section<RawAdmin>>,
    /// `[runtime]`, if written.
    pub runtime: Option<Section<RawRuntime>>,
    /// Every `[[listener]]`, in file order.
    pub listener: Vec<Section<RawListener>>,
    /// Every `[[cluster]]`, in file order.
    pub cluster: Vec<Section<RawCluster>>,
    /// `[readiness]`, if written.
    pub readiness: Option<Section<RawReadiness>>,
    /// Every `[[alert]]`, in file order.
    pub alert: Vec<Section<RawAlert>>,
    /// `[store]`, if written.
    pub store: Option<Section<RawStore>>,
}

/// One table of the file, as far as serde could read it.
#[derive(Debug)]
pub(super) struct Section<T> {
    /// How messages name this table: `[admin]`, `[[cluster]] "app"`,
    /// `[[listener]] #2` (when it has no usable name).
    pub label: String,
    /// The table's header (`[[cluster]]`), or the `{ ... }` of an inline
    /// table: where a missing key is reported.
    pub span: Range<usize>,
    /// The keys serde could read. A key whose value had the wrong type is
    /// `None` here and listed in `unreadable`.
    pub raw: T,
    /// Keys present in the file whose value was already reported as being of
    /// the wrong type; they must not be reported as missing as well. A key
    /// of a nested table is written with its path: `health.http.path`.
    pub unreadable: Vec<String>,
}

impl<T> Section<T> {
    /// Whether `key` is written in this table but could not be read.
    pub fn is_unreadable(&self, key: &str) -> bool {
        self.unreadable.iter().any(|unreadable| unreadable == key)
    }
}

/// `[admin]`: the admin HTTP listener (health, status, metrics, dashboard,
/// drain).
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAdmin {
    /// Address the admin listener binds, `"ip:port"`. It has its own port so
    /// it stays up for diagnosis while traffic listeners are closed.
    /// Default `"127.0.0.1:9901"` (loopback: the admin API can drain the node).
    pub listen: Option<Spanned<String>>,
}

/// `[runtime]`: the process.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRuntime {
    /// Number of worker threads, at least 1. Default: unset, one per CPU.
    pub worker_threads: Option<Spanned<usize>>,
    /// On shutdown, how long to wait for in-flight requests to finish before
    /// closing their connections. Default `"30s"`.
    pub drain_timeout: Option<Spanned<String>>,
    /// `true`: reload whenever the config file changes (looked at every
    /// second), as on SIGHUP. Default `false`.
    pub watch_config: Option<bool>,
    /// DNS servers endpoint names are looked up on, `"ip:port"` (`"ip"`:
    /// port 53), tried in order; answers are followed for as long as their
    /// TTL says (within each cluster's `resolve_interval`). Default: unset,
    /// the system resolver (`/etc/hosts`, `/etc/resolv.conf`, as other
    /// programs on the host see names; it gives no TTL).
    pub dns_servers: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `[[listener]]`: a socket accepting client traffic for one cluster.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawListener {
    /// Unique name, used in logs, metrics and `/status`. Required.
    pub name: Option<Spanned<String>>,
    /// Address to bind, `"ip:port"` (`"0.0.0.0:8080"`, `"[::]:8080"`).
    /// Required.
    pub listen: Option<Spanned<String>>,
    /// What the listener speaks: `"http"` or `"tcp"`. Default `"http"`.
    pub protocol: Option<Spanned<String>>,
    /// Name of the `[[cluster]]` that serves this listener's requests (the
    /// ones no route matches, if it has routes). Required, unless the
    /// listener has routes: then requests no route matches get 404.
    pub cluster: Option<Spanned<String>>,
    /// `tcp` listeners only: a size (`"64KiB"`); up to this many of the
    /// client's first bytes are kept while the endpoint has sent nothing
    /// back, and replayed to another endpoint if it closes first. Default
    /// `"0"`: off.
    pub tcp_replay: Option<Spanned<String>>,
    /// While the node is impaired: `"serve"` (keep serving), `"close"`
    /// (close the listening socket; reopen on recovery), `"reject-all"` (503
    /// to every request) or `"reject-writes"` (503 to all but GET, HEAD and
    /// OPTIONS). The `reject-*` values are for http listeners only. Default
    /// `"serve"`.
    pub when_impaired: Option<Spanned<String>>,
    /// `http` listeners only: a client has this long from connecting (or,
    /// on a kept-alive connection, from the first byte of a request) to
    /// send the whole request head; then it gets 408, or is closed if it
    /// sent nothing. At least `"100ms"`. Default `"10s"`.
    pub header_read_timeout: Option<Spanned<String>>,
    /// `http` listeners only: a kept-alive connection with no request in
    /// progress is closed after this long; more than 0. Default `"60s"`.
    pub idle_timeout: Option<Spanned<String>>,
    /// `http` listeners only: routes, tried in file order
    /// (`[[listener.route]]`); the first that matches a request chooses its
    /// cluster, requests no route matches go to `cluster`. Default: none.
    pub route: Option<Vec<Spanned<RawRoute>>>,
    /// Client connections open at once, at least 1. At the limit a new
    /// connection replaces the oldest one with no request in progress
    /// (http listeners), or is closed at once. Default: derived from the
    /// process's file descriptor limit (half of what is left after levee's
    /// own reserve, shared between the listeners, at most 65536).
    pub max_connections: Option<Spanned<i64>>,
}

/// `[[listener.route]]`: which requests go to which cluster. A request
/// must meet every condition written; a route with none takes everything.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRoute {
    /// Name in logs, metrics and `/status`, unique in its listener. Default
    /// `"route-N"` (its position, from 1).
    pub name: Option<Spanned<String>>,
    /// Host(s) the request's `Host` (or HTTP/2 `:authority`) must be, port
    /// aside, case aside: a string or an array; `"*.example.com"` takes any
    /// subdomain. Default: any host.
    pub host: Option<Spanned<RawHosts>>,
    /// The path must be exactly this (the query aside), starting with `/`.
    /// Default: any path.
    pub path: Option<Spanned<String>>,
    /// The path must start with this, at a `/` boundary (`"/api"` takes
    /// `/api` and `/api/v1`, not `/apis`). Not with `path`. Default: any.
    pub path_prefix: Option<Spanned<String>>,
    /// Methods the request may have (`["GET", "HEAD"]`). Default: any.
    pub methods: Option<Spanned<Vec<Spanned<String>>>>,
    /// A header the request must carry: `{ name = "x-canary" }`, or with
    /// an exact value `{ name = "x-canary", value = "1" }`. Default: none.
    pub header: Option<Spanned<RawHeaderMatch>>,
    /// The `[[cluster]]` that serves these requests. Required.
    pub cluster: Option<Spanned<String>>,
    /// Replaces the cluster's `request_timeout` for these requests; more
    /// than 0. Default: the cluster's.
    pub request_timeout: Option<Spanned<String>>,
    /// Replaces parts of the cluster's `retry` for these requests.
    /// Default: the cluster's.
    pub retry: Option<Spanned<RawRouteRetry>>,
    /// `false`: these requests bypass the cluster's cache. Default `true`.
    pub cache: Option<Spanned<bool>>,
}

/// `host` of a route: one host or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawHosts {
    One(String),
    Many(Vec<String>),
}

/// `header` of a route.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawHeaderMatch {
    /// Header name. Required.
    pub name: Option<Spanned<String>>,
    /// Exact value it must have. Default: any value.
    pub value: Option<Spanned<String>>,
}

/// `retry` of a route: what it replaces of its cluster's retry settings.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRouteRetry {
    /// Attempts in all, the first included, at least 1.
    pub max_attempts: Option<Spanned<u32>>,
    /// Limit on one attempt's wait for a response head; more than 0.
    pub per_try_timeout: Option<Spanned<String>>,
    /// `true`: every request of the route may be repeated safely.
    pub idempotent: Option<bool>,
    /// `"off"`: never hedge these requests; `"p95"`: hedge them as the
    /// cluster does (its `retry.hedge` must not be off).
    pub hedge: Option<Spanned<String>>,
}

/// `[[cluster]]`: interchangeable endpoints and how to talk to them.
///
/// The nested tables are boxed: most clusters leave most of them out, and
/// inline they would make every cluster kilobytes large (a file of many
/// clusters then spends its time copying them).
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawCluster {
    /// Unique name, referenced by listeners. Required.
    pub name: Option<Spanned<String>>,
    /// Endpoint addresses, `"host:port"` each, at least one, no duplicates.
    /// Required.
    pub endpoints: Option<Spanned<Vec<Spanned<String>>>>,
    /// Load-balancing policy: `"p2c-ewma"`, `"round-robin"` or
    /// `"least-request"`. Default `"p2c-ewma"`.
    pub balance: Option<Spanned<String>>,
    /// Limit on establishing a connection to an endpoint; more than 0.
    /// Default `"1s"`.
    pub connect_timeout: Option<Spanned<String>>,
    /// Deadline for a request's response head across all its attempts
    /// (retries and hedges included); on expiry the client gets 504. More
    /// than 0. Default `"15s"`.
    pub request_timeout: Option<Spanned<String>>,
    /// Longest time a request body may go without progress, more than 0.
    /// A client that sends no byte of it for this long gets 408 (never
    /// counted against the endpoint); an endpoint that takes no byte of it
    /// for this long counts as a timeout. The response-head timeouts start
    /// once the body is sent. Default `"30s"`.
    pub body_idle_timeout: Option<Spanned<String>>,
    /// How long an idle pooled upstream connection is kept; more than 0.
    /// Default `"90s"`.
    pub idle_timeout: Option<Spanned<String>>,
    /// Most idle pooled connections kept per endpoint; 0 disables pooling.
    /// Default 128.
    pub max_idle_per_endpoint: Option<usize>,
    /// Time constant of the latency average (peak EWMA) that `p2c-ewma`
    /// compares endpoints by: how quickly an old latency is forgotten. More
    /// than 0. Default `"10s"`.
    pub ewma_decay: Option<Spanned<String>>,
    /// Active health checks of every endpoint (`health = { ... }` or
    /// `[cluster.health]`). Default: none.
    pub health: Option<Box<Spanned<RawHealth>>>,
    /// Passive outlier detection from real traffic (`outlier = { ... }` or
    /// `[cluster.outlier]`). Default: on, with every default.
    pub outlier: Option<Box<Spanned<RawOutlier>>>,
    /// Percent of endpoints, 0 to 100, that must be available; below it
    /// levee balances over every endpoint, so the few survivors are not
    /// crushed. Default 50.
    pub panic_threshold: Option<Spanned<i64>>,
    /// An endpoint returning to service gets its full share of traffic
    /// gradually over this long, so cold caches and JITs are not flooded;
    /// `"0s"` disables. Default `"10s"`.
    pub slow_start: Option<Spanned<String>>,
    /// How often endpoint names are looked up again; each address a name
    /// resolves to is an endpoint of its own, and an address that
    /// disappears drains. A shorter TTL from `[runtime] dns_servers` is
    /// followed; a failed lookup keeps the last addresses and is tried again
    /// within 5 s. Default `"30s"`.
    pub resolve_interval: Option<Spanned<String>>,
    /// Retries and hedging (`retry = { ... }` or `[cluster.retry]`).
    /// Default: on, with every default.
    pub retry: Option<Box<Spanned<RawRetry>>>,
    /// Overload protection (`admission = { ... }` or `[cluster.admission]`).
    /// Default: off.
    pub admission: Option<Box<Spanned<RawAdmission>>>,
    /// Response cache for GET and HEAD (`cache = { ... }` or
    /// `[cluster.cache]`). Default: off.
    pub cache: Option<Box<Spanned<RawCache>>>,
    /// Circuit breaker (`breaker = { ... }` or `[cluster.breaker]`).
    /// Default: none.
    pub breaker: Option<Box<Spanned<RawBreaker>>>,
}

/// `health` in a `[[cluster]]`: how each endpoint is checked. Exactly one of
/// `http` and `tcp = true`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawHealth {
    /// An HTTP check: the request to send and the answer that counts as
    /// healthy.
    pub http: Option<Spanned<RawHttpCheck>>,
    /// `true` for a TCP check: a connection that opens counts as healthy.
    pub tcp: Option<Spanned<bool>>,
    /// Time between checks while an endpoint's health is settled; more
    /// than 0. Default `"5s"`.
    pub interval: Option<Spanned<String>>,
    /// Time between checks while the health is changing or not yet known, so
    /// a failing node leaves rotation after `fall` quick checks; more than 0.
    /// Default `"1s"`.
    pub transition_interval: Option<Spanned<String>>,
    /// How long one check may take before it counts as failed; more than 0.
    /// Default `"2s"`.
    pub timeout: Option<Spanned<String>>,
    /// Passes in a row that bring an unhealthy endpoint back; at least 1.
    /// Default 2.
    pub rise: Option<Spanned<u32>>,
    /// Failures in a row that take a healthy endpoint out; at least 1.
    /// Default 2.
    pub fall: Option<Spanned<u32>>,
    /// Random spread of each delay as a fraction of it, 0.0 to 1.0, so many
    /// levee instances do not check a node in lockstep. Default 0.1.
    pub jitter: Option<Spanned<f64>>,
}

/// `health.http` in a `[[cluster]]`: an HTTP health check.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawHttpCheck {
    /// Request path (and query), starting with `/`. Required.
    pub path: Option<Spanned<String>>,
    /// Request method, case-sensitive. Default `"GET"`.
    pub method: Option<Spanned<String>>,
    /// `Host` header of the check. Default: the endpoint's `host:port`.
    pub host: Option<Spanned<String>>,
    /// Response statuses that count as healthy, each 100 to 599. Default
    /// `[200]`.
    pub expect_status: Option<Spanned<Vec<Spanned<i64>>>>,
    /// Text the response body must contain to count as healthy. Default:
    /// any body.
    pub expect_body: Option<Spanned<String>>,
}

/// `outlier` in a `[[cluster]]`: passive outlier detection, which ejects an
/// endpoint that fails real requests.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawOutlier {
    /// `false` turns passive outlier detection off for the cluster. Default
    /// `true`.
    pub enabled: Option<bool>,
    /// Failures in a row that eject an endpoint; 0 disables the rule.
    /// Default 5.
    pub consecutive_failures: Option<Spanned<u32>>,
    /// Share of failed requests in `window` that ejects an endpoint, above 0
    /// and at most 1; 0 disables the rule. Default 0.5.
    pub failure_rate: Option<Spanned<f64>>,
    /// Sliding window for the failure rate and latency; more than 0.
    /// Default `"10s"`.
    pub window: Option<Spanned<String>>,
    /// Requests an endpoint needs in the window before its failure rate or
    /// latency is judged; at least 1. Default 20.
    pub min_requests: Option<Spanned<u32>>,
    /// Whether 5xx answers other than 502, 503 and 504 count as failures.
    /// Default `true`.
    pub count_other_5xx: Option<bool>,
    /// An endpoint whose mean latency exceeds this multiple of the median of
    /// the others is ejected; above 1; 0 disables the rule. Default 3.0.
    pub latency_factor: Option<Spanned<f64>>,
    /// Never a latency outlier at or below this latency. Default `"100ms"`.
    pub latency_floor: Option<Spanned<String>>,
    /// Length of a first ejection; later ones are multiples of it. More than
    /// 0. Default `"10s"`.
    pub base_ejection: Option<Spanned<String>>,
    /// Longest ejection; at least `base_ejection`. Default `"5m"`.
    pub max_ejection: Option<Spanned<String>>,
    /// Largest percent of the cluster's endpoints ejected at once, 0 to 100
    /// (0: never eject). Default 50.
    pub max_ejected_percent: Option<Spanned<i64>>,
}

/// `retry` in a `[[cluster]]`: trying a failed or slow request again on
/// another endpoint, only where that cannot do anything twice.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRetry {
    /// Attempts in all, the first included, at least 1 (1: never retry).
    /// Default 3.
    pub max_attempts: Option<Spanned<u32>>,
    /// Limit on one attempt's wait for a response head; more than 0. The
    /// whole request is still bounded by `request_timeout`. Default `"5s"`.
    pub per_try_timeout: Option<Spanned<String>>,
    /// Ceiling of the random wait before the first retry; doubles for each
    /// further one. More than 0. Default `"25ms"`.
    pub backoff_base: Option<Spanned<String>>,
    /// The wait's ceiling never grows past this; at least `backoff_base`.
    /// Default `"250ms"`.
    pub backoff_max: Option<Spanned<String>>,
    /// Retries and hedges allowed as a percent of recent requests, 0 to 100.
    /// Default 20.
    pub budget_percent: Option<Spanned<i64>>,
    /// Retries and hedges allowed per second on top of `budget_percent`, so
    /// a quiet cluster can still step around a dead node. Default 10.
    pub budget_min_per_second: Option<Spanned<u32>>,
    /// How far back the budget counts requests and retries; more than 0.
    /// Default `"10s"`.
    pub budget_window: Option<Spanned<String>>,
    /// Request bodies up to this size are held so they can be sent again; a
    /// larger one streams through and is not retried once sent. `"0B"`
    /// holds none. Default `"64KiB"`.
    pub replay_buffer: Option<Spanned<String>>,
    /// `"p95"`: an idempotent request still unanswered after the cluster's
    /// p95 latency is sent to a second endpoint too, first answer wins;
    /// `"off"`: never. Default `"p95"`.
    pub hedge: Option<Spanned<String>>,
    /// Never hedge sooner than this. Default `"20ms"`.
    pub hedge_floor: Option<Spanned<String>>,
    /// Never wait longer than this to hedge (also used while the cluster has
    /// too few latencies for a p95); at least `hedge_floor`. Default `"1s"`.
    pub hedge_ceiling: Option<Spanned<String>>,
    /// `true` declares every request to the cluster safe to repeat, whatever
    /// its method (the service deduplicates on its own). Default `false`.
    pub idempotent: Option<bool>,
}

/// `admission` in a `[[cluster]]`: a concurrency limit with a bounded queue,
/// so that a stall upstream turns into fast 503s, not into every client
/// timing out.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAdmission {
    /// `false` turns admission control off (the other keys are still
    /// checked). Default `true` once the table is written.
    pub enabled: Option<bool>,
    /// Requests in flight to the cluster at once; at least 1. With
    /// `adaptive = true`, the highest the limit may go. Default 256.
    pub max_concurrency: Option<Spanned<usize>>,
    /// Requests that may wait for a slot; 0: none wait. Default 1024.
    pub max_queue: Option<Spanned<usize>>,
    /// Longest wait for a slot while the queue keeps emptying; more than 0.
    /// Default `"100ms"`.
    pub queue_timeout: Option<Spanned<String>>,
    /// Longest wait once a standing queue has formed; more than 0, at most
    /// `queue_timeout`. Default `"5ms"`.
    pub codel_target: Option<Spanned<String>>,
    /// How long the queue must stay non-empty to count as standing; more
    /// than 0. Default `"100ms"`.
    pub codel_interval: Option<Spanned<String>>,
    /// `true`: the limit adapts to upstream latency (gradient over the
    /// lowest latency seen) between `min_concurrency` and `max_concurrency`.
    /// Default `false`.
    pub adaptive: Option<bool>,
    /// With `adaptive = true`, the lowest the limit may go; at least 1, at
    /// most `max_concurrency`. Default 1.
    pub min_concurrency: Option<Spanned<usize>>,
}

/// `cache` in a `[[cluster]]`: a shared response cache for GET and HEAD that
/// never stampedes the upstream.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawCache {
    /// `false` turns the cache off (the other keys are still checked).
    /// Default `true` once the table is written.
    pub enabled: Option<bool>,
    /// Bytes of stored responses at most; at least 1 KiB. Default `"64MiB"`.
    pub max_size: Option<Spanned<String>>,
    /// A larger response body is passed through, not stored; at most
    /// `max_size`. Default `"1MiB"`.
    pub max_entry_size: Option<Spanned<String>>,
    /// Freshness of a response without `max-age`, `s-maxage` or `Expires`;
    /// `"0s"`: such responses are not stored. Default `"0s"`.
    pub default_ttl: Option<Spanned<String>>,
    /// Past freshness, serve the stale copy while one background request
    /// refreshes it, for this long (unless the response says). Default
    /// `"30s"`.
    pub stale_while_revalidate: Option<Spanned<String>>,
    /// Past freshness, serve the stale copy while the upstream fails, for
    /// this long (unless the response says). Default `"5m"`.
    pub stale_if_error: Option<Spanned<String>>,
    /// Longest wait for another request's fill of the same key; more than 0.
    /// Default `"5s"`.
    pub fill_wait: Option<Spanned<String>>,
}

/// `[readiness]`: when this node counts as ready, degraded or impaired.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawReadiness {
    /// Cluster name → least number of available endpoints, each at least 1
    /// and at most the cluster's endpoint count (`{ app = 2 }`). Default:
    /// none.
    pub min_healthy: Option<Spanned<std::collections::BTreeMap<String, Spanned<i64>>>>,
    /// Endpoints that must each be available, written
    /// `"<cluster>/<endpoint>"` (`"app/10.0.0.1:8000"`). Default: none.
    pub required_endpoints: Option<Spanned<Vec<Spanned<String>>>>,
    /// Dependency probes (`[[readiness.probe]]`). Default: none.
    pub probe: Option<Vec<Spanned<RawProbe>>>,
}

/// `[[readiness.probe]]`: a named dependency probe.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawProbe {
    /// Unique name. Required.
    pub name: Option<Spanned<String>>,
    /// `"http"`, `"tcp"`, `"redis"` or `"memcached"`. Required.
    pub kind: Option<Spanned<String>>,
    /// `"host:port"` of the dependency. Required.
    pub address: Option<Spanned<String>>,
    /// `false`: a failing probe only degrades the node. Default `true`.
    pub required: Option<bool>,
    /// Time between probes; more than 0. Default `"5s"`.
    pub interval: Option<Spanned<String>>,
    /// Limit on one probe; more than 0. Default `"2s"`.
    pub timeout: Option<Spanned<String>>,
    /// Passes in a row that make a failed probe pass again; at least 1.
    /// Default 2.
    pub rise: Option<Spanned<u32>>,
    /// Failures in a row that fail a passing probe; at least 1. Default 2.
    pub fall: Option<Spanned<u32>>,
    /// `http` probes only: the path requested; any 2xx passes. Default
    /// `"/"`.
    pub path: Option<Spanned<String>>,
}

/// `[[alert]]`: a webhook that gets every state change as JSON.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAlert {
    /// `"http://host:port/path"`. Required.
    pub url: Option<Spanned<String>>,
    /// Event kinds sent (`["readiness"]`). Default: every kind.
    pub events: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `breaker` in a `[[cluster]]`: stop sending requests to a failing cluster
/// for a while, then let a few trial requests decide.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawBreaker {
    /// `false` turns the breaker off (the other keys are still checked).
    /// Default `true` once the table is written.
    pub enabled: Option<bool>,
    /// Failed requests in a row that open it; 0 disables the rule. Default 5.
    pub consecutive_failures: Option<Spanned<u32>>,
    /// Share of failed requests in `window` that opens it, above 0 and at
    /// most 1; 0 disables the rule. Default 0.5.
    pub failure_rate: Option<Spanned<f64>>,
    /// Share of slow requests in `window` that opens it, above 0 and at most
    /// 1; 0 disables the rule. Default 0 (off).
    pub slow_call_rate: Option<Spanned<f64>>,
    /// A request slower than this to its response head is slow. Default
    /// `"1s"`.
    pub slow_call_duration: Option<Spanned<String>>,
    /// Sliding window of the rate rules; more than 0. Default `"10s"`.
    pub window: Option<Spanned<String>>,
    /// Requests the window must hold before a rate is judged; at least 1.
    /// Default 20.
    pub min_calls: Option<Spanned<u32>>,
    /// How long it stays open the first time; more than 0. Default `"5s"`.
    pub open_for: Option<Spanned<String>>,
    /// Each reopening after a failed trial multiplies the open period by
    /// this, at least 1. Default 2.0.
    pub open_multiplier: Option<Spanned<f64>>,
    /// The open period never grows past this. Default `"60s"`.
    pub max_open_for: Option<Spanned<String>>,
    /// Trial requests let through while half-open, all of which must succeed
    /// to close it; at least 1. Default 3.
    pub half_open_trials: Option<Spanned<u32>>,
    /// `true` shares the breaker's state with every levee using the same
    /// `[store]`. Default `false`.
    pub shared: Option<Spanned<bool>>,
    /// Distinct instances that must trip before the breaker opens for the
    /// fleet; at least 1. Default 1.
    pub quorum: Option<Spanned<u32>>,
    /// An instance that trips alone, below the quorum, still opens its own
    /// breaker. Default `true`.
    pub protect_locally: Option<Spanned<bool>>,
    /// `true` also gives every endpoint its own breaker, with the same
    /// parameters, named `<cluster>/<host:port>`; always local to the
    /// process. Default `false`.
    pub per_endpoint: Option<Spanned<bool>>,
}

/// `[store]`: where shared breaker state lives.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawStore {
    /// `"memory"` (this process) or `"redis"` (a fleet). Default `"memory"`.
    pub kind: Option<Spanned<String>>,
    /// Redis URL. Default `"redis://127.0.0.1:6379"`.
    pub url: Option<Spanned<String>>,
    /// Prefix of every key; non-empty, no spaces. Default `"levee"`.
    pub namespace: Option<Spanned<String>>,
    /// This instance's id in the fleet, unique. Default `"HOSTNAME:pid"`.
    pub instance_id: Option<Spanned<String>>,
    /// `"local"`, `"open"` or `"closed"`: what shared breakers do while the
    /// store is unreachable. Default `"local"`.
    pub on_unreachable: Option<Spanned<String>>,
}
