//! Parsing an upstream's response head and deciding its framing.
//!
//! Owns: the response-side HTTP/1.1 framing rules (HEAD/1xx/204/304 carry no body; chunked
//! wins over Content-Length; otherwise read until close). Must not: copy header bytes.

use super::{has_token, parse_content_length, BodyFraming};
use thiserror::Error;

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    #[error("malformed upstream response head")]
    Malformed,
    #[error("upstream response has too many headers")]
    TooManyHeaders,
}

#[derive(Debug)]
pub struct ResponseHead<'h, 'b> {
    pub status: u16,
    pub reason: &'b str,
    pub minor_version: u8,
    pub headers: &'h [httparse::Header<'b>],
    pub head_len: usize,
    pub framing: BodyFraming,
    pub keep_alive: bool,
    pub connection: Option<&'b [u8]>,
    /// `Content-Type: text/event-stream`: relay event by event, no read timeout.
    pub event_stream: bool,
}

/// Parses a response head; `request_was_head` removes the body. `Ok(None)`: read more.
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
    request_was_head: bool,
) -> Result<Option<ResponseHead<'h, 'b>>, ResponseError> {
    let mut resp = httparse::Response::new(headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooManyHeaders),
        Err(_) => return Err(ResponseError::Malformed),
    };
    let status = resp.code.unwrap_or(0);
    let minor_version = resp.version.unwrap_or(1);
    let reason = resp.reason.unwrap_or("");
    let headers: &'h [httparse::Header<'b>] = resp.headers;
    let mut content_length = None;
    let mut chunked = false;
    let mut keep_alive = minor_version == 1;
    let mut connection = None;
    let mut event_stream = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(h.value).ok_or(ResponseError::Malformed)?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(ResponseError::Malformed);
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|last| super::trim_ascii(last).eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection = Some(h.value);
            if has_token(h.value, "close") {
                keep_alive = false;
            } else if has_token(h.value, "keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("content-type") {
            event_stream = super::trim_ascii(h.value)
                .get(..17)
                .is_some_and(|v| v.eq_ignore_ascii_case(b"text/event-stream"));
        }
    }
    let framing =
        if request_was_head || (100..200).contains(&status) || status == 204 || status == 304 {
            BodyFraming::Empty
        } else if chunked {
            BodyFraming::Chunked
        } else {
            match content_length {
                Some(0) => BodyFraming::Empty,
                Some(n) => BodyFraming::Length(n),
                None => BodyFraming::UntilClose,
            }
        };
    if framing == BodyFraming::UntilClose {
        keep_alive = false;
    }
    Ok(Some(ResponseHead {
        status,
        reason,
        minor_version,
        headers,
        head_len,
        framing,
        keep_alive,
        connection,
        event_stream,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framings() {
        let mut h = [httparse::EMPTY_HEADER; 8];
        let r = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            &mut h,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.framing, BodyFraming::Length(5));
        assert!(r.keep_alive);
        let mut h = [httparse::EMPTY_HEADER; 8];
        let r = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            &mut h,
            true,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.framing, BodyFraming::Empty);
        let mut h = [httparse::EMPTY_HEADER; 8];
        let r = parse(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n",
            &mut h,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.framing, BodyFraming::UntilClose);
        assert!(r.event_stream && !r.keep_alive);
        let mut h = [httparse::EMPTY_HEADER; 8];
        let r = parse(b"HTTP/1.1 204 No Content\r\n\r\n", &mut h, false)
            .unwrap()
            .unwrap();
        assert_eq!(r.framing, BodyFraming::Empty);
    }
}
