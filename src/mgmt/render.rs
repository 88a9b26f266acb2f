//! Rendering the gateway's own pages from the management shard's state: `/health`,
//! `/info`, `/stats`, `/status`, `/upstream/health` (JSON, shapes as in the original
//! gateway) and `/metrics` (Prometheus text format).
//!
//! The data port's copies (rendered for the shards) leave out what only an operator should
//! see: upstream URLs and the gateway's listener addresses; the management port's have them.
//!
//! Owns: page shapes and metric names. Must not: mutate state; it runs once per tick and
//! the shards serve what it produced.

use super::merge::Totals;
use super::State;
use bytes::Bytes;
use mcp_gateway_shard::auth;
use mcp_gateway_shard::error::ErrorKind;
use mcp_gateway_shard::http::encode::civil_from_days;
use mcp_gateway_shard::mcp::stateless::METHODS;
use mcp_gateway_shard::messages::{Page, Pages};
use mcp_gateway_shard::router::LocalPage;
use serde_json::{json, Value};
use std::fmt::Write;
use std::time::SystemTime;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Latency histogram bucket bounds for `/metrics`, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Who reads a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Anyone who reaches the data port: no upstream URLs, no listener addresses.
    Public,
    /// The management port's clients.
    Operator,
}

/// The data port's pages, for the shards, as of the last merge.
pub fn pages(state: &State) -> Pages {
    Pages::render(state.merged_at, |page| {
        render(state, page, Audience::Public)
    })
}

pub fn render(state: &State, page: LocalPage, audience: Audience) -> Page {
    let operator = audience == Audience::Operator;
    let json_page = |status: u16, v: Value| Page {
        status,
        content_type: "application/json",
        body: Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
    };
    match page {
        LocalPage::Health => json_page(200, health(state)),
        LocalPage::Info => json_page(200, info(state, operator)),
        LocalPage::Stats => json_page(200, stats(state)),
        LocalPage::Status => json_page(200, status(state, operator)),
        LocalPage::UpstreamHealth => json_page(200, upstream_health(state, operator)),
        LocalPage::Metrics => Page {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: Bytes::from(metrics(state)),
        },
    }
}

pub fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, mo, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

fn uptime_ms(state: &State) -> u64 {
    state.started_at.elapsed().as_millis() as u64
}

fn health(state: &State) -> Value {
    let t = &state.totals;
    let (healthy, total) = state.health_counts();
    let status = if total > 0 && healthy == 0 {
        "unhealthy"
    } else if healthy < total {
        "degraded"
    } else {
        "healthy"
    };
    json!({
        "status": status,
        "timestamp": iso8601(SystemTime::now()),
        "uptime": uptime_ms(state),
        "version": VERSION,
        "stats": {
            "requests": t.counts.requests,
            "responses": t.responses(),
            "errors": t.errors_total(),
            "uptime": uptime_ms(state),
        },
        "upstreams": {"total": total, "healthy": healthy},
    })
}

fn info(state: &State, operator: bool) -> Value {
    let c = &state.config;
    let mut info = json!({
        "name": "mcp-gateway",
        "version": VERSION,
        "startedAt": iso8601(state.started_wall),
        "uptime": uptime_ms(state),
        "runtime": {
            "driver": state.driver,
            "shards": state.shards,
            "cpus": state.cpus,
        },
        "upstreams": c.upstreams.iter().filter(|u| !u.retired).count(),
        "config": {
            "generation": state.reload.generation,
            // Every shard has swapped in this generation (or a later one).
            "shardsOn": state.totals.generations.iter().min(),
            "loadedAt": iso8601(state.reload.loaded_at),
            // A hash of text that may hold secrets: for operators only.
            "sha256": operator.then_some(&state.reload.sha256),
            "reloads": {"applied": state.reload.applied, "refused": state.reload.refused},
        },
        "loadBalancer": {"algorithm": algorithm_name(c.load_balancer.algorithm)},
        "healthCheck": {
            "enabled": c.health_check.enabled,
            "intervalMs": c.health_check.interval.as_millis() as u64,
            "path": c.health_check.path,
        },
        "limits": {
            "maxConnections": c.server.limits.max_connections,
            "maxHeaderBytes": c.server.limits.max_header_bytes,
            "maxBodyBytes": c.server.limits.max_body_bytes,
            "headerTimeoutMs": c.server.limits.header_timeout.as_millis() as u64,
            "keepAliveTimeoutMs": c.server.limits.keep_alive_timeout.as_millis() as u64,
        },
    });
    if operator {
        info["listeners"] = json!({
            "http": state.data_addr.to_string(),
            "management": state.management_addr.map(|a| a.to_string()),
        });
    }
    info
}

