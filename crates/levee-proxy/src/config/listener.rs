//! A listener (`[[listener]]`): its raw table, validation and settings (its
//! routes are in `route.rs`).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::access_log::{AccessLogSettings, RawAccessLog, access_log};
use super::checks::Listener;
use super::keys::fields_of;
use super::report::Report;
use super::route::RawRoute;
use super::table::{RawTable, Section};
use super::tls::{ListenerTlsSettings, RawListenerTls, listener_tls};
use super::units::parse_size;
use super::values::{Zero, duration, name, required, socket_addr};
use super::{RouteSettings, route};

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
    /// `tcp` listeners with `tcp_replay` only: an endpoint that has sent
    /// nothing back this long after the connect is left for another one,
    /// which gets the kept bytes (if they all still fit the replay buffer).
    /// A duration, or `"adaptive"`: 3 × the listener's p99 time to first
    /// byte, within `first_byte_timeout_bounds`. Default: unset, wait as
    /// long as the client does.
    pub first_byte_timeout: Option<Spanned<String>>,
    /// `tcp` listeners with `tcp_replay` only: a session whose endpoint has
    /// sent nothing after the listener's p95 time to first byte (50 ms to
    /// 2 s) also goes to a second endpoint, which gets the kept bytes; the
    /// first to answer keeps the session. Only sessions that may be
    /// replayed (`replay_first_bytes_match`), within the cluster's retry
    /// budget. Default `false`.
    pub tcp_hedge: Option<Spanned<bool>>,
    /// With `first_byte_timeout = "adaptive"`: the shortest and the longest
    /// deadline, `["250ms", "10s"]` by default; the longest also applies
    /// until 20 sessions have been measured.
    pub first_byte_timeout_bounds: Option<Spanned<Vec<Spanned<String>>>>,
    /// `tcp` listeners with `tcp_replay` only: replay a session's bytes to
    /// another endpoint only when they begin with one of these strings (or
    /// when the client has sent nothing yet), `?` standing for any one byte:
    /// for protocols whose first bytes say whether the session can be
    /// repeated (`git://`: `"????git-upload-pack"` reads after the
    /// pkt-line's length, never `git-receive-pack` writes). Default: unset,
    /// any session may be replayed.
    pub replay_first_bytes_match: Option<Spanned<Vec<String>>>,
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
    /// `http` listeners only: header fields a request head may have, 1 to
    /// 4096; past it the client gets 431. Above 100, hyper keeps the parsed
    /// headers on the heap, one allocation per request (measured: +1.6%
    /// instructions per request). Default 256 (nginx limits only the size).
    pub max_request_headers: Option<Spanned<i64>>,
    /// Terminate TLS (`tls = { cert = "…", key = "…" }` or
    /// `[listener.tls]`); HTTP listeners offer HTTP/2 and HTTP/1.1 by ALPN.
    /// Default: none, cleartext.
    pub tls: Option<Box<Spanned<RawListenerTls>>>,
    /// `http` listeners only: one line per request (`access_log = { path
    /// = "…", format = "json" }` or `[listener.access_log]`). Default:
    /// none.
    pub access_log: Option<Box<Spanned<RawAccessLog>>>,
}

impl RawTable for RawListener {
    fn keys_at(path: &[&str]) -> &'static [&'static str] {
        match path {
            [] => fields_of::<Self>(),
            ["route", rest @ ..] => RawRoute::keys_at(rest),
            ["tls", rest @ ..] => RawListenerTls::keys_at(rest),
            ["access_log", rest @ ..] => RawAccessLog::keys_at(rest),
            _ => &[],
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
    /// TCP listeners in replay mode: an endpoint silent this long after the
    /// connect is replaced by another (bytes replayed); `None`: never.
    pub first_byte_timeout: Option<FirstByteTimeout>,
    /// TCP listeners in replay mode: a session slower than usual also goes
    /// to a second endpoint; the first to answer keeps it.
    pub tcp_hedge: bool,
    /// TCP listeners in replay mode: replay only sessions whose first bytes
    /// begin with one of these (or that sent nothing yet); empty: any.
    pub replay_first_bytes_match: Vec<Vec<u8>>,
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
    /// HTTP listeners: header fields a request head may have (431 past it).
    pub max_request_headers: usize,
    /// TLS termination; `None`: cleartext.
    pub tls: Option<ListenerTlsSettings>,
    /// HTTP listeners: one line per request, if set.
    pub access_log: Option<AccessLogSettings>,
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
    /// Default [`ListenerSettings::max_request_headers`]: a request with 200
    /// ordinary headers, which nginx serves, is served.
    pub const DEFAULT_MAX_REQUEST_HEADERS: usize = 256;
    /// The most [`ListenerSettings::max_request_headers`] accepted.
    pub const MAX_REQUEST_HEADERS_LIMIT: usize = 4096;
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
            first_byte_timeout: None,
            tcp_hedge: false,
            replay_first_bytes_match: Vec::new(),
            when_impaired: WhenImpaired::default(),
            header_read_timeout: ListenerSettings::DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: ListenerSettings::DEFAULT_IDLE_TIMEOUT,
            max_connections: None,
            max_request_headers: ListenerSettings::DEFAULT_MAX_REQUEST_HEADERS,
            tls: None,
            access_log: None,
        }
    }
}

