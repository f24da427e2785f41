//! Raw sections → settings: parse every value, fill in defaults, and enforce
//! the rules each key has on its own. Rules between sections (unique names,
//! cluster references, address conflicts) are in `checks.rs`.
//!
//! Nothing here stops at a problem: each is reported and the rest of the
//! config is still checked. The nested tables of a cluster have files of
//! their own: `validate/health.rs`, `validate/outlier.rs`.

mod admission;
mod breaker;
mod cache;
mod health;
mod outlier;
mod readiness;
mod retry;
mod route;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use levee_core::outlier::OutlierParams;
use toml::Spanned;

use super::checks::{self, Admin, Cluster, Listener};
use super::raw::{RawAdmin, RawCluster, RawConfig, RawListener, RawRuntime, RawStore, Section};
use super::report::Report;
use super::units::{parse_duration, parse_size};
use super::{
    AdminSettings, ClusterSettings, Config, EndpointAddress, ListenerSettings, OnUnreachable,
    Protocol, RetrySettings, RuntimeSettings, StoreKind, StoreSettings, WhenImpaired,
};

/// The settings of `raw`. Only meaningful if nothing was reported.
pub(super) fn config(raw: &RawConfig, report: &mut Report<'_>) -> Config {
    let admin = admin(raw.admin.as_ref(), report);
    let runtime = runtime(raw.runtime.as_ref(), report);
    let listeners: Vec<Listener<'_>> = raw.listener.iter().map(|l| listener(l, report)).collect();
    let clusters: Vec<Cluster<'_>> = raw.cluster.iter().map(|c| cluster(c, report)).collect();

    checks::at_least_one_listener(&listeners, report);
    checks::unique_names("listener", listeners.iter().filter_map(|l| l.name), report);
    checks::unique_names("cluster", clusters.iter().filter_map(|c| c.name), report);
    checks::clusters_are_defined(&listeners, &clusters, report);
    checks::addresses_are_free(&admin, &listeners, report);
    let readiness = readiness::readiness(raw.readiness.as_ref(), &clusters, report);
    let alerts = raw
        .alert
        .iter()
        .filter_map(|alert| readiness::alert(alert, report))
        .collect();

    let store = store(raw.store.as_ref(), report);
    Config {
        store,
        admin: admin.settings,
        runtime,
        listeners: listeners.into_iter().filter_map(|l| l.settings).collect(),
        clusters: clusters.into_iter().filter_map(|c| c.settings).collect(),
        readiness,
        alerts,
        warnings: Vec::new(),
    }
}

fn admin(section: Option<&Section<RawAdmin>>, report: &mut Report<'_>) -> Admin {
    let listen = section.and_then(|section| section.raw.listen.as_ref());
    Admin {
        settings: AdminSettings {
            listen: listen
                .and_then(|listen| socket_addr(listen, "listen", report))
                .map_or(AdminSettings::DEFAULT_LISTEN, Spanned::into_inner),
        },
        listen_span: listen.map(Spanned::span),
    }
}

fn store(section: Option<&Section<RawStore>>, report: &mut Report<'_>) -> StoreSettings {
    let mut settings = StoreSettings::default();
    let Some(Section { raw, .. }) = section else {
        return settings;
    };
    if let Some(kind) = &raw.kind {
        match kind.get_ref().as_str() {
            "memory" => settings.kind = StoreKind::Memory,
            "redis" => settings.kind = StoreKind::Redis,
            other => report.error(
                kind.span(),
                format!("kind: {other:?} is not a store: expected \"memory\" or \"redis\""),
            ),
        }
    }
    if let Some(url) = &raw.url {
        let text = url.get_ref();
        if text.starts_with("redis://") || text.starts_with("rediss://") {
            settings.url = text.clone();
        } else {
            report.error(
                url.span(),
                format!("url: {text:?} is not a Redis URL (redis://host:port)"),
            );
        }
    }
    if let Some(namespace) = &raw.namespace {
        let text = namespace.get_ref();
        if text.is_empty() || text.contains(char::is_whitespace) {
            report.error(
                namespace.span(),
                "namespace: must be non-empty, without spaces",
            );
        } else {
            settings.namespace = text.clone();
        }
    }
    if let Some(id) = &raw.instance_id {
        let text = id.get_ref();
        if text.trim().is_empty() {
            report.error(
                id.span(),
                "instance_id: must be non-empty (leave it unset for HOSTNAME:pid)",
            );
        } else {
            settings.instance_id = text.clone();
        }
    }
    if let Some(fallback) = &raw.on_unreachable {
        match fallback.get_ref().as_str() {
            "local" => settings.on_unreachable = OnUnreachable::Local,
            "open" => settings.on_unreachable = OnUnreachable::Open,
            "closed" => settings.on_unreachable = OnUnreachable::Closed,
            other => report.error(
                fallback.span(),
                format!("on_unreachable: {other:?}: expected \"local\", \"open\" or \"closed\""),
            ),
        }
    }
    settings
}

