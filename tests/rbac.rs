//! Role-based access through the gateway, end to end: API keys name roles, a role reaches
//! some servers and some MCP methods there down to the tool, and list answers (JSON and
//! event stream) show only what the caller may call. Refusals are 403 with JSON-RPC -32003
//! and never reach the upstream; lifecycle methods pass; `defaultRoles` covers keys without
//! roles; a server's own `policy` narrows lists too; a reload changes grants live.

mod common;
mod mcp_support;

use common::*;
use mcp_support::*;
use serde_json::{json, Value};
use std::time::Duration;

const READER: &str = "reader-key-0123456789";
const ADMIN: &str = "admin-key-0123456789";
/// A key that names no role: `defaultRoles` applies.
const PLAIN: &str = "plain-key-0123456789";

const TOOLS: [&str; 3] = ["echo", "search_web", "delete_all"];

/// How the test MCP server answers a POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// `application/json` with a Content-Length.
    Json,
    /// `application/json`, chunked.
    ChunkedJson,
    /// `text/event-stream` (chunked) when the client accepts it: a progress notification,
    /// then the answer split across chunks.
    Events,
}

/// A small MCP server: `initialize`, `ping`, `tools/list` (echo, search_web, delete_all),
/// `tools/call` (answers the tool's name), `prompts/list`, `resources/list`; batches are
/// answered as batches, notifications with 202. A GET opens a stream that names its
/// message endpoint (as a legacy SSE server does) and replays a `tools/list` answer.
fn mcp_server(answer: Answer) -> Upstream {
    Upstream::start(move |req, s| {
        if req.method == "GET" {
            let _ = respond_chunked_head(s, 200, &[("Content-Type", "text/event-stream")]);
            let replay = respond_to(&json!({"id": 9, "method": "tools/list"}));
            let _ = write_chunk(s, b"event: endpoint\ndata: /messages?s=1\n\n");
            let _ = write_chunk(
                s,
                format!("id: 1\ndata: {}\n\n", replay.unwrap_or_default()).as_bytes(),
            );
            let _ = write_chunk(s, b"");
            return Flow::KeepAlive;
        }
        let Ok(message) = serde_json::from_slice::<Value>(&req.body) else {
            respond(s, req, 400, &[], b"not json");
            return Flow::KeepAlive;
        };
        let body = match &message {
            Value::Array(batch) => Value::Array(batch.iter().filter_map(respond_to).collect()),
            one => match respond_to(one) {
                Some(answer) => answer,
                None => {
                    respond(s, req, 202, &[], b"");
                    return Flow::KeepAlive;
                }
            },
        };
        let text = body.to_string();
        let sse = req
            .header("accept")
            .is_some_and(|a| a.contains("text/event-stream"));
        match answer {
            Answer::Json => respond_json(s, req, &text),
            Answer::ChunkedJson => {
                let _ = respond_chunked_head(s, 200, &[("Content-Type", "application/json")]);
                let (a, b) = text.as_bytes().split_at(text.len() / 2);
                let _ = write_chunk(s, a).and_then(|()| write_chunk(s, b));
                let _ = write_chunk(s, b"");
            }
            Answer::Events if sse => {
                let _ = respond_chunked_head(s, 200, &[("Content-Type", "text/event-stream")]);
                let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#;
                let _ = write_chunk(
                    s,
                    format!("event: message\ndata: {progress}\n\n").as_bytes(),
                );
                let event = format!("id: 2\nevent: message\ndata: {text}\n\n");
                let (a, b) = event.as_bytes().split_at(event.len() / 2);
                let _ = write_chunk(s, a).and_then(|()| write_chunk(s, b));
                let _ = write_chunk(s, b"");
            }
            Answer::Events => respond_json(s, req, &text),
        }
        Flow::KeepAlive
    })
}

/// The answer to one JSON-RPC message (`None` for a notification).
fn respond_to(message: &Value) -> Option<Value> {
    let id = message.get("id")?.clone();
    let result = match message["method"].as_str().unwrap_or("") {
        "initialize" => json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {"tools": {}, "prompts": {}, "resources": {}},
            "serverInfo": {"name": "rbac-test", "version": "1"}
        }),
        "ping" => json!({}),
        "tools/list" => json!({"tools": TOOLS
            .iter()
            .map(|t| json!({"name": t, "inputSchema": {"type": "object"}}))
            .collect::<Vec<_>>()}),
        "tools/call" => json!({"content": [{"type": "text", "text": message["params"]["name"]}]}),
        "prompts/list" => json!({"prompts": [{"name": "greet"}, {"name": "secret"}]}),
        "resources/list" => json!({"resources": [{"uri": "mem://open"}, {"uri": "mem://closed"}]}),
        _ => {
            return Some(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no"}}),
            )
        }
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// The reader may list tools and call `echo` on `tools` only; the admin may do anything.
fn roles() -> Value {
    json!({
        "reader": [{"servers": ["tools"], "allow": ["tools/list", "tools/call:echo"]}],
        "admin": [{"servers": ["*"], "allow": ["*"]}]
    })
}

