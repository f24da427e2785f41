//! A control port for a backend running as its own process, so that a
//! script (a soak or a demo) can inject and heal faults while it runs:
//!
//! - `GET /mode`: the current mode, as text (`hung`, `slow:1s`, ...);
//! - `PUT /mode` (or `POST`) with a mode as the body: switches to it and
//!   answers the new mode once it is in effect; `400` for a mode that does
//!   not parse, `500` if the port cannot be bound again after `crashed`;
//! - `GET /stats`: `{"mode": ..., "requests": N, "connections": N}`.
//!
//! It has its own listener, so it keeps answering while the backend is
//! crashed (its traffic port closed). Meant for 127.0.0.1 only: anyone who
//! reaches it can break the backend.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{Backend, Mode};

/// Largest `PUT /mode` body read: a mode is a few bytes.
const MAX_BODY: usize = 256;

/// A running control port; it stops when dropped.
pub struct ControlPort {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ControlPort {
    /// Binds `addr` (port 0 picks a free port) and serves the control API of
    /// `backend` on it.
    pub async fn start(backend: Backend, addr: SocketAddr) -> io::Result<ControlPort> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(serve(backend, listener));
        Ok(ControlPort { addr, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ControlPort {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(backend: Backend, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "control port: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let backend = backend.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let backend = backend.clone();
                async move { Ok::<_, Infallible>(handle(&backend, request).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(backend: &Backend, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    match (request.method().clone(), path.as_str()) {
        (Method::GET, "/mode") => text(StatusCode::OK, format!("{}\n", backend.mode())),
        (Method::PUT | Method::POST, "/mode") => {
            let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
                Ok(body) => body.to_bytes(),
                Err(_) => return text(StatusCode::BAD_REQUEST, "mode too long\n".into()),
            };
            let mode = match std::str::from_utf8(&body)
                .map_err(|_| "the mode is not UTF-8".to_owned())
                .and_then(|text| text.parse::<Mode>().map_err(|e| e.to_string()))
            {
                Ok(mode) => mode,
                Err(message) => return text(StatusCode::BAD_REQUEST, format!("{message}\n")),
            };
            match backend.set_mode(mode).await {
                Ok(()) => text(StatusCode::OK, format!("{mode}\n")),
                Err(error) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot enter {mode}: {error}\n"),
                ),
            }
        }
        (Method::GET, "/stats") => {
            let json = serde_json::json!({
                "mode": backend.mode().to_string(),
                "requests": backend.requests_received(),
                "connections": backend.connections_accepted(),
            });
            text(StatusCode::OK, format!("{json}\n"))
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "try GET /mode, PUT /mode, GET /stats\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
