//! One proxied exchange as the pipeline hands it to `upstream`: which upstream, under which
//! limits, with what the response side must add, and how it can end.
//!
//! Owns: those types. Must not: do the exchange (`upstream` does) or depend on the modules
//! that use it (`upstream`, `upstream_response`), so that they need not depend on each
//! other.

use crate::error::GatewayError;
use crate::mcp::legacy::LegacyStream;
use crate::mcp::lists::ListFilter;
use crate::mcp::route::McpReply;
use crate::state::Shard;
use mcp_gateway_config::Upstream;
use monoio::time::Instant;
use std::rc::Rc;

pub struct Exchange<'a> {
    pub shard: &'a Rc<Shard>,
    pub index: usize,
    pub upstream: &'a Upstream,
    /// The `server` section of the request's config generation.
    pub server: &'a mcp_gateway_config::Server,
    /// When the request started.
    pub started: Instant,
    /// Waiting for a pooled connection and connecting must end before this; sending the
    /// head then has the upstream's `timeout`, and so has the response head, from when the
    /// whole request was sent.
    pub deadline: Instant,
    /// GET, HEAD, OPTIONS, TRACE, PUT or DELETE (RFC 9110 §9.2.2): may be sent again after
    /// a pooled connection closed without answering.
    pub idempotent: bool,
    /// A POST: a streamed response to it is a tool call, timed by progress.
    pub is_post: bool,
    pub is_head: bool,
    pub client_keep_alive: bool,
    /// An HTTP/1.1 client. An HTTP/1.0 exchange is not pooled (the upstream closes it),
    /// and chunked framing is removed from its response, ending the body by closing.
    pub http11_client: bool,
    pub max_body: u64,
    /// An MCP exchange: seal the upstream's `Mcp-Session-Id` into a token.
    pub mcp: Option<&'a McpReply>,
    /// An allowed browser origin: CORS headers on the response.
    pub cors_origin: Option<&'a [u8]>,
    /// A legacy SSE stream: its `endpoint` event is rewritten to point through the gateway.
    pub legacy: Option<&'a LegacyStream>,
    /// `loadBalancer.sticky`: a `Set-Cookie` value to add to the response.
    pub set_cookie: Option<&'a str>,
    /// Security header lines to add to the response where it lacks them (see
    /// `client_head::HeadRewrite::security`); empty when none apply.
    pub security: &'a [String],
    /// The caller's roles or the server's policy narrow what it may call: the lists in a
    /// successful answer are filtered (none on the plain path).
    pub list: Option<ListFilter<'a>>,
    /// Connect here instead (the SSE bridge, for `/mcp/{id}` on a legacy-only server); such
    /// connections are not pooled, so they never mix with the server's own.
    pub via: Option<std::net::SocketAddr>,
}

pub struct Completed {
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub client_keep_alive: bool,
}

pub enum Failure {
    /// Nothing was sent to the client yet: answer with this error.
    BeforeResponse(GatewayError),
    /// The response head went out, then the relay broke: close the client connection.
    AfterResponse { status: u16, reason: &'static str },
    /// The client went away.
    ClientGone,
    /// The client read none of the response for `server.limits.sendTimeout`.
    SendTimeout,
    /// No connection to the upstream could be made (refused, unreachable, connect timeout):
    /// it saw nothing of the request, so another replica may be tried.
    Unreached(GatewayError),
}
