//! The mock MCP server fleet: many Streamable HTTP MCP servers in-process on loopback ports,
//! for the demo, the benchmarks and tests.
//!
//! Owns: binding the fleet's listeners and serving them on a few threads. Each server
//! answers `initialize` (with an `Mcp-Session-Id`), `tools/list`, `tools/call` of an `echo`
//! tool (as JSON, or as an SSE stream with progress notifications when the call carries a
//! progress token), `ping`, `notifications/*` (202), `DELETE` of a session, and
//! `GET /health`. Must not: be used as the gateway's own code path; it is a peer.

mod mcp;

use mcp_gateway_shard::runtime;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::thread::JoinHandle;

/// Binds `servers` loopback ports from `base_port` and serves them on `threads` threads.
pub fn start(servers: usize, base_port: u16, threads: usize) -> io::Result<Vec<JoinHandle<()>>> {
    let threads = threads.max(1);
    let mut per_thread: Vec<Vec<(usize, std::net::TcpListener)>> =
        (0..threads).map(|_| Vec::new()).collect();
    for i in 0..servers {
        let port = u16::try_from(usize::from(base_port) + i).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "fleet ports run past 65535")
        })?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let listener = mcp_gateway_shard::worker::bind_reuseport(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("mock server port {port}: {e}")))?;
        per_thread[i % threads].push((i + 1, listener));
    }
    per_thread
        .into_iter()
        .enumerate()
        .map(|(t, listeners)| {
            std::thread::Builder::new()
                .name(format!("fleet-{t}"))
                .spawn(move || {
                    if let Err(e) = runtime::block_on(move || serve_all(listeners)) {
                        tracing::error!(error = %e, "fleet runtime failed to start");
                    }
                })
        })
        .collect()
}

pub fn run_forever(servers: usize, base_port: u16, threads: usize) -> anyhow::Result<()> {
    let handles = start(servers, base_port, threads)?;
    println!(
        "mock MCP fleet: {servers} servers on http://127.0.0.1:{base_port}..{} (POST /mcp, GET /health)",
        usize::from(base_port) + servers.saturating_sub(1)
    );
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

async fn serve_all(listeners: Vec<(usize, std::net::TcpListener)>) {
    let sessions = std::rc::Rc::new(std::cell::RefCell::new(mcp::Sessions::default()));
    let mut accept_loops = Vec::new();
    for (number, listener) in listeners {
        let sessions = sessions.clone();
        accept_loops.push(monoio::spawn(async move {
            let listener = match monoio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "mock server listener unusable");
                    return;
                }
            };
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        monoio::spawn(mcp::serve_connection(number, stream, sessions.clone()));
                    }
                    Err(_) => monoio::time::sleep(std::time::Duration::from_millis(10)).await,
                }
            }
        }));
    }
    for l in accept_loops {
        l.await;
    }
}
