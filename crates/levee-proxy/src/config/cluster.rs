//! A cluster (`[[cluster]]`): its raw table, validation and settings. Its
//! nested tables have files of their own: `health.rs`, `outlier.rs`,
//! `retry.rs`, `admission.rs`, `cache.rs`, `breaker.rs`.

use std::collections::HashSet;
use std::time::Duration;

use levee_core::breaker::BreakerParams;
use levee_core::outlier::OutlierParams;
use serde::Deserialize;
use toml::Spanned;

use super::admission::RawAdmission;
use super::breaker::RawBreaker;
use super::cache::RawCache;
use super::checks::Cluster;
use super::health::RawHealth;
use super::keys::fields_of;
use super::outlier::RawOutlier;
use super::report::Report;
use super::retry::RawRetry;
use super::table::{RawTable, Section};
use super::tls::{self, RawClusterTls, UpstreamTlsSettings};
use super::upstream::UpstreamProtocol;
use super::values::{Zero, duration, name, percent, required};
use super::{
    AdmissionSettings, BalancePolicy, CacheSettings, EndpointAddress, FleetBreakerSettings,
    HealthSettings, RetrySettings, admission, breaker, cache, health, outlier, retry,
};

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
    /// Local address to connect from (traffic, checks, tcp sessions), an IP
    /// address of this host. Default: the system's choice.
    pub source_address: Option<Spanned<String>>,
    /// A request header that carries the caller's deadline in milliseconds
    /// (read, and rewritten with the time left on every attempt). Default:
    /// none (gRPC's `grpc-timeout` is always read and rewritten).
    pub deadline_header: Option<Spanned<String>>,
    /// Share endpoint health with the fleet through `[store]`. Default
    /// `true` with a Redis store, `false` otherwise.
    pub share_health: Option<bool>,
    /// Distinct instances that must judge an endpoint bad to take it out
    /// fleet-wide, at least 1. Default 2 (1 while an instance is alone).
    pub health_quorum: Option<Spanned<i64>>,
    /// Header fields an upstream response may have, 1 to 4096; past it the
    /// response is a protocol error of the endpoint (502). Above 100 the
    /// parser keeps them on the heap, one allocation per response. Default
    /// 100.
    pub max_response_headers: Option<Spanned<i64>>,
    /// The HTTP version spoken to the endpoints: `"http1"`, `"h2"` (over
    /// TLS), `"h2c"` (cleartext HTTP/2) or `"auto"` (ALPN over TLS).
    /// Default `"http1"`.
    pub upstream_protocol: Option<Spanned<String>>,
    /// HTTP/2: requests in flight on one connection at most; past it (or
    /// past the endpoint's own limit) another connection opens. 1 to
    /// 10000. Default 100.
    pub max_concurrent_streams: Option<Spanned<i64>>,
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
    /// Client-side adaptive throttling (`throttle = { ... }` or
    /// `[cluster.throttle]`). Default: off.
    pub throttle: Option<Box<Spanned<super::throttle::RawThrottle>>>,
    /// A rate limit per client or header value (`rate_limit = { ... }` or
    /// `[cluster.rate_limit]`). Default: none.
    pub rate_limit: Option<Box<Spanned<super::rate_limit::RawRateLimit>>>,
    /// TLS to the endpoints (`tls = { ... }` or `[cluster.tls]`; an empty
    /// table verifies against the system's roots). Default: cleartext.
    pub tls: Option<Box<Spanned<RawClusterTls>>>,
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
            ["throttle", rest @ ..] => super::throttle::RawThrottle::keys_at(rest),
            ["rate_limit", rest @ ..] => super::rate_limit::RawRateLimit::keys_at(rest),
            ["tls", rest @ ..] => RawClusterTls::keys_at(rest),
            _ => &[],
        }
    }
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
    /// Header fields an upstream response may have (502 past it).
    pub max_response_headers: usize,
    /// The HTTP version spoken to the endpoints.
    pub upstream_protocol: UpstreamProtocol,
    /// HTTP/2: requests in flight per connection at most.
    pub max_concurrent_streams: usize,
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
    /// Client-side adaptive throttling; `None`: off.
    pub throttle: Option<super::ThrottleSettings>,
    /// Rate limit per client or header value; `None`: none.
    pub rate_limit: Option<super::RateLimitSettings>,
    /// Circuit breaker of the cluster; `None`: none.
    pub breaker: Option<BreakerParams>,
    /// Whether the breaker's state is shared with the fleet through
    /// `[store]`, and by which quorum.
    pub breaker_fleet: FleetBreakerSettings,
    /// Every endpoint also has a breaker of its own (same parameters, local
    /// to this process): one failing endpoint stops getting requests
    /// without the cluster's breaker opening for all of them.
    pub breaker_per_endpoint: bool,
    /// TLS to the endpoints (traffic, health checks and tcp sessions);
    /// `None`: cleartext.
    pub tls: Option<UpstreamTlsSettings>,
    /// Endpoint health is shared with the fleet through `[store]`: each
    /// instance publishes its verdicts, and a quorum takes an endpoint out
    /// on every instance. `None` as written: on with a Redis store (the
    /// whole config decides, see [`ClusterSettings::shares_health`]).
    pub share_health: Option<bool>,
    /// Local address connections to the endpoints are made from; `None`:
    /// the system's choice.
    pub source_address: Option<std::net::IpAddr>,
    /// The header carrying the caller's deadline in milliseconds, read and
    /// rewritten with the time left on each attempt; `None`: only gRPC's
    /// `grpc-timeout`.
    pub deadline_header: Option<http::HeaderName>,
    /// Distinct instances that must judge an endpoint bad within the
    /// store's report lifetime to take it out fleet-wide (capped by the
    /// fleet's size, so 1 while an instance is alone).
    pub health_quorum: u32,
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
    /// Default [`ClusterSettings::max_response_headers`]: hyper's own, which
    /// it parses without a heap allocation.
    pub const DEFAULT_MAX_RESPONSE_HEADERS: usize = 100;
    /// Default [`ClusterSettings::health_quorum`]: one instance's broken
    /// path to a node never takes it out for the others.
    pub const DEFAULT_HEALTH_QUORUM: u32 = 2;

    /// Whether endpoint health is shared, given the config's store: as
    /// written, else on with a Redis store.
    pub fn shares_health(&self, store: super::StoreKind) -> bool {
        self.share_health
            .unwrap_or(store == super::StoreKind::Redis)
    }

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
            max_response_headers: ClusterSettings::DEFAULT_MAX_RESPONSE_HEADERS,
            upstream_protocol: UpstreamProtocol::default(),
            max_concurrent_streams: super::upstream::DEFAULT_MAX_CONCURRENT_STREAMS,
            ewma_decay: ClusterSettings::DEFAULT_EWMA_DECAY,
            health: None,
            outlier: Some(OutlierParams::default()),
            panic_threshold_percent: ClusterSettings::DEFAULT_PANIC_THRESHOLD_PERCENT,
            slow_start: ClusterSettings::DEFAULT_SLOW_START,
            resolve_interval: ClusterSettings::DEFAULT_RESOLVE_INTERVAL,
            retry: RetrySettings::default(),
            admission: None,
            cache: None,
            throttle: None,
            rate_limit: None,
            breaker: None,
            breaker_fleet: FleetBreakerSettings::default(),
            breaker_per_endpoint: false,
            tls: None,
            share_health: None,
            source_address: None,
            deadline_header: None,
            health_quorum: ClusterSettings::DEFAULT_HEALTH_QUORUM,
        }
    }
}

