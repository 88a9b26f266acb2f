//! One shard's own state: its current config [`Snapshot`], and the runtime state that
//! outlives a reload, keyed by upstream slot: balancer positions, upstream pool, metrics,
//! health, revision memory; the pages last sent down (and the channel they come on), and
//! its cached `Date`.
//!
//! Owns: everything a request on this shard reads or updates, behind `Rc`/`RefCell` since a
//! shard is one thread, and swapping in a new generation between requests. Must not: be
//! shared with another thread or held borrowed across an `.await`.

use crate::balancer::{Selector, WeightedRoundRobin};
use crate::http::encode::http_date;
use crate::mcp::session::{generated_secret, SessionCodec};
use crate::messages::{HealthMap, Pages, ShardCommand};
use crate::metrics::ShardMetrics;
use crate::pool::Pool;
use crate::snapshot::{ConfigUpdate, Snapshot};
use crossbeam_channel::Receiver;
use mcp_gateway_config::GatewayConfig;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

pub struct Shard {
    pub id: usize,
    /// How many shards share the process's caps.
    shards: usize,
    /// The current generation; a request clones it once and keeps it to its end.
    snapshot: RefCell<Rc<Snapshot>>,
    pub selector: RefCell<Selector>,
    /// One selector per replica group, for requests that start a session.
    group_selectors: RefCell<Vec<Selector>>,
    /// Seals and opens session tokens (key derived once at start-up).
    pub sessions: RefCell<SessionCodec>,
    /// This process's legacy-SSE bridge (`/sse/{id}` in front of Streamable HTTP servers).
    pub sse_bridge: Option<std::net::SocketAddr>,
    pub pool: Rc<RefCell<Pool>>,
    pub metrics: RefCell<ShardMetrics>,
    pub pages: RefCell<Arc<Pages>>,
    /// Page reads waiting for pages merged after they arrived (`answer::respond_page`):
    /// while any wait, each tick's delta asks the management shard for a render.
    pub page_waiters: Cell<usize>,
    /// When the tick last sent this shard's counts up.
    pub reported_at: Cell<std::time::Instant>,
    pub health: RefCell<HealthMap>,
    /// What the management shard sends down, applied at each tick and while a page read
    /// waits.
    commands: Receiver<ShardCommand>,
    /// `Date` header value, refreshed at each tick.
    pub date: RefCell<String>,
    /// Client connections open on this shard, and this shard's share of the process cap.
    pub open_connections: Cell<usize>,
    /// Requests between their head and their answer's end.
    pub in_flight: Cell<usize>,
    /// Token introspections this shard is waiting on (bounded by
    /// `oauth2.maxPendingIntrospections`).
    pub introspections: Cell<usize>,
    /// Shutting down: no new connections, no new requests on open ones.
    pub draining: Cell<bool>,
    /// This shard's share of `server.limits.maxConnections`.
    pub max_connections: Cell<usize>,
    /// Open connections per client address, for `security.ddos.maxConnectionsPerIp`
    /// (`admission`); an address leaves with its last connection.
    pub per_ip: RefCell<std::collections::HashMap<std::net::IpAddr, u32>>,
    request_seq: Cell<u64>,
    request_id_seed: u64,
    /// Spare output buffers, so an idle connection holds only its read buffer.
    buffers: RefCell<Vec<Vec<u8>>>,
    /// Per upstream: until when it is taken to predate the stateless revision (it refused a
    /// 2026-07-28 request), so stateless requests to its group go to other replicas.
    predates_stateless: RefCell<Vec<Option<std::time::Instant>>>,
    /// Per upstream: whether the management shard's `server/discover` probe found it speaks
    /// the stateless revision.
    probed_stateless: RefCell<Arc<Vec<Option<bool>>>>,
    /// `sessions.store: "redis"`: this shard's view of the session store.
    pub store: Option<Rc<crate::store::SessionStore>>,
    /// Custom request filters registered by an embedding program (none for the binary).
    pub filters: crate::filter::Filters,
    /// While a failover retry chooses again: the upstream it could not reach, which the
    /// picks pass over.
    avoid: Cell<Option<usize>>,
}

