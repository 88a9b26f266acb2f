//! Streamable HTTP on `/stdio/{id}`, in front of the sessions' processes: what each request
//! from a shard means and what it gets back.
//!
//! Owns: `initialize` without a session (a new process, capped by `maxProcesses`, spaced
//! by the restart backoff), POSTs of requests (answered as an event stream carrying every
//! related server message until all responses are in, or as JSON), POSTs of notifications
//! and responses only (202), the GET stream, DELETE, unknown sessions (404) and
//! `GET /health`. Must not: parse bytes of HTTP (see `http`) or touch processes (see
//! `process`, `host`).

use super::host::{Ending, Shared};
use super::http::{self, ReadError, Request};
use super::process;
use super::relay::{get, relay_stream, Answer, Exchange};
use super::session::{error_body, Outgoing, INTERNAL_ERROR};
use monoio::net::TcpStream;
use serde_json::Value;
use std::io;
use std::time::{Duration, Instant};

pub const INVALID_REQUEST: i64 = -32600;
const PARSE_ERROR: i64 = -32700;
pub const SESSION_NOT_FOUND: i64 = -32001;
const SERVER_BUSY: i64 = -32000;

pub async fn serve_connection(host: Shared, mut stream: TcpStream) {
    let max_body = host.borrow().max_line as u64;
    let mut buf = Vec::with_capacity(8192);
    let mut out = Vec::with_capacity(8192);
    loop {
        let req = match http::read_request(&mut stream, &mut buf, max_body).await {
            Ok(req) => req,
            Err(ReadError::Closed) => return,
            Err(ReadError::Refuse(status, why)) => {
                let body = error_body("null", INVALID_REQUEST, why, status);
                http::json(&mut out, status, &body, &[], true);
                let _ = http::send(&mut stream, &mut out).await;
                return;
            }
        };
        let close = !req.keep_alive;
        out.clear();
        if answer(&host, &mut stream, &mut out, req, close)
            .await
            .is_err()
            || close
        {
            return;
        }
    }
}

/// Answers one request; `Err` when the connection broke.
async fn answer(
    host: &Shared,
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    req: Request,
    close: bool,
) -> io::Result<()> {
    if req.method == "GET" && req.path == "/health" {
        let body = {
            let h = host.borrow();
            serde_json::json!({"status": "ok", "servers": h.servers.len(), "sessions": h.sessions.len()})
        };
        http::json(out, 200, body.to_string().as_bytes(), &[], close);
        return http::send(stream, out).await;
    }
    let server = host.borrow().server_for_path(&req.path);
    let Some(server) = server else {
        return refuse(
            stream,
            out,
            404,
            "null",
            INVALID_REQUEST,
            "no such stdio server",
            close,
        )
        .await;
    };
    match req.method.as_str() {
        "POST" => post(host, stream, out, server, req, close).await,
        "GET" => get(host, stream, out, server, &req, close).await,
        "DELETE" => {
            let session = match find_session(host, server, &req) {
                Ok(s) => s,
                Err((status, code, why)) => {
                    return refuse(stream, out, status, "null", code, why, close).await
                }
            };
            host.borrow_mut().end_session(&session, Ending::Deleted);
            http::empty(out, 204, &[], close);
            http::send(stream, out).await
        }
        _ => {
            http::empty(out, 405, &["Allow: GET, POST, DELETE"], close);
            http::send(stream, out).await
        }
    }
}

pub async fn refuse(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    status: u16,
    id: &str,
    code: i64,
    why: &str,
    close: bool,
) -> io::Result<()> {
    http::json(out, status, &error_body(id, code, why, status), &[], close);
    http::send(stream, out).await
}

