//! The management shard: one more thread, with its own monoio runtime, that owns what is
//! process-wide: merging the shards' metric deltas (at each tick, and before each page of
//! the management port), rendering the gateway's pages and sending them down to every shard
//! (at the tick after a shard asked), active health checks, and the management port.
//!
//! Owns: [`State`]. Must not: be on any request's path: shards only ever see what it sends
//! them over `crossbeam` channels.

mod admin;
mod api;
mod gate;
mod merge;
pub mod prober;
pub mod reload;
pub mod render;
pub mod server;

use crossbeam_channel::{Receiver, Sender};
use mcp_gateway_config::GatewayConfig;
use mcp_gateway_shard::auth::AuthKeys;
use mcp_gateway_shard::messages::{Pages, ShardCommand};
use mcp_gateway_shard::metrics::MetricsDelta;
use mcp_gateway_shard::runtime;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

pub use merge::Totals;
pub use prober::HealthTable;

pub struct State {
    /// The running config generation, upstreams in slot order (see `reload::layout`).
    pub config: Arc<GatewayConfig>,
    pub reload: reload::Reloader,
    pub totals: Totals,
    pub health: HealthTable,
    /// Per upstream: whether it speaks the stateless 2026-07-28 revision (group members
    /// only; `None`: not known).
    pub revisions: Vec<Option<bool>>,
    pub started_at: Instant,
    pub started_wall: SystemTime,
    pub shards: usize,
    pub driver: &'static str,
    pub cpus: Vec<usize>,
    pub data_addr: SocketAddr,
    pub management_addr: Option<SocketAddr>,
    /// The shards' metric deltas, merged at each tick and before each management-port page.
    reports: Receiver<MetricsDelta>,
    /// When the last merge began: every delta sent up before it is in `totals`.
    pub merged_at: Instant,
    /// What the shards serve now.
    pub pages: Arc<Pages>,
    /// A shard asked for pages (one was read there): render again at the next tick.
    pub pages_wanted: bool,
    pub rendered_at: Instant,
    /// Key sources a shard met an unknown `kid` of, since the last tick.
    pub key_misses: u64,
    /// The key refresh thread, started the first time a refresh is wanted.
    pub keys: Option<crate::jwks::Refresher>,
    /// The keys of the running config, for the management port (see `gate`).
    pub auth_keys: Arc<AuthKeys>,
}

/// Pages are re-rendered at the tick after a shard asked for them, and at least this often.
/// Rendering 1000 upstreams' pages takes milliseconds, and the management thread may share
/// a core with a shard: doing it every tick when nobody reads them would cost the shards
/// latency.
const PAGES_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(5);

impl State {
    pub fn new(
        config: Arc<GatewayConfig>,
        reload: reload::Reloader,
        shards: usize,
        cpus: Vec<usize>,
        data_addr: SocketAddr,
        management_addr: Option<SocketAddr>,
        reports: Receiver<MetricsDelta>,
    ) -> State {
        let mut state = State {
            totals: Totals::new(config.upstreams.len(), shards),
            health: HealthTable::new(
                config.upstreams.len(),
                &config.health_check,
                config.load_balancer.health_check,
            ),
            revisions: vec![None; config.upstreams.len()],
            started_at: Instant::now(),
            started_wall: SystemTime::now(),
            shards,
            driver: runtime::preferred_driver().name(),
            cpus,
            data_addr,
            management_addr,
            reports,
            merged_at: Instant::now(),
            pages: Arc::new(Pages::render(Instant::now(), |_| {
                mcp_gateway_shard::messages::Page {
                    status: 503,
                    content_type: "application/json",
                    body: bytes::Bytes::new(),
                }
            })),
            pages_wanted: false,
            rendered_at: Instant::now(),
            key_misses: 0,
            keys: None,
            auth_keys: Arc::new(AuthKeys::new(&config)),
            config,
            reload,
        };
        state.pages = Arc::new(render::pages(&state));
        state
    }

    /// Per slot, whether the pages show it: every configured server, and a removed one
    /// still draining unless its id is configured again (one series per id: the configured
    /// slot, or the latest draining one).
    pub fn shown_slots(&self) -> Vec<bool> {
        let upstreams = &self.config.upstreams;
        let mut by_id: std::collections::HashMap<&str, usize> = upstreams
            .iter()
            .enumerate()
            .filter(|(_, u)| !u.retired)
            .map(|(i, u)| (u.id.as_str(), i))
            .collect();
        for (slot, _) in &self.reload.retiring {
            if let Some(u) = upstreams.get(*slot) {
                let chosen = by_id.entry(u.id.as_str()).or_insert(*slot);
                if upstreams[*chosen].retired && *slot > *chosen {
                    *chosen = *slot;
                }
            }
        }
        let mut shown = vec![false; upstreams.len()];
        for slot in by_id.into_values() {
            shown[slot] = true;
        }
        shown
    }

