//! A cluster's rate limit (`[cluster.rate_limit]`), the first stage of the
//! request path: a request over its key's rate gets `429` before it takes
//! an admission slot or any upstream work. Every answer carries the
//! `RateLimit-*` headers of draft-ietf-httpapi-ratelimit-headers.

use http::{HeaderMap, HeaderName, HeaderValue};
use levee_core::ratelimit::{KeyedLimiter, RateDecision};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use levee_store::StateStore;

use super::client::ClientInfo;
use crate::config::{RateKey, RateLimitSettings};
use crate::metrics::labels::ClusterLabels;

static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// One cluster's rate limit.
pub struct ClusterRateLimit {
    cluster: String,
    settings: RateLimitSettings,
    /// The local limit: the whole limit, or the fallback of a shared one.
    limiter: KeyedLimiter,
    /// With `shared`: the fleet's store, once the gateway has one.
    store: OnceLock<Arc<dyn StateStore>>,
    /// Whether the last shared verdict came from the local fallback: one
    /// log line per change, not per request.
    falling_back: AtomicBool,
    limited: Counter,
    fallbacks: Counter,
}

impl ClusterRateLimit {
    /// No key seen yet.
    pub fn new(
        cluster: &str,
        settings: RateLimitSettings,
        (limited, fallbacks): (Counter, Counter),
    ) -> ClusterRateLimit {
        ClusterRateLimit {
            cluster: cluster.to_owned(),
            limiter: KeyedLimiter::new(settings.params),
            settings,
            store: OnceLock::new(),
            falling_back: AtomicBool::new(false),
            limited,
            fallbacks,
        }
    }

    /// Whether the limit is the fleet's, kept in the store.
    pub fn is_shared(&self) -> bool {
        self.settings.shared
    }

    /// Keep the fleet's limit in `store` (once; a reload keeps the first).
    pub fn share(&self, store: Arc<dyn StateStore>) {
        let _ = self.store.set(store);
    }

    /// Its settings (a reload keeps it when they are the same).
    pub fn settings(&self) -> &RateLimitSettings {
        &self.settings
    }

    /// The verdict for one request: the fleet's when shared (waiting at
    /// most `store_timeout`), else, or when the store does not answer in
    /// time, this process's.
    pub async fn check(&self, headers: &HeaderMap, client: &ClientInfo) -> RateDecision {
        let key = match &self.settings.key {
            RateKey::Header(name) => headers.get(name).and_then(|value| value.to_str().ok()),
            RateKey::Client => None,
        }
        .unwrap_or_else(|| client.ip_header.to_str().unwrap_or_default());
        let decision = match self.store.get().filter(|_| self.settings.shared) {
            // Boxed: only shared limits carry the store's future.
            Some(store) => Box::pin(self.check_shared(store.as_ref(), key)).await,
            None => self.limiter.check(key, Instant::now()),
        };
        if !decision.allowed {
            self.limited.inc();
        }
        decision
    }

    async fn check_shared(&self, store: &dyn StateStore, key: &str) -> RateDecision {
        let params = &self.settings.params;
        let bucket = format!("{}:{key}", self.cluster);
        let answer = tokio::time::timeout(
            self.settings.store_timeout,
            store.rate_limit(&bucket, params.interval(), params.burst()),
        )
        .await;
        match answer {
            Ok(Ok(shared)) => {
                if self.falling_back.swap(false, Ordering::Relaxed) {
                    tracing::info!(cluster = %self.cluster, "fleet-wide rate limit decided by the store again");
                }
                RateDecision {
                    allowed: shared.allowed,
                    limit: params.burst(),
                    remaining: shared.remaining.min(params.burst()),
                    reset: shared.reset,
                    retry_after: (!shared.allowed).then_some(shared.retry_after),
                }
            }
            Ok(Err(error)) => self.fall_back(key, &error.to_string()),
            Err(_) => self.fall_back(
                key,
                &format!("no answer within {:?}", self.settings.store_timeout),
            ),
        }
    }

    /// The store could not decide: this process's limit does, and says so.
    fn fall_back(&self, key: &str, why: &str) -> RateDecision {
        self.fallbacks.inc();
        if !self.falling_back.swap(true, Ordering::Relaxed) {
            tracing::warn!(cluster = %self.cluster, why, "fleet-wide rate limit falls back to this instance's own limit");
        }
        self.limiter.check(key, Instant::now())
    }
}

/// The `RateLimit-*` headers of `decision`.
pub fn write_headers(headers: &mut HeaderMap, decision: &RateDecision) {
    headers.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(decision.limit));
    headers.insert(
        RATELIMIT_REMAINING.clone(),
        HeaderValue::from(decision.remaining),
    );
    headers.insert(
        RATELIMIT_RESET.clone(),
        HeaderValue::from(whole_seconds(decision.reset)),
    );
}

/// Whole seconds, rounded up: never tell a client to come back early.
pub fn whole_seconds(duration: std::time::Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The rate-limit metric families, registered once.
#[derive(Default)]
pub struct RateLimitFamilies {
    limited: Family<ClusterLabels, Counter>,
    fallbacks: Family<ClusterLabels, Counter>,
}

impl RateLimitFamilies {
    /// Register the family in `registry`.
    pub fn register(registry: &mut Registry) -> RateLimitFamilies {
        let families = RateLimitFamilies::default();
        registry.register(
            "rate_limited",
            "Requests answered 429 by a cluster's rate limit",
            families.limited.clone(),
        );
        registry.register(
            "rate_limit_fallbacks",
            "Requests of a fleet-wide rate limit decided by the local limit because the store did not answer in time",
            families.fallbacks.clone(),
        );
        families
    }

    /// One cluster's counters: requests limited, local fallbacks.
    pub fn handles(&self, cluster: &str) -> (Counter, Counter) {
        let labels = ClusterLabels {
            cluster: cluster.to_owned(),
        };
        (
            self.limited.get_or_create_owned(&labels),
            self.fallbacks.get_or_create_owned(&labels),
        )
    }
}
