//! What a traffic listener does while the node is impaired
//! (`when_impaired`): close its socket and reopen it on recovery, or answer
//! 503 to every request or to writes only.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::{Either, Full};
use levee_core::readiness::Readiness;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;

use super::SelfHealth;
use crate::config::WhenImpaired;
use crate::proxy::ProxyBody;

/// `Retry-After` on an impaired 503: about how soon a recovery is seen.
const RETRY_AFTER_SECONDS: &str = "5";

/// One listener's view of the node's readiness and its `when_impaired`.
#[derive(Clone)]
pub struct ListenerGate {
    policy: WhenImpaired,
    state: watch::Receiver<Readiness>,
    health: Arc<SelfHealth>,
    rejections: Counter,
}

impl ListenerGate {
    /// The gate of listener `name`.
    pub fn new(name: &str, policy: WhenImpaired, health: &Arc<SelfHealth>) -> ListenerGate {
        ListenerGate {
            policy,
            state: health.subscribe(),
            health: Arc::clone(health),
            rejections: health.metrics.impaired_rejections(name),
        }
    }

    /// The 503 a request gets instead of being proxied, or `None` if it is
    /// served.
    pub fn reject(&self, method: &Method) -> Option<Response<ProxyBody>> {
        let rejects = match self.policy {
            WhenImpaired::Serve | WhenImpaired::Close => false,
            WhenImpaired::RejectAll => true,
            WhenImpaired::RejectWrites => {
                !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
            }
        };
        if !rejects || *self.state.borrow() != Readiness::Impaired {
            return None;
        }
        self.rejections.inc();
        Some(impaired_response(&self.health, self.policy).map(Either::Right))
    }

    /// Resolves when the listener must close its socket (never, unless
    /// `when_impaired = close`).
    pub(crate) async fn until_close(&mut self) {
        if self.policy != WhenImpaired::Close
            || self
                .state
                .wait_for(|s| *s == Readiness::Impaired)
                .await
                .is_err()
        {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once the node is no longer impaired.
    pub(crate) async fn until_open(&mut self) {
        if self
            .state
            .wait_for(|s| *s != Readiness::Impaired)
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
    }
}

/// The 503 of an impaired node: which rule fired and the failing criteria.
pub fn impaired_response(health: &SelfHealth, policy: WhenImpaired) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "error": "node impaired",
        "rule": format!("when_impaired = {}", policy.as_str()),
        "failing": health.failing(),
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
    );
    response
}