fn runtime(section: Option<&Section<RawRuntime>>, report: &mut Report<'_>) -> RuntimeSettings {
    let Some(Section { raw, .. }) = section else {
        return RuntimeSettings::default();
    };
    let worker_threads = raw.worker_threads.as_ref().map(|threads| {
        if *threads.get_ref() == 0 {
            let message = "worker_threads: must be at least 1 (leave it unset for one per CPU)";
            report.error(threads.span(), message);
        }
        *threads.get_ref()
    });
    let drain_timeout = duration(
        raw.drain_timeout.as_ref(),
        "drain_timeout",
        RuntimeSettings::DEFAULT_DRAIN_TIMEOUT,
        Zero::Allowed,
        report,
    );
    let dns_servers = raw.dns_servers.as_ref().map_or_else(Vec::new, |servers| {
        servers
            .get_ref()
            .iter()
            .filter_map(|server| dns_server(server, report))
            .collect()
    });
    RuntimeSettings {
        worker_threads,
        drain_timeout: drain_timeout.unwrap_or(RuntimeSettings::DEFAULT_DRAIN_TIMEOUT),
        watch_config: raw.watch_config.unwrap_or(false),
        dns_servers,
    }
}

/// A DNS server, `"ip:port"` or `"ip"` (port 53).
fn dns_server(text: &Spanned<String>, report: &mut Report<'_>) -> Option<SocketAddr> {
    const DNS_PORT: u16 = 53;
    let written = text.get_ref();
    if let Ok(ip) = written.parse::<std::net::IpAddr>() {
        return Some(SocketAddr::new(ip, DNS_PORT));
    }
    match written.parse::<SocketAddr>() {
        Ok(address) => Some(address),
        Err(_) => {
            let message = format!(
                "dns_servers: bad server {written:?}: expected an IP address, with a port if not 53, \
                 e.g. \"10.0.0.2\" or \"127.0.0.1:5353\""
            );
            report.error(text.span(), message);
            None
        }
    }
}

fn listener<'r>(section: &'r Section<RawListener>, report: &mut Report<'_>) -> Listener<'r> {
    let raw = &section.raw;
    let name = name(section, raw.name.as_ref(), report);
    let listen = required(section, raw.listen.as_ref(), "listen", report)
        .and_then(|listen| socket_addr(listen, "listen", report));
    let protocol = match &raw.protocol {
        None => Some(Protocol::default()),
        Some(protocol) => protocol
            .get_ref()
            .parse()
            .map_err(|error| report.error(protocol.span(), format!("{error}")))
            .ok(),
    };
    let (routes, route_clusters) = match &raw.route {
        None => (Some(Vec::new()), Vec::new()),
        Some(routes) => route::routes(routes, &section.label, report),
    };
    if let (Some(first), Some(Protocol::Tcp)) =
        (raw.route.as_ref().and_then(|r| r.first()), protocol)
    {
        let message = format!(
            "route: only http listeners route requests; {} is a tcp listener",
            section.label
        );
        report.error(first.span(), message);
    }
    // With routes, requests no route takes may simply get 404.
    let has_routes = raw.route.as_ref().is_some_and(|routes| !routes.is_empty());
    let cluster = if has_routes {
        raw.cluster.as_ref()
    } else {
        required(section, raw.cluster.as_ref(), "cluster", report)
    };
    let tcp_replay = tcp_replay(section, protocol, report);
    let when_impaired = when_impaired(section, protocol, report);
    let client_limits = client_limits(section, protocol, report);
    let cluster_ok = cluster.is_some() || has_routes;
    let settings = match (
        name,
        &listen,
        protocol,
        cluster_ok,
        routes,
        tcp_replay,
        when_impaired,
        client_limits,
    ) {
        (
            Some(name),
            Some(listen),
            Some(protocol),
            true,
            Some(routes),
            Some(tcp_replay),
            Some(when_impaired),
            Some((header_read_timeout, idle_timeout, max_connections)),
        ) if protocol == Protocol::Http || routes.is_empty() => Some(ListenerSettings {
            name: name.get_ref().clone(),
            listen: *listen.get_ref(),
            protocol,
            cluster: cluster.map(|cluster| cluster.get_ref().clone()),
            routes,
            tcp_replay,
            when_impaired,
            header_read_timeout,
            idle_timeout,
            max_connections,
        }),
        _ => None,
    };
    Listener {
        label: &section.label,
        name,
        listen,
        cluster,
        route_clusters,
        settings,
    }
}

