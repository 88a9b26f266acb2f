//! Phases 3 and 8: the custom request filters a program registered
//! ([`crate::filter`]), those of one [`FilterPhase`] in their order. The first that
//! answers ends the request; header edits add up and are applied to the upstream request.
//!
//! Owns: running the filters and keeping their edits in the context. Must not: cost
//! anything when none is registered.

use super::{Request, Step};
use crate::client::Conn;
use crate::context::{Action, RequestCtx};
use crate::error::GatewayError;
use crate::filter::{FilterPhase, FilterRequest, RouteInfo, Verdict};
use crate::router::Route;
use crate::state::Shard;

/// Runs the filters of `phase`; a request pays one length check when none is registered.
#[inline]
pub fn run(
    req: &Request<'_, '_, '_>,
    shard: &Shard,
    conn: &Conn,
    ctx: &mut RequestCtx,
    phase: FilterPhase,
) -> Step {
    if shard.filters.is_empty() {
        return Step::Continue;
    }
    run_filters(req, shard, conn, ctx, phase)
}

#[inline(never)]
fn run_filters(
    req: &Request<'_, '_, '_>,
    shard: &Shard,
    conn: &Conn,
    ctx: &mut RequestCtx,
    phase: FilterPhase,
) -> Step {
    let route = match req.route {
        Route::Mcp { .. } | Route::Sse { .. } => RouteInfo::Server(server_id(req.head.path())),
        _ => RouteInfo::Default,
    };
    let view = FilterRequest {
        method: req.head.method,
        target: req.head.target,
        headers: req.head.headers,
        route,
        principal: ctx.principal.as_deref().map(|p| &*p.subject),
        peer_ip: &conn.peer_ip,
    };
    let edits = ctx.header_edits.get_or_insert_with(Box::default);
    for filter in shard.filters.of(phase) {
        if let Verdict::Respond { status, message } = filter.filter(&view, edits) {
            let status = if (400..=599).contains(&status) {
                status
            } else {
                403
            };
            tracing::debug!(filter = filter.name(), status, "a request filter answered");
            return Step::Answer(Action::Reject(GatewayError::Filtered { status, message }));
        }
    }
    Step::Continue
}

/// The `{id}` of `/mcp/{id}...` or `/sse/{id}...`.
fn server_id(path: &str) -> &str {
    let rest = path
        .strip_prefix("/mcp/")
        .or_else(|| path.strip_prefix("/sse/"))
        .unwrap_or("");
    rest.split('/').next().unwrap_or("")
}
