//! One request as its access-log line tells it, in JSON or in the combined
//! format.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, Version};

use crate::config::AccessLogFormat;
use std::fmt::Write as _;

/// One attempt of a request: where it went and how it ended (`200`,
/// `connect-failed`, `timeout`, `cancelled`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptLog {
    /// The endpoint, `host:port`.
    pub endpoint: String,
    /// Its status code, or the failure's kind.
    pub outcome: String,
}

/// What an access-log line says about one request.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// When the request head arrived (RFC 3339, UTC, milliseconds).
    pub time: SystemTime,
    /// The client's address.
    pub client: IpAddr,
    /// The listener.
    pub listener: String,
    /// Request method.
    pub method: Method,
    /// `Host` (or the HTTP/2 authority).
    pub host: Option<String>,
    /// Path and query.
    pub path: String,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub protocol: Version,
    /// The status the client got.
    pub status: u16,
    /// Body bytes sent to the client.
    pub bytes: u64,
    /// From the request head to the response's last byte (or the client
    /// leaving), in milliseconds.
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
    pub referer: Option<String>,
    /// `User-Agent`, for the combined format.
    pub user_agent: Option<String>,
}

impl AccessRecord {
    /// A record of `request` from `client`, as it arrived at `time`; the
    /// answer's fields are filled in later. `Referer` and `User-Agent` are
    /// kept only for the `combined` format, the one that prints them.
    pub fn of<B>(
        listener: &str,
        request: &http::Request<B>,
        client: IpAddr,
        time: SystemTime,
        format: AccessLogFormat,
    ) -> AccessRecord {
        let combined = format == AccessLogFormat::Combined;
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
            referer: combined
                .then(|| header(request.headers(), http::header::REFERER))
                .flatten(),
            user_agent: combined
                .then(|| header(request.headers(), http::header::USER_AGENT))
                .flatten(),
        }
    }

    /// The JSON line (without its newline).
    pub fn json(&self) -> String {
        // Written by hand rather than with serde_json: keys need no
        // escaping and most values none either, and serde_json's escaping
        // of every fragment was most of a line's cost (callgrind: 7.6k of
        // 9.4k instructions per line).
        let mut out = String::with_capacity(384);
        // An RFC 3339 time and an IP address need no escaping.
        let _ = write!(
            out,
            "{{\"time\":\"{}\",\"client\":\"{}\"",
            humantime::format_rfc3339_millis(self.time),
            self.client
        );
        out.push_str(",\"listener\":");
        string(&mut out, &self.listener);
        out.push_str(",\"method\":");
        string(&mut out, self.method.as_str());
        out.push_str(",\"host\":");
        optional(&mut out, self.host.as_deref());
        out.push_str(",\"path\":");
        string(&mut out, &self.path);
        // Milliseconds with three decimals, from integers (formatting a
        // float costs more than the rest of the line).
        let micros = self.duration.as_micros();
        let _ = write!(
            out,
            ",\"protocol\":\"{}\",\"status\":{},\"bytes\":{},\"duration_ms\":{}.{:03}",
            version_str(self.protocol),
            self.status,
            self.bytes,
            micros / 1000,
            micros % 1000
        );
        out.push_str(",\"route\":");
        optional(&mut out, self.route.as_deref());
        out.push_str(",\"cluster\":");
        optional(&mut out, self.cluster.as_deref());
        out.push_str(",\"endpoint\":");
        optional(&mut out, self.endpoint.as_deref());
        out.push_str(",\"attempts\":[");
        for (index, attempt) in self.attempts.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str("{\"endpoint\":");
            string(&mut out, &attempt.endpoint);
            out.push_str(",\"outcome\":");
            string(&mut out, &attempt.outcome);
            out.push('}');
        }
        out.push_str("],\"cache\":");
        optional(&mut out, self.cache.as_deref());
        out.push_str(",\"levee_error\":");
        optional(&mut out, self.levee_error);
        out.push_str(",\"reason\":");
        optional(&mut out, self.reason.as_deref());
        out.push('}');
        out
    }

    /// The Apache/nginx combined line (without its newline):
    /// `client - - [30/Nov/2026:14:55:02 +0000] "GET /a HTTP/1.1" 200 14 "referer" "agent"`.
    pub fn combined(&self) -> String {
        let quoted = |value: &Option<String>| match value {
            Some(value) => format!("\"{}\"", escape(value)),
            None => "\"-\"".to_owned(),
        };
        format!(
            "{} - - [{}] \"{} {} {}\" {} {} {} {}",
            self.client,
            clf_time(self.time),
            self.method,
            escape(&self.path),
            version_str(self.protocol),
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

fn version_str(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// `value` as a JSON string. Most values need no escaping: checked in one
/// pass, copied as they are; the others go through serde_json.
fn string(out: &mut String, value: &str) {
    let plain = value
        .bytes()
        .all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\' && byte != 0x7f);
    if plain {
        out.push('"');
        out.push_str(value);
        out.push('"');
    } else {
        match serde_json::to_string(value) {
            Ok(escaped) => out.push_str(&escaped),
            Err(_) => out.push_str("null"),
        }
    }
}

/// A JSON string, or `null`.
fn optional(out: &mut String, value: Option<&str>) {
    match value {
        Some(value) => string(out, value),
        None => out.push_str("null"),
    }
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
            AccessLogFormat::Combined,
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
    fn json_escapes_what_a_client_sent() {
        let mut record = record();
        record.path = "/a\"b\\c\u{1}".to_owned();
        record.host = None;
        record.attempts = vec![AttemptLog {
            endpoint: "10.0.0.1:80".to_owned(),
            outcome: "200".to_owned(),
        }];
        let value: serde_json::Value = serde_json::from_str(&record.json()).unwrap();
        assert_eq!(value["path"], "/a\"b\\c\u{1}");
        assert!(value["host"].is_null());
        assert_eq!(value["attempts"][0]["outcome"], "200");
        assert_eq!(value["duration_ms"], 0.0);
        record.duration = Duration::from_micros(12_345_678);
        let value: serde_json::Value = serde_json::from_str(&record.json()).unwrap();
        assert_eq!(value["duration_ms"], 12345.678);
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