/// `tcp_replay` in bytes, or the default if it is not written. Only a tcp
/// listener has bytes to replay: on an http listener the key is an error,
/// not silently ignored (HTTP retries are configured per cluster). `None` if
/// it is bad (reported); not judged against a `protocol` that is itself bad.
fn tcp_replay(
    section: &Section<RawListener>,
    protocol: Option<Protocol>,
    report: &mut Report<'_>,
) -> Option<u64> {
    let Some(text) = &section.raw.tcp_replay else {
        return Some(ListenerSettings::DEFAULT_TCP_REPLAY);
    };
    let size = parse_size(text.get_ref())
        .map_err(|error| report.error(text.span(), format!("tcp_replay: {error}")))
        .ok()?;
    match protocol {
        Some(Protocol::Http) => {
            let message = format!(
                "tcp_replay: only a listener with protocol = \"tcp\" replays bytes; \
                 {} is an http listener",
                section.label
            );
            report.error(text.span(), message);
            None
        }
        Some(Protocol::Tcp) | None => Some(size),
    }
}

/// `header_read_timeout`, `idle_timeout` and `max_connections`. The
/// timeouts concern HTTP requests: on a tcp listener (whose protocol may
/// well be silent for minutes, or server-first) they are an error rather
/// than silently ignored. `None` if any is bad (reported).
fn client_limits(
    section: &Section<RawListener>,
    protocol: Option<Protocol>,
    report: &mut Report<'_>,
) -> Option<(Duration, Duration, Option<usize>)> {
    let raw = &section.raw;
    let mut ok = true;
    for (key, value) in [
        ("header_read_timeout", &raw.header_read_timeout),
        ("idle_timeout", &raw.idle_timeout),
    ] {
        if let (Some(value), Some(Protocol::Tcp)) = (value, protocol) {
            let message = format!(
                "{key}: only http listeners read requests; {} is a tcp listener",
                section.label
            );
            report.error(value.span(), message);
            ok = false;
        }
    }
    let header_read_timeout = duration(
        raw.header_read_timeout.as_ref(),
        "header_read_timeout",
        ListenerSettings::DEFAULT_HEADER_READ_TIMEOUT,
        Zero::Rejected { hint: "" },
        report,
    );
    if let (Some(timeout), Some(text)) = (header_read_timeout, &raw.header_read_timeout) {
        if !timeout.is_zero() && timeout < ListenerSettings::MIN_HEADER_READ_TIMEOUT {
            let message = format!(
                "header_read_timeout: must be at least 100ms, got {}",
                text.get_ref()
            );
            report.error(text.span(), message);
            ok = false;
        }
    }
    let idle_timeout = duration(
        raw.idle_timeout.as_ref(),
        "idle_timeout",
        ListenerSettings::DEFAULT_IDLE_TIMEOUT,
        Zero::Rejected { hint: "" },
        report,
    );
    let max_connections = match &raw.max_connections {
        None => Some(None),
        Some(value) => match usize::try_from(*value.get_ref()) {
            Ok(limit) if limit >= 1 => Some(Some(limit)),
            _ => {
                let message = format!(
                    "max_connections: must be at least 1, got {}",
                    value.get_ref()
                );
                report.error(value.span(), message);
                None
            }
        },
    };
    match (ok, header_read_timeout, idle_timeout, max_connections) {
        (true, Some(header), Some(idle), Some(max)) => Some((header, idle, max)),
        _ => None,
    }
}

