//! Starting shards: binding their `SO_REUSEPORT` listeners, pinning each thread to one CPU
//! of the process's affinity mask, and running the accept loop and the tick (metric deltas
//! up, commands down).
//!
//! Owns: a shard's thread and its lifecycle. Must not: serve requests itself (that is
//! `connection`), or block: the tick only uses non-blocking channel operations.

use crate::admission;
use crate::connection;
use crate::messages::{Pages, ShardCommand};
use crate::metrics::MetricsDelta;
use crate::runtime;
use crate::snapshot::ConfigUpdate;
use crate::state::Shard;
use crossbeam_channel::{Receiver, Sender};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;

/// How often a shard looks whether it is draining, and whether its requests are done.
const DRAIN_POLL: Duration = Duration::from_millis(20);
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often idle upstream connections are reaped.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// Accept backlog of each shard's listener.
const BACKLOG: i32 = 4096;

/// Binds one `SO_REUSEPORT` listener per shard on `addr`. With port 0 the first gets an
/// ephemeral port and the others join it.
pub fn bind_listeners(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let mut listeners = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let listener = bind_reuseport(addr)?;
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

pub fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// The CPUs this process may run on (its affinity mask, as set by `taskset` or a cpuset).
pub fn allowed_cpus() -> Vec<core_affinity::CoreId> {
    core_affinity::get_core_ids().unwrap_or_default()
}

pub struct ShardSpec {
    pub id: usize,
    pub shards: usize,
    /// The CPU to pin to, from [`allowed_cpus`]; `None` leaves the thread unpinned.
    pub cpu: Option<core_affinity::CoreId>,
    pub listener: std::net::TcpListener,
    /// The generation the shard starts with (later ones come as `ShardCommand::Config`).
    pub config: Arc<ConfigUpdate>,
    pub pages: Arc<Pages>,
    pub reports: Sender<MetricsDelta>,
    pub commands: Receiver<ShardCommand>,
    pub tick: Duration,
    /// The legacy-SSE bridge's loopback address, if this process runs one.
    pub sse_bridge: Option<SocketAddr>,
    /// Custom request filters (see `filter`); empty for the gateway binary.
    pub filters: crate::filter::Filters,
}

pub fn spawn(spec: ShardSpec) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("shard-{}", spec.id))
        .spawn(move || {
            let id = spec.id;
            if let Some(cpu) = spec.cpu {
                if !core_affinity::set_for_current(cpu) {
                    tracing::warn!(shard = id, cpu = cpu.id, "could not pin shard to its CPU");
                }
            }
            if let Err(e) = runtime::block_on(move || shard_main(spec)) {
                tracing::error!(shard = id, error = %e, "shard runtime failed to start");
            }
        })
}

async fn shard_main(spec: ShardSpec) {
    let mut shard = Shard::new(
        spec.id,
        spec.shards,
        &spec.config,
        spec.pages,
        spec.commands,
    );
    shard.sse_bridge = spec.sse_bridge;
    shard.filters = spec.filters;
    let shard = Rc::new(shard);
    let listener = match monoio::net::TcpListener::from_std(spec.listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(shard = spec.id, error = %e, "cannot use listener");
            return;
        }
    };
    monoio::spawn(tick_loop(shard.clone(), spec.reports, spec.tick));
    tracing::debug!(
        shard = spec.id,
        driver = runtime::preferred_driver().name(),
        "shard accepting"
    );
    // One drain watch for the shard's life, not a new timer per accepted connection.
    let mut draining = std::pin::pin!(until_draining(&shard));
    let mut accept_errors = AcceptErrors::default();
    accept_errors.keep_reserve();
    loop {
        let accepted = monoio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut draining => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let admitted = match admission::admit(&shard, peer.ip()) {
                    Ok(admitted) => admitted,
                    Err(why) => {
                        // Closed before a byte is read or written: nothing to learn here,
                        // and as cheap a refusal as there is.
                        shard.metrics.borrow_mut().connection_refused(why);
                        drop(stream);
                        continue;
                    }
                };
                let refuse = std::mem::take(&mut accept_errors.refuse_next);
                if refuse {
                    accept_errors.keep_reserve();
                }
                let shard = shard.clone();
                if refuse || shard.open_connections.get() >= shard.max_connections.get() {
                    monoio::spawn(async move {
                        let _admitted = admitted;
                        connection::refuse_over_capacity(shard, stream, peer).await
                    });
                } else {
                    monoio::spawn(async move {
                        // Counted against its address until the connection ends.
                        let _admitted = admitted;
                        connection::serve(shard, stream, peer).await
                    });
                }
            }
            Err(e) => {
                accept_errors.failed(&shard, &e);
                if is_out_of_descriptors(&e) {
                    // The waiting client is accepted at once through the descriptor kept
                    // for this, and gets its 503.
                    if accept_errors.reserve.take().is_some() {
                        accept_errors.refuse_next = true;
                        continue;
                    }
                    accept_errors.keep_reserve();
                }
                // Back off a little instead of spinning.
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    drop(listener);
    drain(&shard).await;
}

