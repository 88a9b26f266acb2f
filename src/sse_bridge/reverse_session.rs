//! Reverse-bridged sessions: a Streamable HTTP client on `/mcp/{id}` in front of a server
//! that only speaks the legacy HTTP+SSE transport (`transport: "sse"`). Each session holds
//! the server's SSE stream open (read by one task), knows the message endpoint its
//! `endpoint` event named, and sorts every message on the stream to whoever waits for it:
//! a response to the request with its id, a notification to the request it belongs to (by
//! progress token, else the oldest request whose client takes an event stream), anything
//! else to the client's GET stream while one is open.
//!
//! Owns: the reverse session table, the upstream SSE reader, and the POSTs to the message
//! endpoint. Must not: write to a client's socket (waiters do), or block its thread.

use super::client::{self, BodyReader};
use super::session::{Queue, Signal};
use mcp_gateway_config::{GatewayConfig, Upstream};
use mcp_gateway_shard::http::encode;
use mcp_gateway_shard::mcp::sse_event::{Decoder, MAX_EVENT_BYTES};
use monoio::net::TcpStream;
use monoio::time::Instant;
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// The bridge's own `Mcp-Session-Id` values start with this.
pub const REVERSE_SESSION_PREFIX: &str = "r.";
/// Most reverse sessions one bridge holds (each holds an upstream stream open).
pub const MAX_REVERSE_SESSIONS: usize = 10_000;
/// A session its client has not used this long (no request, no GET stream) ends: clients
/// that vanish without DELETE must not hold server streams for ever.
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum ReverseError {
    #[error("cannot reach the server: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server answered {0}")]
    Status(u16),
    #[error("the server's answer is not an event stream")]
    NotEventStream,
    #[error("the server's SSE stream ended")]
    Closed,
    #[error("the server sent no endpoint event in time")]
    NoEndpoint,
}

/// One request waiting for its answer.
struct Pending {
    key: String,
    queue: Rc<Queue<Vec<u8>>>,
    /// Its client takes an event stream: notifications may go to it.
    streams: bool,
}

pub struct ReverseSession {
    pub id: String,
    pub upstream: usize,
    /// The client's `Authorization` when it opened the session (for the SSE GET).
    authorization: Option<Vec<u8>>,
    /// Request target of the message endpoint, from the `endpoint` event.
    endpoint: RefCell<Option<String>>,
    pending: RefCell<Vec<Pending>>,
    /// Progress token (as JSON text) to the request id (as JSON text) that sent it.
    progress: RefCell<HashMap<String, String>>,
    /// Messages for the client's GET stream.
    pub standalone: Queue<Vec<u8>>,
    pub listening: Cell<bool>,
    pub closed: Signal,
    ready: Signal,
    /// When the client last used the session.
    last_used: Cell<Instant>,
}

/// The session table; the upstream reader removes its session when the stream ends.
#[derive(Default)]
pub struct ReverseSessions {
    map: RefCell<HashMap<String, Rc<ReverseSession>>>,
}

impl ReverseSessions {
    pub fn get(&self, id: &[u8]) -> Option<Rc<ReverseSession>> {
        let id = std::str::from_utf8(id).ok()?;
        let session = self
            .map
            .borrow()
            .get(id)
            .filter(|s| !s.closed.is_set())
            .cloned()?;
        session.last_used.set(Instant::now());
        Some(session)
    }

    fn insert(&self, session: Rc<ReverseSession>) -> bool {
        let mut map = self.map.borrow_mut();
        if map.len() >= MAX_REVERSE_SESSIONS {
            return false;
        }
        map.insert(session.id.clone(), session);
        true
    }

    pub fn remove(&self, id: &str) {
        self.map.borrow_mut().remove(id);
    }
}

/// A JSON value as a map key (ids and progress tokens are numbers or strings).
pub fn key(v: &Value) -> String {
    v.to_string()
}

/// A JSON-RPC error response for request `id`.
pub fn error_message(id: &str, code: i64, message: &str) -> Vec<u8> {
    let id: Value = serde_json::from_str(id).unwrap_or(Value::Null);
    serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        .to_string()
        .into_bytes()
}

impl ReverseSession {
    /// Registers a request; `None` when its id is already waiting (ids must be unique).
    pub fn wait_for(
        &self,
        id: &str,
        progress_token: Option<String>,
        streams: bool,
    ) -> Option<Rc<Queue<Vec<u8>>>> {
        let mut pending = self.pending.borrow_mut();
        if pending.iter().any(|p| p.key == id) {
            return None;
        }
        let queue = Rc::new(Queue::default());
        pending.push(Pending {
            key: id.to_string(),
            queue: queue.clone(),
            streams,
        });
        if let Some(token) = progress_token {
            self.progress.borrow_mut().insert(token, id.to_string());
        }
        Some(queue)
    }

