//! The legacy HTTP+SSE bridge: `/sse/{id}` in front of Streamable HTTP (and stdio) servers,
//! and (`reverse`) `/mcp/{id}` in front of servers that only speak the legacy transport.
//!
//! A legacy session is two kinds of client connections, a long GET stream and short POSTs,
//! that may land on different shards; so the sessions live here, on one thread with its own
//! monoio runtime, listening on loopback. Shards pass `GET /open/{upstream}/{id}` (open a
//! session on that replica, then stream it) and `POST /message/{id}/{session}` (a message
//! for it) through unchanged; every answer ends by closing.
//!
//! A session lives in one gateway process: a POST that reaches another process (behind a
//! load balancer) gets 404, as an unknown session does. `/sse/{id}` for servers that speak
//! the legacy transport themselves does not come here: shards pass it through without
//! state. `/mcp/{id}` for those servers does: shards treat the bridge as their upstream
//! (`{METHOD} /reverse/{upstream}`) and seal its `Mcp-Session-Id` into the gateway token.
//!
//! Owns: the bridge thread, its listener and its session table. Must not: be reached from
//! outside the process, or block its thread.

mod client;
mod reverse;
mod reverse_session;
mod session;
mod upstream;

use client::BodyReader;
use mcp_gateway_config::{GatewayConfig, Transport};
use mcp_gateway_shard::http::encode;
use mcp_gateway_shard::mcp::headers::CORS_EXPOSE_HEADERS;
use mcp_gateway_shard::mcp::sse_event;
use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;
use monoio::time::Instant;
use reverse_session::ReverseSessions;
use session::{Incoming, Session, Sessions};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

struct Bridge {
    /// The current config generation (upstreams by slot, as the shards have them).
    config: std::cell::RefCell<Arc<GatewayConfig>>,
    /// New generations from the management shard.
    updates: crossbeam_channel::Receiver<Arc<GatewayConfig>>,
    sessions: Sessions,
    /// `/mcp/{id}` sessions in front of legacy servers (`reverse`).
    reverse: Rc<ReverseSessions>,
}

/// Binds the bridge's loopback listener and starts its thread, if there are servers (each
/// may need it: legacy clients of modern servers, or modern clients of legacy servers).
pub fn start(
    config: &Arc<GatewayConfig>,
    updates: crossbeam_channel::Receiver<Arc<GatewayConfig>>,
) -> anyhow::Result<Option<(SocketAddr, JoinHandle<()>)>> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let config = config.clone();
    let thread = std::thread::Builder::new()
        .name("sse-bridge".into())
        .spawn(move || {
            let run =
                mcp_gateway_shard::runtime::block_on(move || serve(listener, config, updates));
            if let Err(e) = run {
                tracing::error!(error = %e, "sse bridge runtime failed to start");
            }
        })?;
    tracing::debug!(%addr, "legacy SSE bridge listening");
    Ok(Some((addr, thread)))
}

