//! The upstream's response head on its way to the client: parsed, interim answers dropped,
//! rewritten for the client (hop-by-hop out, the session token in place of the upstream's
//! `Mcp-Session-Id`, CORS, a sticky cookie, security headers it lacks), and what it says
//! about the rest of the exchange (body framing, keep-alive on each side, whether it is a
//! list answer to filter).
//!
//! Owns: those decisions for one response head. Must not: do I/O (the exchange in
//! `upstream` reads and writes).

use crate::client_head::{write_client_head, HeadRewrite};
use crate::exchange::Exchange;
use crate::http::response::{self, ResponseError};
use crate::http::BodyFraming;
use crate::relay::BodyLeft;

/// Upstream response heads larger than this are refused (502).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const MAX_RESPONSE_HEADERS: usize = 128;

/// What the response head says about the rest of the exchange.
pub(crate) struct ResponseFacts {
    pub(crate) status: u16,
    pub(crate) resp_left: BodyLeft,
    pub(crate) upstream_keep_alive: bool,
    pub(crate) event_stream: bool,
    pub(crate) client_keep_alive: bool,
    pub(crate) unchunk: bool,
    /// A legacy SSE stream whose `endpoint` event is to be rewritten.
    pub(crate) rewrite_endpoint: bool,
    /// The body is a list answer to filter, and how it comes.
    pub(crate) list_body: Option<ListBody>,
}

/// How a list answer to filter comes (see `list_response`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListBody {
    /// One JSON body: read whole, filtered, sent with its new `Content-Length`.
    Json,
    /// An event stream: rewritten event by event; chunked again for a client that got
    /// chunks, otherwise ended by closing.
    Events,
}

pub(crate) enum HeadStep {
    Complete(ResponseFacts),
    Interim,
    Partial,
    Bad,
    /// A list answer that must be filtered but cannot be (why).
    Unfilterable(&'static str),
}

impl Exchange<'_> {
    /// Parses the response head in `ubuf` (a plain function, so the header array does not
    /// live in the connection's future): on a final response, writes the client's head into
    /// `out` and drains the head from `ubuf`; interim 1xx responses are dropped.
    pub(crate) fn take_response_head(&self, ubuf: &mut Vec<u8>, out: &mut Vec<u8>) -> HeadStep {
        let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let head = match response::parse(ubuf, &mut headers, self.is_head) {
            Ok(None) if ubuf.len() >= MAX_RESPONSE_HEAD => return HeadStep::Bad,
            Ok(None) => return HeadStep::Partial,
            Err(ResponseError::Malformed) | Err(ResponseError::TooManyHeaders) => {
                return HeadStep::Bad
            }
            Ok(Some(head)) => head,
        };
        if (100..200).contains(&head.status) {
            if head.status == 101 {
                return HeadStep::Bad;
            }
            let consumed = head.head_len;
            ubuf.drain(..consumed);
            return HeadStep::Interim;
        }
        // A HEAD answer whose head announces a body: the upstream may send that body anyway,
        // so the connection is not trusted for another request.
        let head_body_announced = self.is_head && announces_body(&head);
        // A rewritten legacy stream changes length: it goes out unframed, ended by closing.
        let rewrite_endpoint = self.legacy.is_some() && head.status == 200 && head.event_stream;
        let list_body = self.list_body(&head);
        if list_body.is_some() && content_coded(&head) {
            return HeadStep::Unfilterable("a list answer with a Content-Encoding");
        }
        let unchunk =
            (rewrite_endpoint || !self.http11_client) && head.framing == BodyFraming::Chunked;
        let client_keep_alive = self.client_keep_alive
            && match list_body {
                // Read whole, then sent with its length.
                Some(ListBody::Json) => true,
                // Rewritten events are chunked again, or end by closing.
                Some(ListBody::Events) => {
                    head.framing == BodyFraming::Chunked && !unchunk && !rewrite_endpoint
                }
                None => head.framing != BodyFraming::UntilClose && !unchunk && !rewrite_endpoint,
            };
        out.clear();
        let session_token = match self.seal_session(&head) {
            Ok(token) => token,
            Err(()) => return HeadStep::Bad,
        };
        let rewrite = HeadRewrite {
            close: !client_keep_alive,
            unchunk,
            session_token: session_token.as_deref(),
            cors_origin: self.cors_origin,
            drop_length: rewrite_endpoint || list_body == Some(ListBody::Events),
            set_cookie: self.set_cookie,
            security: self.security,
            length_later: list_body == Some(ListBody::Json),
        };
        write_client_head(out, &head, &rewrite);
        let facts = ResponseFacts {
            status: head.status,
            resp_left: match head.framing {
                BodyFraming::Empty => BodyLeft::Done,
                BodyFraming::Length(n) => BodyLeft::Bytes(n),
                BodyFraming::Chunked => BodyLeft::Chunked(Default::default()),
                BodyFraming::UntilClose => BodyLeft::UntilClose,
            },
            upstream_keep_alive: head.keep_alive && self.http11_client && !head_body_announced,
            event_stream: head.event_stream,
            client_keep_alive,
            unchunk,
            rewrite_endpoint,
            list_body,
        };
        let head_len = head.head_len;
        ubuf.drain(..head_len);
        HeadStep::Complete(facts)
    }

