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
use super::http::{self, Conn, ReadError, Request};
use super::process;
use super::relay::{get, relay_stream, Answer, Exchange};
use super::session::{error_body, Outgoing, INTERNAL_ERROR};
use monoio::net::TcpStream;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::io;
use std::time::{Duration, Instant};

pub const INVALID_REQUEST: i64 = -32600;
const PARSE_ERROR: i64 = -32700;
pub const SESSION_NOT_FOUND: i64 = -32001;
const SERVER_BUSY: i64 = -32000;

pub async fn serve_connection(host: Shared, stream: TcpStream) {
    let max_body = host.borrow().max_line as u64;
    let mut buf = Vec::with_capacity(8192);
    let mut conn = Conn::new(stream);
    loop {
        let req = match http::read_request(&mut conn.stream, &mut buf, max_body).await {
            Ok(req) => req,
            Err(ReadError::Closed) => return,
            Err(ReadError::Refuse(status, why)) => {
                conn.close = true;
                let _ = refuse(&mut conn, "null", (status, INVALID_REQUEST, why.into())).await;
                return;
            }
        };
        conn.close = !req.keep_alive;
        if answer(&host, &mut conn, req).await.is_err() || conn.close {
            return;
        }
    }
}

/// Why a request is refused: HTTP status, JSON-RPC error code, message.
pub type Refusal = (u16, i64, Cow<'static, str>);

/// Answers with a JSON-RPC error (`id`: JSON text) whose `data.status` is the status.
pub async fn refuse(conn: &mut Conn, id: &str, (status, code, why): Refusal) -> io::Result<()> {
    conn.json(status, &error_body(id, code, &why, status), &[])
        .await
}

/// Answers one request; `Err` when the connection broke.
async fn answer(host: &Shared, conn: &mut Conn, req: Request) -> io::Result<()> {
    if req.method == "GET" && req.path == "/health" {
        let body = {
            let h = host.borrow();
            serde_json::json!({"status": "ok", "servers": h.servers.len(), "sessions": h.sessions.len()})
        };
        return conn.json(200, body.to_string().as_bytes(), &[]).await;
    }
    let server = host.borrow().server_for_path(&req.path);
    let Some(server) = server else {
        let why = "no such stdio server".into();
        return refuse(conn, "null", (404, INVALID_REQUEST, why)).await;
    };
    match req.method.as_str() {
        "POST" => post(host, conn, server, req).await,
        "GET" => get(host, conn, server, &req).await,
        "DELETE" => match find_session(host, server, &req) {
            Ok(session) => {
                host.borrow_mut().end_session(&session, Ending::Deleted);
                conn.empty(204, &[]).await
            }
            Err(refusal) => refuse(conn, "null", refusal).await,
        },
        _ => conn.empty(405, &["Allow: GET, POST, DELETE"]).await,
    }
}

/// The session the request names, on this server.
pub fn find_session(host: &Shared, server: usize, req: &Request) -> Result<String, Refusal> {
    let Some(id) = &req.session else {
        let why = "Mcp-Session-Id header is required".into();
        return Err((400, INVALID_REQUEST, why));
    };
    match host.borrow().sessions.get(id) {
        Some(s) if s.server == server => Ok(id.clone()),
        _ => Err(not_found()),
    }
}

pub fn not_found() -> Refusal {
    (404, SESSION_NOT_FOUND, "Session not found".into())
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

fn parse_batch(body: &[u8]) -> Result<Batch, Refusal> {
    let parse_error = || (400, PARSE_ERROR, "Parse error".into());
    let is_array = body.trim_ascii_start().first() == Some(&b'[');
    let raws: Vec<&RawValue> = if is_array {
        serde_json::from_slice(body).map_err(|_| parse_error())?
    } else {
        vec![serde_json::from_slice(body).map_err(|_| parse_error())?]
    };
    let messages: Vec<Value> = raws
        .iter()
        .map(|r| serde_json::from_str(r.get()))
        .collect::<Result<_, _>>()
        .map_err(|_| parse_error())?;
    if messages.is_empty() || !messages.iter().all(Value::is_object) {
        return Err((400, INVALID_REQUEST, "Invalid Request".into()));
    }
    let mut batch = Batch {
        lines: Vec::new(),
        requests: Vec::new(),
        first_id: "null".to_string(),
        is_array,
        initialize: false,
    };
    for (m, raw) in messages.iter().zip(&raws) {
        // The client's text as it came (key order, number precision), on one line: JSON
        // strings hold no raw line ends, so any CR or LF is whitespace between tokens.
        batch.lines.extend(
            raw.get()
                .bytes()
                .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
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
                // The MCP spec: `initialize` must not be cancelled.
                cancellable: method != "initialize",
                progress: m
                    .pointer("/params/_meta/progressToken")
                    .map(Value::to_string),
            });
        }
    }
    Ok(batch)
}

