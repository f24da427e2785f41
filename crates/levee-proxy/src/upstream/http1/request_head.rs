//! A request head as written to an HTTP/1.1 endpoint, and how its body is
//! framed on the wire.
//!
//! The framing rules are hyper's client rules (what levee sent before it
//! wrote requests itself), so an endpoint sees the same bytes: a body that
//! has ended sends no framing of its own; a `Transfer-Encoding` or a valid
//! `Content-Length` given by the request is respected; otherwise a body of
//! known length gets a `Content-Length` and one of unknown length is
//! chunked (but a `GET`, `HEAD` or `CONNECT` of unknown length is sent
//! without a body, as hyper does).

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, TRAILER, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};

use crate::upstream::SharedFields;

/// How a request's body goes on the wire.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BodyFraming {
    /// Exactly this many bytes (0: no body at all).
    Length(u64),
    /// Chunked; trailer fields are sent only if the request's `Trailer`
    /// field names them (RFC 9110 §6.6.2), as hyper sends them.
    Chunked { trailers: Vec<HeaderName> },
}

/// The body's length as the request body knows it.
#[derive(Clone, Copy, Debug)]
pub(super) enum BodyLength {
    /// The body has already ended: nothing to send.
    Ended,
    Known(u64),
    Unknown,
}

/// A request's header fields as they go out: the fields every attempt of
/// the request shares (kept once per request, not copied per attempt) and
/// this attempt's own (usually none: a deadline levee propagates), which
/// replace shared fields of the same name.
#[derive(Clone, Copy)]
pub(super) struct Fields<'a> {
    pub shared: &'a SharedFields,
    pub own: &'a HeaderMap,
}

impl<'a> Fields<'a> {
    /// The values of a framing field (`name`) as sent (levee never sets
    /// one in [`SharedFields::set`]).
    fn get_all(&self, name: HeaderName) -> http::header::GetAll<'a, HeaderValue> {
        if !self.own.is_empty() && self.own.contains_key(&name) {
            self.own.get_all(name)
        } else {
            self.shared.headers.get_all(name)
        }
    }

    /// Every field as sent, in order: the shared ones not replaced, then
    /// the attempt's own.
    fn each(&self, mut field: impl FnMut(&'a HeaderName, &'a HeaderValue)) {
        let own = self.own;
        self.shared.each(|name, value| {
            if own.is_empty() || !own.contains_key(name) {
                field(name, value);
            }
        });
        for (name, value) in own {
            field(name, value);
        }
    }
}

/// Framing fields the request's own must lose or gain on the wire (hyper's
/// `set_length` would change the map; levee writes the change instead, so
/// the shared fields stay as they are for the next attempt).
#[derive(Default)]
struct Adjust {
    drop_transfer_encoding: bool,
    drop_content_length: bool,
    /// Written after the request's fields: `content-length: N` or a last
    /// `transfer-encoding: chunked` (after any others, which keeps the
    /// codings' order).
    add: Option<Added>,
}

enum Added {
    Length(u64),
    Chunked,
}

