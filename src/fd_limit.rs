//! The process's file-descriptor budget: at start, the soft `RLIMIT_NOFILE` is raised to the
//! hard limit, and when `server.maxConnections` and the management port's cap cannot fit
//! in what is left, the client cap is lowered (with a warning), so a refused client still
//! gets its 503 instead of the accept loop running out of descriptors.
//!
//! Owns: that arithmetic and the two `rlimit` calls. Must not: run on a shard (it is called
//! once, before any shard starts).

use mcp_gateway_config::GatewayConfig;

/// Descriptors kept for everything but client and upstream sockets: listeners, the
/// runtime's rings, log files, the stdio host's pipes, Redis, health probes.
const RESERVED: u64 = 128;

/// Raises the soft descriptor limit to the hard one; returns the soft limit in force.
#[allow(unsafe_code)]
pub fn raise_soft_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: a valid rlimit value; raising the soft limit up to the hard one is allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Some(limit.rlim_cur)
}

/// Lowers `server.maxConnections` to what `limit` descriptors can serve: each client
/// connection may hold one upstream connection while its request is proxied. Logs what it
/// finds when `log` (at start-up; a reload that changes nothing here stays quiet).
pub fn fit(config: &mut GatewayConfig, limit: u64, log: bool) {
    let management = if config.monitoring.dashboard_enabled {
        config.monitoring.management_max_connections as u64
    } else {
        0
    };
    // Under a small limit, the reserve shrinks rather than leaving no client at all.
    let reserved = RESERVED.min(limit / 4) + management.min(limit / 4);
    let usable = limit.saturating_sub(reserved);
    let clients = config.server.limits.max_connections as u64;
    let fitting = (usable / 2).max(1);
    if clients > fitting && log {
        tracing::warn!(
            file_descriptor_limit = limit,
            max_connections = clients,
            serving = fitting,
            "the file descriptor limit (RLIMIT_NOFILE) cannot hold server.maxConnections client connections with an upstream connection each: serving at most {fitting}; raise `ulimit -n` (LimitNOFILE= under systemd) to serve more"
        );
    }
    if clients > fitting {
        config.server.limits.max_connections = fitting as usize;
    }
    let pooled: u64 = config
        .upstreams
        .iter()
        .map(|u| u.max_connections as u64)
        .sum();
    let needed = config.server.limits.max_connections as u64 + pooled;
    if needed > usable && log {
        tracing::info!(
            file_descriptor_limit = limit,
            upstream_connections = pooled,
            "the upstreams' maxConnections add up to more than the file descriptor limit leaves; idle pooled connections are closed after upstream.idleTimeout, and a connect that finds no descriptor gets 502"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fit_the_limit() {
        let mut config = mcp_gateway_config::parse_str("{}", &|_| None).unwrap();
        fit(&mut config, 2048, true);
        let m = config.server.limits.max_connections;
        assert_eq!(m as u64, (2048 - RESERVED - 256) / 2);
        let mut config = mcp_gateway_config::parse_str("{}", &|_| None).unwrap();
        fit(&mut config, 1_000_000, true);
        assert_eq!(config.server.limits.max_connections, 10_000);
    }
}
