//! One client connection: reading request heads under the header, size and keep-alive
//! limits, handing each to the pipeline, in order (pipelined requests are answered in the
//! order they came).
//!
//! Owns: the connection's read buffer and the per-connection limits (431, 408, idle close,
//! 400 on malformed heads). Must not: route, proxy or count per-request metrics beyond
//! what a refused head needs.

use crate::error::GatewayError;
use crate::http::request::{self, RequestError};
use crate::pipeline::{self, Prepared};
use crate::relay::read_append;
use crate::state::Shard;
use monoio::net::TcpStream;
use monoio::time::Instant;
use std::net::SocketAddr;
use std::rc::Rc;

/// Headers per request; more is answered 431.
pub const MAX_HEADERS: usize = 100;
/// Read-buffer growth step; an idle connection holds about this much.
const READ_CHUNK: usize = 4096;

pub struct Conn {
    pub stream: TcpStream,
    /// The client's address as text, written into `X-Forwarded-For`.
    pub peer_ip: String,
    /// Bytes read from the client; `rbuf[rpos..]` is not consumed yet.
    pub rbuf: Vec<u8>,
    pub rpos: usize,
}

/// Why a request body could not be buffered whole.
pub enum BufferError {
    Timeout,
    Gone,
}

impl Conn {
    /// Reads until `len` bytes after `rpos` are in the buffer (the caller bounds `len`).
    pub async fn buffer_body(&mut self, len: usize, deadline: Instant) -> Result<(), BufferError> {
        while self.rbuf.len() - self.rpos < len {
            let want = len - (self.rbuf.len() - self.rpos);
            let read = read_append(&mut self.stream, &mut self.rbuf, want);
            match monoio::time::timeout_at(deadline, read).await {
                Err(_) => return Err(BufferError::Timeout),
                Ok(Ok(0)) | Ok(Err(_)) => return Err(BufferError::Gone),
                Ok(Ok(_)) => {}
            }
        }
        Ok(())
    }
}

enum Next {
    Request(Box<Prepared>),
    Refuse(GatewayError),
    Close,
}

/// Serves one accepted connection until it closes.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr) {
    shard.open_connections.set(shard.open_connections.get() + 1);
    shard.metrics.borrow_mut().connection_opened();
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        peer_ip: peer.ip().to_string(),
        rbuf: Vec::new(),
        rpos: 0,
    };
    loop {
        match next_request(&shard, &mut conn).await {
            Next::Request(prepared) => {
                shard.in_flight.set(shard.in_flight.get() + 1);
                let keep_open = pipeline::run(&shard, &mut conn, *prepared).await;
                shard.in_flight.set(shard.in_flight.get().saturating_sub(1));
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
    shard
        .open_connections
        .set(shard.open_connections.get().saturating_sub(1));
    shard.metrics.borrow_mut().connection_closed();
}

/// Politely refuses a connection over the shard's cap: one 503 and close.
pub async fn refuse_over_capacity(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr) {
    let mut conn = Conn {
        stream,
        peer_ip: peer.ip().to_string(),
        rbuf: Vec::new(),
        rpos: 0,
    };
    pipeline::refuse(&shard, &mut conn, GatewayError::TooManyConnections).await;
}

async fn next_request(shard: &Shard, conn: &mut Conn) -> Next {
    let limits = &shard.config.server.limits;
    let mut header_deadline: Option<Instant> = None;
    loop {
        if conn.rpos < conn.rbuf.len() {
            if header_deadline.is_none() {
                header_deadline = Some(Instant::now() + limits.header_timeout);
            }
            if let Some(next) = try_head(shard, conn) {
                return next;
            }
        }
        compact(conn);
        let deadline =
            header_deadline.unwrap_or_else(|| Instant::now() + limits.keep_alive_timeout);
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
    let limits = &shard.config.server.limits;
    let too_large = || {
        Some(Next::Refuse(GatewayError::HeadersTooLarge {
            limit: limits.max_header_bytes,
        }))
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match request::parse(&conn.rbuf[conn.rpos..], &mut headers) {
        Ok(Some(head)) if head.head_len > limits.max_header_bytes => too_large(),
        Ok(Some(head)) => Some(Next::Request(Box::new(pipeline::prepare(
            &head,
            shard,
            &conn.peer_ip,
        )))),
        Ok(None) if conn.rbuf.len() - conn.rpos >= limits.max_header_bytes => too_large(),
        Ok(None) => None,
        Err(RequestError::TooManyHeaders) => too_large(),
        Err(RequestError::Malformed(why)) => Some(Next::Refuse(GatewayError::BadRequest(why))),
        Err(RequestError::UnsupportedEncoding) => Some(Next::Refuse(GatewayError::BadRequest(
            "unsupported transfer-encoding",
        ))),
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
