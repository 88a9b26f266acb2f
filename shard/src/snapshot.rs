//! One config generation as a shard reads it per request: the validated config (upstreams
//! in slot order), the route table compiled from it, and the origin policy.
//!
//! The management shard builds a [`ConfigUpdate`] once per generation and sends it to every
//! shard; each shard wraps it in its own [`Snapshot`] behind an `Rc`, swapped between
//! requests. A request holds the `Rc` it started with until it ends, so a reload never
//! changes a request in flight, and cloning it costs no atomic operation.
//!
//! Upstream slots: position `i` of `config.upstreams` names one server (one id at one URL)
//! from the generation that places it there until it drains. A server removed by a reload
//! keeps its slot, marked `retired`, so pools, health and counters keyed by slot stay right
//! for requests still in flight on it; a server added takes a drained slot (its runtime
//! state reset) or a new one at the end.
//!
//! Owns: the per-generation, immutable part of a shard's state. Must not: hold runtime
//! state that must outlive a reload (pools, health, counters, balancer positions: those
//! stay in `state::Shard`, keyed by slot).

use crate::auth::{AuthKeys, ShardAuth};
use crate::mcp::headers::OriginPolicy;
use crate::router::RouteTable;
use mcp_gateway_config::GatewayConfig;
use std::sync::Arc;

/// What the management shard sends down for a new generation.
#[derive(Debug)]
pub struct ConfigUpdate {
    /// 1 for the config the process started with, then one more per applied reload.
    pub generation: u64,
    pub config: Arc<GatewayConfig>,
    pub routes: Arc<RouteTable>,
    /// Parsed keys and challenges, built once here for every shard.
    pub auth: Arc<AuthKeys>,
}

impl ConfigUpdate {
    pub fn new(generation: u64, config: Arc<GatewayConfig>) -> ConfigUpdate {
        ConfigUpdate {
            generation,
            routes: Arc::new(RouteTable::build(&config)),
            auth: Arc::new(AuthKeys::new(&config)),
            config,
        }
    }
}

/// A shard's view of one generation.
pub struct Snapshot {
    pub generation: u64,
    pub config: Arc<GatewayConfig>,
    pub routes: Arc<RouteTable>,
    pub origins: OriginPolicy,
    /// This shard's authentication state for the generation (its token cache included).
    pub auth: ShardAuth,
}

impl Snapshot {
    pub fn new(update: &ConfigUpdate) -> Snapshot {
        let config = update.config.clone();
        Snapshot {
            generation: update.generation,
            origins: OriginPolicy::new(
                &config.security.allowed_origins,
                config.server.host.is_loopback(),
            ),
            routes: update.routes.clone(),
            auth: ShardAuth::new(&config, update.auth.clone()),
            config,
        }
    }

    /// Whether slot `upstream` may be given new requests (health aside): configured, and
    /// not drained through the admin API.
    pub fn accepts(&self, upstream: usize) -> bool {
        self.config
            .upstreams
            .get(upstream)
            .is_some_and(|u| !u.retired && !u.draining)
    }
}