async fn post(host: &Shared, conn: &mut Conn, server: usize, req: Request) -> io::Result<()> {
    let batch = match parse_batch(&req.body) {
        Ok(b) => b,
        Err(refusal) => return refuse(conn, "null", refusal).await,
    };
    let first_id = batch.first_id.clone();
    if req.session.is_none() {
        if !batch.initialize || batch.is_array {
            let why = "Mcp-Session-Id header is required (send initialize first)".into();
            return refuse(conn, &first_id, (400, INVALID_REQUEST, why)).await;
        }
        return initialize(host, conn, server, &req, batch).await;
    }
    let session = match find_session(host, server, &req) {
        Ok(s) => s,
        Err(refusal) => return refuse(conn, &first_id, refusal).await,
    };
    if batch.initialize {
        let why = "initialize is only allowed without a session".into();
        return refuse(conn, &first_id, (400, INVALID_REQUEST, why)).await;
    }
    if batch.requests.is_empty() {
        // Notifications and responses only: nothing to wait for.
        let written = host
            .borrow()
            .sessions
            .get(&session)
            .is_some_and(|s| s.stdin.push(batch.lines));
        if !written {
            return refuse(conn, "null", not_found()).await;
        }
        return conn.empty(202, &[]).await;
    }
    let sse = req.accepts_sse;
    if !sse && !req.accepts_json {
        let why = "Accept must allow application/json or text/event-stream".into();
        return refuse(conn, &first_id, (406, INVALID_REQUEST, why)).await;
    }
    let (timeout, max_timeout) = limits(host, server);
    let exchange = match Exchange::open(host, &session, batch, sse) {
        Ok(x) => x,
        Err(refusal) => return refuse(conn, &first_id, refusal).await,
    };
    if sse {
        return relay_stream(conn, &exchange, max_timeout).await;
    }
    match exchange.collect_unless_gone(conn, timeout).await? {
        Some(body) => conn.json(200, &body, &[]).await,
        None => {
            let why = "stdio server did not answer in time".into();
            refuse(conn, &first_id, (504, INTERNAL_ERROR, why)).await
        }
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
    conn: &mut Conn,
    server: usize,
    req: &Request,
    batch: Batch,
) -> io::Result<()> {
    let first_id = batch.first_id.clone();
    let (timeout, _) = limits(host, server);
    // The shard gives up on the response head after `timeout`: so does the host, backoff
    // wait included, and then stops the process nobody will use.
    let deadline = Instant::now() + timeout;
    let wait = host.borrow().backoff_left(server, Instant::now());
    if !wait.is_zero() {
        if wait > timeout / 2 {
            let retry = format!("Retry-After: {}", wait.as_secs().max(1));
            let why = "stdio server keeps exiting; retry later";
            let body = error_body(&first_id, SERVER_BUSY, why, 503);
            return conn.json(503, &body, &[&retry]).await;
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
        return conn.json(503, &body, &["Retry-After: 1"]).await;
    }
    let session = match process::start_session(host, server) {
        Ok(s) => s,
        Err(e) => {
            let server_id = host.borrow().servers.get(server).map(|s| s.id.clone());
            tracing::error!(server = ?server_id, error = %e, "stdio server could not be started");
            host.borrow_mut().record_death(server, Duration::ZERO);
            let why = format!("stdio server could not be started: {e}").into();
            return refuse(conn, &first_id, (502, INTERNAL_ERROR, why)).await;
        }
    };
    let exchange = match Exchange::open(host, &session, batch, false) {
        Ok(x) => x,
        Err(refusal) => return refuse(conn, &first_id, refusal).await,
    };
    let line = match exchange.answer(deadline).await {
        Some(Answer::Response(line)) => line,
        // The process died first: the error in its place says how.
        Some(Answer::Failed(line)) => return conn.json(502, &line, &[]).await,
        None => {
            drop(exchange);
            host.borrow_mut().end_session(&session, Ending::InitTimeout);
            let why = "stdio server did not answer initialize in time".into();
            return refuse(conn, &first_id, (504, INTERNAL_ERROR, why)).await;
        }
    };
    let session_header = format!("Mcp-Session-Id: {session}");
    if req.accepts_json || !req.accepts_sse {
        return conn.json(200, &line, &[&session_header]).await;
    }
    conn.stream_head(&[&session_header]);
    conn.event(&line);
    conn.stream_end();
    conn.send().await
}

#[cfg(test)]
mod tests {
    use super::parse_batch;

    #[test]
    fn messages_reach_stdin_as_the_client_wrote_them_one_per_line() {
        let body = b"[{\"jsonrpc\": \"2.0\",\n \"method\": \"tools/call\", \"id\": 1,\n \"params\": {\"z\": 1, \"a\": 12345678901234567890123, \"t\": \"x\\ny\"}},\r\n {\"method\": \"notifications/initialized\", \"jsonrpc\": \"2.0\"}]";
        let Ok(batch) = parse_batch(body) else {
            panic!("a valid batch was refused");
        };
        let text = String::from_utf8(batch.lines).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        // Key order and the big integer are kept; the escaped newline in a string stays.
        assert!(
            lines[0].contains("{\"z\": 1, \"a\": 12345678901234567890123, \"t\": \"x\\ny\"}"),
            "{text}"
        );
        assert!(lines[1].starts_with("{\"method\""), "{text}");
        assert!(batch.is_array);
        assert_eq!(batch.requests.len(), 1);
        assert!(parse_batch(b"[]").is_err());
        assert!(parse_batch(b"[1]").is_err());
        assert!(parse_batch(b"{").is_err());
        assert!(parse_batch(b"  {\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":\"a\"}").is_ok());
    }
}
