//! HTTP probe: `GET path` on a fresh connection; any 2xx passes.

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

use crate::{ProbeError, connect};

pub(crate) async fn probe(address: &str, path: &str) -> Result<(), ProbeError> {
    let stream = connect(address).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| ProbeError::Protocol(error.to_string()))?;
    let connection = tokio::spawn(connection);
    let request = Request::builder()
        .uri(path)
        .header(header::HOST, address)
        .header(header::USER_AGENT, "levee-probe")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|error| ProbeError::Protocol(error.to_string()))?;
    let result = sender.send_request(request).await;
    connection.abort();
    let response = result.map_err(|error| ProbeError::Protocol(error.to_string()))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(ProbeError::Status(response.status().as_u16()))
    }
}
