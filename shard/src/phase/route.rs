//! Phase 1, routing: where the request goes, from its method and target and the route
//! table of the request's config generation. The gateway's own pages, `OPTIONS *` and
//! unknown server ids are answered here.
//!
//! With OAuth configured, the RFC 9728 metadata paths are the gateway's own too.
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
    let path = head.path();
    if is_resource_metadata(path) && ctx.snap.auth.keys.resource_metadata.is_some() {
        let request = Request {
            head,
            route: Route::Default,
            routing: Default::default(),
        };
        return (request, Step::Answer(Action::ResourceMetadata));
    }
    let route = router::route(head.method, head.target, &ctx.snap.routes);
    let auth = &ctx.snap.config.security.auth;
    ctx.jsonrpc = matches!(
        route,
        Route::Mcp { .. } | Route::Sse { .. } | Route::UnknownServer(_)
    );
    let guarded = super::authenticate::needs_credentials(auth, path, &route);
    let step = match route {
        // Behind credentials: answered by `authenticate` once they are checked (so that
        // nobody without them learns which pages or server ids exist).
        Route::Local(_) | Route::UnknownServer(_) if guarded => Step::Continue,
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

/// RFC 9728 metadata: the well-known path, or a resource's path under it.
fn is_resource_metadata(path: &str) -> bool {
    path.strip_prefix(crate::auth::oauth::METADATA_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}
