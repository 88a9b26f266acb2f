//! Helpers shared by the MCP end-to-end tests (`mcp_sessions.rs`, `mcp_headers.rs`): a test
//! MCP replica that issues and checks its own session ids, gateway configs with a replica
//! group and a session secret, and JSON-RPC request builders.
//!
//! Used next to `common` (`mod common; mod mcp_support;`).

#![allow(dead_code)]

use crate::common::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Headers a well-behaved MCP client sends on every POST.
pub const MCP_HEADERS: [(&str, &str); 3] = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json, text/event-stream"),
    ("MCP-Protocol-Version", "2025-06-18"),
];

/// Default session secret of the tests (at least 16 bytes).
pub const SECRET: &str = "e2e-shared-session-secret-0123456789";

/// A JSON-RPC request body.
pub fn rpc(method: &str, id: u64, params: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        .to_string()
        .into_bytes()
}

/// An `initialize` request body.
pub fn init_body(id: u64) -> Vec<u8> {
    rpc(
        "initialize",
        id,
        json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "e2e", "version": "1"}
        }),
    )
}

/// `MCP_HEADERS` plus `extra`.
pub fn mcp_headers<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = MCP_HEADERS.to_vec();
    h.extend_from_slice(extra);
    h
}

/// `MCP_HEADERS` plus `Mcp-Session-Id: token`.
pub fn with_session(token: &str) -> Vec<(&str, &str)> {
    mcp_headers(&[("Mcp-Session-Id", token)])
}

/// One request on a fresh connection.
pub fn fresh(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    Client::connect(addr).request(method, target, headers, body)
}

/// A test MCP server: answers `initialize` with a new `Mcp-Session-Id` it remembers, checks
/// that every later request carries exactly one id it issued (404 JSON-RPC error otherwise,
/// marked `"data":{"upstream":NAME}` so it is told apart from the gateway's own 404), and
/// forgets a session on `DELETE`.
///
/// Answers: `initialize` -> `result.serverInfo.name` = NAME and `result.issuedSession` = the
/// id (so a test can compare it with the token the client got); a JSON array (batch) -> the
/// body echoed byte for byte; any other JSON object -> `result: {replica, session}` where
/// `session` is the `Mcp-Session-Id` it received (or null).
pub struct Replica {
    pub name: String,
    pub up: Upstream,
    issued: Arc<Mutex<Vec<String>>>,
}

