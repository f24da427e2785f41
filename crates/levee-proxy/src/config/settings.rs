//! The validated runtime settings: what the rest of levee reads. Every value
//! here has been checked, every default filled in; `docs/config.md` describes
//! the same keys from the user's side.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use http::Method;
use levee_core::admission::AdmissionParams;
use levee_core::breaker::BreakerParams;
use levee_core::health::HealthCheckParams;
use levee_core::outlier::OutlierParams;
use levee_core::retry::{Backoff, RetryBudgetParams, RetryPolicy};

use super::EndpointAddress;

/// A whole, valid configuration.
///
/// Build one from TOML with [`Config::load`] / [`Config::from_toml_str`], or
/// in code from the public fields (the demo does):
///
/// ```
/// use levee_proxy::config::{ClusterSettings, Config, EndpointAddress, ListenerSettings};
///
/// let config = Config {
///     listeners: vec![ListenerSettings::new("web", "127.0.0.1:8080".parse().unwrap(), "app")],
///     clusters: vec![ClusterSettings::new("app", vec![EndpointAddress::new("127.0.0.1", 8000)])],
///     ..Config::default()
/// };
/// assert!(config.cluster("app").is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// `[admin]`.
    pub admin: AdminSettings,
    /// `[runtime]`.
    pub runtime: RuntimeSettings,
    /// `[[listener]]`, in file order. Never empty when read from a file.
    pub listeners: Vec<ListenerSettings>,
    /// `[[cluster]]`, in file order; names are unique.
    pub clusters: Vec<ClusterSettings>,
    /// `[readiness]`: when this node counts as impaired.
    pub readiness: ReadinessSettings,
    /// `[[alert]]`: webhooks that get state changes.
    pub alerts: Vec<AlertSettings>,
    /// `[store]`: where shared breaker state lives.
    pub store: StoreSettings,
    /// What is allowed but probably not meant (a route no request can
    /// reach), at its place in the file; `levee validate` prints them and
    /// `levee run` logs them.
    pub warnings: Vec<super::ConfigError>,
}

impl Config {
    /// The cluster with this name.
    pub fn cluster(&self, name: &str) -> Option<&ClusterSettings> {
        self.clusters.iter().find(|cluster| cluster.name == name)
    }
}

/// `[admin]`: the admin HTTP listener (`/live`, `/ready`, `/status`,
/// `/metrics`, dashboard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Where the admin listener binds. It has a port of its own so that it
    /// stays up for diagnosis while traffic listeners are closed.
    pub listen: SocketAddr,
}

impl AdminSettings {
    /// Loopback only by default: the admin API can drain the node.
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);
}

impl Default for AdminSettings {
    fn default() -> AdminSettings {
        AdminSettings {
            listen: AdminSettings::DEFAULT_LISTEN,
        }
    }
}

/// `[runtime]`: the process itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeSettings {
    /// Tokio worker threads; `None` means one per CPU.
    pub worker_threads: Option<usize>,
    /// On shutdown, how long to wait for in-flight requests before closing
    /// their connections.
    pub drain_timeout: Duration,
    /// Reload when the config file changes.
    pub watch_config: bool,
    /// DNS servers for endpoint names; empty: the system resolver.
    pub dns_servers: Vec<SocketAddr>,
}

impl RuntimeSettings {
    /// Default [`RuntimeSettings::drain_timeout`]: long enough for ordinary
    /// requests to finish, short enough for a deploy not to stall.
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
}

impl Default for RuntimeSettings {
    fn default() -> RuntimeSettings {
        RuntimeSettings {
            worker_threads: None,
            drain_timeout: RuntimeSettings::DEFAULT_DRAIN_TIMEOUT,
            watch_config: false,
            dns_servers: Vec::new(),
        }
    }
}

