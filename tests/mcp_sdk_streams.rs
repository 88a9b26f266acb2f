//! MCP event streams through the gateway with a real MCP Python SDK server
//! (tests/python/streams_server.py), read on the wire by a raw HTTP client so the test sees
//! exactly what the gateway sends and controls when a stream is cut:
//! - a session (2025-11-25) client that drops a tool call's stream half way resumes it with
//!   `Last-Event-ID` (a GET on the session) and gets exactly the missed events, with the
//!   server's own event ids, from the replica of a group of two that holds them;
//! - a client closing a 2026-07-28 tool call's stream cancels the tool on the server;
//! - a `subscriptions/listen` stream silent past the call timeout gets `: keep-alive`
//!   comments instead of being cut, delivers the server's events, and its end reaches the
//!   server at once.
//!
//! The SDK-client side of resumption, listen and the input-required retry is in
//! mcp_resumption.rs, mcp_listen.rs and mcp_stateless.rs.

mod common;
mod python_support;

use std::io;
use std::time::{Duration, Instant};

use common::*;
use python_support::*;
use serde_json::{json, Value};

const SESSION_REVISION: &str = "2025-11-25";
const STATELESS_REVISION: &str = "2026-07-28";

/// One server-sent event as the client saw it.
#[derive(Debug, Clone)]
struct Event {
    id: Option<String>,
    /// The JSON-RPC message; `Null` for an event without data (a priming event).
    message: Value,
}

/// A response body read as an event stream, block by block (events and comments).
struct Sse {
    client: Client,
    chunked: bool,
    /// Decoded body bytes not yet split into blocks, with CRLF line ends made LF.
    pending: String,
    /// `: keep-alive` comments seen so far.
    keep_alives: usize,
}

