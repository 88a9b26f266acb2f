//! One client connection: reading request heads under the header, size and keep-alive
//! limits, handing each to the pipeline, in order (pipelined requests are answered in the
//! order they came).
//!
//! Owns: the connection's read buffer and the per-connection limits (431, 408, idle close,
//! 400 on malformed heads). Must not: route, proxy or count per-request metrics beyond
//! what a refused head needs.

use crate::catch_panic::CatchPanic;
use crate::client::Conn;
use crate::context::{Action, RequestCtx};
use crate::error::GatewayError;
use crate::http::request::{self, RequestError, MAX_HEADERS};
use crate::pipeline;
use crate::relay::read_append;
use crate::state::Counted;
use crate::state::Shard;
use monoio::net::TcpStream;
use monoio::time::Instant;
use std::net::SocketAddr;
use std::rc::Rc;

/// Read-buffer growth step; an idle connection holds about this much.
const READ_CHUNK: usize = 4096;

enum Next {
    Request(Box<RequestCtx>),
    Refuse(GatewayError),
    Close,
}

/// Serves one accepted connection until it closes; a panic in its code (a bug) ends this
/// connection only, logged and counted.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr) {
    let served = CatchPanic::new(serve_connection(shard.clone(), stream, peer)).await;
    if let Err(message) = served {
        tracing::error!(shard = shard.id, %peer, panic = %message, "a bug ended a client connection (please report it)");
        let mut m = shard.metrics.borrow_mut();
        m.panicked();
        m.connection_closed();
    }
}

async fn serve_connection(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr) {
    let _open = Counted::new(&shard.open_connections);
    shard.metrics.borrow_mut().connection_opened();
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::new(stream, peer, &shard);
    let mut first = true;
    loop {
        match next_request(&shard, &mut conn, first).await {
            Next::Request(prepared) => {
                first = false;
                let in_flight = Counted::new(&shard.in_flight);
                // Only a request that must wait on an issuer takes the detour.
                let prepared = if matches!(prepared.action, Action::Introspect(_)) {
                    crate::phase::introspect::settle(&shard, &mut conn, *prepared).await
                } else {
                    *prepared
                };
                let keep_open = pipeline::run(&shard, &mut conn, prepared).await;
                drop(in_flight);
                if !keep_open || shard.draining.get() {
                    break;
                }
            }
            Next::Refuse(err) => {
                pipeline::refuse(&shard, &mut conn, err).await;
                break;
            }
            Next::Close => break,
        }
    }
    shard.metrics.borrow_mut().connection_closed();
}

/// Politely refuses a connection over the shard's cap: one 503 and close.
pub async fn refuse_over_capacity(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr) {
    let mut conn = Conn::new(stream, peer, &shard);
    pipeline::refuse(&shard, &mut conn, GatewayError::TooManyConnections).await;
}

/// The next request head. A new connection must send its first request within the header
/// timeout (one that sends nothing is closed then, silently); between requests of a
/// keep-alive connection the idle timeout applies until the next head begins.
async fn next_request(shard: &Shard, conn: &mut Conn, first: bool) -> Next {
    let snap = shard.snapshot();
    let limits = &snap.config.server.limits;
    let mut header_deadline: Option<Instant> = None;
    let first_deadline = first.then(|| Instant::now() + limits.header_timeout);
    loop {
        if conn.rpos < conn.rbuf.len() {
            if header_deadline.is_none() {
                // A new connection's first head keeps the deadline it had from the start.
                let from_now = Instant::now() + limits.header_timeout;
                header_deadline = Some(first_deadline.map_or(from_now, |d| d.min(from_now)));
            }
            // The generation current when the head arrives (not when the wait began).
            conn.follow(shard);
            if let Some(next) = try_head(shard, conn) {
                return next;
            }
        }
        compact(conn);
        let deadline = header_deadline
            .or(first_deadline)
            .unwrap_or_else(|| Instant::now() + limits.keep_alive_timeout);
        let read = read_append(&mut conn.stream, &mut conn.rbuf, READ_CHUNK);
        match monoio::time::timeout_at(deadline, read).await {
            Err(_) if header_deadline.is_some() => {
                return Next::Refuse(GatewayError::HeaderTimeout)
            }
            Ok(Ok(n)) if n > 0 => {}
            _ => return Next::Close,
        }
    }
}

/// Parses the head in the buffer, if complete (a plain function, so the header array does
/// not live in the connection's future). `None`: read more.
fn try_head(shard: &Shard, conn: &Conn) -> Option<Next> {
    let snap = shard.snapshot();
    let limits = &snap.config.server.limits;
    let too_large = || {
        Some(Next::Refuse(GatewayError::HeadersTooLarge {
            limit: limits.max_header_bytes,
        }))
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match request::parse(&conn.rbuf[conn.rpos..], &mut headers) {
        Ok(Some(head)) if head.head_len > limits.max_header_bytes => too_large(),
        Ok(Some(head)) => Some(Next::Request(Box::new(pipeline::prepare(
            &head, shard, conn,
        )))),
        Ok(None) if conn.rbuf.len() - conn.rpos >= limits.max_header_bytes => too_large(),
        Ok(None) => None,
        Err(RequestError::TooManyHeaders) => too_large(),
        Err(RequestError::Malformed(why)) => Some(Next::Refuse(GatewayError::BadRequest(why))),
        Err(RequestError::UnsupportedEncoding) => Some(Next::Refuse(GatewayError::NotImplemented)),
        Err(RequestError::MethodNotAllowed) => Some(Next::Refuse(GatewayError::MethodNotAllowed)),
        Err(RequestError::MethodTooLong) => Some(Next::Refuse(GatewayError::NotImplemented)),
    }
}

/// Moves unconsumed bytes to the front so the buffer does not creep.
fn compact(conn: &mut Conn) {
    if conn.rpos == 0 {
        return;
    }
    if conn.rpos >= conn.rbuf.len() {
        conn.rbuf.clear();
    } else {
        conn.rbuf.copy_within(conn.rpos.., 0);
        conn.rbuf.truncate(conn.rbuf.len() - conn.rpos);
    }
    conn.rpos = 0;
}