    /// Unused for [`IDLE_TIMEOUT`], with nothing waiting and no GET stream open.
    fn is_idle(&self) -> bool {
        let unused = self.last_used.get().elapsed() >= IDLE_TIMEOUT;
        unused && self.pending.borrow().is_empty() && !self.listening.get()
    }

    /// The request no longer waits (answered, timed out, or its client left).
    pub fn done(&self, id: &str) {
        self.pending.borrow_mut().retain(|p| p.key != id);
        self.progress.borrow_mut().retain(|_, v| v != id);
    }

    /// Ends the session: waiting requests get a JSON-RPC error, the GET stream ends, and
    /// the reader lets go of the server's stream.
    pub fn close(&self, why: &str) {
        if self.closed.is_set() {
            return;
        }
        self.closed.set();
        for p in self.pending.borrow_mut().drain(..) {
            p.queue.push(error_message(&p.key, -32603, why));
        }
        self.standalone.close();
    }

    fn queue_of(&self, id: &str) -> Option<Rc<Queue<Vec<u8>>>> {
        let pending = self.pending.borrow();
        pending
            .iter()
            .find(|p| p.key == id)
            .map(|p| p.queue.clone())
    }

    /// Sends one message from the server to whoever waits for it.
    fn route(&self, raw: Vec<u8>) {
        let Ok(message) = serde_json::from_slice::<Value>(&raw) else {
            tracing::debug!(session = %self.id, "unparsable message from a legacy server: dropped");
            return;
        };
        let method = message.get("method").and_then(Value::as_str);
        if method.is_none() {
            if let Some(queue) = message.get("id").and_then(|id| self.queue_of(&key(id))) {
                queue.push(raw);
                return;
            }
        }
        let token = message
            .get("params")
            .and_then(|p| p.get("progressToken"))
            .filter(|_| method == Some("notifications/progress"))
            .map(key);
        let by_token = token.and_then(|t| self.progress.borrow().get(&t).cloned());
        let queue = match by_token {
            Some(id) => self.queue_of(&id),
            None => {
                let pending = self.pending.borrow();
                pending.iter().find(|p| p.streams).map(|p| p.queue.clone())
            }
        };
        match queue {
            Some(q) => {
                q.push(raw);
            }
            None if self.listening.get() => {
                self.standalone.push(raw);
            }
            None => {
                tracing::debug!(session = %self.id, "server message with no stream to take it: dropped")
            }
        }
    }
}

/// Adds the client's credentials (where the server's config passes them on) and the
/// configured headers.
fn credentials(out: &mut Vec<u8>, upstream: &Upstream, authorization: Option<&[u8]>) {
    let configured = upstream
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
    if let Some(auth) = authorization.filter(|_| upstream.forward_auth && !configured) {
        encode::header(out, "Authorization", auth);
    }
    for (name, value) in &upstream.headers {
        encode::header(out, name, value.as_bytes());
    }
}

/// Opens a session: GETs the server's SSE stream, starts its reader and waits for the
/// `endpoint` event; the session is in `table` when this returns `Ok`.
pub async fn open(
    config: &Arc<GatewayConfig>,
    table: &Rc<ReverseSessions>,
    upstream_index: usize,
    authorization: Option<Vec<u8>>,
    deadline: Instant,
) -> Result<Rc<ReverseSession>, ReverseError> {
    let upstream = config
        .upstreams
        .get(upstream_index)
        .ok_or(ReverseError::Status(404))?;
    let mut out = Vec::with_capacity(512);
    let path = if upstream.base_path.is_empty() {
        "/"
    } else {
        upstream.base_path.as_str()
    };
    out.extend_from_slice(format!("GET {path} HTTP/1.1\r\n").as_bytes());
    encode::header(&mut out, "Host", upstream.authority.as_bytes());
    encode::header(&mut out, "Accept", b"text/event-stream");
    encode::header(&mut out, "Cache-Control", b"no-cache");
    credentials(&mut out, upstream, authorization.as_deref());
    out.extend_from_slice(b"\r\n");
    let mut stream = client::connect(upstream.addr, deadline).await?;
    match monoio::time::timeout_at(deadline, client::write_all(&mut stream, out)).await {
        Ok(r) => r?,
        Err(_) => return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
    }
    let (head, body) = client::read_response(&mut stream, deadline).await?;
    if head.status != 200 {
        return Err(ReverseError::Status(head.status));
    }
    if !head.event_stream {
        return Err(ReverseError::NotEventStream);
    }
    let random = mcp_gateway_shard::mcp::session::generated_secret();
    let hex: String = random.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let session = Rc::new(ReverseSession {
        id: format!("{REVERSE_SESSION_PREFIX}{hex}"),
        upstream: upstream_index,
        authorization,
        endpoint: RefCell::new(None),
        pending: RefCell::new(Vec::new()),
        progress: RefCell::new(HashMap::new()),
        standalone: Queue::default(),
        listening: Cell::new(false),
        closed: Signal::default(),
        ready: Signal::default(),
        last_used: Cell::new(Instant::now()),
    });
    monoio::spawn(read_stream(session.clone(), table.clone(), stream, body));
    let ready = session.ready.wait();
    let closed = session.closed.wait();
    let waited = monoio::time::timeout_at(deadline, async {
        monoio::select! {
            _ = ready => true,
            _ = closed => false,
        }
    })
    .await;
    match waited {
        Ok(true) if table.insert(session.clone()) => Ok(session),
        Ok(true) => {
            session.close("the bridge is at its session limit");
            Err(ReverseError::Status(503))
        }
        Ok(false) => Err(ReverseError::Closed),
        Err(_) => {
            session.close("no endpoint event");
            Err(ReverseError::NoEndpoint)
        }
    }
}

