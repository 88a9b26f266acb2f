//! Parsing an upstream's response head and deciding its framing.
//!
//! Owns: the response-side HTTP/1.1 framing rules (HEAD/1xx/204/304 carry no body; a
//! transfer coding wins over Content-Length and must end in chunked, in one field: any other
//! coding is refused, as nginx does, since the gateway could only pass it on read until
//! close under a header that lists codings it did not apply; otherwise the length, or until
//! close). Framing that a next hop could read another way (a transfer coding with a length,
//! over HTTP/1.0, on a bodiless answer) ends keep-alive. Must not: copy header bytes.

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
    /// A `Transfer-Encoding` header was sent (its `Content-Length`, if any, is not passed on).
    pub transfer_coded: bool,
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
    if !(100..=599).contains(&status) {
        return Err(ResponseError::Malformed);
    }
    let minor_version = resp.version.unwrap_or(1);
    let reason = resp.reason.unwrap_or("");
    let headers: &'h [httparse::Header<'b>] = resp.headers;
    let mut content_length = None;
    let mut chunked = false;
    let mut transfer_coded = false;
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
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or(b"");
            if transfer_coded || !super::trim_ascii(last).eq_ignore_ascii_case(b"chunked") {
                return Err(ResponseError::Malformed);
            }
            transfer_coded = true;
            chunked = true;
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
    let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if request_was_head || bodiless {
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
    // Framing someone could read differently: the connection is not used again.
    let ambiguous = (transfer_coded && (content_length.is_some() || minor_version == 0))
        || (bodiless && (transfer_coded || content_length.is_some_and(|n| n > 0) && status != 304));
    if framing == BodyFraming::UntilClose || ambiguous {
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
        transfer_coded,
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

    #[test]
    fn ambiguous_framing_ends_keep_alive() {
        let parse_one = |raw: &[u8]| {
            let mut h = [httparse::EMPTY_HEADER; 8];
            parse(raw, &mut h, false)
                .map(|r| r.map(|r| (r.framing, r.keep_alive, r.transfer_coded)))
        };
        let r =
            parse_one(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(r, Err(ResponseError::Malformed));
        let r = parse_one(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
        );
        assert_eq!(r, Err(ResponseError::Malformed));
        let r = parse_one(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(r, Ok(Some((BodyFraming::Chunked, true, true))));
        let r = parse_one(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        );
        assert_eq!(r, Ok(Some((BodyFraming::Chunked, false, true))));
        let r = parse_one(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(r, Ok(Some((BodyFraming::Chunked, false, true))));
        let r = parse_one(b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(r, Ok(Some((BodyFraming::Empty, false, false))));
        let r = parse_one(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(r, Ok(Some((BodyFraming::Empty, true, false))));
        let r = parse_one(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(r, Ok(Some((BodyFraming::Chunked, true, true))));
        assert!(parse_one(b"HTTP/1.1 000 X\r\n\r\n").is_err());
        assert!(parse_one(b"HTTP/1.1 999 X\r\n\r\n").is_err());
    }
}
