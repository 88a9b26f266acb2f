//! The legacy HTTP+SSE transport (2024-11-05) on `/sse/{id}` and `/sse/{id}/message`, from
//! headers alone.
//!
//! Two ways through, chosen by the replica's transport:
//! - pass-through, for servers that speak the legacy transport (`transport: "sse"`): the GET
//!   goes to the server's SSE URL, and its `endpoint` event is rewritten to
//!   `/sse/{id}/message?t=TOKEN`, the token sealing (like a session token) the replica and
//!   the server's own endpoint path. Any shard of any gateway process with the same secret
//!   opens it and posts to that replica's endpoint: no state in the gateway.
//! - the bridge, for Streamable HTTP (and stdio) servers: one thread of this process holds
//!   the sessions (`src/sse_bridge`); shards pass both requests to it over loopback.
//!   Its session tokens start with [`BRIDGE_SESSION_PREFIX`].
//!
//! Owns: the admission rules of the two paths, the endpoint rewrite, and the request head
//! sent to the bridge. Must not: do I/O.

use super::headers::accept_ok;
use super::route::header;
use super::session::{TokenError, MAX_UPSTREAM_SESSION};
use super::sse_event::{self, Event};
use super::stateless::BodyCheck;
use crate::error::GatewayError;
use crate::http::encode;
use crate::http::request::RequestHead;
use crate::http::BodyFraming;
use crate::router::Target;
use crate::snapshot::Snapshot;
use crate::state::Shard;
use mcp_gateway_config::Transport;

/// Tokens of bridged sessions start with this; `.` is not in base64url, so a sealed token
/// never does.
pub const BRIDGE_SESSION_PREFIX: &str = "b.";
/// An `endpoint` event must come within this many bytes of the stream's start, or the
/// stream passes unchanged (and its POSTs will not find their way).
pub const MAX_ENDPOINT_PREFIX: usize = 16 * 1024;

/// A pass-through stream: what rewriting its `endpoint` event needs.
#[derive(Debug, Clone)]
pub struct LegacyStream {
    /// `{id}` as the client wrote it in `/sse/{id}`.
    pub id: Box<str>,
    pub upstream: usize,
    pub replica: u64,
    /// The server's SSE path, against which its `endpoint` event is resolved.
    pub sse_path: String,
}

/// What the bridge is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeCall {
    /// Open a session on this upstream (a Streamable HTTP server) and stream it.
    Open { upstream: usize },
    /// Deliver a message to this bridge session.
    Message { session: String },
}

pub enum LegacyPlan {
    /// `GET /sse/{id}` to a server that speaks the legacy transport.
    Stream {
        upstream: usize,
        stream: LegacyStream,
    },
    /// `POST /sse/{id}/message` to the replica and endpoint (path and query) its token names;
    /// with a server policy, the body is checked first (as on `/mcp/{id}`).
    Message {
        upstream: usize,
        endpoint: String,
        body_check: Option<BodyCheck>,
    },
    /// Either request, for a bridged session.
    Bridge(BridgeCall),
}

/// Whether this upstream only speaks the legacy transport.
pub fn is_legacy(snap: &Snapshot, upstream: usize) -> bool {
    snap.config
        .upstreams
        .get(upstream)
        .is_some_and(|u| u.transport == Transport::Sse)
}

/// The legacy transport's rules for `/sse/{id}` (`message` false: GET taking an event
/// stream) and `/sse/{id}/message` (`message` true: POST).
pub fn check_request(head: &RequestHead<'_, '_>, message: bool) -> Result<(), GatewayError> {
    if message {
        return match head.method {
            "POST" => Ok(()),
            _ => Err(GatewayError::BadRequest(
                "the legacy message endpoint takes POST",
            )),
        };
    }
    if head.method != "GET" {
        return Err(GatewayError::BadRequest(
            "the legacy SSE endpoint takes GET; messages go to the URL of its endpoint event",
        ));
    }
    if !accept_ok("GET", header(head, "accept")) {
        return Err(GatewayError::NotAcceptable);
    }
    Ok(())
}

