//! Interoperability through the gateway with the official MCP Rust SDK (`rmcp`) on both
//! sides: a real rmcp Streamable HTTP server (`StreamableHttpService` under axum) as the
//! upstream, and a real rmcp Streamable HTTP client (reqwest) talking to
//! `http://GATEWAY/mcp/rmcp`.
//!
//! Covered, each with its own timeout:
//! - `initialize` / `notifications/initialized` (server info reaches the client), `tools/list`,
//!   `tools/call echo`;
//! - `tools/call slow_count` with a progress token: the server's `notifications/progress`
//!   stream back on the POST's SSE response and reach the client's `on_progress` while the
//!   call is still running (so the gateway streams, not buffers);
//! - a server-initiated `notifications/tools/list_changed` pushed on the standalone GET
//!   stream (checked on the wire too: it arrives on the client's GET connection);
//! - the gateway's session handling: the client only ever sees the gateway's token, the
//!   upstream only ever sees its own `Mcp-Session-Id`;
//! - clean shutdown: the client's DELETE reaches the upstream with the upstream's own
//!   session id, and the rmcp session manager drops the session.
//!
//! The client reaches the gateway through a byte-copying tap so that, on failure, the raw
//! HTTP exchange on the client side is printed next to the upstream's request log and the
//! gateway's own log.

mod common;

use common::{config, server, Gateway};
use rmcp::{
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{
        CallToolRequestParams, ClientRequest, ContentBlock, Implementation,
        ProgressNotificationParam, Request, RequestMetaObject, ServerCapabilities, ServerConfig,
        ServerResult,
    },
    service::{NotificationContext, PeerRequestOptions},
    tool, tool_handler, tool_router,
    transport::{
        streamable_http_server::{
            session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
        },
        StreamableHttpClientTransport,
    },
    ClientHandler, Peer, RoleClient, RoleServer, ServerHandler, ServiceExt,
};
use serde_json::{json, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const SERVER_NAME: &str = "rmcp-interop-upstream";
/// Progress notifications `slow_count` is asked for (100 ms apart).
const PROGRESS_STEPS: u32 = 5;

// ---------------------------------------------------------------------------------------
// The rmcp server (upstream)
// ---------------------------------------------------------------------------------------

#[derive(Debug, serde::Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct EchoArgs {
    /// The text to send back.
    text: String,
}

#[derive(Debug, serde::Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct SlowCountArgs {
    /// How many progress notifications to send, 100 ms apart.
    n: u32,
}

/// What the test can see of the server side.
#[derive(Default)]
struct ServerSide {
    /// The peer of every session that completed `notifications/initialized`.
    peers: Mutex<Vec<Peer<RoleServer>>>,
}

impl ServerSide {
    fn peer_count(&self) -> usize {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[derive(Clone)]
struct InteropServer {
    #[allow(dead_code)] // read by the code `#[tool_handler]` generates
    tool_router: ToolRouter<Self>,
    side: Arc<ServerSide>,
}

#[tool_router]
impl InteropServer {
    fn new(side: Arc<ServerSide>) -> Self {
        InteropServer {
            tool_router: Self::tool_router(),
            side,
        }
    }

    #[tool(description = "Return the text unchanged")]
    async fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(description = "Send n progress notifications 100 ms apart, then return")]
    async fn slow_count(
        &self,
        Parameters(SlowCountArgs { n }): Parameters<SlowCountArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<String, rmcp::ErrorData> {
        let token = meta.get_progress_token().ok_or_else(|| {
            rmcp::ErrorData::invalid_params("slow_count needs a progress token", None)
        })?;
        for i in 1..=n {
            peer.notify_progress(
                ProgressNotificationParam::new(token.clone(), f64::from(i))
                    .with_total(f64::from(n))
                    .with_message(format!("step {i} of {n}")),
            )
            .await
            .map_err(|e| rmcp::ErrorData::internal_error(format!("notify_progress: {e}"), None))?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(format!("counted to {n}"))
    }
}

#[tool_handler]
impl ServerHandler for InteropServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new(SERVER_NAME, "1.2.3"))
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.side
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(context.peer);
    }
}

