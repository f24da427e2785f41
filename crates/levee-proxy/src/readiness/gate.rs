//! What a traffic listener does while the node is impaired
//! (`when_impaired`): close its socket and reopen it on recovery, or answer
//! 503 to every request or to writes only.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::{Either, Full};
use levee_core::readiness::Readiness;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::SelfHealth;
use crate::config::WhenImpaired;
use crate::listener;
use crate::proxy::ProxyBody;

/// `Retry-After` on an impaired 503: about how soon a recovery is seen.
const RETRY_AFTER_SECONDS: &str = "5";
/// Pause between attempts to bind a socket again after recovery.
const REBIND_RETRY: Duration = Duration::from_secs(1);

/// One listener's view of the node's readiness and its `when_impaired`.
#[derive(Clone)]
pub struct ListenerGate {
    /// Listener name (logs).
    name: String,
    policy: WhenImpaired,
    state: watch::Receiver<Readiness>,
    health: Arc<SelfHealth>,
    rejections: Counter,
}

impl ListenerGate {
    /// The gate of listener `name`.
    pub fn new(name: &str, policy: WhenImpaired, health: &Arc<SelfHealth>) -> ListenerGate {
        ListenerGate {
            name: name.to_owned(),
            policy,
            state: health.subscribe(),
            health: Arc::clone(health),
            rejections: health.metrics.impaired_rejections(name),
        }
    }

    /// The 503 a request gets instead of being proxied, or `None` if it is
    /// served.
    pub fn reject(&self, method: &Method) -> Option<Response<ProxyBody>> {
        let rejects = match self.policy {
            WhenImpaired::Serve | WhenImpaired::Close => false,
            WhenImpaired::RejectAll => true,
            WhenImpaired::RejectWrites => {
                !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
            }
        };
        if !rejects || *self.state.borrow() != Readiness::Impaired {
            return None;
        }
        self.rejections.inc();
        Some(impaired_response(&self.health, self.policy).map(Either::Right))
    }

    async fn until_close(&mut self) {
        if self.policy != WhenImpaired::Close
            || self
                .state
                .wait_for(|s| *s == Readiness::Impaired)
                .await
                .is_err()
        {
            std::future::pending::<()>().await;
        }
    }

    async fn until_open(&mut self) {
        if self
            .state
            .wait_for(|s| *s != Readiness::Impaired)
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
    }
}

/// The 503 of an impaired node: which rule fired and the failing criteria.
pub fn impaired_response(health: &SelfHealth, policy: WhenImpaired) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "error": "node impaired",
        "rule": format!("when_impaired = {}", policy.as_str()),
        "failing": health.failing(),
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
    );
    response
}

/// A listening socket that follows its gate: with `when_impaired = close`
/// it is closed while the node is impaired (new connections are refused,
/// open ones finish) and bound again on recovery.
pub struct Acceptor {
    socket: Option<TcpListener>,
    /// The address actually bound, so a port 0 listener reopens on the same
    /// port.
    address: SocketAddr,
    gate: ListenerGate,
    open: Gauge,
}

impl Acceptor {
    /// Accept on `socket` under `gate`.
    pub fn new(socket: TcpListener, gate: ListenerGate, open: Gauge) -> io::Result<Acceptor> {
        Ok(Acceptor {
            address: socket.local_addr()?,
            socket: Some(socket),
            gate,
            open,
        })
    }

    /// The next connection. While closed, waits for recovery. Cancel-safe:
    /// the open or closed state lives in `self`.
    pub async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        loop {
            let Acceptor {
                socket,
                address,
                gate,
                open,
            } = self;
            match socket {
                Some(listening) => {
                    tokio::select! {
                        accepted = listening.accept() => return accepted,
                        () = gate.until_close() => {
                            *socket = None;
                            open.set(0);
                            tracing::error!(listener = %gate.name, %address, "node impaired: listening socket closed (when_impaired = close)");
                        }
                    }
                }
                None => {
                    gate.until_open().await;
                    match listener::bind(&format!("listener {:?}", gate.name), *address) {
                        Ok(listening) => {
                            *socket = Some(listening);
                            open.set(1);
                            tracing::info!(listener = %gate.name, %address, "node recovered: listening again");
                        }
                        Err(error) => {
                            tracing::error!(listener = %gate.name, %error, "cannot reopen listener; retrying");
                            tokio::time::sleep(REBIND_RETRY).await;
                        }
                    }
                }
            }
        }
    }
}
