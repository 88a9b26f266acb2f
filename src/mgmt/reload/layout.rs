//! Upstream slots across reloads: which position of the shards' upstream table each server
//! holds.
//!
//! A slot is one server id at one URL. A server that keeps its id and URL keeps its slot
//! through any reload (its pooled connections, health, counters and balancer position go
//! on); one whose URL or transport changed gets a new slot (its old connections must not
//! be reused); one removed keeps its slot, marked `retired`, so the requests still in
//! flight on it end normally. A retired slot is given to a later server only once it has
//! drained on every shard (no request in flight, no connection open, every shard on the
//! generation that retired it), so nothing of the old server reaches the new one; until
//! then new servers take new slots.
//!
//! Owns: the slot order and the admin drain flags. Must not: do I/O or talk to shards.

use mcp_gateway_config::{GatewayConfig, Transport, Upstream};
use std::collections::{HashMap, HashSet};

#[derive(Debug, Default)]
pub struct Layout {
    slots: Vec<Upstream>,
    /// Server id -> its live (not retired) slot.
    live: HashMap<String, usize>,
    /// Servers drained through the admin API (`PATCH /api/upstreams/{id}`).
    drained: HashSet<String>,
    /// Retired slots whose last request ended on every shard: a new server takes one of
    /// these before the table grows, so the slots number at most the servers configured
    /// plus those still draining.
    free: Vec<usize>,
}

/// What a new config did to the servers, by id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ServerChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl ServerChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Whether two configs of a server are the same server instance (one slot): the URL as
/// written and the transport. Not the resolved address: a name that resolves to another
/// address of the same service (round-robin DNS) keeps its slot, its pooled connections
/// (still good) and its health; new connections go to the new address. (Stdio servers all
/// reach the process's stdio host; their path tells them apart.)
fn same_endpoint(a: &Upstream, b: &Upstream) -> bool {
    a.url == b.url
        && a.transport == b.transport
        && (!matches!(a.transport, Transport::Stdio(_)) || a.base_path == b.base_path)
}

impl Layout {
    /// The layout of the config the process started with: slot `i` is server `i`.
    pub fn new(config: &GatewayConfig) -> Layout {
        Layout {
            live: config
                .upstreams
                .iter()
                .enumerate()
                .map(|(i, u)| (u.id.clone(), i))
                .collect(),
            slots: config.upstreams.clone(),
            drained: HashSet::new(),
            free: Vec::new(),
        }
    }