/// One request as the upstream saw it (recorded by an axum middleware in front of rmcp).
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    session: Option<String>,
    protocol_version: Option<String>,
    /// `method` (or `id` for a response) of the JSON-RPC body of a POST.
    rpc: String,
    status: u16,
    content_type: Option<String>,
    /// `Mcp-Session-Id` the upstream answered with.
    reply_session: Option<String>,
}

type SeenLog = Arc<Mutex<Vec<Seen>>>;

struct Upstream {
    url: String,
    log: SeenLog,
    sessions: Arc<LocalSessionManager>,
    side: Arc<ServerSide>,
}

impl Upstream {
    fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

fn header(h: &axum::http::HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn rpc_summary(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return format!("<{} bytes, not JSON>", body.len());
    };
    let one = |m: &Value| match (m.get("method"), m.get("id")) {
        (Some(method), _) => method.as_str().unwrap_or("?").to_string(),
        (None, Some(id)) => format!("response to {id}"),
        _ => "?".to_string(),
    };
    match &v {
        Value::Array(batch) => format!(
            "batch[{}]",
            batch.iter().map(one).collect::<Vec<_>>().join(", ")
        ),
        m => one(m),
    }
}

async fn start_upstream() -> Upstream {
    let side = Arc::new(ServerSide::default());
    let sessions = Arc::new(LocalSessionManager::default());
    let service: StreamableHttpService<InteropServer, LocalSessionManager> =
        StreamableHttpService::new(
            {
                let side = side.clone();
                move || Ok(InteropServer::new(side.clone()))
            },
            sessions.clone(),
            StreamableHttpServerConfig::default(),
        );
    let log = SeenLog::default();
    let recorder = log.clone();
    let router =
        axum::Router::new()
            .nest_service("/mcp", service)
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let recorder = recorder.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = axum::body::to_bytes(body, 4 << 20)
                            .await
                            .unwrap_or_default();
                        let rpc = if body.is_empty() {
                            String::new()
                        } else {
                            rpc_summary(&body)
                        };
                        let mut seen = Seen {
                            method: parts.method.to_string(),
                            path: parts.uri.to_string(),
                            session: header(&parts.headers, "mcp-session-id"),
                            protocol_version: header(&parts.headers, "mcp-protocol-version"),
                            rpc,
                            status: 0,
                            content_type: None,
                            reply_session: None,
                        };
                        let request =
                            axum::extract::Request::from_parts(parts, axum::body::Body::from(body));
                        let response = next.run(request).await;
                        seen.status = response.status().as_u16();
                        seen.content_type = header(response.headers(), "content-type");
                        seen.reply_session = header(response.headers(), "mcp-session-id");
                        recorder.lock().unwrap().push(seen);
                        response
                    }
                },
            ));
    // Plain `axum::serve` (no TCP_NODELAY), as rmcp servers are usually deployed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Upstream {
        url: format!("http://{addr}/mcp"),
        log,
        sessions,
        side,
    }
}

// ---------------------------------------------------------------------------------------
// The rmcp client
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct ClientSeen {
    progress: Mutex<Vec<(ProgressNotificationParam, Instant)>>,
    tool_list_changed: AtomicUsize,
}

struct InteropClient(Arc<ClientSeen>);

