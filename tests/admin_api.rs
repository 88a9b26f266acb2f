//! The admin API on the management port (`/api`): servers added, drained and removed at
//! run time (a long stream on a removed server finishes), whole configs replaced or
//! refused with their error list, dry runs, `?persist=true`, secrets redacted, the
//! bearer token, and bodies that lie about their framing.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

const TOKEN: &str = "admin-token-for-tests-0123456789";

fn gateway(servers: Value) -> Gateway {
    let mut cfg = config(servers);
    cfg["sessions"] =
        json!({"adminToken": TOKEN, "secret": "a-session-secret-that-is-long-enough-0123"});
    Gateway::start_env(&cfg, &[], &["ADMIN_TOKEN"])
}

/// One API call with the token; (status, JSON body).
fn api(gw: &Gateway, method: &str, target: &str, body: Option<&Value>) -> (u16, Value) {
    let auth = format!("Bearer {TOKEN}");
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    let mut headers = vec![("Authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let r = Client::connect(gw.mgmt_addr()).request(method, target, &headers, text.as_bytes());
    let v = if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    };
    (r.status, v)
}

fn mcp_get(gw: &Gateway, id: &str) -> Response {
    gw.client().request(
        "POST",
        &format!("/mcp/{id}"),
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
}

fn json_upstream(body: &'static str) -> Upstream {
    Upstream::start(move |req, s| {
        respond(
            s,
            req,
            200,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        Flow::KeepAlive
    })
}

fn ids(list: &Value) -> Vec<String> {
    list["upstreams"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_server_added_answers_at_once_and_a_removed_one_drains_its_stream_first() {
    let a = json_upstream(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
    // A server whose event stream runs for about two seconds.
    let streaming = Upstream::start(|req, s| {
        if req.method == "GET" {
            let _ = respond_chunked_head(s, 200, &[("Content-Type", "text/event-stream")]);
            for i in 0..10 {
                let event = format!("id: {i}\ndata: {{\"n\":{i}}}\n\n");
                if write_chunk(s, event.as_bytes()).is_err() {
                    return Flow::Close;
                }
                thread::sleep(Duration::from_millis(200));
            }
            let _ = write_chunk(s, b"");
            return Flow::KeepAlive;
        }
        respond(
            s,
            req,
            200,
            &[("Content-Type", "application/json")],
            br#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        );
        Flow::KeepAlive
    });
    let gw = gateway(json!([server("a", &a.url("/mcp"))]));
    assert_json_error(&mcp_get(&gw, "s"), 404);

    let (status, body) = api(
        &gw,
        "POST",
        "/api/upstreams",
        Some(&json!({"id": "s", "url": streaming.url("/mcp")})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["reload"]["servers"]["added"], json!(["s"]), "{body}");
    // Answered means in force on every shard.
    assert_eq!(mcp_get(&gw, "s").status, 200);
    let (status, again) = api(
        &gw,
        "POST",
        "/api/upstreams",
        Some(&json!({"id": "s", "url": streaming.url("/mcp")})),
    );
    assert_eq!(status, 409, "{again}");

    // A long stream on it, then DELETE while it runs.
    let mut stream = TcpStream::connect(gw.data_addr()).expect("connect");
    stream
        .write_all(b"GET /mcp/s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        .expect("send");
    thread::sleep(Duration::from_millis(300));
    let (status, removed) = api(&gw, "DELETE", "/api/upstreams/s", None);
    assert_eq!(status, 202, "{removed}");
    assert_json_error(&mcp_get(&gw, "s"), 404);
    let (_, list) = api(&gw, "GET", "/api/upstreams", None);
    let entry = list["upstreams"]
        .as_array()
        .and_then(|a| a.iter().find(|u| u["id"] == "s"))
        .cloned();
    let entry = entry.unwrap_or_else(|| {
        let mut b = [0u8; 2048];
        let n = stream.read(&mut b).unwrap_or(0);
        panic!(
            "a draining server is listed: {list} stream: {}",
            String::from_utf8_lossy(&b[..n])
        )
    });
    assert_eq!(entry["state"], "removing", "{list}");
    assert_eq!(entry["inFlight"], 1, "{list}");
    // The stream runs to its end: all ten events, then the chunked terminator.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"0\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("\"n\":9") && text.ends_with("0\r\n\r\n"),
        "the stream was cut: {text}"
    );
    drop(stream);
    let gone = eventually(Duration::from_secs(5), || {
        let (_, list) = api(&gw, "GET", "/api/upstreams", None);
        (ids(&list) == ["a"]).then_some(())
    });
    assert!(gone.is_some(), "the drained server stayed listed");
    assert!(gw.logs.text().contains("removed server drained"));
    let (status, _) = api(&gw, "DELETE", "/api/upstreams/s", None);
    assert_eq!(status, 404);
    // Every change is logged with who made it.
    let logs = gw.logs.text();
    assert!(
        logs.contains("admin API POST /api/upstreams (s) from 127.0.0.1"),
        "{logs}"
    );
    assert!(
        logs.contains("admin API DELETE /api/upstreams/s from 127.0.0.1"),
        "{logs}"
    );
}

#[test]
fn patch_changes_settings_and_drains_without_a_restart() {
    let a = json_upstream(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
    let gw = gateway(json!([server("a", &a.url("/mcp"))]));
    let (status, body) = api(
        &gw,
        "PATCH",
        "/api/upstreams/a",
        Some(&json!({"weight": 7, "timeout": 1234})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reload"]["servers"]["changed"], json!(["a"]), "{body}");
    let (_, one) = api(&gw, "GET", "/api/upstreams/a", None);
    assert_eq!(
        (one["weight"].clone(), one["timeout"].clone()),
        (json!(7), json!(1234)),
        "{one}"
    );

    let (status, body) = api(
        &gw,
        "PATCH",
        "/api/upstreams/a",
        Some(&json!({"draining": true})),
    );
    assert_eq!(status, 200, "{body}");
    assert_json_error(&mcp_get(&gw, "a"), 503);
    assert_eq!(
        api(&gw, "GET", "/api/upstreams/a", None).1["state"],
        "draining"
    );
    api(
        &gw,
        "PATCH",
        "/api/upstreams/a",
        Some(&json!({"draining": false})),
    );
    assert_eq!(mcp_get(&gw, "a").status, 200);

    for bad in [
        json!({"url": "http://elsewhere/"}),
        json!({"draining": "yes"}),
        json!([1]),
    ] {
        let (status, body) = api(&gw, "PATCH", "/api/upstreams/a", Some(&bad));
        assert_eq!(status, 400, "{bad} -> {body}");
    }
    let (status, body) = api(
        &gw,
        "PATCH",
        "/api/upstreams/a",
        Some(&json!({"weight": -3})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["errors"].to_string().contains("weight"), "{body}");
    assert_eq!(
        api(
            &gw,
            "PATCH",
            "/api/upstreams/zzz",
            Some(&json!({"weight": 1}))
        )
        .0,
        404
    );
}

#[test]
fn put_config_applies_a_whole_config_or_refuses_it_with_every_error() {
    let (a, b) = (Upstream::fixed("a"), Upstream::fixed("b"));
    let gw = gateway(json!([server("a", &a.url("/"))]));
    let (_, before) = api(&gw, "GET", "/api/config", None);
    let generation = before["generation"].as_u64().unwrap_or(0);
    // Secrets never leave.
    let shown = before.to_string();
    assert!(
        !shown.contains(TOKEN) && !shown.contains("a-session-secret"),
        "{shown}"
    );

    let mut bad = config(json!([server("b", &b.url("/")), server("b", &b.url("/"))]));
    bad["server"]["limits"] = json!({"maxHeaderBytes": 1});
    let (status, body) = api(&gw, "PUT", "/api/config", Some(&bad));
    assert_eq!(status, 400, "{body}");
    let errors = body["errors"].as_array().map(Vec::len).unwrap_or(0);
    assert!(errors >= 2, "every error is listed: {body}");
    let (status, body) = api(&gw, "POST", "/api/config/validate", Some(&bad));
    assert_eq!(
        (status, body["errors"].as_array().map(Vec::len).unwrap_or(0)),
        (400, errors)
    );
    assert_eq!(gw.get("/x").text(), "a", "a refused config changed nothing");

    let good = config(json!([server("b", &b.url("/"))]));
    let (status, body) = api(&gw, "POST", "/api/config/validate", Some(&good));
    assert_eq!(
        (status, body["valid"].clone()),
        (200, json!(true)),
        "{body}"
    );
    assert_eq!(gw.get("/x").text(), "a", "a dry run changed something");
    let (status, body) = api(&gw, "PUT", "/api/config", Some(&good));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reload"]["servers"]["removed"], json!(["a"]), "{body}");
    assert_eq!(gw.get("/x").text(), "b");
    let (_, after) = api(&gw, "GET", "/api/config", None);
    assert_eq!(after["generation"].as_u64(), Some(generation + 1));
    // Not persisted: the file still holds the first config, and its watch does not undo the
    // change (its bytes did not change).
    let file = std::fs::read_to_string(gw.dir.path().join("gateway.json")).expect("read");
    assert!(file.contains(&a.url("/")));
}

#[test]
fn persist_writes_the_file_atomically_and_keeps_the_previous_one() {
    let (a, b) = (Upstream::fixed("a"), Upstream::fixed("b"));
    let gw = gateway(json!([server("a", &a.url("/"))]));
    let path = gw.dir.path().join("gateway.json");
    let before = std::fs::read_to_string(&path).expect("read");
    let (status, body) = api(
        &gw,
        "POST",
        "/api/upstreams?persist=true",
        Some(&json!({"id": "b", "url": b.url("/")})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["persisted"],
        json!(path.display().to_string()),
        "{body}"
    );
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    assert_eq!(written["upstream"]["servers"][1]["id"], "b", "{written}");
    assert_eq!(
        std::fs::read_to_string(gw.dir.path().join("gateway.json.bak")).expect("bak"),
        before
    );
    // The gateway reads its own write as no change.
    thread::sleep(Duration::from_millis(600));
    let (_, cfg) = api(&gw, "GET", "/api/config", None);
    assert_eq!(cfg["generation"], 2, "{cfg}");
    assert_eq!(gw.client().get("/mcp/b").status, 200);
}

#[test]
fn the_api_needs_the_token_and_refuses_lying_bodies() {
    let a = Upstream::fixed("a");
    let gw = gateway(json!([server("a", &a.url("/"))]));
    let mgmt = gw.mgmt_addr();
    // The OpenAPI document is public; everything else needs the token.
    let doc = Client::connect(mgmt).get("/api/openapi.json");
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert_eq!(Client::connect(mgmt).get("/api/config").status, 401);
    let wrong = Client::connect(mgmt).request(
        "GET",
        "/api/upstreams",
        &[("Authorization", "Bearer nope")],
        b"",
    );
    assert_eq!(wrong.status, 401);
    // Every documented route is served.
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        let path = path.replace("{id}", "a");
        for method in ops.as_object().expect("ops").keys().filter(|m| *m == "get") {
            let (status, body) = api(&gw, &method.to_uppercase(), &path, None);
            assert_eq!(status, 200, "{method} {path}: {body}");
        }
    }
    assert_eq!(api(&gw, "GET", "/api/nothing", None).0, 404);
    assert_eq!(api(&gw, "PUT", "/api/upstreams", None).0, 405);

    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let raw = |request: String| {
        let mut c = Client::connect(mgmt);
        c.send(request.as_bytes());
        c.read_response().expect("an answer")
    };
    let r = raw(format!(
        "PUT /api/config HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 99999999999\r\n\r\n"
    ));
    assert_json_error(&r, 413);
    let r = raw(format!("PUT /api/config HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"));
    assert_json_error(&r, 411);
    let r = raw(format!(
        "POST /api/upstreams HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5\r\n\r\nnot j"
    ));
    assert_json_error(&r, 400);
    // A body that never comes: the connection is closed at the header timeout, and the
    // API keeps answering others.
    let mut slow = Client::connect(mgmt);
    slow.send(
        format!("PUT /api/config HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 100\r\n\r\n{{")
            .as_bytes(),
    );
    assert_eq!(api(&gw, "GET", "/api/upstreams", None).0, 200);
    assert_eq!(gw.get("/x").status, 200);
}

#[test]
fn without_the_token_no_body_is_read_and_persist_never_overwrites_an_edit() {
    let (a, b) = (Upstream::fixed("a"), Upstream::fixed("b"));
    let gw = gateway(json!([server("a", &a.url("/"))]));
    // A huge body announced without the token is refused from its head alone.
    let mut c = Client::connect(gw.mgmt_addr());
    c.send(b"PUT /api/config HTTP/1.1\r\nHost: x\r\nContent-Length: 8000000\r\n\r\n{");
    let r = c.read_response().expect("an answer before the body");
    assert_json_error(&r, 401);
    assert!(c.closed_within(std::time::Duration::from_secs(2)));

    // An edit on disk the gateway has not read yet (it is invalid, so it was refused) is
    // not overwritten by ?persist=true.
    let path = gw.dir.path().join("gateway.json");
    std::fs::write(&path, "{ this is being edited").expect("write");
    thread::sleep(Duration::from_millis(600));
    let (status, body) = api(
        &gw,
        "POST",
        "/api/upstreams?persist=true",
        Some(&json!({"id": "b", "url": b.url("/")})),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        "{ this is being edited"
    );
}

#[test]
fn a_drained_server_keeps_its_sessions_but_takes_no_new_ones() {
    // A Streamable HTTP server that opens sessions.
    let sessions = Upstream::start(|req, s| {
        let headers = [
            ("Content-Type", "application/json"),
            ("Mcp-Session-Id", "upstream-session-1"),
        ];
        respond(
            s,
            req,
            200,
            &headers,
            br#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        );
        Flow::KeepAlive
    });
    let gw = gateway(json!([server("s", &sessions.url("/mcp"))]));
    let init = mcp_get(&gw, "s");
    assert_eq!(init.status, 200);
    let token = init
        .header("mcp-session-id")
        .expect("a session token")
        .to_string();
    api(
        &gw,
        "PATCH",
        "/api/upstreams/s",
        Some(&json!({"draining": true})),
    );
    let resumed = gw.client().request(
        "POST",
        "/mcp/s",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("Mcp-Session-Id", &token),
        ],
        br#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
    );
    assert_eq!(
        resumed.status, 200,
        "a session on a drained server goes on: {resumed:?}"
    );
    assert_json_error(&mcp_get(&gw, "s"), 503);
}

#[test]
fn a_server_added_is_reachable_at_once_through_the_legacy_sse_bridge_too() {
    let a = json_upstream(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
    let fresh = json_upstream(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
    let gw = gateway(json!([server("a", &a.url("/mcp"))]));
    let (status, body) = api(
        &gw,
        "POST",
        "/api/upstreams",
        Some(&json!({"id": "fresh", "url": fresh.url("/mcp")})),
    );
    assert_eq!(status, 201, "{body}");
    // A legacy (2024-11-05) client of the new Streamable HTTP server: the bridge opens its
    // session and names the message endpoint first thing.
    let mut c = Client::connect(gw.data_addr());
    c.send(b"GET /sse/fresh HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n");
    let head = c.read_head().expect("a response head");
    assert_eq!(head.status, 200, "{head:?}");
    let first = c.conn.read_until(b"\n\n").expect("the endpoint event");
    let text = String::from_utf8_lossy(&first);
    assert!(text.contains("event: endpoint"), "{text}");
}