/// How long a replica that refused a stateless request is passed over for them: long
/// enough to spare clients repeated failures, short enough to notice an upgrade.
const REVISION_MEMORY: std::time::Duration = std::time::Duration::from_secs(30);

/// Output and upstream buffers start at this size and are reused between requests.
pub const BUFFER_SIZE: usize = 8 * 1024;
/// Pooled buffers that grew past this are dropped rather than kept.
const BUFFER_KEEP_MAX: usize = 256 * 1024;

impl Shard {
    pub fn new(
        id: usize,
        shards: usize,
        update: &ConfigUpdate,
        pages: Arc<Pages>,
        commands: Receiver<ShardCommand>,
    ) -> Shard {
        let shards = shards.max(1);
        let config = &update.config;
        let secret = match &config.sessions.secret {
            Some(s) => s.as_bytes().to_vec(),
            None => generated_secret(),
        };
        let ttl = u32::try_from(config.sessions.ttl.as_secs()).unwrap_or(u32::MAX);
        let pool = Pool::new(
            config
                .upstreams
                .iter()
                .map(|u| u.max_connections.div_ceil(shards)),
            config.upstream_idle_timeout,
        );
        let seed = (std::process::id() as u64) << 32
            ^ SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
            ^ ((id as u64) << 56);
        let snapshot = Snapshot::new(update);
        Shard {
            id,
            shards,
            selector: RefCell::new(default_selector(&snapshot, id)),
            group_selectors: RefCell::new(group_selectors(&snapshot, id)),
            sessions: RefCell::new(SessionCodec::new(&secret, ttl)),
            sse_bridge: None,
            pool: Rc::new(RefCell::new(pool)),
            metrics: RefCell::new(ShardMetrics::new(id, config.upstreams.len())),
            pages: RefCell::new(pages),
            page_waiters: Cell::new(0),
            reported_at: Cell::new(std::time::Instant::now()),
            commands,
            health: RefCell::new(Arc::new(vec![true; config.upstreams.len()])),
            date: RefCell::new(http_date(SystemTime::now())),
            open_connections: Cell::new(0),
            in_flight: Cell::new(0),
            introspections: Cell::new(0),
            draining: Cell::new(false),
            per_ip: RefCell::new(std::collections::HashMap::new()),
            max_connections: Cell::new(config.server.limits.max_connections.div_ceil(shards)),
            request_seq: Cell::new(0),
            request_id_seed: seed,
            buffers: RefCell::new(Vec::new()),
            predates_stateless: RefCell::new(vec![None; config.upstreams.len()]),
            probed_stateless: RefCell::new(Arc::new(Vec::new())),
            store: config
                .sessions
                .redis
                .clone()
                .map(|redis| Rc::new(crate::store::SessionStore::new(redis, config.sessions.ttl))),
            snapshot: RefCell::new(Rc::new(snapshot)),
            filters: crate::filter::Filters::new(),
            avoid: Cell::new(None),
        }
    }

    /// How many shards the process has.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The number of the current generation.
    pub fn generation(&self) -> u64 {
        self.snapshot.borrow().generation
    }

