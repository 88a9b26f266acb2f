//! Starting the gateway from a validated config: decide the shard count from the allowed
//! CPUs, bind every listener (after validation, before any thread starts), wire the
//! channels, start the management shard and the shards.
//!
//! Owns: process start-up order. Must not: serve traffic itself.

use crate::mgmt::reload::{self, Reloader};
use crate::mgmt::{self, MgmtSpec, State};
use anyhow::Context;
use mcp_gateway_config::{Loaded, Workers};
use mcp_gateway_shard::snapshot::ConfigUpdate;
use mcp_gateway_shard::worker::{self, ShardSpec};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mcp_gateway_shard::messages::ShardCommand;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

pub struct Running {
    pub data_addr: SocketAddr,
    pub management_addr: Option<SocketAddr>,
    pub shards: usize,
    /// The shards' threads; the management, stdio-host and bridge threads live as long as
    /// the process (nothing waits for them).
    pub shard_threads: Vec<JoinHandle<()>>,
    /// The shards' command channels (for `Drain` on shutdown).
    pub commands: Vec<crossbeam_channel::Sender<ShardCommand>>,
    pub shutdown_timeout: std::time::Duration,
    /// Asks the management shard to reload the config file (SIGHUP).
    pub reload: crossbeam_channel::Sender<()>,
}

/// Starts everything from a loaded config; `path` is the file it came from (watched, and
/// written by the admin API's `?persist=true`), `text` its text.
pub fn start(loaded: Loaded, path: Option<PathBuf>, text: String) -> anyhow::Result<Running> {
    let Loaded {
        mut config,
        effective,
        document,
        warnings,
    } = loaded;
    for warning in &warnings {
        tracing::warn!(%warning, "config");
    }
    for warning in crate::jwks::fill(&mut config) {
        tracing::warn!(%warning, "config");
    }
    if config.sessions.secret.is_none() {
        // Every shard of this process must share one key, so it is made here, once.
        let secret: String = mcp_gateway_shard::mcp::session::generated_secret()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        config.sessions.secret = Some(secret);
        tracing::warn!("no sessions.secret / SESSION_SECRET: generated one; MCP sessions will not continue through other gateway replicas or after a restart");
    }
    // The stdio host listens before any shard starts, so the shards' snapshot already
    // points the stdio servers at it.
    if config.has_stdio_servers() {
        let (addr, _thread) = crate::stdio::start(&config)?;
        config.attach_stdio_host(addr);
    }
    if let Some(store) = &config.sessions.redis {
        tracing::info!(store = %store.display, "sessions are also recorded in Redis (admin API: /admin/sessions on the management port)");
        if config.sessions.admin_token.is_none() {
            tracing::warn!(
                "no sessions.adminToken / ADMIN_TOKEN: the admin API answers loopback clients only"
            );
        }
    }
    let fd_limit = crate::fd_limit::raise_soft_limit();
    if let Some(limit) = fd_limit {
        crate::fd_limit::fit(&mut config, limit, true);
    }
    let config = Arc::new(config);
    let cpus = worker::allowed_cpus();
    let shards = match config.server.workers {
        Workers::Auto => cpus.len().max(1),
        Workers::Count(n) => n.max(1),
    };
    if shards > cpus.len() && !cpus.is_empty() {
        tracing::warn!(
            shards,
            allowed_cpus = cpus.len(),
            "more shards than allowed CPUs: some share a core"
        );
    }
    let data_addr = SocketAddr::new(config.server.host, config.server.port);
    let listeners = worker::bind_listeners(data_addr, shards)
        .with_context(|| format!("binding {data_addr}"))?;
    let data_addr = listeners[0].local_addr()?;
    let (management_listener, management_addr) = if config.monitoring.dashboard_enabled {
        let addr = SocketAddr::new(
            config.monitoring.management_host,
            config.monitoring.management_port,
        );
        let l = worker::bind_reuseport(addr)
            .with_context(|| format!("binding management port {addr}"))?;
        let addr = l.local_addr()?;
        (Some(l), Some(addr))
    } else {
        (None, None)
    };

    let (report_tx, report_rx) = crossbeam_channel::unbounded();
    let mut command_txs = Vec::with_capacity(shards);
    let mut command_rxs = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (tx, rx) = crossbeam_channel::unbounded();
        command_txs.push(tx);
        command_rxs.push(rx);
    }
    let pinned: Vec<usize> = (0..shards)
        .filter_map(|i| cpus.get(i % cpus.len().max(1)).map(|c| c.id))
        .collect();
    // Listening before any shard starts: shards pass bridged `/sse/{id}` requests to it.
    // Bounded: a bridge that falls this far behind keeps its config (logged) until it
    // takes the next one.
    let (bridge_tx, bridge_rx) = crossbeam_channel::bounded(64);
    let sse_bridge = crate::sse_bridge::start(&config, bridge_rx)?.map(|(addr, _thread)| addr);
    // The demo's config takes nothing from the environment; its admin API changes do not
    // either.
    let loader =
        reload::loader::Loader::start(path.is_some()).context("starting the config loader")?;
    let start = reload::Start {
        path,
        text,
        document,
        effective,
        fd_limit,
    };
    let mut reloader = Reloader::new(start, &config, loader);
    reloader.bridge = sse_bridge.map(|_| bridge_tx);
    let (hup_tx, hup_rx) = crossbeam_channel::bounded(1);
    let (nudge, nudges) = crossbeam_channel::bounded(1);
    let watch = reloader.path.as_ref().and_then(|path| {
        match reload::watch::start(path, nudge) {
            Ok(watch) => Some(watch),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot watch the config file; reload with SIGHUP or the admin API");
                None
            }
        }
    });
    let state = State::new(
        config.clone(),
        reloader,
        shards,
        pinned,
        data_addr,
        management_addr,
        report_rx,
    );
    let first = Arc::new(ConfigUpdate::new(1, config.clone()));
    let pages = state.pages.clone();
    mgmt::spawn(MgmtSpec {
        state,
        shards: command_txs.clone(),
        listener: management_listener,
        hup: hup_rx,
        watch,
        nudges,
    })?;
    let mut shard_threads = Vec::with_capacity(shards);
    for (id, (listener, commands)) in listeners.into_iter().zip(command_rxs).enumerate() {
        shard_threads.push(worker::spawn(ShardSpec {
            id,
            shards,
            cpu: cpus.get(id % cpus.len().max(1)).copied(),
            listener,
            config: first.clone(),
            pages: pages.clone(),
            reports: report_tx.clone(),
            commands,
            tick: config.monitoring.metrics_tick,
            sse_bridge,
            filters: mcp_gateway_shard::filter::Filters::new(),
        })?);
    }
    Ok(Running {
        data_addr,
        management_addr,
        shards,
        shard_threads,
        commands: command_txs,
        shutdown_timeout: config.server.shutdown_timeout,
        reload: hup_tx,
    })
}