impl Sse {
    /// Sends a request on a fresh connection and reads the response head.
    fn open(gw: &Gateway, method: &str, headers: &[(&str, &str)], body: &Value) -> (Response, Sse) {
        let mut client = gw.client();
        let body = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(body).expect("json")
        };
        client.send(&request_bytes(method, "/mcp/g", headers, &body));
        let head = client.read_head().expect("response head");
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let sse = Sse {
            client,
            chunked,
            pending: String::new(),
            keep_alives: 0,
        };
        (head, sse)
    }

    /// Reads more of the body into `pending`.
    fn fill(&mut self) -> io::Result<()> {
        let mut got = Vec::new();
        if self.chunked {
            let line = self.client.conn.read_until(b"\r\n")?;
            let size_text = String::from_utf8_lossy(&line).trim().to_string();
            let size = u64::from_str_radix(size_text.split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, size_text.clone()))?;
            if size == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "body ended"));
            }
            self.client
                .conn
                .read_exact_to(size, &mut |b| got.extend_from_slice(b))?;
            self.client.conn.read_until(b"\r\n")?;
        } else {
            self.client
                .conn
                .read_exact_to(1, &mut |b| got.extend_from_slice(b))?;
        }
        self.pending.push_str(&String::from_utf8_lossy(&got));
        self.pending = self.pending.replace("\r\n", "\n");
        Ok(())
    }

    /// The next block: an event's lines or a comment, without the blank line ending it.
    fn next_block(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block = self.pending[..end].to_string();
                self.pending.drain(..end + 2);
                return Ok(block);
            }
            self.fill()?;
        }
    }

    /// The next event, counting and skipping comments.
    fn next_event(&mut self) -> io::Result<Event> {
        loop {
            let block = self.next_block()?;
            let mut id = None;
            let mut data = String::new();
            let mut comment_only = true;
            for line in block.lines() {
                if let Some(comment) = line.strip_prefix(':') {
                    if comment.trim() == "keep-alive" {
                        self.keep_alives += 1;
                    }
                    continue;
                }
                comment_only = false;
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if comment_only {
                continue;
            }
            let message = if data.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&data).unwrap_or_else(|e| panic!("bad event {block:?}: {e}"))
            };
            return Ok(Event { id, message });
        }
    }

    /// Events up to and including the one `last` accepts.
    fn events_until(&mut self, last: impl Fn(&Event) -> bool) -> Vec<Event> {
        let mut seen = Vec::new();
        loop {
            let event = self
                .next_event()
                .unwrap_or_else(|e| panic!("stream failed after {seen:?}: {e}"));
            let done = last(&event);
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

fn progress_message(e: &Event) -> Option<&str> {
    (e.message["method"] == "notifications/progress")
        .then(|| e.message["params"]["message"].as_str())
        .flatten()
}

/// The gateway's session for one session-based (2025-11-25) client.
struct Session<'a> {
    gw: &'a Gateway,
    id: String,
    next_id: u64,
}

impl<'a> Session<'a> {
    fn headers(&self) -> Vec<(&str, &str)> {
        vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("MCP-Protocol-Version", SESSION_REVISION),
            ("Mcp-Session-Id", self.id.as_str()),
        ]
    }

    fn initialize(gw: &'a Gateway) -> Session<'a> {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": SESSION_REVISION,
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}
        }});
        let headers = [
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ];
        let (head, mut sse) = Sse::open(gw, "POST", &headers, &init);
        assert_eq!(head.status, 200, "{head:?}");
        let id = head
            .header("mcp-session-id")
            .expect("session id")
            .to_string();
        sse.events_until(|e| e.message["id"] == 1);
        let session = Session {
            gw,
            id,
            next_id: 10,
        };
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let (head, _) = Sse::open(gw, "POST", &session.headers(), &note);
        assert_eq!(head.status, 202, "{head:?}");
        session
    }

    /// Opens a tool call's stream.
    fn open_call(&mut self, tool: &str, arguments: Value) -> (u64, Sse) {
        self.next_id += 1;
        let call = json!({"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments,
                       "_meta": {"progressToken": format!("p{}", self.next_id)}}});
        let (head, sse) = Sse::open(self.gw, "POST", &self.headers(), &call);
        assert_eq!(head.status, 200, "{head:?}");
        assert_eq!(head.header("content-type"), Some("text/event-stream"));
        (self.next_id, sse)
    }

    /// A whole tool call: its result.
    fn call(&mut self, tool: &str, arguments: Value) -> Value {
        let (id, mut sse) = self.open_call(tool, arguments);
        let events = sse.events_until(|e| e.message["id"] == id);
        events
            .last()
            .map(|e| e.message["result"].clone())
            .unwrap_or_default()
    }
}

fn text_of(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The server's record (`record` tool) as JSON.
fn record_json(result: &Value) -> Value {
    serde_json::from_str(&text_of(result)).unwrap_or_default()
}

/// The number in an event id `NAME-ev-N` minted by `who`.
fn event_number(who: &str, e: &Event) -> u64 {
    let id = e.id.as_deref().unwrap_or_default();
    let n = id.strip_prefix(&format!("{who}-ev-"));
    n.and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("event id {id:?} is not one of {who}'s own: {e:?}"))
}

