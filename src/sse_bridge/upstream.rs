//! The Streamable HTTP side of a bridged session: each message the legacy client POSTs goes
//! to the server as a POST (in the order they came), and every JSON-RPC message in the
//! answers (a JSON body or an event stream) goes to the client's SSE stream. After
//! initialization the server's GET stream (if it offers one) brings server-initiated
//! messages; when the client's stream ends, a DELETE ends the upstream session.
//!
//! Owns: the upstream session id and negotiated protocol version of each session, and the
//! requests the bridge makes. Must not: write to the client's socket (it queues events).

use super::client::{self, BodyReader, Head};
use super::session::{Incoming, Session};
use mcp_gateway_config::{GatewayConfig, Upstream};
use mcp_gateway_shard::http::encode;
use mcp_gateway_shard::mcp::sse_event::{Decoder, MAX_EVENT_BYTES};
use mcp_gateway_shard::mcp::stateless::{self, BodyCheck};
use monoio::net::TcpStream;
use monoio::time::Instant;
use serde_json::{json, Value};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// How long the DELETE that ends an upstream session may take.
const DELETE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before the server's GET stream is opened again after it ended.
const RELISTEN_PAUSE: Duration = Duration::from_secs(1);
/// Failed attempts at opening the GET stream before the bridge stops trying.
const MAX_LISTEN_FAILURES: u32 = 3;
/// Largest JSON answer taken from a server.
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

/// What a posted message is, as far as the bridge cares.
#[derive(Debug, Default)]
struct Kind {
    /// Ids of the requests in it (answers are owed to these).
    ids: Vec<Value>,
    initialize: bool,
    initialized: bool,
}

fn classify(body: &[u8]) -> Kind {
    let mut kind = Kind::default();
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return kind;
    };
    let messages = match &value {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    for m in messages {
        let method = m.get("method").and_then(Value::as_str);
        match (method, m.get("id")) {
            (Some(method), Some(id)) => {
                kind.ids.push(id.clone());
                kind.initialize |= method == "initialize";
            }
            (Some("notifications/initialized"), None) => kind.initialized = true,
            _ => {}
        }
    }
    kind
}

/// The session's sender: passes the client's messages to the server one after another.
pub async fn sender(session: Rc<Session>, config: Arc<GatewayConfig>) {
    while let Some(message) = session.to_upstream.pop().await {
        post(&session, &config, message).await;
    }
}

fn upstream_of<'c>(config: &'c GatewayConfig, session: &Session) -> Option<&'c Upstream> {
    config.upstreams.get(session.upstream)
}

