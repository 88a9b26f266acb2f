//! The management port (8081): the same pages as the data port plus the dashboard.
//!
//! Every answer carries the running config's security headers (`security.headers`, taken
//! per answer so a reload applies at once); the dashboard page gets its own
//! `Content-Security-Policy` in place of the configured one (it has an inline script and
//! style, and fetches the pages).
//!
//! Owns: serving the management shard's HTTP, under its own connection cap
//! (`monitoring.dashboard.maxConnections`: over it, one 503 and close) and the header
//! timeout (a connection that sends no complete head in time is closed), so idle or slow
//! clients here cannot take descriptors or time from the data port. Must not: proxy
//! anything, or take long on one connection (it shares its thread with the merge tick and
//! the prober).

use super::admin::{self, AdminRequest};
use super::api;
use super::gate;
use super::{render, State};
use mcp_gateway_config::GatewayConfig;
use mcp_gateway_shard::catch_panic::CatchPanic;
use mcp_gateway_shard::http::encode::{self, LocalResponse};
use mcp_gateway_shard::http::request;
use mcp_gateway_shard::http::BodyFraming;
use mcp_gateway_shard::mcp::headers::OriginPolicy;
use mcp_gateway_shard::messages::ShardCommand;
use mcp_gateway_shard::relay::{read_append, write_all};
use mcp_gateway_shard::router::LocalPage;
use monoio::net::{TcpListener, TcpStream};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DASHBOARD_HTML: &str = include_str!("../../dashboard/index.html");
/// The dashboard's policy: its own inline script and style, fetches to this port only.
const DASHBOARD_CSP: &str = "Content-Security-Policy: default-src 'self'; \
    script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";
const MAX_HEAD: usize = 16 * 1024;

/// What one management connection knows about where it came from.
#[derive(Clone, Copy)]
struct Peer {
    addr: std::net::SocketAddr,
    is_loopback: bool,
    listener_is_loopback: bool,
}

pub async fn serve(listener: TcpListener, state: Rc<RefCell<State>>, shards: Shards) {
    let (cap, head_timeout) = {
        let s = state.borrow();
        let config = &s.config;
        (
            config.monitoring.management_max_connections,
            config.server.limits.header_timeout,
        )
    };
    let listener_is_loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let open = Rc::new(Cell::new(0usize));
    let mut last_warning: Option<Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, _)) if open.get() >= cap => {
                let config = state.borrow().config.clone();
                monoio::spawn(refuse(stream, config));
            }
            Ok((stream, peer)) => {
                let peer = Peer {
                    addr: peer,
                    is_loopback: peer.ip().is_loopback(),
                    listener_is_loopback,
                };
                let open = open.clone();
                open.set(open.get() + 1);
                let (state, shards) = (state.clone(), shards.clone());
                monoio::spawn(async move {
                    // A bug in one request's handling ends that connection, not the thread
                    // that also merges metrics and probes upstreams.
                    let served = connection(stream, peer, head_timeout, state, shards);
                    if let Err(message) = CatchPanic::new(served).await {
                        tracing::error!(panic = %message, "a bug ended a management connection (please report it)");
                    }
                    open.set(open.get() - 1);
                });
            }
            Err(e) => {
                if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(error = %e, "management accept failed");
                    last_warning = Some(Instant::now());
                }
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Whether a request names this machine in `Host` and comes from no page but a local one
/// (the DNS-rebinding check of loopback MCP listeners).
fn local_browser_context(head: &request::RequestHead<'_, '_>) -> bool {
    let local = OriginPolicy::LoopbackOnly;
    let origin = head
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("origin"));
    origin.is_none_or(|o| local.allows(o.value)) && local.allows_host(|| head.host)
}

/// One 503 for a connection over the management port's cap, then close.
async fn refuse(mut stream: TcpStream, config: Arc<GatewayConfig>) {
    let body = encode::error_body(503, "the management port is at its connection limit", b"");
    let mut out = Vec::with_capacity(256);
    encode::local_response(
        &mut out,
        b"",
        &LocalResponse {
            status: 503,
            content_type: "application/json",
            body: &body,
            close: true,
            request_id: b"",
            extra: &["Retry-After: 1"],
            security: &config.security.headers.lines,
        },
    );
    let _ = monoio::time::timeout(Duration::from_secs(1), write_all(&mut stream, &mut out)).await;
}

/// The shards' command channels (the admin API tells them about revocations).
pub type Shards = Rc<Vec<crossbeam_channel::Sender<ShardCommand>>>;