impl ClientHandler for InteropClient {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.0
            .progress
            .lock()
            .unwrap()
            .push((params, Instant::now()));
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.0.tool_list_changed.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------
// A byte tap between the client and the gateway (raw exchange for failure reports)
// ---------------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Tap(Arc<Mutex<Vec<Chunk>>>);

/// (connection number, `>` client to gateway or `<` back, bytes) as read.
type Chunk = (usize, &'static str, Vec<u8>);

impl Tap {
    /// Listens on loopback and relays every connection to `to`, recording both directions.
    async fn start(to: SocketAddr) -> (SocketAddr, Tap) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind tap");
        let addr = listener.local_addr().expect("tap addr");
        let tap = Tap::default();
        let t = tap.clone();
        tokio::spawn(async move {
            let mut conn = 0usize;
            while let Ok((client, _)) = listener.accept().await {
                conn += 1;
                let Ok(gateway) = tokio::net::TcpStream::connect(to).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = gateway.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (gr, gw) = gateway.into_split();
                tokio::spawn(Tap::pump(t.clone(), conn, ">", cr, gw));
                tokio::spawn(Tap::pump(t.clone(), conn, "<", gr, cw));
            }
        });
        (addr, tap)
    }

    async fn pump(
        tap: Tap,
        conn: usize,
        dir: &'static str,
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
    ) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tap.0.lock().unwrap().push((conn, dir, buf[..n].to_vec()));
                    if to.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown().await;
    }

    /// Every `Mcp-Session-Id` header value seen in one direction (`>` client to gateway).
    fn session_ids(&self, dir: &str) -> Vec<String> {
        let chunks = self.0.lock().unwrap();
        let mut out = Vec::new();
        for (_, _, bytes) in chunks.iter().filter(|(_, d, _)| *d == dir) {
            for line in String::from_utf8_lossy(bytes).split("\r\n") {
                if let Some((name, value)) = line.split_once(':') {
                    if name.trim().eq_ignore_ascii_case("mcp-session-id") {
                        out.push(value.trim().to_string());
                    }
                }
            }
        }
        out
    }

    /// How many connections satisfy `f(client_to_gateway, gateway_to_client)` (as text).
    fn connections_where(&self, f: impl Fn(&str, &str) -> bool) -> usize {
        let chunks = self.0.lock().unwrap();
        let conns: std::collections::BTreeSet<usize> = chunks.iter().map(|c| c.0).collect();
        conns
            .into_iter()
            .filter(|conn| {
                let dir = |d: &str| -> String {
                    chunks
                        .iter()
                        .filter(|(c, dd, _)| c == conn && *dd == d)
                        .map(|(_, _, b)| String::from_utf8_lossy(b).into_owned())
                        .collect()
                };
                f(&dir(">"), &dir("<"))
            })
            .count()
    }

    fn transcript(&self) -> String {
        let chunks = self.0.lock().unwrap();
        let mut s = String::new();
        for (conn, dir, bytes) in chunks.iter() {
            let text = String::from_utf8_lossy(bytes);
            let text: String = text.chars().take(1500).collect();
            s.push_str(&format!("[conn {conn} {dir}] {text:?}\n"));
        }
        s
    }
}

/// Prints the upstream's request log and the client-side raw exchange if the test fails.
struct Report {
    log: SeenLog,
    tap: Option<Tap>,
}

