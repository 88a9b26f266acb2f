//! Per-shard keep-alive pools of upstream connections, one slot per upstream.
//!
//! Owns: idle connections, the open-connection count against each upstream's per-shard cap
//! (`ceil(maxConnections / shards)`), and dropping connections idle too long. A
//! [`PooledConn`] gives its count back when dropped, so no path leaks capacity.
//! Must not: connect, read or write (that is `upstream`), or be shared across threads.

use monoio::net::TcpStream;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Idle pooled connections older than this are closed instead of reused; most servers'
/// keep-alive timeouts are longer, and a stale one is detected and retried anyway.
pub const IDLE_MAX: Duration = Duration::from_secs(30);

struct Slot {
    idle: Vec<(TcpStream, Instant)>,
    open: usize,
    cap: usize,
}

pub struct Pool {
    slots: Vec<Slot>,
}

/// Outcome of asking the pool for a connection to an upstream.
pub enum Checkout {
    /// A kept-alive connection, already counted as open.
    Reused(TcpStream),
    /// Capacity reserved: connect, then wrap the stream with [`PooledConn::new`].
    Connect,
    /// The per-shard cap is reached and nothing is idle.
    Full,
}

impl Pool {
    /// `caps[i]`: the per-shard connection cap of upstream `i`.
    pub fn new(caps: impl Iterator<Item = usize>) -> Self {
        Self {
            slots: caps
                .map(|cap| Slot {
                    idle: Vec::new(),
                    open: 0,
                    cap: cap.max(1),
                })
                .collect(),
        }
    }

    pub fn checkout(&mut self, upstream: usize, now: Instant) -> Checkout {
        let Some(slot) = self.slots.get_mut(upstream) else {
            return Checkout::Full;
        };
        while let Some((stream, since)) = slot.idle.pop() {
            if now.duration_since(since) < IDLE_MAX {
                return Checkout::Reused(stream);
            }
            slot.open -= 1;
        }
        if slot.open < slot.cap {
            slot.open += 1;
            Checkout::Connect
        } else {
            Checkout::Full
        }
    }

    /// Returns a reserved slot unused (the connect failed).
    pub fn release(&mut self, upstream: usize) {
        if let Some(slot) = self.slots.get_mut(upstream) {
            slot.open = slot.open.saturating_sub(1);
        }
    }

    fn put_idle(&mut self, upstream: usize, stream: TcpStream, now: Instant) {
        if let Some(slot) = self.slots.get_mut(upstream) {
            slot.idle.push((stream, now));
        }
    }

    /// (open, idle) for one upstream, for status pages and tests.
    pub fn usage(&self, upstream: usize) -> (usize, usize) {
        self.slots
            .get(upstream)
            .map_or((0, 0), |s| (s.open, s.idle.len()))
    }
}

/// A connection counted against its upstream's cap; returned to the pool with
/// [`PooledConn::keep`] or closed (and uncounted) on drop.
pub struct PooledConn {
    stream: Option<TcpStream>,
    upstream: usize,
    pub reused: bool,
    pool: Rc<RefCell<Pool>>,
}

impl PooledConn {
    pub fn new(pool: Rc<RefCell<Pool>>, upstream: usize, stream: TcpStream, reused: bool) -> Self {
        Self {
            stream: Some(stream),
            upstream,
            reused,
            pool,
        }
    }

    pub fn stream(&mut self) -> Option<&mut TcpStream> {
        self.stream.as_mut()
    }

    /// The exchange finished cleanly and both sides allow keep-alive: park it idle.
    pub fn keep(&mut self, now: Instant) {
        if let Some(stream) = self.stream.take() {
            self.pool.borrow_mut().put_idle(self.upstream, stream, now);
        }
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if self.stream.take().is_some() {
            self.pool.borrow_mut().release(self.upstream);
        }
    }
}
