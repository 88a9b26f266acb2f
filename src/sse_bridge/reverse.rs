//! `/mcp/{id}` for servers that only speak the legacy HTTP+SSE transport: shards forward
//! such requests here as to any upstream (`{METHOD} /reverse/{upstream}`, the bridge's own
//! `Mcp-Session-Id` restored from the gateway token), and this answers them in Streamable
//! HTTP terms from a reverse session (`reverse_session`):
//! - `POST` `initialize` without a session opens one and answers with its id;
//! - `POST` with a session passes the message to the server's endpoint; requests wait for
//!   their answer on the server's stream (JSON, or an event stream when the client takes
//!   one and a notification comes first), anything else gets 202;
//! - `GET` streams server messages that belong to no request; `DELETE` ends the session.
//!
//! Every answer ends by closing (shards do not pool bridge connections).
//!
//! Owns: the Streamable HTTP side of reverse sessions. Must not: block, or trust the body.

use super::client::{self, BodyReader, Request};
use super::reverse_session::{self, error_message, key, ReverseError, ReverseSession};
use super::{head, reply, Bridge};
use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;
use monoio::time::Instant;
use serde_json::Value;
use std::future::Future;
use std::rc::Rc;

/// What a client's POST holds, as far as the bridge cares.
#[derive(Debug, Default)]
struct Kind {
    /// Each request's id and progress token (JSON text).
    requests: Vec<(String, Option<String>)>,
    initialize: bool,
    batch: bool,
}

