//! The life of one request, phase by phase, top to bottom:
//!
//! 1. `prepare` (synchronous, borrowing the parsed head): count it, give it a request id,
//!    route it (own page, `/mcp/{id}`, default group), choose the upstream, check the body
//!    limit, and write the upstream request head.
//! 2. `run`: answer own pages and refusals, or `proxy`: send the head and body upstream
//!    (retrying once on a stale pooled connection), relay the response head and body back.
//! 3. Record metrics and decide whether the client connection stays open.
//!
//! Owns: the order of phases and the keep-alive decision. Must not: parse bytes itself
//! (`http`), pick replicas (`balancer`), or manage sockets of the pool (`upstream`, `pool`).

use crate::answer::{respond_error, respond_page, respond_preflight, ErrorStyle};
use crate::connection::{BufferError, Conn};
use crate::error::GatewayError;
use crate::http::request::RequestHead;
use crate::http::BodyFraming;
use crate::legacy_sse::{self, BridgeEnd};
use crate::mcp;
use crate::mcp::inspect::Refusal;
use crate::mcp::legacy::LegacyPlan;
use crate::mcp::route::{McpPlan, McpReply};
use crate::mcp::stateless::MAX_CHECKED_BODY;
use crate::relay::BodyLeft;
use crate::request_id::RequestId;
use crate::router::{self, LocalPage, Route};
use crate::snapshot::Snapshot;
use crate::state::Shard;
use crate::upstream::{self, Exchange};
use crate::upstream_head::{write_upstream_head, Peer, UpstreamTarget};
use monoio::time::Instant;
use std::rc::Rc;

/// Bodies up to this size are read whole before going upstream (see `proxy`).
const REPLAYABLE_BODY: u64 = 64 * 1024;

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
    /// A legacy-SSE request this process's bridge serves (its head is in `out`).
    Bridge,
}

/// Phase 1's result: everything the async phases need, owning no borrow of the buffer.
pub struct Prepared {
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
    /// The body must be read and checked (a server policy) before it goes upstream.
    pub body_check: Option<mcp::stateless::BodyCheck>,
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
}