/// Failed accepts: logged at most once a second (with how many were not), and one spare
/// descriptor kept so a client can still be told 503 when the process has none left.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<std::time::Instant>,
    unlogged: u64,
    reserve: Option<std::fs::File>,
    /// The spare descriptor was just given up: the next accepted client is refused.
    refuse_next: bool,
}

impl AcceptErrors {
    fn failed(&mut self, shard: &Shard, e: &io::Error) {
        if self
            .last_logged
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            self.unlogged += 1;
            return;
        }
        tracing::warn!(shard = shard.id, error = %e, also_failed_since_last_line = self.unlogged, "accept failed");
        self.last_logged = Some(std::time::Instant::now());
        self.unlogged = 0;
    }

    /// (Re)opens the spare descriptor; `/dev/null` opens without touching a disk.
    fn keep_reserve(&mut self) {
        if self.reserve.is_none() {
            self.reserve = std::fs::File::open("/dev/null").ok();
        }
    }
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Resolves once the shard is told to drain.
async fn until_draining(shard: &Shard) {
    while !shard.draining.get() {
        monoio::time::sleep(DRAIN_POLL).await;
    }
}

/// After the listener closed: waits for the requests in flight, then returns (the shard's
/// idle keep-alive connections close with its runtime).
async fn drain(shard: &Shard) {
    tracing::info!(
        shard = shard.id,
        in_flight = shard.in_flight.get(),
        "shard draining"
    );
    while shard.in_flight.get() > 0 {
        monoio::time::sleep(DRAIN_POLL).await;
    }
}

/// Every tick: refresh the `Date` value, send the metric delta up (asking for a render
/// while a page read waits for one), apply commands sent down; about once a second, reap
/// idle upstream connections (a look at each is a syscall).
async fn tick_loop(shard: Rc<Shard>, reports: Sender<MetricsDelta>, tick: Duration) {
    let mut last_reap = std::time::Instant::now();
    loop {
        monoio::time::sleep(tick).await;
        shard.refresh_date();
        let now = std::time::Instant::now();
        if now.duration_since(last_reap) >= REAP_EVERY {
            last_reap = now;
            let reaped = shard.pool.borrow_mut().reap(now);
            if reaped.stray_bytes > 0 {
                tracing::info!(
                    shard = shard.id,
                    connections = reaped.stray_bytes,
                    "closed idle upstream connections that received bytes nobody asked for"
                );
            }
        }
        let delta = {
            let pool = shard.pool.borrow();
            let mut metrics = shard.metrics.borrow_mut();
            if shard.page_waiters.get() > 0 {
                metrics.page_wanted();
            }
            metrics.gauges(|slot| pool.usage(slot).0);
            let mut delta = metrics.take_delta();
            let snap = shard.snapshot();
            delta.generation = snap.generation;
            delta.key_misses = snap.auth.key_misses.take();
            snap.auth.clock_ms.set(crate::auth::now_ms());
            delta
        };
        if reports.try_send(delta).is_err() {
            tracing::debug!(
                shard = shard.id,
                "management shard not receiving metric deltas"
            );
        }
        shard.reported_at.set(std::time::Instant::now());
        shard.apply_commands();
    }
}
