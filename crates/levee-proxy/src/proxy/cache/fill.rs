//! One fill of the cache: the upstream request made on behalf of every
//! request waiting for the same key, and what it leaves for them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use http::header::CONTENT_LENGTH;
use http::{Request, Response, StatusCode, request, response};
use http_body_util::BodyExt;
use http_cache_semantics::CachePolicy;
use levee_core::cache::Loaded;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::Upstream;
use super::policy::{self, Verdict};
use super::stored::StoredResponse;
use crate::config::CacheSettings;
use crate::proxy::body::UpstreamBody;
use crate::proxy::client::ClientInfo;
use crate::proxy::error::ProxyError;
use crate::upstream::ClientBody;

/// A fill found its request taken: says nothing about the response.
pub(super) const ALREADY_SENT: &str = "request already sent";

/// Why a fill stored nothing, as every waiting request sees it.
#[derive(Debug, thiserror::Error)]
pub(super) enum FillError {
    /// The response may not be shared (or is too large to keep).
    #[error("response not stored: {0}")]
    NotStored(&'static str),
    /// The upstream answered with a server error.
    #[error("upstream answered {0}")]
    Status(StatusCode),
    /// levee could not get a response at all.
    #[error("{0:?}")]
    Proxy(ProxyError),
}

/// What one request hands its fill, and what the fill hands back: the
/// request itself (taken by the fill if this request runs it; still there
/// for a request that only waited) and, when nothing could be stored, the
/// response for the request that ran the fill.
#[derive(Clone)]
pub(super) struct Slots {
    request: Arc<Mutex<Option<Request<ClientBody>>>>,
    own: Arc<Mutex<Option<Response<UpstreamBody>>>>,
}

impl Slots {
    pub(super) fn new(request: Request<ClientBody>) -> Slots {
        Slots {
            request: Arc::new(Mutex::new(Some(request))),
            own: Arc::new(Mutex::new(None)),
        }
    }

    pub(super) fn take_request(&self) -> Option<Request<ClientBody>> {
        self.request.lock().take()
    }

    pub(super) fn take_own(&self) -> Option<Response<UpstreamBody>> {
        self.own.lock().take()
    }

    fn keep_own(&self, response: Response<UpstreamBody>) {
        *self.own.lock() = Some(response);
    }
}

/// A copy of `request`'s head, for the cache rules.
pub(super) fn head_of<B>(request: &Request<B>) -> request::Parts {
    let (mut head, ()) = Request::new(()).into_parts();
    head.method = request.method().clone();
    head.uri = request.uri().clone();
    head.version = request.version();
    head.headers = request.headers().clone();
    head
}

/// How long past its stale windows a response with a validator is kept, so
/// that the next request asks the upstream "has it changed?" instead of
/// fetching it whole (nginx's `inactive` default is the same 10 minutes).
const KEEP_FOR_REVALIDATION: Duration = Duration::from_secs(600);

/// Fetch the response for the request in `slots` and keep it if the rules
/// allow. With `previous` (the stale or expired response stored for the
/// key) and its validators, the upstream is asked conditionally; its `304`
/// keeps the stored body under the updated headers.
pub(super) async fn fill<U: Upstream>(
    next: Arc<U>,
    slots: Slots,
    client: ClientInfo,
    settings: CacheSettings,
    previous: Option<Arc<StoredResponse>>,
) -> Result<Loaded<Arc<StoredResponse>>, FillError> {
    let Some(mut request) = slots.take_request() else {
        return Err(FillError::NotStored(ALREADY_SENT));
    };
    // The fill is for everyone: a whole response to store. A client's own
    // conditions are answered from it afterwards (a 304 has no body).
    for condition in [http::header::IF_NONE_MATCH, http::header::IF_MODIFIED_SINCE] {
        request.headers_mut().remove(condition);
    }
    let head = head_of(&request);
    if let Some(previous) = &previous {
        request.headers_mut().extend(previous.conditions());
    }
    let started = Instant::now();
    let response = next
        .forward(request, &client, started)
        .await
        .map_err(FillError::Proxy)?;
    let (parts, mut body) = response.into_parts();
    if parts.status == StatusCode::NOT_MODIFIED
        && let Some(previous) = previous
    {
        return Ok(revalidated(&previous, &head, &parts, settings));
    }
    // A server error is a failure (stale copies may cover it), except 501,
    // which is cacheable (RFC 9110 §15.6.2) when the response says so.
    if parts.status.is_server_error() && parts.status != StatusCode::NOT_IMPLEMENTED {
        let status = parts.status;
        slots.keep_own(Response::from_parts(parts, body));
        return Err(FillError::Status(status));
    }
    let freshness = match policy::judge(&head, &parts, settings.default_ttl, SystemTime::now()) {
        Verdict::Store(freshness, policy) => (freshness, policy),
        Verdict::Skip(reason) => {
            slots.keep_own(Response::from_parts(parts, body));
            return Err(FillError::NotStored(reason));
        }
    };
    let announced = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|length| length > settings.max_entry_size) {
        slots.keep_own(Response::from_parts(parts, body));
        return Err(FillError::NotStored("larger than max_entry_size"));
    }
    let deadline = started + next.request_timeout();
    let mut buffer = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => break,
            Ok(Some(Err(_))) | Err(_) => {
                return Err(FillError::Proxy(ProxyError::CacheFill {
                    cluster: next.cluster_name().to_owned(),
                    reason: "upstream response body failed or stalled".to_owned(),
                    timed_out: false,
                }));
            }
        };
        if let Ok(data) = frame.into_data() {
            buffer.extend_from_slice(&data);
            if buffer.len() as u64 > settings.max_entry_size {
                // Too large after all (no Content-Length): the filling
                // request gets it whole, from what was read on.
                body.resume_after(buffer.freeze());
                slots.keep_own(Response::from_parts(parts, body));
                return Err(FillError::NotStored("larger than max_entry_size"));
            }
        }
    }
    let (freshness, policy) = freshness;
    let stored = StoredResponse {
        status: parts.status,
        headers: parts.headers,
        body: buffer.freeze(),
        policy: *policy,
        age: freshness.age,
        stored_at: Instant::now(),
        revalidated: false,
    };
    Ok(loaded(stored, &freshness, settings))
}