    /// Whether this response's body is a list answer to filter: a success with a body, on
    /// an exchange whose lists are narrowed; JSON bodies only for the answer to a POST.
    fn list_body(&self, head: &response::ResponseHead<'_, '_>) -> Option<ListBody> {
        let list = self.list.as_ref()?;
        if !(200..300).contains(&head.status) || head.framing == BodyFraming::Empty {
            return None;
        }
        if head.event_stream {
            Some(ListBody::Events)
        } else if list.json {
            Some(ListBody::Json)
        } else {
            None
        }
    }

    /// The token replacing the upstream's `Mcp-Session-Id` on an MCP exchange.
    fn seal_session(&self, head: &response::ResponseHead<'_, '_>) -> Result<Option<String>, ()> {
        let Some(mcp) = self.mcp else {
            return Ok(None);
        };
        let Some(h) = head
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("mcp-session-id"))
        else {
            return Ok(None);
        };
        if let Some(resumed) = mcp.resumed.as_ref() {
            if resumed.upstream_session == h.value {
                // Same session: the client's own token (ASCII, it opened) goes back as it came.
                return Ok(Some(String::from_utf8_lossy(&resumed.token).into_owned()));
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match self
            .shard
            .sessions
            .borrow_mut()
            .seal(mcp.replica, h.value, now)
        {
            Ok(token) => {
                // Every token sealed here is a new one (a resumed session's is echoed above).
                if let Some(store) = &self.shard.store {
                    if let Some(key) = crate::store::key_of(token.as_bytes()) {
                        let record = serde_json::json!({
                            "id": String::from_utf8_lossy(&key),
                            "server": self.upstream.id,
                            "group": self.upstream.group,
                            "createdAt": now,
                            "gatewayPid": std::process::id(),
                        });
                        store.record(key, record.to_string());
                    }
                }
                Ok(Some(token))
            }
            Err(e) => {
                tracing::warn!(upstream = %self.upstream.id, error = %e, "cannot carry the upstream's session id");
                Err(())
            }
        }
    }
}

/// Whether the body is content-coded (gzip, ...): the gateway could not read its lists.
fn content_coded(head: &response::ResponseHead<'_, '_>) -> bool {
    head.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("content-encoding")
            && !crate::http::trim_ascii(h.value).eq_ignore_ascii_case(b"identity")
    })
}

/// Whether a response head announces a body (`Content-Length` above 0, or chunked), which
/// a HEAD answer must not carry.
fn announces_body(head: &response::ResponseHead<'_, '_>) -> bool {
    head.headers.iter().any(|h| {
        (h.name.eq_ignore_ascii_case("content-length")
            && crate::http::parse_content_length(h.value) != Some(0))
            || h.name.eq_ignore_ascii_case("transfer-encoding")
    })
}