/// The request target of an `endpoint` event's URL (relative, or absolute on the server).
fn endpoint_target(data: &[u8]) -> Option<String> {
    let url = std::str::from_utf8(data).ok()?.trim();
    let target = match url.find("://") {
        Some(scheme_end) => {
            let rest = &url[scheme_end + 3..];
            &rest[rest.find('/')?..]
        }
        None => url,
    };
    let ok = target.starts_with('/') && target.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| target.to_string())
}

/// The session's reader: the server's SSE stream until it ends or the session closes.
async fn read_stream(
    session: Rc<ReverseSession>,
    table: Rc<ReverseSessions>,
    mut stream: TcpStream,
    mut body: BodyReader,
) {
    let mut decoder = Decoder::default();
    let why = loop {
        let idle_at = session.last_used.get() + IDLE_TIMEOUT;
        let piece = {
            let next = body.next(&mut stream, None);
            let closed = session.closed.wait();
            let idle = monoio::time::sleep_until(idle_at);
            monoio::select! {
                piece = next => Some(Some(piece)),
                _ = closed => None,
                _ = idle => Some(None),
            }
        };
        let bytes = match piece {
            None => break "the session was closed",
            Some(None) if session.is_idle() => break "the client left the session idle",
            Some(None) => {
                // In use (a request waits, a GET stream is open) or used since: look again
                // a whole timeout later, not in a loop.
                session.last_used.set(Instant::now());
                continue;
            }
            Some(Some(piece)) => piece,
        };
        let bytes = match bytes {
            Ok(Some(bytes)) => bytes,
            Ok(None) | Err(_) => break "the legacy server closed its SSE stream",
        };
        decoder.push(&bytes);
        while let Some(event) = decoder.next_event() {
            let name = event.event.as_deref().unwrap_or(b"message");
            let Some(data) = event.data else { continue };
            if name == b"endpoint" {
                match endpoint_target(&data) {
                    Some(target) => {
                        *session.endpoint.borrow_mut() = Some(target);
                        session.ready.set();
                    }
                    None => tracing::warn!(session = %session.id, "unusable endpoint event"),
                }
            } else if name == b"message" {
                session.route(data);
            }
        }
        if decoder.pending() > MAX_EVENT_BYTES {
            break "the legacy server sent an oversized event";
        }
    };
    tracing::debug!(session = %session.id, why, "reverse-bridged session ended");
    session.close(why);
    table.remove(&session.id);
}

/// POSTs one message to the session's endpoint; the answer (202) only says it arrived.
pub async fn post(
    config: &GatewayConfig,
    session: &ReverseSession,
    body: &[u8],
    authorization: Option<&[u8]>,
    deadline: Instant,
) -> Result<(), ReverseError> {
    let upstream = config
        .upstreams
        .get(session.upstream)
        .ok_or(ReverseError::Status(404))?;
    let target = session
        .endpoint
        .borrow()
        .clone()
        .ok_or(ReverseError::Closed)?;
    let mut out = Vec::with_capacity(512 + body.len());
    out.extend_from_slice(format!("POST {target} HTTP/1.1\r\n").as_bytes());
    encode::header(&mut out, "Host", upstream.authority.as_bytes());
    encode::header(&mut out, "Content-Type", b"application/json");
    encode::header_u64(&mut out, "Content-Length", body.len() as u64);
    let authorization = authorization.or(session.authorization.as_deref());
    credentials(&mut out, upstream, authorization);
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(body);
    let mut stream = client::connect(upstream.addr, deadline).await?;
    match monoio::time::timeout_at(deadline, client::write_all(&mut stream, out)).await {
        Ok(r) => r?,
        Err(_) => return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
    }
    let (head, _) = client::read_response(&mut stream, deadline).await?;
    if (200..300).contains(&head.status) {
        Ok(())
    } else {
        Err(ReverseError::Status(head.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_targets() {
        assert_eq!(
            endpoint_target(b"/messages/?session_id=ab").as_deref(),
            Some("/messages/?session_id=ab")
        );
        assert_eq!(
            endpoint_target(b"http://127.0.0.1:9/m?x=1").as_deref(),
            Some("/m?x=1")
        );
        assert_eq!(endpoint_target(b"http://host"), None);
        assert_eq!(endpoint_target(b"/a b"), None);
        assert_eq!(endpoint_target(b"relative"), None);
    }
}
