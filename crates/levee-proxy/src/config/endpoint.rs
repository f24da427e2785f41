//! The address of one upstream endpoint: `"10.0.0.1:8000"`, `"[::1]:8000"`
//! or `"backend.internal:8000"`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use http::uri::Authority;

/// Where a cluster sends requests: an IP address or DNS name, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointAddress {
    /// IP address or DNS name. IPv6 addresses are kept without brackets
    /// (`::1`), so `(host, port)` can be handed to `lookup_host` as is.
    pub host: String,
    /// TCP port, never 0 when parsed from config.
    pub port: u16,
}

/// Text that is not a `host:port` endpoint address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad endpoint address {text:?}: {reason}; expected host:port, \
     e.g. \"10.0.0.1:8000\" or \"backend.internal:8000\""
)]
pub struct BadEndpointAddress {
    /// The text as written.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl EndpointAddress {
    /// An address from its parts (no validation: for code that builds a
    /// [`Config`](super::Config) without TOML).
    pub fn new(host: impl Into<String>, port: u16) -> EndpointAddress {
        EndpointAddress {
            host: host.into(),
            port,
        }
    }
}

impl From<SocketAddr> for EndpointAddress {
    fn from(address: SocketAddr) -> EndpointAddress {
        EndpointAddress::new(address.ip().to_string(), address.port())
    }
}

/// `host:port`, with brackets around an IPv6 host (`[::1]:8000`), so the
/// result is a valid URI authority and `Host` header.
impl fmt::Display for EndpointAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for EndpointAddress {
    type Err = BadEndpointAddress;

    /// `http::uri::Authority` does the URI grammar; what it allows but an
    /// endpoint must not have (user info, no port, port 0, `+80`, an empty
    /// host) is rejected here.
    fn from_str(text: &str) -> Result<EndpointAddress, BadEndpointAddress> {
        let bad = |reason| BadEndpointAddress {
            text: text.to_owned(),
            reason,
        };
        if text.contains("://") {
            return Err(bad("write host:port without a scheme"));
        }
        if text.contains('@') {
            return Err(bad("user info (user@) is not allowed"));
        }
        let authority = Authority::from_str(text).map_err(|_| bad("not a host:port"))?;
        let host = authority.host();
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        // Without user info the authority is exactly `host[:port]`.
        let port = authority.as_str()[host.len()..].trim_start_matches(':');
        if port.is_empty() {
            return Err(bad("missing port"));
        }
        let port = port
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| port.parse::<u16>().ok())
            .flatten()
            .filter(|&port| port != 0)
            .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?;
        let host = if let Some(ipv6) = host.strip_prefix('[') {
            let ipv6 = ipv6.trim_end_matches(']');
            ipv6.parse::<Ipv6Addr>()
                .map_err(|_| bad("bad IPv6 address"))?
                .to_string()
        } else if host.parse::<IpAddr>().is_ok()
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            host.to_owned()
        } else {
            return Err(bad("bad host name"));
        };
        Ok(EndpointAddress { host, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(String, u16), String> {
        text.parse::<EndpointAddress>()
            .map(|address| (address.host, address.port))
            .map_err(|error| error.reason.to_owned())
    }

    #[test]
    fn parses_ip_and_dns_endpoints() {
        assert_eq!(parse("10.0.0.1:8000"), Ok(("10.0.0.1".into(), 8000)));
        assert_eq!(parse("[::1]:8000"), Ok(("::1".into(), 8000)));
        assert_eq!(
            parse("backend.internal:8000"),
            Ok(("backend.internal".into(), 8000))
        );
    }

    #[test]
    fn displays_as_a_valid_authority() {
        for text in ["10.0.0.1:8000", "[::1]:8000", "backend.internal:8000"] {
            let address: EndpointAddress = text.parse().unwrap();
            assert_eq!(address.to_string(), text);
            assert!(address.to_string().parse::<Authority>().is_ok());
        }
        let from_socket = EndpointAddress::from(SocketAddr::from(([127, 0, 0, 1], 80)));
        assert_eq!(from_socket.to_string(), "127.0.0.1:80");
    }

    #[test]
    fn rejects_what_is_not_host_and_port() {
        assert_eq!(parse("backend"), Err("missing port".into()));
        assert_eq!(parse("backend:"), Err("missing port".into()));
        assert_eq!(parse("[::1]"), Err("missing port".into()));
        let bad_port = Err("the port must be a number from 1 to 65535".to_owned());
        assert_eq!(parse("backend:0"), bad_port);
        assert_eq!(parse("backend:99999"), bad_port);
        assert_eq!(parse("backend:+80"), bad_port);
        assert_eq!(parse(":80"), Err("missing host".into()));
        assert_eq!(
            parse("user@backend:80"),
            Err("user info (user@) is not allowed".into())
        );
        assert_eq!(
            parse("http://backend:80"),
            Err("write host:port without a scheme".into())
        );
        assert_eq!(parse("back end:80"), Err("not a host:port".into()));
        assert_eq!(parse("[::zz]:80"), Err("bad IPv6 address".into()));
        assert_eq!(parse("back!end:80"), Err("bad host name".into()));
    }

    #[test]
    fn the_message_shows_the_text_the_reason_and_an_example() {
        let error = "backend".parse::<EndpointAddress>().unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"bad endpoint address "backend": missing port; expected host:port, e.g. "10.0.0.1:8000" or "backend.internal:8000""#
        );
    }
}
