//! The life of one request, top to bottom:
//!
//! 1. `prepare` (synchronous, borrowing the parsed head): the phases of `phase`, in their
//!    order, up to the request's action (an answer, or an upstream and its request head).
//! 2. `run`: the phases that await (the session store), then answer own pages and
//!    refusals, or `proxy`: send the head and body upstream (retrying once on a stale pooled
//!    connection), relay the response head and body back (list answers filtered when the
//!    caller's roles or the server's policy narrow what it may call).
//! 3. Record metrics (the log phase) and decide whether the client connection stays open.
//!
//! Owns: calling the phases in order, the keep-alive decision, and which security headers
//! a proxied response gets. Must not: parse bytes itself (`http`), decide what a phase
//! decides, or manage sockets of the pool (`upstream`, `pool`).

use crate::answer::{respond_error, respond_page, respond_preflight};
use crate::auth::rbac::{self, Access};
use crate::client::{BufferError, Conn};
use crate::context::{Action, ErrorStyle, RequestCtx};
use crate::error::GatewayError;
use crate::exchange::{Exchange, Failure};
use crate::filter::FilterPhase;
use crate::http::request::RequestHead;
use crate::http::BodyFraming;
use crate::legacy_sse::{self, BridgeEnd};
use crate::mcp;
use crate::mcp::inspect::Refusal;
use crate::mcp::list_events::EventFilter;
use crate::mcp::lists::{ListFilter, ListKinds};
use crate::mcp::stateless::MAX_CHECKED_BODY;
use crate::phase::{self, Step};
use crate::relay::BodyLeft;
use crate::request_id::RequestId;
use crate::response_rules::{list_filter, proxied_security_lines};
use crate::router::LocalPage;
use crate::state::Shard;
use monoio::time::Instant;
use std::rc::Rc;

/// Bodies up to this size are read whole before going upstream (see `proxy`).
const REPLAYABLE_BODY: u64 = 64 * 1024;

/// The phases that read the parsed head (see `phase` for the order and the contract), up to
/// the request's [`Action`].
pub fn prepare(head: &RequestHead<'_, '_>, shard: &Shard, conn: &Conn) -> RequestCtx {
    prepare_as(RequestCtx::start(head, shard, conn.rpos), head, shard, conn)
}

/// The phases, on a context that may already name its principal (after an introspection).
pub(crate) fn prepare_as(
    mut ctx: RequestCtx,
    head: &RequestHead<'_, '_>,
    shard: &Shard,
    conn: &Conn,
) -> RequestCtx {
    let (mut req, step) = phase::route::run(head, &mut ctx);
    macro_rules! then {
        ($step:expr) => {
            if let Step::Answer(action) = $step {
                ctx.action = action;
                return ctx;
            }
        };
    }
    then!(step);
    then!(phase::origin::run(&req, &mut ctx));
    then!(phase::filters::run(
        &req,
        shard,
        conn,
        &mut ctx,
        FilterPhase::AfterRoute
    ));
    then!(phase::authenticate::run(&req, shard, &mut ctx));
    then!(phase::authorize::run(&req, &mut ctx));
    then!(phase::rate_limit::run(&req, &mut ctx));
    then!(phase::mcp_rules::run(&mut req, &mut ctx));
    then!(phase::filters::run(
        &req,
        shard,
        conn,
        &mut ctx,
        FilterPhase::BeforeUpstream
    ));
    then!(phase::cache::lookup(&req, &mut ctx));
    ctx.action = phase::choose::run(&req, shard, conn, &mut ctx);
    ctx
}

