//! Choosing the upstream of an MCP request (`/mcp/{server or group}`), from headers alone:
//! browser origin, protocol version and `Accept` checks, then the replica named by the
//! session token, or a healthy replica for a request that starts a session.
//!
//! Owns: the MCP admission rules. Must not: read bodies, write bytes, or do I/O.

use super::headers::{accept_ok, protocol_version_supported};
use super::stateless::{self, BodyCheck};
use crate::error::GatewayError;
use crate::http::request::RequestHead;
use crate::router::Target;
use crate::snapshot::Snapshot;
use crate::state::Shard;

/// What the response side needs to finish an MCP exchange.
#[derive(Debug, Clone)]
pub struct McpReply {
    /// The replica's identity, sealed into any `Mcp-Session-Id` it returns.
    pub replica: u64,
    /// A stateless (2026-07-28) request without a session: its answer tells which revision
    /// the replica speaks.
    pub stateless: bool,
    /// `subscriptions/listen`: the response is a long-lived stream, timed like a GET stream.
    pub listen: bool,
    /// The session the request carried, if any.
    pub resumed: Option<Resumed>,
}

/// A session named by the client's token.
#[derive(Debug, Clone)]
pub struct Resumed {
    /// The upstream's own session id, restored from the token.
    pub upstream_session: Vec<u8>,
    /// The client's token as it came: handed back unchanged while the upstream keeps
    /// answering with the same id, so a client that keeps the latest `Mcp-Session-Id` it
    /// saw (the TypeScript SDK does) holds one token for the whole session, and the session
    /// store's key for it stays valid.
    pub token: Vec<u8>,
}

impl McpReply {
    /// The upstream's own session id, for the upstream request head.
    pub fn upstream_session(&self) -> Option<&[u8]> {
        self.resumed.as_ref().map(|r| &r.upstream_session[..])
    }
}

/// Where an MCP request goes and what its exchange needs.
pub struct McpPlan {
    pub upstream: usize,
    pub reply: McpReply,
    /// The body must be read and checked before it goes upstream (a policy applies).
    pub body_check: Option<BodyCheck>,
    /// `sessions.store: "redis"`: the session to confirm with the store first.
    pub store_key: Option<crate::store::SessionKey>,
}

pub fn header<'b>(head: &RequestHead<'_, 'b>, name: &str) -> Option<&'b [u8]> {
    head.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// The browser rules of MCP endpoints: a request from a disallowed `Origin`, or naming a
/// disallowed `Host` (DNS-rebinding defence on loopback listeners), is refused;
/// a CORS preflight from an allowed one is answered by the gateway (its origin returned).
pub fn browser_preflight(
    head: &RequestHead<'_, '_>,
    snap: &Snapshot,
) -> Result<Option<Vec<u8>>, GatewayError> {
    if !snap.origins.allows_host(|| header(head, "host")) {
        return Err(GatewayError::Forbidden("host not allowed"));
    }
    let origin = header(head, "origin");
    if let Some(o) = origin {
        if !snap.origins.allows(o) {
            return Err(GatewayError::Forbidden("origin not allowed"));
        }
    }
    Ok(origin
        .filter(|_| head.method == "OPTIONS")
        .map(<[u8]>::to_vec))
}

/// The MCP header rules: a supported `MCP-Protocol-Version`, an `Accept` the transport
/// can answer, and well-formed routing headers (`Mcp-Method`, `Mcp-Name`).
pub fn check_headers<'b>(
    head: &RequestHead<'_, 'b>,
) -> Result<stateless::RoutingHeaders<'b>, GatewayError> {
    if let Some(v) = header(head, "mcp-protocol-version") {
        if !protocol_version_supported(v) {
            return Err(GatewayError::UnsupportedProtocolVersion);
        }
    }
    if !accept_ok(head.method, header(head, "accept")) {
        return Err(GatewayError::NotAcceptable);
    }
    stateless::routing_headers(head)
}

/// Chooses the replica (the one a session token names, or a pick among the healthy ones)
/// and applies its policy to the routing headers.
pub fn choose(
    head: &RequestHead<'_, '_>,
    shard: &Shard,
    snap: &Snapshot,
    target: Target,
    routing: &stateless::RoutingHeaders<'_>,
) -> Result<McpPlan, GatewayError> {
    let (upstream, session) = match header(head, "mcp-session-id") {
        Some(token) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let opened = shard
                .sessions
                .borrow()
                .open(token, now)
                .map_err(GatewayError::SessionNotFound)?;
            // The replica must still be configured, serve this target, and be up.
            let upstream = snap
                .routes
                .replica(opened.replica)
                .filter(|i| snap.routes.serves(target, *i) && shard.is_healthy(*i))
                .ok_or(GatewayError::SessionNotFound(
                    crate::mcp::session::TokenError::Gone,
                ))?;
            let resumed = Resumed {
                upstream_session: opened.upstream_session,
                token: token.to_vec(),
            };
            (upstream, Some(resumed))
        }
        None => {
            let upstream = match target {
                Target::Server(i) if shard.takes_new(i) => i,
                Target::Server(_) => return Err(GatewayError::NoHealthyUpstream),
                Target::Group(g) => shard
                    .pick_in_group(g, routing.method.is_some())
                    .ok_or(GatewayError::NoHealthyUpstream)?,
            };
            (upstream, None)
        }
    };
    let body_check = authorize(head, shard, snap, upstream, routing)?;
    let store_key = match (&session, &shard.store) {
        (Some(resumed), Some(_)) => crate::store::key_of(&resumed.token),
        _ => None,
    };
    Ok(McpPlan {
        upstream,
        reply: McpReply {
            replica: snap.routes.replica_ids[upstream],
            stateless: routing.method.is_some() && session.is_none(),
            listen: routing.method.is_some_and(stateless::is_listen),
            resumed: session,
        },
        body_check,
        store_key,
    })
}

/// Counts the call by its `Mcp-Method` and applies the server's policy to the routing
/// headers; with a policy, the body must be checked too (it may not match the headers).
fn authorize(
    head: &RequestHead<'_, '_>,
    shard: &Shard,
    snap: &Snapshot,
    upstream: usize,
    routing: &stateless::RoutingHeaders<'_>,
) -> Result<Option<BodyCheck>, GatewayError> {
    let name = routing.name.map(stateless::decode_name);
    let name = name.as_ref().and_then(|n| n.as_deref());
    let policy = &snap.config.upstreams[upstream].policy;
    if let Some(method) = routing.method {
        shard
            .metrics
            .borrow_mut()
            .mcp_method(stateless::method_index(method));
        if !stateless::permits(policy, method, name) {
            let method = String::from_utf8_lossy(method);
            return Err(GatewayError::PolicyDenied(stateless::describe(
                &method, name,
            )));
        }
    }
    Ok(
        (!policy.is_empty() && head.method == "POST").then(|| BodyCheck {
            method: routing.method.map(<[u8]>::to_vec),
            name: name.map(<[u8]>::to_vec),
            roles: None,
        }),
    )
}