    /// (healthy, total) among the configured servers.
    pub fn health_counts(&self) -> (usize, usize) {
        self.config
            .upstreams
            .iter()
            .zip(self.health.entries())
            .filter(|(u, _)| !u.retired)
            .fold((0, 0), |(h, t), (_, e)| (h + usize::from(e.healthy), t + 1))
    }

    /// Runs on `update`'s config from now on (the management port's keys too).
    pub fn set_config(&mut self, update: &mcp_gateway_shard::snapshot::ConfigUpdate) {
        self.config = update.config.clone();
        self.auth_keys = update.auth.clone();
    }

    /// Merges every delta the shards have sent up so far; `merged_at` says when it began.
    pub fn merge_reports(&mut self) {
        self.merged_at = Instant::now();
        while let Ok(delta) = self.reports.try_recv() {
            self.pages_wanted |= delta.counts.pages_wanted > 0;
            self.key_misses |= delta.key_misses;
            self.totals.merge(&delta);
        }
    }
}

/// Asks for the key sources shards missed a `kid` in (rate-limited per source), and sends
/// down the keys refreshed since, as the same generation with new key sets.
fn refresh_keys(s: &mut State, shards: &[Sender<ShardCommand>]) {
    let misses = std::mem::take(&mut s.key_misses);
    if misses != 0 && s.keys.is_none() {
        match crate::jwks::Refresher::spawn() {
            Ok(refresher) => s.keys = Some(refresher),
            Err(e) => tracing::error!(error = %e, "cannot start the key refresh thread"),
        }
    }
    let generation = s.reload.generation;
    let Some(keys) = s.keys.as_mut() else {
        return;
    };
    if misses != 0 {
        keys.ask(misses, generation, &s.config);
    }
    let mut latest = None;
    while let Ok(done) = keys.done.try_recv() {
        if done.generation == generation {
            latest = Some(done.config);
        }
    }
    if let Some(config) = latest {
        tracing::info!(generation, "new keys: sent to the shards");
        let config = Arc::new(config);
        let update = Arc::new(mcp_gateway_shard::snapshot::ConfigUpdate::new(
            generation, config,
        ));
        s.set_config(&update);
        for tx in shards {
            let _ = tx.send(ShardCommand::Config(update.clone()));
        }
    }
}

pub struct MgmtSpec {
    pub state: State,
    pub shards: Vec<Sender<ShardCommand>>,
    pub listener: Option<std::net::TcpListener>,
    /// SIGHUP, forwarded by the main thread.
    pub hup: Receiver<()>,
    /// The config file's watch (started before the gateway says it listens, so no change
    /// after that is missed) and its nudges.
    pub watch: Option<reload::watch::FileWatch>,
    pub nudges: Receiver<()>,
}

pub fn spawn(spec: MgmtSpec) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("management".into())
        .spawn(move || {
            if let Err(e) = runtime::block_on(move || management_main(spec)) {
                tracing::error!(error = %e, "management runtime failed to start");
            }
        })
}

async fn management_main(spec: MgmtSpec) {
    let tick = spec.state.config.monitoring.metrics_tick;
    let state = Rc::new(RefCell::new(spec.state));
    let shards = Rc::new(spec.shards);
    if let Some(listener) = spec.listener {
        match monoio::net::TcpListener::from_std(listener) {
            Ok(l) => {
                monoio::spawn(server::serve(l, state.clone(), shards.clone()));
            }
            Err(e) => tracing::error!(error = %e, "cannot use the management listener"),
        }
    }
    // Always running: a reload may turn checks on.
    monoio::spawn(prober::run(state.clone(), shards.clone()));
    // The watch lives as long as this loop (the management thread's life).
    let _watch = spec.watch;
    monoio::spawn(reload::trigger::run(
        state.clone(),
        shards.clone(),
        spec.hup,
        spec.nudges,
    ));
    loop {
        monoio::time::sleep(tick).await;
        let mut s = state.borrow_mut();
        s.merge_reports();
        reload::note_drained(&mut s);
        refresh_keys(&mut s, &shards);
        if !s.pages_wanted && s.rendered_at.elapsed() < PAGES_MAX_AGE {
            continue;
        }
        let pages = Arc::new(render::pages(&s));
        s.pages = pages.clone();
        s.pages_wanted = false;
        s.rendered_at = Instant::now();
        drop(s);
        for tx in shards.iter() {
            let _ = tx.send(ShardCommand::Pages(pages.clone()));
        }
    }
}
