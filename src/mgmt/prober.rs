//! Active health checks: one prober for the whole process, on the management shard.
//!
//! Owns: the health table (per upstream: up/down with thresholds, last check, latency, last
//! error) and the probe itself (`GET <healthCheck.path>` at the upstream's host, 2xx/3xx is
//! healthy). When an upstream changes state, the new health map goes down to every shard.
//! Members of replica groups are also asked `server/discover` at the 2026-07-28 revision,
//! so shards send stateless requests only to replicas that speak it (a group may mix
//! revisions); what changed goes down to every shard too.
//! Must not: run on a shard, or probe the same upstream twice at once.

use super::State;
use mcp_gateway_config::{GatewayConfig, HealthCheck, Transport, Upstream};
use mcp_gateway_shard::messages::ShardCommand;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Probes in flight at once, so 1000 upstreams do not open 1000 sockets in one burst.
const CONCURRENCY: usize = 64;

#[derive(Debug, Clone)]
pub struct HealthEntry {
    pub healthy: bool,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last_check: Option<SystemTime>,
    pub last_latency_ms: Option<f64>,
    pub last_error: Option<String>,
}

impl HealthEntry {
    fn fresh() -> HealthEntry {
        HealthEntry {
            healthy: true,
            consecutive_failures: 0,
            consecutive_successes: 0,
            last_check: None,
            last_latency_ms: None,
            last_error: None,
        }
    }
}

pub struct HealthTable {
    entries: Vec<HealthEntry>,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
    /// `loadBalancer.healthCheck: false` keeps every upstream in rotation whatever probes say.
    route_by_health: bool,
}

impl HealthTable {
    pub fn new(upstreams: usize, check: &HealthCheck, route_by_health: bool) -> Self {
        Self {
            entries: vec![HealthEntry::fresh(); upstreams],
            healthy_threshold: check.healthy_threshold.max(1),
            unhealthy_threshold: check.unhealthy_threshold.max(1),
            route_by_health,
        }
    }

    /// A reload added slots: their servers start healthy, as at start-up.
    pub fn fit(&mut self, slots: usize) {
        if slots > self.entries.len() {
            self.entries.resize(slots, HealthEntry::fresh());
        }
    }

    /// New `healthCheck` settings (a reload): thresholds and whether health routes.
    pub fn configure(&mut self, check: &HealthCheck, route_by_health: bool) {
        self.healthy_threshold = check.healthy_threshold.max(1);
        self.unhealthy_threshold = check.unhealthy_threshold.max(1);
        self.route_by_health = route_by_health;
    }

    /// Checks were turned off: every server is taken as healthy again; the routing map.
    pub fn all_healthy(&mut self) -> Vec<bool> {
        for e in &mut self.entries {
            *e = HealthEntry::fresh();
        }
        self.routing_map()
    }

    /// A new server took slot `slot`: healthy until its probes say otherwise.
    pub fn reset(&mut self, slot: usize) {
        if let Some(e) = self.entries.get_mut(slot) {
            *e = HealthEntry::fresh();
        }
    }

    pub fn entries(&self) -> &[HealthEntry] {
        &self.entries
    }

    /// Records one probe result; true when the upstream changed state.
    pub fn record(&mut self, index: usize, result: Result<Duration, String>) -> bool {
        let (healthy_threshold, unhealthy_threshold) =
            (self.healthy_threshold, self.unhealthy_threshold);
        let Some(e) = self.entries.get_mut(index) else {
            return false;
        };
        e.last_check = Some(SystemTime::now());
        let was = e.healthy;
        match result {
            Ok(latency) => {
                e.last_latency_ms = Some(latency.as_secs_f64() * 1000.0);
                e.last_error = None;
                e.consecutive_failures = 0;
                e.consecutive_successes += 1;
                if !e.healthy && e.consecutive_successes >= healthy_threshold {
                    e.healthy = true;
                }
            }
            Err(error) => {
                e.last_error = Some(error);
                e.consecutive_successes = 0;
                e.consecutive_failures += 1;
                if e.healthy && e.consecutive_failures >= unhealthy_threshold {
                    e.healthy = false;
                }
            }
        }
        was != e.healthy
    }