    /// The current generation (a request keeps the one it started with).
    pub fn snapshot(&self) -> Rc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// Swaps in a new generation, between requests. Runtime state stays where the slot
    /// stays: pools, counters and health of unchanged servers go on; new slots get theirs;
    /// retired slots close their idle connections. Balancer positions are kept: the default
    /// group's when its members and weights did not change, the replica groups' when none
    /// of theirs did.
    fn install(&self, update: &ConfigUpdate) {
        let new = Snapshot::new(update);
        let old = self.snapshot();
        let config = &new.config;
        let slots = config.upstreams.len();
        self.pool.borrow_mut().fit(
            config.upstreams.iter().map(|u| {
                let cap = u.max_connections.div_ceil(self.shards);
                (cap, u.retired)
            }),
            config.upstream_idle_timeout,
        );
        self.metrics.borrow_mut().fit(slots);
        let mut predates = self.predates_stateless.borrow_mut();
        predates.resize(slots, None);
        for (slot, u) in config.upstreams.iter().enumerate() {
            let reused = old.config.upstreams.get(slot).is_some_and(|o| o.retired) && !u.retired;
            if reused {
                // A drained slot taken by a new server: nothing of the old one carries over.
                predates[slot] = None;
                self.pool.borrow_mut().reset(slot);
            }
        }
        drop(predates);
        let mut health = self.health.borrow_mut();
        if health.len() < slots {
            // New servers take traffic at once, as at start-up; the prober judges them next.
            let mut grown = health.as_ref().clone();
            grown.resize(slots, true);
            *health = Arc::new(grown);
        }
        drop(health);
        if members_and_weights(&old.routes.default_group, &old.config)
            != members_and_weights(&new.routes.default_group, config)
        {
            *self.selector.borrow_mut() = default_selector(&new, self.id);
        }
        let groups_same = old.routes.groups.len() == new.routes.groups.len()
            && old
                .routes
                .groups
                .iter()
                .zip(&new.routes.groups)
                .all(|(a, b)| {
                    a.id == b.id
                        && members_and_weights(&a.members, &old.config)
                            == members_and_weights(&b.members, config)
                });
        if !groups_same {
            *self.group_selectors.borrow_mut() = group_selectors(&new, self.id);
        }
        self.max_connections
            .set(config.server.limits.max_connections.div_ceil(self.shards));
        *self.snapshot.borrow_mut() = Rc::new(new);
    }

    /// Whether slot `upstream` is up (by its health checks): it may go on serving the
    /// sessions it holds, even while drained.
    pub fn is_healthy(&self, upstream: usize) -> bool {
        self.health.borrow().get(upstream).copied().unwrap_or(false)
    }

    /// Whether slot `upstream` may be given a new request or session: up, configured, and
    /// not drained through the admin API.
    pub fn takes_new(&self, upstream: usize) -> bool {
        self.is_healthy(upstream) && self.snapshot.borrow().accepts(upstream)
    }

    /// Picks a healthy member of the default group.
    pub fn pick_default(&self) -> Option<usize> {
        let health = self.health.borrow();
        let snapshot = self.snapshot.borrow();
        let group = &snapshot.routes.default_group;
        let avoid = self.avoid.get();
        let pos = self.selector.borrow_mut().next(|pos| {
            group.get(pos).is_some_and(|i| {
                health.get(*i).copied().unwrap_or(false)
                    && snapshot.accepts(*i)
                    && avoid != Some(*i)
            })
        })?;
        group.get(pos).copied()
    }

