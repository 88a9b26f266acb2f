//! The legacy HTTP+SSE transport (2024-11-05) through the gateway, with real peers from the
//! MCP Python SDK (`tests/legacy_sse/server.py` and `client.py`; the interpreter comes from
//! `MCP_PYTHON`, or `scripts/mcp-python.sh`, which `scripts/test.sh` runs first).
//!
//! Covered:
//! - pass-through to `transport: "sse"` servers: the `endpoint` event names the gateway, the
//!   SDK client initializes, lists and calls tools (results and log notifications arrive on
//!   the stream);
//! - a group of three legacy replicas: every POST of a stream reaches that stream's replica,
//!   also when it is sent to another gateway process holding the same secret;
//! - refusals: forged, missing and foreign tokens (404), a foreign browser origin (403), a
//!   call the server's policy denies (403 on the pass-through POST, a JSON-RPC error on the
//!   bridged stream); `/mcp/{id}` for a legacy-only server answers (bridged in reverse);
//! - the bridge, for Streamable HTTP servers (answers as event streams and as JSON): the same
//!   client session end to end, the server's session ended by DELETE when the client leaves,
//!   and a bridged session's POST at another gateway process refused with 404.

mod common;
mod mcp_support;

use common::*;
use mcp_support::{
    assert_session_not_found, base64url, config_with_secret, random_bytes, start_gateway, SECRET,
};
use serde_json::{json, Value};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/legacy_sse");
/// Python starts slowly on a loaded machine; the SDK's own timeouts are longer still.
const PEER_TIMEOUT: Duration = Duration::from_secs(120);

/// The MCP Python SDK's interpreter.
fn python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        if let Some(p) = std::env::var("MCP_PYTHON").ok().filter(|p| !p.is_empty()) {
            return p;
        }
        let out = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/mcp-python.sh"
            ))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/mcp-python.sh");
        assert!(out.status.success(), "scripts/mcp-python.sh failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("interpreter path")
            .trim()
            .to_string()
    })
}

/// A Python SDK server; `requests` sees its `REQ METHOD PATH SESSION` lines.
struct PyServer {
    name: String,
    port: u16,
    requests: LineReader,
    _child: KillOnDrop,
}

impl PyServer {
    fn start(name: &str, args: &[&str]) -> PyServer {
        let mut child = Command::new(python())
            .arg(format!("{SCRIPTS}/server.py"))
            .args(["--name", name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the Python MCP server");
        let mut requests = LineReader::new(child.stdout.take().expect("stdout"));
        let child = KillOnDrop(child);
        let line = requests
            .wait_for("LISTENING", PEER_TIMEOUT)
            .unwrap_or_else(|| panic!("Python server {name} did not start: {:?}", requests.seen));
        let port = line
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("port");
        PyServer {
            name: name.to_string(),
            port,
            requests,
            _child: child,
        }
    }

    fn legacy(name: &str) -> PyServer {
        PyServer::start(name, &["--transport", "sse"])
    }

    fn streamable(name: &str, json: bool) -> PyServer {
        let mut args = vec!["--transport", "streamable"];
        if json {
            args.push("--json");
        }
        PyServer::start(name, &args)
    }
}

/// A `transport: "sse"` entry (the URL is the server's SSE endpoint).
fn legacy_entry(s: &PyServer, group: Option<&str>) -> Value {
    let mut e = json!({"id": s.name, "url": format!("http://127.0.0.1:{}/sse", s.port), "transport": "sse"});
    if let Some(g) = group {
        e["group"] = json!(g);
    }
    e
}

/// A Streamable HTTP entry (the default transport).
fn streamable_entry(s: &PyServer) -> Value {
    json!({"id": s.name, "url": format!("http://127.0.0.1:{}/mcp", s.port)})
}

/// Runs the SDK's legacy client against `url`; returns its JSON lines (it ends with "done").
fn run_client(url: &str, whoami_calls: usize) -> Vec<Value> {
    let mut child = KillOnDrop(
        Command::new(python())
            .arg(format!("{SCRIPTS}/client.py"))
            .arg(url)
            .arg(whoami_calls.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the Python MCP client"),
    );
    let mut out = child.0.stdout.take().expect("stdout");
    let mut err = child.0.stderr.take().expect("stderr");
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let out_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + PEER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for client") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    drop(child);
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let lines: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        status.is_some_and(|s| s.success()) && lines.last().is_some_and(|l| l["event"] == "done"),
        "legacy client on {url} failed (exit {status:?})\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    lines
}

fn event<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["event"] == name)
        .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
}

/// Checks a full client run against a server whose name starts with `name_prefix`; returns
/// the replica `whoami` named. `logs`: the server streams its log notifications during a call
/// (a Streamable HTTP server answering in JSON has nowhere to put them).
fn check_session(lines: &[Value], name_prefix: &str, logs: bool) -> String {
    let server = event(lines, "initialized")["server"]
        .as_str()
        .expect("server name")
        .to_string();
    assert!(server.starts_with(name_prefix), "{lines:?}");
    assert_eq!(
        event(lines, "tools")["names"],
        json!(["echo", "tick", "whoami"])
    );
    for l in lines.iter().filter(|l| l["event"] == "whoami") {
        assert_eq!(
            l["text"],
            server.as_str(),
            "a POST left its stream's replica: {lines:?}"
        );
    }
    let echo = event(lines, "echo");
    assert_eq!(echo["text"], "hello through the gateway");
    assert_eq!(echo["error"], false);
    let tick = event(lines, "tick");
    assert_eq!(tick["text"], "ticked 3");
    if logs {
        let want = json!(["tick 0", "tick 1", "tick 2"]);
        assert_eq!(tick["logs"], want, "notifications during a call");
    }
    server
}

/// Opens `/sse/{id}` raw; returns the connection and the `endpoint` event's data.
fn open_stream(gw: &Gateway, id: &str) -> (Client, String) {
    let mut c = gw.client();
    c.send(&request_bytes(
        "GET",
        &format!("/sse/{id}"),
        &[("Accept", "text/event-stream")],
        b"",
    ));
    let head = c.read_head().expect("stream head");
    assert_eq!(head.status, 200, "{head:?}");
    assert!(
        head.header("content-type")
            .is_some_and(|v| v.starts_with("text/event-stream")),
        "{head:?}"
    );
    let (name, data) = next_event(&mut c);
    assert_eq!(name, "endpoint");
    (c, data)
}

/// The next event with data on a raw stream: (event name, data).
fn next_event(c: &mut Client) -> (String, String) {
    loop {
        let (mut name, mut data) = (String::from("message"), None::<String>);
        loop {
            let line = c.conn.read_until(b"\n").expect("event line");
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                let v = v.strip_prefix(' ').unwrap_or(v);
                data = Some(match data {
                    Some(d) => format!("{d}\n{v}"),
                    None => v.to_string(),
                });
            }
        }
        if let Some(data) = data {
            return (name, data);
        }
    }
}

