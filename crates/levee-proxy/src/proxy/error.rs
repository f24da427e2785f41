//! levee's own error responses: a status, a short JSON body saying which rule
//! fired, never internals.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use levee_core::FailureKind;
use levee_core::admission::Rejected;
use levee_core::breaker::Rejected as BreakerRejected;
use levee_core::retry::NotRetried;
use serde::Serialize;

use crate::upstream::ClientBodyFailed;

/// How many attempts served (or failed) a request: on every response.
pub static X_LEVEE_ATTEMPTS: HeaderName = HeaderName::from_static("x-levee-attempts");

/// `x-levee-attempts` for `attempts`: a static value for the usual few (no
/// allocation, unlike formatting a number into a new header value).
pub(crate) fn attempts_value(attempts: u32) -> HeaderValue {
    const SMALL: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match SMALL.get(attempts as usize) {
        Some(digits) => HeaderValue::from_static(digits),
        None => HeaderValue::from(attempts),
    }
}

/// Why levee answered a request itself instead of forwarding a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The cluster has no endpoint the balancer may pick.
    NoEndpoint {
        /// Cluster name.
        cluster: String,
        /// Why, when the cluster can say (every endpoint is known to take
        /// no connections: "no-such-host.invalid:80 does not resolve").
        reason: Option<String>,
    },
    /// The attempt failed before a response head arrived.
    Upstream {
        /// Cluster name.
        cluster: String,
        /// Endpoint tried.
        endpoint: String,
        /// What went wrong (on the last attempt).
        kind: FailureKind,
        /// Attempts made, the last included.
        attempts: u32,
        /// Why the last failure was not tried again.
        not_retried: Option<NotRetried>,
        /// More on the last failure, when there is more (a TLS handshake's
        /// reason).
        detail: Option<Box<str>>,
    },
    /// No attempt produced a response head before the request's deadline
    /// (`request_timeout`).
    Deadline {
        /// Cluster name.
        cluster: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Admission control shed the request: the cluster is at its limit.
    Overloaded {
        /// Cluster name.
        cluster: String,
        /// Why it was not admitted.
        rejected: Rejected,
    },
    /// The cluster's rate limit: this client (or header value) is over its
    /// rate.
    RateLimited {
        /// Cluster name.
        cluster: String,
        /// The verdict, for `Retry-After` and `RateLimit-*`.
        decision: levee_core::ratelimit::RateDecision,
    },
    /// Client-side throttling rejected the request: the upstream has been
    /// rejecting requests (503, 429).
    Throttled {
        /// Cluster name.
        cluster: String,
        /// With which probability requests are rejected now.
        throttled: super::throttle::Throttled,
    },
    /// The cluster's circuit breaker is open: levee fails fast.
    BreakerOpen {
        /// The breaker (its cluster's name).
        breaker: String,
        /// Its state and why it opened.
        rejected: BreakerRejected,
    },
    /// A cache fill this request waited for gave it nothing to answer with.
    CacheFill {
        /// Cluster name.
        cluster: String,
        /// What happened, in words.
        reason: String,
        /// True when it waited `fill_wait` in vain (504), false otherwise (502).
        timed_out: bool,
    },
    /// The client's request body failed: it stopped arriving (408) or
    /// broke off (400). The client's doing: never counted against an
    /// endpoint.
    ClientBody {
        /// Cluster name.
        cluster: String,
        /// How it failed.
        failure: ClientBodyFailed,
        /// The cluster's `body_idle_timeout`, for the reason given.
        idle: Duration,
        /// Attempts made (0: it failed before any).
        attempts: u32,
    },
    /// The client's request could not be turned into an upstream request.
    BadRequest {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No route of the listener takes the request, and the listener has no
    /// default cluster.
    NoRoute {
        /// Listener name.
        listener: String,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<u32>,
    /// Which retry rule stopped the request, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry: Option<String>,
    /// Details of levee's own decision (admission control, why no endpoint
    /// could be picked).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
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
            ProxyError::Deadline { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Overloaded { .. }
            | ProxyError::BreakerOpen { .. }
            | ProxyError::Throttled { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::CacheFill {
                timed_out: true, ..
            } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::CacheFill { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::ClientBody { failure, .. } => match failure {
                ClientBodyFailed::Stalled => StatusCode::REQUEST_TIMEOUT,
                ClientBodyFailed::Broken => StatusCode::BAD_REQUEST,
            },
            ProxyError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
        }
    }

    /// Attempts made before levee answered itself (0: none was made).
    pub fn attempts(&self) -> u32 {
        match self {
            ProxyError::Upstream { attempts, .. }
            | ProxyError::Deadline { attempts, .. }
            | ProxyError::ClientBody { attempts, .. } => *attempts,
            ProxyError::NoEndpoint { .. }
            | ProxyError::Overloaded { .. }
            | ProxyError::Throttled { .. }
            | ProxyError::RateLimited { .. }
            | ProxyError::CacheFill { .. }
            | ProxyError::BreakerOpen { .. }
            | ProxyError::BadRequest { .. }
            | ProxyError::NoRoute { .. } => 0,
        }
    }

    fn message(&self) -> &'static str {
        match self {
            ProxyError::Overloaded { .. } => "overloaded: request shed by admission control",
            ProxyError::Throttled { .. } => {
                "throttled: the upstream is rejecting requests, so levee rejects some first"
            }
            ProxyError::RateLimited { .. } => "rate limited: too many requests",
            ProxyError::CacheFill { .. } => "the cache fill this request waited for failed",
            ProxyError::BreakerOpen { .. } => "circuit breaker open: failing fast",
            ProxyError::NoEndpoint { .. } => "no endpoint available",
            ProxyError::Upstream { kind, .. } => match kind {
                FailureKind::ConnectRefused => "upstream refused the connection",
                FailureKind::ConnectTimeout => "upstream connect timed out",
                FailureKind::ConnectFailed => "upstream connect failed",
                FailureKind::Unresolved => "upstream name does not resolve",
                FailureKind::TlsHandshake => "upstream TLS handshake failed",
                FailureKind::Refused => "upstream refused the request unprocessed (HTTP/2)",
                FailureKind::ClosedIdle => {
                    "upstream closed the connection before receiving the request"
                }
                FailureKind::ResetBeforeResponse => {
                    "upstream closed the connection before responding"
                }
                FailureKind::Timeout => "upstream did not respond within the request timeout",
                FailureKind::Protocol => "upstream sent an invalid HTTP response",
                FailureKind::BodyInterrupted => "upstream response body was interrupted",
                FailureKind::ClientBody => "request body could not be read from the client",
                FailureKind::Other => "upstream request failed",
            },
            ProxyError::Deadline { .. } => {
                "no upstream response within the request timeout (request_timeout)"
            }
            ProxyError::ClientBody { failure, .. } => match failure {
                ClientBodyFailed::Stalled => {
                    "request body stopped arriving from the client (body_idle_timeout)"
                }
                ClientBodyFailed::Broken => "request body could not be read from the client",
            },
            ProxyError::BadRequest { reason } => reason,
            ProxyError::NoRoute { .. } => "no route for this request",
        }
    }

    /// Which of levee's rules answered, as access logs name it:
    /// `rate-limited`, `shed`, `throttled`, `breaker-open`, `no-endpoint`, `upstream`, `deadline`, `cache-fill`,
    /// `client-body`, `bad-request`, `no-route`.
    pub fn rule(&self) -> &'static str {
        match self {
            ProxyError::NoEndpoint { .. } => "no-endpoint",
            ProxyError::Upstream { .. } => "upstream",
            ProxyError::Deadline { .. } => "deadline",
            ProxyError::Overloaded { .. } => "shed",
            ProxyError::Throttled { .. } => "throttled",
            ProxyError::RateLimited { .. } => "rate-limited",
            ProxyError::BreakerOpen { .. } => "breaker-open",
            ProxyError::CacheFill { .. } => "cache-fill",
            ProxyError::ClientBody { .. } => "client-body",
            ProxyError::BadRequest { .. } => "bad-request",
            ProxyError::NoRoute { .. } => "no-route",
        }
    }

    /// The rule's own words for an access log: what was rejected and why.
    pub fn log_reason(&self) -> String {
        match self {
            ProxyError::Overloaded { rejected, .. } => rejected.to_string(),
            ProxyError::Throttled { throttled, .. } => throttled.to_string(),
            ProxyError::BreakerOpen { breaker, rejected } => format!("{breaker}: {rejected}"),
            ProxyError::Upstream { endpoint, kind, .. } => format!("{endpoint}: {kind}"),
            ProxyError::CacheFill { reason, .. } => reason.clone(),
            _ => self.message().to_owned(),
        }
    }

    /// The JSON response for the client.
    /// levee's answer to a gRPC call: the same reason as a gRPC status
    /// (`grpc-status`, `grpc-message`) in an HTTP 200, which gRPC clients
    /// read; the JSON body of [`ProxyError::into_response`] they cannot.
    pub fn into_grpc_response(self) -> Response<Full<Bytes>> {
        let message = match &self {
            ProxyError::Upstream { kind, .. } => format!("levee: {} ({kind})", self.message()),
            _ => format!("levee: {}", self.message()),
        };
        super::grpc::error_response(self.status(), &message)
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = match &self {
            ProxyError::NoEndpoint { cluster, reason } => ErrorBody {
                error: self.message(),
                cluster: Some(cluster),
                endpoint: None,
                kind: None,
                attempts: None,
                retry: None,
                reason: reason.clone(),
            },
            ProxyError::Upstream {
                cluster,
                endpoint,
                kind,
                attempts,
                not_retried,
                detail,
            } => ErrorBody {
                error: self.message(),
                cluster: Some(cluster),
                endpoint: Some(endpoint),
                kind: Some(kind.as_str()),
                attempts: Some(*attempts),
                retry: not_retried.map(|reason| reason.to_string()),
                reason: detail.as_deref().map(str::to_owned),
            },
            ProxyError::Overloaded { cluster, rejected } => ErrorBody {
                error: self.message(),
                cluster: Some(cluster),
                endpoint: None,
                kind: Some(rejected.reason()),
                attempts: None,
                retry: None,
                reason: Some(rejected.to_string()),
            },
            ProxyError::RateLimited { cluster, decision } => ErrorBody {
                error: self.message(),
                cluster: Some(cluster),
                endpoint: None,
                kind: Some("rate-limited"),
                attempts: None,
                retry: None,
                reason: Some(format!(
                    "{} requests at once, then the sustained rate; try again in {} ms",
                    decision.limit,
                    decision.retry_after.unwrap_or_default().as_millis()
                )),
            },
            ProxyError::Throttled { cluster, throttled } => ErrorBody {
                error: self.message(),
                cluster: Some(cluster),
                endpoint: None,
                kind: Some("throttled"),
                attempts: None,
                retry: None,
                reason: Some(throttled.to_string()),
            },
            ProxyError::BreakerOpen { breaker, rejected } => ErrorBody {
                error: self.message(),
                cluster: Some(breaker),
                endpoint: None,
                kind: Some(rejected.state.as_str()),
                attempts: None,
                retry: None,
                reason: Some(rejected.to_string()),
            },
            ProxyError::CacheFill {
                cluster, reason, ..
            } => ErrorBody {
                error: self.message(),
                cluster: Some(cluster),
                endpoint: None,
                kind: None,
                attempts: None,
                retry: None,
                reason: Some(reason.clone()),
            },
            ProxyError::Deadline { cluster, attempts } => ErrorBody {
                error: self.message(),
                cluster: Some(cluster),
                endpoint: None,
                kind: Some(FailureKind::Timeout.as_str()),
                attempts: Some(*attempts),
                retry: None,
                reason: None,
            },
            ProxyError::ClientBody {
                cluster,
                failure,
                idle,
                attempts,
            } => ErrorBody {
                error: self.message(),
                cluster: Some(cluster),
                endpoint: None,
                kind: Some(FailureKind::ClientBody.as_str()),
                attempts: (*attempts > 0).then_some(*attempts),
                retry: None,
                reason: Some(failure.reason(*idle)),
            },
            ProxyError::BadRequest { .. } => ErrorBody {
                error: self.message(),
                cluster: None,
                endpoint: None,
                kind: None,
                attempts: None,
                retry: None,
                reason: None,
            },
            ProxyError::NoRoute { listener } => ErrorBody {
                error: self.message(),
                cluster: None,
                endpoint: None,
                kind: None,
                attempts: None,
                retry: None,
                reason: Some(format!(
                    "no route of listener {listener:?} matches its host, path, method and headers, and the listener has no default cluster"
                )),
            },
        };
        let attempts = self.attempts();
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = Response::new(Full::new(Bytes::from(json)));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let ProxyError::RateLimited { decision, .. } = &self {
            let headers = response.headers_mut();
            super::rate_limit::write_headers(headers, decision);
            let wait = super::rate_limit::whole_seconds(decision.retry_after.unwrap_or_default());
            headers.insert(header::RETRY_AFTER, HeaderValue::from(wait.max(1)));
        }
        if let ProxyError::Overloaded { rejected, .. } = &self {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(rejected.retry_after().as_secs().max(1)),
            );
        }
        if let ProxyError::BreakerOpen { rejected, .. } = &self
            && let Some(retry_after) = rejected.retry_after
        {
            // Whole seconds, rounded up: never tell a client to come back early.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        if let ProxyError::ClientBody {
            failure: ClientBodyFailed::Stalled,
            ..
        } = &self
        {
            // The rest of the body may still come: this connection cannot
            // carry another request (RFC 9110, 408).
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if attempts > 0 {
            response
                .headers_mut()
                .insert(X_LEVEE_ATTEMPTS.clone(), attempts_value(attempts));
        }
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
            attempts: 1,
            not_retried: None,
            detail: None,
        };
        assert_eq!(upstream(FailureKind::Timeout).status(), 504);
        assert_eq!(upstream(FailureKind::ConnectRefused).status(), 502);
        assert_eq!(
            ProxyError::NoEndpoint {
                cluster: "app".into(),
                reason: None,
            }
            .status(),
            502
        );
        assert_eq!(upstream(FailureKind::Unresolved).status(), 502);
    }
}