/// `[[listener]]`: a socket that accepts client traffic for one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    /// Unique name, used in logs, metrics and `/status`.
    pub name: String,
    /// Address to bind.
    pub listen: SocketAddr,
    /// What the listener speaks.
    pub protocol: Protocol,
    /// The cluster that serves requests no route matches (always defined
    /// when set); `None`: such requests get 404. A tcp listener always has
    /// one.
    pub cluster: Option<String>,
    /// `[[listener.route]]`, in file order: the first that matches a
    /// request chooses its cluster (http listeners only).
    pub routes: Vec<RouteSettings>,
    /// TCP listeners only: up to this many of the client's first bytes are
    /// kept while the upstream has sent nothing back, so that an endpoint
    /// that closes before answering can be replaced by another one, which
    /// gets the same bytes. 0 turns replay off. A client that sends more
    /// before the upstream answers is simply not replayed.
    pub tcp_replay: u64,
    /// What the listener does while the node is impaired.
    pub when_impaired: WhenImpaired,
    /// HTTP listeners: time from accept (or a later request's first byte)
    /// to a complete request head.
    pub header_read_timeout: Duration,
    /// HTTP listeners: a kept-alive connection idle this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; `None`: derived from the file descriptor
    /// limit when the gateway starts.
    pub max_connections: Option<usize>,
}

impl ListenerSettings {
    /// Default [`ListenerSettings::tcp_replay`]: off, because replaying
    /// bytes is only safe for protocols where an endpoint that closed without
    /// answering has not acted on them (the operator has to know that).
    pub const DEFAULT_TCP_REPLAY: u64 = 0;
    /// Default [`ListenerSettings::header_read_timeout`].
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default [`ListenerSettings::idle_timeout`].
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// The shortest `header_read_timeout` accepted: below it a client on a
    /// real network could not send a head at all.
    pub const MIN_HEADER_READ_TIMEOUT: Duration = Duration::from_millis(100);

    /// A listener with every optional setting at its default.
    pub fn new(
        name: impl Into<String>,
        listen: SocketAddr,
        cluster: impl Into<String>,
    ) -> ListenerSettings {
        ListenerSettings {
            name: name.into(),
            listen,
            protocol: Protocol::default(),
            cluster: Some(cluster.into()),
            routes: Vec::new(),
            tcp_replay: ListenerSettings::DEFAULT_TCP_REPLAY,
            when_impaired: WhenImpaired::default(),
            header_read_timeout: ListenerSettings::DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: ListenerSettings::DEFAULT_IDLE_TIMEOUT,
            max_connections: None,
        }
    }
}

/// `[[listener.route]]`: the requests a route takes, the cluster that
/// serves them, and what it changes of that cluster's settings for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSettings {
    /// Name in logs, metrics and `/status`: the `name` key, else
    /// `route-<n>` (1-based position in its listener).
    pub name: String,
    /// What a request must look like.
    pub matches: crate::route::matcher::RouteMatch,
    /// The cluster that serves it (always defined).
    pub cluster: String,
    /// Replaces the cluster's `request_timeout`.
    pub request_timeout: Option<Duration>,
    /// Replaces parts of the cluster's `retry`.
    pub retry: RouteRetry,
    /// `Some(false)`: the cluster's cache is not used for this route.
    pub cache: Option<bool>,
}

/// The parts of a cluster's retry settings a route may replace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteRetry {
    /// Attempts in all, the first included.
    pub max_attempts: Option<RetryPolicy>,
    /// One attempt's limit on its response head.
    pub per_try_timeout: Option<Duration>,
    /// Every request of the route may be repeated safely.
    pub idempotent: Option<bool>,
    /// `Some(false)`: never hedge; `Some(true)`: hedge as the cluster does
    /// (which must hedge).
    pub hedge: Option<bool>,
}

