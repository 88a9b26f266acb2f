//! Phase 2, the browser rules of MCP endpoints: a request from a disallowed `Origin`, or
//! naming a disallowed `Host` on a loopback listener (DNS rebinding), is refused; a CORS
//! preflight from an allowed origin is answered; an allowed origin gets CORS headers on
//! the answer.
//!
//! Owns: those decisions for `/mcp/{id}` and `/sse/{id}`. Must not: apply to other paths
//! (the default group's backends keep their own browser rules).

use super::{Request, Step};
use crate::context::{Action, RequestCtx};
use crate::mcp::route::{browser_preflight, header};
use crate::router::Route;

pub fn run(req: &Request<'_, '_, '_>, ctx: &mut RequestCtx) -> Step {
    if !matches!(req.route, Route::Mcp { .. } | Route::Sse { .. }) {
        return Step::Continue;
    }
    // An allowed origin gets CORS headers on every answer, refusals included.
    ctx.cors_origin = header(req.head, "origin")
        .filter(|o| ctx.snap.origins.allows(o))
        .map(<[u8]>::to_vec);
    match browser_preflight(req.head, &ctx.snap) {
        Err(e) => Step::Answer(Action::Reject(e)),
        Ok(Some(origin)) => Step::Answer(Action::Preflight(origin)),
        Ok(None) => Step::Continue,
    }
}
