//! Live configuration: turning a new config (from the file, SIGHUP or the admin API) into a
//! new generation on every shard, without a restart.
//!
//! A reload is validated whole first (the same error list as `mcp-gateway check`); a bad
//! config is refused, logged and counted, and the running one keeps serving. A good one:
//! settings a process cannot change while running keep their running values (and are
//! named: "needs a restart"), servers keep their slots (see `layout`), and the management
//! shard builds the shards' [`ConfigUpdate`] once and sends it down; each shard swaps it in
//! at its next tick, between requests.
//!
//! Owns: the generation counter, the document and hash of the running config, the reload
//! counters, and the order of a reload. Must not: block the management thread (loading is
//! the `loader` thread's) or touch a shard's state other than through its channel.

pub mod layout;
pub mod loader;
pub mod restart;
pub mod trigger;
pub mod watch;

use super::State;
use layout::{Layout, ServerChanges};
use loader::{Loader, Parsed};
use mcp_gateway_config::GatewayConfig;
use mcp_gateway_shard::messages::ShardCommand;
use mcp_gateway_shard::snapshot::ConfigUpdate;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// Where the running config came from and what became of reloads.
pub struct Reloader {
    /// The config file (none for `demo`): watched, and written by `?persist=true`.
    pub path: Option<PathBuf>,
    pub loader: Loader,
    pub layout: Layout,
    /// 1 at start, one more per reload that changed something.
    pub generation: u64,
    pub loaded_at: SystemTime,
    /// SHA-256 of the text the running config was loaded from.
    pub sha256: String,
    /// SHA-256 of the config file as last read or written by the gateway.
    pub file_sha256: String,
    /// SHA-256 of the file as last applied or written: `?persist=true` overwrites only
    /// this (never an edit on disk that was refused or not read yet).
    pub file_applied_sha256: String,
    /// The running config as written (no comments, no environment values): what admin API
    /// changes edit and `?persist=true` writes.
    pub document: Value,
    /// The running config's settings, environment applied (`GET /api/config`).
    pub effective: mcp_gateway_config::user::UserConfig,
    pub applied: u64,
    pub refused: u64,
    /// The descriptor limit `server.limits.maxConnections` was fitted to at start.
    pub fd_limit: Option<u64>,
    /// A reload is being loaded or applied; the next one waits.
    pub busy: bool,
    /// Slots retired and not yet drained, with the generation that retired them.
    pub retiring: Vec<(usize, u64)>,
    /// The legacy-SSE bridge's copy of the config, if it runs.
    pub bridge: Option<crossbeam_channel::Sender<Arc<GatewayConfig>>>,
}

/// What one applied reload did.
#[derive(Debug, Clone)]
pub struct Report {
    pub generation: u64,
    pub servers: ServerChanges,
    /// Config sections whose settings changed (servers aside).
    pub sections: Vec<&'static str>,
    /// Changed settings held back until a restart.
    pub needs_restart: Vec<&'static str>,
}

impl Report {
    pub fn to_json(&self) -> Value {
        json!({
            "generation": self.generation,
            "servers": {
                "added": self.servers.added,
                "removed": self.servers.removed,
                "changed": self.servers.changed,
            },
            "sectionsChanged": self.sections,
            "needsRestart": self.needs_restart,
        })
    }
}

impl Reloader {
    pub fn new(start: Start, config: &GatewayConfig, loader: Loader) -> Reloader {
        Reloader {
            path: start.path,
            loader,
            layout: Layout::new(config),
            generation: 1,
            loaded_at: SystemTime::now(),
            sha256: loader::sha256(&start.text),
            file_sha256: loader::sha256(&start.text),
            file_applied_sha256: loader::sha256(&start.text),
            document: start.document,
            effective: start.effective,
            applied: 0,
            refused: 0,
            fd_limit: start.fd_limit,
            busy: false,
            retiring: Vec::new(),
            bridge: None,
        }
    }
}

/// How the process started: what `Reloader::new` needs besides the config.
pub struct Start {
    pub path: Option<PathBuf>,
    pub text: String,
    pub document: Value,
    pub effective: mcp_gateway_config::user::UserConfig,
    pub fd_limit: Option<u64>,
}

