//! Parsing a client's request head and deciding its framing and keep-alive.
//!
//! Owns: the request-side HTTP/1.1 rules (Host required on 1.1, no CL+TE smuggling, one
//! Content-Length, chunked last). Must not: copy header bytes; everything borrows the
//! connection's read buffer.

use super::{has_token, parse_content_length, BodyFraming};
use thiserror::Error;

/// Why a request head was refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("too many request headers")]
    TooManyHeaders,
    #[error("unsupported transfer-encoding")]
    UnsupportedEncoding,
    /// `CONNECT`: the gateway opens no tunnels (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A method longer than [`MAX_METHOD`] (501).
    #[error("method longer than {MAX_METHOD} bytes")]
    MethodTooLong,
}

/// The longest method accepted; registered methods are at most 17 bytes.
pub const MAX_METHOD: usize = 32;

/// A parsed request head, borrowing the read buffer.
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    pub method: &'b str,
    pub target: &'b str,
    pub minor_version: u8,
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of the head, CRLFCRLF included.
    pub head_len: usize,
    pub framing: BodyFraming,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub host: Option<&'b [u8]>,
    pub connection: Option<&'b [u8]>,
    pub request_id: Option<&'b [u8]>,
    pub forwarded_for: Option<&'b [u8]>,
}

impl RequestHead<'_, '_> {
    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(self.target)
    }

    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Headers per request; more is answered 431.
pub const MAX_HEADERS: usize = 100;