/// A request head for the server, with the session's id, protocol version and credentials.
fn request_head(
    method: &str,
    upstream: &Upstream,
    session: &Session,
    accept: &str,
    authorization: Option<&[u8]>,
    last_event_id: Option<&[u8]>,
    body_len: Option<usize>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    let path = if upstream.base_path.is_empty() {
        "/"
    } else {
        upstream.base_path.as_str()
    };
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    encode::header(&mut out, "Host", upstream.authority.as_bytes());
    encode::header(&mut out, "Accept", accept.as_bytes());
    if let Some(len) = body_len {
        encode::header(&mut out, "Content-Type", b"application/json");
        encode::header_u64(&mut out, "Content-Length", len as u64);
    }
    if let Some(id) = session.upstream_session.borrow().as_deref() {
        encode::header(&mut out, "Mcp-Session-Id", id);
    }
    if let Some(v) = session.protocol_version.borrow().as_deref() {
        encode::header(&mut out, "MCP-Protocol-Version", v.as_bytes());
    }
    if let Some(id) = last_event_id {
        encode::header(&mut out, "Last-Event-ID", id);
    }
    let configured = |name: &str| {
        upstream
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    if let Some(auth) = authorization.filter(|_| upstream.forward_auth) {
        if !configured("authorization") {
            encode::header(&mut out, "Authorization", auth);
        }
    }
    for (name, value) in &upstream.headers {
        encode::header(&mut out, name, value.as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out
}

/// Connects and sends one request; the answer is read by the caller.
async fn send(
    upstream: &Upstream,
    head: Vec<u8>,
    body: &[u8],
    deadline: Instant,
) -> std::io::Result<TcpStream> {
    let mut stream = client::connect(upstream.addr, deadline).await?;
    let mut bytes = head;
    bytes.extend_from_slice(body);
    match monoio::time::timeout_at(deadline, client::write_all(&mut stream, bytes)).await {
        Ok(r) => r?,
        Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
    }
    Ok(stream)
}

async fn post(session: &Rc<Session>, config: &Arc<GatewayConfig>, message: Incoming) {
    let Some(upstream) = upstream_of(config, session) else {
        return;
    };
    let kind = classify(&message.body);
    if !upstream.policy.is_empty() {
        // The server's policy holds on this path too (shards check it on `/mcp/{id}`).
        let check = BodyCheck {
            method: None,
            name: None,
            roles: None,
        };
        if let Err(e) = stateless::check_body(&message.body, &check, &upstream.policy) {
            return fail_with(session, &kind, e.jsonrpc_code(), &e.to_string());
        }
    }
    let deadline = Instant::now() + upstream.timeout;
    let head = request_head(
        "POST",
        upstream,
        session,
        "application/json, text/event-stream",
        message.authorization.as_deref(),
        None,
        Some(message.body.len()),
    );
    let stream = match send(upstream, head, &message.body, deadline).await {
        Ok(s) => s,
        Err(e) => {
            return fail(
                session,
                &kind,
                &format!("upstream `{}` unreachable: {e}", upstream.id),
            )
        }
    };
    if kind.ids.is_empty() || kind.initialize {
        // Notifications are answered at once; `initialize` must finish before anything
        // else goes (it brings the session id).
        answer(session, config, stream, kind, deadline).await;
    } else {
        // Requests run side by side: a long tool call must not hold up the next message.
        let (session, config) = (session.clone(), config.clone());
        monoio::spawn(async move { answer(&session, &config, stream, kind, deadline).await });
    }
}

/// Reads the server's answer to a POST and passes on the messages in it.
async fn answer(
    session: &Rc<Session>,
    config: &Arc<GatewayConfig>,
    mut stream: TcpStream,
    kind: Kind,
    deadline: Instant,
) {
    let Some(upstream) = upstream_of(config, session) else {
        return;
    };
    let (head, mut body) = match client::read_response(&mut stream, deadline).await {
        Ok(r) => r,
        Err(e) => return fail(session, &kind, &format!("upstream `{}`: {e}", upstream.id)),
    };
    let ok = (200..300).contains(&head.status);
    if ok && kind.initialize {
        if let Some(id) = head.header("mcp-session-id") {
            *session.upstream_session.borrow_mut() = Some(id.to_vec());
        }
    }
    if ok && head.event_stream {
        let hard = Instant::now() + upstream.max_timeout;
        relay_events(session, &mut stream, &mut body, kind.initialize, Some(hard)).await;
    } else {
        match body
            .read_all(&mut stream, upstream.timeout, MAX_ANSWER)
            .await
        {
            Ok(text) if ok => {
                if is_jsonrpc(&text) {
                    deliver(session, &text, kind.initialize);
                }
            }
            // An error the server wrote as a JSON-RPC answer to the request: pass it on.
            Ok(text) if answers(&text, &kind) => deliver(session, &text, false),
            result => {
                let detail = result.ok().and_then(|t| error_message(&t));
                let why = match detail {
                    Some(m) => format!("upstream `{}` answered {}: {m}", upstream.id, head.status),
                    None => format!("upstream `{}` answered {}", upstream.id, head.status),
                };
                fail(session, &kind, &why);
            }
        }
        if head.status == 404 && session.upstream_session.borrow().is_some() {
            // The server forgot the session: the legacy client has no way to start over
            // on this stream, so end it.
            tracing::info!(session = %session.id, upstream = %upstream.id, "upstream session gone");
            session.close();
        }
    }
    if ok && kind.initialized && !session.listening.replace(true) {
        monoio::spawn(listen(session.clone(), config.clone()));
    }
}

fn is_jsonrpc(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|v| match &v {
        Value::Object(o) => o.contains_key("jsonrpc"),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    })
}

/// Whether `body` is a JSON-RPC answer to a request of `kind` (by id).
fn answers(body: &[u8], kind: &Kind) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|v| match &v {
        Value::Object(o) => o.get("id").is_some_and(|id| kind.ids.contains(id)),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    })
}

/// The `error.message` of a JSON-RPC error body, if it is one.
fn error_message(body: &[u8]) -> Option<String> {
    let v = serde_json::from_slice::<Value>(body).ok()?;
    v.pointer("/error/message")?.as_str().map(str::to_string)
}