/// How long an endpoint may stay silent after the connect before a tcp
/// session in replay mode moves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstByteTimeout {
    /// Always this long.
    Fixed(Duration),
    /// 3 × the listener's p99 time to first byte over the last minute,
    /// kept within `[floor, ceiling]`; `ceiling` until 20 sessions have
    /// been measured.
    Adaptive {
        /// The shortest deadline.
        floor: Duration,
        /// The longest deadline.
        ceiling: Duration,
    },
}

impl FirstByteTimeout {
    /// Default floor of [`FirstByteTimeout::Adaptive`].
    pub const DEFAULT_FLOOR: Duration = Duration::from_millis(250);
    /// Default ceiling of [`FirstByteTimeout::Adaptive`].
    pub const DEFAULT_CEILING: Duration = Duration::from_secs(10);
    /// The adaptive deadline is this many times the p99.
    pub const P99_MULTIPLE: u32 = 3;
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

/// A `protocol` value levee does not speak.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadProtocol {
    /// Not a protocol levee knows.
    #[error("unknown protocol {0:?}: expected \"http\" or \"tcp\"")]
    Unknown(String),
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

/// A `when_impaired` value levee does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown when_impaired {0:?}: expected \"serve\", \"close\", \"reject-all\" or \"reject-writes\""
)]
pub struct BadWhenImpaired(pub String);

