//! `mcp-gateway demo`: the mock MCP fleet on loopback plus the gateway in front of it, and
//! the URLs and a curl line to try.
//!
//! Owns: the demo's generated config. Must not: differ from a normal start in anything but
//! where the config comes from.

use crate::{bootstrap, fleet};
use anyhow::Context;
use std::fmt::Write;
use std::process::ExitCode;

pub struct DemoOptions {
    pub servers: usize,
    pub base_port: u16,
    pub port: u16,
    pub management_port: u16,
    pub workers: String,
}

/// The demo's config: `servers` upstreams `mcp-server-N` at `http://127.0.0.1:{base+N-1}/mcp`.
pub fn config_text(o: &DemoOptions) -> String {
    let workers = if o.workers == "auto" {
        "\"auto\"".to_string()
    } else {
        o.workers.clone()
    };
    let mut servers = String::new();
    for i in 0..o.servers {
        let comma = if i + 1 < o.servers { "," } else { "" };
        let _ = write!(
            servers,
            "{{\"id\":\"mcp-server-{}\",\"url\":\"http://127.0.0.1:{}/mcp\",\"maxConnections\":200,\"timeout\":30000}}{comma}",
            i + 1,
            usize::from(o.base_port) + i
        );
    }
    format!(
        r#"{{
  "server": {{"host": "127.0.0.1", "port": {port}, "workers": {workers}}},
  "upstream": {{
    "servers": [{servers}],
    "healthCheck": {{"enabled": true, "interval": 10000, "timeout": 2000, "path": "/health"}}
  }},
  "monitoring": {{"dashboard": {{"port": {mport}}}}}
}}"#,
        port = o.port,
        mport = o.management_port
    )
}

/// Runs the demo until SIGTERM or SIGINT, then drains like a normal start; the fleet's
/// threads end with the process.
pub fn run(o: DemoOptions) -> anyhow::Result<ExitCode> {
    let text = config_text(&o);
    let loaded = mcp_gateway_config::parse_document("<demo>", &text, &|_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let _fleet = fleet::start(o.servers, o.base_port, 1).context("starting the mock MCP fleet")?;
    bootstrap::run_forever(loaded, None, text, |running| {
        let gw = running.data_addr;
        println!(
            "{} mock MCP servers on 127.0.0.1:{}..{}",
            o.servers,
            o.base_port,
            usize::from(o.base_port) + o.servers - 1
        );
        if let Some(m) = running.management_addr {
            println!("dashboard:  http://{m}/");
        }
        println!("stats:      http://{gw}/stats   metrics: http://{gw}/metrics   health: http://{gw}/upstream/health");
        println!("try:");
        println!(
            "  curl -s http://{gw}/mcp/mcp-server-42 -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \\\n    -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"text\":\"hello\"}}}}}}'"
        );
    })
}
