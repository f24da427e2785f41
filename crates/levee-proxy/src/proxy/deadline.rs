//! Deadlines that shrink: the caller's deadline (`grpc-timeout`, or the
//! cluster's `deadline_header` in milliseconds) bounds the request's, and
//! each attempt is told the time that is actually left, not the original
//! timeout (envoy#13196): an upstream that knows it has 40 ms left does not
//! start work that takes 200.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Version};

use super::grpc;

/// How an attempt is told its time left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// `grpc-timeout: <n>m` (the call carried one).
    Grpc,
    /// `<header>: <milliseconds>` (the cluster's `deadline_header`).
    Millis(HeaderName),
}

/// The caller's own deadline, if it sent one: `grpc-timeout` on an HTTP/2
/// call, else `header` (whole milliseconds). A value that does not parse is
/// ignored (the route's timeout applies).
pub fn caller_timeout(
    version: Version,
    headers: &HeaderMap,
    header: Option<&HeaderName>,
) -> Option<Duration> {
    grpc::timeout(version, headers).or_else(|| {
        let text = headers.get(header?)?.to_str().ok()?;
        text.trim().parse::<u64>().ok().map(Duration::from_millis)
    })
}

/// How this request's attempts are told their time left: gRPC calls that
/// carried a `grpc-timeout` get it rewritten; with a `deadline_header`,
/// every request gets it; otherwise nothing is sent.
pub fn propagation(
    version: Version,
    headers: &HeaderMap,
    header: Option<&HeaderName>,
) -> Option<Propagation> {
    if version == Version::HTTP_2 && headers.contains_key(&grpc::GRPC_TIMEOUT) {
        return Some(Propagation::Grpc);
    }
    header.cloned().map(Propagation::Millis)
}

/// Write `left` into an attempt's headers, rounded down to the millisecond
/// (never promising more than there is; at least 1 ms, since 0 would mean
/// "no deadline" to some servers).
pub fn write(headers: &mut HeaderMap, propagation: &Propagation, left: Duration) {
    let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1);
    match propagation {
        // gRPC allows at most 8 digits: 99,999,999 ms is over a day.
        Propagation::Grpc => {
            let value = format!("{}m", millis.min(99_999_999));
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(grpc::GRPC_TIMEOUT.clone(), value);
            }
        }
        Propagation::Millis(name) => {
            headers.insert(name.clone(), HeaderValue::from(millis));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> HeaderName {
        HeaderName::from_static("x-request-timeout-ms")
    }

    #[test]
    fn the_callers_deadline_is_read_from_grpc_timeout_or_the_header() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-timeout-ms", HeaderValue::from_static("250"));
        assert_eq!(
            caller_timeout(Version::HTTP_11, &headers, Some(&header())),
            Some(Duration::from_millis(250))
        );
        assert_eq!(caller_timeout(Version::HTTP_11, &headers, None), None);
        headers.insert("x-request-timeout-ms", HeaderValue::from_static("soon"));
        assert_eq!(
            caller_timeout(Version::HTTP_11, &headers, Some(&header())),
            None
        );
        headers.insert(grpc::GRPC_TIMEOUT.clone(), HeaderValue::from_static("2S"));
        assert_eq!(
            caller_timeout(Version::HTTP_2, &headers, Some(&header())),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn each_attempt_is_told_the_time_left() {
        let mut headers = HeaderMap::new();
        let millis = Propagation::Millis(header());
        write(&mut headers, &millis, Duration::from_micros(73_900));
        assert_eq!(headers["x-request-timeout-ms"], "73");
        write(&mut headers, &millis, Duration::ZERO);
        assert_eq!(headers["x-request-timeout-ms"], "1");
        write(
            &mut headers,
            &Propagation::Grpc,
            Duration::from_millis(1_500),
        );
        assert_eq!(headers[&grpc::GRPC_TIMEOUT], "1500m");

        let mut grpc_call = HeaderMap::new();
        grpc_call.insert(grpc::GRPC_TIMEOUT.clone(), HeaderValue::from_static("1S"));
        assert_eq!(
            propagation(Version::HTTP_2, &grpc_call, Some(&header())),
            Some(Propagation::Grpc)
        );
        assert_eq!(propagation(Version::HTTP_11, &HeaderMap::new(), None), None);
        assert_eq!(
            propagation(Version::HTTP_11, &HeaderMap::new(), Some(&header())),
            Some(millis)
        );
    }
}
