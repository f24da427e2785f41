//! levee's own HTTP/1.1 server for the requests most traffic is made of:
//! HTTP/1.1, a complete head, no body, no upgrade, no `Expect`, and no
//! `Connection`, `TE` or framing field. Such a request is read and answered
//! here, in the connection's task, without hyper's connection state machine
//! (see bench/README.md for what that saves per request). Anything else
//! (a body, an upgrade, a `HEAD`, HTTP/1.0, a head that does not parse) is
//! handed to hyper with the bytes read so far (`http.rs`), so hyper still
//! answers every request that needs judgement, malformed ones included.
//!
//! Written by hand, not with a crate: the split between the requests levee
//! answers and those it leaves to hyper is levee's own; the parsing is
//! `httparse`'s (as in hyper), and the response head follows hyper's server
//! rules so that a client sees the same bytes either way.

use std::cell::RefCell;
use std::error::Error as StdError;
use std::fmt::Write as _;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRAILER, TRANSFER_ENCODING};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
use http_body::Body;
use http_body_util::BodyExt;
use smallvec::SmallVec;
use tokio::io::AsyncWriteExt;

use super::io::ClientIo;
use super::limits::ConnectionLimits;
use crate::upstream::ClientBody;
use crate::upstream::http1::{ends_with_chunked, has_token, length_of, push_chunk_size};

/// A head still incomplete past this many bytes goes to hyper, whose limit
/// is higher.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Header fields parsed without a heap allocation (hyper's default limit);
/// a request with more goes to hyper.
const INLINE_HEADERS: usize = ConnectionLimits::HYPER_MAX_HEADERS;
/// Fields levee may add to the request on its way upstream.
const LEVEE_FIELDS: usize = 4;
/// A data frame at least this large is written from its own buffer rather
/// than copied behind the head.
const COPY_BELOW: usize = 8 * 1024;
/// Buffered response bytes are written out once this many are waiting.
const FLUSH_AT: usize = 64 * 1024;

/// What the bytes read so far hold.
#[allow(
    clippy::large_enum_variant,
    reason = "one per request, taken apart at once: a box would be an allocation per request"
)]
pub(crate) enum Head {
    /// A request levee answers itself; its head is gone from the buffer.
    Simple(Request<ClientBody>),
    /// A request for hyper (or a head hyper must judge): the buffer is as
    /// it was.
    ForHyper,
    /// Not a whole head yet.
    Partial,
}

/// Where a field's name and value lie in the head: start and end of each.
type Span = [u32; 4];

/// Read the request head at the start of `buf`, if it is a simple one.
pub(crate) fn parse(buf: &mut BytesMut, max_headers: usize) -> Head {
    // Filled in place: returned from the block below, the array would be
    // copied whole on every request.
    let mut spans: SmallVec<[Span; 24]> = SmallVec::new();
    let (length, method, target) = {
        let mut fields = [MaybeUninit::<httparse::Header<'_>>::uninit(); INLINE_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        let limit = max_headers.min(INLINE_HEADERS);
        let length = match request.parse_with_uninit_headers(buf, &mut fields[..limit]) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_BYTES => return Head::Partial,
            // Too long, too many fields, malformed: hyper's to answer.
            _ => return Head::ForHyper,
        };
        if request.version != Some(1) {
            return Head::ForHyper;
        }
        let method = match request.method {
            Some("GET") => Method::GET,
            Some(other) => match Method::from_bytes(other.as_bytes()) {
                Ok(method) if method != Method::HEAD && method != Method::CONNECT => method,
                _ => return Head::ForHyper,
            },
            None => return Head::ForHyper,
        };
        let base = buf.as_ptr() as usize;
        let offset = |at: *const u8| (at as usize - base) as u32;
        for field in request.headers.iter() {
            if needs_hyper(field.name.as_bytes()) {
                return Head::ForHyper;
            }
            let name = offset(field.name.as_ptr());
            let value = offset(field.value.as_ptr());
            spans.push([
                name,
                name + field.name.len() as u32,
                value,
                value + field.value.len() as u32,
            ]);
        }
        let Some(path) = request.path else {
            return Head::ForHyper;
        };
        let start = offset(path.as_ptr()) as usize;
        (length, method, start..start + path.len())
    };
    let head = buf.split_to(length).freeze();
    match build(&head, method, target, &spans) {
        Some(request) => Head::Simple(request),
        None => {
            // Put the head back for hyper (rare: a target or a field that
            // `http` refuses).
            let mut whole = BytesMut::with_capacity(head.len() + buf.len());
            whole.extend_from_slice(&head);
            whole.extend_from_slice(buf);
            *buf = whole;
            Head::ForHyper
        }
    }
}

