//! Settings a running process cannot take from a reload: its listeners, thread count,
//! logging, session keys and store, and its stdio servers (their host is started once). A reload keeps the running value of each and names it; the rest
//! of the change is applied.
//!
//! Owns: the list of restart-only settings and carrying the running values over. Must
//! not: decide anything else about a reload.

use mcp_gateway_config::{GatewayConfig, Transport, Upstream};

/// Puts the running value of every restart-only setting into `new`; returns the settings
/// (config paths) whose new value was held back.
pub fn hold(new: &mut GatewayConfig, running: &GatewayConfig) -> Vec<&'static str> {
    let mut held = Vec::new();
    let mut keep = |name: &'static str, differs: bool| {
        if differs {
            held.push(name);
        }
    };
    macro_rules! carry {
        ($name:literal, $($field:tt)+) => {
            keep($name, new.$($field)+ != running.$($field)+);
            new.$($field)+ = running.$($field)+.clone();
        };
    }
    carry!("server.host", server.host);
    carry!("server.port", server.port);
    carry!("server.httpsPort", server.https_port);
    carry!("server.workers", server.workers);
    carry!("server.shutdownTimeout", server.shutdown_timeout);
    carry!("monitoring.dashboard", monitoring.dashboard_enabled);
    carry!("monitoring.dashboard.host", monitoring.management_host);
    carry!("monitoring.dashboard.port", monitoring.management_port);
    carry!(
        "monitoring.dashboard.maxConnections",
        monitoring.management_max_connections
    );
    carry!("monitoring.metricsInterval", monitoring.metrics_tick);
    carry!("logging", logging);
    carry!("sessions.ttl", sessions.ttl);
    carry!("sessions.store", sessions.redis);
    // A secret generated at start-up (none configured) stays; a configured one that
    // changed would end every session, so it waits for a restart too.
    if new.sessions.secret.is_some() {
        keep(
            "sessions.secret",
            new.sessions.secret != running.sessions.secret,
        );
    }
    new.sessions.secret = running.sessions.secret.clone();
    if stdio_servers(new, running) {
        held.push("upstream.servers (stdio servers)");
    }
    held
}

/// Replaces `new`'s stdio servers by the running ones (pointed at the running stdio
/// host); true when they differed.
fn stdio_servers(new: &mut GatewayConfig, running: &GatewayConfig) -> bool {
    let is_stdio = |u: &&Upstream| matches!(u.transport, Transport::Stdio(_));
    let running_stdio: Vec<Upstream> = running
        .upstreams
        .iter()
        .filter(|u| !u.retired)
        .filter(is_stdio)
        .cloned()
        .collect();
    if let Some(host) = running_stdio.first().map(|u| u.addr) {
        new.attach_stdio_host(host);
    }
    let mut new_stdio: Vec<Upstream> = new.upstreams.iter().filter(is_stdio).cloned().collect();
    for u in &mut new_stdio {
        u.draining = false;
    }
    let mut old = running_stdio.clone();
    for u in &mut old {
        u.draining = false;
    }
    let sort = |v: &mut Vec<Upstream>| v.sort_by(|a, b| a.id.cmp(&b.id));
    sort(&mut new_stdio);
    sort(&mut old);
    if new_stdio == old {
        return false;
    }
    new.upstreams
        .retain(|u| !matches!(u.transport, Transport::Stdio(_)));
    new.upstreams.extend(running_stdio);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> GatewayConfig {
        match mcp_gateway_config::parse_str(text, &|_| None) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn holds_listeners_and_applies_the_rest() {
        let running = parse(
            r#"{"server":{"port":8080},"sessions":{"secret":"0123456789abcdef0123456789abcdef"}}"#,
        );
        let mut new = parse(
            r#"{"server":{"port":9090,"limits":{"maxBodyBytes":1234}},"sessions":{"secret":"0123456789abcdef0123456789abcdef"}}"#,
        );
        let held = hold(&mut new, &running);
        assert_eq!(held, vec!["server.port"]);
        assert_eq!(new.server.port, 8080);
        assert_eq!(new.server.limits.max_body_bytes, 1234);
    }

    #[test]
    fn a_generated_secret_stays_without_a_warning() {
        let mut running = parse("{}");
        running.sessions.secret = Some("generated".into());
        let mut new = parse("{}");
        assert!(hold(&mut new, &running).is_empty());
        assert_eq!(new.sessions.secret.as_deref(), Some("generated"));
    }
}
