//! The stateless MCP revision (2026-07-28) through the gateway, with peers from the official
//! MCP Python SDK: a 2.3.0 client (probes `server/discover`, then sends header-routed
//! requests without a session) against 2.3.0 servers and a 1.27.0 server that predates the
//! revision; `Mcp-Method` / `Mcp-Name` counted, checked against the body, and authorized by a
//! per-server `policy`, with the spec's -32020 for a body that disagrees with its headers; and
//! the input-required retry pattern (an elicitation answered by the client's retry).

mod common;
mod python_support;

use std::time::Duration;

use common::*;
use python_support::*;
use serde_json::{json, Value};

fn gateway_for(servers: Value, tweak: impl FnOnce(&mut Value)) -> Gateway {
    let mut cfg = config(servers);
    tweak(&mut cfg);
    Gateway::start(&cfg)
}

fn mcp_url(gw: &Gateway, id: &str) -> String {
    format!("http://{}/mcp/{id}", gw.data_addr())
}

/// Stats once the counted MCP methods satisfy `ok`.
fn wait_methods(gw: &Gateway, ok: impl Fn(&Value) -> bool) -> Value {
    gw.wait_stats(|s| ok(&s["mcpMethods"]))
}

#[test]
fn sdk_client_speaks_2026_07_28_through_the_gateway() {
    let server = PyServer::start(CURRENT, "modern_server.py", &["m1"]);
    let gw = gateway_for(json!([server_entry("modern", &server)]), |_| {});
    let seen = run_client("modern_client.py", &[&mcp_url(&gw, "modern"), "2"]);
    assert_eq!(seen["protocol"], "2026-07-28", "{seen}");
    assert_eq!(seen["tools"], json!(["drop_table", "echo", "whoami"]));
    assert_eq!(seen["echo"], json!(["hello 0", "hello 1"]));
    assert_eq!(seen["whoami"], "m1");
    // Counted from the routing headers, without reading bodies.
    let stats = wait_methods(&gw, |m| {
        m["tools/call"].as_u64() >= Some(3) && m["server/discover"].as_u64() >= Some(1)
    });
    assert!(
        stats["mcpMethods"]["tools/list"].as_u64() >= Some(1),
        "{stats}"
    );
    let metrics = Client::connect(gw.mgmt_addr()).get("/metrics").text();
    assert!(
        metrics.contains("mcp_gateway_mcp_requests_total{method=\"tools/call\"} 3"),
        "{metrics}"
    );
}

fn server_entry(id: &str, server: &PyServer) -> Value {
    json!({"id": id, "url": server.url("/mcp")})
}

#[test]
fn a_group_mixing_revisions_sends_stateless_requests_only_to_replicas_that_speak_them() {
    let modern = PyServer::start(CURRENT, "modern_server.py", &["modern"]);
    let old = PyServer::start(PRE_STATELESS, "modern_server.py", &["old"]);
    let mut servers = json!([server_entry("new1", &modern), server_entry("old1", &old)]);
    for s in servers.as_array_mut().into_iter().flatten() {
        s["group"] = json!("g");
    }
    let gw = gateway_for(servers, |c| {
        c["upstream"]["healthCheck"] = json!({"enabled": true, "interval": 1000, "timeout": 3000});
    });
    // The management shard probes each member with `server/discover` and tells the shards.
    let probed = eventually(Duration::from_secs(30), || {
        let health = gw.mgmt_json("/upstream/health");
        let servers = health["servers"].as_array()?.clone();
        let by_id = |id: &str| {
            servers
                .iter()
                .find(|s| s["id"] == id)
                .map(|s| s["stateless"].clone())
        };
        (by_id("new1") == Some(json!(true)) && by_id("old1") == Some(json!(false))).then_some(())
    });
    assert!(probed.is_some(), "{}", gw.mgmt_json("/upstream/health"));
    for round in 0..4 {
        let seen = run_client("modern_client.py", &[&mcp_url(&gw, "g"), "2"]);
        assert_eq!(seen["protocol"], "2026-07-28", "round {round}: {seen}");
        assert_eq!(seen["whoami"], "modern", "round {round}: {seen}");
        assert_eq!(seen["echo"], json!(["hello 0", "hello 1"]));
    }
    // Addressed alone, the old server still serves a probing client: `server/discover`
    // fails there and the client falls back to the `initialize` handshake.
    let seen = run_client("modern_client.py", &[&mcp_url(&gw, "old1"), "1"]);
    assert_eq!(seen["protocol"], "2025-11-25", "{seen}");
    assert_eq!(seen["whoami"], "old", "{seen}");
    // A client that only knows the handshake still works with both replicas.
    let seen = run_client("modern_client.py", &[&mcp_url(&gw, "g"), "1", "legacy"]);
    assert_eq!(seen["echo"], json!(["hello 0"]), "{seen}");
}

