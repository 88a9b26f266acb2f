//! `upstream`: the MCP servers behind the gateway and their active health checks.
//!
//! Owns: the keys and defaults of `upstream.servers[]` and `upstream.healthCheck`, including
//! the transports (`sse`, and `stdio` with its `command`/`args`/`env`/`cwd`/`maxProcesses`/
//! `idleTimeout` keys) and the MCP method `policy`.
//! Must not: check values (`validate/upstreams.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `upstream`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamSection {
    pub servers: Vec<UpstreamServer>,
    pub health_check: HealthCheckSection,
    /// Milliseconds a pooled upstream connection may stay idle before it is closed.
    pub idle_timeout: i64,
}

impl Default for UpstreamSection {
    fn default() -> Self {
        UpstreamSection {
            servers: Vec::new(),
            health_check: HealthCheckSection::default(),
            idle_timeout: 30_000,
        }
    }
}

/// One element of `upstream.servers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamServer {
    pub id: String,
    pub url: String,
    pub weight: i64,
    pub max_connections: i64,
    /// Milliseconds.
    pub timeout: i64,
    /// Milliseconds: the cap on a streamed response whose `timeout` progress notifications
    /// keep resetting.
    pub max_timeout: i64,
    pub group: Option<String>,
    pub tags: Vec<String>,
    /// "streamable-http" (default), "sse" or "stdio".
    pub transport: String,
    /// stdio only: the program to start.
    pub command: Option<String>,
    /// stdio only.
    pub args: Vec<String>,
    /// stdio only: extra environment variables (a free string-to-string map).
    pub env: BTreeMap<String, String>,
    /// stdio only: working directory.
    pub cwd: Option<String>,
    /// stdio only: the most processes (one per client session) this server may have running.
    pub max_processes: i64,
    /// stdio only, milliseconds: a session's process idle this long is stopped.
    pub idle_timeout: i64,
    /// Which MCP methods (and tool, prompt or resource names) clients may call on this server.
    pub policy: PolicySection,
    /// Pass the client's credentials on to this server.
    pub forward_auth: bool,
    /// What this server is told of who calls (with authentication on).
    pub credentials: CredentialsSection,
    /// Extra request headers (a free string-to-string map); values may hold `${NAME}`
    /// references to environment variables, expanded at load time.
    pub headers: BTreeMap<String, String>,
}

impl Default for UpstreamServer {
    fn default() -> Self {
        UpstreamServer {
            id: String::new(),
            url: String::new(),
            weight: 1,
            max_connections: 100,
            timeout: 30_000,
            max_timeout: 600_000,
            group: None,
            tags: Vec::new(),
            transport: "streamable-http".to_string(),
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            max_processes: 16,
            idle_timeout: 600_000,
            policy: PolicySection::default(),
            forward_auth: false,
            credentials: CredentialsSection::default(),
            headers: BTreeMap::new(),
        }
    }
}

/// `upstream.servers[].credentials`: per-user credentials for this server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsSection {
    /// Send the principal as `X-Auth-Subject`, `X-Auth-Method`, `X-Auth-Roles` (as
    /// `security.authentication.forwardIdentity` does for every server).
    pub identity: bool,
    pub token_exchange: TokenExchangeSection,
}

/// `upstream.servers[].credentials.tokenExchange`: the client's token exchanged at an
/// OAuth issuer (RFC 8693) for one whose audience is this server. Off while `audience` is
/// empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenExchangeSection {
    /// The `issuer` of one of `security.authentication.oauth2.issuers` (with a
    /// `tokenEndpoint`).
    pub issuer: String,
    /// The audience (and resource) the new token is for.
    pub audience: String,
    /// Scopes asked for (space-separated); empty: the issuer's default.
    pub scope: String,
}

/// `upstream.servers[].policy`: rules of the form `method` or `method:name`, where a trailing
/// `*` matches any rest (`tools/call:admin_*`, `resources/read:file:///srv/*`, `sampling/*`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySection {
    /// When not empty, only requests matching one of these rules pass.
    pub allow: Vec<String>,
    /// Requests matching any of these are refused (checked after `allow`).
    pub deny: Vec<String>,
}

/// `upstream.healthCheck`: active probes from the management shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckSection {
    pub enabled: bool,
    /// Milliseconds.
    pub interval: i64,
    /// Milliseconds.
    pub timeout: i64,
    pub path: String,
    pub unhealthy_threshold: i64,
    pub healthy_threshold: i64,
}

impl Default for HealthCheckSection {
    fn default() -> Self {
        HealthCheckSection {
            enabled: true,
            interval: 30_000,
            timeout: 5_000,
            path: "/health".to_string(),
            unhealthy_threshold: 2,
            healthy_threshold: 1,
        }
    }
}