/// Chooses where `/sse/{id}` (`message` false) or `/sse/{id}/message` (`message` true) goes.
pub fn choose(
    shard: &Shard,
    snap: &Snapshot,
    target: Target,
    id: &str,
    message: bool,
    query: &str,
) -> Result<LegacyPlan, GatewayError> {
    if message {
        return plan_message(shard, snap, target, query);
    }
    let upstream = match target {
        Target::Server(i) if shard.takes_new(i) => i,
        Target::Server(_) => return Err(GatewayError::NoHealthyUpstream),
        Target::Group(g) => shard
            .pick_in_group(g, false)
            .ok_or(GatewayError::NoHealthyUpstream)?,
    };
    if !is_legacy(snap, upstream) {
        return Ok(LegacyPlan::Bridge(BridgeCall::Open { upstream }));
    }
    Ok(LegacyPlan::Stream {
        upstream,
        stream: LegacyStream {
            id: id.into(),
            upstream,
            replica: snap.routes.replica_ids[upstream],
            sse_path: snap.config.upstreams[upstream].base_path.clone(),
        },
    })
}

fn plan_message(
    shard: &Shard,
    snap: &Snapshot,
    target: Target,
    query: &str,
) -> Result<LegacyPlan, GatewayError> {
    let token =
        query_param(query, "t").ok_or(GatewayError::SessionNotFound(TokenError::Malformed))?;
    if let Some(session) = token.strip_prefix(BRIDGE_SESSION_PREFIX) {
        let valid = !session.is_empty() && session.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid {
            return Err(GatewayError::SessionNotFound(TokenError::Malformed));
        }
        return Ok(LegacyPlan::Bridge(BridgeCall::Message {
            session: token.to_string(),
        }));
    }
    let opened = shard
        .sessions
        .borrow()
        .open_endpoint(token.as_bytes(), now_unix())
        .map_err(GatewayError::SessionNotFound)?;
    // The replica must still be configured, serve this target, and be up.
    let upstream = snap
        .routes
        .replica(opened.replica)
        .filter(|i| snap.routes.serves(target, *i) && shard.is_healthy(*i))
        .ok_or(GatewayError::SessionNotFound(TokenError::Gone))?;
    let endpoint = String::from_utf8(opened.upstream_session)
        .map_err(|_| GatewayError::SessionNotFound(TokenError::Forged))?;
    let policy = &snap.config.upstreams[upstream].policy;
    let body_check = (!policy.is_empty()).then_some(BodyCheck {
        method: None,
        name: None,
        roles: None,
    });
    Ok(LegacyPlan::Message {
        upstream,
        endpoint,
        body_check,
    })
}

/// The value of `name` in a query string (`?a=1&t=...`), as written (tokens need no
/// percent-decoding: both kinds are URL-safe).
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .strip_prefix('?')
        .unwrap_or(query)
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The upstream's message endpoint as a path and query on the upstream: the `endpoint`
/// event's data is a URI reference, usually an absolute path (`/messages/?session_id=..`),
/// resolved against the SSE URL's path (`sse_path`).
pub fn resolve_endpoint(data: &[u8], sse_path: &str) -> Option<String> {
    let data = std::str::from_utf8(crate::http::trim_ascii(data)).ok()?;
    let resolved = if let Some(after_scheme) = data.split_once("://").map(|(_, rest)| rest) {
        // An absolute URL: keep its path and query (the replica is the one we streamed from).
        match after_scheme.find(['/', '?']) {
            Some(i) if after_scheme[i..].starts_with('/') => after_scheme[i..].to_string(),
            Some(i) => format!("/{}", &after_scheme[i..]),
            None => "/".to_string(),
        }
    } else if let Some(rest) = data.strip_prefix("//") {
        match rest.find('/') {
            Some(i) => rest[i..].to_string(),
            None => "/".to_string(),
        }
    } else if data.starts_with('/') {
        data.to_string()
    } else {
        let dir = &sse_path[..sse_path.rfind('/').map_or(0, |i| i + 1)];
        let dir = if dir.is_empty() { "/" } else { dir };
        format!("{dir}{data}")
    };
    let ok = resolved.len() <= MAX_UPSTREAM_SESSION
        && resolved.bytes().all(|b| b.is_ascii_graphic())
        && !resolved.contains('#');
    ok.then_some(resolved)
}

/// What scanning the start of a pass-through stream found.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// `buf[start..end]` is the `endpoint` event (its blank line excluded).
    Endpoint { start: usize, end: usize },
    /// No `endpoint` event within the events complete so far; look again from `from`.
    More { from: usize },
}

/// Looks for the first `endpoint` event in `buf`, skipping complete events before it
/// (comments, pings) from `from` on.
pub fn scan(buf: &[u8], mut from: usize) -> Scan {
    while let Some((end, after)) = sse_event::event_end(buf, from) {
        let block = &buf[from..end];
        let is_endpoint = sse_event::fields(block).any(|(n, v)| n == b"event" && v == b"endpoint");
        if is_endpoint {
            return Scan::Endpoint { start: from, end };
        }
        from = after;
    }
    Scan::More { from }
}