fn post_message(gw: &Gateway, endpoint: &str, body: &Value) -> Response {
    Client::connect(gw.data_addr()).post(
        endpoint,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn initialize(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"}}})
}

#[test]
fn legacy_server_passes_through_with_endpoint_rewritten() {
    let server = PyServer::legacy("legacy-one");
    let gw = start_gateway(&config_with_secret(
        vec![legacy_entry(&server, None)],
        SECRET,
    ));

    // The endpoint event points through the gateway, not at the server's /messages/.
    let (_stream, endpoint) = open_stream(&gw, "legacy-one");
    assert!(
        endpoint.starts_with("/sse/legacy-one/message?t="),
        "{endpoint}"
    );
    assert!(!endpoint.contains("session_id"), "{endpoint}");

    let lines = run_client(&format!("http://{}/sse/legacy-one", gw.data_addr()), 2);
    check_session(&lines, "legacy-one", true);
}

#[test]
fn replica_group_keeps_every_post_on_its_streams_replica() {
    let servers: Vec<PyServer> = (1..=3)
        .map(|i| PyServer::legacy(&format!("legacy-r{i}")))
        .collect();
    let entries = servers
        .iter()
        .map(|s| legacy_entry(s, Some("legacy-group")))
        .collect();
    let config = config_with_secret(entries, SECRET);
    let gw = start_gateway(&config);
    let url = format!("http://{}/sse/legacy-group", gw.data_addr());
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            thread::spawn(move || run_client(&url, 4))
        })
        .collect();
    let replicas: std::collections::HashSet<String> = runs
        .into_iter()
        .map(|r| check_session(&r.join().expect("client thread"), "legacy-r", true))
        .collect();
    assert!(
        replicas.len() >= 2,
        "sessions were not spread: {replicas:?}"
    );

    // The token is all a POST needs: another gateway process with the same secret delivers it
    // to the same replica, and the answer arrives on the stream held by the first.
    let other = start_gateway(&config);
    let (mut stream, endpoint) = open_stream(&gw, "legacy-group");
    let r = post_message(&other, &endpoint, &initialize(7));
    assert_eq!(r.status, 202, "{r:?}");
    let (name, data) = next_event(&mut stream);
    assert_eq!(name, "message");
    let answer: Value = serde_json::from_str(&data).expect("JSON-RPC answer");
    assert_eq!(answer["id"], 7);
    assert!(
        answer["result"]["serverInfo"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("legacy-r")),
        "{answer}"
    );
}