async fn connection(
    mut stream: TcpStream,
    peer: Peer,
    head_timeout: Duration,
    state: Rc<RefCell<State>>,
    shards: Shards,
) {
    let mut buf = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(4096);
    // When the head being read must be complete (set at its first read, cleared by each
    // answer): a slow client cannot hold the connection past it.
    let mut head_deadline: Option<monoio::time::Instant> = None;
    loop {
        let deadline =
            *head_deadline.get_or_insert_with(|| monoio::time::Instant::now() + head_timeout);
        let step = next_step(&buf, peer, &state.borrow());
        let reply = match step {
            Step::ReadMore => {
                let read = read_append(&mut stream, &mut buf, 4096);
                match monoio::time::timeout_at(deadline, read).await {
                    Ok(Ok(n)) if n > 0 => continue,
                    _ => return,
                }
            }
            Step::Answer(reply) => reply,
            Step::Admin(req, head) => {
                let config = state.borrow().config.clone();
                let (status, body) = admin::answer(&config, &shards, req).await;
                head.reply(status, "application/json", body.into())
            }
            Step::Api(req, head, body_len) => {
                // Nobody without the token makes the thread read (and hold) a body.
                let reading = API_BODIES.with(Cell::get);
                let refused = api::refuse_early(&state.borrow().config, &req, body_len, reading);
                if let Some((status, value)) = refused {
                    let body = serde_json::to_vec(&value).unwrap_or_default();
                    let mut reply = head.reply(status, "application/json", body.into());
                    reply.close = true;
                    reply
                } else {
                    let _reading = BodyReader::enter();
                    // The body must arrive within the same deadline as the head.
                    buf.reserve((head.consumed + body_len).saturating_sub(buf.len()));
                    while buf.len() < head.consumed + body_len {
                        let read = read_append(&mut stream, &mut buf, 64 * 1024);
                        match monoio::time::timeout_at(deadline, read).await {
                            Ok(Ok(n)) if n > 0 => {}
                            _ => return,
                        }
                    }
                    let body = buf[head.consumed..head.consumed + body_len].to_vec();
                    let req = api::ApiRequest {
                        admin: req,
                        body,
                        peer: peer.addr,
                    };
                    let (status, value) = api::answer(&state, &shards, req).await;
                    let body = serde_json::to_vec(&value).unwrap_or_default();
                    let mut reply = head.reply(status, "application/json", body.into());
                    reply.consumed += body_len;
                    reply
                }
            }
            Step::Page(method, path, head) => {
                let (status, ct, body) = answer(&state, &method, &path);
                let mut reply = head.reply(status, ct, body);
                reply.dashboard = status == 200 && is_dashboard(&path);
                reply
            }
        };
        buf.drain(..reply.consumed.min(buf.len()));
        out.clear();
        let date = encode::http_date(std::time::SystemTime::now());
        let config = state.borrow().config.clone();
        let lines = &config.security.headers.lines;
        let dashboard_lines: Vec<&str>;
        let challenged: [&str; 2];
        let (extra, security): (&[&str], &[String]) = if reply.dashboard {
            dashboard_lines = dashboard_headers(lines);
            (&dashboard_lines, &[])
        } else if let Some(challenge) = &reply.challenge {
            challenged = ["Cache-Control: no-store", challenge.as_str()];
            (&challenged, lines)
        } else {
            (&["Cache-Control: no-store"], lines)
        };
        encode::local_response(
            &mut out,
            date.as_bytes(),
            &LocalResponse {
                status: reply.status,
                content_type: reply.content_type,
                body: &reply.body,
                close: reply.close,
                request_id: b"",
                extra,
                security,
            },
        );
        if reply.head_only {
            out.truncate(out.len() - reply.body.len());
        }
        let write = write_all(&mut stream, &mut out);
        let written = monoio::time::timeout(head_timeout, write).await;
        head_deadline = None;
        if !matches!(written, Ok(Ok(()))) || reply.close {
            return;
        }
    }
}

/// The dashboard page's header lines: the configured security headers, its own
/// `Content-Security-Policy` in place of the configured one (none if that is left out).
fn dashboard_headers(lines: &[String]) -> Vec<&str> {
    let mut extra = vec!["Cache-Control: no-store"];
    for line in lines {
        let name = line.split(':').next().unwrap_or(line);
        if name.eq_ignore_ascii_case("content-security-policy") {
            extra.push(DASHBOARD_CSP);
        } else {
            extra.push(line);
        }
    }
    extra
}

thread_local! {
    /// API bodies being read now (the management thread's own count).
    static API_BODIES: Cell<usize> = const { Cell::new(0) };
}

/// Counts one API body being read while it lives.
struct BodyReader;

impl BodyReader {
    fn enter() -> BodyReader {
        API_BODIES.with(|n| n.set(n.get() + 1));
        BodyReader
    }
}

