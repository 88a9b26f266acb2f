//! Phase 10, choosing the upstream: on `/mcp/{id}` the replica a session token names or a
//! pick among the healthy members (then that server's policy), on `/sse/{id}` the legacy
//! plan (a server that speaks it, or this process's bridge), elsewhere the default group
//! (with its sticky cookie); then the body limit, and the upstream request head.
//!
//! Owns: the upstream decision and the head written for it. Must not: send anything.

use super::Request;
use crate::client::Conn;
use crate::context::{Action, RequestCtx};
use crate::error::GatewayError;
use crate::http::BodyFraming;
use crate::mcp;
use crate::mcp::legacy::LegacyPlan;
use crate::mcp::route::McpReply;
use crate::router::Route;
use crate::state::Shard;
use crate::upstream_head::{write_upstream_head, Peer, UpstreamTarget};

/// Where the upstream head's target comes from.
enum Path<'a> {
    /// The upstream's path, then this rest of the client's target.
    Under(&'a str),
    /// The endpoint a legacy server named for its messages (path and query).
    Endpoint(String),
    /// The SSE bridge, for a legacy-only server reached on `/mcp/{id}`.
    Reverse(String),
}

/// Decides the request's action: proxy to an upstream (its head written into `ctx.out`),
/// pass to the bridge, or refuse.
pub fn run(req: &Request<'_, '_, '_>, shard: &Shard, conn: &Conn, ctx: &mut RequestCtx) -> Action {
    let snap = ctx.snap.clone();
    let head = req.head;
    let (upstream, path) = match req.route {
        Route::Sse {
            target,
            id,
            message,
            query,
        } => match mcp::legacy::choose(shard, &snap, target, id, message, query) {
            Ok(LegacyPlan::Stream { upstream, stream }) => {
                ctx.legacy = Some(stream);
                (upstream, Path::Under(query))
            }
            Ok(LegacyPlan::Message {
                upstream,
                endpoint,
                body_check,
            }) => {
                ctx.body_check = body_check;
                (upstream, Path::Endpoint(endpoint))
            }
            Ok(LegacyPlan::Bridge(call)) => {
                let rid = ctx.request_id.as_bytes();
                mcp::legacy::write_bridge_head(&mut ctx.out, head, &call, id, rid);
                let slot = match call {
                    mcp::legacy::BridgeCall::Open { upstream } => Some(upstream),
                    mcp::legacy::BridgeCall::Message { .. } => None,
                };
                return over_limit(ctx).unwrap_or(Action::Bridge(slot));
            }
            Err(e) => return Action::Reject(e),
        },
        Route::Mcp { target, rest } => {
            match mcp::route::choose(head, shard, &snap, target, &req.routing) {
                Ok(plan) => {
                    ctx.picked = matches!(target, crate::router::Target::Group(_))
                        && plan.reply.resumed.is_none();
                    ctx.mcp = Some(plan.reply);
                    ctx.body_check = plan.body_check;
                    ctx.store_key = plan.store_key;
                    // A legacy-only replica is reached through this process's bridge.
                    let path = if mcp::legacy::is_legacy(&snap, plan.upstream) {
                        ctx.reverse = true;
                        Path::Reverse(format!("/reverse/{}", plan.upstream))
                    } else {
                        Path::Under(rest)
                    };
                    (plan.upstream, path)
                }
                Err(e) => return Action::Reject(e),
            }
        }
        Route::Default => match crate::sticky::pick_default(head, shard, &snap) {
            Some(pick) => {
                ctx.picked = true;
                ctx.set_cookie = pick.set_cookie;
                (pick.upstream, Path::Under(head.target))
            }
            None => return Action::Reject(GatewayError::NoHealthyUpstream),
        },
        // Answered by `route`; not reached.
        Route::Local(page) => return Action::Local(page),
        Route::ServerOptions => return Action::ServerOptions,
        Route::UnknownServer(id) => return Action::Reject(GatewayError::UnknownServer(id.into())),
    };
    if let Some(refusal) = over_limit(ctx) {
        return refusal;
    }
    let config = &snap.config.upstreams[upstream];
    let (base_path, rest) = match &path {
        Path::Under(rest) => (config.base_path.as_str(), *rest),
        Path::Endpoint(endpoint) => ("", endpoint.as_str()),
        Path::Reverse(bridge) => (bridge.as_str(), ""),
    };
    let target = UpstreamTarget {
        upstream: config,
        base_path,
        rest,
        session: ctx.mcp.as_ref().and_then(McpReply::upstream_session),
        edits: ctx.header_edits.as_deref().filter(|e| !e.is_empty()),
    };
    let peer = Peer {
        ip: &conn.peer_ip,
        trusted: conn.trusted_proxy,
    };
    write_upstream_head(&mut ctx.out, head, &target, &peer, &ctx.request_id);
    Action::Proxy { upstream }
}

/// A body announced larger than `server.limits.maxBodyBytes` is refused before anything
/// goes upstream.
fn over_limit(ctx: &RequestCtx) -> Option<Action> {
    let limit = ctx.snap.config.server.limits.max_body_bytes;
    match ctx.framing {
        BodyFraming::Length(n) if n > limit => {
            Some(Action::Reject(GatewayError::BodyTooLarge { limit }))
        }
        _ => None,
    }
}
