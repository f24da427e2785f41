//! Who is on the other end of a client connection.

use std::net::SocketAddr;

use http::header::HeaderValue;

use super::headers;

/// Who is on the other end of a client connection, computed once per
/// connection rather than per request.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    /// Peer address.
    pub address: SocketAddr,
    /// Peer IP as a header value, for `x-forwarded-for`.
    pub ip_header: HeaderValue,
}

impl ClientInfo {
    /// Describe the peer at `address`.
    pub fn new(address: SocketAddr) -> ClientInfo {
        ClientInfo {
            address,
            ip_header: headers::client_ip_value(address.ip()),
        }
    }
}
