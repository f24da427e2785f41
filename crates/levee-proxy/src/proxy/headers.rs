//! Header rewriting between client and upstream (RFC 9110 §7.6.1).

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

/// Headers that describe one connection, not the message: never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Remove hop-by-hop headers, including any the `Connection` header names.
/// `Transfer-Encoding` goes too: hyper frames the body itself on each side.
/// So does a `Content-Length` beside a `Transfer-Encoding`: the body was
/// framed by the transfer coding, and the length is not the body's (RFC 9112
/// §6.3; kept, it would cut the body short downstream).
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Fast path: most messages carry none, and one pass over a few headers is
    // cheaper than nine hashed removals (this runs twice per request).
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if headers.remove(header::TRANSFER_ENCODING).is_some() {
        headers.remove(header::CONTENT_LENGTH);
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == header::TRANSFER_ENCODING
}

/// Whether `value` can be a `Host` header: `host[:port]` with the characters
/// of a URI host (RFC 3986 reg-name, IPv4, or `[IPv6]`) and port, and not
/// empty. Hand-written rather than parsed as a URI authority: it runs on
/// every request and a byte scan is all it needs (a table lookup per byte:
/// ~10 instructions per byte as a chain of comparisons).
pub fn is_valid_host(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.iter().all(|&byte| HOST_BYTES[usize::from(byte)])
}

/// The bytes a `Host` value may hold: unreserved, sub-delims, `%`, `:`,
/// `[` and `]`.
static HOST_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let c = byte as u8;
        table[byte] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
                    | b':'
                    | b'['
                    | b']'
            );
        byte += 1;
    }
    table
};

/// The client address as a header value, computed once per connection.
pub fn client_ip_value(client: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&client.to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The forwarding fields levee sets: `x-forwarded-for` with the client
/// address after the first one the request has (if any), and
/// `x-forwarded-proto`. Each replaces the request's field of the same name.
/// Found with one pass over the names, not a hashed lookup (the common
/// case: none yet).
pub fn forwarded(
    headers: &HeaderMap,
    client_ip: &HeaderValue,
    proto: &'static str,
) -> SmallVec<[(HeaderName, HeaderValue); 2]> {
    let existing = headers
        .iter()
        .find(|(name, _)| *name == X_FORWARDED_FOR)
        .and_then(|(_, value)| value.to_str().ok())
        .filter(|existing| !existing.is_empty());
    let chained = match existing {
        Some(existing) => {
            let client = client_ip.to_str().unwrap_or("unknown");
            HeaderValue::from_str(&format!("{existing}, {client}")).ok()
        }
        None => Some(client_ip.clone()),
    };
    let mut fields = SmallVec::new();
    if let Some(value) = chained {
        fields.push((X_FORWARDED_FOR.clone(), value));
    }
    fields.push((X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto)));
    fields
}

/// Set the forwarding fields (see [`forwarded`]) in `headers`.
pub fn add_forwarded(headers: &mut HeaderMap, client_ip: &HeaderValue, proto: &'static str) {
    for (name, value) in forwarded(headers, client_ip, proto) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_standard_and_connection_named_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn a_content_length_beside_a_transfer_encoding_goes_with_it() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        remove_hop_by_hop(&mut headers);
        assert!(headers.is_empty(), "{headers:?}");
        let mut alone = HeaderMap::new();
        alone.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        remove_hop_by_hop(&mut alone);
        assert_eq!(alone[header::CONTENT_LENGTH], "3");
    }

    #[test]
    fn a_host_is_a_uri_host_and_port() {
        for good in [
            "example.com",
            "example.com:8080",
            "10.0.0.1:80",
            "[::1]:8080",
            "a_b.c",
        ] {
            assert!(is_valid_host(&HeaderValue::from_static(good)), "{good}");
        }
        for bad in ["", "a b", "a/b", "a?b", "a#b", "user@host"] {
            assert!(!is_valid_host(&HeaderValue::from_static(bad)), "{bad:?}");
        }
    }

    #[test]
    fn appends_to_an_existing_forwarded_for() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        let client = client_ip_value("127.0.0.1".parse().expect("ip"));
        add_forwarded(&mut headers, &client, "http");
        assert_eq!(headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
    }
}
