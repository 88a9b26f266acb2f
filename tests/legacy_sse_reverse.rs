//! `/mcp/{id}` in front of servers that only speak the legacy HTTP+SSE transport
//! (`transport: "sse"`): the gateway's bridge holds the server's SSE stream and answers in
//! Streamable HTTP. Real peers from the MCP Python SDK 2.3.0: the legacy server is
//! `tests/legacy_sse/server.py`, the client `tests/python/reverse_client.py` (the SDK's
//! Streamable HTTP client) or raw HTTP where a test needs to see the wire.
//!
//! Covered: the SDK client end to end (initialize, tools/list, tools/call with the log
//! notifications sent during the call, DELETE); raw answers as JSON and as an event stream;
//! DELETE ending the session (then 404); a group of two legacy replicas keeping each session
//! on its replica; the server dropping its stream failing the pending call with a JSON-RPC
//! error and the next request with 404 (no hang); the SDK client's `auto` mode falling back
//! from its stateless probe to the handshake.

mod common;
mod mcp_support;
mod python_support;

use common::*;
use mcp_support::{config_with_secret, init_body, rpc, start_gateway, with_session, SECRET};
use python_support::{python, run_client, CURRENT};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

const SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/legacy_sse/server.py");

/// A legacy (HTTP+SSE) server from the Python SDK.
struct LegacyServer {
    name: String,
    port: u16,
    requests: LineReader,
    child: Option<KillOnDrop>,
}

