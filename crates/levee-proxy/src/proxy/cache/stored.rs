//! A response as the cache keeps it: head and whole body, shared by every
//! request it answers.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;
use http_cache_semantics::CachePolicy;
use levee_core::cache::CacheStatus;

/// Which of levee's caching rules answered: `hit`, `miss`, `revalidated`
/// or `stale`.
pub static X_LEVEE_CACHE: HeaderName = HeaderName::from_static("x-levee-cache");

/// A stored response.
#[derive(Debug)]
pub struct StoredResponse {
    /// Status as the upstream sent it.
    pub status: StatusCode,
    /// Headers as forwarded to the client (hop-by-hop ones removed).
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// What the response said about caching, kept for `Vary` matching.
    pub policy: CachePolicy,
    /// Its `Age` when it was stored.
    pub age: u64,
    /// When it was stored.
    pub stored_at: tokio::time::Instant,
    /// Made from a stored response the upstream confirmed with a `304`.
    pub revalidated: bool,
}

impl StoredResponse {
    /// What the cache counts against `max_size`: body and headers.
    pub fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        (self.body.len() + headers + 64) as u64
    }

    /// How a response served from this value is marked: a load that
    /// ended in the upstream's `304` is `revalidated`.
    pub fn served_as(&self, status: CacheStatus) -> &'static str {
        if status == CacheStatus::Miss && self.revalidated {
            "revalidated"
        } else {
            status.as_str()
        }
    }

    /// Whether it carries a validator (`ETag` or `Last-Modified`), so the
    /// upstream can be asked whether it still holds.
    pub fn has_validator(&self) -> bool {
        self.headers.contains_key(http::header::ETAG)
            || self.headers.contains_key(http::header::LAST_MODIFIED)
    }

    /// The conditions asking the upstream whether this response still holds
    /// (RFC 9111 §4.3.1): `If-None-Match` with its `ETag`, and
    /// `If-Modified-Since` with its `Last-Modified`.
    pub fn conditions(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
        [
            (http::header::ETAG, http::header::IF_NONE_MATCH),
            (http::header::LAST_MODIFIED, http::header::IF_MODIFIED_SINCE),
        ]
        .into_iter()
        .filter_map(|(validator, condition)| {
            Some((condition, self.headers.get(validator)?.clone()))
        })
    }

    /// The stored headers updated from a `304` that confirmed them (RFC 9111
    /// §3.2): each field the `304` carries replaces the stored one, except
    /// `Content-Length`, which describes the stored body.
    pub fn headers_updated_by(&self, not_modified: &HeaderMap) -> HeaderMap {
        let mut headers = self.headers.clone();
        for name in not_modified.keys() {
            if name == http::header::CONTENT_LENGTH {
                continue;
            }
            headers.remove(name);
            for value in not_modified.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        headers
    }

    /// Whether a client that sent `request` (its conditional headers)
    /// already has this response: its `If-None-Match` names the stored
    /// `ETag` (weak comparison, RFC 9110 §13.1.2) or is `*`, or, without
    /// one, its `If-Modified-Since` is the stored `Last-Modified` exactly
    /// (as nginx's default `if_modified_since exact`).
    pub fn not_modified_for(&self, request: &HeaderMap) -> bool {
        if !self.status.is_success() {
            return false;
        }
        if let Some(wanted) = request.get(http::header::IF_NONE_MATCH) {
            let Some(etag) = self
                .headers
                .get(http::header::ETAG)
                .and_then(|e| e.to_str().ok())
            else {
                return false;
            };
            let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
            return wanted.to_str().is_ok_and(|wanted| {
                wanted.trim() == "*" || wanted.split(',').any(|tag| opaque(tag) == opaque(etag))
            });
        }
        match (
            request.get(http::header::IF_MODIFIED_SINCE),
            self.headers.get(http::header::LAST_MODIFIED),
        ) {
            (Some(since), Some(modified)) => since == modified,
            _ => false,
        }
    }

    /// `304 Not Modified` for a client that has this response: its headers
    /// (RFC 9110 §15.4.5), no body.
    pub fn to_not_modified(&self, served_as: &'static str) -> Response<Full<Bytes>> {
        let mut response = self.to_response(&Method::HEAD, served_as);
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response.headers_mut().remove(http::header::CONTENT_LENGTH);
        response
    }

    /// A response for a client, marked with how the cache served it
    /// ([`served_as`](Self::served_as)). A `HEAD` gets the head only.
    pub fn to_response(&self, method: &Method, served_as: &'static str) -> Response<Full<Bytes>> {
        let body = if method == Method::HEAD {
            Bytes::new()
        } else {
            self.body.clone()
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        // RFC 9111 §5.1: the time it spent here too.
        let age = self.age + self.stored_at.elapsed().as_secs();
        response
            .headers_mut()
            .insert(http::header::AGE, HeaderValue::from(age));
        response
            .headers_mut()
            .insert(X_LEVEE_CACHE.clone(), HeaderValue::from_static(served_as));
        response
    }
}
