//! One shard's own state: its config snapshot, route table, balancer, upstream pool,
//! metrics, the pages and health map last sent down (and the channel they come on), and its
//! cached `Date`.
//!
//! Owns: everything a request on this shard reads or updates, behind `Rc`/`RefCell` since a
//! shard is one thread. Must not: be shared with another thread or held borrowed across an
//! `.await`.

use crate::balancer::{Selector, WeightedRoundRobin};
use crate::http::encode::http_date;
use crate::mcp::headers::OriginPolicy;
use crate::mcp::session::{generated_secret, SessionCodec};
use crate::messages::{HealthMap, Pages, ShardCommand};
use crate::metrics::ShardMetrics;
use crate::pool::Pool;
use crate::router::RouteTable;
use crossbeam_channel::Receiver;
use mcp_gateway_config::GatewayConfig;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

pub struct Shard {
    pub id: usize,
    pub config: Arc<GatewayConfig>,
    pub routes: RouteTable,
    pub selector: RefCell<Selector>,
    /// One selector per replica group, for requests that start a session.
    group_selectors: RefCell<Vec<Selector>>,
    /// Seals and opens session tokens (key derived once at start-up).
    pub sessions: RefCell<SessionCodec>,
    pub origins: OriginPolicy,
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
    /// Shutting down: no new connections, no new requests on open ones.
    pub draining: Cell<bool>,
    pub max_connections: usize,
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
        config: Arc<GatewayConfig>,
        pages: Arc<Pages>,
        commands: Receiver<ShardCommand>,
    ) -> Shard {
        let shards = shards.max(1);
        let routes = RouteTable::build(&config);
        let weights = routes
            .default_group
            .iter()
            .map(|i| config.upstreams[*i].weight)
            .collect();
        let group_selectors = routes
            .groups
            .iter()
            .map(|g| {
                let weights = g
                    .members
                    .iter()
                    .map(|i| config.upstreams[*i].weight)
                    .collect();
                Selector::WeightedRoundRobin(WeightedRoundRobin::new(weights, id * 7919))
            })
            .collect();
        let secret = match &config.sessions.secret {
            Some(s) => s.as_bytes().to_vec(),
            None => generated_secret(),
        };
        let ttl = u32::try_from(config.sessions.ttl.as_secs()).unwrap_or(u32::MAX);
        let loopback = config.server.host.is_loopback();
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
        Shard {
            id,
            selector: RefCell::new(Selector::WeightedRoundRobin(WeightedRoundRobin::new(
                weights,
                id * 7919,
            ))),
            group_selectors: RefCell::new(group_selectors),
            sessions: RefCell::new(SessionCodec::new(&secret, ttl)),
            origins: OriginPolicy::new(&config.security.allowed_origins, loopback),
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
            draining: Cell::new(false),
            max_connections: config.server.limits.max_connections.div_ceil(shards),
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
            routes,
            config,
        }
    }

    pub fn is_healthy(&self, upstream: usize) -> bool {
        self.health.borrow().get(upstream).copied().unwrap_or(false)
    }

    /// Picks a healthy member of the default group.
    pub fn pick_default(&self) -> Option<usize> {
        let health = self.health.borrow();
        let group = &self.routes.default_group;
        let pos = self.selector.borrow_mut().next(|pos| {
            group
                .get(pos)
                .is_some_and(|i| health.get(*i).copied().unwrap_or(false))
        })?;
        group.get(pos).copied()
    }

    /// Picks a healthy replica of a group, for a request that starts a session or needs
    /// none. A `stateless` (2026-07-28) request avoids replicas that lately refused one,
    /// unless no other is up: a group may mix revisions.
    pub fn pick_in_group(&self, group: usize, stateless: bool) -> Option<usize> {
        let members = &self.routes.groups.get(group)?.members;
        let health = self.health.borrow();
        let up = |i: usize| health.get(i).copied().unwrap_or(false);
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
