//! Routes: which cluster serves a request, and with which request timeout,
//! retry policy and cache. A listener's [`Router`] is built once from its
//! config (and again on reload); the first route whose [`RouteMatch`]
//! holds wins, else the listener's default, else levee answers 404.
//!
//! - `matcher.rs`: what a route matches (pure, no allocation);
//! - here: the router and what a chosen route carries.

pub mod matcher;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Uri};

pub use matcher::{HeaderMatch, HostPattern, PathPattern, RequestView, RouteMatch};

use crate::cluster::{Cluster, ClusterBreaker};
use crate::config::{ClusterSettings, RetrySettings, RouteSettings};
use crate::proxy::admission::ClusterAdmission;
use crate::proxy::cache::ResponseCache;
use crate::proxy::rate_limit::ClusterRateLimit;
use crate::proxy::retries::RetryState;
use crate::proxy::throttle::ClusterThrottle;

/// Routes in order, and what requests no route takes get.
pub struct Router<T> {
    routes: Vec<(RouteMatch, T)>,
    default: Option<T>,
}

impl<T> Router<T> {
    /// A router trying `routes` in order, then `default`.
    pub fn new(routes: Vec<(RouteMatch, T)>, default: Option<T>) -> Router<T> {
        Router { routes, default }
    }

    /// The target of a request. A listener without routes answers without
    /// looking at the request at all.
    pub fn route(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<&T> {
        if self.routes.is_empty() {
            return self.default.as_ref();
        }
        let view = RequestView::of(method, uri, headers);
        self.routes
            .iter()
            .find(|(matches, _)| matches.matches(&view))
            .map(|(_, target)| target)
            .or(self.default.as_ref())
    }

    /// Every target, routes first, the default last.
    pub fn targets(&self) -> impl Iterator<Item = &T> {
        self.routes
            .iter()
            .map(|(_, target)| target)
            .chain(self.default.as_ref())
    }
}

/// Where a routed request goes, and the settings it is served with: its
/// cluster's, with what the route replaces.
pub struct Route {
    /// `<listener>/<route>`, or the listener's name for its default.
    pub name: String,
    /// The cluster that serves it.
    pub cluster: Arc<Cluster>,
    /// Retries, hedging and the per-try timeout.
    pub retry: RetrySettings,
    /// Deadline for the response head across all attempts.
    pub request_timeout: Duration,
    /// The cluster's cache, unless it has none or the route turns it off.
    pub cache: Option<Arc<ResponseCache>>,
    /// The cluster's admission control, if it has one.
    pub admission: Option<Arc<ClusterAdmission>>,
    /// The admission class of its requests, and the highest a request may
    /// claim with the cluster's `priority_header`.
    pub priority: levee_core::admission::Priority,
    /// The cluster's circuit breaker, if it has one.
    pub breaker: Option<Arc<ClusterBreaker>>,
    /// The cluster's client-side throttling, if it has it.
    pub throttle: Option<Arc<ClusterThrottle>>,
    /// The cluster's rate limit, if it has one.
    pub rate_limit: Option<Arc<ClusterRateLimit>>,
    /// The cluster's retry budget, hedging latencies and retry counters.
    pub retries: Arc<RetryState>,
    /// Its listener writes an access log: attempts keep what the line
    /// tells of them.
    pub access_log: bool,
}

/// The stages in front of a cluster that are its own (one each, shared by
/// every route to it).
#[derive(Clone)]
pub struct ClusterStages {
    /// Its response cache.
    pub cache: Option<Arc<ResponseCache>>,
    /// Its admission control.
    pub admission: Option<Arc<ClusterAdmission>>,
    /// Its circuit breaker (the cluster's own; per-endpoint breakers belong
    /// to the cluster's endpoints).
    pub breaker: Option<Arc<ClusterBreaker>>,
    /// Its client-side throttling.
    pub throttle: Option<Arc<ClusterThrottle>>,
    /// Its rate limit.
    pub rate_limit: Option<Arc<ClusterRateLimit>>,
    /// What its requests share across their attempts.
    pub retries: Arc<RetryState>,
}

impl Route {
    /// A listener's default: the cluster (and its stages) as configured.
    pub fn default_for(listener: &str, cluster: Arc<Cluster>, stages: ClusterStages) -> Route {
        let settings: &ClusterSettings = &cluster.settings;
        Route {
            name: listener.to_owned(),
            retry: settings.retry.clone(),
            request_timeout: settings.request_timeout,
            cache: stages.cache,
            admission: stages.admission,
            priority: levee_core::admission::Priority::Default,
            breaker: stages.breaker,
            throttle: stages.throttle,
            rate_limit: stages.rate_limit,
            retries: stages.retries,
            access_log: false,
            cluster,
        }
    }

    /// A configured route of `listener`, served by `cluster` (and its
    /// stages; its cache unless the route turns it off).
    pub fn configured(
        listener: &str,
        route: &RouteSettings,
        cluster: Arc<Cluster>,
        stages: ClusterStages,
    ) -> Route {
        let settings: &ClusterSettings = &cluster.settings;
        Route {
            name: format!("{listener}/{}", route.name),
            retry: route.retry.apply(&settings.retry),
            request_timeout: route.request_timeout.unwrap_or(settings.request_timeout),
            cache: stages.cache.filter(|_| route.cache.unwrap_or(true)),
            admission: stages.admission,
            priority: route.priority.unwrap_or_default(),
            breaker: stages.breaker,
            throttle: stages.throttle,
            rate_limit: stages.rate_limit,
            retries: stages.retries,
            access_log: false,
            cluster,
        }
    }
}
