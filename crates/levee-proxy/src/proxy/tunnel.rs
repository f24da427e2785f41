//! `Upgrade` (WebSocket and other protocol switches, RFC 9110 §7.8) on
//! HTTP/1.1: the handshake goes to an endpoint on a connection of its own,
//! its `101 Switching Protocols` goes back to the client, and from then on
//! bytes are relayed both ways until either side closes. HTTP/2 clients
//! open the same tunnels with an extended CONNECT (RFC 8441, `:protocol`):
//! the endpoint still gets an HTTP/1.1 upgrade, and the client a `200` and
//! its stream as the tunnel.
//!
//! The attempt follows the retry rules: a connect (or TLS) failure sent
//! nothing, so the handshake moves to an untried endpoint; once sent, it is
//! never repeated (an endpoint may have acted on it). Outcomes feed the
//! cluster's health and outlier detection like any request's.
//!
//! The relay itself runs in the client connection's task, after hyper has
//! written the 101 and handed the socket back (`listener/http.rs`): the
//! handshake's response leaves the upstream side here in a [`Tunnel`],
//! parked in the connection's [`UpgradeSlot`].

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::ext::Protocol;
use hyper::upgrade::OnUpgrade;
use levee_core::{EndpointId, FailureKind, Outcome};
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use super::client::ClientInfo;
use super::error::ProxyError;
use super::switched::Tunnel;
use crate::route::Route;
use crate::upstream::ClientBody;

/// Most of a refused handshake's body (a 4xx/5xx instead of 101) passed
/// back to the client.
const REFUSAL_BODY_LIMIT: usize = 64 * 1024;

/// Whether `request` asks to switch protocols: HTTP/1.1 with `Upgrade` and
/// a `Connection` that names it. hyper marks every HTTP/1.1 request with an
/// `Upgrade` header (and CONNECT) with its `OnUpgrade`: looking for that
/// first costs a pointer test on every other request, where a header
/// lookup costs a hash (bench/instructions.sh: about 400 instructions).
pub fn is_upgrade<B>(request: &Request<B>) -> bool {
    if request.extensions().get::<OnUpgrade>().is_none() {
        return false;
    }
    if request.method() == http::Method::CONNECT {
        // Extended CONNECT: HTTP/2 with `:protocol` (RFC 8441).
        return request.extensions().get::<Protocol>().is_some();
    }
    request.headers().contains_key(header::UPGRADE)
        && request
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Send the handshake of `request` to an endpoint of `route`'s cluster and
/// return its answer: a 101 (the tunnel is left in the client's slot), or
/// the endpoint's refusal, or levee's own error.
pub async fn open(
    route: &Route,
    request: Request<ClientBody>,
    client: &ClientInfo,
    started: Instant,
    open_gauge: Gauge,
) -> Result<Response<Full<Bytes>>, ProxyError> {
    let cluster = &route.cluster;
    if request.headers().contains_key(header::TRANSFER_ENCODING)
        || request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length != "0")
    {
        return Err(ProxyError::BadRequest {
            reason: "an Upgrade request with a body is not supported",
        });
    }
    // HTTP/2 extended CONNECT: the protocol is `:protocol`, and the
    // client's tunnel is its stream.
    let extended = request.method() == http::Method::CONNECT;
    let upgrade = match request.extensions().get::<Protocol>() {
        Some(protocol) if extended => HeaderValue::from_str(protocol.as_str()).ok(),
        _ => request.headers().get(header::UPGRADE).cloned(),
    };
    let mut request = request;
    let client_stream = extended
        .then(|| request.extensions_mut().remove::<OnUpgrade>())
        .flatten();
    let mut tried: Vec<EndpointId> = Vec::new();
    let max_attempts = route.retry.policy.max_attempts();
    loop {
        let now = Instant::now();
        let picked = if tried.is_empty() {
            cluster.pick(now)
        } else {
            cluster.pick_other(now, &tried)
        };
        let Some(id) = picked else {
            return Err(ProxyError::NoEndpoint {
                cluster: cluster.name.clone(),
                reason: cluster.no_endpoint_reason(now),
            });
        };
        tried.push(id);
        let endpoint = cluster.endpoint(id);
        let head =
            super::upstream_request::upstream_request(clone_head(&request), &endpoint.host_header)?;
        let mut head = head.map(|()| Empty::<Bytes>::new());
        super::headers::add_forwarded(head.headers_mut(), &client.ip_header, client.proto);
        // The protocol switch is the point: these two go upstream.
        head.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(upgrade) = &upgrade {
            head.headers_mut().insert(header::UPGRADE, upgrade.clone());
        }
        if extended {
            websocket_handshake(head.headers_mut(), upgrade.as_ref());
        }
        let attempt_started = Instant::now();
        let deadline = started + route.request_timeout;
        let answered = tokio::time::timeout_at(deadline, endpoint.pool.send_upgrade(head)).await;
        let elapsed = attempt_started.elapsed();
        let failure = match answered {
            Ok(Ok(response)) => {
                cluster.record(
                    &Outcome::response(id, response.status().as_u16(), elapsed),
                    Instant::now(),
                );
                return Ok(switch_or_refuse(
                    response,
                    client,
                    client_stream,
                    open_gauge,
                    tried.len(),
                )
                .await);
            }
            Ok(Err(kind)) => kind,
            Err(_elapsed) => FailureKind::Timeout,
        };
        cluster.record(&Outcome::failure(id, failure, elapsed), Instant::now());
        // Nothing sent: another endpoint may take it, whatever it asks.
        if failure.is_connect() && tried.len() < max_attempts as usize && Instant::now() < deadline
        {
            continue;
        }
        return Err(ProxyError::Upstream {
            cluster: cluster.name.clone(),
            endpoint: endpoint.address.clone(),
            kind: failure,
            attempts: tried.len() as u32,
            not_retried: None,
            detail: None,
        });
    }
}