impl RouteRetry {
    /// The cluster's retry settings with this route's replacements.
    pub fn apply(&self, cluster: &RetrySettings) -> RetrySettings {
        let mut retry = cluster.clone();
        if let Some(policy) = self.max_attempts {
            retry.policy = policy;
        }
        if let Some(timeout) = self.per_try_timeout {
            retry.per_try_timeout = timeout;
        }
        if let Some(idempotent) = self.idempotent {
            retry.idempotent = idempotent;
        }
        if self.hedge == Some(false) {
            retry.hedge = None;
        }
        retry
    }
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// HTTP/1.1 and HTTP/2, reverse proxied request by request.
    #[default]
    Http,
    /// Raw TCP (L4): each client connection is relayed byte for byte to one
    /// endpoint (SSH, git, databases).
    Tcp,
}

impl Protocol {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `protocol` value levee does not speak.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadProtocol {
    /// Not a protocol levee knows.
    #[error("unknown protocol {0:?}: expected \"http\" or \"tcp\"")]
    Unknown(String),
}

impl FromStr for Protocol {
    type Err = BadProtocol;

    fn from_str(text: &str) -> Result<Protocol, BadProtocol> {
        match text {
            "http" => Ok(Protocol::Http),
            "tcp" => Ok(Protocol::Tcp),
            _ => Err(BadProtocol::Unknown(text.to_owned())),
        }
    }
}

/// What a traffic listener does while the node is impaired (a required
/// readiness criterion fails, or the node is drained).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WhenImpaired {
    /// Keep serving. The default: `/ready` already tells an outer load
    /// balancer to route elsewhere, and a node that closes or rejects on its
    /// own turns a false alarm of its probes into an outage when no load
    /// balancer is in front of it.
    #[default]
    Serve,
    /// Close the listening socket, so new connections are refused and an
    /// outer load balancer routes away at once; open connections finish.
    /// The socket is bound again on recovery.
    Close,
    /// Answer every request with 503, a JSON reason and `Retry-After`.
    /// HTTP listeners only.
    RejectAll,
    /// Read-only mode: serve `GET`, `HEAD` and `OPTIONS`, answer other
    /// methods with 503. HTTP listeners only.
    RejectWrites,
}

impl WhenImpaired {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WhenImpaired::Serve => "serve",
            WhenImpaired::Close => "close",
            WhenImpaired::RejectAll => "reject-all",
            WhenImpaired::RejectWrites => "reject-writes",
        }
    }
}

impl fmt::Display for WhenImpaired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `when_impaired` value levee does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown when_impaired {0:?}: expected \"serve\", \"close\", \"reject-all\" or \"reject-writes\""
)]
pub struct BadWhenImpaired(pub String);

impl FromStr for WhenImpaired {
    type Err = BadWhenImpaired;

    fn from_str(text: &str) -> Result<WhenImpaired, BadWhenImpaired> {
        match text {
            "serve" => Ok(WhenImpaired::Serve),
            "close" => Ok(WhenImpaired::Close),
            "reject-all" => Ok(WhenImpaired::RejectAll),
            "reject-writes" => Ok(WhenImpaired::RejectWrites),
            _ => Err(BadWhenImpaired(text.to_owned())),
        }
    }
}

/// `[readiness]`: the criteria that decide whether this node is ready,
/// degraded or impaired (see [`levee_core::readiness`]).
///
/// When a breaker is shared, the gateway adds the optional criterion
/// `store` (the shared breaker store is reachable) on its own: it needs no
/// key here.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReadinessSettings {
    /// Clusters that need at least this many available (healthy, not
    /// ejected) endpoints, in file order.
    pub min_healthy: Vec<(String, usize)>,
    /// Endpoints that must each be available.
    pub required_endpoints: Vec<RequiredEndpoint>,
    /// Dependency probes, in file order; names are unique.
    pub probes: Vec<ProbeSettings>,
}

/// An endpoint of a cluster that must be available: `"app/10.0.0.1:8000"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredEndpoint {
    /// The cluster.
    pub cluster: String,
    /// One of its endpoints.
    pub endpoint: EndpointAddress,
}

impl fmt::Display for RequiredEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.cluster, self.endpoint)
    }
}