/// `loadBalancer.algorithm` as the config spells it.
fn algorithm_name(algorithm: mcp_gateway_config::Algorithm) -> &'static str {
    mcp_gateway_config::ALGORITHMS
        .iter()
        .find(|(_, a)| *a == algorithm)
        .map_or("round-robin", |(name, _)| name)
}

fn latency_json(state: &State) -> Value {
    let h = &state.totals.latency_us;
    let ms = |us: u64| us as f64 / 1000.0;
    json!({
        "count": h.len(),
        "meanMs": if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
        "p50Ms": ms(h.value_at_quantile(0.5)),
        "p90Ms": ms(h.value_at_quantile(0.9)),
        "p99Ms": ms(h.value_at_quantile(0.99)),
        "p999Ms": ms(h.value_at_quantile(0.999)),
        "maxMs": ms(h.max()),
    })
}

fn stats(state: &State) -> Value {
    let t = &state.totals;
    let errors: serde_json::Map<String, Value> = ErrorKind::ALL
        .iter()
        .filter(|k| t.counts.errors[k.index()] > 0)
        .map(|k| (k.label().to_string(), json!(t.counts.errors[k.index()])))
        .collect();
    let shown = state.shown_slots();
    let upstreams: Vec<Value> = state
        .config
        .upstreams
        .iter()
        .zip(&t.per_upstream)
        .enumerate()
        .filter(|(slot, (_, c))| c.requests > 0 && shown[*slot])
        .map(|(_, pair)| pair)
        .map(|(u, c)| {
            json!({
                "id": u.id,
                "requests": c.requests,
                "errors": c.errors,
                "status5xx": c.status_5xx,
                "avgLatencyMs": c.latency_us_sum as f64 / c.requests.max(1) as f64 / 1000.0,
            })
        })
        .collect();
    json!({
        "timestamp": iso8601(SystemTime::now()),
        "uptime": uptime_ms(state),
        "requests": t.counts.requests,
        "responses": t.responses(),
        "errors": t.errors_total(),
        "proxied": t.counts.proxied,
        "statusCodes": {
            "1xx": t.counts.status_classes[1], "2xx": t.counts.status_classes[2], "3xx": t.counts.status_classes[3],
            "4xx": t.counts.status_classes[4], "5xx": t.counts.status_classes[5],
        },
        "errorsByKind": errors,
        "mcpMethods": mcp_methods(t)
            .filter(|(_, count)| *count > 0)
            .map(|(method, count)| (method.to_string(), json!(count)))
            .collect::<serde_json::Map<String, Value>>(),
        "bytes": {"received": t.counts.bytes_in, "sent": t.counts.bytes_out},
        "connections": {"active": t.active_connections(), "total": t.counts.connections_opened},
        "upstreamConnections": {"opened": t.counts.upstream_connects, "reused": t.counts.upstream_reuses, "retried": t.counts.upstream_retries},
        "clientAborts": t.counts.client_aborts,
        "panics": t.counts.panics,
        "latency": latency_json(state),
        "shards": t.per_shard_requests.iter().enumerate().map(|(i, r)| json!({"id": i, "requests": r})).collect::<Vec<_>>(),
        "upstreams": upstreams,
    })
}

fn status(state: &State, operator: bool) -> Value {
    let (healthy, total) = state.health_counts();
    let address = |addr: Option<std::net::SocketAddr>| match (operator, addr) {
        (true, Some(addr)) => json!(addr.to_string()),
        _ => Value::Null,
    };
    json!({
        "status": "running",
        "timestamp": iso8601(SystemTime::now()),
        "uptime": uptime_ms(state),
        "components": {
            "dataPlane": {"status": "running", "shards": state.shards, "driver": state.driver, "address": address(Some(state.data_addr))},
            "managementShard": {"status": "running", "address": address(state.management_addr), "metricsIntervalMs": state.config.monitoring.metrics_tick.as_millis() as u64},
            "healthChecker": {"status": if state.config.health_check.enabled { "running" } else { "disabled" }, "intervalMs": state.config.health_check.interval.as_millis() as u64},
            "upstreams": {"total": total, "healthy": healthy, "unhealthy": total - healthy},
        },
    })
}

