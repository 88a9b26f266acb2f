//! Per-shard keep-alive pools of upstream connections, one slot per upstream.
//!
//! Owns: idle connections, the open-connection count against each upstream's per-shard cap
//! (`ceil(maxConnections / shards)`), the queue of requests waiting for a connection when
//! the cap is reached (served first come, first served, as connections come back), and
//! dropping idle connections that are too old, that the upstream closed, or on which it sent
//! bytes nobody asked for (looked at on checkout and by the shard's reaper once a second). A
//! [`PooledConn`] gives its connection or its count back when dropped, so no path leaks
//! capacity. Must not: connect, read or write (that is `upstream`), or be shared across
//! threads.

use crate::socket::{idle_state, IdleState};
use monoio::net::TcpStream;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// What a waiting request is handed when a connection comes back.
pub enum Grant {
    /// A kept-alive connection, counted as open.
    Stream(TcpStream),
    /// Room to open a new connection, counted as open.
    Capacity,
}

/// One queued request. The pool holds it weakly: a request that gave up is skipped.
#[derive(Default)]
pub struct Waiter {
    grant: RefCell<Option<Grant>>,
    waker: RefCell<Option<Waker>>,
}

struct Slot {
    idle: Vec<(TcpStream, Instant)>,
    open: usize,
    cap: usize,
    waiters: VecDeque<Weak<Waiter>>,
    /// The server was removed by a reload: connections that come back are closed.
    retired: bool,
    /// The upstream sent bytes nobody asked for on an idle connection: until then, its
    /// connections are not kept (bytes that come after a check would be the next client's
    /// answer, and only an upstream that does it once is caught by the check).
    no_reuse_until: Option<Instant>,
}

/// What an idle connection looks like when it is about to be reused or reaped.
enum Look {
    Reusable,
    /// Idle longer than `upstream.idleTimeout`.
    Expired,
    Closed,
    Stray,
}

fn look_at(stream: &TcpStream, since: Instant, now: Instant, idle_max: Duration) -> Look {
    if now.duration_since(since) >= idle_max {
        return Look::Expired;
    }
    match idle_state(stream) {
        IdleState::Quiet => Look::Reusable,
        IdleState::Closed => Look::Closed,
        IdleState::Stray => Look::Stray,
    }
}

/// How long an upstream that sent stray bytes gets no connection reuse.
const NO_REUSE_AFTER_STRAY: Duration = Duration::from_secs(60);

impl Slot {
    fn new(cap: usize) -> Slot {
        Slot {
            idle: Vec::new(),
            open: 0,
            cap: cap.max(1),
            waiters: VecDeque::new(),
            retired: false,
            no_reuse_until: None,
        }
    }

    /// Stray bytes were seen on one of this upstream's idle connections.
    fn stray(&mut self, now: Instant, upstream: usize) {
        if self.no_reuse_until.is_none_or(|until| until <= now) {
            tracing::warn!(
                upstream,
                "an upstream sent bytes nobody asked for on an idle connection; its connections are not reused for 60 s"
            );
        }
        self.no_reuse_until = Some(now + NO_REUSE_AFTER_STRAY);
        // Connections parked before this may hold more of the same.
        self.open -= self.idle.len();
        self.idle.clear();
    }

    /// Hands `grant` to the oldest live waiter, or gives it back.
    fn hand_over(&mut self, grant: Grant) -> Option<Grant> {
        while let Some(weak) = self.waiters.pop_front() {
            if let Some(waiter) = weak.upgrade() {
                *waiter.grant.borrow_mut() = Some(grant);
                if let Some(w) = waiter.waker.borrow_mut().take() {
                    w.wake();
                }
                return None;
            }
        }
        Some(grant)
    }
}

/// The "upstream" of a [`PooledConn`] that belongs to no slot: it is never counted, kept
/// or handed over (it closes when dropped).
pub const UNPOOLED: usize = usize::MAX;

pub struct Pool {
    slots: Vec<Slot>,
    /// `upstream.idleTimeout`: idle connections older than this are closed.
    idle_max: Duration,
}

/// What [`Pool::reap`] closed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    pub expired: usize,
    pub closed_by_upstream: usize,
    pub stray_bytes: usize,
}

/// Outcome of asking the pool for a connection to an upstream.
pub enum Checkout {
    /// A kept-alive connection, already counted as open.
    Reused(TcpStream),
    /// Capacity reserved: connect, then wrap the stream with [`PooledConn::new`].
    Connect,
    /// The per-shard cap is reached and nothing is idle: wait for a [`Grant`].
    Wait(Rc<Waiter>),
    /// No such upstream.
    Unknown,
}

impl Pool {
    /// `caps[i]`: the per-shard connection cap of upstream `i`.
    pub fn new(caps: impl Iterator<Item = usize>, idle_max: Duration) -> Self {
        Self {
            idle_max,
            slots: caps.map(Slot::new).collect(),
        }
    }

    /// A drained slot was given to a new server: no connection or memory of the old one.
    pub fn reset(&mut self, slot: usize) {
        if let Some(s) = self.slots.get_mut(slot) {
            let cap = s.cap;
            *s = Slot::new(cap);
        }
    }

    /// A new config generation: `slots` gives each slot's per-shard cap and whether it is
    /// retired. Slots keep their connections; new ones are added; a retired slot closes its
    /// idle connections now and each busy one when it comes back; a raised cap lets
    /// waiting requests connect.
    pub fn fit(&mut self, slots: impl Iterator<Item = (usize, bool)>, idle_max: Duration) {
        self.idle_max = idle_max;
        for (i, (cap, retired)) in slots.enumerate() {
            if i == self.slots.len() {
                self.slots.push(Slot::new(cap));
            }
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            slot.cap = cap.max(1);
            slot.retired = retired;
            if retired {
                slot.open -= slot.idle.len();
                slot.idle.clear();
            }
            while slot.open < slot.cap && !slot.waiters.is_empty() {
                if slot.hand_over(Grant::Capacity).is_none() {
                    slot.open += 1;
                }
            }
        }
    }