#[test]
fn a_stream_the_client_dropped_resumes_with_last_event_id_on_the_same_replica() {
    let a = PyServer::start(CURRENT, "streams_server.py", &["ra"]);
    let b = PyServer::start(CURRENT, "streams_server.py", &["rb"]);
    let gw = Gateway::start(&config(json!([
        {"id": "ra", "url": a.url("/mcp"), "group": "g"},
        {"id": "rb", "url": b.url("/mcp"), "group": "g"}
    ])));
    let mut replicas = Vec::new();
    for round in 0..8 {
        let mut s = Session::initialize(&gw);
        let who = text_of(&s.call("whoami", json!({})));
        assert!(who == "ra" || who == "rb", "round {round}: {who:?}");

        // A slow call: read its priming event and two steps, then hang up.
        let tag = format!("resume-{round}");
        let (call_id, mut sse) = s.open_call("steps", json!({"tag": tag, "n": 6, "pause": 0.3}));
        let before = sse.events_until(|e| progress_message(e) == Some("step 2"));
        drop(sse);
        let last_seen = before.last().and_then(|e| e.id.clone()).expect("event id");

        // A client disconnect is no cancellation on this revision: the call finishes on the
        // server, its events kept in the server's event store.
        let finished = eventually(Duration::from_secs(30), || {
            let rec = record_json(&s.call("record", json!({})));
            rec["finished"]
                .as_array()?
                .contains(&json!(tag))
                .then_some(())
        });
        assert!(finished.is_some(), "round {round}: the call never finished");

        // Resume: a GET on the session with the last event id seen.
        let headers = [
            ("Accept", "text/event-stream"),
            ("MCP-Protocol-Version", SESSION_REVISION),
            ("Mcp-Session-Id", s.id.as_str()),
            ("Last-Event-ID", last_seen.as_str()),
        ];
        let (head, mut resumed) = Sse::open(&gw, "GET", &headers, &Value::Null);
        assert_eq!(head.status, 200, "round {round}: {head:?}");
        let after = resumed.events_until(|e| e.message["id"] == call_id);
        drop(resumed);

        // Exactly the missed events, in order: steps 3 to 6, then the result.
        let messages: Value = after
            .iter()
            .filter(|e| !e.message.is_null())
            .map(|e| match progress_message(e) {
                Some(m) => json!(m),
                None => e.message["result"]["content"][0]["text"].clone(),
            })
            .collect();
        assert_eq!(
            messages,
            json!([
                "step 3",
                "step 4",
                "step 5",
                "step 6",
                format!("{who} did 6 steps")
            ]),
            "round {round}: {after:?}"
        );
        // Every id is the server's own, untouched, and they only go forward.
        let ids: Vec<u64> = before
            .iter()
            .chain(after.iter())
            .map(|e| event_number(&who, e))
            .collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "round {round}: {before:?} {after:?}"
        );
        // The replica that holds the session was asked to replay after that very id.
        let rec = record_json(&s.call("record", json!({})));
        assert_eq!(
            rec["replays"].as_array().and_then(|r| r.last()),
            Some(&json!(last_seen)),
            "round {round}: {rec}"
        );
        replicas.push(who);
        replicas.sort();
        replicas.dedup();
        if round >= 1 && replicas.len() == 2 {
            return;
        }
    }
    panic!("sessions never reached both replicas: {replicas:?}");
}

/// A 2026-07-28 request's headers.
fn stateless_headers<'a>(method: &'a str, name: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", STATELESS_REVISION),
        ("Mcp-Method", method),
    ];
    if let Some(name) = name {
        headers.push(("Mcp-Name", name));
    }
    headers
}

