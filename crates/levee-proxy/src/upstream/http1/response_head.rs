//! An endpoint's response head, parsed with `httparse` from the bytes read
//! so far, and how its body is delimited (RFC 9112 §6.3).

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::CONNECTION;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};

use smallvec::SmallVec;

use super::request_head::{FramingFields, ends_chunked, has_token};

/// The largest response head levee reads (hyper's default buffer limit).
pub(super) const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;

/// Fields levee may add to a response before it goes to the client.
const LEVEE_FIELDS: usize = 4;

/// Header fields parsed without a heap allocation (hyper's default limit).
pub(super) const INLINE_HEADERS: usize = 100;

/// How a response's body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyEnd {
    /// After this many bytes (0: there is none).
    Length(u64),
    /// At the chunked coding's last chunk.
    Chunked,
    /// When the endpoint closes the connection.
    Close,
}

/// A complete response head.
#[derive(Debug)]
pub(super) struct Head {
    pub response: Response<()>,
    pub body: BodyEnd,
    /// The connection may carry another request after this response.
    pub keep_alive: bool,
}

/// Why a response could not be read: the endpoint broke HTTP/1.1.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid response head: {0}")]
    Syntax(#[from] httparse::Error),
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    TooLarge,
    #[error("invalid header field {0:?}")]
    Field(String),
    #[error("invalid or disagreeing Content-Length")]
    ContentLength,
    #[error("Transfer-Encoding in an HTTP/1.0 response")]
    TransferEncodingInHttp10,
    #[error("status {0} answers a request that did not ask to switch protocols")]
    UnexpectedSwitch(u16),
    #[error("invalid chunked body: {0}")]
    Chunk(&'static str),
}

/// Parse the response head at the start of `buf` (a response to `method`),
/// skipping interim (1xx) responses: `None` until the head is complete. The
/// head's bytes are taken out of `buf`; what follows stays.
pub(super) fn parse(
    buf: &mut BytesMut,
    method: &Method,
    max_headers: usize,
) -> Result<Option<Head>, ProtocolError> {
    loop {
        match parse_one(buf, method, max_headers)? {
            Parsed::Partial if buf.len() > MAX_HEAD_BYTES => return Err(ProtocolError::TooLarge),
            Parsed::Partial => return Ok(None),
            Parsed::Interim if buf.is_empty() => return Ok(None),
            Parsed::Interim => {}
            Parsed::Complete(head) => return Ok(Some(head)),
        }
    }
}

enum Parsed {
    Partial,
    /// A 1xx was read and dropped: the real response follows.
    Interim,
    Complete(Head),
}

/// Where a field's name and value lie in the head: start and end of each
/// (a head is at most [`MAX_HEAD_BYTES`] long).
type Span = [u32; 4];

fn parse_one(
    buf: &mut BytesMut,
    method: &Method,
    max_headers: usize,
) -> Result<Parsed, ProtocolError> {
    // Filled in place, not returned from the block below: moved, the
    // array would be copied whole on every response.
    let mut spans: SmallVec<[Span; 24]> = SmallVec::new();
    let (length, code, version) =
        {
            let mut inline = [MaybeUninit::<httparse::Header<'_>>::uninit(); INLINE_HEADERS];
            let mut heap = Vec::new();
            let fields = if max_headers <= INLINE_HEADERS {
                &mut inline[..max_headers]
            } else {
                heap.resize(max_headers, MaybeUninit::uninit());
                &mut heap[..]
            };
            let mut response = httparse::Response::new(&mut []);
            let length = match httparse::ParserConfig::default()
                .parse_response_with_uninit_headers(&mut response, buf, fields)?
            {
                httparse::Status::Partial => return Ok(Parsed::Partial),
                httparse::Status::Complete(length) => length,
            };
            // Where each field lies, so that the values can share the head's
            // bytes instead of each being copied.
            let base = buf.as_ptr() as usize;
            let offset = |at: *const u8| (at as usize - base) as u32;
            spans.extend(response.headers.iter().map(|field| {
                let name = offset(field.name.as_ptr());
                let value = offset(field.value.as_ptr());
                [
                    name,
                    name + field.name.len() as u32,
                    value,
                    value + field.value.len() as u32,
                ]
            }));
            let version = if response.version == Some(1) {
                Version::HTTP_11
            } else {
                Version::HTTP_10
            };
            (length, response.code.unwrap_or_default(), version)
        };
    if length > MAX_HEAD_BYTES {
        return Err(ProtocolError::TooLarge);
    }
    let bytes: Bytes = buf.split_to(length).freeze();
    if (100..200).contains(&code) && code != 101 {
        return Ok(Parsed::Interim);
    }
    let status = StatusCode::from_u16(code).map_err(|_| ProtocolError::Field("status".into()))?;
    // Room for the fields levee adds on the way back (`x-levee-attempts`,
    // rate-limit and cache fields): growing a full map rehashes it (about
    // 1,000 instructions per response under callgrind).
    let mut headers = HeaderMap::with_capacity(spans.len() + LEVEE_FIELDS);
    let mut fields = FramingFields::default();
    for [name_start, name_end, value_start, value_end] in spans {
        let raw = &bytes[name_start as usize..name_end as usize];
        let name = HeaderName::from_bytes(raw)
            .map_err(|_| ProtocolError::Field(String::from_utf8_lossy(raw).into_owned()))?;
        let value =
            HeaderValue::from_maybe_shared(bytes.slice(value_start as usize..value_end as usize))
                .map_err(|_| ProtocolError::Field(name.as_str().to_owned()))?;
        fields.note(&name, &value);
        headers.append(name, value);
    }
    let mut keep_alive = version == Version::HTTP_11;
    if fields.connection {
        let connection = headers.get_all(CONNECTION);
        if connection.iter().any(|value| has_token(value, "close")) {
            keep_alive = false;
        } else if !keep_alive {
            keep_alive = connection
                .iter()
                .any(|value| has_token(value, "keep-alive"));
        }
    }
    if code == 101 {
        // levee asks to switch protocols on connections of their own
        // (`EndpointPool::send_upgrade`), never here.
        return Err(ProtocolError::UnexpectedSwitch(code));
    }
    let body = body_end(status, method, version, &headers, fields)?;
    let mut head = Response::new(());
    *head.status_mut() = status;
    *head.version_mut() = version;
    *head.headers_mut() = headers;
    Ok(Parsed::Complete(Head {
        response: head,
        // Read to the close: the connection ends with the body.
        keep_alive: keep_alive && body != BodyEnd::Close,
        body,
    }))
}

/// RFC 9112 §6.3, in its order.
fn body_end(
    status: StatusCode,
    method: &Method,
    version: Version,
    headers: &HeaderMap,
    fields: FramingFields,
) -> Result<BodyEnd, ProtocolError> {
    if matches!(status.as_u16(), 204 | 304) || *method == Method::HEAD {
        return Ok(BodyEnd::Length(0));
    }
    if *method == Method::CONNECT && status.is_success() {
        return Err(ProtocolError::UnexpectedSwitch(status.as_u16()));
    }
    if fields.transfer_encoding {
        if version == Version::HTTP_10 {
            return Err(ProtocolError::TransferEncodingInHttp10);
        }
        return Ok(if ends_chunked(headers) {
            BodyEnd::Chunked
        } else {
            BodyEnd::Close
        });
    }
    match fields.content_length {
        Some(Some(length)) => Ok(BodyEnd::Length(length)),
        Some(None) => Err(ProtocolError::ContentLength),
        None => Ok(BodyEnd::Close),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str, method: Method) -> Result<Option<Head>, ProtocolError> {
        let mut buf = BytesMut::from(text);
        parse(&mut buf, &method, INLINE_HEADERS)
    }

    #[test]
    fn a_head_is_read_once_complete_and_the_body_stays() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nX-A: b\r\n");
        assert!(parse(&mut buf, &Method::GET, 100).expect("valid").is_none());
        buf.extend_from_slice(b"\r\nhi");
        let head = parse(&mut buf, &Method::GET, 100)
            .expect("valid")
            .expect("complete");
        assert_eq!(head.response.status(), StatusCode::OK);
        assert_eq!(head.response.headers()["x-a"], "b");
        assert_eq!(head.body, BodyEnd::Length(2));
        assert!(head.keep_alive);
        assert_eq!(&buf[..], b"hi");
    }

    #[test]
    fn interim_responses_are_skipped() {
        let head = parse_text(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            Method::POST,
        )
        .expect("valid")
        .expect("complete");
        assert_eq!(head.response.status(), StatusCode::NO_CONTENT);
        assert_eq!(head.body, BodyEnd::Length(0));
    }

    #[test]
    fn the_body_s_end_follows_rfc_9112() {
        let end =
            |text: &str, method| parse_text(text, method).map(|head| head.expect("complete").body);
        assert_eq!(
            end(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 3\r\n\r\n",
                Method::GET
            )
            .expect("valid"),
            BodyEnd::Chunked
        );
        assert_eq!(
            end("HTTP/1.1 200 OK\r\n\r\n", Method::GET).expect("valid"),
            BodyEnd::Close
        );
        assert_eq!(
            end("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", Method::HEAD).expect("valid"),
            BodyEnd::Length(0)
        );
        assert!(matches!(
            end(
                "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                Method::GET
            ),
            Err(ProtocolError::ContentLength)
        ));
        let close = parse_text("HTTP/1.1 200 OK\r\n\r\n", Method::GET)
            .expect("valid")
            .expect("complete");
        assert!(!close.keep_alive);
    }

    #[test]
    fn http_1_0_keeps_alive_only_when_asked() {
        let head = |text: &str| {
            parse_text(text, Method::GET)
                .expect("valid")
                .expect("complete")
                .keep_alive
        };
        assert!(!head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(head(
            "HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!head(
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        ));
    }

    #[test]
    fn garbage_and_too_many_fields_are_protocol_errors() {
        assert!(parse_text("SSH-2.0-OpenSSH\r\n\r\n", Method::GET).is_err());
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n");
        assert!(matches!(
            parse(&mut buf, &Method::GET, 2),
            Err(ProtocolError::Syntax(httparse::Error::TooManyHeaders))
        ));
    }
}
