//! Bridged legacy sessions: what one client's SSE stream and its POSTs share, on the
//! bridge's one thread (so `Rc`/`RefCell`, no locks).
//!
//! Owns: the session table, each session's two queues (events for the client's stream,
//! messages for the upstream) and its "closed" signal. Must not: do I/O.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Most sessions one bridge holds at a time (each holds a client stream open).
pub const MAX_SESSIONS: usize = 10_000;
/// Most messages waiting for the upstream, or events waiting for the client, per session:
/// past that the client is not reading, or floods us, and the session ends.
pub const MAX_QUEUED: usize = 4096;

/// A single-consumer queue on one thread.
pub struct Queue<T> {
    items: RefCell<VecDeque<T>>,
    waker: RefCell<Option<Waker>>,
    closed: Cell<bool>,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            items: RefCell::new(VecDeque::new()),
            waker: RefCell::new(None),
            closed: Cell::new(false),
        }
    }
}

impl<T> Queue<T> {
    /// Adds an item; false if the queue is closed or full.
    pub fn push(&self, item: T) -> bool {
        if self.closed.get() || self.items.borrow().len() >= MAX_QUEUED {
            return false;
        }
        self.items.borrow_mut().push_back(item);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
        true
    }

    /// The next item; `None` once closed (items still queued then are dropped).
    pub async fn pop(&self) -> Option<T> {
        poll_fn(|cx| {
            if self.closed.get() {
                return Poll::Ready(None);
            }
            if let Some(item) = self.items.borrow_mut().pop_front() {
                return Poll::Ready(Some(item));
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    pub fn close(&self) {
        self.closed.set(true);
        self.items.borrow_mut().clear();
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

/// Set once; every task waiting on it wakes.
#[derive(Default)]
pub struct Signal {
    set: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

impl Signal {
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    pub fn set(&self) {
        self.set.set(true);
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.get() {
                return Poll::Ready(());
            }
            let mut wakers = self.wakers.borrow_mut();
            // Tasks wait again and again in their loops: keep one waker per task.
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

/// A message the client POSTed.
pub struct Incoming {
    pub body: Vec<u8>,
    /// The client's `Authorization`, passed on only where the server's config allows.
    pub authorization: Option<Vec<u8>>,
}

pub struct Session {
    /// `b.` and 32 hex digits: the `t` of the client's message URL.
    pub id: String,
    /// `{id}` of `/sse/{id}` the session was opened on; its POSTs must name the same.
    pub target: String,
    /// Index of the upstream (a Streamable HTTP server) in the config.
    pub upstream: usize,
    /// The upstream's `Mcp-Session-Id`, from its answer to `initialize`.
    pub upstream_session: RefCell<Option<Vec<u8>>>,
    /// The protocol revision negotiated by `initialize`, sent as `MCP-Protocol-Version`.
    pub protocol_version: RefCell<Option<String>>,
    /// The client's `Authorization` on its stream, for requests the bridge makes itself.
    pub authorization: Option<Vec<u8>>,
    /// SSE events (encoded) for the client's stream.
    pub to_client: Queue<Vec<u8>>,
    /// Messages for the upstream, sent in the order they came.
    pub to_upstream: Queue<Incoming>,
    /// The upstream's GET stream was asked for.
    pub listening: Cell<bool>,
    pub closed: Signal,
}

impl Session {
    pub fn new(target: &str, upstream: usize, authorization: Option<Vec<u8>>) -> Session {
        let random = mcp_gateway_shard::mcp::session::generated_secret();
        let hex: String = random.iter().take(16).map(|b| format!("{b:02x}")).collect();
        Session {
            id: format!(
                "{}{hex}",
                mcp_gateway_shard::mcp::legacy::BRIDGE_SESSION_PREFIX
            ),
            target: target.to_string(),
            upstream,
            upstream_session: RefCell::new(None),
            protocol_version: RefCell::new(None),
            authorization,
            to_client: Queue::default(),
            to_upstream: Queue::default(),
            listening: Cell::new(false),
            closed: Signal::default(),
        }
    }

    /// Queues one JSON-RPC message for the client as a `message` event; a client too slow
    /// to take them ends its session.
    pub fn send_to_client(&self, message: &[u8]) {
        let mut event = Vec::with_capacity(message.len() + 24);
        mcp_gateway_shard::mcp::sse_event::write_event(&mut event, "message", message);
        if !self.to_client.push(event) && !self.closed.is_set() {
            tracing::warn!(session = %self.id, "client not reading its stream: session ends");
            self.close();
        }
    }

    pub fn close(&self) {
        self.closed.set();
        self.to_client.close();
        self.to_upstream.close();
    }
}

/// The bridge's sessions by id.
#[derive(Default)]
pub struct Sessions {
    map: RefCell<HashMap<String, Rc<Session>>>,
}

impl Sessions {
    /// Registers a session; false when the bridge is full.
    pub fn insert(&self, session: Rc<Session>) -> bool {
        let mut map = self.map.borrow_mut();
        if map.len() >= MAX_SESSIONS {
            return false;
        }
        map.insert(session.id.clone(), session);
        true
    }

    pub fn get(&self, id: &str) -> Option<Rc<Session>> {
        self.map.borrow().get(id).cloned()
    }

    pub fn remove(&self, id: &str) {
        self.map.borrow_mut().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_and_signal() {
        let done = mcp_gateway_shard::runtime::block_on(|| async {
            let q = Rc::new(Queue::<u32>::default());
            let q2 = q.clone();
            let task = monoio::spawn(async move { (q2.pop().await, q2.pop().await) });
            q.push(1);
            monoio::time::sleep(std::time::Duration::from_millis(5)).await;
            q.close();
            assert!(!q.push(3));
            let s = Signal::default();
            s.set();
            s.wait().await;
            task.await
        })
        .unwrap();
        assert_eq!(done, (Some(1), None));
    }
}
