//! The compiled, validated configuration the gateway runs on.
//!
//! Owns: plain runtime types (`Duration`s, resolved socket addresses, enums) built once from
//! the user's JSON after validation. Must not: do I/O, or hold anything a shard would need to
//! lock; a snapshot is immutable and shared read-only (`Arc`) between threads.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::runtime_security::Security;

/// Everything the gateway needs to run, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    pub server: Server,
    pub upstreams: Vec<Upstream>,
    pub health_check: HealthCheck,
    pub load_balancer: LoadBalancer,
    pub monitoring: Monitoring,
    pub logging: Logging,
    pub sessions: Sessions,
    pub security: Security,
    /// `upstream.idleTimeout` ms (default 30000): pooled upstream connections idle this long
    /// are closed by the shard's reaper.
    pub upstream_idle_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// `server.host` / `HOST`.
    pub host: IpAddr,
    /// `server.port` / `PORT`.
    pub port: u16,
    /// `server.httpsPort` / `HTTPS_PORT` (TLS listener arrives with the TLS issue).
    pub https_port: u16,
    /// `server.workers` / `CLUSTER_WORKERS`.
    pub workers: Workers,
    /// `server.sseKeepAlive` ms (default 15000, 0: off): silence on an event stream after
    /// which the gateway sends a `: keep-alive` comment.
    pub sse_keep_alive: Option<Duration>,
    /// `server.shutdownTimeout` ms (default 10000): on SIGTERM/SIGINT, how long requests in
    /// flight may take before the process exits anyway.
    pub shutdown_timeout: Duration,
    pub limits: Limits,
    /// `server.trustedProxies` (default none): peers whose forwarding headers pass on.
    pub trusted_proxies: Vec<IpBlock>,
}

/// An IP address block (`10.0.0.0/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpBlock {
    /// `addr` or `addr/prefix`; `None` if it is neither.
    pub fn parse(text: &str) -> Option<IpBlock> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(IpBlock { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) if self.addr.is_ipv4() => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            other => other,
        };
        match (self.addr, ip) {
            (IpAddr::V4(block), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(block) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(block), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(block) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// One shard per CPU in the process's affinity mask.
    Auto,
    Count(usize),
}

/// Per-connection and per-process limits of the HTTP server side.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// `server.limits.maxHeaderBytes` (default 16384): request line + headers; over it: 431.
    pub max_header_bytes: usize,
    /// `server.limits.maxBodyBytes` (default 104857600): over it: 413.
    pub max_body_bytes: u64,
    /// `server.limits.headerTimeout` ms (default 10000): a request head not complete in time: 408.
    pub header_timeout: Duration,
    /// `server.keepAliveTimeout` ms / `KEEP_ALIVE_TIMEOUT` (default 65000): idle keep-alive.
    pub keep_alive_timeout: Duration,
    /// `server.maxConnections` / `MAX_CONNECTIONS` (default 10000), for the whole process.
    pub max_connections: usize,
    /// `server.limits.sendTimeout` ms (default 30000): a response the client reads none of
    /// for this long is cut, and its upstream connection freed.
    pub send_timeout: Duration,
    /// `server.limits.minBodyRate` bytes/s (default 1024; 0: off) averaged over
    /// `minBodyRateWindow` ms (default 10000): a slower request body gets 408.
    pub min_body_rate: u64,
    pub min_body_rate_window: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub id: String,
    /// The URL as the user wrote it.
    pub url: String,
    /// Host as written in the URL (name or address), used for the `Host` header.
    pub host: String,
    pub port: u16,
    /// `host:port` (port omitted when 80), the `Host` header sent upstream.
    pub authority: String,
    /// Resolved once at load time, never on a shard.
    pub addr: SocketAddr,
    /// Path of the URL without a trailing slash; "" for the root.
    pub base_path: String,
    pub weight: u32,
    /// For the whole process; each shard gets `ceil(max_connections / shards)`.
    pub max_connections: usize,
    /// `timeout` ms (default 30000): connect + waiting for the response head; on a streamed
    /// POST response, also the longest silence, reset by each progress notification.
    pub timeout: Duration,
    /// `maxTimeout` ms (default 600000): the cap on a streamed POST response.
    pub max_timeout: Duration,
    pub group: Option<String>,
    pub tags: Vec<String>,
    pub transport: Transport,
    /// `policy`: which MCP methods and names clients may call here.
    pub policy: Policy,
    /// `forwardAuth` (default false): pass the client's credentials on to this server.
    pub forward_auth: bool,
    /// `credentials`: what this server is told of who calls.
    pub credentials: crate::runtime_security::UpstreamCredentials,
    /// `headers` (default none): extra request headers, `${NAME}` references already
    /// expanded, sorted by name. Names are valid tokens, never hop-by-hop, `host` or
    /// `content-length`; values have no CR, LF or NUL.
    pub headers: Vec<(String, String)>,
    /// Set by the management shard, never by the file: the server was removed by a reload
    /// and keeps its slot only for the requests still in flight on it.
    pub retired: bool,
    /// Set by the management shard (`PATCH /api/upstreams/{id}` with `draining: true`): the
    /// server stays configured but gets no new requests.
    pub draining: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    StreamableHttp,
    /// The legacy HTTP+SSE transport (2024-11-05): `url` is the server's SSE endpoint.
    Sse,
    /// A local program speaking newline-delimited JSON-RPC on stdin/stdout. Its `addr` and
    /// `base_path` point at the gateway's own stdio host once that has started.
    Stdio(StdioCommand),
}