/// A stateless request as a 2026-07-28 client sends it.
fn stateless_call(
    gw: &Gateway,
    id: &str,
    method: &str,
    name: Option<&str>,
    body: &Value,
) -> Response {
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", method),
    ];
    if let Some(name) = name {
        headers.push(("Mcp-Name", name));
    }
    let body = serde_json::to_vec(body).expect("json");
    gw.client().post(&format!("/mcp/{id}"), &headers, &body)
}

fn tool_call(tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": tool, "arguments": {"text": "x", "table": "t"},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}
        }
    }})
}

fn error_code(r: &Response) -> i64 {
    r.json()["error"]["code"].as_i64().unwrap_or_default()
}

#[test]
fn policy_is_enforced_from_headers_and_the_body_must_agree() {
    let server = PyServer::start(CURRENT, "modern_server.py", &["p1"]);
    let mut entry = server_entry("guarded", &server);
    entry["policy"] = json!({"deny": ["tools/call:drop_*"]});
    let gw = gateway_for(json!([entry, server_entry("open", &server)]), |_| {});

    let ok = stateless_call(
        &gw,
        "guarded",
        "tools/call",
        Some("echo"),
        &tool_call("echo"),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(ok.text().contains("\"x\""), "{}", ok.text());

    // Denied from the headers alone: 403 with a JSON-RPC error, nothing forwarded.
    let denied = stateless_call(
        &gw,
        "guarded",
        "tools/call",
        Some("drop_table"),
        &tool_call("drop_table"),
    );
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert_eq!(error_code(&denied), -32003);

    // Headers that claim an allowed tool while the body calls a denied one: -32020.
    let smuggled = stateless_call(
        &gw,
        "guarded",
        "tools/call",
        Some("echo"),
        &tool_call("drop_table"),
    );
    assert_eq!(smuggled.status, 400, "{}", smuggled.text());
    assert_eq!(error_code(&smuggled), -32020);
    let wrong_method = stateless_call(&gw, "guarded", "tools/list", None, &tool_call("drop_table"));
    assert_eq!(wrong_method.status, 400);
    assert_eq!(error_code(&wrong_method), -32020);

    // Older revisions carry no routing headers: the policy reads the body.
    let legacy = gw.client().post(
        "/mcp/guarded",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        &serde_json::to_vec(&tool_call("drop_table")).expect("json"),
    );
    assert_eq!(legacy.status, 403, "{}", legacy.text());

    // The same server without a policy: the gateway does not read the body, the server
    // itself checks that headers and body agree.
    let unguarded = stateless_call(
        &gw,
        "open",
        "tools/call",
        Some("echo"),
        &tool_call("drop_table"),
    );
    assert_eq!(unguarded.status, 400, "{}", unguarded.text());
    assert_eq!(error_code(&unguarded), -32020);

    let stats = gw.wait_stats(|s| s["errorsByKind"]["header_mismatch"].as_u64() >= Some(2));
    assert!(
        stats["errorsByKind"]["policy_denied"].as_u64() >= Some(2),
        "{stats}"
    );

    // A routing header sent twice is refused before anything is forwarded.
    let mut c = gw.client();
    let twice = c.request(
        "POST",
        "/mcp/open",
        &[
            ("Content-Type", "application/json"),
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Method", "tools/list"),
        ],
        &serde_json::to_vec(&tool_call("echo")).expect("json"),
    );
    assert_eq!(twice.status, 400, "{}", twice.text());
    assert_eq!(error_code(&twice), -32020);
}

#[test]
fn the_input_required_retry_pattern_passes_through_a_policy() {
    let server = PyServer::start(CURRENT, "elicit_server.py", &[]);
    let mut entry = json!({"id": "asks", "url": server.url("/mcp")});
    // A policy makes the gateway read and check both rounds' bodies.
    entry["policy"] = json!({"allow": ["tools/*"]});
    let gw = gateway_for(json!([entry]), |_| {});
    let seen = run_client("elicit_client.py", &[&mcp_url(&gw, "asks")]);
    assert_eq!(seen["protocol"], "2026-07-28", "{seen}");
    assert_eq!(seen["result"], "hello Ada", "{seen}");
    assert_eq!(seen["asked"], json!(["What is your name?"]), "{seen}");
    let stats = wait_methods(&gw, |m| m["tools/call"].as_u64() >= Some(2));
    assert!(
        stats["errorsByKind"].get("policy_denied").is_none(),
        "{stats}"
    );
}
