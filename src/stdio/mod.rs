//! The stdio host: `transport: "stdio"` servers run as local processes, one per client
//! session, served as Streamable HTTP on a loopback port so the shards proxy to them like to
//! any HTTP upstream (pools, timeouts, session tokens and event-stream relay unchanged).
//!
//! One dedicated thread (`mcp-stdio`) with its own monoio runtime owns every process: a
//! session's requests arrive from whichever shard the client reached, over loopback TCP, so
//! the hand-over between threads takes no lock. `/stdio/{id}` is each server's base path
//! (the shards rewrite `/mcp/{id}` onto it); `GET /health` answers the health prober.
//!
//! Owns: the thread, its listener and the reaping tick. Must not: run on a shard, or block
//! (processes are started with `fork`/`exec` and reaped with `try_wait`, never waited on).

mod exchange;
mod host;
mod http;
mod mailbox;
mod process;
mod relay;
mod session;

use anyhow::Context;
use host::Host;
use mcp_gateway_config::GatewayConfig;
use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often exited processes are reaped and idle sessions stopped.
const TICK: Duration = Duration::from_millis(100);

/// Binds the host's loopback port and starts its thread; returns where it listens.
pub fn start(config: &GatewayConfig) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the stdio host")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let config = config.clone();
    let thread = std::thread::Builder::new()
        .name("mcp-stdio".to_string())
        .spawn(move || {
            let run = mcp_gateway_shard::runtime::block_on(move || serve(config, listener));
            if let Err(e) = run {
                tracing::error!(error = %e, "stdio host runtime failed to start");
            }
        })
        .context("starting the stdio host thread")?;
    Ok((addr, thread))
}

async fn serve(config: GatewayConfig, listener: TcpListener) {
    let host = Rc::new(RefCell::new(Host::new(&config)));
    let listener = match monoio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "stdio host listener unusable");
            return;
        }
    };
    let ticking = host.clone();
    monoio::spawn(async move {
        loop {
            monoio::time::sleep(TICK).await;
            ticking.borrow_mut().tick(Instant::now());
        }
    });
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                monoio::spawn(exchange::serve_connection(host.clone(), stream));
            }
            Err(e) => {
                tracing::warn!(error = %e, "stdio host accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