pub fn announce(running: &Running) {
    println!(
        "mcp-gateway listening on http://{} ({} shards, {} driver)",
        running.data_addr,
        running.shards,
        mcp_gateway_shard::runtime::preferred_driver().name()
    );
    if let Some(m) = running.management_addr {
        println!("management and dashboard on http://{m}");
    }
}

/// Runs until SIGTERM or SIGINT, then drains: the shards stop accepting, finish the requests
/// in flight (up to `server.shutdownTimeout`) and stop; a second signal exits at once.
/// SIGHUP reloads the config file. `started` runs once the gateway listens and has said so
/// (the demo prints its hints).
pub fn run_forever(
    loaded: Loaded,
    path: Option<PathBuf>,
    text: String,
    started: impl FnOnce(&Running),
) -> anyhow::Result<ExitCode> {
    let mut signals =
        Signals::new([SIGTERM, SIGINT, SIGHUP]).context("installing signal handlers")?;
    let running = start(loaded, path, text)?;
    announce(&running);
    started(&running);
    let signal = loop {
        match signals.forever().next() {
            Some(SIGHUP) => {
                tracing::info!("SIGHUP: reloading the config file");
                let _ = running.reload.try_send(());
            }
            Some(signal) => break signal,
            None => break SIGTERM,
        }
    };
    tracing::info!(
        signal,
        timeout_ms = running.shutdown_timeout.as_millis() as u64,
        "shutting down: draining requests in flight"
    );
    for tx in &running.commands {
        let _ = tx.send(ShardCommand::Drain);
    }
    let deadline = Instant::now() + running.shutdown_timeout;
    loop {
        if running.shard_threads.iter().all(JoinHandle::is_finished) {
            tracing::info!("drained; exiting");
            return Ok(ExitCode::SUCCESS);
        }
        if signals.pending().any(|s| s != SIGHUP) {
            tracing::warn!("second signal: exiting without waiting");
            return Ok(ExitCode::FAILURE);
        }
        if Instant::now() >= deadline {
            tracing::warn!("server.shutdownTimeout passed with requests in flight: exiting");
            return Ok(ExitCode::FAILURE);
        }
        // The main thread is not a shard: a short sleep here blocks nobody.
        std::thread::sleep(Duration::from_millis(20));
    }
}