/// The stored response `previous`, confirmed by the upstream's `304`
/// (`not_modified`) to `request`: same body, headers updated, a lifetime
/// of its own. If the updated headers forbid storing (say `no-store`), the
/// waiting requests still get it, but it is not kept.
fn revalidated(
    previous: &StoredResponse,
    request: &request::Parts,
    not_modified: &response::Parts,
    settings: CacheSettings,
) -> Loaded<Arc<StoredResponse>> {
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = previous.status;
    parts.version = not_modified.version;
    parts.headers = previous.headers_updated_by(&not_modified.headers);
    let verdict = policy::judge(request, &parts, settings.default_ttl, SystemTime::now());
    let stored = |policy: CachePolicy, age| StoredResponse {
        status: previous.status,
        headers: parts.headers.clone(),
        body: previous.body.clone(),
        policy,
        age,
        stored_at: Instant::now(),
        revalidated: true,
    };
    match verdict {
        Verdict::Store(freshness, policy) => {
            loaded(stored(*policy, freshness.age), &freshness, settings)
        }
        Verdict::Skip(_) => Loaded::new(Arc::new(stored(previous.policy.clone(), 0)))
            .ttl(Duration::ZERO)
            .stale_while_revalidate(Duration::ZERO)
            .stale_if_error(Duration::ZERO),
    }
}

/// `stored` with the lifetime `freshness` and the config give it.
fn loaded(
    stored: StoredResponse,
    freshness: &policy::Freshness,
    settings: CacheSettings,
) -> Loaded<Arc<StoredResponse>> {
    let keep = if stored.has_validator() {
        KEEP_FOR_REVALIDATION
    } else {
        Duration::ZERO
    };
    let mut loaded = Loaded::new(Arc::new(stored))
        .ttl(freshness.ttl)
        .keep_for_revalidation(keep);
    // Stale only where the origin allows it, or the config widens it
    // (the store's default is the config's window); never past a
    // must-revalidate.
    let window = |origin: Option<Duration>, configured: Duration| {
        if freshness.never_stale {
            Some(Duration::ZERO)
        } else {
            origin.map(|origin| origin.max(configured))
        }
    };
    if let Some(window) = window(
        freshness.stale_while_revalidate,
        settings.stale_while_revalidate,
    ) {
        loaded = loaded.stale_while_revalidate(window);
    }
    if let Some(window) = window(freshness.stale_if_error, settings.stale_if_error) {
        loaded = loaded.stale_if_error(window);
    }
    loaded
}
