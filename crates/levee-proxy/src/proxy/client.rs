//! Who is on the other end of a client connection.

use std::net::SocketAddr;

use http::header::HeaderValue;

use super::headers;
use super::switched::UpgradeSlot;

/// Who is on the other end of a client connection, computed once per
/// connection rather than per request.
#[derive(Debug)]
pub struct ClientInfo {
    /// Peer address.
    pub address: SocketAddr,
    /// Peer IP as a header value, for `x-forwarded-for`.
    pub ip_header: HeaderValue,
    /// `x-forwarded-proto`: `"https"` on a TLS listener, else `"http"`.
    pub proto: &'static str,
    /// Where a request that switched protocols (WebSocket) leaves its
    /// tunnel for the connection.
    pub upgrade: UpgradeSlot,
}

impl ClientInfo {
    /// Describe the peer at `address`, connected over TLS or not.
    pub fn new(address: SocketAddr, tls: bool) -> ClientInfo {
        ClientInfo {
            address,
            ip_header: headers::client_ip_value(address.ip()),
            proto: if tls { "https" } else { "http" },
            upgrade: UpgradeSlot::default(),
        }
    }
}

/// A copy for work done on the client's behalf (a cache fill), with a slot
/// of its own: only the connection's own requests switch protocols.
impl Clone for ClientInfo {
    fn clone(&self) -> ClientInfo {
        ClientInfo {
            address: self.address,
            ip_header: self.ip_header.clone(),
            proto: self.proto,
            upgrade: UpgradeSlot::default(),
        }
    }
}