/// Applies a validated config: a new generation on every shard (unless nothing changed).
pub fn apply(
    state: &mut State,
    shards: &[crossbeam_channel::Sender<ShardCommand>],
    parsed: Parsed,
) -> Report {
    let running = state.config.clone();
    for warning in &parsed.loaded.warnings {
        tracing::warn!(%warning, "config");
    }
    let mut config = parsed.loaded.config;
    if let Some(limit) = state.reload.fd_limit {
        // Said once at start-up; `/info` shows the cap in force.
        crate::fd_limit::fit(&mut config, limit, false);
    }
    let needs_restart = restart::hold(&mut config, &running);
    let sections = sections_changed(&config, &running);
    let servers = state.reload.layout.arrange(&mut config);
    let r = &mut state.reload;
    r.applied += 1;
    r.loaded_at = SystemTime::now();
    r.sha256 = parsed.sha256;
    r.document = parsed.loaded.document;
    r.effective = parsed.loaded.effective;
    if !servers.is_empty() || !sections.is_empty() {
        r.generation += 1;
        install(state, shards, config);
    }
    Report {
        generation: state.reload.generation,
        servers,
        sections,
        needs_restart,
    }
}

/// Sends an arranged config to the shards (and the bridge) and fits the management shard's
/// own tables to it.
pub fn install(
    state: &mut State,
    shards: &[crossbeam_channel::Sender<ShardCommand>],
    config: GatewayConfig,
) {
    let slots = config.upstreams.len();
    state.totals.fit(slots);
    state.health.fit(slots);
    state
        .health
        .configure(&config.health_check, config.load_balancer.health_check);
    state.revisions.resize(slots, None);
    for (slot, u) in config.upstreams.iter().enumerate() {
        let was_live = state.config.upstreams.get(slot).map(|old| !old.retired);
        if u.retired && was_live == Some(true) {
            state.reload.retiring.push((slot, state.reload.generation));
        }
        if !u.retired && was_live == Some(false) {
            // A drained slot taken by a new server: it starts with nothing of the old one.
            state.totals.reset(slot);
            state.health.reset(slot);
            state.revisions[slot] = None;
        }
    }
    let config = Arc::new(config);
    let update = Arc::new(ConfigUpdate::new(state.reload.generation, config.clone()));
    state.set_config(&update);
    state.pages_wanted = true;
    let health = Arc::new(state.health.routing_map());
    // A reused slot's revision is unknown again, on the shards too.
    let revisions = Arc::new(state.revisions.clone());
    for tx in shards {
        let _ = tx.send(ShardCommand::Config(update.clone()));
        let _ = tx.send(ShardCommand::Health(health.clone()));
        let _ = tx.send(ShardCommand::Revisions(revisions.clone()));
    }
    if let Some(bridge) = &state.reload.bridge {
        if bridge.try_send(config).is_err() {
            tracing::warn!(
                "the legacy SSE bridge is behind on config updates; it keeps an older one"
            );
        }
    }
}

/// Marks drained (and logs) retired servers whose last request ended and whose
/// connections closed: every shard runs the generation that retired them (so starts no
/// new request there) and has reported neither requests nor connections since.
pub fn note_drained(state: &mut State) {
    let totals = &state.totals;
    let config = &state.config;
    let all_on = totals.generations.iter().copied().min().unwrap_or(0);
    let mut drained = Vec::new();
    state.reload.retiring.retain(|(slot, retired_in)| {
        if all_on < *retired_in || totals.slot_gauges(*slot) != (0, 0) {
            return true;
        }
        if let Some(u) = config.upstreams.get(*slot) {
            tracing::info!(upstream = %u.id, "removed server drained: its last request ended and its connections are closed");
        }
        drained.push(*slot);
        false
    });
    for slot in drained {
        state.reload.layout.release(slot);
    }
}

/// The sections (other than the server list) whose settings differ.
fn sections_changed(new: &GatewayConfig, old: &GatewayConfig) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("server", new.server != old.server);
    check(
        "upstream.idleTimeout",
        new.upstream_idle_timeout != old.upstream_idle_timeout,
    );
    check("loadBalancer", new.load_balancer != old.load_balancer);
    check("healthCheck", new.health_check != old.health_check);
    check("monitoring", new.monitoring != old.monitoring);
    check("sessions", new.sessions != old.sessions);
    check("security", new.security != old.security);
    changed
}

/// Logs an applied reload with what changed, and who asked.
pub fn log_applied(report: &Report, by: &str) {
    let s = &report.servers;
    if s.is_empty() && report.sections.is_empty() && report.needs_restart.is_empty() {
        tracing::info!(
            by,
            generation = report.generation,
            "config reloaded: nothing changed"
        );
        return;
    }
    tracing::info!(
        by,
        generation = report.generation,
        added = ?s.added,
        removed = ?s.removed,
        changed = ?s.changed,
        sections = ?report.sections,
        "config reloaded"
    );
    if !report.needs_restart.is_empty() {
        tracing::warn!(by, settings = ?report.needs_restart, "config reload: these settings changed but need a restart; the running values stay");
    }
}

/// Logs and counts a refused reload.
pub fn refused(state: &mut State, errors: &[String], by: &str) {
    state.reload.refused += 1;
    tracing::warn!(by, errors = ?errors, "config reload refused; the running config keeps serving");
}
