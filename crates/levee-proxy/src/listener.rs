//! Traffic listeners: bind, accept, serve HTTP/1.1 and HTTP/2 (prior
//! knowledge) on the same port, and drain gracefully on shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use crate::proxy::{ClientInfo, HttpProxy};
use crate::readiness::{Acceptor, ListenerGate};

/// A socket that could not be bound: names the address and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} ({what}): {source}")]
pub struct BindError {
    /// What the socket was for, e.g. `listener "web"` or `admin`.
    pub what: String,
    /// The address asked for.
    pub address: SocketAddr,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// Bind a listening TCP socket. SO_REUSEADDR lets a restarted levee bind at
/// once even while old connections sit in TIME_WAIT.
pub fn bind(what: &str, address: SocketAddr) -> Result<TcpListener, BindError> {
    let bind = || -> io::Result<TcpListener> {
        let socket = if address.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(address)?;
        socket.listen(1024)
    };
    bind().map_err(|source| BindError {
        what: what.to_owned(),
        address,
        source,
    })
}

/// Accept connections on `listener` and proxy their requests until
/// `shutdown` turns true; then stop accepting (closing the socket) and wait
/// for in-flight connections to finish. The caller bounds that wait.
pub async fn serve_http(
    mut acceptor: Acceptor,
    proxy: Arc<HttpProxy>,
    gate: ListenerGate,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    loop {
        tokio::select! {
            accepted = acceptor.accept() => {
                let (stream, client) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Usually EMFILE: back off briefly instead of spinning.
                        tracing::warn!(listener = %proxy.listener, %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Small writes must not wait for Nagle; failure only costs latency.
                let _ = stream.set_nodelay(true);
                proxy.metrics().record_connection();
                let proxy = Arc::clone(&proxy);
                let client_info = Arc::new(ClientInfo::new(client));
                let gate = gate.clone();
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let proxy = Arc::clone(&proxy);
                    let client_info = Arc::clone(&client_info);
                    // `when_impaired = reject-*`: answered here, before the proxy.
                    let rejected = gate.reject(request.method());
                    async move {
                        let response = match rejected {
                            Some(response) => response,
                            None => proxy.handle(request, &client_info).await,
                        };
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%client, %error, "client connection ended with an error");
                    }
                });
            }
            () = stop_requested(&mut shutdown) => break,
        }
    }
    drop(acceptor);
    tracing::info!(listener = %proxy.listener, connections = graceful.count(), "stopped accepting; draining");
    graceful.shutdown().await;
}

/// Resolves once shutdown is requested (or the gateway is gone).
pub(crate) async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it before returning.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}
