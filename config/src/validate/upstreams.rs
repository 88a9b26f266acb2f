//! Checks of `upstream.servers[]`: ids, weights, limits, transports, extra headers (whose
//! `${NAME}` references are expanded here, through the injected environment lookup), and the
//! URL, which is parsed and resolved here (blocking DNS, once per host, on the loading thread).
//!
//! Must not: build runtime types; it returns an `Endpoint` per server for `convert.rs`.

use std::collections::HashMap;

use super::http;
use super::{at_least, in_range, Endpoint, MAX_IDLE_MS, MAX_TIMEOUT_MS, TRANSPORTS};
use crate::error::ConfigError;
use crate::url::{self, Resolver, URL_SHAPE};
use crate::user::UpstreamServer;

pub(super) fn check(
    servers: &[UpstreamServer],
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Option<Endpoint>> {
    let mut first_use: HashMap<&str, usize> = HashMap::new();
    let mut resolver = Resolver::default();
    let mut endpoints = Vec::with_capacity(servers.len());
    for (index, server) in servers.iter().enumerate() {
        let base = format!("upstream.servers[{index}]");
        let id_path = format!("{base}.id");
        if server.id.is_empty() {
            errors.push(ConfigError::new(&id_path, "must not be empty"));
        } else if !server.id.chars().all(is_id_char) {
            let message = format!("`{}` has characters outside the allowed set", server.id);
            errors.push(ConfigError::new(&id_path, message).with_allowed("A-Z a-z 0-9 . _ -"));
        } else if let Some(first) = first_use.get(server.id.as_str()) {
            let message = format!(
                "duplicate id `{}`, first used by upstream.servers[{first}]",
                server.id
            );
            errors.push(ConfigError::new(&id_path, message));
        } else {
            first_use.insert(&server.id, index);
        }

        in_range(errors, &format!("{base}.weight"), server.weight, 1, 1000);
        at_least(
            errors,
            &format!("{base}.maxConnections"),
            server.max_connections,
            1,
        );
        in_range(
            errors,
            &format!("{base}.timeout"),
            server.timeout,
            1,
            MAX_TIMEOUT_MS,
        );
        in_range(
            errors,
            &format!("{base}.maxTimeout"),
            server.max_timeout,
            server.timeout.max(1),
            MAX_TIMEOUT_MS,
        );
        check_transport_keys(server, &base, errors);
        check_policy(server, &base, errors);
        let headers = check_headers(server, &base, env, errors);
        let endpoint = check_endpoint(server, &base, &mut resolver, errors);
        endpoints.push(endpoint.zip(headers).map(|(mut endpoint, headers)| {
            endpoint.headers = headers;
            endpoint
        }));
    }
    // `/mcp/{name}` names a server or a group: one name cannot be both.
    for (index, server) in servers.iter().enumerate() {
        if let Some(group) = server.group.as_deref() {
            if let Some(other) = first_use.get(group) {
                let path = format!("upstream.servers[{index}].group");
                let message = format!(
                    "group `{group}` has the id of upstream.servers[{other}]: /mcp/{group} would reach that server, never the group"
                );
                errors.push(ConfigError::new(path, message));
            }
        }
    }
    endpoints
}

fn check_transport_keys(server: &UpstreamServer, base: &str, errors: &mut Vec<ConfigError>) {
    let transport = server.transport.as_str();
    let path = format!("{base}.transport");
    match transport {
        "streamable-http" | "sse" => {}
        "stdio" => {
            if server.command.as_deref().is_none_or(str::is_empty) {
                let message = "transport `stdio` needs a `command`";
                errors.push(ConfigError::new(format!("{base}.command"), message));
            }
            if server.cwd.as_deref() == Some("") {
                errors.push(ConfigError::new(format!("{base}.cwd"), "must not be empty"));
            }
            in_range(
                errors,
                &format!("{base}.maxProcesses"),
                server.max_processes,
                1,
                100_000,
            );
            in_range(
                errors,
                &format!("{base}.idleTimeout"),
                server.idle_timeout,
                1,
                MAX_IDLE_MS,
            );
        }
        other => {
            let message = format!("unknown transport `{other}`");
            errors.push(ConfigError::new(path, message).with_allowed(TRANSPORTS.join(", ")));
        }
    }
    if transport == "stdio" {
        return;
    }
    let defaults = UpstreamServer::default();
    let stdio_keys = [
        (
            "maxProcesses",
            server.max_processes != defaults.max_processes,
        ),
        ("idleTimeout", server.idle_timeout != defaults.idle_timeout),
        ("command", server.command.is_some()),
        ("args", !server.args.is_empty()),
        ("env", !server.env.is_empty()),
        ("cwd", server.cwd.is_some()),
    ];
    for (key, present) in stdio_keys {
        if present {
            let message = format!("`{key}` only applies to transport `stdio`");
            errors.push(ConfigError::new(format!("{base}.{key}"), message));
        }
    }
}

/// `policy` rules: `method` or `method:name`, `*` only at the end of either part.
fn check_policy(server: &UpstreamServer, base: &str, errors: &mut Vec<ConfigError>) {
    let lists = [
        ("allow", &server.policy.allow),
        ("deny", &server.policy.deny),
    ];
    for (key, rules) in lists {
        for (i, rule) in rules.iter().enumerate() {
            let (method, name) = match rule.split_once(':') {
                Some((method, name)) => (method, Some(name)),
                None => (rule.as_str(), None),
            };
            let misplaced_star = |part: &str| part.trim_end_matches('*').contains('*');
            let problem = if method.is_empty() {
                Some("the method must not be empty")
            } else if misplaced_star(method) || name.is_some_and(misplaced_star) {
                Some("`*` may only end the method or the name")
            } else if name == Some("") {
                Some("the name after `:` must not be empty")
            } else {
                None
            };
            if let Some(problem) = problem {
                let message = format!("`{rule}`: {problem}");
                errors.push(
                    ConfigError::new(format!("{base}.policy.{key}[{i}]"), message)
                        .with_allowed("method, method:name, with an optional trailing *"),
                );
            }
        }
    }
}

/// Where a stdio server is reached once the gateway's stdio host listens: a placeholder
/// address on loopback and a path of its own.
fn stdio_endpoint(server: &UpstreamServer) -> Endpoint {
    Endpoint {
        url: url::ParsedUrl {
            host: "127.0.0.1".to_string(),
            port: 0,
            authority: "127.0.0.1:0".to_string(),
            base_path: format!("/stdio/{}", server.id),
        },
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        headers: Vec::new(),
    }
}

/// The parsed and resolved URL of an HTTP upstream.
fn check_endpoint(
    server: &UpstreamServer,
    base: &str,
    resolver: &mut Resolver,
    errors: &mut Vec<ConfigError>,
) -> Option<Endpoint> {
    if server.transport == "stdio" {
        return Some(stdio_endpoint(server));
    }
    let path = format!("{base}.url");
    let parsed = match url::parse(&server.url) {
        Ok(parsed) => parsed,
        Err(message) => {
            errors.push(ConfigError::new(path, message).with_allowed(URL_SHAPE));
            return None;
        }
    };
    match resolver.resolve(&parsed.host, parsed.port) {
        Ok(addr) => Some(Endpoint {
            url: parsed,
            addr,
            headers: Vec::new(),
        }),
        Err(message) => {
            errors.push(ConfigError::new(path, message));
            None
        }
    }
}

/// The extra headers with their references expanded, in the map's (sorted) order; `None`
/// when any of them is wrong.
fn check_headers(
    server: &UpstreamServer,
    base: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<(String, String)>> {
    let mut headers = Vec::with_capacity(server.headers.len());
    let mut ok = true;
    let mut first_use: HashMap<String, &str> = HashMap::new();
    for (name, value) in &server.headers {
        let path = format!("{base}.headers.{name}");
        let mut problems = Vec::new();
        if let Some(error) = http::check_header_name(&path, name) {
            errors.push(error);
            ok = false;
        } else if let Some(first) = first_use.insert(name.to_ascii_lowercase(), name) {
            problems.push(format!("duplicate header, also written as `{first}`"));
        }
        if http::breaks_header_line(value) {
            problems.push("value must not contain CR, LF or NUL".to_string());
        } else {
            match http::expand_vars(value, env) {
                Ok(expanded) => headers.push((name.clone(), expanded)),
                Err(found) => problems.extend(found),
            }
        }
        ok &= problems.is_empty();
        for problem in problems {
            errors.push(ConfigError::new(&path, problem));
        }
    }
    ok.then_some(headers)
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-'
}
