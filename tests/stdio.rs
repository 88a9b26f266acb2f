//! `transport: "stdio"` servers end to end: the gateway starts a real MCP server built on the
//! official Rust SDK (`examples/stdio_mcp_server.rs`, rmcp over stdin/stdout), one process
//! per client session, and a real rmcp Streamable HTTP client talks to it through
//! `/mcp/{id}`.
//!
//! Covered: initialize, tools/list, tools/call, progress notifications streamed while a call
//! runs, a server notification on the GET stream, `env`/`cwd`, stderr in the gateway's log,
//! health probes of the stdio host, DELETE stopping (and reaping) the process, one process
//! per session, `maxProcesses`, a killed process (the request in flight gets a JSON-RPC
//! error, the session is gone, a new session gets a new process), idle sessions stopped
//! after `idleTimeout`, and programs that cannot start or exit at once (502 JSON-RPC errors).

mod common;
mod mcp_support;

use common::{config, eventually, example_program, request_bytes, Gateway};
use mcp_support::{fresh, init_body, mcp_headers, rpc, with_session};
use rmcp::{
    model::{
        CallToolRequestParams, ClientRequest, ContentBlock, ProgressNotificationParam, Request,
    },
    service::{NotificationContext, PeerRequestOptions, RunningService},
    transport::StreamableHttpClientTransport,
    ClientHandler, RoleClient, ServiceExt,
};
use serde_json::{json, Value};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::time::timeout;

// ---------------------------------------------------------------------------------------
// The stdio server program and configs
// ---------------------------------------------------------------------------------------

/// The rmcp stdio server program (`examples/stdio_mcp_server.rs`), built once if needed.
fn server_program() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| example_program("stdio_mcp_server"))
        .clone()
}

/// A stdio `upstream.servers[]` entry running the test server, with `extra` keys merged in.
fn stdio_server(id: &str, extra: Value) -> Value {
    let mut s = json!({
        "id": id,
        "transport": "stdio",
        "command": server_program(),
    });
    if let (Some(s), Value::Object(extra)) = (s.as_object_mut(), extra) {
        s.extend(extra);
    }
    s
}

fn start(servers: Value) -> Gateway {
    Gateway::start_env(&config(servers), &[], &["SESSION_SECRET"])
}

/// Whether the process is still there (a zombie counts: not reaped yet).
fn exists(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn wait_gone(pid: u64, what: &str) {
    assert!(
        eventually(Duration::from_secs(15), || (!exists(pid)).then_some(())).is_some(),
        "{what}: process {pid} still exists (or was not reaped)"
    );
}

// ---------------------------------------------------------------------------------------
// The rmcp client
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Seen {
    progress: Mutex<Vec<(ProgressNotificationParam, Instant)>>,
    list_changed: AtomicUsize,
}

struct TestClient(Arc<Seen>);

impl ClientHandler for TestClient {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.0
            .progress
            .lock()
            .unwrap()
            .push((params, Instant::now()));
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.0.list_changed.fetch_add(1, Ordering::SeqCst);
    }
}

type Client = RunningService<RoleClient, TestClient>;

async fn within<T>(what: &str, secs: u64, fut: impl Future<Output = T>) -> T {
    timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs} s: {what}"))
}

async fn connect(gw: &Gateway, id: &str) -> (Client, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let url = format!("http://{}/mcp/{id}", gw.data_addr());
    let transport = StreamableHttpClientTransport::from_uri(url.as_str());
    let client = within(
        "rmcp initialize through the gateway",
        20,
        TestClient(seen.clone()).serve(transport),
    )
    .await
    .expect("initialize a stdio session through the gateway");
    (client, seen)
}