/// Passes one message to the client; from the answer to `initialize`, also keeps the
/// negotiated protocol version.
fn deliver(session: &Session, message: &[u8], from_initialize: bool) {
    if from_initialize {
        let version = serde_json::from_slice::<Value>(message).ok().and_then(|v| {
            v.pointer("/result/protocolVersion")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        if let Some(v) = version.filter(|v| v.bytes().all(|b| b.is_ascii_graphic())) {
            *session.protocol_version.borrow_mut() = Some(v);
        }
    }
    session.send_to_client(message);
}

/// An error answer for each request in a message the server did not answer.
fn fail(session: &Session, kind: &Kind, why: &str) {
    fail_with(session, kind, -32603, why);
}

fn fail_with(session: &Session, kind: &Kind, code: i64, why: &str) {
    tracing::info!(session = %session.id, error = why, "bridged message failed");
    for id in &kind.ids {
        let error = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": why}});
        session.send_to_client(error.to_string().as_bytes());
    }
}

/// Passes the `message` events of an event stream on until it ends, the session closes, or
/// `hard_deadline` passes. Returns the last event id seen.
async fn relay_events(
    session: &Session,
    stream: &mut TcpStream,
    body: &mut BodyReader,
    from_initialize: bool,
    hard_deadline: Option<Instant>,
) -> Option<Vec<u8>> {
    let mut decoder = Decoder::default();
    let mut last_id = None;
    loop {
        let piece = {
            let next = body.next(stream, None);
            let closed = session.closed.wait();
            let cap = async {
                match hard_deadline {
                    Some(at) => monoio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            monoio::select! {
                piece = next => piece,
                _ = closed => return last_id,
                _ = cap => return last_id,
            }
        };
        let Ok(Some(piece)) = piece else {
            return last_id;
        };
        decoder.push(&piece);
        while let Some(event) = decoder.next_event() {
            if event.id.is_some() {
                last_id = event.id.clone();
            }
            match event.data {
                Some(data) if event.is_message() && !data.is_empty() => {
                    deliver(session, &data, from_initialize)
                }
                _ => {}
            }
        }
        if decoder.pending() > MAX_EVENT_BYTES {
            tracing::warn!(session = %session.id, "the server sent an oversized event; stream dropped");
            return last_id;
        }
    }
}

/// The server's GET stream for server-initiated messages, opened again after it ends while
/// the session lives. A server that offers none answers 405.
async fn listen(session: Rc<Session>, config: Arc<GatewayConfig>) {
    let Some(upstream) = upstream_of(&config, &session) else {
        return;
    };
    let mut last_id: Option<Vec<u8>> = None;
    let mut failures = 0;
    while !session.closed.is_set() && failures < MAX_LISTEN_FAILURES {
        let deadline = Instant::now() + upstream.timeout;
        let head = request_head(
            "GET",
            upstream,
            &session,
            "text/event-stream",
            session.authorization.as_deref(),
            last_id.as_deref(),
            None,
        );
        let opened = async {
            let mut stream = send(upstream, head, b"", deadline).await?;
            let (head, body) = client::read_response(&mut stream, deadline).await?;
            Ok::<(TcpStream, Head, BodyReader), std::io::Error>((stream, head, body))
        };
        match opened.await {
            Ok((mut stream, head, mut body)) if head.status == 200 && head.event_stream => {
                failures = 0;
                let seen = relay_events(&session, &mut stream, &mut body, false, None).await;
                last_id = seen.or(last_id);
            }
            Ok((_, head, _)) => {
                tracing::debug!(session = %session.id, status = head.status, "no upstream GET stream");
                return;
            }
            Err(e) => {
                tracing::debug!(session = %session.id, error = %e, "upstream GET stream failed");
                failures += 1;
            }
        }
        monoio::select! {
            _ = monoio::time::sleep(RELISTEN_PAUSE) => {}
            _ = session.closed.wait() => return,
        }
    }
}

/// Ends the upstream session (the client's stream is gone).
pub async fn end(session: &Session, config: &GatewayConfig) {
    let Some(upstream) = upstream_of(config, session) else {
        return;
    };
    if session.upstream_session.borrow().is_none() {
        return;
    }
    let deadline = Instant::now() + DELETE_TIMEOUT;
    let head = request_head(
        "DELETE",
        upstream,
        session,
        "application/json, text/event-stream",
        session.authorization.as_deref(),
        None,
        None,
    );
    let done = async {
        let mut stream = send(upstream, head, b"", deadline).await?;
        client::read_response(&mut stream, deadline)
            .await
            .map(|(h, _)| h.status)
    };
    match done.await {
        Ok(status) => tracing::debug!(session = %session.id, status, "upstream session ended"),
        Err(e) => {
            tracing::debug!(session = %session.id, error = %e, "DELETE of the upstream session failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_messages() {
        let k = classify(br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#);
        assert!(k.initialize && k.ids == vec![json!(1)]);
        let k = classify(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert!(k.initialized && k.ids.is_empty());
        let k = classify(br#"[{"jsonrpc":"2.0","id":"a","method":"tools/list"},{"jsonrpc":"2.0","id":2,"result":{}}]"#);
        assert_eq!(k.ids, vec![json!("a")]);
        assert!(classify(b"not json").ids.is_empty());
        assert!(is_jsonrpc(br#"{"jsonrpc":"2.0","id":1,"error":{}}"#));
        assert!(!is_jsonrpc(b"Bad Request"));
    }
}