impl LegacyServer {
    fn start(name: &str) -> LegacyServer {
        let mut child = Command::new(python(CURRENT))
            .arg(SERVER)
            .args(["--name", name, "--transport", "sse"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the Python MCP server");
        let mut requests = LineReader::new(child.stdout.take().expect("stdout"));
        let child = KillOnDrop(child);
        let line = requests
            .wait_for("LISTENING", Duration::from_secs(120))
            .unwrap_or_else(|| panic!("{name} did not start: {:?}", requests.seen));
        let port = line
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("port");
        LegacyServer {
            name: name.to_string(),
            port,
            requests,
            child: Some(child),
        }
    }

    fn entry(&self, group: Option<&str>) -> Value {
        let mut e = json!({"id": self.name, "transport": "sse",
            "url": format!("http://127.0.0.1:{}/sse", self.port)});
        if let Some(g) = group {
            e["group"] = json!(g);
        }
        e
    }

    /// Stops the server at once (its SSE streams end).
    fn kill(&mut self) {
        self.child.take();
    }
}

/// POSTs a message on a fresh connection.
fn post(gw: &Gateway, target: &str, session: Option<&str>, body: &[u8]) -> Response {
    let headers = match session {
        Some(t) => with_session(t),
        None => mcp_support::mcp_headers(&[]),
    };
    Client::connect(gw.data_addr()).post(target, &headers, body)
}

/// The JSON-RPC messages of an answer: its JSON body, or its event stream's `data`.
fn messages(r: &Response) -> Vec<Value> {
    let event_stream = r
        .header("content-type")
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !event_stream {
        return vec![r.json()];
    }
    r.text()
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

/// Opens a session raw: initialize, then notifications/initialized. Returns the gateway's
/// session token and the server's name from the handshake.
fn open_session(gw: &Gateway, target: &str) -> (String, String) {
    let r = post(gw, target, None, &init_body(1));
    assert_eq!(r.status, 200, "{r:?}");
    let token = r
        .header("mcp-session-id")
        .expect("session token")
        .to_string();
    let init = messages(&r).pop().expect("initialize answer");
    let name = init["result"]["serverInfo"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{init}"))
        .to_string();
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = post(gw, target, Some(&token), note.to_string().as_bytes());
    assert_eq!(r.status, 202, "{r:?}");
    (token, name)
}

fn call(tool: &str, id: u64, arguments: Value) -> Vec<u8> {
    rpc(
        "tools/call",
        id,
        json!({"name": tool, "arguments": arguments}),
    )
}

#[test]
fn streamable_http_clients_use_a_legacy_server_through_mcp() {
    let mut server = LegacyServer::start("legacy-rev");
    let gw = start_gateway(&config_with_secret(vec![server.entry(None)], SECRET));
    let url = format!("http://{}/mcp/legacy-rev", gw.data_addr());

    // The SDK's Streamable HTTP client, end to end.
    let seen = run_client("reverse_client.py", &[&url]);
    assert_eq!(seen["tools"], json!(["echo", "tick", "whoami"]), "{seen}");
    assert_eq!(seen["echo"], "hello through the gateway", "{seen}");
    assert_eq!(seen["whoami"], "legacy-rev", "{seen}");
    assert_eq!(seen["tick"], "ticked 3", "{seen}");
    assert_eq!(
        seen["logs"],
        json!(["tick 0", "tick 1", "tick 2"]),
        "{seen}"
    );
    // The server saw the SDK client's messages arrive at its own endpoint.
    assert!(
        server
            .requests
            .wait_for("REQ POST /messages/", Duration::from_secs(30))
            .is_some(),
        "{:?}",
        server.requests.seen
    );

    // Raw: answers as JSON; a call with notifications as an event stream.
    let target = "/mcp/legacy-rev";
    let (token, name) = open_session(&gw, target);
    assert_eq!(name, "legacy-rev");
    let r = post(&gw, target, Some(&token), &rpc("tools/list", 2, json!({})));
    assert_eq!(r.status, 200, "{r:?}");
    let list = messages(&r).pop().expect("tools/list answer");
    assert_eq!(list["id"], 2, "{list}");
    assert_eq!(list["result"]["tools"].as_array().map(Vec::len), Some(3));
    let r = post(&gw, target, Some(&token), &call("tick", 3, json!({"n": 2})));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.starts_with("text/event-stream")),
        "notifications came first: an event stream {r:?}"
    );
    let all = messages(&r);
    let last = all.last().expect("messages");
    assert_eq!(last["id"], 3, "{all:?}");
    assert_eq!(last["result"]["content"][0]["text"], "ticked 2", "{all:?}");
    let logs = all
        .iter()
        .filter(|m| m["method"] == "notifications/message")
        .count();
    assert_eq!(logs, 2, "{all:?}");

    // DELETE ends the session; it is unknown afterwards.
    let r = Client::connect(gw.data_addr()).request("DELETE", target, &with_session(&token), b"");
    assert_eq!(r.status, 200, "{r:?}");
    let r = post(&gw, target, Some(&token), &rpc("tools/list", 4, json!({})));
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.json()["error"]["code"], -32001, "{r:?}");
    server.kill();
}

#[test]
fn a_group_of_legacy_replicas_keeps_each_session_on_its_replica() {
    let servers = [
        LegacyServer::start("legacy-g1"),
        LegacyServer::start("legacy-g2"),
    ];
    let entries = servers.iter().map(|s| s.entry(Some("legacy"))).collect();
    let gw = start_gateway(&config_with_secret(entries, SECRET));
    let target = "/mcp/legacy";
    let mut names = std::collections::BTreeSet::new();
    for round in 0..4u64 {
        let (token, name) = open_session(&gw, target);
        for i in 0..3u64 {
            let r = post(
                &gw,
                target,
                Some(&token),
                &call("whoami", 10 + i, json!({})),
            );
            assert_eq!(r.status, 200, "round {round}: {r:?}");
            let answer = messages(&r).pop().expect("answer");
            assert_eq!(
                answer["result"]["content"][0]["text"], name,
                "a request left its session's replica: {answer}"
            );
        }
        names.insert(name);
    }
    assert_eq!(names.len(), 2, "sessions went to both replicas: {names:?}");
    // The SDK client through the group too.
    let seen = run_client(
        "reverse_client.py",
        &[&format!("http://{}{target}", gw.data_addr())],
    );
    assert_eq!(seen["tick"], "ticked 3", "{seen}");
}

#[test]
fn the_server_dropping_its_stream_fails_the_call_and_ends_the_session() {
    let mut server = LegacyServer::start("legacy-drop");
    let gw = start_gateway(&config_with_secret(vec![server.entry(None)], SECRET));
    let target = "/mcp/legacy-drop";
    let (token, _) = open_session(&gw, target);

    // A long call: its first notification starts the event stream; then the server dies.
    let mut c = gw.client();
    c.send(&request_bytes(
        "POST",
        target,
        &with_session(&token),
        &call("tick", 7, json!({"n": 100_000})),
    ));
    let head = c.read_head().expect("answer head");
    assert_eq!(head.status, 200, "{head:?}");
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"));
    let mut body = Vec::new();
    let mut sink = |b: &[u8]| {
        body.extend_from_slice(b);
        if server.child.is_some() && String::from_utf8_lossy(&body).contains("tick 0") {
            server.kill();
        }
    };
    let read = if chunked {
        c.conn.read_chunked(&mut sink)
    } else {
        c.conn.read_to_eof(&mut sink)
    };
    assert!(
        server.child.is_none(),
        "no notification before the end: {read:?}"
    );
    let rest = String::from_utf8_lossy(&body).into_owned();
    let failed = rest
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|m| m["id"] == 7);
    let failed = failed.unwrap_or_else(|| panic!("no answer for the call ({read:?}): {rest}"));
    assert_eq!(failed["error"]["code"], -32603, "{failed}");

    // The session is gone: the client is told to start again.
    let r = post(&gw, target, Some(&token), &rpc("tools/list", 8, json!({})));
    assert_eq!(r.status, 404, "{r:?}");
}

#[test]
fn an_sdk_client_in_auto_mode_falls_back_to_initialize() {
    let server = LegacyServer::start("legacy-auto");
    let gw = start_gateway(&config_with_secret(vec![server.entry(None)], SECRET));
    let url = format!("http://{}/mcp/legacy-auto", gw.data_addr());
    // Its `server/discover` probe has no session: refused, so it uses the handshake.
    let seen = run_client("modern_client.py", &[&url, "2", "auto"]);
    assert_eq!(seen["whoami"], "legacy-auto", "{seen}");
    assert_eq!(seen["echo"], json!(["hello 0", "hello 1"]), "{seen}");
    assert_ne!(seen["protocol"], "2026-07-28", "{seen}");
}
