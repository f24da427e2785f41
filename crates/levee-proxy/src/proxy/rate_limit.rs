//! A cluster's rate limit (`[cluster.rate_limit]`), the first stage of the
//! request path: a request over its key's rate gets `429` before it takes
//! an admission slot or any upstream work. Every answer carries the
//! `RateLimit-*` headers of draft-ietf-httpapi-ratelimit-headers.

use http::{HeaderMap, HeaderName, HeaderValue};
use levee_core::ratelimit::{KeyedLimiter, RateDecision};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use super::client::ClientInfo;
use crate::config::{RateKey, RateLimitSettings};

static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// One cluster's rate limit.
pub struct ClusterRateLimit {
    settings: RateLimitSettings,
    limiter: KeyedLimiter,
    limited: Counter,
}

impl ClusterRateLimit {
    /// No key seen yet.
    pub fn new(settings: RateLimitSettings, limited: Counter) -> ClusterRateLimit {
        ClusterRateLimit {
            limiter: KeyedLimiter::new(settings.params),
            settings,
            limited,
        }
    }

    /// Its settings (a reload keeps it when they are the same).
    pub fn settings(&self) -> &RateLimitSettings {
        &self.settings
    }

    /// The verdict for one request.
    pub fn check(&self, headers: &HeaderMap, client: &ClientInfo, now: Instant) -> RateDecision {
        let from_header = match &self.settings.key {
            RateKey::Client => None,
            RateKey::Header(name) => headers.get(name).and_then(|value| value.to_str().ok()),
        };
        let decision = match from_header {
            Some(key) => self.limiter.check(key, now),
            None => {
                let ip = client.ip_header.to_str().unwrap_or_default();
                self.limiter.check(ip, now)
            }
        };
        if !decision.allowed {
            self.limited.inc();
        }
        decision
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

/// The rate-limit metric family, registered once.
#[derive(Default)]
pub struct RateLimitFamilies {
    limited: Family<ClusterLabels, Counter>,
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
        families
    }

    /// One cluster's counter.
    pub fn limited(&self, cluster: &str) -> Counter {
        self.limited.get_or_create_owned(&ClusterLabels {
            cluster: cluster.to_owned(),
        })
    }
}
