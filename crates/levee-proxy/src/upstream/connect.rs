//! Opening a TCP connection to an endpoint, from the cluster's
//! `source_address` when it sets one (a host with several addresses, where
//! the endpoints allow only one of them, or a fleet of instances on one
//! host each with its own).

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

/// Connect to `target`, bound to `source` (any port) when given.
pub async fn connect_from(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(target).await;
    };
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(target).await
}