    /// Runs `choose` with the picks passing over `unreached` (a failover retry).
    pub fn choosing_without<T>(&self, unreached: usize, choose: impl FnOnce() -> T) -> T {
        /// Clears the avoided upstream however `choose` ends (a panic included).
        struct Clear<'a>(&'a Cell<Option<usize>>);
        impl Drop for Clear<'_> {
            fn drop(&mut self) {
                self.0.set(None);
            }
        }
        self.avoid.set(Some(unreached));
        let _clear = Clear(&self.avoid);
        choose()
    }

    /// Whether a failover retry is choosing again and must pass over `upstream`.
    pub fn avoided(&self, upstream: usize) -> bool {
        self.avoid.get() == Some(upstream)
    }

    /// Picks a healthy replica of a group, for a request that starts a session or needs
    /// none. A `stateless` (2026-07-28) request avoids replicas that lately refused one,
    /// unless no other is up: a group may mix revisions.
    pub fn pick_in_group(&self, group: usize, stateless: bool) -> Option<usize> {
        let snapshot = self.snapshot.borrow();
        let members = &snapshot.routes.groups.get(group)?.members;
        let health = self.health.borrow();
        let avoid = self.avoid.get();
        let up = |i: usize| {
            health.get(i).copied().unwrap_or(false) && snapshot.accepts(i) && avoid != Some(i)
        };
        let mut selectors = self.group_selectors.borrow_mut();
        let selector = selectors.get_mut(group)?;
        if stateless {
            let now = std::time::Instant::now();
            let old = self.predates_stateless.borrow();
            let probed = self.probed_stateless.borrow();
            let current = |i: usize| {
                old.get(i).copied().flatten().is_none_or(|t| t <= now)
                    && probed.get(i).copied().flatten() != Some(false)
            };
            let pos = selector.next(|pos| members.get(pos).is_some_and(|i| up(*i) && current(*i)));
            if let Some(pos) = pos {
                return members.get(pos).copied();
            }
        }
        let pos = selector.next(|pos| members.get(pos).is_some_and(|i| up(*i)))?;
        members.get(pos).copied()
    }

    /// What the answer to a stateless (2026-07-28) request says about the replica: a 400
    /// is how servers of earlier revisions refuse an unknown `MCP-Protocol-Version`. From a
    /// replica whose `server/discover` probe answered, a 400 is about the request (a bad
    /// call of one client), not the revision, and moves no traffic.
    pub fn learn_revision(&self, upstream: usize, status: u16) {
        let probed_current = self
            .probed_stateless
            .borrow()
            .get(upstream)
            .copied()
            .flatten();
        if let Some(slot) = self.predates_stateless.borrow_mut().get_mut(upstream) {
            match status {
                200..=299 => *slot = None,
                400 if probed_current != Some(true) => {
                    *slot = Some(std::time::Instant::now() + REVISION_MEMORY)
                }
                _ => {}
            }
        }
    }

    /// A fresh request id: 16 hex digits, unique per shard, unlikely to repeat across runs.
    pub fn next_request_id(&self, out: &mut [u8; 16]) {
        let n = self.request_seq.get().wrapping_add(1);
        self.request_seq.set(n);
        let v = self
            .request_id_seed
            .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
        }
    }

    pub fn take_buffer(&self) -> Vec<u8> {
        self.buffers
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_SIZE))
    }

    pub fn give_buffer(&self, mut buf: Vec<u8>) {
        if (BUFFER_SIZE..=BUFFER_KEEP_MAX).contains(&buf.capacity()) {
            buf.clear();
            self.buffers.borrow_mut().push(buf);
        }
    }

    /// Applies every command the management shard has sent (at a tick, or while a page read
    /// waits; never while anything of the shard is borrowed).
    pub fn apply_commands(&self) {
        while let Ok(command) = self.commands.try_recv() {
            self.apply(command);
        }
    }

    fn apply(&self, command: ShardCommand) {
        match command {
            ShardCommand::Config(update) => self.install(&update),
            ShardCommand::Pages(pages) => *self.pages.borrow_mut() = pages,
            ShardCommand::Health(health) => *self.health.borrow_mut() = health,
            ShardCommand::Revisions(revisions) => *self.probed_stateless.borrow_mut() = revisions,
            ShardCommand::Drain => self.draining.set(true),
            ShardCommand::Revoke(key) => {
                if let Some(store) = &self.store {
                    store.revoke(key);
                }
            }
        }
    }

    pub fn refresh_date(&self) {
        *self.date.borrow_mut() = http_date(SystemTime::now());
    }
}

/// Counts a value up while it lives (its `Drop` runs on a panic too).
pub struct Counted<'a>(&'a std::cell::Cell<usize>);

impl<'a> Counted<'a> {
    pub(crate) fn new(cell: &'a std::cell::Cell<usize>) -> Self {
        cell.set(cell.get() + 1);
        Counted(cell)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// The members of a group with their weights, to tell whether its selector must change.
fn members_and_weights(members: &[usize], config: &GatewayConfig) -> Vec<(usize, u32)> {
    members
        .iter()
        .map(|i| (*i, config.upstreams.get(*i).map_or(0, |u| u.weight)))
        .collect()
}

fn default_selector(snapshot: &Snapshot, shard: usize) -> Selector {
    let weights = members_and_weights(&snapshot.routes.default_group, &snapshot.config);
    // Shards start at different members so they do not walk them in lockstep.
    Selector::WeightedRoundRobin(WeightedRoundRobin::new(
        weights.into_iter().map(|(_, w)| w).collect(),
        shard * 7919,
    ))
}

fn group_selectors(snapshot: &Snapshot, shard: usize) -> Vec<Selector> {
    snapshot
        .routes
        .groups
        .iter()
        .map(|g| {
            let weights = members_and_weights(&g.members, &snapshot.config);
            Selector::WeightedRoundRobin(WeightedRoundRobin::new(
                weights.into_iter().map(|(_, w)| w).collect(),
                shard * 7919,
            ))
        })
        .collect()
}
