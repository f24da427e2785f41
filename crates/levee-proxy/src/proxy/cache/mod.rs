//! A cluster's response cache for GET and HEAD, the request path's first
//! stage after the route: a hit never reaches admission or the upstream
//! ([`Upstream`], the next stage); a miss is filled once for every
//! concurrent request of the same key (levee-core's [`RefreshingCache`]),
//! which also serves stale copies while a refresh runs or while the
//! upstream fails. An expired entry with a validator is revalidated: the
//! fill asks the upstream conditionally and a `304` keeps the stored body
//! (`fill.rs`).
//!
//! What a fill that cannot be stored gives the waiting requests:
//! - not storable (`no-store`, `private`, too large, no freshness): the
//!   request that filled gets the response; the others send their own request
//!   (like Varnish's hit-for-pass): a response not meant for sharing is
//!   never shared;
//! - an upstream error (5xx, or levee's own 502/504): the request that filled
//!   gets it; the others get levee's 502 saying so, rather than all going to
//!   a failing upstream at once.

mod fill;
mod key;
pub mod metrics;
pub mod policy;
mod stored;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::AUTHORIZATION;
use http::{Method, Request, Response};
use http_body_util::Either;
use levee_core::cache::{CacheError, CacheParams, CacheStats, CacheStatus, RefreshingCache};
use tokio::time::Instant;

pub use key::CacheKey;
pub use stored::{StoredResponse, X_LEVEE_CACHE};

use super::body::{ProxyBody, UpstreamBody};
use super::client::ClientInfo;
use super::error::ProxyError;
use crate::cluster::CacheStatusView;
use crate::config::CacheSettings;
use crate::upstream::ClientBody;
use fill::{FillError, Slots};
use metrics::CacheMetrics;

/// The rest of the request path, where the cache sends what it cannot
/// answer (the next stage: admission, breaker, attempts).
pub trait Upstream: Send + Sync + 'static {
    /// The cluster behind it, for levee's own errors.
    fn cluster_name(&self) -> &str;
    /// Deadline for a response head; a fill reads the body within it too.
    fn request_timeout(&self) -> Duration;
    /// Send `request` on.
    fn forward(
        &self,
        request: Request<ClientBody>,
        client: &ClientInfo,
        started: Instant,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, ProxyError>> + Send;
}

/// The response cache of one cluster.
pub struct ResponseCache {
    settings: CacheSettings,
    store: RefreshingCache<CacheKey, Arc<StoredResponse>>,
    metrics: CacheMetrics,
    /// Keys whose last response could not be stored, until when: their
    /// requests go straight through instead of queueing behind one
    /// another's fill (Varnish's hit-for-pass).
    passes: parking_lot::Mutex<std::collections::HashMap<CacheKey, Instant>>,
    /// The header fields the responses of a key vary on (`Vary`): a key
    /// listed here stores one entry per variant.
    varies: parking_lot::Mutex<std::collections::HashMap<CacheKey, Vec<http::header::HeaderName>>>,
}

/// How long a key whose response could not be stored is passed through
/// without a fill.
const PASS_FOR: Duration = Duration::from_secs(60);
/// Most keys remembered as passes; past it the expired ones are dropped,
/// then the set is cleared (the cost of forgetting is one more fill).
const MAX_PASSES: usize = 10_000;