fn stateless_body(id: Value, method: &str, mut params: Value) -> Value {
    params["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!(STATELESS_REVISION);
    params["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({});
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// A whole 2026-07-28 tool call: its result (the response is JSON or an event stream).
fn stateless_call(gw: &Gateway, tool: &str, arguments: Value) -> Value {
    let body = stateless_body(
        json!(1),
        "tools/call",
        json!({"name": tool, "arguments": arguments}),
    );
    let r = gw.client().post(
        "/mcp/g",
        &stateless_headers("tools/call", Some(tool)),
        &serde_json::to_vec(&body).expect("json"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let text = r.text();
    let json_text = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .next_back()
        .unwrap_or(&text)
        .trim()
        .to_string();
    let message: Value = serde_json::from_str(&json_text).unwrap_or_else(|e| panic!("{e}: {text}"));
    message["result"].clone()
}

fn stateless_record(gw: &Gateway) -> Value {
    record_json(&stateless_call(gw, "record", json!({})))
}

#[test]
fn closing_a_tool_call_stream_cancels_the_call_on_the_server() {
    let server = PyServer::start(CURRENT, "streams_server.py", &["c1"]);
    let gw = Gateway::start(&config(json!([
        {"id": "c1", "url": server.url("/mcp"), "group": "g"}
    ])));
    let body = stateless_body(
        json!(5),
        "tools/call",
        json!({"name": "steps", "arguments": {"tag": "cut", "n": 600, "pause": 0.1},
               "_meta": {"progressToken": "p5"}}),
    );
    let (head, mut sse) = Sse::open(
        &gw,
        "POST",
        &stateless_headers("tools/call", Some("steps")),
        &body,
    );
    assert_eq!(head.status, 200, "{head:?}");
    sse.events_until(|e| progress_message(e) == Some("step 3"));
    drop(sse);
    let closed_at = Instant::now();

    // The server's tool is cancelled soon after: the gateway closed its upstream connection
    // rather than draining the response for reuse.
    let rec = eventually(Duration::from_secs(20), || {
        let rec = stateless_record(&gw);
        rec["cancelled"]
            .as_array()?
            .contains(&json!("cut"))
            .then_some(rec)
    });
    let waited = closed_at.elapsed();
    let rec = rec.unwrap_or_else(|| panic!("never cancelled: {}", stateless_record(&gw)));
    assert!(
        waited < Duration::from_secs(5),
        "cancelled after {waited:?}"
    );
    assert_eq!(rec["finished"], json!([]), "{rec}");
}

#[test]
fn a_listen_stream_gets_keep_alives_past_the_call_timeout_and_its_end_reaches_the_server() {
    let server = PyServer::start(CURRENT, "streams_server.py", &["l1"]);
    let mut cfg = config(json!([
        // A tool call silent for 2 s would be cut; a listen stream must not be.
        {"id": "l1", "url": server.url("/mcp"), "group": "g", "timeout": 2000}
    ]));
    cfg["server"]["sseKeepAlive"] = json!(500);
    let gw = Gateway::start(&cfg);
    let body = stateless_body(
        json!("listen-1"),
        "subscriptions/listen",
        json!({"notifications": {"toolsListChanged": true}}),
    );
    let (head, mut sse) = Sse::open(
        &gw,
        "POST",
        &stateless_headers("subscriptions/listen", None),
        &body,
    );
    assert_eq!(head.status, 200, "{head:?}");
    let ack = sse.next_event().expect("acknowledgement");
    assert_eq!(
        ack.message["method"], "notifications/subscriptions/acknowledged",
        "{ack:?}"
    );
    assert_eq!(stateless_record(&gw)["listeners"], 1);

    // Silent for twice the call timeout: only keep-alive comments come.
    let silent_from = Instant::now();
    while silent_from.elapsed() < Duration::from_secs(4) {
        let block = sse
            .next_block()
            .unwrap_or_else(|e| panic!("listen stream cut after {:?}: {e}", silent_from.elapsed()));
        assert_eq!(block.trim(), ": keep-alive", "only comments while silent");
        sse.keep_alives += 1;
    }
    assert!(sse.keep_alives >= 3, "{} keep-alives", sse.keep_alives);

    // The server's change event arrives on the stream.
    assert_eq!(
        text_of(&stateless_call(&gw, "announce", json!({}))),
        "announced"
    );
    let event = sse.next_event().expect("change event");
    assert_eq!(
        event.message["method"], "notifications/tools/list_changed",
        "{event:?}"
    );

    // The client hangs up: the server lets go of its listener at once.
    drop(sse);
    let closed_at = Instant::now();
    let released = eventually(Duration::from_secs(20), || {
        (stateless_record(&gw)["listeners"] == 0).then_some(())
    });
    let waited = closed_at.elapsed();
    assert!(released.is_some(), "the server still holds the listener");
    assert!(waited < Duration::from_secs(5), "released after {waited:?}");
    let stats = gw.wait_stats(|s| s["mcpMethods"]["subscriptions/listen"].as_u64() >= Some(1));
    assert!(
        stats["errorsByKind"].get("upstream_timeout").is_none(),
        "{stats}"
    );
}