/// A gateway with API keys (reader, admin, and a key without roles) and RBAC.
fn gateway(servers: Value, roles: Value, default_roles: Value) -> Gateway {
    let mut cfg = config(servers);
    cfg["security"] = json!({
        "authentication": {
            "enabled": true,
            "methods": ["apikey"],
            "apiKeys": [
                {"name": "reader", "key": READER, "roles": ["reader"]},
                {"name": "admin", "key": ADMIN, "roles": ["admin"]},
                {"name": "plain", "key": PLAIN}
            ]
        },
        "rbac": {"enabled": true, "roles": roles, "defaultRoles": default_roles}
    });
    Gateway::start(&cfg)
}

/// One MCP POST with an API key, on a fresh connection.
fn call(gw: &Gateway, key: &str, server: &str, body: &[u8]) -> Response {
    let headers = mcp_headers(&[("X-API-Key", key)]);
    fresh(
        gw.data_addr(),
        "POST",
        &format!("/mcp/{server}"),
        &headers,
        body,
    )
}

/// The JSON-RPC answer in a response: the body, or the `data` of the event that holds a
/// response.
fn answer_of(r: &Response) -> Value {
    if !r
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/event-stream")
    {
        return r.json();
    }
    r.text()
        .split("\n\n")
        .filter_map(|event| {
            let data: String = event
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            serde_json::from_str::<Value>(&data).ok()
        })
        .find(|v| v.get("result").is_some() || v.get("error").is_some())
        .unwrap_or_else(|| panic!("no answer in the stream: {r:?}"))
}

