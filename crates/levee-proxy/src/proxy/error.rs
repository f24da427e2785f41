//! levee's own error responses: a status, a short JSON body saying which rule
//! fired, never internals.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use levee_core::FailureKind;
use serde::Serialize;

/// Why levee answered a request itself instead of forwarding a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The cluster has no endpoint the balancer may pick.
    NoEndpoint {
        /// Cluster name.
        cluster: String,
    },
    /// The attempt failed before a response head arrived.
    Upstream {
        /// Cluster name.
        cluster: String,
        /// Endpoint tried.
        endpoint: String,
        /// What went wrong.
        kind: FailureKind,
    },
    /// The client's request could not be turned into an upstream request.
    BadRequest {
        /// What is wrong with it.
        reason: &'static str,
    },
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
}

impl ProxyError {
    /// Status code levee answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoEndpoint { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Upstream { kind, .. } => match kind {
                FailureKind::Timeout | FailureKind::ConnectTimeout => StatusCode::GATEWAY_TIMEOUT,
                FailureKind::ClientBody => StatusCode::BAD_REQUEST,
                _ => StatusCode::BAD_GATEWAY,
            },
            ProxyError::BadRequest { .. } => StatusCode::BAD_REQUEST,
        }
    }

    fn message(&self) -> &'static str {
        match self {
            ProxyError::NoEndpoint { .. } => "no endpoint available",
            ProxyError::Upstream { kind, .. } => match kind {
                FailureKind::ConnectRefused => "upstream refused the connection",
                FailureKind::ConnectTimeout => "upstream connect timed out",
                FailureKind::ConnectFailed => "upstream connect failed",
                FailureKind::ResetBeforeResponse => {
                    "upstream closed the connection before responding"
                }
                FailureKind::Timeout => "upstream did not respond within the request timeout",
                FailureKind::Protocol => "upstream sent an invalid HTTP response",
                FailureKind::BodyInterrupted => "upstream response body was interrupted",
                FailureKind::ClientBody => "request body could not be read from the client",
                FailureKind::Other => "upstream request failed",
            },
            ProxyError::BadRequest { reason } => reason,
        }
    }

    /// The JSON response for the client.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = match &self {
            ProxyError::NoEndpoint { cluster } => ErrorBody {
                error: self.message(),
                cluster: Some(cluster),
                endpoint: None,
                kind: None,
            },
            ProxyError::Upstream {
                cluster,
                endpoint,
                kind,
            } => ErrorBody {
                error: self.message(),
                cluster: Some(cluster),
                endpoint: Some(endpoint),
                kind: Some(kind.as_str()),
            },
            ProxyError::BadRequest { .. } => ErrorBody {
                error: self.message(),
                cluster: None,
                endpoint: None,
                kind: None,
            },
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = Response::new(Full::new(Bytes::from(json)));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_504_and_other_failures_502() {
        let upstream = |kind| ProxyError::Upstream {
            cluster: "app".into(),
            endpoint: "127.0.0.1:1".into(),
            kind,
        };
        assert_eq!(upstream(FailureKind::Timeout).status(), 504);
        assert_eq!(upstream(FailureKind::ConnectRefused).status(), 502);
        assert_eq!(
            ProxyError::NoEndpoint {
                cluster: "app".into()
            }
            .status(),
            502
        );
    }
}