    pub fn checkout(&mut self, upstream: usize, now: Instant) -> Checkout {
        let Some(slot) = self.slots.get_mut(upstream) else {
            return Checkout::Unknown;
        };
        while let Some((stream, since)) = slot.idle.pop() {
            // Looked at before the request is written: a connection the upstream closed
            // costs no retry, and one with stray bytes never answers the wrong client.
            match look_at(&stream, since, now, self.idle_max) {
                Look::Reusable => return Checkout::Reused(stream),
                Look::Stray => slot.stray(now, upstream),
                Look::Expired | Look::Closed => {}
            }
            slot.open -= 1;
        }
        if slot.open < slot.cap {
            slot.open += 1;
            Checkout::Connect
        } else {
            // Requests that gave up (timed out) leave dead entries; drop those at the front.
            while slot.waiters.front().is_some_and(|w| w.strong_count() == 0) {
                slot.waiters.pop_front();
            }
            let waiter = Rc::new(Waiter::default());
            slot.waiters.push_back(Rc::downgrade(&waiter));
            Checkout::Wait(waiter)
        }
    }

    /// Closes idle connections that are too old, closed by their upstream (no socket is
    /// left in CLOSE-WAIT until the next burst) or holding stray bytes.
    pub fn reap(&mut self, now: Instant) -> Reaped {
        let mut reaped = Reaped::default();
        let idle_max = self.idle_max;
        for (upstream, slot) in self.slots.iter_mut().enumerate() {
            let before = slot.idle.len();
            let mut stray = false;
            slot.idle.retain(
                |(stream, since)| match look_at(stream, *since, now, idle_max) {
                    Look::Reusable => true,
                    Look::Expired => {
                        reaped.expired += 1;
                        false
                    }
                    Look::Closed => {
                        reaped.closed_by_upstream += 1;
                        false
                    }
                    Look::Stray => {
                        reaped.stray_bytes += 1;
                        stray = true;
                        false
                    }
                },
            );
            slot.open -= before - slot.idle.len();
            if stray {
                slot.stray(now, upstream);
            }
        }
        reaped
    }

    /// A counted connection is gone (closed, or its connect failed): its room goes to the
    /// next waiter, if any.
    pub fn release(&mut self, upstream: usize) {
        if let Some(slot) = self.slots.get_mut(upstream) {
            if slot.hand_over(Grant::Capacity).is_some() {
                slot.open = slot.open.saturating_sub(1);
            }
        }
    }

    fn put_idle(&mut self, upstream: usize, stream: TcpStream, now: Instant) {
        if let Some(slot) = self.slots.get_mut(upstream) {
            if slot.retired || slot.no_reuse_until.is_some_and(|until| now < until) {
                drop(stream);
                self.release(upstream);
                return;
            }
            if let Some(Grant::Stream(stream)) = slot.hand_over(Grant::Stream(stream)) {
                slot.idle.push((stream, now));
            }
        }
    }

    /// A grant its waiter will never use goes back.
    fn give_back(&mut self, upstream: usize, grant: Grant) {
        match grant {
            Grant::Stream(stream) => self.put_idle(upstream, stream, Instant::now()),
            Grant::Capacity => self.release(upstream),
        }
    }

    /// (open, idle, waiting) for one upstream, for status pages and tests.
    pub fn usage(&self, upstream: usize) -> (usize, usize, usize) {
        self.slots.get(upstream).map_or((0, 0, 0), |s| {
            let waiting = s.waiters.iter().filter(|w| w.strong_count() > 0).count();
            (s.open, s.idle.len(), waiting)
        })
    }
}

/// Waits for a [`Grant`]; dropping it (a timeout) returns any grant that arrived meanwhile.
pub struct WaitForGrant {
    pub waiter: Rc<Waiter>,
    pub pool: Rc<RefCell<Pool>>,
    pub upstream: usize,
}

impl Future for WaitForGrant {
    type Output = Grant;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Grant> {
        match self.waiter.grant.borrow_mut().take() {
            Some(grant) => Poll::Ready(grant),
            None => {
                *self.waiter.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for WaitForGrant {
    fn drop(&mut self) {
        if let Some(grant) = self.waiter.grant.borrow_mut().take() {
            self.pool.borrow_mut().give_back(self.upstream, grant);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_goes_to_waiters_in_order() {
        let mut pool = Pool::new([1usize].into_iter(), Duration::from_secs(30));
        let now = Instant::now();
        assert!(matches!(pool.checkout(0, now), Checkout::Connect));
        let Checkout::Wait(first) = pool.checkout(0, now) else {
            panic!("expected a wait")
        };
        let Checkout::Wait(second) = pool.checkout(0, now) else {
            panic!("expected a wait")
        };
        drop(second); // gave up: skipped
        let Checkout::Wait(third) = pool.checkout(0, now) else {
            panic!("expected a wait")
        };
        pool.release(0);
        assert!(matches!(
            first.grant.borrow_mut().take(),
            Some(Grant::Capacity)
        ));
        assert_eq!(pool.usage(0), (1, 0, 1));
        pool.release(0);
        assert!(matches!(
            third.grant.borrow_mut().take(),
            Some(Grant::Capacity)
        ));
        pool.release(0);
        assert_eq!(pool.usage(0), (0, 0, 0));
    }
}