fn tool_names(answer: &Value) -> Vec<String> {
    answer["result"]["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A 403 with JSON-RPC -32003 (refused by role or policy).
fn assert_refused(r: &Response) {
    let v = assert_json_error(r, 403);
    assert_eq!(v["error"]["code"], -32003, "{v}");
}

fn list_tools(gw: &Gateway, key: &str, server: &str) -> Vec<String> {
    let r = call(gw, key, server, &rpc("tools/list", 2, json!({})));
    assert_eq!(r.status, 200, "{r:?}");
    tool_names(&answer_of(&r))
}

#[test]
fn a_role_sees_and_calls_only_what_it_is_allowed() {
    let tools = mcp_server(Answer::Json);
    let other = mcp_server(Answer::Json);
    let servers = json!([
        server("tools", &tools.url("")),
        server("other", &other.url(""))
    ]);
    let gw = gateway(servers, roles(), json!([]));

    // Lifecycle methods pass; the list shows the one tool the role may call.
    assert_eq!(call(&gw, READER, "tools", &init_body(1)).status, 200);
    assert_eq!(
        call(&gw, READER, "tools", &rpc("ping", 3, json!({}))).status,
        200
    );
    let r = call(&gw, READER, "tools", &rpc("tools/list", 2, json!({})));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    assert_eq!(tool_names(&r.json()), ["echo"]);
    assert_eq!(r.json()["id"], 2);
    let r = call(
        &gw,
        READER,
        "tools",
        &rpc("tools/call", 4, json!({"name": "echo"})),
    );
    assert_eq!(r.json()["result"]["content"][0]["text"], "echo", "{r:?}");

    // What the role does not allow is refused here, never sent on.
    let seen = tools.request_count();
    for body in [
        rpc("tools/call", 5, json!({"name": "delete_all"})),
        rpc("prompts/list", 6, json!({})),
        json!([
            {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo"}},
            {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "delete_all"}}
        ])
        .to_string()
        .into_bytes(),
    ] {
        assert_refused(&call(&gw, READER, "tools", &body));
    }
    assert_eq!(
        tools.request_count(),
        seen,
        "a refused call reached the upstream"
    );

    // Another server: not even `initialize`.
    assert_refused(&call(&gw, READER, "other", &init_body(1)));
    assert_eq!(other.request_count(), 0);

    // The admin sees and reaches everything.
    assert_eq!(list_tools(&gw, ADMIN, "tools"), TOOLS);
    let r = call(
        &gw,
        ADMIN,
        "other",
        &rpc("tools/call", 9, json!({"name": "delete_all"})),
    );
    assert_eq!(
        r.json()["result"]["content"][0]["text"],
        "delete_all",
        "{r:?}"
    );
}

#[test]
fn a_routing_header_naming_a_forbidden_tool_is_refused_before_the_body() {
    let tools = mcp_server(Answer::Json);
    let gw = gateway(json!([server("tools", &tools.url(""))]), roles(), json!([]));
    let mut c = gw.client();
    // The head alone: the body it announces never comes.
    c.send(
        format!(
            "POST /mcp/tools HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {READER}\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\n\
             Mcp-Name: delete_all\r\nContent-Length: 500\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = c.read_response().expect("an answer without the body");
    assert_refused(&r);
    assert_eq!(tools.request_count(), 0);
}

#[test]
fn event_stream_and_chunked_list_answers_are_filtered() {
    let events = mcp_server(Answer::Events);
    let chunked = mcp_server(Answer::ChunkedJson);
    let servers = json!([
        server("events", &events.url("")),
        server("chunked", &chunked.url("")),
        {"id": "legacy", "url": events.url("/sse"), "transport": "sse"}
    ]);
    let reader = json!({"reader": [{
        "servers": ["events", "chunked", "legacy"],
        "allow": ["tools/list", "tools/call:echo", "prompts/list", "prompts/get:greet"]
    }]});
    let gw = gateway(servers, reader.clone(), json!([]));

    // Two answers on one connection: the rewritten stream is framed so the next one follows.
    let mut c = gw.client();
    let headers = mcp_headers(&[("X-API-Key", READER)]);
    for id in [2, 3] {
        let r = c.post("/mcp/events", &headers, &rpc("tools/list", id, json!({})));
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream")));
        assert_eq!(r.header("content-length"), None, "{r:?}");
        let text = r.text();
        assert!(
            text.contains("notifications/progress"),
            "other events pass: {text}"
        );
        assert!(
            text.contains("id: 2\nevent: message\n"),
            "the event keeps its id: {text}"
        );
        assert_eq!(tool_names(&answer_of(&r)), ["echo"], "{text}");
        assert_eq!(answer_of(&r)["id"], id);
    }
    let r = c.post("/mcp/events", &headers, &rpc("prompts/list", 4, json!({})));
    let prompts = &answer_of(&r)["result"]["prompts"];
    assert_eq!(prompts, &json!([{"name": "greet"}]), "{r:?}");

    // A chunked JSON answer is read whole and sent with its new length.
    let r = call(&gw, READER, "chunked", &rpc("tools/list", 5, json!({})));
    assert_eq!(r.header("transfer-encoding"), None, "{r:?}");
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    assert_eq!(tool_names(&r.json()), ["echo"]);

    // A stream ended by closing, its last event unfinished: filtered and ended all the same.
    let closing = Upstream::start(|req, s| {
        let answer = respond_to(&serde_json::from_slice(&req.body).unwrap_or_default());
        let head =
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
        let event = format!("{head}data: {}\n", answer.unwrap_or_default());
        let _ = std::io::Write::write_all(s, event.as_bytes());
        Flow::Close
    });
    let gw2 = gateway(
        json!([server("events", &closing.url(""))]),
        reader,
        json!([]),
    );
    let r = call(&gw2, READER, "events", &rpc("tools/list", 6, json!({})));
    assert!(r.closes(), "{r:?}");
    assert_eq!(tool_names(&answer_of(&r)), ["echo"], "{r:?}");

    // A GET stream replaying a list answer is filtered too, and so is a legacy SSE stream
    // after its rewritten endpoint event.
    let get = [("Accept", "text/event-stream"), ("X-API-Key", READER)];
    for path in ["/mcp/events", "/sse/legacy"] {
        let r = Client::connect(gw.data_addr()).request("GET", path, &get, b"");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(tool_names(&answer_of(&r)), ["echo"], "{r:?}");
    }
    let r = Client::connect(gw.data_addr()).request("GET", "/sse/legacy", &get, b"");
    assert!(r.text().contains("data: /sse/legacy/message?t="), "{r:?}");
}

#[test]
fn default_roles_cover_a_key_without_roles() {
    let tools = mcp_server(Answer::Json);
    let gw = gateway(
        json!([server("tools", &tools.url(""))]),
        roles(),
        json!(["reader"]),
    );
    assert_eq!(list_tools(&gw, PLAIN, "tools"), ["echo"]);
    assert_refused(&call(
        &gw,
        PLAIN,
        "tools",
        &rpc("tools/call", 3, json!({"name": "search_web"})),
    ));
    // A key with roles of its own does not get the defaults on top.
    assert_eq!(list_tools(&gw, ADMIN, "tools"), TOOLS);
}

#[test]
fn a_principal_without_a_role_reaching_the_server_is_refused_even_initialize() {
    let tools = mcp_server(Answer::Json);
    let gw = gateway(json!([server("tools", &tools.url(""))]), roles(), json!([]));
    assert_refused(&call(&gw, PLAIN, "tools", &init_body(1)));
    assert_refused(&call(&gw, PLAIN, "tools", &rpc("ping", 2, json!({}))));
    assert_eq!(tools.request_count(), 0);
}

#[test]
fn a_server_policy_narrows_lists_too() {
    let tools = mcp_server(Answer::Events);
    let mut entry = server("tools", &tools.url(""));
    entry["policy"] = json!({"deny": ["tools/call:search_*", "prompts/get:secret"]});
    // With RBAC, for a role that may do anything.
    let gw = gateway(json!([entry.clone()]), roles(), json!([]));
    assert_eq!(list_tools(&gw, ADMIN, "tools"), ["echo", "delete_all"]);
    // With a policy alone (no authentication, no RBAC).
    let plain = Gateway::start(&config(json!([entry])));
    let r = fresh(
        plain.data_addr(),
        "POST",
        "/mcp/tools",
        &MCP_HEADERS,
        &rpc("prompts/list", 2, json!({})),
    );
    assert_eq!(
        answer_of(&r)["result"]["prompts"],
        json!([{"name": "greet"}]),
        "{r:?}"
    );
}

#[test]
fn a_list_answer_that_cannot_be_filtered_is_refused() {
    let garbage = Upstream::start(|req, s| {
        respond(
            s,
            req,
            200,
            &[("Content-Type", "application/json")],
            b"{\"tools\": [oops",
        );
        Flow::KeepAlive
    });
    let gw = gateway(
        json!([server("tools", &garbage.url(""))]),
        roles(),
        json!([]),
    );
    let r = call(&gw, READER, "tools", &rpc("tools/list", 2, json!({})));
    assert_json_error(&r, 502);
    assert!(!r.text().contains("oops"), "{r:?}");
    // Calls that are not lists pass as they come.
    let r = call(
        &gw,
        READER,
        "tools",
        &rpc("tools/call", 3, json!({"name": "echo"})),
    );
    assert_eq!(r.text(), "{\"tools\": [oops");
}

/// Writes the config the way editors do: a new file renamed over the old.
fn replace_config(gw: &Gateway, config: &Value) {
    let path = gw.dir.path().join("gateway.json");
    let tmp = gw.dir.path().join(".gateway.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(config).expect("json")).expect("write");
    std::fs::rename(&tmp, &path).expect("rename");
}

/// Waits until every shard runs generation `at_least` (`/info` needs the admin role).
fn wait_generation(gw: &Gateway, at_least: u64) {
    let info = || {
        let admin = [("X-API-Key", ADMIN)];
        Client::connect(gw.mgmt_addr())
            .request("GET", "/info", &admin, b"")
            .json()
    };
    let on = eventually(Duration::from_secs(5), || {
        (info()["config"]["shardsOn"].as_u64().unwrap_or(0) >= at_least).then_some(())
    });
    assert!(on.is_some(), "generation {at_least} never ran: {}", info());
}

#[test]
fn grants_follow_a_config_reload() {
    let tools = mcp_server(Answer::Json);
    let gw = gateway(json!([server("tools", &tools.url(""))]), roles(), json!([]));
    let search = rpc("tools/call", 3, json!({"name": "search_web"}));
    assert_refused(&call(&gw, READER, "tools", &search));

    let path = gw.dir.path().join("gateway.json");
    let mut cfg: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read config")).expect("json");
    cfg["security"]["rbac"]["roles"]["reader"][0]["allow"] =
        json!(["tools/list", "tools/call:echo", "tools/call:search_*"]);
    replace_config(&gw, &cfg);
    wait_generation(&gw, 2);

    let r = call(&gw, READER, "tools", &search);
    assert_eq!(
        r.json()["result"]["content"][0]["text"],
        "search_web",
        "{r:?}"
    );
    assert_eq!(list_tools(&gw, READER, "tools"), ["echo", "search_web"]);
}
