//! Phase 1, routing: where the request goes, from its method and target and the route
//! table of the request's config generation. The gateway's own pages, `OPTIONS *` and
//! unknown server ids are answered here.
//!
//! Owns: turning the route into the context's first facts (JSON-RPC errors on MCP paths).
//! Must not: check headers (later phases do).

use super::{Request, Step};
use crate::context::{Action, RequestCtx};
use crate::error::GatewayError;
use crate::http::request::RequestHead;
use crate::router::{self, Route};

/// Routes the request; the route is shared with the later phases through [`Request`].
pub fn run<'r, 'h, 'b>(
    head: &'r RequestHead<'h, 'b>,
    ctx: &mut RequestCtx,
) -> (Request<'r, 'h, 'b>, Step) {
    let route = router::route(head.method, head.target, &ctx.snap.routes);
    ctx.jsonrpc = matches!(
        route,
        Route::Mcp { .. } | Route::Sse { .. } | Route::UnknownServer(_)
    );
    let step = match route {
        Route::Local(page) => Step::Answer(Action::Local(page)),
        Route::ServerOptions => Step::Answer(Action::ServerOptions),
        Route::UnknownServer(id) => {
            Step::Answer(Action::Reject(GatewayError::UnknownServer(id.to_string())))
        }
        Route::Mcp { .. } | Route::Sse { .. } | Route::Default => Step::Continue,
    };
    let request = Request {
        head,
        route,
        routing: Default::default(),
    };
    (request, step)
}