/// `[[readiness.probe]]`: a named dependency probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSettings {
    /// Unique name, in `/ready`, `/status`, metrics and events.
    pub name: String,
    /// What is probed and how. Probes with equal targets run once.
    pub target: levee_probe::ProbeTarget,
    /// A required probe that fails impairs the node; an optional one only
    /// degrades it.
    pub required: bool,
    /// Interval, timeout, rise and fall (no separate transition interval and
    /// no jitter: a failing dependency is seen within interval + timeout).
    pub params: HealthCheckParams,
}

impl ProbeSettings {
    /// Default probe interval.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
    /// Default probe timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default rise and fall.
    pub const DEFAULT_RISE_FALL: u32 = 2;
}

/// `[[alert]]`: a webhook that gets a JSON document for each state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSettings {
    /// `http://host:port/path`.
    pub url: http::Uri,
    /// Event kinds sent; `None`: every kind.
    pub events: Option<Vec<String>>,
}

/// `[[cluster]]`: a set of interchangeable endpoints and how to talk to them.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    /// Unique name, referenced by listeners.
    pub name: String,
    /// The endpoints, in file order; never empty and without duplicates when
    /// read from a file.
    pub endpoints: Vec<EndpointAddress>,
    /// How requests are spread over the endpoints.
    pub balance: BalancePolicy,
    /// Limit on establishing a TCP connection to an endpoint. A connect
    /// failure is always safe to retry elsewhere, so this is kept short.
    pub connect_timeout: Duration,
    /// The request's deadline for a response head, across every attempt
    /// (retries and hedges included); on expiry the client gets 504. Time
    /// spent receiving or uploading the client's body is not counted.
    pub request_timeout: Duration,
    /// Longest a request body may go without progress. Waiting for the
    /// client: 408, not the endpoint's fault. Waiting for the endpoint to
    /// take it: a timeout of the endpoint. Replaces the response-head
    /// timeouts while a body streams up, so a long upload is not cut.
    pub body_idle_timeout: Duration,
    /// How long an idle pooled upstream connection is kept.
    pub idle_timeout: Duration,
    /// At most this many idle pooled connections per endpoint; 0 disables
    /// pooling.
    pub max_idle_per_endpoint: usize,
    /// Time constant of the peak-EWMA latency average that `p2c-ewma` ranks
    /// endpoints by: how fast an old latency is forgotten.
    pub ewma_decay: Duration,
    /// Active health checks; `None`: endpoints are not checked (only passive
    /// outlier detection takes them out).
    pub health: Option<HealthSettings>,
    /// Passive outlier detection from real traffic; `None`: turned off.
    pub outlier: Option<OutlierParams>,
    /// When fewer than this percent of the endpoints are available (healthy
    /// and not ejected), balance over all of them: a health signal that
    /// condemns most of a cluster is more likely wrong than right, and the
    /// few survivors would be crushed by the whole load.
    pub panic_threshold_percent: u8,
    /// An endpoint returning to service ramps up to its full share of
    /// traffic over this long (cold caches, JITs, connection pools);
    /// [`Duration::ZERO`] gives it its full share at once.
    pub slow_start: Duration,
    /// How often endpoint names are looked up again (a shorter DNS TTL wins).
    pub resolve_interval: Duration,
    /// Retries and hedging.
    pub retry: RetrySettings,
    /// Overload protection; `None`: every request goes straight through.
    pub admission: Option<AdmissionSettings>,
    /// Response cache for GET and HEAD; `None`: nothing is cached.
    pub cache: Option<CacheSettings>,
    /// Circuit breaker of the cluster; `None`: none.
    pub breaker: Option<BreakerParams>,
    /// Whether the breaker's state is shared with the fleet through
    /// `[store]`, and by which quorum.
    pub breaker_fleet: FleetBreakerSettings,
    /// Every endpoint also has a breaker of its own (same parameters, local
    /// to this process): one failing endpoint stops getting requests
    /// without the cluster's breaker opening for all of them.
    pub breaker_per_endpoint: bool,
}