fn classify(body: &[u8]) -> Option<Kind> {
    let value = serde_json::from_slice::<Value>(body).ok()?;
    let mut kind = Kind {
        batch: value.is_array(),
        ..Kind::default()
    };
    let messages = match &value {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    for m in messages {
        if let (Some(method), Some(id)) = (m.get("method").and_then(Value::as_str), m.get("id")) {
            let token = m
                .get("params")
                .and_then(|p| p.get("_meta"))
                .and_then(|meta| meta.get("progressToken"))
                .map(key);
            kind.requests.push((key(id), token));
            kind.initialize |= method == "initialize";
        }
    }
    Some(kind)
}

fn accepts_event_stream(req: &Request) -> bool {
    req.header("accept").is_some_and(|a| {
        a.windows(17)
            .any(|w| w.eq_ignore_ascii_case(b"text/event-stream"))
    })
}

/// Handles `{METHOD} /reverse/{upstream}`.
pub async fn handle(
    bridge: &Rc<Bridge>,
    mut stream: TcpStream,
    req: Request,
    body: BodyReader,
    upstream: &str,
    request_id: &[u8],
) {
    let upstream = upstream.parse::<usize>().ok().filter(|i| {
        bridge
            .config()
            .upstreams
            .get(*i)
            .is_some_and(|u| u.transport == mcp_gateway_config::Transport::Sse)
    });
    let Some(upstream) = upstream else {
        return reply(&mut stream, 404, "unknown server", None, request_id).await;
    };
    let session = req
        .header("mcp-session-id")
        .map(|id| bridge.reverse.get(id).filter(|s| s.upstream == upstream));
    let session = match (req.method.as_str(), session) {
        (_, Some(None)) => {
            let why = "Session not found (a bridged legacy session lives in the gateway process that opened it): initialize again";
            return reply(&mut stream, 404, why, None, request_id).await;
        }
        ("POST", session) => session.flatten(),
        (_, None) => {
            let why = "Bad Request: Mcp-Session-Id required";
            return reply(&mut stream, 400, why, None, request_id).await;
        }
        (_, Some(Some(s))) => Some(s),
    };
    match (req.method.as_str(), session) {
        ("POST", session) => post(bridge, stream, req, body, upstream, session, request_id).await,
        ("GET", Some(session)) => listen(stream, session, request_id).await,
        ("DELETE", Some(session)) => {
            session.close("the client ended the session");
            bridge.reverse.remove(&session.id);
            reply(&mut stream, 200, "", None, request_id).await;
        }
        _ => reply(&mut stream, 405, "Method Not Allowed", None, request_id).await,
    }
}

async fn post(
    bridge: &Rc<Bridge>,
    mut stream: TcpStream,
    req: Request,
    mut body: BodyReader,
    upstream: usize,
    session: Option<Rc<ReverseSession>>,
    request_id: &[u8],
) {
    let config = bridge.config();
    let limits = &config.server.limits;
    let read = body
        .read_all(&mut stream, limits.header_timeout, limits.max_body_bytes)
        .await;
    let Ok(body) = read else {
        let why = "unreadable or too large message body";
        return reply(&mut stream, 400, why, None, request_id).await;
    };
    let Some(kind) = classify(&body) else {
        let why = "Parse error: the body is not JSON";
        return reply(&mut stream, 400, why, None, request_id).await;
    };
    let timeout = bridge
        .config()
        .upstreams
        .get(upstream)
        .map_or(limits.header_timeout, |u| u.timeout);
    let deadline = Instant::now() + timeout;
    let authorization = req.header("authorization");
    let (session, opened) = match session {
        Some(s) => (s, false),
        None if kind.initialize => {
            let auth = authorization.map(<[u8]>::to_vec);
            let opened =
                reverse_session::open(&bridge.config(), &bridge.reverse, upstream, auth, deadline)
                    .await;
            match opened {
                Ok(s) => (s, true),
                Err(e) => {
                    let status = match e {
                        ReverseError::Status(503) => 503,
                        ReverseError::NoEndpoint => 504,
                        _ => 502,
                    };
                    let why = format!("cannot open the legacy server's SSE stream: {e}");
                    return reply(&mut stream, status, &why, None, request_id).await;
                }
            }
        }
        None => {
            let why = "Bad Request: no session; send initialize first";
            return reply(&mut stream, 400, why, None, request_id).await;
        }
    };
    let sse = accepts_event_stream(&req);
    let mut waits = Vec::with_capacity(kind.requests.len());
    for (id, token) in &kind.requests {
        match session.wait_for(id, token.clone(), sse) {
            Some(queue) => waits.push(queue),
            None => {
                forget(&session, &kind);
                let why = "Bad Request: a request with this id is already waiting";
                return reply(&mut stream, 409, why, None, request_id).await;
            }
        }
    }
    let config = bridge.config();
    if let Err(e) = reverse_session::post(&config, &session, &body, authorization, deadline).await {
        forget(&session, &kind);
        if opened {
            session.close("initialize failed");
            bridge.reverse.remove(&session.id);
        }
        let why = format!("the legacy server did not take the message: {e}");
        return reply(&mut stream, 502, &why, None, request_id).await;
    }
    if kind.requests.is_empty() {
        return reply(&mut stream, 202, "", None, request_id).await;
    }
    let new_session = opened.then_some(session.id.as_str());
    let answered = answer(
        &mut stream,
        &session,
        &kind,
        waits,
        sse,
        timeout,
        new_session,
    )
    .await;
    forget(&session, &kind);
    if opened && !answered {
        session.close("initialize was not answered");
        bridge.reverse.remove(&session.id);
    }
}

fn forget(session: &ReverseSession, kind: &Kind) {
    for (id, _) in &kind.requests {
        session.done(id);
    }
}

/// The answer head: JSON or an event stream, with the session id on a new session.
fn answer_head(content_type: &str, new_session: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    head(&mut out, 200, content_type, None);
    if let Some(id) = new_session {
        mcp_gateway_shard::http::encode::header(&mut out, "Mcp-Session-Id", id.as_bytes());
    }
    out
}

/// What the client's connection did while a request waited.
enum Waited {
    Message(Vec<u8>),
    TimedOut,
    ClientGone,
}

/// Waits for the next message for one of `waits` (the request's own queues), bounded by
/// `timeout` and watching for the client (the shard) to leave.
async fn next(
    stream: &mut TcpStream,
    waits: &[Rc<super::session::Queue<Vec<u8>>>],
    timeout: std::time::Duration,
) -> Waited {
    let deadline = Instant::now() + timeout;
    loop {
        let any = std::future::poll_fn(|cx| {
            for q in waits {
                let pop = std::pin::pin!(q.pop());
                if let std::task::Poll::Ready(Some(m)) = pop.poll(cx) {
                    return std::task::Poll::Ready(m);
                }
            }
            std::task::Poll::Pending
        });
        let gone = stream.readable(false);
        let sleep = monoio::time::sleep_until(deadline);
        let got = monoio::select! {
            m = any => Some(Waited::Message(m)),
            _ = sleep => Some(Waited::TimedOut),
            _ = gone => None,
        };
        if let Some(w) = got {
            return w;
        }
        // Readable: the shard closed (the client left); stray bytes are ignored.
        match stream.read(vec![0u8; 512]).await {
            (Ok(n), _) if n > 0 => {}
            _ => return Waited::ClientGone,
        }
    }
}

/// Waits for every request's response and answers the client; false when not every
/// request got its real answer (timed out, or the client left).
async fn answer(
    stream: &mut TcpStream,
    session: &ReverseSession,
    kind: &Kind,
    waits: Vec<Rc<super::session::Queue<Vec<u8>>>>,
    sse: bool,
    timeout: std::time::Duration,
    new_session: Option<&str>,
) -> bool {
    let mut left: Vec<&str> = kind.requests.iter().map(|(id, _)| id.as_str()).collect();
    let mut responses: Vec<Vec<u8>> = Vec::new();
    let mut streaming = false;
    let mut complete = true;
    while !left.is_empty() {
        let message = match next(stream, &waits, timeout).await {
            Waited::Message(m) => m,
            Waited::ClientGone => return false,
            Waited::TimedOut => {
                let why = "the legacy server did not answer in time";
                for id in left.drain(..) {
                    responses.push(error_message(id, -32603, why));
                }
                tracing::debug!(session = %session.id, "reverse-bridged request timed out");
                complete = false;
                break;
            }
        };
        let response_to = serde_json::from_slice::<Value>(&message)
            .ok()
            .filter(|m| m.get("method").is_none())
            .and_then(|m| m.get("id").map(key));
        match response_to {
            Some(id) if left.contains(&id.as_str()) => {
                left.retain(|l| *l != id);
                responses.push(message);
            }
            _ if sse => {
                // A notification (or server request) for this request: stream from now on.
                if !streaming {
                    streaming = true;
                    let mut out = answer_head("text/event-stream", new_session);
                    out.extend_from_slice(b"\r\n");
                    if client::write_all(stream, out).await.is_err() {
                        return false;
                    }
                }
                if write_events(stream, &mut responses, &message)
                    .await
                    .is_err()
                {
                    return false;
                }
            }
            _ => {}
        }
        if streaming && write_events(stream, &mut responses, b"").await.is_err() {
            return false;
        }
    }
    if streaming {
        return write_events(stream, &mut responses, b"").await.is_ok() && complete;
    }
    let body = if kind.batch {
        let mut b = b"[".to_vec();
        b.extend_from_slice(&responses.join(&b","[..]));
        b.push(b']');
        b
    } else {
        responses.pop().unwrap_or_default()
    };
    let mut out = answer_head("application/json", new_session);
    mcp_gateway_shard::http::encode::header_u64(&mut out, "Content-Length", body.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    client::write_all(stream, out).await.is_ok() && complete
}

/// Writes `extra` (if any) and then the queued responses as `message` events.
async fn write_events(
    stream: &mut TcpStream,
    responses: &mut Vec<Vec<u8>>,
    extra: &[u8],
) -> std::io::Result<()> {
    let mut out = Vec::new();
    if !extra.is_empty() {
        mcp_gateway_shard::mcp::sse_event::write_event(&mut out, "message", extra);
    }
    for r in responses.drain(..) {
        mcp_gateway_shard::mcp::sse_event::write_event(&mut out, "message", &r);
    }
    if out.is_empty() {
        return Ok(());
    }
    client::write_all(stream, out).await
}

/// `GET` with a session: server messages that belong to no request, until the session
/// ends or the client leaves. One such stream per session.
async fn listen(mut stream: TcpStream, session: Rc<ReverseSession>, request_id: &[u8]) {
    if session.listening.get() {
        let why = "Conflict: only one GET stream per session";
        return reply(&mut stream, 409, why, None, request_id).await;
    }
    session.listening.set(true);
    let mut out = answer_head("text/event-stream", None);
    out.extend_from_slice(b"X-Accel-Buffering: no\r\n\r\n");
    let mut open = client::write_all(&mut stream, out).await.is_ok();
    while open {
        let next = {
            let message = session.standalone.pop();
            let gone = stream.readable(false);
            monoio::select! {
                m = message => Some(m),
                _ = gone => None,
            }
        };
        open = match next {
            Some(Some(m)) => {
                let mut event = Vec::with_capacity(m.len() + 24);
                mcp_gateway_shard::mcp::sse_event::write_event(&mut event, "message", &m);
                client::write_all(&mut stream, event).await.is_ok()
            }
            Some(None) => false,
            None => matches!(stream.read(vec![0u8; 512]).await, (Ok(n), _) if n > 0),
        };
    }
    session.listening.set(false);
}
