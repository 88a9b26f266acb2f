//! One mock MCP server connection: HTTP/1.1 keep-alive, JSON-RPC over Streamable HTTP.
//!
//! Owns: the mock's answers. Must not: be clever: it is a well-behaved, predictable peer.

use mcp_gateway_shard::http::encode;
use mcp_gateway_shard::http::request;
use mcp_gateway_shard::http::BodyFraming;
use mcp_gateway_shard::relay::{read_append, write_all};
use monoio::net::TcpStream;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

const MAX_BODY: u64 = 4 * 1024 * 1024;
const LATEST_PROTOCOL: &str = "2025-06-18";

#[derive(Default)]
pub struct Sessions {
    /// (server number, session id): each mock server knows only the sessions it issued.
    live: HashSet<(usize, String)>,
    next: u64,
}

struct Request {
    method: String,
    path: String,
    session: Option<String>,
    accepts_sse: bool,
    body: Vec<u8>,
}

enum Reply {
    Json {
        status: u16,
        body: Vec<u8>,
        session: Option<String>,
    },
    Empty(u16),
    Stream(Vec<Value>),
}

pub async fn serve_connection(
    number: usize,
    mut stream: TcpStream,
    sessions: Rc<RefCell<Sessions>>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(8192);
    loop {
        let request = match read_request(&mut stream, &mut buf).await {
            Some(Ok(r)) => r,
            Some(Err(status)) => {
                let body = encode::error_body(status, "bad request", b"");
                write_json(&mut out, status, &body, None, true);
                let _ = write_all(&mut stream, &mut out).await;
                return;
            }
            None => return,
        };
        let reply = answer(number, &request, &sessions);
        out.clear();
        match reply {
            Reply::Json {
                status,
                body,
                session,
            } => write_json(&mut out, status, &body, session.as_deref(), false),
            Reply::Empty(status) => {
                write_json(&mut out, status, b"", None, false);
            }
            Reply::Stream(events) => {
                if stream_events(&mut stream, &mut out, events).await.is_err() {
                    return;
                }
                continue;
            }
        }
        if write_all(&mut stream, &mut out).await.is_err() {
            return;
        }
    }
}

async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Result<Request, u16>> {
    loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            match request::parse(buf, &mut headers) {
                Ok(Some(head)) => {
                    let header = |name: &str| {
                        head.headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value).into_owned())
                    };
                    let len = match head.framing {
                        BodyFraming::Empty => 0,
                        BodyFraming::Length(n) if n <= MAX_BODY => n as usize,
                        _ => return Some(Err(411)),
                    };
                    Some((
                        head.head_len,
                        len,
                        Request {
                            method: head.method.to_string(),
                            path: head.path().to_string(),
                            session: header("mcp-session-id"),
                            accepts_sse: header("accept")
                                .is_some_and(|a| a.contains("text/event-stream")),
                            body: Vec::new(),
                        },
                    ))
                }
                Ok(None) => None,
                Err(_) => return Some(Err(400)),
            }
        };
        match parsed {
            Some((head_len, body_len, mut req)) if buf.len() >= head_len + body_len => {
                req.body = buf[head_len..head_len + body_len].to_vec();
                buf.drain(..head_len + body_len);
                return Some(Ok(req));
            }
            _ => {}
        }
        if buf.len() > 64 * 1024 + MAX_BODY as usize {
            return Some(Err(413));
        }
        match read_append(stream, buf, 8192).await {
            Ok(n) if n > 0 => {}
            _ => return None,
        }
    }
}

fn answer(number: usize, req: &Request, sessions: &Rc<RefCell<Sessions>>) -> Reply {
    if req.method == "GET" && req.path == "/health" {
        return Reply::Json {
            status: 200,
            body: json!({"status": "ok", "server": number})
                .to_string()
                .into_bytes(),
            session: None,
        };
    }
    if let Some(id) = &req.session {
        if !sessions.borrow().live.contains(&(number, id.clone())) {
            return rpc_error(404, Value::Null, -32001, "Session not found");
        }
    }
    match req.method.as_str() {
        "DELETE" => {
            if let Some(id) = &req.session {
                sessions.borrow_mut().live.remove(&(number, id.clone()));
            }
            Reply::Empty(200)
        }
        "GET" => Reply::Empty(405),
        "POST" => {
            if let Some(body) = fast_echo_call(&req.body) {
                return Reply::Json {
                    status: 200,
                    body,
                    session: None,
                };
            }
            let Ok(message) = serde_json::from_slice::<Value>(&req.body) else {
                return rpc_error(400, Value::Null, -32700, "Parse error");
            };
            if let Value::Array(batch) = message {
                let replies: Vec<Value> = batch
                    .iter()
                    .filter_map(|m| rpc(number, m, sessions).0)
                    .collect();
                if replies.is_empty() {
                    return Reply::Empty(202);
                }
                return json_reply(Value::Array(replies), None);
            }
            let wants_progress = message.pointer("/params/_meta/progressToken").cloned();
            let (reply, session) = rpc(number, &message, sessions);
            match (reply, wants_progress) {
                (None, _) => Reply::Empty(202),
                (Some(result), Some(token))
                    if req.accepts_sse && message["method"] == "tools/call" =>
                {
                    let mut events: Vec<Value> = (1..=3)
                        .map(|i| {
                            json!({"jsonrpc": "2.0", "method": "notifications/progress",
                                   "params": {"progressToken": token, "progress": i, "total": 3}})
                        })
                        .collect();
                    events.push(result);
                    Reply::Stream(events)
                }
                (Some(result), _) => json_reply(result, session),
            }
        }
        _ => Reply::Empty(405),
    }
}