#[test]
fn forged_missing_and_misused_tokens_are_refused() {
    let legacy = PyServer::legacy("legacy-solo");
    let modern = PyServer::streamable("modern-solo", false);
    // Both deny one tool: the policy holds on /sse/ as on /mcp/.
    let deny = json!({"deny": ["tools/call:echo"]});
    let mut servers = vec![legacy_entry(&legacy, None), streamable_entry(&modern)];
    for s in &mut servers {
        s["policy"] = deny.clone();
    }
    let gw = start_gateway(&config_with_secret(servers, SECRET));
    let init = initialize(1);
    let denied = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "x"}}});

    let forged = base64url(&random_bytes(90));
    let r = post_message(&gw, &format!("/sse/legacy-solo/message?t={forged}"), &init);
    assert_session_not_found(&r, "forged token");
    let r = post_message(&gw, "/sse/legacy-solo/message", &init);
    assert_session_not_found(&r, "no token");
    let r = post_message(
        &gw,
        "/sse/modern-solo/message?t=b.0123456789abcdef0123456789abcdef",
        &init,
    );
    assert_session_not_found(&r, "unknown bridged session");

    // A real token works only at the server it was issued for.
    let (_stream, endpoint) = open_stream(&gw, "legacy-solo");
    let t = endpoint.split("t=").nth(1).expect("token");
    let r = post_message(&gw, &format!("/sse/modern-solo/message?t={t}"), &init);
    assert_eq!(r.status, 404, "{r:?}");
    let mut tampered = t.to_string().into_bytes();
    tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let r = post_message(
        &gw,
        &format!("/sse/legacy-solo/message?t={tampered}"),
        &init,
    );
    assert_session_not_found(&r, "tampered token");
    let v = assert_json_error(&post_message(&gw, &endpoint, &denied), 403);
    assert_eq!(v["error"]["code"], -32003, "{v}");

    // Bridged: the POST is accepted and the refusal arrives on the stream, for its request.
    let (mut bridged, endpoint) = open_stream(&gw, "modern-solo");
    assert_eq!(post_message(&gw, &endpoint, &denied).status, 202);
    let (_, data) = next_event(&mut bridged);
    let answer: Value = serde_json::from_str(&data).expect("JSON-RPC answer");
    assert_eq!(answer["id"], 9, "{answer}");
    assert_eq!(answer["error"]["code"], -32003, "{answer}");

    // A legacy-only server is reachable as Streamable HTTP too (through the bridge: see
    // tests/legacy_sse_reverse.rs); unknown ids are 404.
    let r = Client::connect(gw.data_addr()).post(
        "/mcp/legacy-solo",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        init.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.header("mcp-session-id").is_some(), "{r:?}");
    assert_json_error(&gw.get("/sse/nobody"), 404);

    // Browser origins are checked as on /mcp (loopback listener: only local pages).
    let r = Client::connect(gw.data_addr()).request(
        "GET",
        "/sse/legacy-solo",
        &[
            ("Accept", "text/event-stream"),
            ("Origin", "http://evil.example"),
        ],
        b"",
    );
    assert_json_error(&r, 403);
}

#[test]
fn bridge_serves_legacy_clients_in_front_of_streamable_http_servers() {
    let mut sse_answers = PyServer::streamable("modern-sse", false);
    let json_answers = PyServer::streamable("modern-json", true);
    let servers = vec![
        streamable_entry(&sse_answers),
        streamable_entry(&json_answers),
    ];
    let config = config_with_secret(servers, SECRET);
    let gw = start_gateway(&config);

    let lines = run_client(&format!("http://{}/sse/modern-json", gw.data_addr()), 1);
    check_session(&lines, "modern-json", false);
    let lines = run_client(&format!("http://{}/sse/modern-sse", gw.data_addr()), 2);
    check_session(&lines, "modern-sse", true);

    // The client left: the bridge ended the server's session (DELETE with its session id).
    let delete = sse_answers
        .requests
        .wait_for("REQ DELETE /mcp ", PEER_TIMEOUT);
    let delete =
        delete.unwrap_or_else(|| panic!("no DELETE upstream: {:?}", sse_answers.requests.seen));
    let session = delete.split_whitespace().nth(3).expect("session id");
    assert_ne!(session, "-", "DELETE without the upstream session id");
    assert!(
        sse_answers
            .requests
            .seen
            .iter()
            .any(|l| l.starts_with("REQ GET /mcp ")),
        "the bridge should open the server's GET stream: {:?}",
        sse_answers.requests.seen
    );

    // A bridged session lives in the process that opened it: elsewhere it is unknown.
    let (mut stream, endpoint) = open_stream(&gw, "modern-sse");
    assert!(
        endpoint.starts_with("/sse/modern-sse/message?t=b."),
        "{endpoint}"
    );
    let other = start_gateway(&config);
    assert_session_not_found(
        &post_message(&other, &endpoint, &initialize(3)),
        "other process",
    );
    let r = post_message(&gw, &endpoint, &initialize(4));
    assert_eq!(r.status, 202, "{r:?}");
    let (name, data) = next_event(&mut stream);
    assert_eq!(name, "message");
    let answer: Value = serde_json::from_str(&data).expect("JSON-RPC answer");
    assert_eq!(answer["id"], 4);
    assert_eq!(answer["result"]["serverInfo"]["name"], "modern-sse");
}
