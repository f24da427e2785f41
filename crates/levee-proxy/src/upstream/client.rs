//! The upstream HTTP client: keep-alive pools per endpoint over hyper-util's
//! pooled client.

use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Connection settings for one cluster's client.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamClientSettings {
    /// Give up on a TCP connect after this long (the endpoint is then
    /// `connect-timeout`, and the request was never sent).
    pub connect_timeout: Duration,
    /// Close pooled connections idle for this long.
    pub idle_timeout: Duration,
    /// Keep at most this many idle connections per endpoint.
    pub max_idle_per_endpoint: usize,
}

/// Pooled client forwarding client request bodies as they stream in.
pub type UpstreamClient = Client<HttpConnector, Incoming>;

/// Build a client with keep-alive pooling.
pub fn build(settings: UpstreamClientSettings) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(settings.connect_timeout));
    // Small request/response exchanges must not wait for Nagle.
    connector.set_nodelay(true);
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(settings.idle_timeout)
        .pool_max_idle_per_host(settings.max_idle_per_endpoint)
        .build(connector)
}

impl UpstreamClientSettings {
    /// Build the client these settings describe.
    pub fn build(self) -> UpstreamClient {
        build(self)
    }
}