impl ClusterSettings {
    /// Default [`ClusterSettings::balance`].
    pub const DEFAULT_BALANCE: BalancePolicy = BalancePolicy::P2cEwma;
    /// Default [`ClusterSettings::connect_timeout`].
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// Default [`ClusterSettings::request_timeout`].
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
    /// Default [`ClusterSettings::body_idle_timeout`] (nginx's
    /// `client_body_timeout` is 60 s, HAProxy's `timeout client` is often
    /// 30 s).
    pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default [`ClusterSettings::idle_timeout`] (as hyper-util's pooled client).
    /// An upstream that closes idle connections sooner (nginx: 75 s, Node.js:
    /// 5 s) needs a lower value, or pooled requests meet closed connections.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
    /// Default [`ClusterSettings::max_idle_per_endpoint`].
    pub const DEFAULT_MAX_IDLE_PER_ENDPOINT: usize = 128;
    /// Default [`ClusterSettings::ewma_decay`] (linkerd's and Finagle's).
    pub const DEFAULT_EWMA_DECAY: Duration = Duration::from_secs(10);
    /// Default [`ClusterSettings::panic_threshold_percent`] (Envoy's).
    pub const DEFAULT_PANIC_THRESHOLD_PERCENT: u8 = 50;
    /// Default [`ClusterSettings::slow_start`].
    pub const DEFAULT_SLOW_START: Duration = levee_core::outlier::SlowStart::DEFAULT_WINDOW;
    /// Default [`ClusterSettings::resolve_interval`].
    pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);

    /// A cluster with every optional setting at its default.
    pub fn new(name: impl Into<String>, endpoints: Vec<EndpointAddress>) -> ClusterSettings {
        ClusterSettings {
            name: name.into(),
            endpoints,
            balance: ClusterSettings::DEFAULT_BALANCE,
            connect_timeout: ClusterSettings::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: ClusterSettings::DEFAULT_REQUEST_TIMEOUT,
            body_idle_timeout: ClusterSettings::DEFAULT_BODY_IDLE_TIMEOUT,
            idle_timeout: ClusterSettings::DEFAULT_IDLE_TIMEOUT,
            max_idle_per_endpoint: ClusterSettings::DEFAULT_MAX_IDLE_PER_ENDPOINT,
            ewma_decay: ClusterSettings::DEFAULT_EWMA_DECAY,
            health: None,
            outlier: Some(OutlierParams::default()),
            panic_threshold_percent: ClusterSettings::DEFAULT_PANIC_THRESHOLD_PERCENT,
            slow_start: ClusterSettings::DEFAULT_SLOW_START,
            resolve_interval: ClusterSettings::DEFAULT_RESOLVE_INTERVAL,
            retry: RetrySettings::default(),
            admission: None,
            cache: None,
            breaker: None,
            breaker_fleet: FleetBreakerSettings::default(),
            breaker_per_endpoint: false,
        }
    }
}

/// `cache` of a `[[cluster]]`: a shared response cache for GET and HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Bytes of stored responses (bodies and headers) at most.
    pub max_size: u64,
    /// A response body larger than this is passed through, not stored.
    pub max_entry_size: u64,
    /// Freshness of a response that gives none (`Cache-Control: max-age`,
    /// `s-maxage`, `Expires`); zero: such responses are not stored.
    pub default_ttl: Duration,
    /// Past freshness, the stale copy is served while one background
    /// request refreshes it, for this long (unless the response says).
    pub stale_while_revalidate: Duration,
    /// Past freshness, the stale copy is served while the upstream fails,
    /// for this long (unless the response says).
    pub stale_if_error: Duration,
    /// The longest a request waits for another request's fill of the same
    /// key before it is answered 504.
    pub fill_wait: Duration,
}