    /// Rewrites `config.upstreams` into slot order (retired slots included) and reports
    /// what changed since the last call.
    pub fn arrange(&mut self, config: &mut GatewayConfig) -> ServerChanges {
        let mut changes = ServerChanges::default();
        let mut seen = HashSet::new();
        for mut server in std::mem::take(&mut config.upstreams) {
            seen.insert(server.id.clone());
            server.draining = self.drained.contains(&server.id);
            match self.live.get(&server.id).copied() {
                Some(slot) if same_endpoint(&self.slots[slot], &server) => {
                    if self.slots[slot] != server {
                        changes.changed.push(server.id.clone());
                    }
                    self.slots[slot] = server;
                }
                Some(slot) => {
                    changes.changed.push(server.id.clone());
                    self.slots[slot].retired = true;
                    let id = server.id.clone();
                    let slot = self.place(server);
                    self.live.insert(id, slot);
                }
                None => {
                    changes.added.push(server.id.clone());
                    let id = server.id.clone();
                    let slot = self.place(server);
                    self.live.insert(id, slot);
                }
            }
        }
        let gone: Vec<String> = self
            .live
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(slot) = self.live.remove(&id) {
                self.slots[slot].retired = true;
            }
            self.drained.remove(&id);
            changes.removed.push(id);
        }
        changes.removed.sort();
        config.upstreams = self.slots.clone();
        changes
    }

    /// Puts a new server in a free slot, or a new one at the end; returns the slot.
    fn place(&mut self, server: Upstream) -> usize {
        let lowest = (0..self.free.len()).min_by_key(|i| self.free[*i]);
        match lowest.map(|i| self.free.swap_remove(i)) {
            Some(slot) if slot < self.slots.len() => {
                self.slots[slot] = server;
                slot
            }
            _ => {
                self.slots.push(server);
                self.slots.len() - 1
            }
        }
    }

    /// A retired slot has drained on every shard: a later server may take it.
    pub fn release(&mut self, slot: usize) {
        if self.slots.get(slot).is_some_and(|u| u.retired) && !self.free.contains(&slot) {
            self.free.push(slot);
        }
    }

    /// Sets or clears the admin drain of a live server; false when there is no such server.
    /// The caller arranges a config again to apply it.
    pub fn set_drained(&mut self, id: &str, drained: bool) -> bool {
        if !self.live.contains_key(id) {
            return false;
        }
        if drained {
            self.drained.insert(id.to_string());
        } else {
            self.drained.remove(id);
        }
        true
    }

    pub fn is_drained(&self, id: &str) -> bool {
        self.drained.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(servers: &[(&str, u16)]) -> GatewayConfig {
        let list: Vec<String> = servers
            .iter()
            .map(|(id, port)| format!(r#"{{"id":"{id}","url":"http://127.0.0.1:{port}/mcp"}}"#))
            .collect();
        let text = format!(r#"{{"upstream":{{"servers":[{}]}}}}"#, list.join(","));
        match mcp_gateway_config::parse_str(&text, &|_| None) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn ids(c: &GatewayConfig) -> Vec<(String, bool)> {
        c.upstreams
            .iter()
            .map(|u| (u.id.clone(), u.retired))
            .collect()
    }

    #[test]
    fn slots_stay_put_across_reloads() {
        let start = config(&[("a", 9001), ("b", 9002), ("c", 9003)]);
        let mut layout = Layout::new(&start);
        // b removed, d added, c moved to another port, a reordered last.
        let mut next = config(&[("c", 9013), ("d", 9004), ("a", 9001)]);
        let changes = layout.arrange(&mut next);
        assert_eq!(changes.added, vec!["d"]);
        assert_eq!(changes.removed, vec!["b"]);
        assert_eq!(changes.changed, vec!["c"]);
        let s = |id: &str, retired| (id.to_string(), retired);
        assert_eq!(
            ids(&next),
            vec![
                s("a", false),
                s("b", true),
                s("c", true),
                s("c", false),
                s("d", false)
            ]
        );
        assert_eq!(next.upstreams[3].addr.port(), 9013);
        // The same config again changes nothing.
        let mut again = config(&[("c", 9013), ("d", 9004), ("a", 9001)]);
        assert!(layout.arrange(&mut again).is_empty());
        assert_eq!(again.upstreams.len(), 5);
        // A removed id that comes back gets a new slot.
        let mut back = config(&[("a", 9001), ("b", 9002)]);
        let changes = layout.arrange(&mut back);
        assert_eq!(changes.added, vec!["b"]);
        assert_eq!(back.upstreams.len(), 6);
        assert!(!back.upstreams[5].retired && back.upstreams[1].retired);
        // Drained slots are taken before the table grows.
        layout.release(1);
        layout.release(2);
        layout.release(0); // live: not released
        let mut next = config(&[("a", 9001), ("b", 9002), ("e", 9005), ("f", 9006)]);
        layout.arrange(&mut next);
        assert_eq!(next.upstreams.len(), 6);
        let live: Vec<&str> = next
            .upstreams
            .iter()
            .filter(|u| !u.retired)
            .map(|u| u.id.as_str())
            .collect();
        assert_eq!(live, ["a", "e", "f", "b"]);
    }

    #[test]
    fn drains_follow_the_id() {
        let start = config(&[("a", 9001), ("b", 9002)]);
        let mut layout = Layout::new(&start);
        assert!(layout.set_drained("b", true));
        assert!(!layout.set_drained("zzz", true));
        let mut next = config(&[("a", 9001), ("b", 9002)]);
        let changes = layout.arrange(&mut next);
        assert_eq!(changes.changed, vec!["b"]);
        assert!(next.upstreams[1].draining && !next.upstreams[0].draining);
    }
}