/// Fields that make a request hyper's: framing, connection management,
/// upgrades, `Expect` and `TE`.
fn needs_hyper(name: &[u8]) -> bool {
    const FIELDS: [&[u8]; 7] = [
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"upgrade",
        b"expect",
        b"te",
        b"http2-settings",
    ];
    FIELDS
        .iter()
        .any(|field| field.len() == name.len() && field.eq_ignore_ascii_case(name))
}

/// The request whose head is `head`; `None` if `http` refuses a part.
fn build(
    head: &Bytes,
    method: Method,
    target: std::ops::Range<usize>,
    spans: &[Span],
) -> Option<Request<ClientBody>> {
    let uri = Uri::from_maybe_shared(head.slice(target)).ok()?;
    let mut headers = HeaderMap::with_capacity(spans.len() + LEVEE_FIELDS);
    for &[name_start, name_end, value_start, value_end] in spans {
        let name = HeaderName::from_bytes(&head[name_start as usize..name_end as usize]).ok()?;
        let value =
            HeaderValue::from_maybe_shared(head.slice(value_start as usize..value_end as usize))
                .ok()?;
        headers.append(name, value);
    }
    let mut request = Request::new(ClientBody::Empty);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Some(request)
}

/// How a response body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// Exactly this many bytes (0: none).
    Length(u64),
    Chunked,
    /// Until the connection closes.
    Close,
}

/// What the connection does after a response.
pub(crate) enum Served {
    KeepAlive,
    Close,
    Failed(Box<dyn StdError + Send + Sync>),
}

/// Send `response` on `io`; `out` is the connection's write buffer (empty
/// between responses).
pub(crate) async fn respond<B>(
    io: &mut ClientIo,
    response: Response<B>,
    out: &mut BytesMut,
) -> Served
where
    B: Body,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let (head, body) = response.into_parts();
    if head.status.is_informational() {
        // Never produced for a simple request (no upgrade, no `Expect`).
        return Served::Failed("1xx response to a simple request".into());
    }
    let ended = body.is_end_stream();
    let (framing, close) = encode_head(&head, body.size_hint().exact(), ended, out);
    drop(head);
    // Pinned here once, and dropped in place (its connection back in the
    // pool, its response counted as finished) before the last bytes go
    // out, as with hyper.
    let mut body = std::pin::pin!(Some(body));
    if let Some(body) = body.as_mut().as_pin_mut()
        && framing != Framing::Length(0)
        && let Err(error) = send_frames(io, body, framing, out).await
    {
        return Served::Failed(error);
    }
    body.set(None);
    if let Err(error) = flush(io, out).await {
        return Served::Failed(error.into());
    }
    if close || framing == Framing::Close {
        Served::Close
    } else {
        Served::KeepAlive
    }
}