#[cfg(test)]
mod body_tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_stalled_client_body_is_408_and_says_why() {
        let error = ProxyError::ClientBody {
            cluster: "app".into(),
            failure: ClientBodyFailed::Stalled,
            idle: Duration::from_secs(30),
            attempts: 1,
        };
        let response = error.into_response();
        assert_eq!(response.status(), 408);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["kind"], "client-body");
        assert_eq!(
            json["reason"],
            "no byte of the request body arrived for 30s (body_idle_timeout)"
        );
    }

    #[test]
    fn a_broken_client_body_is_400() {
        let error = ProxyError::ClientBody {
            cluster: "app".into(),
            failure: ClientBodyFailed::Broken,
            idle: Duration::from_secs(30),
            attempts: 0,
        };
        assert_eq!(error.status(), 400);
        assert_eq!(error.attempts(), 0);
    }

    #[tokio::test]
    async fn says_why_it_was_not_retried_and_how_often_it_was_tried() {
        let error = ProxyError::Upstream {
            cluster: "app".into(),
            endpoint: "127.0.0.1:1".into(),
            kind: FailureKind::ResetBeforeResponse,
            attempts: 1,
            not_retried: Some(NotRetried::NotIdempotent),
            detail: None,
        };
        let response = error.into_response();
        assert_eq!(response.status(), 502);
        assert_eq!(response.headers()[&X_LEVEE_ATTEMPTS], "1");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json["retry"],
            "not retried: request was sent and is not idempotent"
        );
        assert_eq!(json["attempts"], 1);
        assert_eq!(json["kind"], "reset-before-response");
    }
}