    /// What shards route by.
    pub fn routing_map(&self) -> Vec<bool> {
        self.entries
            .iter()
            .map(|e| e.healthy || !self.route_by_health)
            .collect()
    }
}

/// Probes every upstream each interval, forever, with the `healthCheck` settings of the
/// config current at each round (a reload may turn checks on or off, or change them).
pub async fn run(
    state: Rc<RefCell<State>>,
    shards: Rc<Vec<crossbeam_channel::Sender<ShardCommand>>>,
) {
    let mut was_enabled = true;
    loop {
        // Each round probes the servers of the config current when it starts.
        let config = state.borrow().config.clone();
        let check = config.health_check.clone();
        if !check.enabled {
            if was_enabled {
                // Checks turned off: no server stays out on an old verdict.
                let map = Arc::new(state.borrow_mut().health.all_healthy());
                for tx in shards.iter() {
                    let _ = tx.send(ShardCommand::Health(map.clone()));
                }
                was_enabled = false;
            }
            wait_round(&state, RECHECK_SETTINGS).await;
            continue;
        }
        was_enabled = true;
        let mut changed = false;
        for chunk in (0..config.upstreams.len())
            .filter(|i| !config.upstreams[*i].retired)
            .collect::<Vec<_>>()
            .chunks(CONCURRENCY)
        {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&i| {
                    let upstream = config.upstreams[i].clone();
                    let path = check.path.clone();
                    let timeout = check.timeout;
                    monoio::spawn(async move { (i, probe(&upstream, &path, timeout).await) })
                })
                .collect();
            for handle in handles {
                let (i, result) = handle.await;
                if let Err(e) = &result {
                    tracing::debug!(upstream = %config.upstreams[i].id, error = %e, "health probe failed");
                }
                // A reload during the round may have retired the slot, or given it to
                // another server: its result belongs to nobody now.
                if !same_server(&state, &config, i) {
                    continue;
                }
                let flipped = state.borrow_mut().health.record(i, result);
                if flipped {
                    let now_healthy = state.borrow().health.entries()[i].healthy;
                    tracing::warn!(upstream = %config.upstreams[i].id, healthy = now_healthy, "upstream health changed");
                    changed = true;
                }
            }
        }
        if changed {
            let map = Arc::new(state.borrow().health.routing_map());
            for tx in shards.iter() {
                let _ = tx.send(ShardCommand::Health(map.clone()));
            }
        }
        if probe_revisions(&state, &config, check.timeout).await {
            let map = Arc::new(state.borrow().revisions.clone());
            for tx in shards.iter() {
                let _ = tx.send(ShardCommand::Revisions(map.clone()));
            }
        }
        wait_round(&state, check.interval).await;
    }
}

/// Whether slot `i` still holds, configured, the server a round started probing.
fn same_server(state: &Rc<RefCell<State>>, probed: &GatewayConfig, i: usize) -> bool {
    let s = state.borrow();
    match (s.config.upstreams.get(i), probed.upstreams.get(i)) {
        (Some(now), Some(then)) => !now.retired && now.id == then.id && now.url == then.url,
        _ => false,
    }
}

/// With checks off, how often the prober looks whether a reload turned them on.
const RECHECK_SETTINGS: Duration = Duration::from_millis(500);

/// Sleeps `interval`, or less if a reload made a new generation meanwhile (its settings
/// or servers apply from the next round).
async fn wait_round(state: &Rc<RefCell<State>>, interval: Duration) {
    let generation = state.borrow().reload.generation;
    let until = Instant::now() + interval;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        monoio::time::sleep(left.min(RECHECK_SETTINGS)).await;
        if state.borrow().reload.generation != generation {
            return;
        }
    }
}