/// Phases 2 and 3. Returns whether the connection stays open.
pub async fn run(shard: &Rc<Shard>, conn: &mut Conn, mut p: RequestCtx) -> bool {
    conn.rpos += p.head_len;
    let mut out = std::mem::take(&mut p.out);
    let keep_open = match std::mem::replace(&mut p.action, Action::Local(LocalPage::Health)) {
        Action::Proxy { upstream } => match proxy(shard, conn, &p, upstream, &mut out).await {
            Proxied::Done(keep_open) => keep_open,
            Proxied::Unreached(err) => failover(shard, conn, &mut p, upstream, err, &mut out).await,
        },
        Action::Bridge(slot) => {
            let _in_flight = slot.map(|slot| InFlight::new(shard, slot));
            bridge(shard, conn, &p, slot, &mut out).await
        }
        Action::Local(page) => {
            let body_skipped = skip_buffered_body(conn, p.framing);
            respond_page(shard, conn, &p, page, &mut out, body_skipped).await
        }
        Action::Preflight(origin) => {
            let body_skipped = skip_buffered_body(conn, p.framing);
            respond_preflight(shard, conn, &p, &origin, &mut out, body_skipped).await
        }
        // Settled before `run` (see `settle`); not reached.
        Action::Introspect(_) => {
            let err = GatewayError::AuthUnavailable;
            respond_error(shard, conn, &err, &p.error_style(), false, &mut out).await
        }
        Action::ResourceMetadata => {
            let body_skipped = skip_buffered_body(conn, p.framing);
            crate::answer::respond_metadata(shard, conn, &p, &mut out, body_skipped).await
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

/// Phase 2 for a legacy-SSE request the bridge serves; the connection closes after it.
/// A stream it opens (to the server in `slot`) carries the answers to its messages: their
/// lists are filtered by the server's policy and the caller's roles when those narrow them.
async fn bridge(
    shard: &Shard,
    conn: &mut Conn,
    p: &RequestCtx,
    slot: Option<usize>,
    out: &mut Vec<u8>,
) -> bool {
    let config = &p.snap.config;
    let access = slot.map(|i| rbac::access(config, p.principal.as_deref(), i));
    let roles = match &access {
        Some(Access::Methods(rules)) => Some(&rules[..]),
        _ => None,
    };
    let policy = slot
        .and_then(|i| config.upstreams.get(i))
        .map(|u| &u.policy);
    let mut events = policy
        .filter(|policy| roles.is_some() || !policy.is_empty())
        .map(|policy| {
            EventFilter::new(ListFilter {
                kinds: ListKinds::ALL,
                roles,
                policy,
                json: false,
            })
        });
    let (framing, expect) = (p.framing, p.expect_continue);
    let events = events.as_mut();
    match legacy_sse::bridge(shard, conn, &p.snap, framing, expect, out, events).await {
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
    p: &RequestCtx,
    index: usize,
    out: &mut Vec<u8>,
) -> Proxied {
    let _in_flight = InFlight::new(shard, index);
    let server = &p.snap.config.server;
    let upstream = &p.snap.config.upstreams[index];
    let max_body = server.limits.max_body_bytes;
    let confirmed = match phase::session_store::confirm(shard, p).await {
        Ok(()) => phase::upstream_token::add(conn, p, index, out, shard).await,
        Err(err) => Err(err),
    };
    if let Err(err) = confirmed {
        let keep_alive = p.keep_alive && skip_buffered_body(conn, p.framing);
        return Proxied::Done(
            respond_error(shard, conn, &err, &p.error_style(), keep_alive, out).await,
        );
    }
    // A small body is read whole before an upstream connection is chosen, so the request
    // can be replayed if a pooled connection turns out to have been closed by the upstream
    // (clients often send the body in a second segment).
    if let BodyFraming::Length(n) = p.framing {
        if n <= REPLAYABLE_BODY && p.body_check.is_none() && !p.expect_continue {
            let deadline = Instant::now() + server.limits.header_timeout;
            match conn.buffer_body(n as usize, deadline).await {
                Ok(()) => {}
                Err(BufferError::Gone) => return Proxied::Done(false),
                Err(BufferError::Timeout) => {
                    let err = GatewayError::BodyTimeout;
                    return Proxied::Done(
                        respond_error(shard, conn, &err, &p.error_style(), false, out).await,
                    );
                }
            }
        }
    }
    let mut lists = ListKinds::NONE;
    if let Some(check) = &p.body_check {
        // A client waiting for `100 Continue` sends the body the check needs only after it;
        // a body the check refuses unread (too large, no length) gets its answer without it.
        let checkable = matches!(p.framing, BodyFraming::Length(n) if n <= MAX_CHECKED_BODY);
        if p.expect_continue && checkable && !send_continue(conn).await {
            return Proxied::Done(false);
        }
        let wait = server.limits.header_timeout;
        let checked =
            mcp::inspect::check(shard, conn, p.framing, check, &upstream.policy, wait).await;
        let (err, keep_alive) = match checked {
            Ok(kinds) => {
                lists = kinds;
                (None, false)
            }
            Err(Refusal::Gone) => return Proxied::Done(false),
            Err(Refusal::Consumed(err)) => (Some(err), p.keep_alive),
            Err(Refusal::Unread(err)) => (Some(err), false),
        };
        if let Some(err) = err {
            return Proxied::Done(
                respond_error(shard, conn, &err, &p.error_style(), keep_alive, out).await,
            );
        }
    }
    // The part of the body that came with the head travels in the same write as the head.
    let line_limit = server.limits.max_header_bytes;
    let mut body_left = BodyLeft::of_request(p.framing, line_limit);
    let rpos = conn.rpos;
    let arrived = &mut conn.rbuf[rpos..];
    let Ok((n, send)) = body_left.take_forwarded(arrived, false) else {
        return Proxied::Done(
            respond_error(
                shard,
                conn,
                &GatewayError::BadRequest("malformed chunked body"),
                &p.error_style(),
                false,
                out,
            )
            .await,
        );
    };
    out.extend_from_slice(&arrived[..send]);
    conn.rpos += n;
    if body_left.chunked_bytes() > max_body {
        let err = GatewayError::BodyTooLarge { limit: max_body };
        return Proxied::Done(respond_error(shard, conn, &err, &p.error_style(), false, out).await);
    }
    if p.expect_continue && !body_left.is_done() && !send_continue(conn).await {
        return Proxied::Done(false);
    }
    let via = match (p.reverse, shard.sse_bridge) {
        (false, _) => None,
        (true, Some(addr)) => Some(addr),
        (true, None) => {
            let err = GatewayError::NoHealthyUpstream;
            return Proxied::Done(
                respond_error(shard, conn, &err, &p.error_style(), false, out).await,
            );
        }
    };
    let request_in_hand = body_left.is_done();
    let security = proxied_security_lines(p, upstream, via.is_some());
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
        security,
        via,
        list: list_filter(p, upstream, lists),
    };
    let result = exchange.run(conn, out, &mut ubuf, body_left).await;
    shard.give_buffer(ubuf);
    let latency = p.started.elapsed().as_micros() as u64;
    Proxied::Done(match result {
        Ok(done) => {
            let mut m = shard.metrics.borrow_mut();
            m.response(done.status, latency, done.bytes_in, done.bytes_out);
            m.upstream(index, done.status, latency, false);
            done.client_keep_alive
        }
        // A chunked body was rewritten in the buffer as it was taken (trailers dropped): it
        // cannot be taken again, so only a request with a length or no body fails over.
        Err(Failure::Unreached(err))
            if request_in_hand
                && p.picked
                && p.snap.config.load_balancer.failover
                && matches!(p.framing, BodyFraming::Empty | BodyFraming::Length(_)) =>
        {
            shard
                .metrics
                .borrow_mut()
                .upstream_attempt_failed(index, err.status(), latency);
            return Proxied::Unreached(err);
        }
        Err(Failure::BeforeResponse(err)) | Err(Failure::Unreached(err)) => {
            shard
                .metrics
                .borrow_mut()
                .upstream(index, err.status(), latency, true);
            // The connection stays usable only if the whole request was read.
            let keep_alive = p.keep_alive && request_in_hand;
            respond_error(shard, conn, &err, &p.error_style(), keep_alive, out).await
        }
        Err(Failure::AfterResponse { status, reason }) => {
            tracing::info!(shard = shard.id, upstream = %upstream.id, status, reason, "response relay cut short");
            let mut m = shard.metrics.borrow_mut();
            m.response(status, latency, 0, 0);
            m.upstream(index, status, latency, true);
            false
        }
        Err(Failure::ClientGone) => {
            tracing::debug!(shard = shard.id, upstream = %upstream.id, "client left before the response was complete");
            shard.metrics.borrow_mut().client_abort();
            false
        }
        Err(Failure::SendTimeout) => {
            let rid = String::from_utf8_lossy(p.request_id.as_bytes());
            tracing::info!(shard = shard.id, upstream = %upstream.id, request_id = %rid, peer = %conn.peer_ip, "client read none of the response within the send timeout; cut");
            let mut m = shard.metrics.borrow_mut();
            m.error(crate::error::ErrorKind::SendTimeout);
            m.client_abort();
            false
        }
    })
}

/// How `proxy` ended.
enum Proxied {
    /// Answered (or cut); whether the client connection stays open.
    Done(bool),
    /// The upstream could not be reached and the request may go to another replica.
    Unreached(GatewayError),
}

/// A picked upstream could not be reached: with `loadBalancer.failover`, the request
/// (whole in the buffer, seen by nobody) is routed again, passing over that upstream, and
/// sent once more; otherwise, or if no other is up, the client gets the first error.
async fn failover(
    shard: &Rc<Shard>,
    conn: &mut Conn,
    ctx: &mut RequestCtx,
    unreached: usize,
    err: GatewayError,
    out: &mut Vec<u8>,
) -> bool {
    if let Some(upstream) = choose_again(shard, conn, ctx, unreached, out) {
        // The body is taken from the buffer again, as the first time.
        conn.rpos = ctx.head_at + ctx.head_len;
        tracing::info!(shard = shard.id, from = %ctx.snap.config.upstreams[unreached].id, to = %ctx.snap.config.upstreams[upstream].id, "upstream unreachable: failing over");
        shard.metrics.borrow_mut().upstream_retry();
        if let Proxied::Done(keep_open) = proxy(shard, conn, ctx, upstream, out).await {
            return keep_open;
        }
    }
    let keep_alive = ctx.keep_alive;
    respond_error(shard, conn, &err, &ctx.error_style(), keep_alive, out).await
}

/// Runs the phases again on the head still in the read buffer, choosing among the others;
/// `out` then holds the new upstream head. `None` when no other upstream is up. (An MCP
/// method is counted again in `mcp_gateway_mcp_requests_total`: one count per attempt.)
fn choose_again(
    shard: &Shard,
    conn: &Conn,
    ctx: &mut RequestCtx,
    unreached: usize,
    out: &mut Vec<u8>,
) -> Option<usize> {
    // The picks read the shard's current generation; the request runs on its own. Only when
    // they are the same do the slot numbers mean the same servers.
    if shard.snapshot().generation != ctx.snap.generation {
        return None;
    }
    let bytes = conn.rbuf.get(ctx.head_at..ctx.head_at + ctx.head_len)?;
    let mut headers = [httparse::EMPTY_HEADER; crate::http::request::MAX_HEADERS];
    let head = crate::http::request::parse(bytes, &mut headers).ok()??;
    let (mut req, _) = phase::route::run(&head, ctx);
    if let Step::Answer(_) = phase::mcp_rules::run(&mut req, ctx) {
        return None;
    }
    ctx.out = std::mem::take(out);
    ctx.out.clear();
    let action = shard.choosing_without(unreached, || phase::choose::run(&req, shard, conn, ctx));
    *out = std::mem::take(&mut ctx.out);
    match action {
        Action::Proxy { upstream } if upstream != unreached => Some(upstream),
        _ => None,
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