/// Phase 1: route and build the upstream head while the parsed head is borrowed.
pub fn prepare(head: &RequestHead<'_, '_>, shard: &Shard, conn: &Conn) -> Prepared {
    shard.metrics.borrow_mut().request_started();
    let request_id = RequestId::new(shard, head.request_id);
    let mut out = shard.take_buffer();
    let snap = shard.snapshot();
    let limits = &snap.config.server.limits;
    let mut mcp = None;
    let mut body_check = None;
    let mut set_cookie = None;
    let mut store_key = None;
    let (mut legacy, mut endpoint) = (None, None);
    let mut reverse: Option<String> = None;
    let route = router::route(head.method, head.target, &snap.routes);
    let jsonrpc = matches!(
        route,
        Route::Mcp { .. } | Route::Sse { .. } | Route::UnknownServer(_)
    );
    let cors_origin = match route {
        Route::Mcp { .. } | Route::Sse { .. } => mcp::route::header(head, "origin")
            .filter(|o| snap.origins.allows(o))
            .map(<[u8]>::to_vec),
        _ => None,
    };
    let (action, rest) = match route {
        Route::Local(page) => (Action::Local(page), ""),
        Route::ServerOptions => (Action::ServerOptions, ""),
        Route::UnknownServer(id) => (
            Action::Reject(GatewayError::UnknownServer(id.to_string())),
            "",
        ),
        Route::Sse {
            target,
            id,
            message,
            query,
        } => match mcp::legacy::plan(head, shard, &snap, target, id, message, query) {
            Ok(LegacyPlan::Preflight { origin }) => (Action::Preflight(origin), ""),
            Ok(LegacyPlan::Stream { upstream, stream }) => {
                legacy = Some(stream);
                (Action::Proxy { upstream }, query)
            }
            Ok(LegacyPlan::Message {
                upstream,
                endpoint: path,
                body_check: check,
            }) => {
                endpoint = Some(path);
                body_check = check;
                (Action::Proxy { upstream }, "")
            }
            Ok(LegacyPlan::Bridge(call)) => {
                let rid = request_id.as_bytes();
                mcp::legacy::write_bridge_head(&mut out, head, &call, id, rid);
                (Action::Bridge, "")
            }
            Err(e) => (Action::Reject(e), ""),
        },
        Route::Mcp { target, rest } => match mcp::route::plan(head, shard, &snap, target) {
            Ok(McpPlan::Preflight { origin }) => (Action::Preflight(origin), ""),
            Ok(McpPlan::Forward {
                upstream,
                reply,
                body_check: check,
                store_key: key,
            }) => {
                mcp = Some(reply);
                body_check = check;
                store_key = key;
                // A legacy-only replica is reached through this process's bridge.
                if mcp::legacy::is_legacy(&snap, upstream) {
                    reverse = Some(format!("/reverse/{upstream}"));
                }
                (Action::Proxy { upstream }, rest)
            }
            Err(e) => (Action::Reject(e), ""),
        },
        Route::Default => match crate::sticky::pick_default(head, shard, &snap) {
            Some(pick) => {
                set_cookie = pick.set_cookie;
                (
                    Action::Proxy {
                        upstream: pick.upstream,
                    },
                    head.target,
                )
            }
            None => (Action::Reject(GatewayError::NoHealthyUpstream), ""),
        },
    };
    let action = match (action, head.framing) {
        (Action::Proxy { .. } | Action::Bridge, BodyFraming::Length(n))
            if n > limits.max_body_bytes =>
        {
            Action::Reject(GatewayError::BodyTooLarge {
                limit: limits.max_body_bytes,
            })
        }
        (Action::Proxy { upstream }, _) => {
            let config = &snap.config.upstreams[upstream];
            let target = UpstreamTarget {
                upstream: config,
                // A legacy message goes to the endpoint the server named, not under its URL.
                base_path: match (&endpoint, &reverse) {
                    (Some(_), _) => "",
                    (None, Some(path)) => path,
                    (None, None) => &config.base_path,
                },
                rest: match (&endpoint, &reverse) {
                    (Some(path), _) => path,
                    (None, Some(_)) => "",
                    (None, None) => rest,
                },
                session: mcp.as_ref().and_then(McpReply::upstream_session),
            };
            let peer = Peer {
                ip: &conn.peer_ip,
                trusted: conn.trusted_proxy,
            };
            write_upstream_head(&mut out, head, &target, &peer, &request_id);
            Action::Proxy { upstream }
        }
        (action, _) => action,
    };
    Prepared {
        action,
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
        request_id,
        started: Instant::now(),
        out,
        mcp,
        jsonrpc,
        cors_origin,
        body_check,
        set_cookie,
        legacy,
        store_key,
        reverse: reverse.is_some(),
        snap,
    }
}

/// Phases 2 and 3. Returns whether the connection stays open.
pub async fn run(shard: &Rc<Shard>, conn: &mut Conn, mut p: Prepared) -> bool {
    conn.rpos += p.head_len;
    let mut out = std::mem::take(&mut p.out);
    let keep_open = match std::mem::replace(&mut p.action, Action::Local(LocalPage::Health)) {
        Action::Proxy { upstream } => proxy(shard, conn, &p, upstream, &mut out).await,
        Action::Bridge => bridge(shard, conn, &p, &mut out).await,
        Action::Local(page) => {
            let body_skipped = skip_buffered_body(conn, p.framing);
            respond_page(shard, conn, &p, page, &mut out, body_skipped).await
        }
        Action::Preflight(origin) => {
            let body_skipped = skip_buffered_body(conn, p.framing);
            respond_preflight(shard, conn, &p, &origin, &mut out, body_skipped).await
        }
        Action::ServerOptions => {
            let body_skipped = skip_buffered_body(conn, p.framing);
            crate::answer::respond_options(shard, conn, &p, &mut out, body_skipped).await
        }
        Action::Reject(err) => {
            let body_skipped = skip_buffered_body(conn, p.framing);
            respond_error(
                shard,
                conn,
                &err,
                &p.error_style(),
                p.keep_alive && body_skipped,
                &mut out,
            )
            .await
        }
    };
    shard.give_buffer(out);
    keep_open
}

/// Refuses a connection outright (bad head, over a limit): one error response, then close.
pub async fn refuse(shard: &Shard, conn: &mut Conn, err: GatewayError) {
    shard.metrics.borrow_mut().request_started();
    let id = RequestId::new(shard, None);
    let mut out = shard.take_buffer();
    respond_error(shard, conn, &err, &ErrorStyle::plain(&id), false, &mut out).await;
    shard.give_buffer(out);
}

