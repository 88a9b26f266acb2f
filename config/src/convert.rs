//! Builds the runtime `GatewayConfig` from a validated `UserConfig` and what validation parsed.
//!
//! Owns: unit conversions (milliseconds to `Duration`, `i64` to the runtime's integer types)
//! and defaults that depend on other keys (the management host).
//!
//! Must not: check anything or fail; `validate/` has already accepted every value used here,
//! so the numeric conversions below fall back to 0 only as a formality.

use std::path::PathBuf;
use std::time::Duration;

use crate::runtime::{
    GatewayConfig, HealthCheck, Limits, LoadBalancer, Logging, Monitoring, Policy, PolicyRule,
    RedisStore, Server, Sessions, StdioCommand, Transport, Upstream,
};
use crate::runtime_security::Security;
use crate::user::{UpstreamServer, UserConfig};
use crate::validate::{Checked, Endpoint};

/// The runtime config. `checked` must come from `validate(user)`.
pub fn to_runtime(user: &UserConfig, checked: Checked) -> GatewayConfig {
    let server = &user.server;
    let health = &user.upstream.health_check;
    let balancer = &user.load_balancer;
    let monitoring = &user.monitoring;

    let upstreams = user
        .upstream
        .servers
        .iter()
        .zip(checked.endpoints)
        .enumerate()
        .map(
            |(index, (server, Endpoint { url, addr, headers }))| Upstream {
                id: server.id.clone(),
                url: server.url.clone(),
                host: url.host,
                port: url.port,
                authority: url.authority,
                addr,
                base_path: url.base_path,
                weight: to_u32(server.weight),
                max_connections: to_usize(server.max_connections),
                timeout: millis(server.timeout),
                max_timeout: millis(server.max_timeout),
                group: server.group.clone(),
                tags: server.tags.clone(),
                transport: transport(server),
                policy: Policy {
                    allow: server
                        .policy
                        .allow
                        .iter()
                        .map(|r| PolicyRule::parse(r))
                        .collect(),
                    deny: server
                        .policy
                        .deny
                        .iter()
                        .map(|r| PolicyRule::parse(r))
                        .collect(),
                },
                forward_auth: server.forward_auth,
                credentials: checked
                    .security
                    .credentials
                    .get(index)
                    .cloned()
                    .unwrap_or_default(),
                headers,
                retired: false,
                draining: false,
            },
        )
        .collect();

    GatewayConfig {
        server: Server {
            host: checked.host,
            port: to_u16(server.port),
            https_port: to_u16(server.https_port),
            workers: checked.workers,
            sse_keep_alive: (server.sse_keep_alive > 0).then(|| millis(server.sse_keep_alive)),
            shutdown_timeout: millis(server.shutdown_timeout),
            limits: Limits {
                max_header_bytes: to_usize(server.limits.max_header_bytes),
                max_body_bytes: u64::try_from(server.limits.max_body_bytes).unwrap_or(0),
                header_timeout: millis(server.limits.header_timeout),
                keep_alive_timeout: millis(server.keep_alive_timeout),
                max_connections: to_usize(server.max_connections),
                send_timeout: millis(server.limits.send_timeout),
                min_body_rate: u64::try_from(server.limits.min_body_rate).unwrap_or(0),
                min_body_rate_window: millis(server.limits.min_body_rate_window),
            },
            trusted_proxies: checked.trusted_proxies,
        },
        upstreams,
        health_check: HealthCheck {
            enabled: health.enabled,
            interval: millis(health.interval),
            timeout: millis(health.timeout),
            path: health.path.clone(),
            unhealthy_threshold: to_u32(health.unhealthy_threshold),
            healthy_threshold: to_u32(health.healthy_threshold),
        },
        load_balancer: LoadBalancer {
            algorithm: checked.algorithm,
            health_check: balancer.health_check,
            failover: balancer.failover,
            sticky: balancer.sticky,
        },
        monitoring: Monitoring {
            enabled: monitoring.enabled,
            metrics_tick: millis(monitoring.metrics_interval),
            dashboard_enabled: monitoring.dashboard.enabled,
            management_host: checked.management_host,
            management_port: to_u16(monitoring.dashboard.port),
            management_max_connections: to_usize(monitoring.dashboard.max_connections),
            data_port_pages: monitoring.data_port_pages.clone(),
        },
        logging: Logging {
            level: checked.log_level,
            file: user.logging.file.as_ref().map(PathBuf::from),
        },
        sessions: Sessions {
            secret: user.sessions.secret.clone(),
            ttl: millis(user.sessions.ttl),
            redis: checked.redis.map(|(url, addr)| RedisStore {
                addr,
                display: format!("{}:{}", url.host, url.port),
                username: url.username,
                password: url.password,
                db: url.db,
            }),
            admin_token: user.sessions.admin_token.clone(),
        },
        security: Security {
            allowed_origins: checked.allowed_origins,
            auth: checked.security.auth,
            rbac: checked.security.rbac,
            headers: checked.security.headers,
            ddos: checked.security.ddos,
        },
        upstream_idle_timeout: millis(user.upstream.idle_timeout),
    }
}

fn transport(server: &UpstreamServer) -> Transport {
    match server.transport.as_str() {
        "sse" => Transport::Sse,
        "stdio" => Transport::Stdio(StdioCommand {
            command: server.command.clone().unwrap_or_default(),
            args: server.args.clone(),
            env: server
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cwd: server.cwd.as_ref().map(PathBuf::from),
            max_processes: to_usize(server.max_processes),
            idle_timeout: millis(server.idle_timeout),
        }),
        _ => Transport::StreamableHttp,
    }
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn to_u16(value: i64) -> u16 {
    u16::try_from(value).unwrap_or(0)
}

fn to_u32(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

fn to_usize(value: i64) -> usize {
    usize::try_from(value).unwrap_or(0)
}
