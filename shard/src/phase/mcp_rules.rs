//! Phase 7, the MCP header rules: on `/mcp/{id}`, a supported `MCP-Protocol-Version`, an
//! `Accept` the transport can answer and well-formed routing headers (`Mcp-Method`,
//! `Mcp-Name`, counted by method); on `/sse/{id}`, the legacy transport's methods.
//!
//! Owns: reading the routing headers into the shared [`Request`]. Must not: choose the
//! upstream or apply a server's policy (that needs the chosen server: `choose`).

use super::{Request, Step};
use crate::context::RequestCtx;
use crate::mcp;
use crate::router::Route;

pub fn run(req: &mut Request<'_, '_, '_>, _ctx: &mut RequestCtx) -> Step {
    match req.route {
        Route::Mcp { .. } => match mcp::route::check_headers(req.head) {
            Ok(routing) => {
                req.routing = routing;
                Step::Continue
            }
            Err(e) => Step::refuse_if(Err(e)),
        },
        Route::Sse { message, .. } => {
            Step::refuse_if(mcp::legacy::check_request(req.head, message))
        }
        _ => Step::Continue,
    }
}