async fn probe(upstream: &Upstream, path: &str, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    match monoio::time::timeout(timeout, probe_once(upstream, path)).await {
        Ok(Ok(status)) if (200..400).contains(&status) => Ok(started.elapsed()),
        Ok(Ok(status)) => Err(format!("health check answered {status}")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// Asks each group member (streamable HTTP) whether it speaks the stateless revision;
/// returns whether any answer changed.
async fn probe_revisions(
    state: &Rc<RefCell<State>>,
    config: &GatewayConfig,
    timeout: Duration,
) -> bool {
    let members: Vec<usize> = (0..config.upstreams.len())
        .filter(|&i| {
            let u = &config.upstreams[i];
            u.group.is_some() && u.transport == Transport::StreamableHttp && !u.retired
        })
        .collect();
    let mut changed = false;
    for chunk in members.chunks(CONCURRENCY) {
        let handles: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let upstream = config.upstreams[i].clone();
                monoio::spawn(async move {
                    let answer = monoio::time::timeout(timeout, probe_discover(&upstream)).await;
                    (i, answer)
                })
            })
            .collect();
        for handle in handles {
            let (i, answer) = handle.await;
            let speaks = match answer {
                Ok(Ok(status)) if (200..300).contains(&status) => Some(true),
                // How servers of earlier revisions refuse an unknown protocol version.
                Ok(Ok(400)) => Some(false),
                _ => continue,
            };
            if !same_server(state, config, i) {
                continue;
            }
            let mut s = state.borrow_mut();
            if let Some(slot) = s.revisions.get_mut(i) {
                if *slot != speaks {
                    tracing::info!(upstream = %config.upstreams[i].id, stateless = ?speaks, "MCP revision probed");
                    *slot = speaks;
                    changed = true;
                }
            }
        }
    }
    changed
}

async fn probe_discover(upstream: &Upstream) -> Result<u16, String> {
    const BODY: &str = r#"{"jsonrpc":"2.0","id":"mcp-gateway-probe","method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let path = if upstream.base_path.is_empty() {
        "/"
    } else {
        &upstream.base_path
    };
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: mcp-gateway-probe\r\nConnection: close\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\nMcp-Method: server/discover\r\nContent-Length: {}\r\n\r\n{BODY}",
        upstream.authority,
        BODY.len()
    );
    exchange(upstream, request).await
}

async fn probe_once(upstream: &Upstream, path: &str) -> Result<u16, String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: mcp-gateway-health\r\nConnection: close\r\n\r\n",
        upstream.authority
    );
    exchange(upstream, request).await
}

/// Sends one request on a fresh connection and returns the response status.
async fn exchange(upstream: &Upstream, request: String) -> Result<u16, String> {
    let mut stream = TcpStream::connect_addr(upstream.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (res, _) = stream.write_all(request.into_bytes()).await;
    res.map_err(|e| format!("write: {e}"))?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let len = buf.len();
        if len == buf.capacity() {
            return Err("response head too large".into());
        }
        let (res, slice) = stream
            .read(monoio::buf::IoBufMut::slice_mut(buf, len..4096))
            .await;
        buf = slice.into_inner();
        match res {
            Ok(0) => return Err("closed before a response".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => return Ok(response.code.unwrap_or(0)),
            Ok(httparse::Status::Partial) => continue,
            Err(e) => return Err(format!("bad response: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> HealthCheck {
        HealthCheck {
            enabled: true,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            path: "/health".into(),
            unhealthy_threshold: 2,
            healthy_threshold: 1,
        }
    }

    #[test]
    fn thresholds() {
        let mut t = HealthTable::new(1, &check(), true);
        assert!(!t.record(0, Err("x".into())));
        assert!(t.record(0, Err("x".into())));
        assert_eq!(t.routing_map(), vec![false]);
        assert!(t.record(0, Ok(Duration::from_millis(1))));
        assert!(t.entries()[0].healthy);
        let mut t = HealthTable::new(1, &check(), false);
        t.record(0, Err("x".into()));
        t.record(0, Err("x".into()));
        assert_eq!(t.routing_map(), vec![true]);
    }
}
