//! One request as its access-log line tells it, in JSON or in the combined
//! format.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, Version};
use serde::Serialize;

/// One attempt of a request: where it went and how it ended (`200`,
/// `connect-failed`, `timeout`, `cancelled`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptLog {
    /// The endpoint, `host:port`.
    pub endpoint: String,
    /// Its status code, or the failure's kind.
    pub outcome: String,
}

/// What an access-log line says about one request.
#[derive(Debug, Clone, Serialize)]
pub struct AccessRecord {
    /// When the request head arrived (RFC 3339, UTC, milliseconds).
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    /// The client's address.
    pub client: IpAddr,
    /// The listener.
    pub listener: String,
    /// Request method.
    #[serde(serialize_with = "display")]
    pub method: Method,
    /// `Host` (or the HTTP/2 authority).
    pub host: Option<String>,
    /// Path and query.
    pub path: String,
    /// `HTTP/1.1`, `HTTP/2.0`.
    #[serde(serialize_with = "debug")]
    pub protocol: Version,
    /// The status the client got.
    pub status: u16,
    /// Body bytes sent to the client.
    pub bytes: u64,
    /// From the request head to the response's last byte (or the client
    /// leaving), in milliseconds.
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
    /// The route (`listener/route`, or the listener for its default).
    pub route: Option<String>,
    /// The cluster.
    pub cluster: Option<String>,
    /// The endpoint whose response the client got.
    pub endpoint: Option<String>,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptLog>,
    /// `hit`, `miss`, `revalidated`, `stale` (cached clusters only).
    pub cache: Option<String>,
    /// When levee answered itself: which rule (`shed`, `breaker-open`,
    /// `no-endpoint`, `upstream`, `deadline`, ...).
    pub levee_error: Option<&'static str>,
    /// The rule's own words (`queue-full`, the breaker's reason, ...).
    pub reason: Option<String>,
    /// `Referer`, for the combined format.
    #[serde(skip)]
    pub referer: Option<String>,
    /// `User-Agent`, for the combined format.
    #[serde(skip)]
    pub user_agent: Option<String>,
}

impl AccessRecord {
    /// A record of `request` from `client`, as it arrived at `time`; the
    /// answer's fields are filled in later.
    pub fn of<B>(
        listener: &str,
        request: &http::Request<B>,
        client: IpAddr,
        time: SystemTime,
    ) -> AccessRecord {
        let header = |headers: &HeaderMap, name| {
            headers
                .get(name)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        };
        let host = request
            .uri()
            .authority()
            .map(|authority| authority.as_str().to_owned())
            .or_else(|| header(request.headers(), http::header::HOST));
        AccessRecord {
            time,
            client,
            listener: listener.to_owned(),
            method: request.method().clone(),
            host,
            path: request
                .uri()
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |path| path.as_str().to_owned()),
            protocol: request.version(),
            status: 0,
            bytes: 0,
            duration: Duration::ZERO,
            route: None,
            cluster: None,
            endpoint: None,
            attempts: Vec::new(),
            cache: None,
            levee_error: None,
            reason: None,
            referer: header(request.headers(), http::header::REFERER),
            user_agent: header(request.headers(), http::header::USER_AGENT),
        }
    }

    /// The JSON line (without its newline).
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|error| {
            format!("{{\"error\":\"access record not serializable: {error}\"}}")
        })
    }

    /// The Apache/nginx combined line (without its newline):
    /// `client - - [30/Nov/2026:14:55:02 +0000] "GET /a HTTP/1.1" 200 14 "referer" "agent"`.
    pub fn combined(&self) -> String {
        let quoted = |value: &Option<String>| match value {
            Some(value) => format!("\"{}\"", escape(value)),
            None => "\"-\"".to_owned(),
        };
        format!(
            "{} - - [{}] \"{} {} {:?}\" {} {} {} {}",
            self.client,
            clf_time(self.time),
            self.method,
            escape(&self.path),
            self.protocol,
            self.status,
            self.bytes,
            quoted(&self.referer),
            quoted(&self.user_agent),
        )
    }
}

/// `"` and control characters escaped, as nginx does in its logs, so a
/// client cannot forge a line or a field.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                escaped.push('\\');
                escaped.push(c);
            }
            c if c.is_control() => escaped.push_str(&format!("\\x{:02X}", u32::from(c))),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The common log format's time: `30/Nov/2026:14:55:02 +0000` (UTC).
fn clf_time(time: SystemTime) -> String {
    // RFC 3339 "2026-11-30T14:55:02Z" rearranged; no calendar code needed.
    let text = humantime::format_rfc3339_seconds(time).to_string();
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = text
        .get(5..7)
        .and_then(|month| month.parse::<usize>().ok())
        .and_then(|month| MONTHS.get(month.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{}/{month}/{}:{} +0000",
        text.get(8..10).unwrap_or("01"),
        text.get(0..4).unwrap_or("1970"),
        text.get(11..19).unwrap_or("00:00:00")
    )
}

fn rfc3339<S: serde::Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_rfc3339_millis(*time))
}

fn display<S: serde::Serializer, T: std::fmt::Display>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn debug<S: serde::Serializer, T: std::fmt::Debug>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_args!("{value:?}"))
}

fn millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64((duration.as_secs_f64() * 1_000_000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AccessRecord {
        let request = http::Request::get("/a?b=1")
            .header("host", "example.com")
            .header("user-agent", "curl/8 \"quoted\"")
            .body(())
            .unwrap();
        let mut record = AccessRecord::of(
            "web",
            &request,
            "127.0.0.1".parse().unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_050_502),
        );
        record.status = 200;
        record.bytes = 14;
        record
    }

    #[test]
    fn combined_is_the_apache_format_with_quotes_escaped() {
        assert_eq!(
            record().combined(),
            "127.0.0.1 - - [30/Nov/2026:14:55:02 +0000] \"GET /a?b=1 HTTP/1.1\" 200 14 \"-\" \"curl/8 \\\"quoted\\\"\""
        );
    }

    #[test]
    fn json_has_every_field() {
        let value: serde_json::Value = serde_json::from_str(&record().json()).unwrap();
        assert_eq!(value["time"], "2026-11-30T14:55:02.000Z");
        assert_eq!(value["method"], "GET");
        assert_eq!(value["host"], "example.com");
        assert_eq!(value["path"], "/a?b=1");
        assert_eq!(value["protocol"], "HTTP/1.1");
        assert_eq!(value["status"], 200);
        assert_eq!(value["bytes"], 14);
        assert!(value["attempts"].as_array().unwrap().is_empty());
        assert!(value.get("user_agent").is_none());
    }
}
