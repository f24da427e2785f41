//! One HTTP/1.1 request on a fresh connection, its answer read to the end:
//! what the HTTP dependency probe and levee's HTTP health checks both do.
//!
//! The body is read, not just the status: a node that sends `200` with
//! `content-length: 1000000`, sixteen bytes and then a reset would pass a
//! status-only check forever while every real response breaks. The read is
//! bounded, though: after [`MAX_BODY`] bytes the answer counts as complete (a
//! big healthy body is fine, and a check must not download a video).

use bytes::{Bytes, BytesMut};
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::{ProbeError, connect};

/// How much of a body is read (and kept, for an expected-text match).
pub const MAX_BODY: usize = 64 * 1024;

/// A complete answer.
#[derive(Debug)]
pub struct Answer {
    /// The status of the response.
    pub status: StatusCode,
    /// The body up to [`MAX_BODY`] bytes: all of it, or its beginning when
    /// it is longer.
    pub body: Bytes,
}

/// Why no complete answer came back.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The connection could not be set up for HTTP.
    #[error("HTTP handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
    /// No response head: the connection broke, or what came back was not
    /// HTTP.
    #[error("no response: {0}")]
    NoResponse(#[source] hyper::Error),
    /// The head arrived but the body broke off before its end: a reset, or
    /// fewer bytes than its `content-length` before the connection closed.
    #[error("response body broke off after {read} bytes: {source}")]
    BodyInterrupted {
        /// Body bytes that did arrive.
        read: usize,
        /// What hyper saw.
        #[source]
        source: hyper::Error,
    },
}

impl ExchangeError {
    /// True when the endpoint answered something that is not HTTP (rather
    /// than the connection breaking).
    pub fn is_protocol(&self) -> bool {
        match self {
            ExchangeError::Handshake(error)
            | ExchangeError::NoResponse(error)
            | ExchangeError::BodyInterrupted { source: error, .. } => {
                error.is_parse() || error.is_parse_status()
            }
        }
    }
}

/// Send `request` on `stream` (a connection made for it alone; the request
/// should say `connection: close`) and read the answer, the body up to
/// [`MAX_BODY`] bytes. The caller bounds the whole exchange with its
/// timeout.
pub async fn exchange<S>(stream: S, request: Request<Empty<Bytes>>) -> Result<Answer, ExchangeError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(ExchangeError::Handshake)?;
    let connection = tokio::spawn(connection);
    let response = sender.send_request(request).await;
    answer(connection, response).await
}

/// [`exchange`] over HTTP/2 (prior knowledge, or agreed by ALPN): for
/// endpoints that speak only HTTP/2, such as gRPC servers.
pub async fn exchange_h2<S>(
    stream: S,
    request: Request<Empty<Bytes>>,
) -> Result<Answer, ExchangeError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(ExchangeError::Handshake)?;
    let connection = tokio::spawn(connection);
    let response = sender.send_request(request).await;
    answer(connection, response).await
}

/// Read the answer to an exchange, then close its connection: whatever of
/// the body is left is not wanted.
async fn answer(
    connection: tokio::task::JoinHandle<Result<(), hyper::Error>>,
    response: Result<http::Response<Incoming>, hyper::Error>,
) -> Result<Answer, ExchangeError> {
    let result = match response {
        Ok(response) => read_answer(response).await,
        Err(error) => Err(ExchangeError::NoResponse(error)),
    };
    connection.abort();
    result
}

/// The status and up to [`MAX_BODY`] bytes of the body.
async fn read_answer(response: http::Response<Incoming>) -> Result<Answer, ExchangeError> {
    let status = response.status();
    let mut body = response.into_body();
    let mut read = BytesMut::new();
    while read.len() < MAX_BODY {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = MAX_BODY - read.len();
                    read.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Err(source)) => {
                return Err(ExchangeError::BodyInterrupted {
                    read: read.len(),
                    source,
                });
            }
        }
    }
    Ok(Answer {
        status,
        body: read.freeze(),
    })
}

/// The HTTP dependency probe: `GET path` on a fresh connection; a 2xx whose
/// body arrives whole passes.
pub(crate) async fn probe(address: &str, path: &str) -> Result<(), ProbeError> {
    let stream = connect(address).await?;
    let request = Request::builder()
        .uri(path)
        .header(header::HOST, address)
        .header(header::USER_AGENT, "levee-probe")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|error| ProbeError::Protocol(error.to_string()))?;
    let answer = exchange(stream, request)
        .await
        .map_err(|error| match error {
            ExchangeError::BodyInterrupted { .. } if !error.is_protocol() => {
                ProbeError::BodyInterrupted(error.to_string())
            }
            error => ProbeError::Protocol(error.to_string()),
        })?;
    if answer.status.is_success() {
        Ok(())
    } else {
        Err(ProbeError::Status(answer.status.as_u16()))
    }
}
