//! `subscriptions/listen` (2026-07-28) through the gateway with official MCP Python SDK
//! peers: the listen stream is a long-lived POST response, so the gateway must not cut it by
//! the tool-call progress timeout (it keeps it alive with comments instead), must deliver the
//! server's change events, and must release the upstream at once when the client closes it.

mod common;
mod python_support;

use common::*;
use python_support::*;
use serde_json::json;

#[test]
fn a_listen_stream_outlives_the_call_timeout_and_is_released_when_closed() {
    let server = PyServer::start(CURRENT, "listen_server.py", &[]);
    let mut cfg = config(json!([
        // A tool call silent for 1.5 s would be cut; a listen stream must not be.
        {"id": "live", "url": server.url("/mcp"), "timeout": 1500}
    ]));
    cfg["server"]["sseKeepAlive"] = json!(300);
    let gw = Gateway::start(&cfg);
    let url = format!("http://{}/mcp/live", gw.data_addr());
    let seen = run_client("listen_client.py", &[&url, "3"]);
    assert_eq!(seen["protocol"], "2026-07-28", "{seen}");
    assert_eq!(seen["event"], "ToolsListChanged", "{seen}");
    assert_eq!(seen["listeners_during"], 1, "{seen}");
    // Closing the client's stream closes the upstream's at once.
    assert_eq!(seen["listeners_after"], 0, "{seen}");
    assert!(
        seen["released_in_s"].as_f64().unwrap_or(99.0) < 3.0,
        "{seen}"
    );
    let stats = gw.wait_stats(|s| s["mcpMethods"]["subscriptions/listen"].as_u64() >= Some(1));
    assert!(
        stats["errorsByKind"].get("upstream_timeout").is_none(),
        "{stats}"
    );
}
