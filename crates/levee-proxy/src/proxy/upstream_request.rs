//! The client's request as it goes upstream: origin-form target, HTTP/1.1,
//! `Host` checked (RFC 9112 §3.2), hop-by-hop headers gone. The forwarding
//! fields are the caller's to add ([`headers::forwarded`]).

use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Version};

use super::error::ProxyError;
use super::headers;

/// Turn the client's request into the request sent upstream: origin-form
/// URI, HTTP/1.1, `Host` kept (or taken from an HTTP/2 `:authority`),
/// hop-by-hop headers gone.
pub(super) fn upstream_request<B>(
    request: Request<B>,
    endpoint_host: &HeaderValue,
) -> Result<Request<B>, ProxyError> {
    let (mut parts, body) = request.into_parts();
    if parts.method == http::Method::CONNECT {
        return Err(ProxyError::BadRequest {
            reason: "CONNECT is not supported",
        });
    }
    // RFC 9112 §3.2: exactly one valid Host in HTTP/1.1; an absolute-form
    // target (or HTTP/2's :authority) replaces it (§3.2.2).
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest {
            reason: "more than one Host header",
        });
    }
    match (parts.uri.authority(), host) {
        (Some(authority), _) => {
            let authority =
                HeaderValue::from_str(authority.as_str()).map_err(|_| ProxyError::BadRequest {
                    reason: "the request target's authority is not a valid Host",
                })?;
            parts.headers.insert(header::HOST, authority);
        }
        (None, Some(host)) => {
            if !headers::is_valid_host(host) {
                return Err(ProxyError::BadRequest {
                    reason: "invalid Host header",
                });
            }
        }
        (None, None) if parts.version == Version::HTTP_11 => {
            return Err(ProxyError::BadRequest {
                reason: "missing Host header (required in HTTP/1.1)",
            });
        }
        // HTTP/1.0 needs none: the endpoint's own name is sent.
        (None, None) => {
            parts.headers.insert(header::HOST, endpoint_host.clone());
        }
    }
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        // Absolute-form (HTTP/2, or HTTP/1.1 proxy-style): keep path and query.
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(path_and_query);
    }
    parts.version = Version::HTTP_11;
    headers::remove_hop_by_hop(&mut parts.headers);
    Ok(Request::from_parts(parts, body))
}
