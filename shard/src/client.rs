//! The client connection as the request phases see it: its socket, its read buffer (what
//! was read and what is consumed), who it is (address, trusted proxy) and how long a
//! write to it may stall.
//!
//! Owns: reading more of a request body into the buffer and writing to the client under
//! the send timeout. Must not: depend on the phases, the pipeline or the exchange (they
//! all depend on it).

use crate::relay::{read_append, write_all_within};
use crate::state::Shard;
use monoio::net::TcpStream;
use monoio::time::Instant;
use std::net::SocketAddr;
use std::time::Duration;

pub struct Conn {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// The config generation `trusted_proxy` and `send_timeout` were taken from.
    generation: u64,
    /// The client's address as text, written into `X-Forwarded-For`.
    pub peer_ip: String,
    /// The peer is one of `server.trustedProxies`: its forwarding headers pass on.
    pub trusted_proxy: bool,
    /// Bytes read from the client; `rbuf[rpos..]` is not consumed yet.
    pub rbuf: Vec<u8>,
    pub rpos: usize,
    /// `server.limits.sendTimeout`: the longest a write to the client may make no progress.
    pub send_timeout: Duration,
}

/// Why a request body could not be buffered whole.
pub enum BufferError {
    Timeout,
    Gone,
}

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr, shard: &Shard) -> Conn {
        let mut conn = Conn {
            stream,
            peer,
            generation: 0,
            peer_ip: peer.ip().to_string(),
            trusted_proxy: false,
            rbuf: Vec::new(),
            rpos: 0,
            send_timeout: std::time::Duration::ZERO,
        };
        conn.follow(shard);
        conn
    }

    /// Takes the connection's settings from the shard's config generation when it is a new
    /// one: called before each request head, so a reload applies to open keep-alive
    /// connections from their next request (a proxy removed from `server.trustedProxies`
    /// is trusted no more).
    pub fn follow(&mut self, shard: &Shard) {
        let generation = shard.generation();
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        let snap = shard.snapshot();
        let server = &snap.config.server;
        let ip = self.peer.ip();
        self.trusted_proxy = server.trusted_proxies.iter().any(|b| b.contains(ip));
        self.send_timeout = server.limits.send_timeout;
    }

    /// Writes all of `buf` to the client; `TimedOut` when the client reads none of it for
    /// `send_timeout` (it is cut, so a slow reader cannot hold an upstream connection).
    pub async fn send(&mut self, buf: &mut Vec<u8>) -> std::io::Result<()> {
        write_all_within(&mut self.stream, buf, self.send_timeout).await
    }

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