pub(super) fn cluster<'r>(
    section: &'r Section<RawCluster>,
    report: &mut Report<'_>,
) -> Cluster<'r> {
    let raw = &section.raw;
    let name = name(section, raw.name.as_ref(), report);
    let endpoints = required(section, raw.endpoints.as_ref(), "endpoints", report)
        .and_then(|endpoints| endpoint_list(section, endpoints, report));
    let balance = match &raw.balance {
        None => Some(ClusterSettings::DEFAULT_BALANCE),
        Some(balance) => balance
            .get_ref()
            .parse()
            .map_err(|error| report.error(balance.span(), format!("{error}")))
            .ok(),
    };
    let connect_timeout = duration(
        raw.connect_timeout.as_ref(),
        "connect_timeout",
        ClusterSettings::DEFAULT_CONNECT_TIMEOUT,
        Zero::Rejected { hint: "" },
        report,
    );
    let request_timeout = duration(
        raw.request_timeout.as_ref(),
        "request_timeout",
        ClusterSettings::DEFAULT_REQUEST_TIMEOUT,
        Zero::Rejected { hint: "" },
        report,
    );
    let body_idle_timeout = duration(
        raw.body_idle_timeout.as_ref(),
        "body_idle_timeout",
        ClusterSettings::DEFAULT_BODY_IDLE_TIMEOUT,
        Zero::Rejected { hint: "" },
        report,
    );
    let idle_timeout = duration(
        raw.idle_timeout.as_ref(),
        "idle_timeout",
        ClusterSettings::DEFAULT_IDLE_TIMEOUT,
        Zero::Rejected {
            hint: " (to disable pooling, set max_idle_per_endpoint = 0)",
        },
        report,
    );
    let ewma_decay = duration(
        raw.ewma_decay.as_ref(),
        "ewma_decay",
        ClusterSettings::DEFAULT_EWMA_DECAY,
        Zero::Rejected { hint: "" },
        report,
    );
    let max_idle_per_endpoint = raw
        .max_idle_per_endpoint
        .unwrap_or(ClusterSettings::DEFAULT_MAX_IDLE_PER_ENDPOINT);
    let max_response_headers = match &raw.max_response_headers {
        None => Some(ClusterSettings::DEFAULT_MAX_RESPONSE_HEADERS),
        Some(value) => match usize::try_from(*value.get_ref()) {
            Ok(count) if (1..=4096).contains(&count) => Some(count),
            _ => {
                let message = format!(
                    "max_response_headers: must be between 1 and 4096, got {}",
                    value.get_ref()
                );
                report.error(value.span(), message);
                None
            }
        },
    };
    let upstream = super::upstream::upstream_protocol(
        raw.upstream_protocol.as_ref(),
        raw.max_concurrent_streams.as_ref(),
        raw.tls.is_some(),
        report,
    );
    // `Some(None)`: not written (no checks), `None`: bad.
    let health = match &raw.health {
        Some(written) => health::health(section, written, report).map(Some),
        None => Some(None),
    };
    // `Some(None)`: turned off, `None`: bad.
    let outlier = match &raw.outlier {
        Some(written) => outlier::outlier(written, report),
        None => Some(Some(OutlierParams::default())),
    };
    let source_address = raw.source_address.as_ref().and_then(|written| {
        written
            .get_ref()
            .parse::<std::net::IpAddr>()
            .map_err(|_| {
                report.error(
                    written.span(),
                    format!(
                        "source_address: {:?} is not an IP address (e.g. \"10.0.0.5\")",
                        written.get_ref()
                    ),
                );
            })
            .ok()
    });
    let deadline_header = raw.deadline_header.as_ref().and_then(|written| {
        http::HeaderName::from_bytes(written.get_ref().as_bytes())
            .map_err(|_| {
                report.error(
                    written.span(),
                    format!(
                        "deadline_header: {:?} is not a header name (e.g. \"x-request-timeout-ms\")",
                        written.get_ref()
                    ),
                );
            })
            .ok()
    });
    let health_quorum = match &raw.health_quorum {
        Some(written) => match u32::try_from(*written.get_ref()) {
            Ok(quorum) if quorum >= 1 => quorum,
            _ => {
                report.error(
                    written.span(),
                    format!(
                        "health_quorum: {} is not a quorum: at least 1",
                        written.get_ref()
                    ),
                );
                ClusterSettings::DEFAULT_HEALTH_QUORUM
            }
        },
        None => ClusterSettings::DEFAULT_HEALTH_QUORUM,
    };
    let panic_threshold_percent = match &raw.panic_threshold {
        Some(written) => percent(written, "panic_threshold", report),
        None => Some(ClusterSettings::DEFAULT_PANIC_THRESHOLD_PERCENT),
    };
    let slow_start = duration(
        raw.slow_start.as_ref(),
        "slow_start",
        ClusterSettings::DEFAULT_SLOW_START,
        Zero::Allowed,
        report,
    );
    let resolve_interval = duration(
        raw.resolve_interval.as_ref(),
        "resolve_interval",
        ClusterSettings::DEFAULT_RESOLVE_INTERVAL,
        Zero::Rejected { hint: "" },
        report,
    );
    let retry = match &raw.retry {
        Some(written) => retry::retry(written, report),
        None => Some(RetrySettings::default()),
    };
    // `Some(None)`: off (the default), `None`: bad.
    let admission = match &raw.admission {
        Some(written) => admission::admission(written, report),
        None => Some(None),
    };
    // `Some(None)`: off (the default), `None`: bad.
    let throttle = match &raw.throttle {
        Some(written) => super::throttle::throttle(written, report),
        None => Some(None),
    };
    let rate_limit = match &raw.rate_limit {
        Some(written) => super::rate_limit::rate_limit(written, report),
        None => Some(None),
    };
    // `Some(None)`: off (the default), `None`: bad.
    let cache = match &raw.cache {
        Some(written) => cache::cache(written, report),
        None => Some(None),
    };
    // `Some(None)`: none (the default), `None`: bad.
    let breaker = match &raw.breaker {
        Some(written) => breaker::breaker(written, report),
        None => Some(None),
    };
    // Defaults when there is no breaker table; `None`: bad.
    let breaker_fleet = match &raw.breaker {
        Some(written) => breaker::fleet(written, report),
        None => Some(super::FleetBreakerSettings::default()),
    };
    // `Some(None)`: cleartext; `None`: bad (reported).
    let tls = match &raw.tls {
        None => Some(None),
        Some(written) => tls::cluster_tls(written, report).map(Some),
    };
    let (
        Some(breaker_fleet),
        Some(tls),
        Some((upstream_protocol, max_concurrent_streams)),
        Some(throttle),
        Some(rate_limit),
    ) = (breaker_fleet, tls, upstream, throttle, rate_limit)
    else {
        return Cluster {
            name,
            settings: None,
        };
    };
    let (
        Some(name),
        Some(endpoints),
        Some(balance),
        Some(connect_timeout),
        Some(request_timeout),
        Some(body_idle_timeout),
        Some(idle_timeout),
        Some(max_response_headers),
        Some(ewma_decay),
        Some(health),
        Some(outlier),
        Some(panic_threshold_percent),
        Some(slow_start),
        Some(resolve_interval),
        Some(retry),
        Some(admission),
        Some(cache),
        Some(breaker),
    ) = (
        name,
        endpoints,
        balance,
        connect_timeout,
        request_timeout,
        body_idle_timeout,
        idle_timeout,
        max_response_headers,
        ewma_decay,
        health,
        outlier,
        panic_threshold_percent,
        slow_start,
        resolve_interval,
        retry,
        admission,
        cache,
        breaker,
    )
    else {
        return Cluster {
            name,
            settings: None,
        };
    };
    let settings = ClusterSettings {
        name: name.get_ref().clone(),
        endpoints,
        balance,
        connect_timeout,
        request_timeout,
        body_idle_timeout,
        idle_timeout,
        max_idle_per_endpoint,
        max_response_headers,
        upstream_protocol,
        max_concurrent_streams,
        ewma_decay,
        health,
        outlier,
        panic_threshold_percent,
        slow_start,
        resolve_interval,
        retry,
        admission,
        cache,
        throttle,
        rate_limit,
        breaker,
        breaker_fleet,
        breaker_per_endpoint: raw
            .breaker
            .as_ref()
            .and_then(|written| written.get_ref().per_endpoint.as_ref())
            .is_some_and(|per_endpoint| *per_endpoint.get_ref()),
        tls,
        share_health: raw.share_health,
        source_address,
        deadline_header,
        health_quorum,
    };
    Cluster {
        name: Some(name),
        settings: Some(settings),
    }
}

/// Every endpoint parsed, at least one, none twice.
pub(super) fn endpoint_list(
    section: &Section<RawCluster>,
    endpoints: &Spanned<Vec<Spanned<String>>>,
    report: &mut Report<'_>,
) -> Option<Vec<EndpointAddress>> {
    if endpoints.get_ref().is_empty() {
        report.error(
            endpoints.span(),
            format!("{} has no endpoints", section.label),
        );
        return None;
    }
    let mut parsed: Vec<EndpointAddress> = Vec::new();
    let mut seen: HashSet<EndpointAddress> = HashSet::new();
    let mut all_valid = true;
    for text in endpoints.get_ref() {
        match text.get_ref().parse::<EndpointAddress>() {
            // A duplicate would get twice the traffic and share its health
            // with itself: almost certainly a copy-paste slip.
            Ok(address) if seen.contains(&address) => {
                let message = format!("endpoints: {:?} is listed twice", address.to_string());
                report.error(text.span(), message);
                all_valid = false;
            }
            Ok(address) => {
                seen.insert(address.clone());
                parsed.push(address);
            }
            Err(error) => {
                report.error(text.span(), format!("endpoints: {error}"));
                all_valid = false;
            }
        }
    }
    all_valid.then_some(parsed)
}