/// The client's answer: the endpoint's 101 (its upstream side parked in
/// the client's slot), or its refusal with the body read (bounded).
async fn switch_or_refuse(
    mut response: Response<Incoming>,
    client: &ClientInfo,
    client_stream: Option<OnUpgrade>,
    open: Gauge,
    attempts: usize,
) -> Response<Full<Bytes>> {
    let attempts = super::error::attempts_value(u32::try_from(attempts).unwrap_or(u32::MAX));
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream = hyper::upgrade::on(&mut response);
        let tunnel = Tunnel::new(upstream, open);
        let (mut parts, _) = response.into_parts();
        parts
            .headers
            .insert(super::error::X_LEVEE_ATTEMPTS.clone(), attempts);
        if let Some(stream) = client_stream {
            // HTTP/2: a 200 opens the tunnel (RFC 8441 §5); the HTTP/1.1
            // handshake's own headers stay on that side.
            tunnel.relay_stream(stream);
            parts.status = StatusCode::OK;
            for name in [
                header::UPGRADE,
                header::CONNECTION,
                header::SEC_WEBSOCKET_ACCEPT,
            ] {
                parts.headers.remove(name);
            }
        } else {
            client.upgrade.put(tunnel);
        }
        return Response::from_parts(parts, Full::new(Bytes::new()));
    }
    let (mut parts, body) = response.into_parts();
    let body = match Limited::new(body, REFUSAL_BODY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    super::headers::remove_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(super::error::X_LEVEE_ATTEMPTS.clone(), attempts);
    Response::from_parts(parts, Full::new(body))
}

/// What an HTTP/1.1 WebSocket handshake needs that an HTTP/2 one does not
/// carry (RFC 8441 §5): a `Sec-WebSocket-Key` (levee's own; the endpoint's
/// `Sec-WebSocket-Accept` answers it and is not passed on).
fn websocket_handshake(headers: &mut http::HeaderMap, upgrade: Option<&HeaderValue>) {
    use base64::Engine;
    let websocket =
        upgrade.is_some_and(|protocol| protocol.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if websocket && !headers.contains_key(header::SEC_WEBSOCKET_KEY) {
        let nonce: [u8; 16] = rand::random();
        let key = base64::engine::general_purpose::STANDARD.encode(nonce);
        if let Ok(key) = HeaderValue::from_str(&key) {
            headers.insert(header::SEC_WEBSOCKET_KEY, key);
        }
    }
}

/// The request's head, for one attempt (the handshake has no body). An
/// HTTP/2 extended CONNECT goes upstream as the GET of an HTTP/1.1 upgrade.
fn clone_head(request: &Request<ClientBody>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = if request.method() == http::Method::CONNECT {
        http::Method::GET
    } else {
        request.method().clone()
    };
    *head.uri_mut() = request.uri().clone();
    *head.version_mut() = request.version();
    *head.headers_mut() = request.headers().clone();
    head
}
