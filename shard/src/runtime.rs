//! Building a monoio runtime on io_uring, falling back to the epoll driver with one warning
//! when io_uring is unavailable (old kernel, or blocked by a container's seccomp profile).
//! `MONOIO_FORCE_LEGACY_DRIVER=1` forces the epoll driver.
//!
//! Owns: the driver choice for every runtime in the process (shards, management shard,
//! demo fleet). Must not: run anything itself beyond the future it is given.

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
use std::future::Future;
use std::io;
use std::sync::Once;

/// io_uring submission queue size per runtime.
const URING_ENTRIES: u32 = 4096;

static FALLBACK_WARNING: Once = Once::new();

/// Which I/O driver runtimes in this process use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    Epoll,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// The driver new runtimes get: io_uring when the kernel offers it and it is not forced off.
pub fn preferred_driver() -> Driver {
    if monoio::utils::detect_uring() {
        Driver::IoUring
    } else {
        Driver::Epoll
    }
}

/// Runs `make()`'s future to completion on a new runtime of the preferred driver.
pub fn block_on<F, Fut>(make: F) -> io::Result<Fut::Output>
where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    if preferred_driver() == Driver::IoUring {
        match build_uring_runtime() {
            Ok(mut rt) => return Ok(rt.block_on(make())),
            Err(e) => warn_fallback(&format!("io_uring runtime failed to start ({e})")),
        }
    } else {
        let why = if std::env::var_os("MONOIO_FORCE_LEGACY_DRIVER").is_some() {
            "MONOIO_FORCE_LEGACY_DRIVER is set"
        } else {
            "io_uring is unavailable"
        };
        warn_fallback(why);
    }
    let mut rt = RuntimeBuilder::<LegacyDriver>::new()
        .enable_timer()
        .build()?;
    Ok(rt.block_on(make()))
}

/// The io_uring runtime with the cheapest completion delivery the kernel offers:
/// deferred task running (6.1+: completions are processed when the shard asks for them, in
/// batches, never by interrupting it), else cooperative task running (5.19+: no IPI), else
/// plain. Every shard is the only thread that touches its ring, as single-issuer requires.
fn build_uring_runtime() -> io::Result<monoio::Runtime<monoio::time::TimeDriver<IoUringDriver>>> {
    let mut deferred = io_uring::IoUring::builder();
    deferred.setup_single_issuer().setup_defer_taskrun();
    let mut cooperative = io_uring::IoUring::builder();
    cooperative.setup_coop_taskrun();
    let mut last_error = None;
    for urb in [deferred, cooperative, io_uring::IoUring::builder()] {
        match RuntimeBuilder::<IoUringDriver>::new()
            .uring_builder(urb)
            .with_entries(URING_ENTRIES)
            .enable_timer()
            .build()
        {
            Ok(rt) => return Ok(rt),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("io_uring unavailable")))
}

fn warn_fallback(why: &str) {
    FALLBACK_WARNING.call_once(|| {
        tracing::warn!("{why}: using the epoll driver");
    });
}