impl CacheSettings {
    /// Default [`CacheSettings::max_size`]: 64 MiB.
    pub const DEFAULT_MAX_SIZE: u64 = 64 * 1024 * 1024;
    /// Default [`CacheSettings::max_entry_size`]: 1 MiB.
    pub const DEFAULT_MAX_ENTRY_SIZE: u64 = 1024 * 1024;
    /// Default [`CacheSettings::stale_while_revalidate`].
    pub const DEFAULT_STALE_WHILE_REVALIDATE: Duration = Duration::from_secs(30);
    /// Default [`CacheSettings::stale_if_error`].
    pub const DEFAULT_STALE_IF_ERROR: Duration = Duration::from_secs(300);
    /// Default [`CacheSettings::fill_wait`].
    pub const DEFAULT_FILL_WAIT: Duration = Duration::from_secs(5);
}

impl Default for CacheSettings {
    fn default() -> CacheSettings {
        CacheSettings {
            max_size: CacheSettings::DEFAULT_MAX_SIZE,
            max_entry_size: CacheSettings::DEFAULT_MAX_ENTRY_SIZE,
            default_ttl: Duration::ZERO,
            stale_while_revalidate: CacheSettings::DEFAULT_STALE_WHILE_REVALIDATE,
            stale_if_error: CacheSettings::DEFAULT_STALE_IF_ERROR,
            fill_wait: CacheSettings::DEFAULT_FILL_WAIT,
        }
    }
}

/// `admission` of a `[[cluster]]`: how many requests may be in flight to the
/// cluster, and what happens to the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionSettings {
    /// Limit, queue size and queue deadlines.
    pub params: AdmissionParams,
    /// Adaptive limit; `None`: `params.max_concurrency` is fixed.
    pub adaptive: Option<AdaptiveLimitSettings>,
}

/// An adaptive concurrency limit between bounds: the limit follows the
/// gradient between the lowest and the current upstream latency, up to
/// `max_concurrency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptiveLimitSettings {
    /// The limit never falls below this.
    pub min_concurrency: usize,
}

impl AdaptiveLimitSettings {
    /// Default [`AdaptiveLimitSettings::min_concurrency`].
    pub const DEFAULT_MIN_CONCURRENCY: usize = 1;
}

/// `retry` of a `[[cluster]]`: when a failed or slow attempt is tried again
/// on another endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    /// Attempts in all, the first included (1: never retry).
    pub policy: RetryPolicy,
    /// Limit on one attempt's wait for a response head, from the moment its
    /// body has been sent whole; the request's own deadline is
    /// [`ClusterSettings::request_timeout`].
    pub per_try_timeout: Duration,
    /// Full-jitter wait between attempts.
    pub backoff: Backoff,
    /// How many retries and hedges the cluster may take.
    pub budget: RetryBudgetParams,
    /// Request bodies up to this many bytes are held so they can be sent
    /// again; a larger body streams through and is not retried once sent.
    pub replay_buffer: usize,
    /// Hedging of idempotent requests; `None`: off.
    pub hedge: Option<HedgeSettings>,
    /// Every request to this cluster may be repeated safely, whatever its
    /// method (the service deduplicates on its own).
    pub idempotent: bool,
}

impl RetrySettings {
    /// Default [`RetrySettings::per_try_timeout`].
    pub const DEFAULT_PER_TRY_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default [`RetrySettings::replay_buffer`]: 64 KiB.
    pub const DEFAULT_REPLAY_BUFFER: usize = 64 * 1024;
}

impl Default for RetrySettings {
    fn default() -> RetrySettings {
        RetrySettings {
            policy: RetryPolicy::default(),
            per_try_timeout: RetrySettings::DEFAULT_PER_TRY_TIMEOUT,
            backoff: Backoff::default(),
            budget: RetryBudgetParams::default(),
            replay_buffer: RetrySettings::DEFAULT_REPLAY_BUFFER,
            hedge: Some(HedgeSettings::default()),
            idempotent: false,
        }
    }
}