/// Append the head of a request (`method`, `target` as written on the
/// request line, `version`, `fields`) to `out`, with its framing fields
/// adjusted; returns how the body must be framed and whether the request
/// asks to close the connection after it.
pub(super) fn encode(
    method: &Method,
    target: &str,
    version: Version,
    fields: Fields<'_>,
    body: BodyLength,
    out: &mut BytesMut,
) -> (BodyFraming, bool) {
    let mut seen = FramingFields::default();
    fields.each(|name, value| seen.note(name, value));
    let (framing, adjust) = frame(method, version, fields, seen, body);
    out.reserve(target.len() + 64 + (fields.shared.headers.len() + fields.own.len()) * 32);
    out.extend_from_slice(method.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(if version == Version::HTTP_10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    fields.each(|name, value| {
        let dropped = (adjust.drop_transfer_encoding && name == TRANSFER_ENCODING)
            || (adjust.drop_content_length && name == CONTENT_LENGTH);
        if !dropped {
            write_field(name, value, out);
        }
    });
    match adjust.add {
        Some(Added::Length(length)) => {
            write_field(&CONTENT_LENGTH, &HeaderValue::from(length), out);
        }
        Some(Added::Chunked) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        None => {}
    }
    out.extend_from_slice(b"\r\n");
    let close = seen.connection
        && fields
            .get_all(CONNECTION)
            .iter()
            .any(|value| has_token(value, "close"));
    (framing, close)
}

/// Append `name: value\r\n` for every field.
pub(super) fn write_fields(headers: &HeaderMap, out: &mut BytesMut) {
    for (name, value) in headers {
        write_field(name, value, out);
    }
}

fn write_field(name: &HeaderName, value: &HeaderValue, out: &mut BytesMut) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Decide the framing and how the fields must say it (hyper's client
/// rules: `set_length`).
fn frame(
    method: &Method,
    version: Version,
    fields: Fields<'_>,
    seen: FramingFields,
    body: BodyLength,
) -> (BodyFraming, Adjust) {
    let mut adjust = Adjust::default();
    let length = match body {
        BodyLength::Ended => {
            adjust.drop_transfer_encoding = seen.transfer_encoding;
            return (BodyFraming::Length(0), adjust);
        }
        BodyLength::Known(length) => Some(length),
        BodyLength::Unknown => None,
    };
    let given_length = seen.content_length.flatten();
    if version == Version::HTTP_10 {
        // HTTP/1.0 knows no chunked framing.
        adjust.drop_transfer_encoding = seen.transfer_encoding;
        let framing = match (given_length, length) {
            (Some(given), _) => BodyFraming::Length(given),
            (None, Some(length)) => set_length(&mut adjust, seen, length),
            (None, None) => BodyFraming::Length(0),
        };
        return (framing, adjust);
    }
    if seen.transfer_encoding {
        if !fields
            .get_all(TRANSFER_ENCODING)
            .iter()
            .next_back()
            .is_some_and(ends_with_chunked)
        {
            adjust.add = Some(Added::Chunked);
        }
        adjust.drop_content_length = seen.content_length.is_some();
        return (chunked(fields), adjust);
    }
    let framing = match (given_length, length) {
        (Some(given), _) => BodyFraming::Length(given),
        (None, Some(length)) => set_length(&mut adjust, seen, length),
        (None, None) if matches!(*method, Method::GET | Method::HEAD | Method::CONNECT) => {
            BodyFraming::Length(0)
        }
        (None, None) => {
            adjust.drop_content_length = seen.content_length.is_some();
            adjust.add = Some(Added::Chunked);
            chunked(fields)
        }
    };
    (framing, adjust)
}

/// A known length where the request gave no valid one: an invalid
/// `Content-Length` is replaced.
fn set_length(adjust: &mut Adjust, seen: FramingFields, length: u64) -> BodyFraming {
    adjust.drop_content_length = seen.content_length.is_some();
    adjust.add = Some(Added::Length(length));
    BodyFraming::Length(length)
}

fn chunked(fields: Fields<'_>) -> BodyFraming {
    let trailers = fields
        .get_all(TRAILER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|names| names.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    BodyFraming::Chunked { trailers }
}

/// One `Content-Length` field's value: digits, or a list of equal ones
/// (RFC 9110 §8.6), with optional spaces around each. Read byte by byte
/// rather than split, trimmed and parsed: it runs for every response, and
/// that was 277 instructions for a 4-digit value (callgrind), this ~40.
pub(crate) fn length_of(value: &HeaderValue) -> Option<u64> {
    let mut found: Option<u64> = None;
    // The element being read, and whether a space followed its digits.
    let mut current: Option<u64> = None;
    let mut spaced = false;
    for &byte in value.as_bytes() {
        match byte {
            b'0'..=b'9' if !spaced => {
                let digit = u64::from(byte - b'0');
                current = Some(current.unwrap_or(0).checked_mul(10)?.checked_add(digit)?);
            }
            b' ' | b'\t' => spaced = current.is_some(),
            b',' => {
                let length = current.take()?;
                if found.is_some_and(|earlier| earlier != length) {
                    return None;
                }
                found = Some(length);
                spaced = false;
            }
            _ => return None,
        }
    }
    let length = current?;
    match found {
        Some(earlier) if earlier != length => None,
        _ => Some(length),
    }
}

/// The framing fields a message carries (`Content-Length`,
/// `Transfer-Encoding`, `Connection`), noted in one pass over its fields:
/// every request and response needs to know, and a hashed lookup of each
/// cost ~110 instructions (callgrind) where most messages have one or none.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct FramingFields {
    /// `Some` once a `Content-Length` is seen: the length, or `None` if a
    /// value is invalid or two disagree.
    pub content_length: Option<Option<u64>>,
    pub transfer_encoding: bool,
    pub connection: bool,
}

impl FramingFields {
    /// Note one field.
    pub(super) fn note(&mut self, name: &HeaderName, value: &HeaderValue) {
        if name == CONTENT_LENGTH {
            let length = length_of(value);
            self.content_length = Some(match self.content_length {
                None => length,
                Some(earlier) => earlier.filter(|&earlier| length == Some(earlier)),
            });
        } else if name == TRANSFER_ENCODING {
            self.transfer_encoding = true;
        } else if name == CONNECTION {
            self.connection = true;
        }
    }
}

/// Whether the last transfer coding is `chunked`.
pub(super) fn ends_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .next_back()
        .is_some_and(ends_with_chunked)
}

/// Whether the last coding a `Transfer-Encoding` value names is `chunked`.
pub(crate) fn ends_with_chunked(value: &HeaderValue) -> bool {
    value
        .to_str()
        .ok()
        .and_then(|codings| codings.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

/// Whether a comma-separated field value holds `token` (any case).
pub(crate) fn has_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|value| {
        value
            .split(',')
            .any(|part| part.trim().eq_ignore_ascii_case(token))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing_of(headers: &HeaderMap) -> FramingFields {
        let mut fields = FramingFields::default();
        for (name, value) in headers {
            fields.note(name, value);
        }
        fields
    }

    fn head(method: Method, headers: &mut HeaderMap, body: BodyLength) -> (String, BodyFraming) {
        let own = HeaderMap::new();
        let shared = SharedFields {
            headers: std::mem::take(headers),
            set: Default::default(),
        };
        let fields = Fields {
            shared: &shared,
            own: &own,
        };
        let mut out = BytesMut::new();
        let (framing, _) = encode(&method, "/a?b", Version::HTTP_11, fields, body, &mut out);
        (String::from_utf8(out.to_vec()).expect("ascii"), framing)
    }

    #[test]
    fn an_attempt_s_own_fields_replace_shared_ones_which_stay_as_they_are() {
        let mut shared = HeaderMap::new();
        shared.insert("host", HeaderValue::from_static("x"));
        shared.insert("x-deadline-ms", HeaderValue::from_static("900"));
        shared.insert("transfer-encoding", HeaderValue::from_static("gzip"));
        shared.insert("connection", HeaderValue::from_static("close"));
        let mut own = HeaderMap::new();
        own.insert("x-deadline-ms", HeaderValue::from_static("450"));
        let shared = SharedFields {
            headers: shared,
            set: Default::default(),
        };
        let fields = Fields {
            shared: &shared,
            own: &own,
        };
        let mut out = BytesMut::new();
        let (framing, close) = encode(
            &Method::PUT,
            "/",
            Version::HTTP_11,
            fields,
            BodyLength::Known(3),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out.to_vec()).expect("ascii"),
            "PUT / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\nconnection: close\r\n\
             x-deadline-ms: 450\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert!(matches!(framing, BodyFraming::Chunked { .. }));
        assert!(close);
        // The shared fields are not changed for the next attempt.
        assert_eq!(shared.headers.len(), 4);
        assert_eq!(shared.headers["x-deadline-ms"], "900");
        assert_eq!(shared.headers["transfer-encoding"], "gzip");
    }

    #[test]
    fn a_known_length_is_announced_and_an_ended_body_sends_nothing() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("x"));
        let (text, framing) = head(Method::POST, &mut headers, BodyLength::Known(5));
        assert_eq!(
            text,
            "POST /a?b HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\n"
        );
        assert_eq!(framing, BodyFraming::Length(5));
        let mut headers = HeaderMap::new();
        let (text, framing) = head(Method::GET, &mut headers, BodyLength::Ended);
        assert_eq!(text, "GET /a?b HTTP/1.1\r\n\r\n");
        assert_eq!(framing, BodyFraming::Length(0));
    }

    #[test]
    fn an_unknown_length_is_chunked_except_for_get() {
        let mut headers = HeaderMap::new();
        headers.insert("trailer", HeaderValue::from_static("grpc-status, x-sum"));
        let (text, framing) = head(Method::PUT, &mut headers, BodyLength::Unknown);
        assert!(
            text.ends_with("transfer-encoding: chunked\r\n\r\n"),
            "{text}"
        );
        assert_eq!(
            framing,
            BodyFraming::Chunked {
                trailers: vec![
                    HeaderName::from_static("grpc-status"),
                    HeaderName::from_static("x-sum")
                ]
            }
        );
        let mut headers = HeaderMap::new();
        let (_, framing) = head(Method::GET, &mut headers, BodyLength::Unknown);
        assert_eq!(framing, BodyFraming::Length(0));
    }

    #[test]
    fn the_request_s_own_framing_is_respected() {
        let mut headers = HeaderMap::new();
        headers.insert("content-length", HeaderValue::from_static("7"));
        let (_, framing) = head(Method::POST, &mut headers, BodyLength::Unknown);
        assert_eq!(framing, BodyFraming::Length(7));
        let mut headers = HeaderMap::new();
        headers.insert("transfer-encoding", HeaderValue::from_static("gzip"));
        headers.insert("content-length", HeaderValue::from_static("7"));
        let (text, framing) = head(Method::POST, &mut headers, BodyLength::Known(7));
        assert!(matches!(framing, BodyFraming::Chunked { .. }));
        assert!(!text.contains("content-length"), "{text}");
        assert!(text.contains("transfer-encoding: chunked"), "{text}");
    }

    #[test]
    fn a_content_length_value_is_digits_or_a_list_of_equal_ones() {
        let of = |text: &str| length_of(&HeaderValue::from_str(text).expect("value"));
        assert_eq!(of("0"), Some(0));
        assert_eq!(of("1234"), Some(1234));
        assert_eq!(of(" 42\t"), Some(42));
        assert_eq!(of("7, 7,7"), Some(7));
        assert_eq!(of("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            " ",
            "7, 8",
            "7,",
            ",7",
            "7,,7",
            "1 2",
            "+3",
            "-3",
            "0x10",
            "3a",
            "1.5",
            "18446744073709551616",
        ] {
            assert_eq!(of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn content_lengths_must_agree() {
        let mut headers = HeaderMap::new();
        headers.append("content-length", HeaderValue::from_static("3, 3"));
        headers.append("content-length", HeaderValue::from_static("3"));
        assert_eq!(framing_of(&headers).content_length, Some(Some(3)));
        headers.append("content-length", HeaderValue::from_static("4"));
        assert_eq!(framing_of(&headers).content_length, Some(None));
        headers.append("content-length", HeaderValue::from_static("3"));
        assert_eq!(framing_of(&headers).content_length, Some(None));
        let mut headers = HeaderMap::new();
        assert_eq!(framing_of(&headers).content_length, None);
        headers.insert("content-length", HeaderValue::from_static("+3"));
        assert_eq!(framing_of(&headers).content_length, Some(None));
    }
}
