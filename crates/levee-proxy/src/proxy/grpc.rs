//! gRPC awareness: a gRPC call answers HTTP 200 and says how it went in
//! `grpc-status` (in the headers of a trailers-only answer, or in the
//! trailers). levee judges the call by that status, with the blame rules of
//! HTTP: `UNAVAILABLE` is the node's failure (retried when the call is
//! idempotent), `INVALID_ARGUMENT`, `NOT_FOUND`, `PERMISSION_DENIED` and the
//! like are the caller's and never count against a node. `grpc-timeout`
//! bounds levee's own deadline, and levee's own errors on a gRPC call are
//! gRPC errors a client library can read.
//!
//! Each check starts with the HTTP version: gRPC is HTTP/2 only, so
//! HTTP/1.1 traffic never pays for a header lookup here.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode, Version};
use http_body_util::Full;

static GRPC_STATUS: header::HeaderName = header::HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: header::HeaderName = header::HeaderName::from_static("grpc-message");
pub(super) static GRPC_TIMEOUT: header::HeaderName =
    header::HeaderName::from_static("grpc-timeout");

/// Whether a message with `version` and `headers` is a gRPC call or answer.
pub fn is_grpc(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_2
        && headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|kind| kind.as_bytes().starts_with(b"application/grpc"))
}

/// The deadline a gRPC call carries (`grpc-timeout`, e.g. `250m`, `5S`),
/// if it is one and carries a valid one.
pub fn timeout(version: Version, headers: &HeaderMap) -> Option<Duration> {
    if version != Version::HTTP_2 {
        return None;
    }
    let text = headers.get(&GRPC_TIMEOUT)?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    // At most 8 digits (the gRPC HTTP/2 protocol).
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// The `grpc-status` in `headers`, if there is a valid one.
pub fn status_in(headers: &HeaderMap) -> Option<u32> {
    headers
        .get(&GRPC_STATUS)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The status an answer is judged by: for a gRPC answer that carries its
/// `grpc-status` in its headers (trailers-only), the HTTP status that
/// stands for it; otherwise its own.
pub fn judged_status<B>(response: &Response<B>) -> u16 {
    let status = response.status().as_u16();
    if response.version() != Version::HTTP_2 || status != 200 {
        return status;
    }
    status_in(response.headers()).map_or(status, http_equivalent)
}

/// The HTTP status standing for a gRPC status, for the blame and retry
/// rules (the reverse of gRPC's HTTP-to-gRPC mapping): the node's failures
/// are 5xx, the caller's 4xx.
pub fn http_equivalent(code: u32) -> u16 {
    match code {
        0 => 200,
        // CANCELLED: the client gave up.
        1 => 499,
        // UNKNOWN, INTERNAL, DATA_LOSS: the server's own errors.
        2 | 13 | 15 => 500,
        // INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE.
        3 | 9 | 11 => 400,
        // DEADLINE_EXCEEDED.
        4 => 504,
        5 => 404,
        // ALREADY_EXISTS, ABORTED.
        6 | 10 => 409,
        7 => 403,
        // RESOURCE_EXHAUSTED: the server sheds load (a quota or overload),
        // not a broken node.
        8 => 429,
        12 => 501,
        // UNAVAILABLE: the node cannot serve now; safe to retry.
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

/// levee's own answer to a gRPC call, as gRPC has it: HTTP 200 with
/// `grpc-status` and `grpc-message` (trailers-only), so that the client
/// library reports the real reason instead of a protocol error.
pub fn error_response(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let code: u32 = match status.as_u16() {
        400 | 431 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        408 | 504 => 4,
        429 => 8,
        502 | 503 => 14,
        _ => 2,
    };
    let mut response = Response::new(Full::new(Bytes::new()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(GRPC_STATUS.clone(), HeaderValue::from(code));
    if let Ok(message) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert(GRPC_MESSAGE.clone(), message);
    }
    response
}

/// `grpc-message` is percent-encoded UTF-8: printable ASCII but `%` as is.
fn percent_encode(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    header::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn grpc_timeout_units() {
        let of = |value| timeout(Version::HTTP_2, &headers(&[("grpc-timeout", value)]));
        assert_eq!(of("250m"), Some(Duration::from_millis(250)));
        assert_eq!(of("5S"), Some(Duration::from_secs(5)));
        assert_eq!(of("2M"), Some(Duration::from_secs(120)));
        assert_eq!(of("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(of("10u"), Some(Duration::from_micros(10)));
        assert_eq!(of("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(of("123456789S"), None, "at most 8 digits");
        assert_eq!(of("S"), None);
        assert_eq!(of("5s"), None);
        assert_eq!(
            timeout(Version::HTTP_11, &headers(&[("grpc-timeout", "5S")])),
            None,
            "gRPC is HTTP/2"
        );
    }

    #[test]
    fn the_node_fails_on_unavailable_and_the_caller_on_invalid_argument() {
        assert_eq!(http_equivalent(14), 503);
        assert_eq!(http_equivalent(3), 400);
        assert_eq!(http_equivalent(5), 404);
        assert_eq!(http_equivalent(7), 403);
        assert_eq!(http_equivalent(8), 429);
        assert_eq!(http_equivalent(0), 200);
        let mut response = Response::new(());
        *response.version_mut() = Version::HTTP_2;
        response
            .headers_mut()
            .insert(GRPC_STATUS.clone(), HeaderValue::from_static("14"));
        assert_eq!(judged_status(&response), 503);
        *response.version_mut() = Version::HTTP_11;
        assert_eq!(judged_status(&response), 200, "HTTP/1.1 is not gRPC");
    }

    #[test]
    fn levee_errors_become_grpc_errors() {
        let response = error_response(StatusCode::BAD_GATEWAY, "upstream refused 100%");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["grpc-status"], "14");
        assert_eq!(
            response.headers()["grpc-message"],
            "upstream refused 100%25"
        );
        assert_eq!(response.headers()["content-type"], "application/grpc");
        assert_eq!(
            error_response(StatusCode::GATEWAY_TIMEOUT, "").headers()["grpc-status"],
            "4"
        );
    }
}
