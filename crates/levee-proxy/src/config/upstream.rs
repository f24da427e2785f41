//! How a cluster speaks HTTP to its endpoints: `upstream_protocol` and
//! `max_concurrent_streams` of a `[[cluster]]`.

use std::fmt;

use toml::Spanned;

use super::report::Report;

/// The HTTP version levee speaks to a cluster's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UpstreamProtocol {
    /// HTTP/1.1, one request per connection at a time (pooled).
    #[default]
    Http1,
    /// HTTP/2 over TLS (ALPN `h2`): requests multiplexed on few
    /// connections.
    H2,
    /// HTTP/2 in cleartext, by prior knowledge (gRPC services often).
    H2c,
    /// Over TLS, what ALPN agrees on per connection (`h2` or
    /// `http/1.1`).
    Auto,
}

impl UpstreamProtocol {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2 => "h2",
            UpstreamProtocol::H2c => "h2c",
            UpstreamProtocol::Auto => "auto",
        }
    }

    /// The ALPN protocols offered over TLS, most preferred first.
    pub fn alpn(self) -> &'static [&'static [u8]] {
        match self {
            UpstreamProtocol::Http1 | UpstreamProtocol::H2c => &[b"http/1.1"],
            UpstreamProtocol::H2 => &[b"h2"],
            UpstreamProtocol::Auto => &[b"h2", b"http/1.1"],
        }
    }
}

impl fmt::Display for UpstreamProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Default `max_concurrent_streams`.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: usize = 100;

/// A cluster's `upstream_protocol` (which must agree with whether it has
/// `tls`) and `max_concurrent_streams`. `None` if bad (reported).
pub(super) fn upstream_protocol(
    written: Option<&Spanned<String>>,
    max_concurrent_streams: Option<&Spanned<i64>>,
    tls: bool,
    report: &mut Report<'_>,
) -> Option<(UpstreamProtocol, usize)> {
    let protocol = match written {
        None => Some(UpstreamProtocol::default()),
        Some(text) => parse(text, tls, report),
    };
    let streams = match max_concurrent_streams {
        None => Some(DEFAULT_MAX_CONCURRENT_STREAMS),
        Some(value) => match usize::try_from(*value.get_ref()) {
            Ok(streams) if (1..=10_000).contains(&streams) => Some(streams),
            _ => {
                let message = format!(
                    "max_concurrent_streams: must be between 1 and 10000, got {}",
                    value.get_ref()
                );
                report.error(value.span(), message);
                None
            }
        },
    };
    Some((protocol?, streams?))
}

fn parse(text: &Spanned<String>, tls: bool, report: &mut Report<'_>) -> Option<UpstreamProtocol> {
    let protocol = match text.get_ref().as_str() {
        "http1" => UpstreamProtocol::Http1,
        "h2" => UpstreamProtocol::H2,
        "h2c" => UpstreamProtocol::H2c,
        "auto" => UpstreamProtocol::Auto,
        other => {
            let message = format!(
                "upstream_protocol: unknown protocol {other:?}: expected \"http1\", \"h2\", \"h2c\" or \"auto\""
            );
            report.error(text.span(), message);
            return None;
        }
    };
    let problem = match (protocol, tls) {
        (UpstreamProtocol::H2 | UpstreamProtocol::Auto, false) => Some(format!(
            "upstream_protocol: {:?} is negotiated over TLS: add a tls table to the cluster, or use \"h2c\" for cleartext HTTP/2",
            protocol.as_str()
        )),
        (UpstreamProtocol::H2c, true) => Some(
            "upstream_protocol: \"h2c\" is cleartext HTTP/2, but the cluster speaks TLS: use \"h2\"".to_owned(),
        ),
        _ => None,
    };
    match problem {
        Some(message) => {
            report.error(text.span(), message);
            None
        }
        None => Some(protocol),
    }
}