fn upstream_health(state: &State, operator: bool) -> Value {
    let (healthy, total) = state.health_counts();
    let shown = state.shown_slots();
    let servers: Vec<Value> = state
        .config
        .upstreams
        .iter()
        .zip(state.health.entries())
        .zip(&state.revisions)
        .enumerate()
        .filter(|(slot, _)| shown[*slot])
        .map(|(_, ((u, h), stateless))| {
            json!({
                "id": u.id,
                "url": operator.then_some(&u.url),
                "group": u.group,
                "healthy": h.healthy,
                "lastCheck": h.last_check.map(iso8601),
                "lastLatencyMs": h.last_latency_ms,
                "consecutiveFailures": h.consecutive_failures,
                // The probe's error names OS errors and addresses: for operators only.
                "lastError": if operator { json!(h.last_error) } else { Value::Null },
                "stateless": stateless,
            })
        })
        .collect();
    json!({
        "timestamp": iso8601(SystemTime::now()),
        "checksEnabled": state.config.health_check.enabled,
        "total": total,
        "healthy": healthy,
        "unhealthy": total - healthy,
        "servers": servers,
    })
}

fn metrics(state: &State) -> String {
    let t = &state.totals;
    let mut out = String::with_capacity(64 * 1024);
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    counter(
        "mcp_gateway_requests_total",
        "Requests received on the data port.",
        t.counts.requests,
    );
    counter(
        "mcp_gateway_proxied_requests_total",
        "Requests forwarded to an upstream.",
        t.counts.proxied,
    );
    counter(
        "mcp_gateway_received_bytes_total",
        "Request bytes received from clients.",
        t.counts.bytes_in,
    );
    counter(
        "mcp_gateway_sent_bytes_total",
        "Response bytes sent to clients.",
        t.counts.bytes_out,
    );
    counter(
        "mcp_gateway_connections_total",
        "Client connections accepted.",
        t.counts.connections_opened,
    );
    counter(
        "mcp_gateway_upstream_connections_opened_total",
        "New upstream connections.",
        t.counts.upstream_connects,
    );
    counter(
        "mcp_gateway_upstream_connections_reused_total",
        "Requests sent on a pooled upstream connection.",
        t.counts.upstream_reuses,
    );
    counter(
        "mcp_gateway_upstream_retries_total",
        "Requests retried after a stale pooled connection.",
        t.counts.upstream_retries,
    );
    counter(
        "mcp_gateway_client_aborts_total",
        "Proxied requests whose client left before the response was complete.",
        t.counts.client_aborts,
    );
    counter(
        "mcp_gateway_panics_total",
        "Connections ended by a panic in the gateway (a bug: please report it).",
        t.counts.panics,
    );
    let r = &state.reload;
    let _ = writeln!(out, "# HELP mcp_gateway_config_reloads_total Config reloads (file change, SIGHUP, admin API) by result.\n# TYPE mcp_gateway_config_reloads_total counter\nmcp_gateway_config_reloads_total{{result=\"ok\"}} {}\nmcp_gateway_config_reloads_total{{result=\"refused\"}} {}", r.applied, r.refused);
    let _ = writeln!(out, "# HELP mcp_gateway_config_generation The running config's generation (1 at start, one more per reload that changed something).\n# TYPE mcp_gateway_config_generation gauge\nmcp_gateway_config_generation {}", r.generation);
    let _ = writeln!(out, "# HELP mcp_gateway_connections_active Open client connections.\n# TYPE mcp_gateway_connections_active gauge\nmcp_gateway_connections_active {}", t.active_connections());
    let _ = writeln!(out, "# HELP mcp_gateway_responses_total Responses by status class.\n# TYPE mcp_gateway_responses_total counter");
    for class in 1..=5 {
        let _ = writeln!(
            out,
            "mcp_gateway_responses_total{{class=\"{class}xx\"}} {}",
            t.counts.status_classes[class]
        );
    }
    let _ = writeln!(out, "# HELP mcp_gateway_errors_total Requests the gateway answered with its own error, by kind.\n# TYPE mcp_gateway_errors_total counter");
    for kind in ErrorKind::ALL {
        let _ = writeln!(
            out,
            "mcp_gateway_errors_total{{kind=\"{}\"}} {}",
            kind.label(),
            t.counts.errors[kind.index()]
        );
    }
    let _ = writeln!(out, "# HELP mcp_gateway_mcp_requests_total MCP requests by JSON-RPC method (from Mcp-Method, or from a body a server policy made the gateway read).\n# TYPE mcp_gateway_mcp_requests_total counter");
    for (method, count) in mcp_methods(t) {
        let _ = writeln!(
            out,
            "mcp_gateway_mcp_requests_total{{method=\"{method}\"}} {count}"
        );
    }
    let _ = writeln!(out, "# HELP mcp_gateway_connections_refused_total Client connections closed at accept, before a byte: from a security.ddos.deny block, or over maxConnectionsPerIp.\n# TYPE mcp_gateway_connections_refused_total counter");
    for why in mcp_gateway_shard::admission::Refused::ALL {
        let _ = writeln!(
            out,
            "mcp_gateway_connections_refused_total{{reason=\"{}\"}} {}",
            why.label(),
            t.counts.connections_refused[why.index()]
        );
    }
    let _ = writeln!(out, "# HELP mcp_gateway_auth_total Authentication outcomes by method (none: no credential) and result; series appear once counted.\n# TYPE mcp_gateway_auth_total counter");
    for (row, results) in t.counts.auth.iter().enumerate() {
        for (column, count) in results.iter().enumerate().filter(|(_, c)| **c > 0) {
            let _ = writeln!(
                out,
                "mcp_gateway_auth_total{{method=\"{}\",result=\"{}\"}} {count}",
                auth::row_label(row),
                auth::column_label(column)
            );
        }
    }
    latency_histogram(&mut out, state);
    let upstreams = &state.config.upstreams;
    let shown = state.shown_slots();
    let series =
        |out: &mut String, name: &str, kind: &str, help: &str, value: &dyn Fn(usize) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (i, u) in upstreams.iter().enumerate().filter(|(i, _)| shown[*i]) {
                let _ = writeln!(out, "{name}{{upstream=\"{}\"}} {}", u.id, value(i));
            }
        };
    let per = &t.per_upstream;
    let health = state.health.entries();
    series(
        &mut out,
        "mcp_gateway_upstream_requests_total",
        "counter",
        "Requests per upstream.",
        &|i| per[i].requests,
    );
    series(
        &mut out,
        "mcp_gateway_upstream_errors_total",
        "counter",
        "Failed exchanges per upstream.",
        &|i| per[i].errors,
    );
    series(
        &mut out,
        "mcp_gateway_upstream_healthy",
        "gauge",
        "1 when the upstream passes health checks.",
        &|i| u64::from(health[i].healthy),
    );
    let _ = writeln!(out, "# HELP mcp_gateway_shards Data-plane shards (one per pinned core).\n# TYPE mcp_gateway_shards gauge\nmcp_gateway_shards {}", state.shards);
    let _ = writeln!(out, "# HELP mcp_gateway_uptime_seconds Seconds since start.\n# TYPE mcp_gateway_uptime_seconds gauge\nmcp_gateway_uptime_seconds {}", state.started_at.elapsed().as_secs());
    let _ = writeln!(out, "# HELP mcp_gateway_info Build and runtime facts.\n# TYPE mcp_gateway_info gauge\nmcp_gateway_info{{version=\"{VERSION}\",driver=\"{}\"}} 1", state.driver);
    out
}

fn latency_histogram(out: &mut String, state: &State) {
    let h = &state.totals.latency_us;
    let name = "mcp_gateway_request_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from request head to the end of the response.\n# TYPE {name} histogram"
    );
    let mut counts = [0u64; BUCKETS.len()];
    for v in h.iter_recorded() {
        let secs = h.highest_equivalent(v.value_iterated_to()) as f64 / 1e6;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                counts[i] += v.count_at_value();
            }
        }
    }
    for (bound, count) in BUCKETS.iter().zip(counts) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let sum: f64 = h
        .iter_recorded()
        .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
        .sum::<f64>()
        / 1e6;
    let _ = writeln!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {sum}\n{name}_count {}",
        h.len(),
        h.len()
    );
}

/// MCP request counts by method name, `other` last.
fn mcp_methods(t: &Totals) -> impl Iterator<Item = (&'static str, u64)> + '_ {
    METHODS
        .iter()
        .copied()
        .chain(["other"])
        .zip(t.counts.mcp_methods.iter().copied())
}
