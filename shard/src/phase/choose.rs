//! Phase 10, choosing the upstream: on `/mcp/{id}` the replica a session token names or a
//! pick among the healthy members (then that server's policy), on `/sse/{id}` the legacy
//! plan (a server that speaks it, or this process's bridge), elsewhere the default group
//! (with its sticky cookie); then the body limit, the principal's roles (`security.rbac`)
//! for that server, and the upstream request head.
//!
//! Owns: the upstream decision and the head written for it. Must not: send anything.

use super::Request;
use crate::auth::rbac::{self, Access};
use crate::client::Conn;
use crate::context::{Action, RequestCtx};
use crate::error::GatewayError;
use crate::http::BodyFraming;
use crate::mcp;
use crate::mcp::legacy::LegacyPlan;
use crate::mcp::route::McpReply;
use crate::mcp::stateless::BodyCheck;
use crate::router::Route;
use crate::state::Shard;
use crate::upstream_head::{write_upstream_head, Credentials, Peer, UpstreamTarget};

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
                let checked = match slot {
                    Some(upstream) => check_roles(req, ctx, upstream, false),
                    None => check_bridge_roles(ctx, target),
                };
                if let Err(e) = checked {
                    return Action::Reject(e);
                }
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
    let mcp = !matches!(req.route, Route::Default);
    if let Err(e) = check_roles(req, ctx, upstream, mcp) {
        return Action::Reject(e);
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
        credentials: Credentials::of(&snap.config.security.auth, config, ctx.principal.as_deref()),
    };
    let peer = Peer {
        ip: &conn.peer_ip,
        trusted: conn.trusted_proxy,
    };
    write_upstream_head(&mut ctx.out, head, &target, &peer, &ctx.request_id);
    Action::Proxy { upstream }
}

/// RBAC (`security.rbac`) for the chosen server: refuses a server no role of the principal
/// reaches, and a call its roles do not allow; on MCP paths, narrows what the body may
/// call (the body is then read and checked before it goes upstream) and what list answers
/// show (a POST's through its body check, a GET stream's through `stream_roles`).
fn check_roles(
    req: &Request<'_, '_, '_>,
    ctx: &mut RequestCtx,
    upstream: usize,
    mcp: bool,
) -> Result<(), GatewayError> {
    // Chosen again on a failover: what the first choice narrowed no longer holds.
    ctx.stream_roles = None;
    let config = &ctx.snap.config;
    if !config.security.rbac.enabled {
        return Ok(());
    }
    let rules = match rbac::access(config, ctx.principal.as_deref(), upstream) {
        Access::All => return Ok(()),
        Access::Denied => {
            let id = config.upstreams.get(upstream).map_or("", |u| u.id.as_str());
            return Err(GatewayError::RoleDenied(format!("server `{id}`")));
        }
        Access::Methods(rules) => rules,
    };
    if !mcp {
        // A plain route reads no JSON-RPC: a role narrowed to some calls cannot be held to
        // them there (an MCP server behind the default group would run anything).
        let id = config.upstreams.get(upstream).map_or("", |u| u.id.as_str());
        return Err(GatewayError::RoleDenied(format!(
            "server `{id}` through a plain route: use /mcp/{id}"
        )));
    }
    let name = req.routing.name.map(mcp::stateless::decode_name);
    let name = name.as_ref().and_then(|n| n.as_deref());
    if let Some(method) = req.routing.method {
        if !rbac::permits(&rules, method, name) {
            let method = String::from_utf8_lossy(method);
            return Err(GatewayError::RoleDenied(mcp::stateless::describe(
                &method, name,
            )));
        }
    }
    if ctx.is_post {
        let check = ctx.body_check.get_or_insert_with(|| BodyCheck {
            method: req.routing.method.map(<[u8]>::to_vec),
            name: name.map(<[u8]>::to_vec),
            roles: None,
        });
        check.roles = Some(rules);
    } else {
        ctx.stream_roles = Some(rules);
    }
    Ok(())
}

/// A message to a bridge session: the bridge thread does not know principals, so with
/// RBAC on it takes only messages from a principal that may call anything on every
/// server of the target (a narrower role uses `/mcp/{id}`, where each call is checked).
fn check_bridge_roles(ctx: &RequestCtx, target: crate::router::Target) -> Result<(), GatewayError> {
    let config = &ctx.snap.config;
    if !config.security.rbac.enabled {
        return Ok(());
    }
    let all = (0..config.upstreams.len())
        .filter(|&i| ctx.snap.routes.serves(target, i))
        .all(|i| rbac::access(config, ctx.principal.as_deref(), i) == Access::All);
    if all {
        Ok(())
    } else {
        Err(GatewayError::RoleDenied(
            "messages through the legacy SSE bridge (use /mcp/{id})".to_string(),
        ))
    }
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