pub(super) fn listener<'r>(
    section: &'r Section<RawListener>,
    report: &mut Report<'_>,
) -> Listener<'r> {
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
    let first_byte_timeout = first_byte_timeout(section, tcp_replay, report);
    let replay_first_bytes_match = replay_first_bytes_match(section, tcp_replay, report);
    let tcp_hedge = match &raw.tcp_hedge {
        None => Some(false),
        Some(hedge) if *hedge.get_ref() && tcp_replay == Some(0) => {
            let message = format!(
                "tcp_hedge: needs tcp_replay: a hedge sends the client's kept bytes to a second endpoint; {} keeps none",
                section.label
            );
            report.error(hedge.span(), message);
            None
        }
        Some(hedge) => Some(*hedge.get_ref()),
    };
    let when_impaired = when_impaired(section, protocol, report);
    let client_limits = client_limits(section, protocol, report);
    let max_request_headers = max_request_headers(section, protocol, report);
    // `Some(None)`: cleartext; `None`: bad (reported).
    let tls = match &raw.tls {
        None => Some(None),
        Some(written) => listener_tls(written, report).map(Some),
    };
    // `Some(None)`: no access log; `None`: bad (reported).
    let access_log = match (&raw.access_log, protocol) {
        (None, _) => Some(None),
        (Some(written), Some(Protocol::Tcp)) => {
            let message = format!(
                "access_log: http listeners only; {} speaks tcp",
                section.label
            );
            report.error(written.span(), message);
            None
        }
        (Some(written), _) => access_log(written, report).map(Some),
    };
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
        max_request_headers,
        first_byte_timeout,
        replay_first_bytes_match,
        tls,
        tcp_hedge,
        access_log,
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
            Some(max_request_headers),
            Some(first_byte_timeout),
            Some(replay_first_bytes_match),
            Some(tls),
            Some(tcp_hedge),
            Some(access_log),
        ) if protocol == Protocol::Http || routes.is_empty() => Some(ListenerSettings {
            name: name.get_ref().clone(),
            listen: *listen.get_ref(),
            protocol,
            cluster: cluster.map(|cluster| cluster.get_ref().clone()),
            routes,
            tcp_replay,
            first_byte_timeout,
            tcp_hedge,
            replay_first_bytes_match,
            when_impaired,
            header_read_timeout,
            idle_timeout,
            max_connections,
            max_request_headers,
            tls,
            access_log,
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

/// `replay_first_bytes_match`: non-empty strings, only where bytes are
/// kept for replay. `None` if bad (reported).
pub(super) fn replay_first_bytes_match(
    section: &Section<RawListener>,
    tcp_replay: Option<u64>,
    report: &mut Report<'_>,
) -> Option<Vec<Vec<u8>>> {
    let Some(written) = &section.raw.replay_first_bytes_match else {
        return Some(Vec::new());
    };
    if tcp_replay == Some(0) {
        let message = format!(
            "replay_first_bytes_match: needs tcp_replay; {} keeps no bytes to replay",
            section.label
        );
        report.error(written.span(), message);
        return None;
    }
    let prefixes: Vec<Vec<u8>> = written
        .get_ref()
        .iter()
        .map(|prefix| prefix.as_bytes().to_vec())
        .collect();
    if prefixes.is_empty() || prefixes.iter().any(Vec::is_empty) {
        let message = "replay_first_bytes_match: give at least one non-empty string (leave the key out to replay any session)";
        report.error(written.span(), message);
        return None;
    }
    Some(prefixes)
}

/// `first_byte_timeout` (with its bounds when adaptive): only where bytes
/// are kept for replay (a tcp listener with `tcp_replay`), since leaving an
/// endpoint means replaying to the next. `Some(None)` when unset, `None` if
/// bad (reported).
pub(super) fn first_byte_timeout(
    section: &Section<RawListener>,
    tcp_replay: Option<u64>,
    report: &mut Report<'_>,
) -> Option<Option<FirstByteTimeout>> {
    let bounds = &section.raw.first_byte_timeout_bounds;
    let Some(text) = &section.raw.first_byte_timeout else {
        if let Some(bounds) = bounds {
            report.error(
                bounds.span(),
                "first_byte_timeout_bounds: only with first_byte_timeout = \"adaptive\"",
            );
            return None;
        }
        return Some(None);
    };
    let timeout = if text.get_ref() == "adaptive" {
        adaptive_bounds(bounds.as_ref(), report)?
    } else {
        if let Some(bounds) = bounds {
            report.error(
                bounds.span(),
                "first_byte_timeout_bounds: only with first_byte_timeout = \"adaptive\" (a fixed deadline has no bounds)",
            );
            return None;
        }
        FirstByteTimeout::Fixed(duration(
            Some(text),
            "first_byte_timeout",
            Duration::ZERO,
            Zero::Rejected {
                hint: " (or \"adaptive\")",
            },
            report,
        )?)
    };
    if tcp_replay == Some(0) {
        let message = format!(
            "first_byte_timeout: needs tcp_replay: leaving a silent endpoint means replaying the client's bytes to the next; {} keeps none",
            section.label
        );
        report.error(text.span(), message);
        return None;
    }
    Some(Some(timeout))
}

/// `first_byte_timeout_bounds`: `[floor, ceiling]`, both more than 0, the
/// floor not above the ceiling. `None` if bad (reported).
fn adaptive_bounds(
    bounds: Option<&Spanned<Vec<Spanned<String>>>>,
    report: &mut Report<'_>,
) -> Option<FirstByteTimeout> {
    let Some(bounds) = bounds else {
        return Some(FirstByteTimeout::Adaptive {
            floor: FirstByteTimeout::DEFAULT_FLOOR,
            ceiling: FirstByteTimeout::DEFAULT_CEILING,
        });
    };
    let [floor, ceiling] = bounds.get_ref().as_slice() else {
        report.error(
            bounds.span(),
            "first_byte_timeout_bounds: give two durations, the shortest and the longest deadline, e.g. [\"250ms\", \"10s\"]",
        );
        return None;
    };
    let key = "first_byte_timeout_bounds";
    let floor = duration(
        Some(floor),
        key,
        Duration::ZERO,
        Zero::Rejected { hint: "" },
        report,
    );
    let ceiling = duration(
        Some(ceiling),
        key,
        Duration::ZERO,
        Zero::Rejected { hint: "" },
        report,
    );
    let (floor, ceiling) = (floor?, ceiling?);
    if floor > ceiling {
        report.error(
            bounds.span(),
            "first_byte_timeout_bounds: the first (shortest) must not be longer than the second",
        );
        return None;
    }
    Some(FirstByteTimeout::Adaptive { floor, ceiling })
}

/// `tcp_replay` in bytes, or the default if it is not written. Only a tcp
/// listener has bytes to replay: on an http listener the key is an error,
/// not silently ignored (HTTP retries are configured per cluster). `None` if
/// it is bad (reported); not judged against a `protocol` that is itself bad.
pub(super) fn tcp_replay(
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

/// `max_request_headers`: 1 to 4096, http listeners only. `None` if bad
/// (reported).
pub(super) fn max_request_headers(
    section: &Section<RawListener>,
    protocol: Option<Protocol>,
    report: &mut Report<'_>,
) -> Option<usize> {
    let Some(value) = &section.raw.max_request_headers else {
        return Some(ListenerSettings::DEFAULT_MAX_REQUEST_HEADERS);
    };
    if protocol == Some(Protocol::Tcp) {
        let message = format!(
            "max_request_headers: only http listeners read requests; {} is a tcp listener",
            section.label
        );
        report.error(value.span(), message);
        return None;
    }
    match usize::try_from(*value.get_ref()) {
        Ok(count) if (1..=ListenerSettings::MAX_REQUEST_HEADERS_LIMIT).contains(&count) => {
            Some(count)
        }
        _ => {
            let message = format!(
                "max_request_headers: must be between 1 and {}, got {}",
                ListenerSettings::MAX_REQUEST_HEADERS_LIMIT,
                value.get_ref()
            );
            report.error(value.span(), message);
            None
        }
    }
}

/// `header_read_timeout`, `idle_timeout` and `max_connections`. The
/// timeouts concern HTTP requests: on a tcp listener (whose protocol may
/// well be silent for minutes, or server-first) they are an error rather
/// than silently ignored. `None` if any is bad (reported).
pub(super) fn client_limits(
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
pub(super) fn when_impaired(
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