fn text_of(content: &[ContentBlock]) -> String {
    content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

async fn call(client: &Client, tool: &str, args: Value) -> Result<String, String> {
    let params = CallToolRequestParams::new(tool.to_string())
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    let result = within(&format!("tools/call {tool}"), 20, client.call_tool(params))
        .await
        .map_err(|e| e.to_string())?;
    assert_ne!(result.is_error, Some(true), "{tool} failed: {result:?}");
    Ok(text_of(&result.content))
}

/// The test server's `whoami`: pid, cwd, STDIO_TEST_VALUE.
async fn whoami(client: &Client) -> Value {
    let text = call(client, "whoami", json!({})).await.expect("whoami");
    serde_json::from_str(&text).expect("whoami answers JSON")
}

/// Session headers of a client that accepts only JSON answers (no event streams).
fn json_only(token: &str) -> Vec<(&str, &str)> {
    let mut headers = with_session(token);
    headers.retain(|(n, _)| *n != "Accept");
    headers.push(("Accept", "application/json"));
    headers
}

/// A session started with raw HTTP: its token and its process id (asked with `whoami`,
/// answered as plain JSON).
fn raw_session(gw: &Gateway, id: &str) -> (String, u64) {
    let target = format!("/mcp/{id}");
    let init = fresh(
        gw.data_addr(),
        "POST",
        &target,
        &mcp_headers(&[]),
        &init_body(1),
    );
    assert_eq!(init.status, 200, "{init:?}");
    let token = init
        .header("mcp-session-id")
        .expect("session token")
        .to_string();
    let me = fresh(
        gw.data_addr(),
        "POST",
        &target,
        &json_only(&token),
        &rpc("tools/call", 2, json!({"name": "whoami", "arguments": {}})),
    );
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.header("content-type"), Some("application/json"));
    let text = me.json()["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pid = serde_json::from_str::<Value>(&text).expect("whoami JSON")["pid"]
        .as_u64()
        .expect("a pid");
    (token, pid)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// The whole life of one session through an rmcp client.
#[test]
fn rmcp_client_uses_a_stdio_server_through_the_gateway() {
    let cwd = common::TempDir::new("stdio-cwd");
    let mut cfg = config(json!([stdio_server(
        "local",
        json!({
            "args": [],
            "env": {"STDIO_TEST_VALUE": "from-config"},
            "cwd": cwd.path(),
        })
    )]));
    // Health checks on: the prober probes the stdio host's /health.
    cfg["upstream"]["healthCheck"] = json!({"enabled": true, "interval": 200, "timeout": 2000});
    let gw = Gateway::start_env(&cfg, &[], &["SESSION_SECRET"]);
    let rt = runtime();
    rt.block_on(within("the stdio scenario", 90, async {
        let (client, seen) = connect(&gw, "local").await;
        let info = client.peer_info().expect("server info");
        assert_eq!(
            info.server_info.as_ref().map(|i| i.name.as_str()),
            Some("stdio-test-server"),
            "{info:?}"
        );

        let tools = within("tools/list", 20, client.list_all_tools())
            .await
            .expect("tools/list");
        let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        names.sort_unstable();
        assert_eq!(names, ["announce", "echo", "sleep", "slow_count", "whoami"]);

        let text = "through stdio \u{2713} \"quoted\"\nsecond line";
        assert_eq!(
            call(&client, "echo", json!({"text": text})).await.unwrap(),
            text
        );

        // env and cwd from the config reach the process.
        let me = whoami(&client).await;
        let pid = me["pid"].as_u64().expect("pid");
        assert!(exists(pid));
        assert_eq!(me["value"], "from-config", "{me}");
        let want_cwd = std::fs::canonicalize(cwd.path()).unwrap();
        assert_eq!(Path::new(me["cwd"].as_str().unwrap()), want_cwd, "{me}");

        // Progress notifications stream back while the call runs.
        let started = Instant::now();
        let handle = within(
            "send slow_count",
            20,
            client.send_cancellable_request(
                ClientRequest::CallToolRequest(Request::new(
                    CallToolRequestParams::new("slow_count")
                        .with_arguments(json!({"n": 5}).as_object().unwrap().clone()),
                )),
                PeerRequestOptions::no_options(),
            ),
        )
        .await
        .expect("send slow_count");
        let token = handle.progress_token.clone();
        let result = within("slow_count result", 20, handle.await_response())
            .await
            .expect("slow_count response");
        let done = Instant::now();
        assert!(format!("{result:?}").contains("counted to 5"), "{result:?}");
        within("all progress notifications", 10, async {
            while seen.progress.lock().unwrap().len() < 5 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        {
            let progress = seen.progress.lock().unwrap();
            for (i, (p, _)) in progress.iter().enumerate() {
                assert_eq!(p.progress_token, token);
                assert_eq!(p.progress, (i + 1) as f64, "{progress:?}");
            }
            let first = progress[0].1;
            assert!(
                done.duration_since(first) >= Duration::from_millis(250),
                "progress was held back: first after {:?}, result {:?} later",
                first.duration_since(started),
                done.duration_since(first)
            );
        }

        // A server notification outside any request reaches the client's GET stream.
        assert_eq!(
            call(&client, "announce", json!({})).await.unwrap(),
            "announcing"
        );
        within("tools/list_changed on the GET stream", 20, async {
            while seen.list_changed.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;

        // DELETE ends the session: the process exits and is reaped.
        within("client cancel (DELETE)", 20, client.cancel())
            .await
            .expect("client quits");
        wait_gone(pid, "after DELETE");
    }));
    rt.shutdown_timeout(Duration::from_secs(2));

    let logs = gw.logs.text();
    assert!(
        logs.contains("stdio-test-server") && logs.contains("starting"),
        "the process's stderr line is not in the gateway's log"
    );
    let health = gw.mgmt_json("/upstream/health");
    let server = &health["servers"][0];
    assert_eq!(server["healthy"], true, "{health}");
    assert!(
        !server["lastCheck"].is_null(),
        "the stdio server was never probed: {health}"
    );
}

/// Two sessions, two processes; `maxProcesses` refuses a third with a JSON-RPC error until
/// one session ends.
#[test]
fn one_process_per_session_capped_by_max_processes() {
    let gw = start(json!([stdio_server("capped", json!({"maxProcesses": 2}))]));
    let rt = runtime();
    rt.block_on(within("the maxProcesses scenario", 90, async {
        let ((a, _), (b, _)) = tokio::join!(connect(&gw, "capped"), connect(&gw, "capped"));
        let (pa, pb) = tokio::join!(whoami(&a), whoami(&b));
        let (pa, pb) = (pa["pid"].as_u64().unwrap(), pb["pid"].as_u64().unwrap());
        assert_ne!(pa, pb, "two sessions share one process");

        let addr = gw.data_addr();
        let third = tokio::task::spawn_blocking(move || {
            fresh(
                addr,
                "POST",
                "/mcp/capped",
                &mcp_headers(&[]),
                &init_body(7),
            )
        })
        .await
        .unwrap();
        assert_eq!(third.status, 503, "a third session: {third:?}");
        let v = third.json();
        assert_eq!(v["jsonrpc"], "2.0", "{v}");
        assert_eq!(v["id"], 7, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("maxProcesses"),
            "{v}"
        );
        assert!(third.header("mcp-session-id").is_none());

        // Both sessions still work; ending one makes room.
        assert_eq!(call(&b, "echo", json!({"text": "b"})).await.unwrap(), "b");
        within("DELETE a", 20, a.cancel()).await.expect("a quits");
        wait_gone(pa, "after DELETE");
        let (c, _) = connect(&gw, "capped").await;
        let pc = whoami(&c).await["pid"].as_u64().unwrap();
        assert!(pc != pa && pc != pb);
        assert_eq!(
            call(&b, "echo", json!({"text": "still b"})).await.unwrap(),
            "still b"
        );
        let _ = within("DELETE b", 20, b.cancel()).await;
        let _ = within("DELETE c", 20, c.cancel()).await;
        wait_gone(pb, "b after DELETE");
        wait_gone(pc, "c after DELETE");
    }));
    rt.shutdown_timeout(Duration::from_secs(2));
}

/// A process killed mid-request: the request gets a JSON-RPC error (no hang), the session
/// is gone (404), and a new session gets a new process that works.
#[test]
fn a_call_whose_client_hangs_up_is_cancelled_on_the_server() {
    let gw = start(json!([stdio_server("patient", json!({}))]));
    let (token, pid) = raw_session(&gw, "patient");
    let sse = [
        ("Content-Type", "application/json"),
        ("Accept", "text/event-stream"),
        ("Mcp-Session-Id", token.as_str()),
    ];
    // Answered as JSON, then as an event stream: either way the client leaves mid-call.
    for (ms, headers) in [(30_000, json_only(&token)), (30_001, sse.to_vec())] {
        let call = rpc(
            "tools/call",
            ms,
            json!({"name": "sleep", "arguments": {"ms": ms}}),
        );
        let mut c = common::Client::connect(gw.data_addr());
        c.send(&request_bytes("POST", "/mcp/patient", &headers, &call));
        eventually(Duration::from_secs(10), || {
            gw.logs
                .text()
                .contains(&format!("sleep of {ms} ms started"))
                .then_some(())
        })
        .expect("the call reached the server");
        drop(c);
        // The server is told (notifications/cancelled) and stops the work at once.
        eventually(Duration::from_secs(5), || {
            gw.logs
                .text()
                .contains(&format!("sleep of {ms} ms cancelled"))
                .then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "{ms}: no cancellation reached the server\n{}",
                gw.logs.text()
            )
        });
    }
    // The process and its session live on.
    assert!(exists(pid));
    let r = fresh(
        gw.data_addr(),
        "POST",
        "/mcp/patient",
        &json_only(&token),
        &rpc(
            "tools/call",
            9,
            json!({"name": "echo", "arguments": {"text": "still here"}}),
        ),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.text().contains("still here"), "{r:?}");
}

#[test]
fn killed_process_fails_its_requests_and_the_next_session_works() {
    let gw = start(json!([stdio_server("fragile", json!({}))]));
    let rt = runtime();
    rt.block_on(within("the kill scenario", 90, async {
        let (client, seen) = connect(&gw, "fragile").await;
        let pid = whoami(&client).await["pid"].as_u64().unwrap();

        // A long call with progress: once the first progress arrives it is surely in flight.
        let handle = client
            .send_cancellable_request(
                ClientRequest::CallToolRequest(Request::new(
                    CallToolRequestParams::new("slow_count")
                        .with_arguments(json!({"n": 600}).as_object().unwrap().clone()),
                )),
                PeerRequestOptions::no_options(),
            )
            .await
            .expect("send slow_count");
        within("the first progress notification", 20, async {
            while seen.progress.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let killed = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success());
        let failed = within("the in-flight call to fail", 20, handle.await_response()).await;
        let err = failed
            .expect_err("a call to a killed process must fail")
            .to_string();
        assert!(err.contains("exited"), "in-flight call error: {err}");
        wait_gone(pid, "the killed process");

        // The session is gone with its process: the next request gets 404 (checked on the
        // wire below), on which rmcp re-initializes by itself and lands on a new process.
        let again_pid = whoami(&client).await["pid"].as_u64().unwrap();
        assert_ne!(again_pid, pid, "the dead session's process answered");
        let _ = within("DELETE", 20, client.cancel()).await;
        wait_gone(again_pid, "after DELETE");

        // A new session starts a new process.
        let (again, _) = connect(&gw, "fragile").await;
        let new_pid = whoami(&again).await["pid"].as_u64().unwrap();
        assert_ne!(new_pid, pid);
        assert_eq!(
            call(&again, "echo", json!({"text": "back"})).await.unwrap(),
            "back"
        );
        let _ = within("DELETE", 20, again.cancel()).await;
        wait_gone(new_pid, "after DELETE");
    }));
    rt.shutdown_timeout(Duration::from_secs(2));

    // The raw exchange: a dead session's token gets 404 with a JSON-RPC error.
    let (token, pid) = raw_session(&gw, "fragile");
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    wait_gone(pid, "killed again");
    let after = eventually(Duration::from_secs(15), || {
        let r = fresh(
            gw.data_addr(),
            "POST",
            "/mcp/fragile",
            &with_session(&token),
            &rpc("tools/list", 3, json!({})),
        );
        (r.status == 404).then_some(r)
    })
    .expect("the dead session's token gets 404");
    let v = after.json();
    assert_eq!(v["error"]["code"], -32001, "{v}");
}

/// A session without requests for `idleTimeout` is stopped and its process reaped.
#[test]
fn idle_sessions_are_stopped() {
    let gw = start(json!([stdio_server("sleepy", json!({"idleTimeout": 500}))]));
    let (token, pid) = raw_session(&gw, "sleepy");
    wait_gone(pid, "after idleTimeout");
    let r = fresh(
        gw.data_addr(),
        "POST",
        "/mcp/sleepy",
        &with_session(&token),
        &rpc("tools/list", 3, json!({})),
    );
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.json()["error"]["code"], -32001);
}

/// A program that cannot start, or exits at once: `initialize` gets a 502 JSON-RPC error,
/// never a hang; its stderr is in the gateway's log.
#[test]
fn programs_that_fail_to_start_get_json_rpc_errors() {
    let gw = start(json!([
        {"id": "missing", "transport": "stdio", "command": "/nonexistent/mcp-stdio-server"},
        {"id": "quitter", "transport": "stdio", "command": "sh",
         "args": ["-c", "echo quitter-was-here >&2; exit 3"]},
    ]));
    for attempt in 1..=2 {
        let r = fresh(
            gw.data_addr(),
            "POST",
            "/mcp/missing",
            &mcp_headers(&[]),
            &init_body(5),
        );
        assert_eq!(r.status, 502, "attempt {attempt}: {r:?}");
        let v = r.json();
        assert_eq!(v["id"], 5, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("could not be started"),
            "{v}"
        );

        let r = fresh(
            gw.data_addr(),
            "POST",
            "/mcp/quitter",
            &mcp_headers(&[]),
            &init_body(6),
        );
        assert_eq!(r.status, 502, "attempt {attempt}: {r:?}");
        let v = r.json();
        assert_eq!(v["id"], 6, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("exited"),
            "{v}"
        );
        assert!(r.header("mcp-session-id").is_none());
    }
    assert!(
        eventually(Duration::from_secs(10), || {
            gw.logs.text().contains("quitter-was-here").then_some(())
        })
        .is_some(),
        "stderr of the stdio server is not in the log"
    );
    // Unknown session on a stdio server: 404.
    let r = fresh(
        gw.data_addr(),
        "POST",
        "/mcp/quitter",
        &with_session("not-a-token"),
        &rpc("tools/list", 1, json!({})),
    );
    assert_eq!(r.status, 404, "{r:?}");
}