/// A body we will not forward must still be consumed to keep the connection in step; only
/// one already in the buffer is skipped, otherwise the connection closes after the answer.
fn skip_buffered_body(conn: &mut Conn, framing: BodyFraming) -> bool {
    match framing {
        BodyFraming::Empty => true,
        BodyFraming::Length(n) if (conn.rbuf.len() - conn.rpos) as u64 >= n => {
            conn.rpos += n as usize;
            true
        }
        _ => false,
    }
}

impl Prepared {
    pub fn error_style(&self) -> ErrorStyle<'_> {
        ErrorStyle {
            request_id: &self.request_id,
            jsonrpc: self.jsonrpc,
            cors_origin: self.cors_origin.as_deref(),
            head_only: self.is_head,
        }
    }
}

/// Phase 2 for a legacy-SSE request the bridge serves; the connection closes after it.
async fn bridge(shard: &Shard, conn: &mut Conn, p: &Prepared, out: &mut Vec<u8>) -> bool {
    match legacy_sse::bridge(shard, conn, p.framing, p.expect_continue, out).await {
        BridgeEnd::Answered { status, bytes } => {
            let latency = p.started.elapsed().as_micros() as u64;
            let mut m = shard.metrics.borrow_mut();
            m.response(status, latency, p.head_len as u64, bytes);
        }
        BridgeEnd::Failed(err) => {
            respond_error(shard, conn, &err, &p.error_style(), false, out).await;
        }
        BridgeEnd::Cut => {}
    }
    false
}