impl ResponseCache {
    /// An empty cache with `settings` (validated by the config).
    pub fn new(settings: CacheSettings, metrics: CacheMetrics) -> ResponseCache {
        let params = CacheParams::builder()
            .max_size(settings.max_size)
            .stale_while_revalidate(settings.stale_while_revalidate)
            .stale_if_error(settings.stale_if_error)
            .fill_wait(settings.fill_wait)
            .build()
            // Validation has checked these; the defaults keep a running
            // gateway going if a bound ever differs.
            .unwrap_or_default();
        ResponseCache {
            settings,
            store: RefreshingCache::new(params, |_, stored: &Arc<StoredResponse>| stored.weight()),
            metrics,
            passes: parking_lot::Mutex::new(std::collections::HashMap::new()),
            varies: parking_lot::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Remove the entries of `target` (`host/path?query`, GET and HEAD).
    /// Returns how many were removed.
    pub fn purge(&self, target: &str) -> usize {
        self.store.invalidate_where(|key| key.target() == target)
    }

    /// Remove every entry whose `host/path?query` starts with `prefix`.
    pub fn purge_prefix(&self, prefix: &str) -> usize {
        self.store
            .invalidate_where(|key| key.target().starts_with(prefix))
    }

    /// Counters and size.
    pub fn stats(&self) -> CacheStats {
        self.store.stats()
    }

    /// The settings it was built with (a reload keeps it if they stay).
    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// As `/status` shows it.
    pub fn status(&self) -> CacheStatusView {
        let stats = self.stats();
        CacheStatusView {
            entries: stats.entries,
            bytes: stats.weight,
            max_bytes: self.settings.max_size,
            hits: stats.hits,
            misses: stats.misses,
            stale: stats.stale,
            loads: stats.loads,
            load_errors: stats.load_errors,
            evictions: stats.evictions,
        }
    }

    /// Answer `request` from the cache, filling it through `next` when
    /// needed.
    pub async fn serve<U: Upstream>(
        &self,
        next: &Arc<U>,
        request: Request<ClientBody>,
        client: &ClientInfo,
        started: Instant,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let cluster = next.cluster_name();
        let method = request.method().clone();
        let cacheable_request = matches!(method, Method::GET | Method::HEAD)
            && !request.headers().contains_key(AUTHORIZATION);
        if !cacheable_request {
            // RFC 9111 §4.4: an unsafe request that succeeds invalidates
            // what is stored for its target (and where it points).
            let unsafe_target = (!matches!(
                method,
                Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
            ))
            .then(|| CacheKey::of(&request).target().to_owned());
            let response = self.pass(&**next, request, client, started).await?;
            if let Some(target) = unsafe_target
                && (response.status().is_success() || response.status().is_redirection())
            {
                self.invalidate_after_write(&target, response.headers());
            }
            return Ok(response);
        }
        let mut key = CacheKey::of(&request);
        if let Some(fields) = self.varies.lock().get(&key) {
            key = key.variant(&request, fields);
        }
        if self.is_pass(&key) {
            return self.pass(&**next, request, client, started).await;
        }
        let head = fill::head_of(&request);
        let slots = Slots::new(request);
        let loader = {
            let slots = slots.clone();
            let next = Arc::clone(next);
            let client = client.clone();
            let settings = self.settings;
            move |previous| fill::fill(next, slots, client, settings, previous)
        };
        match self.store.get_with(key.clone(), loader).await {
            Ok(served) => {
                // Learned when a fill stores it; a hit has nothing new.
                if served.status == CacheStatus::Miss {
                    self.learn_vary(&key, &served.value.headers);
                }
                if !policy::matches(&served.value.policy, &head, SystemTime::now()) {
                    // Another variant is stored (`Vary`): ask the upstream.
                    // The request is gone only when it started the stale
                    // copy's background refresh, which stores this variant.
                    return match slots.take_request() {
                        Some(request) => self.pass(&**next, request, client, started).await,
                        None => Err(fill_failed(
                            cluster,
                            "the stored response is another variant (Vary) and this request is refreshing it in the background; try again",
                        )),
                    };
                }
                let served_as = served.value.served_as(served.status);
                self.metrics.record(served_as);
                // The client's own conditional request: it has this one.
                if served.value.not_modified_for(&head.headers) {
                    return Ok(served.value.to_not_modified(served_as).map(Either::Right));
                }
                Ok(served
                    .value
                    .to_response(&method, served_as)
                    .map(Either::Right))
            }
            Err(CacheError::Load(error)) => {
                if let Some(FillError::NotStored(reason)) = error.downcast_ref::<FillError>()
                    && *reason != fill::ALREADY_SENT
                {
                    // Not storable: the next requests for it go straight
                    // through rather than wait on one another's fill.
                    self.remember_pass(key);
                }
                // The request that ran the fill has its own answer.
                if let Some(own) = slots.take_own() {
                    self.metrics.record("miss");
                    return Ok(marked(own, CacheStatus::Miss));
                }
                match error.downcast_ref::<FillError>() {
                    Some(FillError::NotStored(_)) => match slots.take_request() {
                        Some(request) => self.pass(&**next, request, client, started).await,
                        // Only the request that ran the fill lacks its
                        // request, and it has its own answer (above).
                        None => Err(fill_failed(cluster, "cache fill lost this request")),
                    },
                    Some(FillError::Proxy(error)) => Err(error.clone()),
                    Some(FillError::Status(status)) => Err(fill_failed(
                        cluster,
                        &format!("upstream answered {status} to the request this one waited for"),
                    )),
                    None => Err(fill_failed(cluster, &error.to_string())),
                }
            }
            Err(CacheError::FillTimeout { waited }) => Err(ProxyError::CacheFill {
                cluster: cluster.to_owned(),
                reason: format!(
                    "no response within fill_wait ({})",
                    humantime::format_duration(waited)
                ),
                timed_out: true,
            }),
            Err(error) => Err(fill_failed(cluster, &error.to_string())),
        }
    }

    /// Remember the fields `headers` (a stored response) vary on, for the
    /// key's later requests: each variant then gets an entry of its own.
    fn learn_vary(&self, key: &CacheKey, headers: &http::HeaderMap) {
        if !headers.contains_key(http::header::VARY) {
            return;
        }
        let mut fields: Vec<http::header::HeaderName> = headers
            .get_all(http::header::VARY)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|field| http::header::HeaderName::from_bytes(field.trim().as_bytes()).ok())
            .collect();
        fields.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        fields.dedup();
        let primary = key.primary();
        let mut varies = self.varies.lock();
        if varies.get(&primary) != Some(&fields) {
            if varies.len() >= MAX_PASSES {
                varies.clear();
            }
            varies.insert(primary, fields);
        }
    }

    /// Whether `key` is passed through for now (its last response could not
    /// be stored).
    fn is_pass(&self, key: &CacheKey) -> bool {
        let passes = self.passes.lock();
        passes.get(key).is_some_and(|until| Instant::now() < *until)
    }

    /// Pass `key` through for a while: its response could not be stored.
    fn remember_pass(&self, key: CacheKey) {
        let now = Instant::now();
        let mut passes = self.passes.lock();
        if passes.len() >= MAX_PASSES {
            passes.retain(|_, until| now < *until);
            if passes.len() >= MAX_PASSES {
                passes.clear();
            }
        }
        passes.insert(key, now + PASS_FOR);
    }

    /// Drop what is stored for `target` (`host/path?query`) and for the
    /// same-host `Location` and `Content-Location` of a successful unsafe
    /// request's response.
    fn invalidate_after_write(&self, target: &str, headers: &http::HeaderMap) {
        let host = target.split('/').next().unwrap_or_default();
        let mut targets = vec![target.to_owned()];
        for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
            let Some(location) = headers.get(name).and_then(|value| value.to_str().ok()) else {
                continue;
            };
            match location.parse::<http::Uri>() {
                // Another origin's entries are not this request's to drop.
                Ok(uri) if uri.authority().is_some() => {
                    let same = uri
                        .authority()
                        .is_some_and(|authority| authority.as_str().eq_ignore_ascii_case(host));
                    if same {
                        let path = uri.path_and_query().map_or("/", |path| path.as_str());
                        targets.push(format!("{host}{path}"));
                    }
                }
                Ok(uri) if location.starts_with('/') => {
                    let path = uri.path_and_query().map_or("/", |path| path.as_str());
                    targets.push(format!("{host}{path}"));
                }
                _ => {}
            }
        }
        let mut passes = self.passes.lock();
        let varies = self.varies.lock();
        for target in targets {
            for method in [Method::GET, Method::HEAD] {
                let key = CacheKey::for_target(&method, &target);
                self.store.invalidate(&key);
                passes.remove(&key);
                if varies.contains_key(&key) {
                    // Its variants too (a scan, for varying keys only).
                    self.store
                        .invalidate_where(|stored| stored.target() == target);
                }
            }
        }
    }

    /// Forward without the cache (marked `miss`: it did not come from it).
    async fn pass<U: Upstream>(
        &self,
        next: &U,
        request: Request<ClientBody>,
        client: &ClientInfo,
        started: Instant,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        self.metrics.record("bypass");
        let response = next.forward(request, client, started).await?;
        Ok(marked(response, CacheStatus::Miss))
    }
}

fn marked(mut response: Response<UpstreamBody>, status: CacheStatus) -> Response<ProxyBody> {
    response.headers_mut().insert(
        X_LEVEE_CACHE.clone(),
        http::HeaderValue::from_static(status.as_str()),
    );
    response.map(Either::Left)
}

fn fill_failed(cluster: &str, reason: &str) -> ProxyError {
    ProxyError::CacheFill {
        cluster: cluster.to_owned(),
        reason: reason.to_owned(),
        timed_out: false,
    }
}
