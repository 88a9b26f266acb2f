//! 1000 upstreams: the gateway in front of the built-in mock MCP fleet (`mcp-gateway fleet`),
//! JSON-RPC through `/mcp/{id}` to the first, a middle and the last server, sessions, and
//! the gateway's memory with 1000 upstreams configured.

mod common;

use common::*;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

const SERVERS: u16 = 1000;
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// True when every port of `base..base + SERVERS` can be bound right now (checked one at a
/// time, so the test itself never needs 1000 descriptors).
fn ports_free(base: u16) -> bool {
    (0..SERVERS).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok())
}

/// Starts `mcp-gateway fleet` on a free range below the ephemeral port range.
fn start_fleet() -> (KillOnDrop, u16) {
    for attempt in 0..8 {
        // 15000..31700: P..P+999 stays below Linux's ephemeral range (32768+).
        let base = 15_000 + (random_u64() % 16_700) as u16;
        if !ports_free(base) {
            continue;
        }
        // The fleet holds 1000 listening sockets: lift a low soft descriptor limit first.
        let mut child = Command::new("sh")
            .args([
                "-c",
                r#"ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@""#,
            ])
            .args(["sh", BIN])
            .args(["fleet", "--servers", &SERVERS.to_string()])
            .args(["--base-port", &base.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fleet");
        let mut out = LineReader::new(child.stdout.take().expect("stdout"));
        let logs = LogTail::drain(child.stderr.take().expect("stderr"));
        let child = KillOnDrop(child);
        if out
            .wait_for("mock MCP fleet", Duration::from_secs(15))
            .is_some()
        {
            return (child, base);
        }
        eprintln!(
            "fleet attempt {attempt} on base port {base} failed:\n{}",
            logs.text()
        );
    }
    panic!("could not start the mock fleet on any port range");
}

fn rpc(method: &str, id: u64, params: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        .to_string()
        .into_bytes()
}

const MCP_HEADERS: [(&str, &str); 3] = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json, text/event-stream"),
    ("MCP-Protocol-Version", "2025-06-18"),
];

#[test]
fn thousand_upstreams_behind_one_gateway() {
    let (_fleet, base) = start_fleet();
    let servers: Vec<Value> = (0..SERVERS)
        .map(|i| {
            json!({
                "id": format!("mcp-server-{}", i + 1),
                "url": format!("http://127.0.0.1:{}/mcp", base + i),
            })
        })
        .collect();
    let gw = Gateway::start(&config(Value::Array(servers)));
    assert_eq!(gw.mgmt_json("/info")["upstreams"], 1000);

    let mut c = gw.client();
    for n in [1u32, 500, 1000] {
        let text = format!("hello from the test to server {n}");
        let body = rpc(
            "tools/call",
            u64::from(n),
            json!({"name": "echo", "arguments": {"text": text}}),
        );
        let r = c.post(&format!("/mcp/mcp-server-{n}"), &MCP_HEADERS, &body);
        assert_eq!(r.status, 200, "server {n}: {r:?}");
        let v = r.json();
        assert_eq!(v["id"], n, "{v}");
        assert_eq!(v["result"]["content"][0]["text"], text, "{v}");
    }

    // initialize hands out a session id; the session then works through the gateway.
    let r = c.post(
        "/mcp/mcp-server-500",
        &MCP_HEADERS,
        &rpc(
            "initialize",
            1,
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "e2e", "version": "1"}
            }),
        ),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["result"]["serverInfo"]["name"], "mock-mcp-500");
    let session = r
        .header("mcp-session-id")
        .unwrap_or_else(|| panic!("initialize returned no Mcp-Session-Id: {r:?}"))
        .to_string();
    assert!(!session.is_empty());
    let mut headers = MCP_HEADERS.to_vec();
    headers.push(("Mcp-Session-Id", &session));
    let r = c.post(
        "/mcp/mcp-server-500",
        &headers,
        &rpc("tools/list", 2, json!({})),
    );
    assert_eq!(r.status, 200, "a request in the session failed: {r:?}");
    assert_eq!(r.json()["result"]["tools"][0]["name"], "echo");
    // A forged session id is not found.
    let mut forged = MCP_HEADERS.to_vec();
    forged.push(("Mcp-Session-Id", "forged-session-id"));
    let r = c.post(
        "/mcp/mcp-server-500",
        &forged,
        &rpc("tools/list", 3, json!({})),
    );
    assert_eq!(r.status, 404, "forged session: {r:?}");

    // A tool call with a progress token streams SSE: progress events, then the result.
    let mut c = gw.client();
    c.send(&request_bytes(
        "POST",
        "/mcp/mcp-server-1000",
        &MCP_HEADERS,
        &rpc(
            "tools/call",
            7,
            json!({"name": "echo", "arguments": {"text": "streamed"}, "_meta": {"progressToken": "p1"}}),
        ),
    ));
    let head = c.read_head().expect("SSE head");
    assert_eq!(head.status, 200, "{head:?}");
    assert!(head
        .header("content-type")
        .is_some_and(|v| v.starts_with("text/event-stream")));
    let mut events = Vec::new();
    c.conn
        .read_chunked(&mut |b| events.extend_from_slice(b))
        .expect("SSE body");
    let events = String::from_utf8_lossy(&events);
    assert_eq!(
        events.matches("notifications/progress").count(),
        3,
        "{events}"
    );
    assert!(events.contains("\"text\":\"streamed\""), "{events}");

    let rss = gw.rss_kib();
    println!("gateway RSS with {SERVERS} upstreams: {rss} KiB");
    assert!(
        rss < RSS_LIMIT_KIB,
        "gateway RSS {rss} KiB with 1000 upstreams (limit {RSS_LIMIT_KIB} KiB)"
    );
}
