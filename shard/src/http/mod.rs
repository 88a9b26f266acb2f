//! The HTTP/1.1 codec: parsing heads (`httparse`), body framing, and encoding the heads and
//! error responses the gateway writes.
//!
//! Owns: byte-level HTTP rules (framing, hop-by-hop headers, keep-alive). Must not: do I/O
//! or know about routing, upstreams or metrics.

pub mod chunked;
pub mod encode;
pub mod request;
pub mod response;

/// How a message body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`, relayed verbatim.
    Chunked,
    /// Until the peer closes (responses only).
    UntilClose,
}

/// Headers a proxy must not forward (RFC 9110 §7.6.1), plus `proxy-connection`.
/// `transfer-encoding` is handled apart: chunked bodies pass through verbatim.
pub fn is_hop_by_hop(name: &str) -> bool {
    const HOP: [&str; 7] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Headers a `Connection` option cannot make hop-by-hop: the framing, the target, and the
/// headers the gateway itself writes or reads to route, seal and check MCP messages. A peer
/// that could drop these would change how the next hop frames or reads the message.
pub fn is_protected(name: &str) -> bool {
    const PROTECTED: [&str; 9] = [
        "content-length",
        "transfer-encoding",
        "host",
        "x-request-id",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "content-type",
    ];
    PROTECTED.iter().any(|h| h.eq_ignore_ascii_case(name))
        || name
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("mcp-"))
}

/// The framing headers, which a request may not name in `Connection` at all (400).
pub fn names_framing(connection: &[u8]) -> bool {
    ["content-length", "transfer-encoding", "host"]
        .iter()
        .any(|name| has_token(connection, name))
}

/// True when `name` is listed in a `Connection` header value (those are hop-by-hop too),
/// unless it is [protected](is_protected): such tokens are ignored.
pub fn listed_in_connection(connection: Option<&[u8]>, name: &str) -> bool {
    let Some(value) = connection else {
        return false;
    };
    !is_protected(name) && has_token(value, name)
}

pub fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .map(trim_ascii)
        .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// Parses a `Content-Length` value: digits only, no sign, no overflow.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    let value = trim_ascii(value);
    if value.is_empty() || value.len() > 19 {
        return None;
    }
    value.iter().try_fold(0u64, |acc, b| {
        if b.is_ascii_digit() {
            Some(acc * 10 + u64::from(b - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_rules() {
        assert_eq!(parse_content_length(b" 42 "), Some(42));
        assert_eq!(parse_content_length(b"-1"), None);
        assert_eq!(parse_content_length(b""), None);
        assert_eq!(parse_content_length(b"99999999999999999999"), None);
    }

    #[test]
    fn connection_tokens() {
        assert!(listed_in_connection(Some(b"close, X-Foo"), "x-foo"));
        assert!(!listed_in_connection(Some(b"close"), "x-foo"));
        assert!(has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(!listed_in_connection(
            Some(b"Content-Length"),
            "content-length"
        ));
        assert!(!listed_in_connection(Some(b"x-request-id"), "X-Request-Id"));
        assert!(!listed_in_connection(
            Some(b"mcp-session-id"),
            "Mcp-Session-Id"
        ));
        assert!(names_framing(b"close, Transfer-Encoding"));
        assert!(!names_framing(b"close, keep-alive"));
    }
}
