//! A single-consumer queue between tasks of the stdio host's one thread: the stdout reader
//! hands lines to the HTTP exchange waiting for them, exchanges hand lines to the stdin
//! writer.
//!
//! Owns: the queue and the waker of its one consumer. Must not: be shared across threads
//! (it is `Rc`, so it cannot be) or block.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

pub struct Mailbox<T>(Rc<RefCell<Inner<T>>>);

struct Inner<T> {
    queue: VecDeque<T>,
    waker: Option<Waker>,
    closed: bool,
}

impl<T> Clone for Mailbox<T> {
    fn clone(&self) -> Self {
        Mailbox(self.0.clone())
    }
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox(Rc::new(RefCell::new(Inner {
            queue: VecDeque::new(),
            waker: None,
            closed: false,
        })))
    }
}

impl<T> Mailbox<T> {
    /// Queues `item` and wakes the consumer; false (item dropped) once closed.
    pub fn push(&self, item: T) -> bool {
        let mut inner = self.0.borrow_mut();
        if inner.closed {
            return false;
        }
        inner.queue.push_back(item);
        if let Some(w) = inner.waker.take() {
            w.wake();
        }
        true
    }

    /// No more items: the consumer drains what is queued, then gets `None`.
    pub fn close(&self) {
        let mut inner = self.0.borrow_mut();
        inner.closed = true;
        if let Some(w) = inner.waker.take() {
            w.wake();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.0.borrow().closed
    }

    pub fn try_recv(&self) -> Option<T> {
        self.0.borrow_mut().queue.pop_front()
    }

    /// The next item; `None` once closed and drained.
    pub async fn recv(&self) -> Option<T> {
        poll_fn(|cx| {
            let mut inner = self.0.borrow_mut();
            if let Some(item) = inner.queue.pop_front() {
                Poll::Ready(Some(item))
            } else if inner.closed {
                Poll::Ready(None)
            } else {
                inner.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Whether two handles are the same mailbox.
    pub fn same(&self, other: &Mailbox<T>) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}
