//! The response head the gateway sends its client for a proxied response: normalised to
//! HTTP/1.1, hop-by-hop headers dropped, and the gateway's additions (session token in place
//! of the upstream's `Mcp-Session-Id`, CORS, `X-Accel-Buffering`, a sticky cookie, security
//! headers the upstream did not set, `Connection: close`), and the framing of a body the
//! gateway replaced (a filtered list answer).
//!
//! Owns: that rewrite. Must not: read sockets or decide the additions (the exchange does).

use crate::http::response;
use crate::http::{is_hop_by_hop, listed_in_connection, BodyFraming};

/// The longest reason phrase passed on.
const MAX_REASON: usize = 128;

/// How the response head is changed on its way to the client.
pub struct HeadRewrite<'a> {
    /// This is the connection's last response.
    pub close: bool,
    /// Chunked framing is removed (HTTP/1.0 client).
    pub unchunk: bool,
    /// Replaces the upstream's `Mcp-Session-Id`.
    pub session_token: Option<&'a str>,
    /// An allowed browser origin: CORS headers are added.
    pub cors_origin: Option<&'a [u8]>,
    /// The body's length changes (a rewritten legacy stream): `Content-Length` is dropped.
    pub drop_length: bool,
    /// `loadBalancer.sticky`: added as a `Set-Cookie` line.
    pub set_cookie: Option<&'a str>,
    /// Security header lines (`Name: value`), each added unless the response passes on a
    /// header of that name; empty when none apply (the pipeline decides).
    pub security: &'a [String],
    /// The body is replaced by one the gateway reads whole first (a filtered list answer):
    /// `Content-Length` and `Transfer-Encoding` are dropped and the head is left open, for
    /// [`end_with_length`] to finish once the new length is known.
    pub length_later: bool,
}

/// The response head for the client: status line normalised to HTTP/1.1, hop-by-hop
/// headers dropped, `Connection: close` when this is the connection's last response.
pub fn write_client_head(
    out: &mut Vec<u8>,
    head: &response::ResponseHead<'_, '_>,
    rw: &HeadRewrite<'_>,
) {
    let (close, unchunk) = (rw.close, rw.unchunk);
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(head.status).as_bytes());
    out.push(b' ');
    // A reason phrase is decoration (RFC 9112 §4): an overlong one is replaced.
    let reason = match head.reason.len() {
        0..=MAX_REASON => head.reason,
        _ => crate::http::encode::reason(head.status),
    };
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let chunked = head.framing == BodyFraming::Chunked;
    for h in head.headers {
        if is_hop_by_hop(h.name) || listed_in_connection(head.connection, h.name) {
            continue;
        }
        // With a transfer coding a Content-Length is wrong; forwarding both invites smuggling.
        if (chunked || head.transfer_coded || rw.drop_length || rw.length_later)
            && h.name.eq_ignore_ascii_case("content-length")
        {
            continue;
        }
        if (unchunk || rw.length_later) && h.name.eq_ignore_ascii_case("transfer-encoding") {
            continue;
        }
        if let Some(token) = rw.session_token {
            if h.name.eq_ignore_ascii_case("mcp-session-id") {
                crate::http::encode::header(out, h.name, token.as_bytes());
                continue;
            }
        }
        if rw.cors_origin.is_some()
            && h.name.len() > 12
            && h.name[..12].eq_ignore_ascii_case("access-contr")
        {
            continue;
        }
        crate::http::encode::header(out, h.name, h.value);
    }
    if head.event_stream
        && !head
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("x-accel-buffering"))
    {
        // Tell buffering proxies in front of us (nginx) to pass events as they come.
        out.extend_from_slice(b"X-Accel-Buffering: no\r\n");
    }
    if let Some(origin) = rw.cors_origin {
        crate::http::encode::header(out, "Access-Control-Allow-Origin", origin);
        crate::http::encode::header(
            out,
            "Access-Control-Expose-Headers",
            crate::mcp::headers::CORS_EXPOSE_HEADERS.as_bytes(),
        );
        out.extend_from_slice(b"Vary: Origin\r\n");
    }
    if let Some(cookie) = rw.set_cookie {
        crate::http::encode::header(out, "Set-Cookie", cookie.as_bytes());
    }
    for line in rw.security {
        let name = line.split(':').next().unwrap_or(line);
        // Compared with what the client gets: one the upstream made hop-by-hop is not set.
        let set = head.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case(name) && !listed_in_connection(head.connection, h.name)
        });
        if !set {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    if !rw.length_later {
        out.extend_from_slice(b"\r\n");
    }
}

/// Ends a head written with `length_later`: the length of the body that follows.
pub fn end_with_length(out: &mut Vec<u8>, length: usize) {
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}