/// The session the request names, on this server: else (status, JSON-RPC code, why).
pub fn find_session(
    host: &Shared,
    server: usize,
    req: &Request,
) -> Result<String, (u16, i64, &'static str)> {
    let Some(id) = &req.session else {
        return Err((400, INVALID_REQUEST, "Mcp-Session-Id header is required"));
    };
    match host.borrow().sessions.get(id) {
        Some(s) if s.server == server => Ok(id.clone()),
        _ => Err((404, SESSION_NOT_FOUND, "Session not found")),
    }
}

/// The client's messages of one POST, as the lines to write and the requests to await.
pub struct Batch {
    pub lines: Vec<u8>,
    pub requests: Vec<Outgoing>,
    /// The first request's id (JSON text), for errors about the whole POST.
    first_id: String,
    pub is_array: bool,
    initialize: bool,
}

fn parse_batch(body: &[u8]) -> Result<Batch, (u16, i64, &'static str)> {
    let value: Value =
        serde_json::from_slice(body).map_err(|_| (400, PARSE_ERROR, "Parse error"))?;
    let (messages, is_array) = match value {
        Value::Array(m) => (m, true),
        m @ Value::Object(_) => (vec![m], false),
        _ => return Err((400, INVALID_REQUEST, "Invalid Request")),
    };
    if messages.is_empty() || !messages.iter().all(Value::is_object) {
        return Err((400, INVALID_REQUEST, "Invalid Request"));
    }
    let mut batch = Batch {
        lines: Vec::new(),
        requests: Vec::new(),
        first_id: "null".to_string(),
        is_array,
        initialize: false,
    };
    for m in &messages {
        // Compact JSON has no raw newline, so each message is exactly one line.
        let line = serde_json::to_vec(m).map_err(|_| (400, PARSE_ERROR, "Parse error"))?;
        batch.lines.extend_from_slice(&line);
        batch.lines.push(b'\n');
        let method = m.get("method").and_then(Value::as_str);
        let id = m.get("id").filter(|id| !id.is_null());
        if let (Some(method), Some(id)) = (method, id) {
            if batch.requests.is_empty() {
                batch.first_id = id.to_string();
            }
            batch.initialize |= method == "initialize";
            batch.requests.push(Outgoing {
                id: id.to_string(),
                progress: m
                    .pointer("/params/_meta/progressToken")
                    .map(Value::to_string),
            });
        }
    }
    Ok(batch)
}

async fn post(
    host: &Shared,
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    server: usize,
    req: Request,
    close: bool,
) -> io::Result<()> {
    let batch = match parse_batch(&req.body) {
        Ok(b) => b,
        Err((status, code, why)) => {
            return refuse(stream, out, status, "null", code, why, close).await
        }
    };
    if req.session.is_none() {
        if !batch.initialize || batch.is_array {
            let why = "Mcp-Session-Id header is required (send initialize first)";
            return refuse(
                stream,
                out,
                400,
                &batch.first_id,
                INVALID_REQUEST,
                why,
                close,
            )
            .await;
        }
        return initialize(host, stream, out, server, &req, batch, close).await;
    }
    let session = match find_session(host, server, &req) {
        Ok(s) => s,
        Err((status, code, why)) => {
            return refuse(stream, out, status, &batch.first_id, code, why, close).await
        }
    };
    if batch.initialize {
        let why = "initialize is only allowed without a session";
        return refuse(
            stream,
            out,
            400,
            &batch.first_id,
            INVALID_REQUEST,
            why,
            close,
        )
        .await;
    }
    if batch.requests.is_empty() {
        let written = host
            .borrow()
            .sessions
            .get(&session)
            .is_some_and(|s| s.stdin.push(batch.lines));
        if !written {
            let why = "Session not found";
            return refuse(stream, out, 404, "null", SESSION_NOT_FOUND, why, close).await;
        }
        http::empty(out, 202, &[], close);
        return http::send(stream, out).await;
    }
    let first_id = batch.first_id.clone();
    let sse = req.accepts_sse;
    if !sse && !req.accepts_json {
        let why = "Accept must allow application/json or text/event-stream";
        return refuse(stream, out, 406, &first_id, INVALID_REQUEST, why, close).await;
    }
    let (timeout, max_timeout) = limits(host, server);
    let exchange = match Exchange::open(host, &session, batch, sse) {
        Ok(x) => x,
        Err((status, code, why)) => {
            return refuse(stream, out, status, &first_id, code, &why, close).await
        }
    };
    if sse {
        relay_stream(stream, out, &exchange, &[], max_timeout, close).await
    } else {
        let answers = exchange.collect(timeout).await;
        let status = if answers.is_some() { 200 } else { 504 };
        let body = answers.unwrap_or_else(|| {
            error_body(
                &first_id,
                INTERNAL_ERROR,
                "stdio server did not answer in time",
                504,
            )
        });
        http::json(out, status, &body, &[], close);
        http::send(stream, out).await
    }
}

