//! Keeps a panic inside one connection's code from taking the shard down with it.
//!
//! The release profile unwinds (`panic = "unwind"`): a panic, which is always a bug, ends
//! the connection it happened on, is logged and counted (`mcp_gateway_panics_total`), and
//! the shard goes on serving everyone else. Guards (`Drop`) keep the shard's counts right
//! on the way out.
//!
//! Owns: that wrapper. Must not: retry or answer anything (the client's connection just
//! closes).

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future whose panics are caught: `Err(message)` instead of unwinding further.
pub struct CatchPanic<'a, T> {
    inner: Pin<Box<dyn Future<Output = T> + 'a>>,
}

impl<'a, T> CatchPanic<'a, T> {
    pub fn new(future: impl Future<Output = T> + 'a) -> Self {
        CatchPanic {
            inner: Box::pin(future),
        }
    }
}

impl<T> Future for CatchPanic<'_, T> {
    type Output = Result<T, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The future is dropped after a panic, never polled again, so no broken state is
        // observed through it (hence AssertUnwindSafe).
        match catch_unwind(AssertUnwindSafe(|| self.inner.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_string());
                Poll::Ready(Err(message))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error() {
        let caught = futures_lite_block_on(CatchPanic::new(async { panic!("boom") }));
        assert_eq!(caught.unwrap_err(), "boom");
        let fine: Result<u8, String> = futures_lite_block_on(CatchPanic::new(async { 7 }));
        assert_eq!(fine, Ok(7));
    }

    /// Polls a future that is ready at once.
    fn futures_lite_block_on<T>(future: impl Future<Output = T>) -> T {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => unreachable!("test futures are ready at once"),
        }
    }
}