/// Parses a request head from `buf`. `Ok(None)`: incomplete, read more.
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
) -> Result<Option<RequestHead<'h, 'b>>, RequestError> {
    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(RequestError::Malformed("bad HTTP version")),
        Err(httparse::Error::Token) => return Err(RequestError::Malformed("bad method")),
        Err(_) => return Err(RequestError::Malformed("bad request line or header")),
    };
    let method = req.method.unwrap_or("");
    let minor_version = req.version.unwrap_or(1);
    // The absolute form (`http://host/path`) must be accepted (RFC 9112 §3.2.2): its path is
    // the target and its authority replaces `Host`.
    let (target, target_authority) = split_absolute_form(req.path.unwrap_or(""))?;
    if !target.is_ascii() {
        return Err(RequestError::Malformed(
            "request target must be ASCII (percent-encode other bytes)",
        ));
    }
    if method.len() > MAX_METHOD {
        return Err(RequestError::MethodTooLong);
    }
    if method == "CONNECT" {
        return Err(RequestError::MethodNotAllowed);
    }
    if target == "*" {
        if method != "OPTIONS" {
            return Err(RequestError::Malformed("`*` is only a target for OPTIONS"));
        }
    } else if !target.starts_with('/') {
        return Err(RequestError::Malformed(
            "request target must be an absolute path",
        ));
    } else if target.contains(['#', '\\']) {
        return Err(RequestError::Malformed("`#` or `\\` in the request target"));
    } else if has_dot_segment(target) {
        return Err(RequestError::Malformed(
            "dot segments (`.` or `..`) in the request path",
        ));
    }
    let headers: &'h [httparse::Header<'b>] = req.headers;

    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut head = RequestHead {
        method,
        target,
        minor_version,
        headers,
        head_len,
        framing: BodyFraming::Empty,
        keep_alive: minor_version == 1,
        expect_continue: false,
        host: None,
        connection: None,
        request_id: None,
        forwarded_for: None,
    };
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(h.value)
                .ok_or(RequestError::Malformed("bad content-length"))?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(RequestError::Malformed("conflicting content-length"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only `chunked`, alone and once, is read (and sent on as such): any other coding
            // could be framed differently by the next hop (RFC 9112 §6.1: 501).
            if chunked {
                return Err(RequestError::Malformed(
                    "duplicate transfer-encoding header",
                ));
            }
            if !super::trim_ascii(h.value).eq_ignore_ascii_case(b"chunked") {
                return Err(RequestError::UnsupportedEncoding);
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("host") {
            if head.host.is_some() {
                return Err(RequestError::Malformed("duplicate host header"));
            }
            head.host = Some(h.value);
        } else if name.eq_ignore_ascii_case("connection") {
            // Naming a framing header there would make it hop-by-hop: a smuggling attempt.
            if super::names_framing(h.value) {
                return Err(RequestError::Malformed(
                    "connection header names a framing header",
                ));
            }
            if head.connection.is_some() {
                return Err(RequestError::Malformed("duplicate connection header"));
            }
            head.connection = Some(h.value);
            if has_token(h.value, "close") {
                head.keep_alive = false;
            } else if has_token(h.value, "keep-alive") {
                head.keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if !h.value.eq_ignore_ascii_case(b"100-continue") {
                return Err(RequestError::Malformed("unsupported expectation"));
            }
            head.expect_continue = true;
        } else if name.eq_ignore_ascii_case("x-request-id") {
            head.request_id = Some(h.value);
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            head.forwarded_for = Some(h.value);
        }
    }
    if minor_version == 1 && head.host.is_none() {
        return Err(RequestError::Malformed("missing host header"));
    }
    if let Some(authority) = target_authority {
        head.host = Some(authority.as_bytes());
    }
    head.framing = match (chunked, content_length) {
        (true, Some(_)) => {
            return Err(RequestError::Malformed(
                "both content-length and transfer-encoding",
            ))
        }
        // HTTP/1.0 has no transfer codings: the framing is faulty (RFC 9112 §6.1), and
        // sending it on would ask the upstream to read it anyway.
        (true, None) if minor_version == 0 => {
            return Err(RequestError::Malformed(
                "transfer-encoding in an HTTP/1.0 request",
            ))
        }
        (true, None) => BodyFraming::Chunked,
        (false, Some(0)) | (false, None) => BodyFraming::Empty,
        (false, Some(n)) => BodyFraming::Length(n),
    };
    Ok(Some(head))
}

/// Splits an absolute-form target into (path and query, authority); other forms pass as
/// they are.
fn split_absolute_form(target: &str) -> Result<(&str, Option<&str>), RequestError> {
    let scheme_len = ["http://", "https://"]
        .iter()
        .find(|s| {
            target
                .get(..s.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(s))
        })
        .map(|s| s.len());
    let Some(scheme_len) = scheme_len else {
        return Ok((target, None));
    };
    let rest = &target[scheme_len..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return Err(RequestError::Malformed(
            "bad authority in an absolute-form target",
        ));
    }
    match path {
        "" => Ok(("/", Some(authority))),
        p if p.starts_with('/') => Ok((p, Some(authority))),
        _ => Err(RequestError::Malformed(
            "absolute-form target without a path",
        )),
    }
}

/// Whether the path (before any query) has a `.` or `..` segment, as any upstream might
/// read it: dots plain or percent-encoded (`%2e`), segments ended by `/` or an encoded
/// `%2f`/`%5c`, and a `;parameter` after the dots (`..;`, which Java servers resolve).
/// Upstreams would resolve them and reach paths the route never named.
fn has_dot_segment(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or(target).as_bytes();
    let encoded = |i: usize, hex: &[u8; 2]| {
        path.get(i) == Some(&b'%')
            && path.get(i + 1) == Some(&hex[0])
            && path.get(i + 2).map(|b| b | 0x20) == Some(hex[1])
    };
    let (mut dots, mut only_dots, mut in_params) = (0u8, true, false);
    let mut i = 0;
    loop {
        let separator = match path.get(i) {
            None | Some(b'/') => 1,
            _ if encoded(i, b"2f") || encoded(i, b"5c") => 3,
            _ => 0,
        };
        if separator > 0 {
            if only_dots && (dots == 1 || dots == 2) {
                return true;
            }
            if i >= path.len() {
                return false;
            }
            (dots, only_dots, in_params) = (0, true, false);
            i += separator;
        } else if in_params {
            i += 1;
        } else if path[i] == b'.' {
            dots = dots.saturating_add(1);
            i += 1;
        } else if encoded(i, b"2e") {
            dots = dots.saturating_add(1);
            i += 3;
        } else if path[i] == b';' {
            in_params = true;
            i += 1;
        } else {
            only_dots = false;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(raw: &[u8]) -> (BodyFraming, bool, usize) {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let head = parse(raw, &mut headers).unwrap().unwrap();
        (head.framing, head.keep_alive, head.head_len)
    }

    #[test]
    fn framing_and_keep_alive() {
        let raw = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(parse_ok(raw), (BodyFraming::Length(3), true, raw.len() - 3));
        let raw = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        assert_eq!(parse_ok(raw).0, BodyFraming::Chunked);
        assert!(!parse_ok(raw).1);
        let raw = b"GET / HTTP/1.0\r\n\r\n";
        assert_eq!(parse_ok(raw), (BodyFraming::Empty, false, raw.len()));
    }

    #[test]
    fn dot_segments_and_methods_refused() {
        for target in [
            "/mcp/a/../../x",
            "/a/./b",
            "/a/%2e%2E/b",
            "/a/..",
            "/.%2e?q",
            "/a/..;/b",
            "/a/..%2fb",
            "/a/..%5C/b",
            "/a/x#/../b",
            "/a\\..\\b",
        ] {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut h = [httparse::EMPTY_HEADER; 8];
            assert!(parse(raw.as_bytes(), &mut h).is_err(), "{target}");
        }
        for target in [
            "/a/...",
            "/a/.b",
            "/a/b.",
            "/x?a=../b",
            "/",
            "/a;b/c",
            "/%2e%2e%2e/x",
        ] {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut h = [httparse::EMPTY_HEADER; 8];
            assert!(parse(raw.as_bytes(), &mut h).unwrap().is_some(), "{target}");
        }
        let mut h = [httparse::EMPTY_HEADER; 8];
        let raw = b"CONNECT /x HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            parse(raw, &mut h).unwrap_err(),
            RequestError::MethodNotAllowed
        );
        let raw = format!("{} / HTTP/1.1\r\nHost: x\r\n\r\n", "A".repeat(1000));
        let mut h = [httparse::EMPTY_HEADER; 8];
        assert_eq!(
            parse(raw.as_bytes(), &mut h).unwrap_err(),
            RequestError::MethodTooLong
        );
        let mut h = [httparse::EMPTY_HEADER; 8];
        assert!(parse(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", &mut h).is_err());
        let mut h = [httparse::EMPTY_HEADER; 8];
        assert!(parse(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", &mut h).is_ok());
    }

    #[test]
    fn absolute_form_and_non_ascii_targets() {
        let mut h = [httparse::EMPTY_HEADER; 8];
        let raw = b"GET http://gw.example:8080/mcp/a?x=1 HTTP/1.1\r\nHost: other\r\n\r\n";
        let head = parse(raw, &mut h).unwrap().unwrap();
        assert_eq!(head.target, "/mcp/a?x=1");
        assert_eq!(head.host, Some(&b"gw.example:8080"[..]));
        let mut h = [httparse::EMPTY_HEADER; 8];
        let raw = b"GET HTTP://gw HTTP/1.1\r\nHost: gw\r\n\r\n";
        assert_eq!(parse(raw, &mut h).unwrap().unwrap().target, "/");
        for raw in [
            &b"GET http://user@gw/ HTTP/1.1\r\nHost: gw\r\n\r\n"[..],
            b"GET http:///x HTTP/1.1\r\nHost: gw\r\n\r\n",
            b"GET http://gw/a/../b HTTP/1.1\r\nHost: gw\r\n\r\n",
            "GET /caf\u{e9} HTTP/1.1\r\nHost: gw\r\n\r\n".as_bytes(),
        ] {
            let mut h = [httparse::EMPTY_HEADER; 8];
            assert!(
                parse(raw, &mut h).is_err(),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn connection_cannot_name_framing() {
        for conn in ["Content-Length", "close, transfer-encoding", "Host"] {
            let raw = format!(
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: {conn}\r\n\r\na"
            );
            let mut h = [httparse::EMPTY_HEADER; 8];
            assert!(parse(raw.as_bytes(), &mut h).is_err(), "{conn}");
        }
        let mut h = [httparse::EMPTY_HEADER; 8];
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n";
        assert!(parse(raw, &mut h).is_err());
        let raw =
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n";
        let mut h = [httparse::EMPTY_HEADER; 8];
        assert!(parse(raw, &mut h).is_err());
        for te in [
            "gzip, chunked",
            "identity, chunked",
            ",chunked",
            "chunked, gzip",
        ] {
            let raw = format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n");
            let mut h = [httparse::EMPTY_HEADER; 8];
            assert_eq!(
                parse(raw.as_bytes(), &mut h).unwrap_err(),
                RequestError::UnsupportedEncoding,
                "{te}"
            );
        }
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n";
        let mut h = [httparse::EMPTY_HEADER; 8];
        let framing = parse(raw, &mut h).unwrap().unwrap().framing;
        assert_eq!(framing, BodyFraming::Chunked);
    }

    #[test]
    fn partial_is_none() {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        assert!(parse(b"GET / HTTP/1.1\r\nHost:", &mut headers)
            .unwrap()
            .is_none());
    }

    #[test]
    fn smuggling_and_garbage_refused() {
        let mut h = [httparse::EMPTY_HEADER; 8];
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(parse(raw, &mut h).is_err());
        let mut h = [httparse::EMPTY_HEADER; 8];
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert!(parse(raw, &mut h).is_err());
        let mut h = [httparse::EMPTY_HEADER; 8];
        assert!(parse(b"GET / HTTP/1.1\r\n\r\n", &mut h).is_err());
        let mut h = [httparse::EMPTY_HEADER; 8];
        assert!(parse(b"\x00\x01garbage\r\n\r\n", &mut h).is_err());
        let mut h = [httparse::EMPTY_HEADER; 2];
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(
            parse(raw, &mut h).unwrap_err(),
            RequestError::TooManyHeaders
        );
    }
}