#[derive(serde::Deserialize)]
struct CallIn<'a> {
    #[serde(borrow)]
    id: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(borrow)]
    params: Option<CallParams<'a>>,
}

#[derive(serde::Deserialize)]
struct CallParams<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    arguments: Option<EchoArguments<'a>>,
    #[serde(rename = "_meta", borrow)]
    meta: Option<&'a serde_json::value::RawValue>,
}

#[derive(serde::Deserialize)]
struct EchoArguments<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

/// The common `tools/call` of `echo` without progress, answered without building a JSON tree:
/// the fleet shares a core with the load generator in benchmarks, so it must stay cheap.
fn fast_echo_call(body: &[u8]) -> Option<Vec<u8>> {
    let call: CallIn<'_> = serde_json::from_slice(body).ok()?;
    let params = call.params?;
    if call.method != "tools/call" || params.name != "echo" || params.meta.is_some() {
        return None;
    }
    let id = call.id?;
    let text = params.arguments.and_then(|a| a.text).unwrap_or_default();
    let mut out = Vec::with_capacity(96 + text.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.get().as_bytes());
    out.extend_from_slice(br#","result":{"content":[{"type":"text","text":"#);
    encode::json_string(&mut out, text.as_bytes());
    out.extend_from_slice(br#"}],"isError":false}}"#);
    Some(out)
}

/// Answers one JSON-RPC message; `None` for notifications and responses.
fn rpc(
    number: usize,
    m: &Value,
    sessions: &Rc<RefCell<Sessions>>,
) -> (Option<Value>, Option<String>) {
    let Some(id) = m.get("id").cloned() else {
        return (None, None);
    };
    let Some(method) = m.get("method").and_then(Value::as_str) else {
        return (None, None);
    };
    let ok = |result: Value| Some(json!({"jsonrpc": "2.0", "id": id, "result": result}));
    match method {
        "initialize" => {
            let version = m
                .pointer("/params/protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or(LATEST_PROTOCOL);
            let mut s = sessions.borrow_mut();
            s.next += 1;
            let session = format!(
                "mock-{number}-{:016x}",
                s.next.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            );
            s.live.insert((number, session.clone()));
            (
                ok(json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": format!("mock-mcp-{number}"), "version": "1.0.0"},
                })),
                Some(session),
            )
        }
        "ping" => (ok(json!({})), None),
        "tools/list" => (
            ok(json!({"tools": [{
                "name": "echo",
                "description": "Echoes its text back",
                "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
            }]})),
            None,
        ),
        "tools/call" => {
            let name = m
                .pointer("/params/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if name != "echo" {
                return (
                    Some(
                        json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": format!("Unknown tool: {name}")}}),
                    ),
                    None,
                );
            }
            let text = m
                .pointer("/params/arguments/text")
                .and_then(Value::as_str)
                .unwrap_or("");
            (
                ok(json!({"content": [{"type": "text", "text": text}], "isError": false})),
                None,
            )
        }
        _ => (
            Some(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!("Method not found: {method}")}}),
            ),
            None,
        ),
    }
}

fn json_reply(v: Value, session: Option<String>) -> Reply {
    Reply::Json {
        status: 200,
        body: v.to_string().into_bytes(),
        session,
    }
}

fn rpc_error(status: u16, id: Value, code: i64, message: &str) -> Reply {
    Reply::Json {
        status,
        body: json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            .to_string()
            .into_bytes(),
        session: None,
    }
}

fn write_json(out: &mut Vec<u8>, status: u16, body: &[u8], session: Option<&str>, close: bool) {
    out.clear();
    let session_line = session.map(|s| format!("Mcp-Session-Id: {s}"));
    let extra: Vec<&str> = session_line.iter().map(String::as_str).collect();
    encode::local_response(
        out,
        b"",
        &encode::LocalResponse {
            status,
            content_type: "application/json",
            body,
            close,
            request_id: b"",
            extra: &extra,
            security: &[],
        },
    );
}

/// An SSE response in chunked encoding: each event is written as soon as it is ready.
async fn stream_events(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    events: Vec<Value>,
) -> std::io::Result<()> {
    out.clear();
    out.extend_from_slice(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    write_all(stream, out).await?;
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            monoio::time::sleep(Duration::from_millis(50)).await;
        }
        let payload = format!("id: {}\nevent: message\ndata: {}\n\n", i + 1, event);
        out.clear();
        out.extend_from_slice(format!("{:x}\r\n{payload}\r\n", payload.len()).as_bytes());
        write_all(stream, out).await?;
    }
    out.clear();
    out.extend_from_slice(b"0\r\n\r\n");
    write_all(stream, out).await
}