fn limits(host: &Shared, server: usize) -> (Duration, Duration) {
    host.borrow()
        .servers
        .get(server)
        .map_or((Duration::from_secs(30), Duration::from_secs(600)), |s| {
            (s.timeout, s.max_timeout)
        })
}

/// `initialize` without a session: start a process, hand it the message, answer with its
/// response and the new session's id.
async fn initialize(
    host: &Shared,
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    server: usize,
    req: &Request,
    batch: Batch,
    close: bool,
) -> io::Result<()> {
    let first_id = batch.first_id.clone();
    let (timeout, _) = limits(host, server);
    let wait = host.borrow().backoff_left(server, Instant::now());
    if !wait.is_zero() {
        if wait > timeout / 2 {
            let retry = format!("Retry-After: {}", wait.as_secs().max(1));
            let why = "stdio server keeps exiting; retry later";
            let body = error_body(&first_id, SERVER_BUSY, why, 503);
            http::json(out, 503, &body, &[&retry], close);
            return http::send(stream, out).await;
        }
        monoio::time::sleep(wait).await;
    }
    let (live, max) = {
        let h = host.borrow();
        h.servers
            .get(server)
            .map_or((0, 0), |s| (s.live, s.command.max_processes))
    };
    if live >= max {
        let why = format!("stdio server has its maxProcesses ({max}) sessions running");
        let body = error_body(&first_id, SERVER_BUSY, &why, 503);
        http::json(out, 503, &body, &["Retry-After: 1"], close);
        return http::send(stream, out).await;
    }
    let session = match process::start_session(host, server) {
        Ok(s) => s,
        Err(e) => {
            let server_id = host.borrow().servers.get(server).map(|s| s.id.clone());
            tracing::error!(server = ?server_id, error = %e, "stdio server could not be started");
            host.borrow_mut().record_death(server, Duration::ZERO);
            let why = format!("stdio server could not be started: {e}");
            return refuse(stream, out, 502, &first_id, INTERNAL_ERROR, &why, close).await;
        }
    };
    let exchange = match Exchange::open(host, &session, batch, false) {
        Ok(x) => x,
        Err((status, code, why)) => {
            return refuse(stream, out, status, &first_id, code, &why, close).await
        }
    };
    let Some(event) = exchange.answer(Instant::now() + timeout).await else {
        drop(exchange);
        host.borrow_mut().end_session(&session, Ending::InitTimeout);
        let why = "stdio server did not answer initialize in time";
        return refuse(stream, out, 504, &first_id, INTERNAL_ERROR, why, close).await;
    };
    let line = match event {
        Answer::Response(line) => line,
        Answer::Failed(line) => {
            http::json(out, 502, &line, &[], close);
            return http::send(stream, out).await;
        }
    };
    let session_header = format!("Mcp-Session-Id: {session}");
    if req.accepts_json || !req.accepts_sse {
        http::json(out, 200, &line, &[&session_header], close);
        return http::send(stream, out).await;
    }
    http::stream_head(out, &[&session_header], close);
    http::event(out, &line);
    http::stream_end(out);
    http::send(stream, out).await
}