impl Drop for BodyReader {
    fn drop(&mut self) {
        API_BODIES.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// What a parsed head asks for, owning what it needs of the buffer.
enum Step {
    ReadMore,
    Answer(Reply),
    Admin(AdminRequest, HeadFacts),
    /// An `/api` request and its body's length (read next).
    Api(AdminRequest, HeadFacts, usize),
    Page(String, String, HeadFacts),
}

/// What the answer needs of a request head.
struct HeadFacts {
    consumed: usize,
    close: bool,
    head_only: bool,
}

impl HeadFacts {
    fn reply(self, status: u16, content_type: &'static str, body: bytes::Bytes) -> Reply {
        Reply {
            status,
            content_type,
            body,
            close: self.close,
            consumed: self.consumed,
            head_only: self.head_only,
            dashboard: false,
            challenge: None,
        }
    }
}

struct Reply {
    status: u16,
    content_type: &'static str,
    body: bytes::Bytes,
    close: bool,
    consumed: usize,
    head_only: bool,
    /// The dashboard page (its own `Content-Security-Policy`).
    dashboard: bool,
    /// `WWW-Authenticate` lines of a 401 (CRLF-joined).
    challenge: Option<String>,
}

fn refusal(status: u16, message: &str) -> Step {
    Step::Answer(Reply {
        status,
        content_type: "application/json",
        body: encode::error_body(status, message, b"").into(),
        close: true,
        consumed: 0,
        head_only: false,
        dashboard: false,
        challenge: None,
    })
}

fn next_step(buf: &[u8], peer: Peer, state: &State) -> Step {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let head = match request::parse(buf, &mut headers) {
        Ok(Some(head)) => head,
        Ok(None) if buf.len() < MAX_HEAD => return Step::ReadMore,
        Ok(None) => return refusal(431, "request header fields too large"),
        Err(e) => return refusal(400, &e.to_string()),
    };
    let path = head.path();
    let admin_principal = match gate::check(&head, state) {
        Ok(admin) => admin,
        Err(refused) => {
            let mut reply = Reply {
                status: refused.status,
                content_type: "application/json",
                body: encode::error_body(refused.status, &refused.message, b"").into(),
                close: !head.keep_alive || !matches!(head.framing, BodyFraming::Empty),
                consumed: head.head_len,
                head_only: head.is_head(),
                dashboard: false,
                challenge: None,
            };
            reply.challenge = Some(refused.challenge).filter(|c| !c.is_empty());
            return Step::Answer(reply);
        }
    };
    let admin = || AdminRequest {
        method: head.method.to_string(),
        target: head.target.to_string(),
        authorization: head
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("authorization"))
            .map(|h| String::from_utf8_lossy(h.value).into_owned()),
        peer_is_loopback: peer.is_loopback,
        listener_is_loopback: peer.listener_is_loopback,
        local_browser_context: local_browser_context(&head),
        admin_principal,
    };
    let has_body = !matches!(head.framing, BodyFraming::Empty);
    let facts = |close_for_body: bool| HeadFacts {
        consumed: head.head_len,
        close: !head.keep_alive || close_for_body,
        head_only: head.is_head(),
    };
    if path == "/api" || path.starts_with("/api/") {
        return match head.framing {
            BodyFraming::Empty => Step::Api(admin(), facts(false), 0),
            BodyFraming::Length(n) if n as usize <= api::MAX_BODY => {
                Step::Api(admin(), facts(false), n as usize)
            }
            BodyFraming::Length(_) => refusal(413, "the API takes bodies up to 8 MiB"),
            _ => refusal(411, "the API needs a Content-Length body"),
        };
    }
    // The other routes take no body: one is not read, and the connection closes after.
    if path.starts_with("/admin/") {
        return Step::Admin(admin(), facts(has_body));
    }
    Step::Page(head.method.to_string(), path.to_string(), facts(has_body))
}

fn is_dashboard(path: &str) -> bool {
    path == "/" || path == "/dashboard"
}

fn answer(
    state: &Rc<RefCell<State>>,
    method: &str,
    path: &str,
) -> (u16, &'static str, bytes::Bytes) {
    if method != "GET" && method != "HEAD" {
        return (
            405,
            "application/json",
            encode::error_body(405, "the management port is read-only", b"").into(),
        );
    }
    if is_dashboard(path) {
        return (
            200,
            "text/html; charset=utf-8",
            bytes::Bytes::from_static(DASHBOARD_HTML.as_bytes()),
        );
    }
    match LocalPage::from_path(path) {
        // Rendered from totals that count every delta sent up before the read. The shards'
        // pages are left alone: each data-port read asks for its own render.
        Some(page) => {
            let mut s = state.borrow_mut();
            s.merge_reports();
            let p = render::render(&s, page, render::Audience::Operator);
            (p.status, p.content_type, p.body)
        }
        None => (
            404,
            "application/json",
            encode::error_body(404, "no such management page", b"").into(),
        ),
    }
}