/// Phase 2 for a proxied request.
async fn proxy(
    shard: &Rc<Shard>,
    conn: &mut Conn,
    p: &Prepared,
    index: usize,
    out: &mut Vec<u8>,
) -> bool {
    let _in_flight = InFlight::new(shard, index);
    let server = &p.snap.config.server;
    let upstream = &p.snap.config.upstreams[index];
    let max_body = server.limits.max_body_bytes;
    if let (Some(key), Some(store)) = (p.store_key, &shard.store) {
        if !store.check(key).await {
            let err = GatewayError::SessionNotFound(mcp::session::TokenError::Revoked);
            let keep_alive = p.keep_alive && skip_buffered_body(conn, p.framing);
            return respond_error(shard, conn, &err, &p.error_style(), keep_alive, out).await;
        }
        if p.is_delete {
            store.forget(key);
        }
    }
    // A small body is read whole before an upstream connection is chosen, so the request
    // can be replayed if a pooled connection turns out to have been closed by the upstream
    // (clients often send the body in a second segment).
    if let BodyFraming::Length(n) = p.framing {
        if n <= REPLAYABLE_BODY && p.body_check.is_none() && !p.expect_continue {
            let deadline = Instant::now() + server.limits.header_timeout;
            match conn.buffer_body(n as usize, deadline).await {
                Ok(()) => {}
                Err(BufferError::Gone) => return false,
                Err(BufferError::Timeout) => {
                    let err = GatewayError::BodyTimeout;
                    return respond_error(shard, conn, &err, &p.error_style(), false, out).await;
                }
            }
        }
    }
    if let Some(check) = &p.body_check {
        // A client waiting for `100 Continue` sends the body the check needs only after it;
        // a body the check refuses unread (too large, no length) gets its answer without it.
        let checkable = matches!(p.framing, BodyFraming::Length(n) if n <= MAX_CHECKED_BODY);
        if p.expect_continue && checkable && !send_continue(conn).await {
            return false;
        }
        let wait = server.limits.header_timeout;
        let checked =
            mcp::inspect::check(shard, conn, p.framing, check, &upstream.policy, wait).await;
        let (err, keep_alive) = match checked {
            Ok(()) => (None, false),
            Err(Refusal::Gone) => return false,
            Err(Refusal::Consumed(err)) => (Some(err), p.keep_alive),
            Err(Refusal::Unread(err)) => (Some(err), false),
        };
        if let Some(err) = err {
            return respond_error(shard, conn, &err, &p.error_style(), keep_alive, out).await;
        }
    }
    // The part of the body that came with the head travels in the same write as the head.
    let line_limit = server.limits.max_header_bytes;
    let mut body_left = BodyLeft::of_request(p.framing, line_limit);
    let rpos = conn.rpos;
    let arrived = &mut conn.rbuf[rpos..];
    let Ok((n, send)) = body_left.take_forwarded(arrived, false) else {
        return respond_error(
            shard,
            conn,
            &GatewayError::BadRequest("malformed chunked body"),
            &p.error_style(),
            false,
            out,
        )
        .await;
    };
    out.extend_from_slice(&arrived[..send]);
    conn.rpos += n;
    if body_left.chunked_bytes() > max_body {
        let err = GatewayError::BodyTooLarge { limit: max_body };
        return respond_error(shard, conn, &err, &p.error_style(), false, out).await;
    }
    if p.expect_continue && !body_left.is_done() && !send_continue(conn).await {
        return false;
    }
    let via = match (p.reverse, shard.sse_bridge) {
        (false, _) => None,
        (true, Some(addr)) => Some(addr),
        (true, None) => {
            let err = GatewayError::NoHealthyUpstream;
            return respond_error(shard, conn, &err, &p.error_style(), false, out).await;
        }
    };
    let request_in_hand = body_left.is_done();
    // Taken once a connection is in hand, so requests queued at a connection cap hold less.
    let mut ubuf = Vec::new();
    let exchange = Exchange {
        shard,
        index,
        upstream,
        server,
        started: p.started,
        deadline: Instant::now() + upstream.timeout,
        idempotent: p.idempotent,
        is_post: p.is_post,
        is_head: p.is_head,
        client_keep_alive: p.keep_alive,
        http11_client: p.http11,
        max_body,
        mcp: p.mcp.as_ref(),
        cors_origin: p.cors_origin.as_deref(),
        legacy: p.legacy.as_ref(),
        set_cookie: p.set_cookie.as_deref(),
        via,
    };
    let result = exchange.run(conn, out, &mut ubuf, body_left).await;
    shard.give_buffer(ubuf);
    let latency = p.started.elapsed().as_micros() as u64;
    match result {
        Ok(done) => {
            let mut m = shard.metrics.borrow_mut();
            m.response(done.status, latency, done.bytes_in, done.bytes_out);
            m.upstream(index, done.status, latency, false);
            done.client_keep_alive
        }
        Err(upstream::Failure::BeforeResponse(err)) => {
            shard
                .metrics
                .borrow_mut()
                .upstream(index, err.status(), latency, true);
            // The connection stays usable only if the whole request was read.
            let keep_alive = p.keep_alive && request_in_hand;
            respond_error(shard, conn, &err, &p.error_style(), keep_alive, out).await
        }
        Err(upstream::Failure::AfterResponse { status, reason }) => {
            tracing::info!(shard = shard.id, upstream = %upstream.id, status, reason, "response relay cut short");
            let mut m = shard.metrics.borrow_mut();
            m.response(status, latency, 0, 0);
            m.upstream(index, status, latency, true);
            false
        }
        Err(upstream::Failure::ClientGone) => {
            tracing::debug!(shard = shard.id, upstream = %upstream.id, "client left before the response was complete");
            shard.metrics.borrow_mut().client_abort();
            false
        }
        Err(upstream::Failure::SendTimeout) => {
            let rid = String::from_utf8_lossy(p.request_id.as_bytes());
            tracing::info!(shard = shard.id, upstream = %upstream.id, request_id = %rid, peer = %conn.peer_ip, "client read none of the response within the send timeout; cut");
            let mut m = shard.metrics.borrow_mut();
            m.error(crate::error::ErrorKind::SendTimeout);
            m.client_abort();
            false
        }
    }
}

/// Counts a request in flight to one upstream slot until dropped, however it ends (a
/// removed server is drained when none is left).
struct InFlight<'a> {
    shard: &'a Shard,
    slot: usize,
}

impl<'a> InFlight<'a> {
    fn new(shard: &'a Shard, slot: usize) -> Self {
        shard.metrics.borrow_mut().upstream_in_flight(slot, true);
        InFlight { shard, slot }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.shard.metrics.try_borrow_mut() {
            m.upstream_in_flight(self.slot, false);
        }
    }
}

/// Answers `Expect: 100-continue`; false when the client is gone.
async fn send_continue(conn: &mut Conn) -> bool {
    let mut cont = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
    conn.send(&mut cont).await.is_ok()
}