impl Drop for Report {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- upstream (rmcp server) saw ----");
            for s in self.log.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                eprintln!("{s:?}");
            }
            if let Some(tap) = &self.tap {
                eprintln!(
                    "---- client <-> gateway raw exchange ----\n{}",
                    tap.transcript()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

async fn within<T>(what: &str, secs: u64, fut: impl Future<Output = T>) -> T {
    timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs} s: {what}"))
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `secs`.
async fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    within(what, secs, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn text_of(content: &[ContentBlock]) -> String {
    content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("")
}

// ---------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------

#[test]
fn rmcp_client_and_server_interoperate_through_the_gateway() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let upstream = rt.block_on(start_upstream());
    let mut report = Report {
        log: upstream.log.clone(),
        tap: None,
    };
    let gw = Gateway::start(&config(json!([server("rmcp", &upstream.url)])));
    let (tap_addr, tap) = rt.block_on(Tap::start(gw.data_addr()));
    report.tap = Some(tap.clone());

    eprintln!("gateway: {}", gw.banner);
    rt.block_on(within("the whole rmcp interop scenario", 20, async {
        scenario(&upstream, &tap, tap_addr).await
    }));
    drop(report);
    // Shut the runtime down (sessions, servers) before the gateway goes away.
    rt.shutdown_timeout(Duration::from_secs(2));
    drop(gw);
}

async fn scenario(upstream: &Upstream, tap: &Tap, gateway: SocketAddr) {
    let seen = Arc::new(ClientSeen::default());
    let url = format!("http://{gateway}/mcp/rmcp");

    // --- initialize ------------------------------------------------------------------
    let transport = StreamableHttpClientTransport::from_uri(url.as_str());
    let client = within(
        "rmcp client initialize through the gateway",
        10,
        InteropClient(seen.clone()).serve(transport),
    )
    .await
    .expect("initialize through the gateway");

    let info = client.peer_info().expect("server info after initialize");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some(SERVER_NAME),
        "server info as the client got it: {info:?}"
    );
    assert!(
        info.capabilities.tools.is_some(),
        "tools capability: {info:?}"
    );

    // The upstream issued its own session id on initialize...
    let init = upstream
        .seen()
        .into_iter()
        .find(|s| s.method == "POST" && s.rpc == "initialize")
        .expect("upstream saw initialize");
    assert_eq!(
        init.path, "/mcp",
        "gateway must rewrite /mcp/rmcp onto /mcp"
    );
    assert_eq!(init.status, 200, "initialize at the upstream: {init:?}");
    assert_eq!(init.session, None, "initialize must not carry a session id");
    let upstream_session = init
        .reply_session
        .clone()
        .expect("rmcp server answers initialize with Mcp-Session-Id");
    // `serve` returns once `notifications/initialized` is sent; the server handles it on a
    // task of its own.
    wait_until("the server to see notifications/initialized", 5, || {
        upstream.side.peer_count() == 1
    })
    .await;

    // --- tools/list, tools/call echo ----------------------------------------------
    let tools = within("tools/list", 5, client.list_all_tools())
        .await
        .expect("tools/list");
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(names, ["echo", "slow_count"], "tools/list: {tools:?}");

    let text = "hello through the gateway \u{2713} \"quoted\"\nline two";
    let echoed = within(
        "tools/call echo",
        5,
        client.call_tool(
            CallToolRequestParams::new("echo")
                .with_arguments(json!({ "text": text }).as_object().unwrap().clone()),
        ),
    )
    .await
    .expect("tools/call echo");
    assert_ne!(echoed.is_error, Some(true), "echo failed: {echoed:?}");
    assert_eq!(text_of(&echoed.content), text);

    // --- tools/call slow_count with progress ----------------------------------------
    let started = Instant::now();
    let handle = within(
        "send tools/call slow_count",
        5,
        client.send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(
                CallToolRequestParams::new("slow_count")
                    .with_arguments(json!({ "n": PROGRESS_STEPS }).as_object().unwrap().clone()),
            )),
            PeerRequestOptions::no_options(),
        ),
    )
    .await
    .expect("send slow_count");
    let token = handle.progress_token.clone();
    let result = within("tools/call slow_count result", 10, handle.await_response())
        .await
        .expect("slow_count response");
    let done = Instant::now();
    let ServerResult::CallToolResult(result) = result else {
        panic!("slow_count answered with something else: {result:?}");
    };
    assert_eq!(
        text_of(&result.content),
        format!("counted to {PROGRESS_STEPS}")
    );
    // Notification handlers run on their own tasks; give the last one a moment.
    wait_until("all progress notifications delivered", 2, || {
        seen.progress.lock().unwrap().len() >= PROGRESS_STEPS as usize
    })
    .await;
    {
        let progress = seen.progress.lock().unwrap();
        assert_eq!(progress.len(), PROGRESS_STEPS as usize, "{progress:?}");
        for (i, (p, _)) in progress.iter().enumerate() {
            assert_eq!(p.progress_token, token, "progress for another token: {p:?}");
            assert_eq!(
                p.progress,
                (i + 1) as f64,
                "progress out of order: {progress:?}"
            );
            assert_eq!(p.total, Some(f64::from(PROGRESS_STEPS)));
        }
        // Streamed, not buffered: the first notification arrived well before the result
        // (the server sends them 100 ms apart and returns 100 ms after the last one).
        let first = progress[0].1;
        eprintln!(
            "slow_count: first progress after {:?}, result after {:?}",
            first.duration_since(started),
            done.duration_since(started)
        );
        assert!(
            done.duration_since(first) >= Duration::from_millis(250),
            "first progress arrived {:?} after the call started and only {:?} before the \
             result: the gateway held the SSE response back",
            first.duration_since(started),
            done.duration_since(first)
        );
    }

    // --- server-initiated notification on the standalone GET stream ---------------------
    wait_until(
        "the client's standalone GET stream to reach the upstream",
        5,
        || {
            upstream
                .seen()
                .iter()
                .any(|s| s.method == "GET" && s.status == 200)
        },
    )
    .await;
    assert_eq!(upstream.side.peer_count(), 1, "one session at the upstream");
    let server_peer = upstream.side.peers.lock().unwrap()[0].clone();
    within(
        "server notify_tool_list_changed",
        5,
        server_peer.notify_tool_list_changed(),
    )
    .await
    .expect("server sends notifications/tools/list_changed");
    wait_until("the client to receive tools/list_changed", 5, || {
        seen.tool_list_changed.load(Ordering::SeqCst) > 0
    })
    .await;
    assert_eq!(seen.tool_list_changed.load(Ordering::SeqCst), 1);
    // No POST was in flight, so it can only have come on the GET stream; check the bytes.
    let on_get = tap.connections_where(|out, back| {
        out.starts_with("GET ") && back.contains("notifications/tools/list_changed")
    });
    assert_eq!(
        on_get, 1,
        "tools/list_changed should arrive on exactly one (GET) connection"
    );

    // --- session ids: the client only sees the gateway's token, the upstream its own -----
    let client_sent = tap.session_ids(">");
    let client_got = tap.session_ids("<");
    assert!(
        !client_got.is_empty(),
        "no Mcp-Session-Id reached the client"
    );
    assert!(
        !client_got.contains(&upstream_session) && !client_sent.contains(&upstream_session),
        "the upstream's own session id leaked to the client (got {client_got:?}, sent \
         {client_sent:?}, upstream {upstream_session:?})"
    );
    for s in upstream.seen().iter().filter(|s| s.rpc != "initialize") {
        assert_eq!(
            s.session.as_deref(),
            Some(upstream_session.as_str()),
            "the upstream got a request without its own session id: {s:?}"
        );
        assert!(
            s.protocol_version.is_some(),
            "MCP-Protocol-Version did not reach the upstream: {s:?}"
        );
        assert!(
            (200..300).contains(&s.status),
            "the upstream refused a request: {s:?}"
        );
    }

    // --- clean close: DELETE passes through, the server drops the session -----------------
    let quit = within("client cancel (DELETE)", 8, client.cancel())
        .await
        .expect("client task joins");
    eprintln!("rmcp client quit: {quit:?}");
    wait_until("the DELETE to reach the upstream", 5, || {
        upstream.seen().iter().any(|s| s.method == "DELETE")
    })
    .await;
    let delete = upstream
        .seen()
        .into_iter()
        .find(|s| s.method == "DELETE")
        .unwrap();
    assert_eq!(
        delete.session.as_deref(),
        Some(upstream_session.as_str()),
        "DELETE must carry the upstream's own session id: {delete:?}"
    );
    assert_eq!(delete.status, 202, "DELETE at the upstream: {delete:?}");
    let sessions = upstream.sessions.clone();
    let sid = upstream_session.clone();
    within("the rmcp server to drop the session", 5, async move {
        loop {
            if !sessions
                .sessions
                .read()
                .await
                .keys()
                .any(|k| k.as_ref() == sid.as_str())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    wait_until("the server-side peer to close", 5, || {
        server_peer.is_transport_closed()
    })
    .await;

    // Shown with --nocapture: what the upstream saw, in order.
    for s in upstream.seen() {
        eprintln!("upstream saw: {s:?}");
    }
}