/// `retry.hedge`: a second copy of a slow idempotent request, sent to another
/// endpoint once the first has waited longer than the cluster's p95.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HedgeSettings {
    /// Never hedge sooner than this, so a fast cluster is not hedged on
    /// every hiccup.
    pub floor: Duration,
    /// Never wait longer than this before hedging (also the delay while too
    /// few latencies are known for a p95).
    pub ceiling: Duration,
}

impl HedgeSettings {
    /// Default [`HedgeSettings::floor`].
    pub const DEFAULT_FLOOR: Duration = Duration::from_millis(20);
    /// Default [`HedgeSettings::ceiling`].
    pub const DEFAULT_CEILING: Duration = Duration::from_secs(1);
}

impl Default for HedgeSettings {
    fn default() -> HedgeSettings {
        HedgeSettings {
            floor: HedgeSettings::DEFAULT_FLOOR,
            ceiling: HedgeSettings::DEFAULT_CEILING,
        }
    }
}

/// `health` of a `[[cluster]]`: how levee actively checks each endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSettings {
    /// What one check does.
    pub check: HealthCheckKind,
    /// How often checks run and how many results in a row change an
    /// endpoint's health.
    pub params: HealthCheckParams,
}

/// What one active health check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// Open a TCP connection, then close it: the port accepts connections.
    /// Cheap, but a hung process whose kernel still accepts passes it.
    Tcp,
    /// Send an HTTP request and judge the response.
    Http(HttpCheckSettings),
}

/// An HTTP health check: the request sent and the answer that counts as
/// healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheckSettings {
    /// Request method (a valid method token).
    pub method: Method,
    /// Path and query, starting with `/`.
    pub path: String,
    /// `Host` header; `None`: the endpoint's `host:port`.
    pub host: Option<String>,
    /// Statuses that count as healthy, each 100 to 599; never empty.
    pub expect_status: Vec<u16>,
    /// Text the response body must contain; `None`: any body. Never empty.
    pub expect_body: Option<String>,
}

impl HttpCheckSettings {
    /// Default [`HttpCheckSettings::method`].
    pub const DEFAULT_METHOD: Method = Method::GET;
    /// Default [`HttpCheckSettings::expect_status`].
    pub const DEFAULT_EXPECT_STATUS: [u16; 1] = [200];

    /// A check of `path` with every other setting at its default: `GET`,
    /// expecting 200, any body.
    pub fn new(path: impl Into<String>) -> HttpCheckSettings {
        HttpCheckSettings {
            method: HttpCheckSettings::DEFAULT_METHOD,
            path: path.into(),
            host: None,
            expect_status: HttpCheckSettings::DEFAULT_EXPECT_STATUS.to_vec(),
            expect_body: None,
        }
    }
}

/// The balancing policies live with the balancer in `levee-core`; the
/// config names them by their `as_str` spelling.
pub use levee_core::balance::{BadBalancePolicy, BalancePolicy};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_their_config_spelling() {
        for policy in BalancePolicy::ALL {
            assert_eq!(policy.to_string().parse(), Ok(policy));
        }
        for protocol in [Protocol::Http, Protocol::Tcp] {
            assert_eq!(protocol.to_string().parse(), Ok(protocol));
        }
        assert_eq!(Protocol::Tcp.to_string(), "tcp");
    }

    #[test]
    fn the_error_message_lists_every_policy() {
        let error = "random".parse::<BalancePolicy>().unwrap_err().to_string();
        for policy in BalancePolicy::ALL {
            assert!(error.contains(&format!("{:?}", policy.as_str())), "{error}");
        }
    }

    #[test]
    fn constructors_fill_in_defaults() {
        let listener = ListenerSettings::new("web", "127.0.0.1:80".parse().unwrap(), "app");
        assert_eq!(listener.protocol, Protocol::Http);
        assert_eq!(listener.tcp_replay, 0);
        let cluster = ClusterSettings::new("app", vec![EndpointAddress::new("a", 1)]);
        assert_eq!(cluster.balance, BalancePolicy::P2cEwma);
        assert_eq!(cluster.connect_timeout, Duration::from_secs(1));
        assert_eq!(cluster.request_timeout, Duration::from_secs(15));
        assert_eq!(cluster.idle_timeout, Duration::from_secs(90));
        assert_eq!(cluster.max_idle_per_endpoint, 128);
        assert_eq!(cluster.ewma_decay, Duration::from_secs(10));
        assert_eq!(cluster.health, None);
        assert_eq!(cluster.outlier, Some(OutlierParams::default()));
        assert_eq!(cluster.panic_threshold_percent, 50);
        assert_eq!(cluster.slow_start, Duration::from_secs(10));
        let check = HttpCheckSettings::new("/healthz");
        assert_eq!(check.method, Method::GET);
        assert_eq!(check.expect_status, [200]);
        assert_eq!(
            AdminSettings::default().listen.to_string(),
            "127.0.0.1:9901"
        );
        assert_eq!(
            RuntimeSettings::default().drain_timeout,
            Duration::from_secs(30)
        );
    }
}

