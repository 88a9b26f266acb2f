//! Embedding the gateway's data plane with a custom request filter.
//!
//! The filter requires an `X-Tenant` header: a request without one (or with one that is not
//! a plain name) gets a 401 from the gateway, as a JSON error (a JSON-RPC error on MCP
//! paths); an accepted request goes upstream with `X-Tenant-Id` set and the client's
//! `X-Tenant` removed. It runs on every shard, before the upstream is chosen, and costs
//! nothing on gateways that register no filter.
//!
//! ```text
//! cargo run --example custom_middleware -- 8080 http://127.0.0.1:9001/mcp
//! curl -i http://127.0.0.1:8080/mcp/backend                          # 401
//! curl -i -H 'X-Tenant: acme' http://127.0.0.1:8080/anything         # proxied
//! ```
//!
//! It prints `listening on http://ADDR` once the shards accept (port 0 picks one), and
//! serves until killed. This is the data plane only: no management port, pages or reloads
//! (the `mcp-gateway` binary adds those around the same shards).

use mcp_gateway_shard::filter::{
    FilterPhase, FilterRequest, Filters, HeaderEdits, RequestFilter, Verdict,
};
use mcp_gateway_shard::messages::{Page, Pages};
use mcp_gateway_shard::snapshot::ConfigUpdate;
use mcp_gateway_shard::worker::{self, ShardSpec};
use std::sync::Arc;

/// Requires `X-Tenant: <name>` and passes the tenant on as `X-Tenant-Id`.
struct RequireTenant;

impl RequestFilter for RequireTenant {
    fn name(&self) -> &str {
        "require-tenant"
    }

    fn filter(&self, request: &FilterRequest<'_>, edits: &mut HeaderEdits) -> Verdict {
        let tenant = request
            .header("x-tenant")
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|t| {
                !t.is_empty()
                    && t.len() <= 64
                    && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        let Some(tenant) = tenant else {
            return Verdict::Respond {
                status: 401,
                message: "an X-Tenant header naming your tenant is required".into(),
            };
        };
        // Names and values checked above; the edits cannot fail.
        if edits.remove("x-tenant").is_err() || edits.add("X-Tenant-Id", tenant).is_err() {
            return Verdict::Respond {
                status: 500,
                message: "could not pass the tenant on".into(),
            };
        }
        Verdict::Continue
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(port), Some(upstream)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: custom_middleware <port> <upstream-url>");
    };
    let text = format!(
        r#"{{
            "server": {{"host": "127.0.0.1", "port": {port}, "workers": 2}},
            "upstream": {{"servers": [{{"id": "backend", "url": {upstream:?}}}],
                          "healthCheck": {{"enabled": false}}}}
        }}"#
    );
    let config =
        mcp_gateway_config::parse_str(&text, &|_| None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let shards = 2;
    let first = Arc::new(ConfigUpdate::new(1, Arc::new(config)));
    let addr = std::net::SocketAddr::new(first.config.server.host, first.config.server.port);
    let listeners = worker::bind_listeners(addr, shards)?;
    let addr = listeners[0].local_addr()?;

    let mut filters = Filters::new();
    filters.add(FilterPhase::BeforeUpstream, 0, Arc::new(RequireTenant));

    // No management shard: nothing reads the metric deltas (a full channel drops them) and
    // nothing sends commands (the sender is kept so the channel stays open).
    let (reports, _unread) = crossbeam_channel::bounded(1);
    let (_commands, command_rx) = crossbeam_channel::unbounded();
    let pages = Arc::new(Pages::render(std::time::Instant::now(), |_| Page {
        status: 404,
        content_type: "application/json",
        body: bytes::Bytes::from_static(br#"{"error":{"code":404,"message":"no pages here"}}"#),
    }));
    let cpus = worker::allowed_cpus();
    let mut threads = Vec::new();
    for (id, listener) in listeners.into_iter().enumerate() {
        threads.push(worker::spawn(ShardSpec {
            id,
            shards,
            cpu: cpus.get(id % cpus.len().max(1)).copied(),
            listener,
            config: first.clone(),
            pages: pages.clone(),
            reports: reports.clone(),
            commands: command_rx.clone(),
            tick: first.config.monitoring.metrics_tick,
            sse_bridge: None,
            filters: filters.clone(),
        })?);
    }
    println!("listening on http://{addr}");
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
