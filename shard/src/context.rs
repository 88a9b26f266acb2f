//! One request's context, as the phases fill it in and the answering code reads it: where
//! it goes ([`Action`]), its framing and keep-alive facts, its id, the upstream head being
//! built, what the response side needs (MCP session sealing, CORS, sticky cookie, the rules
//! list answers are filtered by), and the config generation it runs on.
//!
//! Owns: those types. Must not: depend on the phases, the pipeline or the exchange (they
//! all depend on it), or borrow the read buffer.

use crate::error::GatewayError;
use crate::http::BodyFraming;
use crate::mcp;
use crate::mcp::route::McpReply;
use crate::request_id::RequestId;
use crate::router::LocalPage;
use crate::snapshot::Snapshot;
use monoio::time::Instant;
use std::rc::Rc;

pub enum Action {
    Local(LocalPage),
    /// `OPTIONS *`: what the gateway allows.
    ServerOptions,
    Proxy {
        upstream: usize,
    },
    Reject(GatewayError),
    /// A CORS preflight from this allowed origin.
    Preflight(Vec<u8>),
    /// RFC 9728 protected-resource metadata (the config generation's document).
    ResourceMetadata,
    /// An opaque bearer token to ask this OAuth issuer about (`pipeline::settle`) before
    /// the phases run again.
    Introspect(usize),
    /// A legacy-SSE request this process's bridge serves (its head is in `out`); the slot
    /// of the server a stream it opens goes to, which counts it as in flight there.
    Bridge(Option<usize>),
}

/// One request's context: what the phases decided, owning no borrow of the read buffer,
/// so that phases after it may await.
pub struct RequestCtx {
    pub action: Action,
    pub head_len: usize,
    pub framing: BodyFraming,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub is_head: bool,
    pub is_post: bool,
    pub is_delete: bool,
    /// An idempotent method (RFC 9110 §9.2.2): may be sent upstream again.
    pub idempotent: bool,
    /// HTTP/1.1 client (an HTTP/1.0 one is forwarded as HTTP/1.0, not pooled).
    pub http11: bool,
    pub request_id: RequestId,
    pub started: Instant,
    /// For a proxied request: the upstream request head, written here.
    pub out: Vec<u8>,
    /// For an MCP request: what the response side needs (session sealing, CORS).
    pub mcp: Option<McpReply>,
    /// Errors are JSON-RPC error objects (MCP paths).
    pub jsonrpc: bool,
    /// An allowed browser `Origin` on an MCP path: CORS headers on the answer.
    pub cors_origin: Option<Vec<u8>>,
    /// The body must be read and checked (a server policy, or the caller's roles) before it
    /// goes upstream; the list methods it calls then have their answers filtered.
    pub body_check: Option<mcp::stateless::BodyCheck>,
    /// On an MCP request without a body to check (a GET stream, which may replay answers):
    /// what the caller's roles allow on the chosen server, when less than everything. The
    /// lists in the stream's answers are filtered by them.
    pub stream_roles: Option<Vec<mcp_gateway_config::PolicyRule>>,
    /// `loadBalancer.sticky`: the `Set-Cookie` value naming the chosen upstream.
    pub set_cookie: Option<String>,
    /// `sessions.store: "redis"`: the session the store must still hold.
    pub store_key: Option<crate::store::SessionKey>,
    /// A legacy SSE stream whose `endpoint` event is rewritten on its way back.
    pub legacy: Option<mcp::legacy::LegacyStream>,
    /// `/mcp/{id}` for a legacy-only server: the exchange goes to the SSE bridge.
    pub reverse: bool,
    /// The config generation the request started on; it ends on it too.
    pub snap: Rc<Snapshot>,
    /// Where the head starts in the connection's read buffer: a phase that awaits may parse
    /// it again from there (it stays until the body is streamed upstream).
    pub head_at: usize,
    /// Who the request authenticated as (none without authentication, or on a public path).
    pub principal: Option<Rc<crate::auth::Principal>>,
    /// Upstream header changes made by custom filters (none without filters).
    pub header_edits: Option<Box<crate::filter::HeaderEdits>>,
    /// The upstream was picked among several (default group, or a replica group without a
    /// session): a failover may choose again if it cannot be reached.
    pub picked: bool,
}

impl RequestCtx {
    /// The context of a request whose head was just parsed: counted, given its id, on the
    /// shard's current config generation.
    pub fn start(
        head: &crate::http::request::RequestHead<'_, '_>,
        shard: &crate::state::Shard,
        head_at: usize,
    ) -> RequestCtx {
        shard.metrics.borrow_mut().request_started();
        RequestCtx::fresh(head, shard, head_at)
    }

    fn fresh(
        head: &crate::http::request::RequestHead<'_, '_>,
        shard: &crate::state::Shard,
        head_at: usize,
    ) -> RequestCtx {
        RequestCtx {
            action: Action::Local(LocalPage::Health),
            head_len: head.head_len,
            framing: head.framing,
            keep_alive: head.keep_alive,
            expect_continue: head.expect_continue,
            is_head: head.is_head(),
            is_post: head.method == "POST",
            is_delete: head.method == "DELETE",
            idempotent: matches!(
                head.method,
                "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
            ),
            http11: head.minor_version == 1,
            request_id: RequestId::new(shard, head.request_id),
            started: Instant::now(),
            out: shard.take_buffer(),
            mcp: None,
            jsonrpc: false,
            cors_origin: None,
            body_check: None,
            stream_roles: None,
            set_cookie: None,
            store_key: None,
            legacy: None,
            reverse: false,
            snap: shard.snapshot(),
            head_at,
            principal: None,
            header_edits: None,
            picked: false,
        }
    }
}

impl RequestCtx {
    /// A context for the same request, the phases run again (after an awaiting step):
    /// not counted a second time, on the generation it started on.
    pub fn again(
        head: &crate::http::request::RequestHead<'_, '_>,
        shard: &crate::state::Shard,
        head_at: usize,
        snap: Rc<Snapshot>,
    ) -> RequestCtx {
        let mut ctx = RequestCtx::fresh(head, shard, head_at);
        ctx.snap = snap;
        ctx
    }

    pub fn error_style(&self) -> ErrorStyle<'_> {
        ErrorStyle {
            request_id: &self.request_id,
            jsonrpc: self.jsonrpc,
            cors_origin: self.cors_origin.as_deref(),
            head_only: self.is_head,
        }
    }
}

/// How the gateway's own error is written.
pub struct ErrorStyle<'a> {
    pub request_id: &'a RequestId,
    /// A JSON-RPC error object (MCP paths) rather than `{"error":{...}}`.
    pub jsonrpc: bool,
    /// An allowed browser origin: CORS headers too.
    pub cors_origin: Option<&'a [u8]>,
    /// The answer to a HEAD request: the head only (its `Content-Length` still the body's).
    pub head_only: bool,
}

impl<'a> ErrorStyle<'a> {
    pub fn plain(request_id: &'a RequestId) -> Self {
        ErrorStyle {
            request_id,
            jsonrpc: false,
            cors_origin: None,
            head_only: false,
        }
    }
}