/// `when_impaired`, default `serve`. A tcp listener has no requests to
/// reject one by one, so `reject-*` there is an error rather than a silent
/// `close`: the operator should choose.
fn when_impaired(
    section: &Section<RawListener>,
    protocol: Option<Protocol>,
    report: &mut Report<'_>,
) -> Option<WhenImpaired> {
    let Some(text) = &section.raw.when_impaired else {
        return Some(WhenImpaired::default());
    };
    let value: WhenImpaired = text
        .get_ref()
        .parse()
        .map_err(|error| report.error(text.span(), format!("{error}")))
        .ok()?;
    match (value, protocol) {
        (WhenImpaired::RejectAll | WhenImpaired::RejectWrites, Some(Protocol::Tcp)) => {
            let message = format!(
                "when_impaired: {value:?} rejects HTTP requests; {} is a tcp listener: use \"close\" or \"serve\"",
                section.label
            )
            .replace(&format!("{value:?}"), &format!("{:?}", value.as_str()));
            report.error(text.span(), message);
            None
        }
        _ => Some(value),
    }
}

fn cluster<'r>(section: &'r Section<RawCluster>, report: &mut Report<'_>) -> Cluster<'r> {
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
    let Some(breaker_fleet) = breaker_fleet else {
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
        breaker_fleet,
        breaker_per_endpoint: raw
            .breaker
            .as_ref()
            .and_then(|written| written.get_ref().per_endpoint.as_ref())
            .is_some_and(|per_endpoint| *per_endpoint.get_ref()),
    };
    Cluster {
        name: Some(name),
        settings: Some(settings),
    }
}

/// Every endpoint parsed, at least one, none twice.
fn endpoint_list(
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

/// A required, non-empty `name`.
fn name<'r, T>(
    section: &Section<T>,
    name: Option<&'r Spanned<String>>,
    report: &mut Report<'_>,
) -> Option<&'r Spanned<String>> {
    let name = required(section, name, "name", report)?;
    if name.get_ref().trim().is_empty() {
        report.error(name.span(), "name: must not be empty");
        return None;
    }
    Some(name)
}

/// `value`, or a report at the table's header that it is missing (unless it
/// is written but had the wrong type, which is already reported).
fn required<'r, T, V>(
    section: &Section<T>,
    value: Option<&'r V>,
    key: &str,
    report: &mut Report<'_>,
) -> Option<&'r V> {
    if value.is_none() && !section.is_unreadable(key) {
        let message = format!("missing key {key:?} in {}", section.label);
        report.error(section.span.clone(), message);
    }
    value
}

fn socket_addr(
    text: &Spanned<String>,
    key: &str,
    report: &mut Report<'_>,
) -> Option<Spanned<SocketAddr>> {
    match text.get_ref().parse::<SocketAddr>() {
        Ok(address) => Some(Spanned::new(text.span(), address)),
        Err(_) => {
            let message = format!(
                "{key}: bad socket address {:?}: expected an IP address and port, \
                 e.g. \"0.0.0.0:8080\" or \"[::]:8080\"",
                text.get_ref()
            );
            report.error(text.span(), message);
            None
        }
    }
}

/// A percentage, 0 to 100; `None` if out of range (reported).
fn percent(value: &Spanned<i64>, key: &str, report: &mut Report<'_>) -> Option<u8> {
    match u8::try_from(*value.get_ref()) {
        Ok(percent @ 0..=100) => Some(percent),
        _ => {
            let message = format!("{key}: must be between 0 and 100, got {}", value.get_ref());
            report.error(value.span(), message);
            None
        }
    }
}

/// Whether a zero duration makes sense for a key.
enum Zero {
    Allowed,
    /// Rejected, with a hint appended to the message.
    Rejected {
        hint: &'static str,
    },
}

/// The duration written for `key`, or `default` if it is not written.
/// `None` if it is bad (reported).
fn duration(
    text: Option<&Spanned<String>>,
    key: &str,
    default: Duration,
    zero: Zero,
    report: &mut Report<'_>,
) -> Option<Duration> {
    let Some(text) = text else {
        return Some(default);
    };
    match (parse_duration(text.get_ref()), zero) {
        (Err(error), _) => {
            report.error(text.span(), format!("{key}: {error}"));
            None
        }
        (Ok(Duration::ZERO), Zero::Rejected { hint }) => {
            report.error(text.span(), format!("{key}: must be more than 0{hint}"));
            None
        }
        (Ok(duration), _) => Some(duration),
    }
}