async fn serve(
    listener: std::net::TcpListener,
    config: Arc<GatewayConfig>,
    updates: crossbeam_channel::Receiver<Arc<GatewayConfig>>,
) {
    let listener = match monoio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "sse bridge cannot use its listener");
            return;
        }
    };
    let bridge = Rc::new(Bridge {
        config: std::cell::RefCell::new(config),
        updates,
        sessions: Sessions::default(),
        reverse: Rc::default(),
    });
    monoio::spawn(follow_reloads(bridge.clone()));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                monoio::spawn(handle(bridge.clone(), stream));
            }
            Err(e) => {
                tracing::warn!(error = %e, "sse bridge accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

impl Bridge {
    /// The newest config generation sent down: each request takes any waiting one first, so
    /// a server added a moment ago (its shards already route to it) is known here too.
    fn config(&self) -> Arc<GatewayConfig> {
        while let Ok(config) = self.updates.try_recv() {
            *self.config.borrow_mut() = config;
        }
        self.config.borrow().clone()
    }
}

/// Takes new config generations while no request comes, so none waits in the channel.
async fn follow_reloads(bridge: Rc<Bridge>) {
    loop {
        monoio::time::sleep(RELOAD_POLL).await;
        bridge.config();
    }
}

/// How often the bridge looks for a new config generation.
const RELOAD_POLL: Duration = Duration::from_millis(100);

/// The bridge's answer head, ended by closing; CORS headers for an allowed browser origin
/// (shards only pass allowed ones on).
fn head(out: &mut Vec<u8>, status: u16, content_type: &str, origin: Option<&[u8]>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(encode::reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    encode::header(out, "Content-Type", content_type.as_bytes());
    encode::header(out, "Cache-Control", b"no-store");
    if let Some(o) = origin {
        encode::header(out, "Access-Control-Allow-Origin", o);
        encode::header(
            out,
            "Access-Control-Expose-Headers",
            CORS_EXPOSE_HEADERS.as_bytes(),
        );
        out.extend_from_slice(b"Vary: Origin\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n");
}

async fn reply(
    stream: &mut TcpStream,
    status: u16,
    message: &str,
    origin: Option<&[u8]>,
    request_id: &[u8],
) {
    let (content_type, body) = if status < 300 {
        ("text/plain", message.as_bytes().to_vec())
    } else {
        let code = if status == 404 { -32001 } else { -32603 };
        (
            "application/json",
            encode::jsonrpc_error_body(code, message, status, request_id),
        )
    };
    let mut out = Vec::with_capacity(256 + body.len());
    head(&mut out, status, content_type, origin);
    encode::header_u64(&mut out, "Content-Length", body.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    let _ = client::write_all(stream, out).await;
}

async fn handle(bridge: Rc<Bridge>, mut stream: TcpStream) {
    let config = bridge.config();
    let limits = &config.server.limits;
    let deadline = Instant::now() + limits.header_timeout;
    let Ok((req, body)) = client::read_request(&mut stream, deadline).await else {
        return;
    };
    let origin = req.header("origin").map(<[u8]>::to_vec);
    let origin = origin.as_deref();
    let request_id = req.header("x-request-id").unwrap_or(b"").to_vec();
    if let Some(rest) = req.path.strip_prefix("/reverse/") {
        let upstream = rest.split('?').next().unwrap_or("").to_string();
        return reverse::handle(&bridge, stream, req, body, &upstream, &request_id).await;
    }
    let authorization = req.header("authorization").map(<[u8]>::to_vec);
    let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    match (req.method.as_str(), parts.as_slice()) {
        ("GET", ["open", upstream, id]) => {
            let upstream = upstream.parse::<usize>().ok().filter(|i| {
                bridge
                    .config()
                    .upstreams
                    .get(*i)
                    .is_some_and(|u| u.transport != Transport::Sse)
            });
            let Some(upstream) = upstream else {
                return reply(&mut stream, 404, "unknown server", origin, &request_id).await;
            };
            let session = Rc::new(Session::new(id, upstream, authorization));
            if !bridge.sessions.insert(session.clone()) {
                let why = "the legacy SSE bridge is at its session limit";
                return reply(&mut stream, 503, why, origin, &request_id).await;
            }
            stream_session(&bridge, stream, session, origin).await;
        }
        ("POST", ["message", id, session]) => {
            let found = bridge.sessions.get(session).filter(|s| s.target == *id);
            let Some(session) = found else {
                let why = "Session not found (a bridged legacy SSE session lives in the gateway process that opened it)";
                return reply(&mut stream, 404, why, origin, &request_id).await;
            };
            message(
                &bridge,
                stream,
                body,
                session,
                authorization,
                origin,
                &request_id,
            )
            .await;
        }
        _ => reply(&mut stream, 404, "not a bridge path", origin, &request_id).await,
    }
}

/// `POST /message/...`: takes the whole body, queues it for the upstream and answers 202;
/// the answer to it arrives on the client's stream.
async fn message(
    bridge: &Bridge,
    mut stream: TcpStream,
    mut body: BodyReader,
    session: Rc<Session>,
    authorization: Option<Vec<u8>>,
    origin: Option<&[u8]>,
    request_id: &[u8],
) {
    let config = bridge.config();
    let limits = &config.server.limits;
    let body = match body
        .read_all(&mut stream, limits.header_timeout, limits.max_body_bytes)
        .await
    {
        Ok(b) => b,
        Err(_) => {
            return reply(
                &mut stream,
                400,
                "unreadable or too large message body",
                origin,
                request_id,
            )
            .await
        }
    };
    let queued = session.to_upstream.push(Incoming {
        body,
        authorization,
    });
    if !queued {
        return reply(
            &mut stream,
            404,
            "Session not found (it has ended)",
            origin,
            request_id,
        )
        .await;
    }
    reply(&mut stream, 202, "Accepted", origin, request_id).await;
}

/// `GET /open/...`: the client's stream. Sends the `endpoint` event, then every queued
/// event, until the client goes (the shard closes its connection to us) or the session
/// ends; then ends the upstream session.
async fn stream_session(
    bridge: &Bridge,
    mut stream: TcpStream,
    session: Rc<Session>,
    origin: Option<&[u8]>,
) {
    let mut out = Vec::with_capacity(512);
    head(&mut out, 200, "text/event-stream", origin);
    out.extend_from_slice(b"X-Accel-Buffering: no\r\n\r\n");
    let endpoint = format!("/sse/{}/message?t={}", session.target, session.id);
    sse_event::write_event(&mut out, "endpoint", endpoint.as_bytes());
    let mut open = client::write_all(&mut stream, out).await.is_ok();
    if open {
        monoio::spawn(upstream::sender(session.clone(), bridge.config()));
        tracing::debug!(session = %session.id, upstream = session.upstream, "bridged legacy session opened");
    }
    while open {
        let next = {
            let event = session.to_client.pop();
            let gone = stream.readable(false);
            monoio::select! {
                event = event => Some(event),
                _ = gone => None,
            }
        };
        open = match next {
            Some(Some(event)) => client::write_all(&mut stream, event).await.is_ok(),
            Some(None) => false,
            // Readable: the shard closed (the client left); stray bytes are ignored.
            None => matches!(stream.read(vec![0u8; 512]).await, (Ok(n), _) if n > 0),
        };
    }
    bridge.sessions.remove(&session.id);
    session.close();
    upstream::end(&session, &bridge.config()).await;
    tracing::debug!(session = %session.id, "bridged legacy session closed");
}