/// How to start one process of a stdio server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdioCommand {
    pub command: String,
    pub args: Vec<String>,
    /// Added to the gateway's environment, sorted by name.
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// `maxProcesses` (default 16): one process per client session.
    pub max_processes: usize,
    /// `idleTimeout` ms (default 600000): an idle session's process is stopped.
    pub idle_timeout: Duration,
}

/// `policy`: empty allows everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub allow: Vec<PolicyRule>,
    pub deny: Vec<PolicyRule>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// One rule: a method pattern and, for `method:name` rules, a name pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRule {
    pub method: Pattern,
    pub name: Option<Pattern>,
}

/// Literal text, or a prefix when the user's pattern ended in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub text: String,
    pub prefix: bool,
}

impl Pattern {
    pub fn parse(pattern: &str) -> Pattern {
        match pattern.strip_suffix('*') {
            Some(text) => Pattern {
                text: text.to_string(),
                prefix: true,
            },
            None => Pattern {
                text: pattern.to_string(),
                prefix: false,
            },
        }
    }

    pub fn matches(&self, value: &[u8]) -> bool {
        if self.prefix {
            value.starts_with(self.text.as_bytes())
        } else {
            value == self.text.as_bytes()
        }
    }
}

impl PolicyRule {
    /// `method` or `method:name`; the method part never holds `:`.
    pub fn parse(rule: &str) -> PolicyRule {
        match rule.split_once(':') {
            Some((method, name)) => PolicyRule {
                method: Pattern::parse(method),
                name: Some(Pattern::parse(name)),
            },
            None => PolicyRule {
                method: Pattern::parse(rule),
                name: None,
            },
        }
    }

    /// A `method:name` rule only matches requests that carry a name.
    pub fn matches(&self, method: &[u8], name: Option<&[u8]>) -> bool {
        self.method.matches(method)
            && match (&self.name, name) {
                (None, _) => true,
                (Some(pattern), Some(name)) => pattern.matches(name),
                (Some(_), None) => false,
            }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub enabled: bool,
    pub interval: Duration,
    pub timeout: Duration,
    pub path: String,
    /// Consecutive failed probes before an upstream is marked down (default 2).
    pub unhealthy_threshold: u32,
    /// Consecutive good probes before it is marked up again (default 1).
    pub healthy_threshold: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    Weighted,
    LeastConnections,
    IpHash,
    HealthBased,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoadBalancer {
    pub algorithm: Algorithm,
    pub health_check: bool,
    pub failover: bool,
    pub sticky: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Monitoring {
    pub enabled: bool,
    /// `monitoring.metricsInterval` ms (default 250): how often shards publish metric deltas.
    pub metrics_tick: Duration,
    /// `monitoring.dashboard.enabled`.
    pub dashboard_enabled: bool,
    /// `monitoring.dashboard.host` / `DASHBOARD_HOST` (default 127.0.0.1).
    pub management_host: IpAddr,
    /// `monitoring.dashboard.port` / `DASHBOARD_PORT` (default 8081): management port.
    pub management_port: u16,
    /// `monitoring.dashboard.maxConnections` (default 256).
    pub management_max_connections: usize,
    /// `monitoring.dataPortPages` (default all): the pages the data port serves, as paths.
    pub data_port_pages: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Logging {
    /// `logging.level` / `LOG_LEVEL` (default "info"): error|warn|info|debug|trace.
    pub level: String,
    /// `logging.file` / `LOG_FILE`: also write logs there.
    pub file: Option<PathBuf>,
}

/// `sessions`.
#[derive(Clone, PartialEq)]
pub struct Sessions {
    /// `sessions.secret` / `SESSION_SECRET`, at least 16 bytes. `None`: the gateway generates
    /// one at start (so replicas do not share sessions).
    pub secret: Option<String>,
    /// `sessions.ttl` ms (default 86400000, 24 h; 1000..=2592000000).
    pub ttl: Duration,
    /// `sessions.store: "redis"`: sessions are also recorded there.
    pub redis: Option<RedisStore>,
    /// `sessions.adminToken` / `ADMIN_TOKEN`: bearer token for the admin API.
    pub admin_token: Option<String>,
}

/// Where the session store is.
#[derive(Clone, PartialEq)]
pub struct RedisStore {
    /// Resolved once at load time.
    pub addr: SocketAddr,
    /// `host:port`, for logs.
    pub display: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

/// Leaves the secret out, so a printed config does not leak it.
impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("ttl", &self.ttl)
            .field("redis", &self.redis.as_ref().map(|r| &r.display))
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl GatewayConfig {
    /// Points every stdio server at the gateway's stdio host, once it listens on `addr`.
    pub fn attach_stdio_host(&mut self, addr: SocketAddr) {
        for upstream in &mut self.upstreams {
            if matches!(upstream.transport, Transport::Stdio(_)) {
                upstream.addr = addr;
                upstream.host = addr.ip().to_string();
                upstream.port = addr.port();
                upstream.authority = addr.to_string();
            }
        }
    }

    /// Whether any server is a stdio one (the stdio host is only started then).
    pub fn has_stdio_servers(&self) -> bool {
        self.upstreams
            .iter()
            .any(|u| matches!(u.transport, Transport::Stdio(_)))
    }
}
