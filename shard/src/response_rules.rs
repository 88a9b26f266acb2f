//! What a proxied response gets besides its bytes: the `security.headers` lines it lacks
//! (when the operator asks, or when one of the process's own hosts answered), and the
//! filter of the lists in it (when the caller's roles or the server's policy narrow what
//! it may call).
//!
//! Owns: those two decisions, per request. Must not: touch the bytes (`client_head`,
//! `list_response` do).

use crate::context::RequestCtx;
use crate::mcp::lists::{ListFilter, ListKinds};
use mcp_gateway_config::{Transport, Upstream};

/// The `security.headers` lines a proxied response gets where it lacks them: with
/// `upstream: true`, and always from the process's own hosts (stdio servers, the SSE
/// bridge), whose answers are the gateway's own; none otherwise.
pub fn proxied_security_lines<'a>(
    p: &'a RequestCtx,
    upstream: &Upstream,
    via_bridge: bool,
) -> &'a [String] {
    let headers = &p.snap.config.security.headers;
    let own_host = via_bridge || matches!(upstream.transport, Transport::Stdio(_));
    if headers.upstream || own_host {
        &headers.lines
    } else {
        &[]
    }
}

/// What the lists in the answer are filtered by, when the caller's roles or the server's
/// policy narrow what it may call: a POST's list calls (`lists`, learnt by its body check),
/// or every list a GET stream may replay. `None` on the plain path.
pub fn list_filter<'a>(
    p: &'a RequestCtx,
    upstream: &'a mcp_gateway_config::Upstream,
    lists: ListKinds,
) -> Option<ListFilter<'a>> {
    let roles = if p.is_post {
        // The answer to a legacy message comes on its stream, not here.
        if lists.is_empty() || p.mcp.is_none() {
            return None;
        }
        p.body_check.as_ref().and_then(|c| c.roles.as_deref())
    } else {
        if p.mcp.is_none() && p.legacy.is_none() {
            return None;
        }
        if p.stream_roles.is_none() && upstream.policy.is_empty() {
            return None;
        }
        p.stream_roles.as_deref()
    };
    Some(ListFilter {
        kinds: if p.is_post { lists } else { ListKinds::ALL },
        roles,
        policy: &upstream.policy,
        json: p.is_post,
    })
}