/// `shared`, `quorum` and `protect_locally` of a cluster's `breaker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetBreakerSettings {
    /// Share the breaker's state with every levee using the same `[store]`
    /// namespace.
    pub shared: bool,
    /// Distinct instances that must trip before the breaker opens for the
    /// fleet; at least 1.
    pub quorum: u32,
    /// An instance that trips alone, below the quorum, still opens its own
    /// breaker (and says so in `/status`).
    pub protect_locally: bool,
}

impl Default for FleetBreakerSettings {
    fn default() -> Self {
        FleetBreakerSettings {
            shared: false,
            quorum: 1,
            protect_locally: true,
        }
    }
}

/// `[store]`: where breakers marked `shared` keep their fleet state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// `memory` (this process only) or `redis` (a fleet).
    pub kind: StoreKind,
    /// `redis://host:port/db`, used when `kind = "redis"`.
    pub url: String,
    /// Prefix of every key: fleets sharing a Redis but not their breakers
    /// use different namespaces.
    pub namespace: String,
    /// This instance's id in the fleet (what the quorum counts).
    pub instance_id: String,
    /// What shared breakers do while the store cannot be reached.
    pub on_unreachable: OnUnreachable,
}

impl StoreSettings {
    /// The default Redis URL.
    pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
    /// The default namespace.
    pub const DEFAULT_NAMESPACE: &str = "levee";

    /// `HOSTNAME:pid`, or `levee:pid` without a host name.
    pub fn default_instance_id() -> String {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|host| !host.is_empty())
            .unwrap_or_else(|| "levee".to_owned());
        format!("{host}:{}", std::process::id())
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            kind: StoreKind::Memory,
            url: StoreSettings::DEFAULT_URL.to_owned(),
            namespace: StoreSettings::DEFAULT_NAMESPACE.to_owned(),
            instance_id: StoreSettings::default_instance_id(),
            on_unreachable: OnUnreachable::Local,
        }
    }
}

/// `kind` of `[store]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreKind {
    /// In this process: shared breakers are shared by nobody else.
    #[default]
    Memory,
    /// A Redis server shared by the fleet.
    Redis,
}

impl StoreKind {
    /// `memory` or `redis`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Redis => "redis",
        }
    }
}

/// `on_unreachable` of `[store]`: how shared breakers behave while the
/// store is down (its state is then stale).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnreachable {
    /// Each instance follows its own local breaker (the default: an outage
    /// of the store neither stops traffic nor removes protection).
    #[default]
    Local,
    /// Every shared breaker fails fast as if open.
    Open,
    /// Every shared breaker lets everything through.
    Closed,
}

impl OnUnreachable {
    /// `local`, `open` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnreachable::Local => "local",
            OnUnreachable::Open => "open",
            OnUnreachable::Closed => "closed",
        }
    }
}