/// Writes the endpoint event `block`, its data replaced by the gateway's message URL with a
/// token for `stream`'s replica; other fields (`id`, `retry`) are kept. `None` if the data is
/// not a usable endpoint (the stream then passes unchanged).
pub fn rewrite_endpoint(
    block: &[u8],
    stream: &LegacyStream,
    shard: &Shard,
    out: &mut Vec<u8>,
) -> Option<()> {
    let data = Event::parse(block).data?;
    let endpoint = resolve_endpoint(&data, &stream.sse_path)?;
    let token = shard
        .sessions
        .borrow_mut()
        .seal_endpoint(stream.replica, endpoint.as_bytes(), now_unix())
        .ok()?;
    // Lines end as the server ends them, so the event stays uniform with the rest.
    let eol: &[u8] = if block.windows(2).any(|w| w == b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    };
    let mut wrote_data = false;
    for line in block.split(|b| *b == b'\n' || *b == b'\r') {
        if line.is_empty() {
            continue;
        }
        if line.starts_with(b"data:") || line == b"data" {
            if !wrote_data {
                out.extend_from_slice(b"data: /sse/");
                out.extend_from_slice(stream.id.as_bytes());
                out.extend_from_slice(b"/message?t=");
                out.extend_from_slice(token.as_bytes());
                out.extend_from_slice(eol);
                wrote_data = true;
            }
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(eol);
    }
    Some(())
}

/// The request head for the bridge: `GET /open/{upstream}/{id}` or
/// `POST /message/{id}/{session}`, with the client's credentials, origin and body framing.
pub fn write_bridge_head(
    out: &mut Vec<u8>,
    head: &RequestHead<'_, '_>,
    call: &BridgeCall,
    id: &str,
    request_id: &[u8],
) {
    out.clear();
    match call {
        BridgeCall::Open { upstream } => {
            out.extend_from_slice(b"GET /open/");
            out.extend_from_slice(itoa::Buffer::new().format(*upstream).as_bytes());
            out.push(b'/');
            out.extend_from_slice(id.as_bytes());
        }
        BridgeCall::Message { session } => {
            out.extend_from_slice(b"POST /message/");
            out.extend_from_slice(id.as_bytes());
            out.push(b'/');
            out.extend_from_slice(session.as_bytes());
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: sse-bridge\r\nConnection: close\r\n");
    for name in ["authorization", "origin"] {
        if let Some(v) = header(head, name) {
            encode::header(out, name, v);
        }
    }
    match head.framing {
        BodyFraming::Length(n) => encode::header_u64(out, "Content-Length", n),
        BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyFraming::Empty | BodyFraming::UntilClose => {
            if matches!(call, BridgeCall::Message { .. }) {
                out.extend_from_slice(b"Content-Length: 0\r\n");
            }
        }
    }
    encode::header(out, "X-Request-Id", request_id);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_resolve_to_paths() {
        let r = |d: &str, p: &str| resolve_endpoint(d.as_bytes(), p);
        assert_eq!(
            r("/messages/?session_id=ab", "/sse").as_deref(),
            Some("/messages/?session_id=ab")
        );
        assert_eq!(
            r("http://10.0.0.1:9000/m?s=1", "/sse").as_deref(),
            Some("/m?s=1")
        );
        assert_eq!(r("http://h?s=1", "/sse").as_deref(), Some("/?s=1"));
        assert_eq!(r("//h:1/m", "/sse").as_deref(), Some("/m"));
        assert_eq!(
            r("messages?s=1", "/api/sse").as_deref(),
            Some("/api/messages?s=1")
        );
        assert_eq!(r("messages", "").as_deref(), Some("/messages"));
        assert_eq!(r("/m x", "/sse"), None);
        assert_eq!(r(&format!("/{}", "a".repeat(300)), "/sse"), None);
    }

    #[test]
    fn finds_the_endpoint_event_after_comments() {
        let buf = b": ping\n\nevent: endpoint\ndata: /m?s=1\n\nevent: message\ndata: {}\n\n";
        assert_eq!(scan(buf, 0), Scan::Endpoint { start: 8, end: 37 });
        assert_eq!(scan(b": ping\n\nevent: endp", 0), Scan::More { from: 8 });
        assert_eq!(scan(b"", 0), Scan::More { from: 0 });
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param("?t=abc", "t"), Some("abc"));
        assert_eq!(query_param("?x=1&t=b.12", "t"), Some("b.12"));
        assert_eq!(query_param("?tt=1", "t"), None);
        assert_eq!(query_param("", "t"), None);
    }
}