impl Replica {
    pub fn start(name: &str) -> Replica {
        let issued: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let live: Arc<Mutex<HashSet<String>>> = Arc::new(Mutex::new(HashSet::new()));
        let seq = Arc::new(AtomicUsize::new(0));
        let salt = random_u64();
        let up = {
            let (name, issued) = (name.to_string(), issued.clone());
            Upstream::start(move |req, s| {
                let json_ct = [("Content-Type", "application/json")];
                let msg: Option<Value> = serde_json::from_slice(&req.body).ok();
                if req.header_count("mcp-session-id") > 1 {
                    let body = json!({"jsonrpc": "2.0", "id": null,
                        "error": {"code": -32600, "message": "several Mcp-Session-Id headers",
                                  "data": {"upstream": name}}});
                    respond(s, req, 400, &json_ct, body.to_string().as_bytes());
                    return Flow::KeepAlive;
                }
                let method = msg
                    .as_ref()
                    .and_then(|m| m.get("method"))
                    .and_then(Value::as_str);
                if req.method == "POST" && method == Some("initialize") {
                    let n = seq.fetch_add(1, Ordering::SeqCst) + 1;
                    // UUID-shaped, like real servers' ids.
                    let id = format!(
                        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                        (salt >> 32) as u32,
                        n & 0xffff,
                        (salt >> 8) & 0xfff,
                        (salt >> 20) & 0xfff,
                        (salt.wrapping_mul(n as u64 + 7)) & 0xffff_ffff_ffff
                    );
                    live.lock().unwrap().insert(id.clone());
                    issued.lock().unwrap().push(id.clone());
                    let m = msg.as_ref().unwrap();
                    let version = m
                        .pointer("/params/protocolVersion")
                        .cloned()
                        .unwrap_or(json!("2025-06-18"));
                    let body = json!({"jsonrpc": "2.0", "id": m["id"], "result": {
                        "protocolVersion": version,
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": name, "version": "1"},
                        "issuedSession": id,
                    }});
                    respond(
                        s,
                        req,
                        200,
                        &[
                            ("Content-Type", "application/json"),
                            ("Mcp-Session-Id", &id),
                        ],
                        body.to_string().as_bytes(),
                    );
                    return Flow::KeepAlive;
                }
                let session = req.header("mcp-session-id").map(str::to_string);
                if let Some(sid) = &session {
                    if !live.lock().unwrap().contains(sid) {
                        let body = json!({"jsonrpc": "2.0", "id": null,
                            "error": {"code": -32001, "message": "Session not found",
                                      "data": {"upstream": name}}});
                        respond(s, req, 404, &json_ct, body.to_string().as_bytes());
                        return Flow::KeepAlive;
                    }
                }
                match (req.method.as_str(), msg) {
                    ("DELETE", _) => {
                        if let Some(sid) = &session {
                            live.lock().unwrap().remove(sid);
                        }
                        respond(s, req, 200, &[], b"");
                    }
                    ("POST", Some(Value::Array(_))) => {
                        respond(s, req, 200, &json_ct, &req.body);
                    }
                    (_, Some(m)) => {
                        let body = json!({"jsonrpc": "2.0", "id": m.get("id").cloned().unwrap_or(Value::Null),
                            "result": {"replica": name, "session": session}});
                        // Like the MCP Python SDK's servers: the session id on every answer.
                        let mut headers = json_ct.to_vec();
                        if let Some(sid) = &session {
                            headers.push(("Mcp-Session-Id", sid));
                        }
                        respond(s, req, 200, &headers, body.to_string().as_bytes());
                    }
                    _ => {
                        let body = json!({"replica": name, "session": session});
                        respond(s, req, 200, &json_ct, body.to_string().as_bytes());
                    }
                }
                Flow::KeepAlive
            })
        };
        Replica {
            name: name.to_string(),
            up,
            issued,
        }
    }

    /// Session ids this replica issued, in order.
    pub fn issued(&self) -> Vec<String> {
        self.issued.lock().unwrap().clone()
    }

    /// Requests it received carrying `Mcp-Session-Id` (values as received).
    pub fn session_requests(&self) -> Vec<(String, Request)> {
        self.up
            .requests()
            .into_iter()
            .filter_map(|r| Some((r.header("mcp-session-id")?.to_string(), r)))
            .collect()
    }
}

/// A `upstream.servers[]` entry for a replica (path `/mcp`), in `group` when given.
pub fn replica_server(r: &Replica, group: Option<&str>) -> Value {
    let mut s = json!({"id": r.name, "url": r.up.url("/mcp")});
    if let Some(g) = group {
        s["group"] = json!(g);
    }
    s
}

/// The standard test config with these servers and `sessions.secret` = `secret`.
pub fn config_with_secret(servers: Vec<Value>, secret: &str) -> Value {
    let mut c = config(Value::Array(servers));
    c["sessions"] = json!({"secret": secret});
    c
}

/// Starts a gateway; `SESSION_SECRET` from the developer's shell is removed so the file's
/// secret is the one used.
pub fn start_gateway(config: &Value) -> Gateway {
    Gateway::start_env(config, &[], &["SESSION_SECRET"])
}

/// Asserts the gateway's "session not found": 404 with a JSON-RPC error body
/// `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,...}}`.
pub fn assert_session_not_found(r: &Response, what: &str) {
    assert_eq!(r.status, 404, "{what}: expected 404: {r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.starts_with("application/json")),
        "{what}: JSON content type: {r:?}"
    );
    let v = r.json();
    assert_eq!(v["jsonrpc"], "2.0", "{what}: {v}");
    assert!(v["id"].is_null(), "{what}: id must be null: {v}");
    assert_eq!(v["error"]["code"], -32001, "{what}: {v}");
    assert!(v["error"]["message"].is_string(), "{what}: {v}");
    assert!(
        v["error"]["data"].get("upstream").is_none(),
        "{what}: this 404 came from the upstream, not the gateway: {v}"
    );
}

/// base64url without padding (for forged tokens).
pub fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// `n` pseudo-random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.extend_from_slice(&random_u64().to_le_bytes());
    }
    out.truncate(n);
    out
}
