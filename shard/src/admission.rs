//! Who may connect, decided at accept before a byte is read or written: `security.ddos`
//! `deny` blocks (with `allow` exceptions), and `maxConnectionsPerIp`.
//!
//! The per-address cap is split evenly between the shards (each admits up to
//! `ceil(cap / shards)` from one address), because `SO_REUSEPORT` spreads one client's
//! connections over the shards by their ports: the process never admits more than the cap,
//! and admits it all unless one shard was dealt fewer than its share. Each shard counts its
//! own open connections per address; an address leaves the map with its last connection,
//! so the map never holds more entries than connections are open.
//!
//! Owns: that decision and the per-shard counts. Must not: read or write the socket (the
//! worker closes a refused one), or be shared between shards.

use std::net::IpAddr;
use std::rc::Rc;

use crate::state::Shard;

/// Why a connection was closed at accept (the `reason` label of
/// `mcp_gateway_connections_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// From a `security.ddos.deny` block.
    Denied,
    /// Over `security.ddos.maxConnectionsPerIp`.
    PerIpCap,
}

impl Refused {
    pub const ALL: [Refused; 2] = [Refused::Denied, Refused::PerIpCap];

    pub fn label(self) -> &'static str {
        match self {
            Refused::Denied => "denied",
            Refused::PerIpCap => "per_ip_cap",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// One admitted connection from a capped address: counted while it lives.
pub struct Admitted {
    shard: Rc<Shard>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.shard.per_ip.borrow_mut();
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Whether a connection from `ip` may be served (`Some` guard when it counts against the
/// per-address cap).
pub fn admit(shard: &Rc<Shard>, ip: IpAddr) -> Result<Option<Admitted>, Refused> {
    let snap = shard.snapshot();
    let ddos = &snap.config.security.ddos;
    if ddos.refuses(ip) {
        return Err(Refused::Denied);
    }
    if ddos.max_connections_per_ip == 0 || ddos.allows(ip) {
        return Ok(None);
    }
    let share = ddos.max_connections_per_ip.div_ceil(shard.shards());
    let mut open = shard.per_ip.borrow_mut();
    let n = open.entry(ip).or_insert(0);
    if *n as usize >= share {
        if *n == 0 {
            open.remove(&ip);
        }
        return Err(Refused::PerIpCap);
    }
    *n += 1;
    Ok(Some(Admitted {
        shard: shard.clone(),
        ip,
    }))
}