/// Append the response head to `out` by hyper's server rules for a request
/// that is neither `HEAD` nor `CONNECT`; returns the body's framing and
/// whether the connection closes after it.
fn encode_head(
    head: &http::response::Parts,
    length: Option<u64>,
    ended: bool,
    out: &mut BytesMut,
) -> (Framing, bool) {
    let status = head.status;
    let http10 = head.version == Version::HTTP_10;
    out.reserve(64 + head.headers.len() * 32);
    if !http10 && status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
        out.extend_from_slice(status.as_str().as_bytes());
        out.put_u8(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let can_have_body = !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    let mut framing = None;
    let mut close = false;
    let mut wrote_date = false;
    // A field written as one line of comma-joined values, still open.
    let mut open: Option<&HeaderName> = None;
    let mut chunked_last = true;
    for (name, value) in head.headers.iter() {
        if open.is_some_and(|line| line != name) {
            end_line(out, &mut open, &mut chunked_last);
        }
        match *name {
            CONTENT_LENGTH => {
                // An ended body: the length is written below (0). Otherwise
                // the first value, trusted as hyper trusts it.
                if ended || framing.is_some() {
                    continue;
                }
                let Some(length) = length.or_else(|| length_of(value)) else {
                    continue;
                };
                framing = Some(Framing::Length(length));
                write_field(out, name, value);
                continue;
            }
            TRANSFER_ENCODING | TRAILER if http10 || !can_have_body => continue,
            TRANSFER_ENCODING => {
                framing = Some(Framing::Chunked);
                chunked_last = ends_with_chunked(value);
            }
            CONNECTION => close |= has_token(value, "close"),
            DATE => wrote_date = true,
            _ => {}
        }
        if matches!(*name, TRANSFER_ENCODING | TRAILER | CONNECTION) {
            // One line for all the values.
            if open.is_some() {
                out.extend_from_slice(b", ");
            } else {
                out.extend_from_slice(name.as_str().as_bytes());
                out.extend_from_slice(b": ");
                open = Some(name);
            }
            out.extend_from_slice(value.as_bytes());
            continue;
        }
        write_field(out, name, value);
    }
    end_line(out, &mut open, &mut chunked_last);
    let framing = match framing {
        Some(framing) => framing,
        None if ended || length == Some(0) => {
            if can_have_body {
                out.extend_from_slice(b"content-length: 0\r\n");
            }
            Framing::Length(0)
        }
        None => match length {
            Some(length) if can_have_body => {
                // Writing to a `BytesMut` cannot fail.
                let _ = write!(out, "content-length: {length}\r\n");
                Framing::Length(length)
            }
            Some(_) => Framing::Length(0),
            None if http10 || !can_have_body => Framing::Close,
            None => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked
            }
        },
    };
    let framing = if can_have_body {
        framing
    } else {
        Framing::Length(0)
    };
    if !wrote_date {
        out.extend_from_slice(b"date: ");
        push_date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (framing, close)
}

fn write_field(out: &mut BytesMut, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// End a comma-joined line; `chunked` is added to a `Transfer-Encoding`
/// whose last coding is another.
fn end_line(out: &mut BytesMut, open: &mut Option<&HeaderName>, chunked_last: &mut bool) {
    if let Some(name) = open.take() {
        if *name == TRANSFER_ENCODING && !*chunked_last {
            out.extend_from_slice(b", chunked");
        }
        *chunked_last = true;
        out.extend_from_slice(b"\r\n");
    }
}

/// Send `body` framed as `framing`, `out` (the head) first, up to its last
/// bytes, which stay in `out`. Written as the body comes: buffered while
/// frames are ready, flushed before waiting.
async fn send_frames<B>(
    io: &mut ClientIo,
    mut body: Pin<&mut B>,
    framing: Framing,
    out: &mut BytesMut,
) -> Result<(), Box<dyn StdError + Send + Sync>>
where
    B: Body,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut left = match framing {
        Framing::Length(length) => Some(length),
        Framing::Chunked | Framing::Close => None,
    };
    loop {
        let frame = match body.as_mut().frame().now_or_never() {
            Some(frame) => frame,
            None => {
                flush(io, out).await?;
                body.as_mut().frame().await
            }
        };
        let Some(frame) = frame else { break };
        let Ok(mut data) = frame.map_err(Into::into)?.into_data() else {
            // Trailers: never sent to a request that did not say `TE:
            // trailers` (as hyper), and simple requests do not.
            continue;
        };
        let size = data.remaining();
        if size == 0 {
            continue;
        }
        if let Some(left) = &mut left {
            *left = left
                .checked_sub(size as u64)
                .ok_or("response body longer than its Content-Length")?;
        }
        if framing == Framing::Chunked {
            push_chunk_size(size, out);
        }
        if size < COPY_BELOW {
            out.put(&mut data);
        } else {
            flush(io, out).await?;
            io.write_all_buf(&mut data).await?;
        }
        if framing == Framing::Chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= FLUSH_AT {
            flush(io, out).await?;
        }
    }
    if left.is_some_and(|left| left > 0) {
        return Err("response body shorter than its Content-Length".into());
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    Ok(())
}

/// Write out what `out` holds.
async fn flush(io: &mut ClientIo, out: &mut BytesMut) -> std::io::Result<()> {
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    io.flush().await
}

/// `Date` as of now (IMF-fixdate), formatted once per second per thread.
fn push_date(out: &mut BytesMut) {
    thread_local! {
        static CACHED: RefCell<(u64, Bytes)> = const { RefCell::new((u64::MAX, Bytes::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            *cached = (second, Bytes::from(httpdate::fmt_http_date(now)));
        }
        out.extend_from_slice(&cached.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> (Head, BytesMut) {
        let mut buf = BytesMut::from(text);
        (parse(&mut buf, INLINE_HEADERS), buf)
    }

    #[test]
    fn a_bodiless_get_is_simple_and_leaves_what_follows() {
        let (head, rest) = parsed("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nGET /next");
        let Head::Simple(request) = head else {
            panic!("simple")
        };
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri(), "/a?b=1");
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["host"], "x");
        assert_eq!(request.headers()["accept"], "*/*");
        assert!(request.body().is_end_stream());
        assert_eq!(&rest[..], b"GET /next");
    }

    #[test]
    fn anything_else_is_left_to_hyper_untouched() {
        for text in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nTE: trailers\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "HEAD / HTTP/1.1\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Field: x\r\n\r\n",
            "GET /\x7f HTTP/1.1\r\n\r\n",
        ] {
            let (head, rest) = parsed(text);
            assert!(matches!(head, Head::ForHyper), "{text:?}");
            assert_eq!(&rest[..], text.as_bytes(), "{text:?}");
        }
    }

    #[test]
    fn a_partial_head_waits_and_a_huge_one_goes_to_hyper() {
        assert!(matches!(parsed("GET / HTTP/1.1\r\nHost:").0, Head::Partial));
        let huge = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD_BYTES));
        assert!(matches!(parsed(&huge).0, Head::ForHyper));
    }

    #[test]
    fn more_fields_than_allowed_go_to_hyper() {
        let mut text = String::from("GET / HTTP/1.1\r\n");
        for n in 0..5 {
            text.push_str(&format!("x-{n}: y\r\n"));
        }
        text.push_str("\r\n");
        let mut buf = BytesMut::from(text.as_str());
        assert!(matches!(parse(&mut buf, 4), Head::ForHyper));
        assert!(matches!(parse(&mut buf, 5), Head::Simple(_)));
    }

    fn head_text(
        status: StatusCode,
        version: Version,
        fields: &[(&str, &str)],
        length: Option<u64>,
        ended: bool,
    ) -> (String, Framing, bool) {
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = version;
        for (name, value) in fields {
            response.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        let (parts, ()) = response.into_parts();
        let mut out = BytesMut::new();
        let (framing, close) = encode_head(&parts, length, ended, &mut out);
        let text = String::from_utf8(out.to_vec()).expect("ascii");
        // The date changes; everything else is fixed.
        let text = text
            .lines()
            .filter(|line| !line.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("\n");
        (text, framing, close)
    }

    #[test]
    fn heads_follow_hyper_framing_rules() {
        let ok = StatusCode::OK;
        let v11 = Version::HTTP_11;
        assert_eq!(
            head_text(ok, v11, &[("x-a", "1")], Some(5), false),
            (
                "HTTP/1.1 200 OK\nx-a: 1\ncontent-length: 5\n".to_owned(),
                Framing::Length(5),
                false
            )
        );
        assert_eq!(
            head_text(ok, v11, &[("content-length", "0")], Some(0), true),
            (
                "HTTP/1.1 200 OK\ncontent-length: 0\n".to_owned(),
                Framing::Length(0),
                false
            )
        );
        assert_eq!(
            head_text(ok, v11, &[], None, false),
            (
                "HTTP/1.1 200 OK\ntransfer-encoding: chunked\n".to_owned(),
                Framing::Chunked,
                false
            )
        );
        assert_eq!(
            head_text(ok, Version::HTTP_10, &[], None, false),
            ("HTTP/1.0 200 OK\n".to_owned(), Framing::Close, false)
        );
        assert_eq!(
            head_text(
                StatusCode::NOT_MODIFIED,
                v11,
                &[("etag", "\"a\"")],
                None,
                true
            ),
            (
                "HTTP/1.1 304 Not Modified\netag: \"a\"\n".to_owned(),
                Framing::Length(0),
                false
            )
        );
        assert_eq!(
            head_text(
                StatusCode::SERVICE_UNAVAILABLE,
                v11,
                &[("connection", "x"), ("connection", "close"), ("x-b", "2")],
                Some(2),
                false
            ),
            (
                "HTTP/1.1 503 Service Unavailable\nconnection: x, close\nx-b: 2\ncontent-length: 2\n"
                    .to_owned(),
                Framing::Length(2),
                true
            )
        );
        assert_eq!(
            head_text(ok, v11, &[("transfer-encoding", "gzip")], None, false),
            (
                "HTTP/1.1 200 OK\ntransfer-encoding: gzip, chunked\n".to_owned(),
                Framing::Chunked,
                false
            )
        );
        assert_eq!(
            head_text(ok, v11, &[("content-length", "7")], None, false),
            (
                "HTTP/1.1 200 OK\ncontent-length: 7\n".to_owned(),
                Framing::Length(7),
                false
            )
        );
    }

    #[test]
    fn a_date_is_added_unless_given() {
        let (parts, ()) = Response::new(()).into_parts();
        let mut out = BytesMut::new();
        encode_head(&parts, Some(0), true, &mut out);
        let text = String::from_utf8(out.to_vec()).expect("ascii");
        let date = text
            .lines()
            .find_map(|line| line.strip_prefix("date: "))
            .expect("date");
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
        assert!(text.ends_with("\r\n\r\n"));
    }
}
